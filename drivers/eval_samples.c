/* Per-sample evaluation of a causal LM, each sample with its adapter, in mixed batches. */
#include "drivers/eval_samples.h"
#include "drivers/fold_weights.h"
#include "drivers/store.h"
#include "ir/ir.h"
#include "runtime/fileio.h"
#include "runtime/json_kind.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pc_samples_free(pc_sample *v, size_t n) {
    for (size_t i = 0; v && i < n; i++) free(v[i].ids);
    free(v);
}

static int one_sample(const pc_session *s, const char *path, int line, json_t *o, int seq, pc_sample *out, char *err,
                      size_t errlen) {
    if (!json_is_object(o)) return pc_errf(err, errlen, "%s:%d: not a JSON object: got %s", path, line, pc_json_kind(o));
    json_t *t = json_object_get(o, "text"), *a = json_object_get(o, "adapter");
    if (!json_is_string(t))
        return pc_errf(err, errlen, "%s:%d: field \"text\": must be a string, got %s", path, line, pc_json_kind(t));
    out->adapter = s->active < 0 ? s->nnamed : s->active;
    if (a && !json_is_null(a)) {
        if (!json_is_string(a))
            return pc_errf(err, errlen, "%s:%d: field \"adapter\": must be a string, got %s", path, line, pc_json_kind(a));
        if ((out->adapter = pc_session_adapter_index(s, json_string_value(a))) < 0) {
            char names[2048];
            pc_session_adapter_names(s, names, sizeof names);
            return pc_errf(err, errlen, "%s:%d: field \"adapter\": no adapter is named '%s' (loaded: %s%s%s)", path, line,
                           json_string_value(a), names, s->nnamed ? ", " : "", PC_BASE_ADAPTER_NAME);
        }
    }
    char msg[512];
    if (pc_text_encode(s->tok, json_string_value(t), json_string_length(t), true, &out->ids, &out->n, msg, sizeof msg))
        return pc_errf(err, errlen, "%s:%d: field \"text\": %s", path, line, msg);
    if (out->n < 2)
        return pc_errf(err, errlen, "%s:%d: field \"text\": no token to predict (the text encodes to %zu token%s)", path,
                       line, out->n, out->n == 1 ? "" : "s");
    if (out->n > (size_t)seq + 1) out->n = (size_t)seq + 1;
    return 0;
}

int pc_samples_load(const pc_session *s, const char *path, int seq, pc_sample **out, size_t *n, char *err,
                    size_t errlen) {
    *out = NULL, *n = 0;
    if (pc_session_need_tokenizer(s, "evaluating on text", err, errlen)) return -1;
    char *text;
    size_t len;
    if (pc_read_file(path, &text, &len, err, errlen)) return -1;
    size_t cap = 0;
    int line = 0, rc = 0;
    for (char *p = text, *end = text + len; p < end && !rc; line++) {
        char *nl = memchr(p, '\n', (size_t)(end - p)), *e = nl ? nl : end;
        char *q = p;
        while (q < e && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
        if (q < e) {
            json_error_t je;
            json_t *o = json_loadb(p, (size_t)(e - p), 0, &je);
            if (!o) rc = pc_errf(err, errlen, "%s:%d: not JSON: %s", path, line + 1, je.text);
            if (!rc && *n == cap) {
                cap = cap ? 2 * cap : 16;
                pc_sample *g = realloc(*out, cap * sizeof *g);
                if (!g) rc = pc_errf(err, errlen, "out of memory");
                else *out = g;
            }
            if (!rc) {
                (*out)[*n] = (pc_sample){0};
                rc = one_sample(s, path, line + 1, o, seq, &(*out)[*n], err, errlen);
                if (!rc) (*n)++;
                else free((*out)[*n].ids);
            }
            json_decref(o);
        }
        p = e + 1;
    }
    free(text);
    if (!rc && *n == 0) rc = pc_errf(err, errlen, "%s: no samples (one JSON object per line)", path);
    if (rc) pc_samples_free(*out, *n), *out = NULL, *n = 0;
    return rc;
}

int pc_samples_detect(const char *path, bool *per_sample, char *err, size_t errlen) {
    *per_sample = false;
    char head[65536];
    long n = pc_read_head(path, head, sizeof head - 1);
    if (n < 0) return pc_errf(err, errlen, "%s: cannot read the file", path);
    head[n] = 0;
    char *p = head;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
    char *nl = strchr(p, '\n');
    json_t *o = json_loadb(p, nl ? (size_t)(nl - p) : strlen(p), 0, NULL);
    *per_sample = json_is_object(o) && json_object_get(o, "adapter") != NULL;
    json_decref(o);
    return 0;
}

void pc_eval_samples_free(pc_eval_samples_result *r) {
    free(r->group_loss);
    free(r->group_tokens);
    free(r->group_samples);
    *r = (pc_eval_samples_result){0};
}

/* -log softmax(row)[target] in double */
static double nll(const float *row, int64_t V, int32_t target) {
    double m = row[0], z = 0;
    for (int64_t v = 1; v < V; v++) m = row[v] > m ? row[v] : m;
    for (int64_t v = 0; v < V; v++) z += exp((double)row[v] - m);
    return m + log(z) - (double)row[target];
}

int pc_eval_samples(pc_session *s, const char *path, int seq, int batch, const pc_exec_opts *o_exec,
                    pc_eval_samples_result *res, char *err, size_t errlen) {
    *res = (pc_eval_samples_result){0};
    if (errlen) err[0] = 0;
    int room = s->model.info.context - pc_session_virtual_tokens(s);
    if (seq <= 0 || seq > room) return pc_errf(err, errlen, "--seq must be in [1, %d] (the model's context)", room);
    if (batch <= 0) return pc_errf(err, errlen, "--batch must be positive");
    if (!s->nnamed && s->adapter.cfg)
        return pc_errf(err, errlen, "per-sample evaluation needs the adapters loaded by name (pc_session_add_adapters)");
    pc_sample *smp = NULL;
    size_t ns = 0;
    pc_graph *g = NULL;
    pc_exec *r = NULL;
    pc_store store = {0};
    pc_folded folded = {0};
    int32_t *tokens = NULL, *ids = NULL;
    int rc = -1;
    const int G = s->nnamed + 1;
    double *sum = calloc((size_t)G, sizeof *sum);
    res->ngroups = G;
    res->group_loss = calloc((size_t)G, sizeof *res->group_loss);
    res->group_tokens = calloc((size_t)G, sizeof *res->group_tokens);
    res->group_samples = calloc((size_t)G, sizeof *res->group_samples);
    if (!sum || !res->group_loss || !res->group_tokens || !res->group_samples) { pc_errf(err, errlen, "out of memory"); goto done; }
    if (pc_samples_load(s, path, seq, &smp, &ns, err, errlen)) goto done;
    size_t S = (size_t)seq, B = (size_t)batch < ns ? (size_t)batch : ns;
    s->mixed = s->nnamed > 0;
    pc_build_req req = {.task = PC_TASK_FORWARD, .batch = (int64_t)B, .seq = (int64_t)S, .mode = PC_ADAPT_EVAL};
    if (!(g = pc_session_inference_graph(s, &req, &store, &folded, err, errlen))) goto done;
    if (!(tokens = calloc(B * S, sizeof *tokens))) { pc_errf(err, errlen, "out of memory"); goto done; }
    if (!(r = pc_exec_new(g, o_exec, err, errlen))) goto done;
    if (pc_session_bind_inference(s, g, &store, &folded, r, err, errlen) ||
        pc_exec_bind(r, pc_lookup(g, "tokens"), tokens)) {
        if (!err[0]) pc_errf(err, errlen, "binding failed");
        goto done;
    }
    if (pc_session_bind_adapter_ids(s, g, r, NULL, &ids, err, errlen)) goto done;
    pc_val lv = pc_lookup(g, "logits");
    const int64_t V = pc_val_shape(g, lv).dim[2];
    for (size_t first = 0; first < ns; first += B) {
        size_t real = ns - first < B ? ns - first : B;
        for (size_t b = 0; b < B; b++) {
            const pc_sample *x = &smp[first + (b < real ? b : 0)];
            for (size_t t = 0; t < S; t++) tokens[b * S + t] = t + 1 < x->n ? x->ids[t] : 0;
            if (ids) ids[b] = x->adapter; /* the bound buffer: read at the next run */
        }
        if (pc_exec_run(r, err, errlen)) {
            char msg[4096];
            snprintf(msg, sizeof msg, "%s", err);
            pc_errf(err, errlen, "batch %zu (samples %zu..%zu): %s", first / B, first, first + real - 1, msg);
            goto done;
        }
        const float *logits = pc_exec_data(r, lv);
        for (size_t b = 0; b < real; b++) {
            const pc_sample *x = &smp[first + b];
            double l = 0;
            for (size_t t = 0; t + 1 < x->n; t++) l += nll(logits + ((int64_t)(b * S + t)) * V, V, x->ids[t + 1]);
            sum[x->adapter] += l;
            res->group_tokens[x->adapter] += x->n - 1;
            res->group_samples[x->adapter]++;
        }
    }
    double all = 0;
    for (int k = 0; k < G; k++) {
        all += sum[k];
        res->tokens += res->group_tokens[k];
        res->samples += res->group_samples[k];
        res->group_loss[k] = res->group_tokens[k] ? sum[k] / (double)res->group_tokens[k] : NAN;
    }
    res->loss = all / (double)res->tokens;
    rc = 0;
done:
    if (rc) pc_eval_samples_free(res);
    pc_exec_free(r);
    pc_store_free(&store);
    pc_folded_free(&folded);
    pc_graph_free(g);
    pc_samples_free(smp, ns);
    free(tokens);
    free(ids);
    free(sum);
    return rc;
}
