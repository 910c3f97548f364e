/* Requests and hot swaps from a file, decoded B rows at a time (see generate_lines.h). */
#include "drivers/generate_lines.h"
#include "drivers/decode.h"
#include "drivers/hot_swap.h"
#include "runtime/fileio.h"
#include "runtime/json_kind.h"
#include "runtime/jsonl.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void pc_gen_lines_free(pc_gen_line *v, int n) {
    for (int i = 0; v && i < n; i++) {
        free(v[i].prompt);
        free(v[i].name);
        free(v[i].from);
    }
    free(v);
}

void pc_gen_results_free(pc_gen_result *r, int n) {
    for (int i = 0; r && i < n; i++) {
        free(r[i].ids);
        free(r[i].text);
    }
}

typedef struct {
    const pc_session *s;
    const char *path, *not_mixed;
    int tokens;
} reader;

static int unknown_adapter(const reader *rd, int line, const char *name, char *err, size_t errlen) {
    const pc_session *s = rd->s;
    char names[2048];
    pc_session_adapter_names(s, names, sizeof names);
    return pc_line_errf(err, errlen, rd->path, line, "field \"adapter\": no adapter is named '%s' (loaded: %s%s%s)", name,
                        names, s->nnamed ? ", " : "", PC_BASE_ADAPTER_NAME);
}

/* the prompt's ids after BOS, checked against the context */
static int encode(const reader *rd, int line, const char *text, size_t len, pc_gen_line *out, char *err,
                  size_t errlen) {
    const pc_session *s = rd->s;
    char msg[512];
    size_t np;
    if (pc_text_encode(s->tok, text, len, true, &out->prompt, &np, msg, sizeof msg))
        return pc_line_errf(err, errlen, rd->path, line, "field \"prompt\": %s", msg);
    out->nprompt = (int)np;
    const int room = s->model.info.context - (s->merged ? 0 : pc_session_virtual_tokens(s));
    if ((int)np >= room)
        return pc_line_errf(err, errlen, rd->path, line, "field \"prompt\": %zu tokens; the model's context%s is %d", np,
                            room < s->model.info.context ? " less the adapter's virtual tokens" : "", room);
    return 0;
}

static int one_object(const reader *rd, int line, json_t *o, pc_gen_line *out, char *err, size_t errlen) {
    const pc_session *s = rd->s;
    if (!json_is_object(o))
        return pc_line_errf(err, errlen, rd->path, line, "not a JSON object: got %s", pc_json_kind(o));
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        if (strcmp(key, "prompt") && strcmp(key, "adapter") && strcmp(key, "tokens") && strcmp(key, "load") &&
            strcmp(key, "from"))
            return pc_line_errf(err, errlen, rd->path, line, "field \"%s\": unknown (a request has \"prompt\", "
                                "\"adapter\", \"tokens\"; a hot swap \"load\", \"from\")", key);
    }
    json_t *load = json_object_get(o, "load");
    if (load) {
        json_t *from = json_object_get(o, "from");
        const char *other = json_object_get(o, "prompt") ? "prompt" : json_object_get(o, "adapter") ? "adapter"
                          : json_object_get(o, "tokens") ? "tokens" : NULL;
        if (other)
            return pc_line_errf(err, errlen, rd->path, line, "field \"%s\": a hot swap line (\"load\") is not a request",
                                other);
        if (!json_is_string(load))
            return pc_line_errf(err, errlen, rd->path, line, "field \"load\": must be a string, got %s", pc_json_kind(load));
        if (!json_is_string(from))
            return pc_line_errf(err, errlen, rd->path, line, "field \"from\": must be a string (the directory of the new "
                                "weights), got %s", from ? pc_json_kind(from) : "nothing");
        int k = pc_session_adapter_index(s, json_string_value(load));
        if (k < 0 || k == s->nnamed) {
            char names[2048];
            pc_session_adapter_names(s, names, sizeof names);
            return pc_line_errf(err, errlen, rd->path, line, "field \"load\": no adapter is named '%s' to replace "
                                "(loaded: %s)", json_string_value(load), s->nnamed ? names : "none");
        }
        if (s->merged)
            return pc_line_errf(err, errlen, rd->path, line, "field \"load\": the adapters are merged into the weights "
                                "(--merge): a hot swap needs them unmerged");
        out->kind = PC_GEN_LOAD;
        if (!(out->name = strdup(json_string_value(load))) || !(out->from = strdup(json_string_value(from))))
            return pc_errf(err, errlen, "out of memory");
        return 0;
    }
    json_t *p = json_object_get(o, "prompt"), *a = json_object_get(o, "adapter"), *t = json_object_get(o, "tokens");
    if (json_object_get(o, "from"))
        return pc_line_errf(err, errlen, rd->path, line, "field \"from\": belongs to a hot swap line (with \"load\")");
    if (!json_is_string(p))
        return pc_line_errf(err, errlen, rd->path, line, "field \"prompt\": must be a string, got %s",
                            p ? pc_json_kind(p) : "nothing");
    out->kind = PC_GEN_PROMPT;
    out->tokens = rd->tokens;
    if (t) {
        if (!json_is_integer(t))
            return pc_line_errf(err, errlen, rd->path, line, "field \"tokens\": must be an integer, got %s",
                                pc_json_kind(t));
        if (json_integer_value(t) < 1 || json_integer_value(t) > (1 << 20))
            return pc_line_errf(err, errlen, rd->path, line, "field \"tokens\": must be in [1, %d], got %lld", 1 << 20,
                                (long long)json_integer_value(t));
        out->tokens = (int)json_integer_value(t);
    }
    if (a && !json_is_null(a)) {
        if (!json_is_string(a))
            return pc_line_errf(err, errlen, rd->path, line, "field \"adapter\": must be a string or null, got %s",
                                pc_json_kind(a));
        const char *name = json_string_value(a);
        if ((out->adapter = pc_session_adapter_index(s, name)) < 0) return unknown_adapter(rd, line, name, err, errlen);
        const int active = s->active < 0 ? s->nnamed : s->active;
        if (rd->not_mixed && out->adapter != active)
            return pc_line_errf(err, errlen, rd->path, line, "field \"adapter\": '%s' is not the active adapter (%s), and "
                                "this run cannot switch adapters per line: %s", name,
                                s->active < 0 ? PC_BASE_ADAPTER_NAME : s->named[s->active].name, rd->not_mixed);
    }
    return encode(rd, line, json_string_value(p), json_string_length(p), out, err, errlen);
}

int pc_gen_lines_load(const pc_session *s, const char *path, int tokens, const char *not_mixed, pc_gen_line **out,
                      int *n, char *err, size_t errlen) {
    *out = NULL, *n = 0;
    if (pc_session_need_tokenizer(s, "generation", err, errlen)) return -1;
    char *text;
    size_t len;
    if (pc_read_file(path, &text, &len, err, errlen)) return -1;
    reader rd = {s, path, not_mixed, tokens};
    int cap = 0, rc = 0;
    const char *p = text, *end = text + len;
    for (int line = 1; p < end && !rc; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *e = nl ? nl : end;
        const char *q = p;
        while (q < e && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
        const char *te = e;
        while (te > p && te[-1] == '\r') te--;
        if (q < e) {
            if (*n == cap) {
                cap = cap ? 2 * cap : 16;
                pc_gen_line *g = realloc(*out, (size_t)cap * sizeof *g);
                if (!g) { rc = pc_errf(err, errlen, "out of memory"); break; }
                *out = g;
            }
            pc_gen_line *x = &(*out)[(*n)++];
            *x = (pc_gen_line){.line = line, .adapter = s->active < 0 ? s->nnamed : s->active, .tokens = tokens};
            if (*q == '{') { /* a JSON object; anything else is a plain-text prompt */
                json_error_t je;
                json_t *o = json_loadb(p, (size_t)(e - p), 0, &je);
                if (!o) rc = pc_line_errf(err, errlen, path, line, "not JSON: %s (a line starting with '{' is a JSON "
                                          "object; other lines are plain-text prompts)", je.text);
                else rc = one_object(&rd, line, o, x, err, errlen);
                json_decref(o);
            } else {
                rc = encode(&rd, line, p, (size_t)(te - p), x, err, errlen);
            }
        }
        p = nl ? nl + 1 : end;
    }
    free(text);
    if (!rc && *n == 0) rc = pc_errf(err, errlen, "%s: no prompts (one request per line)", path);
    if (rc) pc_gen_lines_free(*out, *n), *out = NULL, *n = 0;
    return rc;
}

/* the positions request x runs (as pc_generate_text: the prompt less BOS's prediction, plus its
 * tokens, within the context) */
static int steps_of(const pc_session *s, const pc_gen_line *x) {
    const int room = s->model.info.context - (s->merged ? 0 : pc_session_virtual_tokens(s));
    int steps = x->nprompt - 1 + x->tokens;
    return steps > room ? room : steps;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* decodes the requests lines[i0..i1) (all PROMPT) in one run */
static int run_rows(pc_session *s, pc_decoder *d, const pc_gen_line *lines, int i0, int i1, const pc_gen_lines_opts *o,
                    pc_decode_row *rows, pc_gen_result *res, char *err, size_t errlen) {
    for (int i = i0; i < i1; i++) {
        const pc_gen_line *x = &lines[i];
        int steps = steps_of(s, x);
        if (!(res[i].ids = malloc(((size_t)steps + 2) * sizeof *res[i].ids))) return pc_errf(err, errlen, "out of memory");
        rows[i - i0] = (pc_decode_row){.prompt = x->prompt, .n_prompt = x->nprompt, .steps = steps,
                                       .adapter = x->adapter, .seed = o->seed, .tokens = res[i].ids};
    }
    if (pc_decoder_run(d, rows, i1 - i0, o->temperature, o->topp, err, errlen)) return -1;
    for (int i = i0; i < i1; i++) {
        size_t tl;
        res[i].nids = rows[i - i0].ntokens;
        if (pc_text_decode(s->tok, res[i].ids, (size_t)res[i].nids, &res[i].text, &tl, err, errlen)) return -1;
    }
    return 0;
}

int pc_generate_lines(pc_session *s, const char *path, const pc_gen_line *lines, int n, const pc_gen_lines_opts *o,
                      pc_gen_result *res, char *err, size_t errlen) {
    memset(res, 0, (size_t)n * sizeof *res);
    int B = o->batch > 0 ? o->batch : 1;
    const int P = s->merged ? 0 : pc_session_virtual_tokens(s);
    int most = 0, nreq = 0; /* the longest request: one KV capacity serves all */
    for (int i = 0; i < n; i++)
        if (lines[i].kind == PC_GEN_PROMPT) {
            nreq++;
            if (steps_of(s, &lines[i]) > most) most = steps_of(s, &lines[i]);
        }
    /* no more rows than requests, unless the graph is compiled in (an AOT generator's shapes) */
    if (!o->entries && nreq > 0 && B > nreq) B = nreq;
    if (most == 0) most = 1; /* hot swaps only: a graph to swap under all the same */
    int64_t T;
    if (pc_decode_capacity(P + most, o->cache_sizes, o->ncache_sizes, &T, err, errlen)) return -1;
    pc_decode_row *rows = calloc((size_t)B, sizeof *rows);
    if (!rows) return pc_errf(err, errlen, "out of memory");
    pc_decoder *d = pc_decoder_open(s, B, T, o->exec, o->entries, err, errlen);
    int rc = d ? 0 : -1;
    for (int i = 0; i < n && !rc;) {
        const pc_gen_line *x = &lines[i];
        if (x->kind == PC_GEN_LOAD) {
            double t0 = now_ms();
            char msg[4096];
            if (pc_session_replace_adapter(s, x->name, x->from, msg, sizeof msg) ||
                pc_decoder_refresh(d, msg, sizeof msg))
                rc = pc_line_errf(err, errlen, path, x->line, "load '%s' from %s: %s", x->name, x->from, msg);
            res[i].ms = now_ms() - t0;
            i++;
            continue;
        }
        int j = i;
        while (j < n && j - i < B && lines[j].kind == PC_GEN_PROMPT) j++;
        char msg[4096];
        if (run_rows(s, d, lines, i, j, o, rows, res, msg, sizeof msg)) {
            /* the rows' failure names its line */
            rc = j - i == 1 ? pc_line_errf(err, errlen, path, x->line, "%s", msg)
                            : pc_errf(err, errlen, "%s: lines %d-%d: %s", path, x->line, lines[j - 1].line, msg);
        }
        i = j;
    }
    pc_decoder_free(d);
    free(rows);
    if (rc) pc_gen_results_free(res, n);
    return rc;
}
