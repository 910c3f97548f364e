/* Task data: JSONL examples of three shapes into token ids (see task_data.h). */
#include "runtime/task_data.h"
#include "runtime/fileio.h"
#include "runtime/json_kind.h"
#include "runtime/jsonl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_DATA_BYTES ((size_t)1 << 30)
#define MAX_CHOICES 4096
#define SHAPES "{\"text\"}, {\"input\", \"target\"} or {\"input\", \"answer_choices\", \"label\"}, each with an optional \"task\""

const char *pc_td_shape_name(pc_td_shape s) {
    return s == PC_TD_TEXT ? "text" : s == PC_TD_TARGET ? "input/target" : "multiple-choice";
}

int pc_task_data_detect(const char *path, bool *jsonl, char *err, size_t errlen) {
    size_t n = strlen(path);
    *jsonl = n >= 6 && strcmp(path + n - 6, ".jsonl") == 0;
    if (*jsonl) return 0;
    struct stat st;
    if (stat(path, &st)) return pc_errf(err, errlen, "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return 0; /* the text loader says what it is (and never blocks on a FIFO) */
    FILE *f = fopen(path, "rb");
    if (!f) return pc_errf(err, errlen, "%s: %s", path, strerror(errno));
    enum { PREFIX = 1 << 20 };
    char *buf = malloc(PREFIX);
    size_t got = buf ? fread(buf, 1, PREFIX, f) : 0;
    fclose(f);
    /* the first non-blank line: a JSON object with a field of task data */
    size_t i = got >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    while (i < got && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n')) i++;
    const char *nl = i < got ? memchr(buf + i, '\n', got - i) : NULL;
    size_t e = nl ? (size_t)(nl - buf) : got;
    json_t *o = i < got && buf[i] == '{' ? json_loadb(buf + i, e - i, 0, NULL) : NULL;
    static const char *const keys[] = {"text", "input", "target", "answer_choices", "label", "task"};
    for (size_t k = 0; json_is_object(o) && k < sizeof keys / sizeof keys[0]; k++) *jsonl |= json_object_get(o, keys[k]) != NULL;
    json_decref(o);
    free(buf);
    return 0;
}

typedef struct {
    const char *path;
    const pc_text_tokenizer *tok;
    pc_task_data *d;
    size_t cap;
    int first_line; /* the line that fixed the file's shape */
    char *err;
    size_t errlen;
} ctx;

static int lerr(ctx *c, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int lerr(ctx *c, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    pc_line_verrf(c->err, c->errlen, c->path, line, fmt, ap);
    va_end(ap);
    return -1;
}

/* a string field's ids (with the tokenizer's special tokens when `special`), appended to *ids */
static int encode_append(ctx *c, int line, const char *field, json_t *v, bool special, int32_t **ids, int *n,
                         int *cap) {
    if (!json_is_string(v)) return lerr(c, line, "field \"%s\": must be a string, got %s", field, pc_json_kind(v));
    int32_t *w;
    size_t nw;
    char msg[512];
    if (pc_text_encode(c->tok, json_string_value(v), json_string_length(v), special, &w, &nw, msg, sizeof msg))
        return lerr(c, line, "field \"%s\": %s", field, msg);
    if (nw == 0) {
        free(w);
        return lerr(c, line, "field \"%s\": encodes to no tokens (an empty string?)", field);
    }
    if (nw > (size_t)1 << 24 || (size_t)*n + nw > (size_t)1 << 26) {
        free(w);
        return lerr(c, line, "field \"%s\": %zu tokens: too long", field, nw);
    }
    if (*n + (int)nw > *cap) {
        int ncap = (*n + (int)nw) * 2;
        int32_t *p = realloc(*ids, (size_t)ncap * sizeof *p);
        if (!p) {
            free(w);
            return lerr(c, line, "out of memory");
        }
        *ids = p, *cap = ncap;
    }
    memcpy(*ids + *n, w, nw * sizeof *w);
    *n += (int)nw;
    free(w);
    return 0;
}

/* an integer field in [0, hi): its value; what names what it must be */
static int int_field(ctx *c, int line, const char *field, json_t *v, long long hi, const char *what, int *out) {
    if (!json_is_integer(v)) {
        char *s = json_is_real(v) ? json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(17)) : NULL;
        lerr(c, line, "field \"%s\": must be %s, got %s%s%s", field, what, pc_json_kind(v), s ? " " : "", s ? s : "");
        free(s);
        return -1;
    }
    long long x = json_integer_value(v);
    if (x < 0 || x >= hi) {
        if (x >= 0 && hi < (1ll << 31))
            return lerr(c, line, "field \"%s\": %lld is out of range: %s (0..%lld)", field, x, what, hi - 1);
        return lerr(c, line, "field \"%s\": %lld is out of range: %s", field, x, what);
    }
    *out = (int)x;
    return 0;
}

static pc_td_shape shape_of(json_t *o) {
    if (json_object_get(o, "answer_choices") || json_object_get(o, "label")) return PC_TD_CHOICE;
    if (json_object_get(o, "text")) return PC_TD_TEXT;
    return PC_TD_TARGET;
}

static int example(void *cv, int line, json_t *o) {
    ctx *c = cv;
    pc_task_data *d = c->d;
    if (!json_is_object(o)) return lerr(c, line, "not a JSON object: got %s", pc_json_kind(o));
    pc_td_shape sh = shape_of(o);
    /* every key must belong to the shape */
    const char *key;
    json_t *val;
    json_object_foreach(o, key, val) {
        bool ok = !strcmp(key, "task") ||
                  (sh == PC_TD_TEXT && !strcmp(key, "text")) ||
                  (sh == PC_TD_TARGET && (!strcmp(key, "input") || !strcmp(key, "target"))) ||
                  (sh == PC_TD_CHOICE && (!strcmp(key, "input") || !strcmp(key, "answer_choices") || !strcmp(key, "label")));
        if (!ok) {
            bool known = !strcmp(key, "text") || !strcmp(key, "input") || !strcmp(key, "target");
            if (known)
                return lerr(c, line, "field \"%s\": not a field of a%s %s example (one of the shapes " SHAPES ")", key,
                            sh == PC_TD_TARGET ? "n" : "", pc_td_shape_name(sh));
            return lerr(c, line, "field \"%s\": unknown (task data is " SHAPES ")", key);
        }
    }
    if (d->n == 0) {
        d->shape = sh;
        c->first_line = line;
    } else if (sh != d->shape) {
        /* the field that made this line's shape */
        const char *f = sh == PC_TD_TEXT ? "text" : sh == PC_TD_TARGET ? (json_object_get(o, "target") ? "target" : "input")
                      : json_object_get(o, "answer_choices") ? "answer_choices" : "label";
        return lerr(c, line, "field \"%s\": a%s %s example, but line %d is %s: every line of a file has one shape", f,
                    sh == PC_TD_TARGET ? "n" : "", pc_td_shape_name(sh), c->first_line, pc_td_shape_name(d->shape));
    }
    pc_td_example e = {.label = -1, .task = -1, .line = line};
    json_t *task = json_object_get(o, "task");
    if (task && int_field(c, line, "task", task, 1ll << 30, "an integer task id >= 0", &e.task)) return -1;
    int cap = 0, rc = -1;
    if (sh == PC_TD_TEXT) {
        if (encode_append(c, line, "text", json_object_get(o, "text"), true, &e.ids, &e.n, &cap)) goto fail;
        e.n_context = 1;
        if (e.n < 2) {
            lerr(c, line, "field \"text\": encodes to no tokens after the BOS");
            goto fail;
        }
    } else {
        json_t *in = json_object_get(o, "input");
        if (!in) {
            lerr(c, line, "field \"input\": missing (a%s %s example has one)", sh == PC_TD_TARGET ? "n" : "",
                 pc_td_shape_name(sh));
            goto fail;
        }
        if (encode_append(c, line, "input", in, true, &e.ids, &e.n, &cap)) goto fail;
        e.n_context = e.n;
    }
    if (sh == PC_TD_TARGET) {
        json_t *t = json_object_get(o, "target");
        if (!t) {
            lerr(c, line, "field \"target\": missing (an {\"input\", \"target\"} example trains on its target)");
            goto fail;
        }
        if (encode_append(c, line, "target", t, false, &e.ids, &e.n, &cap)) goto fail;
    }
    if (sh == PC_TD_CHOICE) {
        json_t *ch = json_object_get(o, "answer_choices"), *lab = json_object_get(o, "label");
        if (!ch) {
            lerr(c, line, "field \"answer_choices\": missing (a multiple-choice example lists its choices)");
            goto fail;
        }
        if (!json_is_array(ch)) {
            lerr(c, line, "field \"answer_choices\": must be a list of strings, got %s", pc_json_kind(ch));
            goto fail;
        }
        size_t nc = json_array_size(ch);
        if (nc == 0 || nc > MAX_CHOICES) {
            lerr(c, line, "field \"answer_choices\": %s", nc ? "more than 4096 choices" : "empty (no choices)");
            goto fail;
        }
        if (!lab) {
            lerr(c, line, "field \"label\": missing (a multiple-choice example needs the index of its correct choice)");
            goto fail;
        }
        char what[96];
        snprintf(what, sizeof what, "the index of the correct one of the %zu answer_choices", nc);
        if (int_field(c, line, "label", lab, (long long)nc, what, &e.label)) goto fail;
        if (!(e.choice_off = malloc((nc + 1) * sizeof *e.choice_off))) {
            lerr(c, line, "out of memory");
            goto fail;
        }
        e.nchoices = (int)nc;
        for (size_t k = 0; k < nc; k++) {
            char field[48];
            snprintf(field, sizeof field, "answer_choices[%zu]", k);
            e.choice_off[k] = e.n;
            if (encode_append(c, line, field, json_array_get(ch, k), false, &e.ids, &e.n, &cap)) goto fail;
        }
        e.choice_off[nc] = e.n;
    }
    if (d->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 256;
        pc_td_example *ex = realloc(d->ex, ncap * sizeof *ex);
        if (!ex) {
            lerr(c, line, "out of memory");
            goto fail;
        }
        d->ex = ex, c->cap = ncap;
    }
    d->ex[d->n++] = e;
    int row = e.n;
    if (sh == PC_TD_CHOICE) {
        row = 0;
        for (int k = 0; k < e.nchoices; k++)
            if (e.choice_off[k + 1] - e.choice_off[k] > row) row = e.choice_off[k + 1] - e.choice_off[k];
        row += e.n_context;
        if (e.nchoices > d->max_choices) d->max_choices = e.nchoices;
    }
    if (row > d->max_row) d->max_row = row;
    if (e.task > d->max_task) d->max_task = e.task;
    d->has_task |= task != NULL;
    return 0;
fail:
    free(e.ids);
    free(e.choice_off);
    return rc;
}

int pc_task_data_load(pc_task_data *d, const char *path, const pc_text_tokenizer *tok, char *err, size_t errlen) {
    *d = (pc_task_data){.max_task = -1};
    char *text;
    size_t len;
    if (pc_read_file_max(path, MAX_DATA_BYTES, &text, &len, err, errlen)) return -1;
    ctx c = {path, tok, d, 0, 0, err, errlen};
    size_t bom = len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0, i = bom;
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n')) i++;
    int rc = 0;
    if (!(d->path = strdup(path))) rc = pc_errf(err, errlen, "%s: out of memory", path);
    else if (i < len && text[i] == '[')
        rc = pc_errf(err, errlen, "%s: a JSON list: task data is JSONL (one JSON object per line: " SHAPES ")", path);
    else rc = pc_jsonl_each(path, text + bom, len - bom, example, &c, err, errlen) ? -1 : 0;
    free(text);
    if (rc == 0 && d->n == 0) rc = pc_errf(err, errlen, "%s: no examples (task data is JSONL: " SHAPES ")", path);
    if (rc) pc_task_data_free(d);
    return rc;
}

void pc_task_data_free(pc_task_data *d) {
    for (size_t i = 0; d->ex && i < d->n; i++) {
        free(d->ex[i].ids);
        free(d->ex[i].choice_off);
    }
    free(d->ex);
    free(d->path);
    *d = (pc_task_data){0};
}

int pc_td_row(const pc_td_example *e, int c, int32_t *buf, int *first_target) {
    *first_target = e->n_context;
    if (!e->nchoices) {
        memcpy(buf, e->ids, (size_t)e->n * sizeof *buf);
        return e->n;
    }
    int a = e->choice_off[c], b = e->choice_off[c + 1];
    memcpy(buf, e->ids, (size_t)e->n_context * sizeof *buf);
    memcpy(buf + e->n_context, e->ids + a, (size_t)(b - a) * sizeof *buf);
    return e->n_context + (b - a);
}
