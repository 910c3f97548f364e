/* Classification datasets: JSONL and CSV files into tokenized, labelled examples. */
#include "runtime/cls_data.h"
#include "runtime/json_kind.h"
#include "runtime/csv.h"
#include "runtime/fileio.h"
#include "runtime/jsonl.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DATA_BYTES ((size_t)1 << 30)
#define MAX_LABELS_BYTES ((size_t)64 << 20)
#define GIVE_LABELS "give --labels FILE (a JSON list of the names)"

struct pc_cls_name_id {
    const char *name;
    int id;
};

/* ---- labels ---- */

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const struct pc_cls_name_id *)a)->name, ((const struct pc_cls_name_id *)b)->name);
}

int pc_cls_labels_load(pc_cls_labels *l, const char *path, char *err, size_t errlen) {
    *l = (pc_cls_labels){0};
    char *text;
    size_t len;
    if (pc_read_file_max(path, MAX_LABELS_BYTES, &text, &len, err, errlen)) return -1;
    json_error_t je;
    json_t *j = json_loadb(text, len, 0, &je);
    free(text);
    if (!j) return pc_errf(err, errlen, "%s:%d: %s", path, je.line, je.text);
    int rc = -1;
    size_t n = json_is_array(j) ? json_array_size(j) : 0;
    if (!json_is_array(j)) {
        pc_errf(err, errlen, "%s: not a JSON list of label names (got %s)", path, pc_json_kind(j));
        goto done;
    }
    if (n == 0 || n > 1u << 24) {
        pc_errf(err, errlen, "%s: %s", path, n ? "more than 2^24 labels" : "no labels (an empty list)");
        goto done;
    }
    l->names = calloc(n, sizeof *l->names);
    l->by_name = malloc(n * sizeof *l->by_name);
    l->path = strdup(path);
    if (!l->names || !l->by_name || !l->path) goto oom;
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(j, i);
        if (!json_is_string(v) || json_string_length(v) == 0) {
            pc_errf(err, errlen, "%s: label id %zu: must be a non-empty string, got %s", path, i,
                    json_is_string(v) ? "\"\"" : pc_json_kind(v));
            goto done;
        }
        if (!(l->names[i] = strdup(json_string_value(v)))) goto oom;
        l->by_name[i] = (struct pc_cls_name_id){l->names[i], (int)i};
        l->n = (int)i + 1;
    }
    qsort(l->by_name, n, sizeof *l->by_name, cmp_name);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(l->by_name[i - 1].name, l->by_name[i].name) == 0) {
            int a = l->by_name[i - 1].id, b = l->by_name[i].id;
            pc_errf(err, errlen, "%s: \"%s\" is listed twice (label ids %d and %d)", path, l->by_name[i].name,
                    a < b ? a : b, a < b ? b : a);
            goto done;
        }
    }
    rc = 0;
    goto done;
oom:
    pc_errf(err, errlen, "%s: out of memory", path);
done:
    json_decref(j);
    if (rc) pc_cls_labels_free(l);
    return rc;
}

int pc_cls_labels_find(const pc_cls_labels *l, const char *name, size_t len) {
    if (memchr(name, '\0', len)) return -1;
    size_t lo = 0, hi = (size_t)l->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *s = l->by_name[mid].name;
        int c = strncmp(name, s, len);
        if (c == 0) c = s[len] ? -1 : 0; /* name is a prefix of s */
        if (c == 0) return l->by_name[mid].id;
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return -1;
}

void pc_cls_labels_free(pc_cls_labels *l) {
    for (int i = 0; l->names && i < l->n; i++) free(l->names[i]);
    free(l->names);
    free(l->by_name);
    free(l->path);
    *l = (pc_cls_labels){0};
}

/* ---- examples ---- */

typedef struct {
    const char *path;
    const pc_text_tokenizer *tok;
    int max_len, num_labels;
    const pc_cls_labels *labels;
    bool need_labels;
    pc_cls_data *d;
    size_t cap;
    char *err;
    size_t errlen;
} ctx;

/* "PATH:LINE: reason" (runtime/jsonl.h) */
static int lerr(ctx *c, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int lerr(ctx *c, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    pc_line_verrf(c->err, c->errlen, c->path, line, fmt, ap);
    va_end(ap);
    return -1;
}

/* HF's truncation: the text's own ids cut to max_len minus the special tokens, which stay. The
 * ids with specials must be the ids without them between a prefix and a suffix; when content
 * made of special tokens makes that split ambiguous, the shortest prefix is taken. */
static int truncate_ids(ctx *c, int line, const char *text, size_t len, int32_t *ids, size_t *n) {
    int32_t *w;
    size_t nw;
    char msg[512];
    if (pc_text_encode(c->tok, text, len, false, &w, &nw, msg, sizeof msg)) return lerr(c, line, "%s", msg);
    size_t extra = nw <= *n ? *n - nw : 0, p = 0;
    int rc = -1;
    if (nw > *n) {
        lerr(c, line, "the tokenizer gives fewer ids with its special tokens than without: cannot truncate");
        goto done;
    }
    if ((size_t)c->max_len <= extra) {
        lerr(c, line, "max_len %d leaves no room for text: the tokenizer (%s) adds %zu special tokens", c->max_len,
             c->tok->path, extra);
        goto done;
    }
    while (p <= extra && memcmp(ids + p, w, nw * sizeof *w) != 0) p++;
    if (p > extra) {
        lerr(c, line, "the ids with special tokens are not the ids without them between a prefix and a suffix: "
                      "cannot truncate keeping the special tokens");
        goto done;
    }
    size_t keep = (size_t)c->max_len - extra;
    memmove(ids + p + keep, ids + p + nw, (extra - p) * sizeof *ids);
    *n = (size_t)c->max_len;
    rc = 0;
done:
    free(w);
    return rc;
}

static int add_example(ctx *c, int line, const char *text, size_t len, int label) {
    int32_t *ids;
    size_t n;
    char msg[512];
    if (pc_text_encode(c->tok, text, len, true, &ids, &n, msg, sizeof msg)) return lerr(c, line, "%s", msg);
    if (n > (size_t)c->max_len && truncate_ids(c, line, text, len, ids, &n)) {
        free(ids);
        return -1;
    }
    pc_cls_data *d = c->d;
    if (d->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 256;
        pc_cls_example *ex = realloc(d->ex, cap * sizeof *ex);
        if (!ex) {
            free(ids);
            return lerr(c, line, "out of memory");
        }
        d->ex = ex, c->cap = cap;
    }
    d->ex[d->n++] = (pc_cls_example){ids, (int)n, label, line};
    if ((int)n > d->max_len) d->max_len = (int)n;
    return 0;
}

/* where: "field" (JSONL) or "column" (CSV) */
static int int_label(ctx *c, int line, const char *where, const char *key, const char *shown, long long v,
                     int *out) {
    if (v < 0 || v >= c->num_labels)
        return lerr(c, line, "%s \"%s\": %s is out of range for a model with %d labels (num_labels in its config.json)",
                    where, key, shown, c->num_labels);
    *out = (int)v;
    return 0;
}

static int name_label(ctx *c, int line, const char *where, const char *key, const char *s, size_t len, int *out) {
    int shown = len > 200 ? 200 : (int)len;
    if (!c->labels) return lerr(c, line, "%s \"%s\": \"%.*s\" is a name: " GIVE_LABELS, where, key, shown, s);
    if ((*out = pc_cls_labels_find(c->labels, s, len)) < 0)
        return lerr(c, line, "%s \"%s\": \"%.*s\" is not one of the %d labels in %s", where, key, shown, s,
                    c->labels->n, c->labels->path);
    return 0;
}

static int no_label(ctx *c, int line, const char *where, const char *key) {
    if (c->need_labels)
        return lerr(c, line, "%s \"%s\": missing (training and evaluation need a label on every example)", where,
                    key);
    return 0;
}

/* ---- JSONL ---- */

static int jsonl_example(ctx *c, int line, json_t *o) {
    if (!json_is_object(o)) return lerr(c, line, "not a JSON object: got %s", pc_json_kind(o));
    json_t *t = json_object_get(o, "text"), *lab = json_object_get(o, "label");
    if (!t) return lerr(c, line, "field \"text\": missing");
    if (!json_is_string(t)) return lerr(c, line, "field \"text\": must be a string, got %s", pc_json_kind(t));
    int label = -1;
    if (!lab || json_is_null(lab)) {
        if (no_label(c, line, "field", "label")) return -1;
    } else if (json_is_integer(lab)) {
        char shown[32];
        snprintf(shown, sizeof shown, "%lld", (long long)json_integer_value(lab));
        if (int_label(c, line, "field", "label", shown, (long long)json_integer_value(lab), &label)) return -1;
    } else if (json_is_string(lab)) {
        if (name_label(c, line, "field", "label", json_string_value(lab), json_string_length(lab), &label)) return -1;
    } else {
        char *s = json_is_real(lab) ? json_dumps(lab, JSON_ENCODE_ANY | JSON_REAL_PRECISION(17)) : NULL;
        lerr(c, line, "field \"label\": must be an integer label id or a label name, got %s%s%s", pc_json_kind(lab),
             s ? " " : "", s ? s : "");
        free(s);
        return -1;
    }
    return add_example(c, line, json_string_value(t), json_string_length(t), label);
}

static int jsonl_line(void *cv, int line, json_t *o) { return jsonl_example(cv, line, o); }

static int load_jsonl(ctx *c, const char *text, size_t len) {
    return pc_jsonl_each(c->path, text, len, jsonl_line, c, c->err, c->errlen) ? -1 : 0;
}

/* ---- CSV ---- */

/* a label cell: integer syntax is an id (names_only: never), anything else a name; empty: none */
static int csv_label(ctx *c, int line, const char *col, bool names_only, const char *s, size_t len, int *out) {
    *out = -1;
    while (len && (*s == ' ' || *s == '\t')) s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t')) len--;
    if (len == 0) return no_label(c, line, "column", col);
    char num[64];
    size_t k = len && (*s == '-' || *s == '+');
    if (!names_only && len < sizeof num && k < len && (s[k] == '.' || (s[k] >= '0' && s[k] <= '9'))) {
        memcpy(num, s, len);
        num[len] = '\0';
        char *e;
        errno = 0;
        long long v = strtoll(num, &e, 10);
        if (*e == '\0') return int_label(c, line, "column", col, num, errno == ERANGE ? -1 : v, out);
        (void)strtod(num, &e);
        if (*e == '\0')
            return lerr(c, line, "column \"%s\": %s is not an integer (label ids are written 0, 1, 2, ...)", col,
                        num);
    }
    return name_label(c, line, "column", col, s, len, out);
}

static int load_csv(ctx *c, const char *text, size_t len) {
    pc_csv r;
    pc_csv_init(&r, c->path, text, len);
    int rc = pc_csv_next(&r, c->err, c->errlen);
    if (rc <= 0) goto done;
    rc = -1;
    long col_text = -1, col_label = -1, col_cat = -1;
    for (size_t i = 0; i < r.nf; i++) {
        const char *h = pc_csv_field(&r, i, NULL);
        long *col = !strcmp(h, "text")       ? &col_text
                    : !strcmp(h, "label")    ? &col_label
                    : !strcmp(h, "category") ? &col_cat
                                             : NULL;
        if (col && *col >= 0) {
            lerr(c, r.rec_line, "column \"%s\" appears twice in the header", h);
            goto done;
        }
        if (col) *col = (long)i;
    }
    if (col_text < 0) {
        char names[256] = "";
        for (size_t i = 0, o = 0; i < r.nf && o < sizeof names; i++)
            o += (size_t)snprintf(names + o, sizeof names - o, "%s\"%s\"", i ? ", " : "", pc_csv_field(&r, i, NULL));
        lerr(c, r.rec_line, "no column \"text\" in the header (its columns: %s)", names);
        goto done;
    }
    bool names_only = col_label < 0 && col_cat >= 0;
    long col_lab = col_label >= 0 ? col_label : col_cat;
    const char *lab_name = col_label >= 0 ? "label" : "category";
    if (col_lab < 0 && c->need_labels) {
        lerr(c, r.rec_line, "no column \"label\" or \"category\" in the header (training and evaluation need labels)");
        goto done;
    }
    if (names_only && !c->labels) {
        lerr(c, r.rec_line, "column \"category\" holds names: " GIVE_LABELS);
        goto done;
    }
    size_t nf = r.nf;
    while ((rc = pc_csv_next(&r, c->err, c->errlen)) == 1) {
        rc = -1;
        if (r.nf != nf) {
            lerr(c, r.rec_line, "%zu field%s, the header has %zu", r.nf, r.nf == 1 ? "" : "s", nf);
            goto done;
        }
        int label = -1;
        size_t tl, ll;
        const char *t = pc_csv_field(&r, (size_t)col_text, &tl);
        if (col_lab >= 0) {
            const char *l = pc_csv_field(&r, (size_t)col_lab, &ll);
            if (csv_label(c, r.rec_line, lab_name, names_only, l, ll, &label)) goto done;
        } else if (no_label(c, r.rec_line, "column", "label")) {
            goto done;
        }
        if (add_example(c, r.rec_line, t, tl, label)) goto done;
    }
done:
    pc_csv_free(&r);
    return rc < 0 ? -1 : 0;
}

/* ---- the file ---- */

int pc_cls_data_load(pc_cls_data *d, const char *path, const pc_text_tokenizer *tok, int max_len, int num_labels,
                     const pc_cls_labels *labels, bool need_labels, char *err, size_t errlen) {
    *d = (pc_cls_data){0};
    if (num_labels < 1)
        return pc_errf(err, errlen, "%s: num_labels %d: a classifier needs at least one label", path, num_labels);
    if (labels && labels->n != num_labels)
        return pc_errf(err, errlen, "%s: %d label names, but the model has %d labels (num_labels in its config.json)",
                       labels->path, labels->n, num_labels);
    /* the special tokens alone must leave room for text */
    int32_t *sp;
    size_t nsp;
    char msg[512];
    if (pc_text_encode(tok, "", 0, true, &sp, &nsp, msg, sizeof msg)) return pc_errf(err, errlen, "%s", msg);
    free(sp);
    if (max_len < 1 || (size_t)max_len <= nsp)
        return pc_errf(err, errlen, "max_len %d leaves no room for text: the tokenizer (%s) adds %zu special tokens",
                       max_len, tok->path, nsp);
    char *text;
    size_t len;
    if (pc_read_file_max(path, MAX_DATA_BYTES, &text, &len, err, errlen)) return -1;
    ctx c = {path, tok, max_len, num_labels, labels, need_labels, d, 0, err, errlen};
    size_t bom = len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0, i = bom;
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n')) i++;
    int rc = 0;
    if (!(d->path = strdup(path))) rc = pc_errf(err, errlen, "%s: out of memory", path);
    else if (i < len && text[i] == '[')
        rc = pc_errf(err, errlen, "%s: a JSON list: give JSONL (one JSON object per line) or CSV", path);
    else if (i < len)
        rc = text[i] == '{' ? load_jsonl(&c, text + bom, len - bom) : load_csv(&c, text, len);
    free(text);
    if (rc == 0 && d->n == 0) rc = pc_errf(err, errlen, "%s: no examples", path);
    if (rc) pc_cls_data_free(d);
    return rc;
}

void pc_cls_data_free(pc_cls_data *d) {
    for (size_t i = 0; d->ex && i < d->n; i++) free(d->ex[i].ids);
    free(d->ex);
    free(d->path);
    *d = (pc_cls_data){0};
}
