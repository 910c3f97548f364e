/* tokenizer.json post-processors for one sequence: BertProcessing ([CLS] $A [SEP]),
 * RobertaProcessing (<s> $A </s>), TemplateProcessing (the "single" template), ByteLevel
 * (offsets only: ids unchanged), Sequence. Only ids are produced (no type ids or offsets). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fileio.h"
#include "runtime/tokenizer_json_internal.h"

typedef enum { PP_TEMPLATE, PP_BERT, PP_ROBERTA, PP_BYTE_LEVEL, PP_SEQ } post_kind;

typedef struct {
    bool seq; /* $A */
    int32_t *ids; /* a special token's ids */
    size_t n;
} item;

struct pc_hft_post {
    post_kind kind;
    item *items; /* the single-sequence template */
    size_t nitems;
    pc_hft_post **seq;
    size_t nseq;
};

void pc_hft_post_free(pc_hft_post *p) {
    if (!p) return;
    for (size_t i = 0; i < p->nitems; i++) free(p->items[i].ids);
    free(p->items);
    for (size_t i = 0; i < p->nseq; i++) pc_hft_post_free(p->seq[i]);
    free(p->seq);
    free(p);
}

static int add_item(pc_hft_post *p, bool seq, const int32_t *ids, size_t n) {
    item *v = realloc(p->items, (p->nitems + 1) * sizeof *v);
    if (!v) return -1;
    p->items = v;
    item *it = &v[p->nitems];
    *it = (item){seq, NULL, n};
    if (n) {
        if (!(it->ids = malloc(n * sizeof *it->ids))) return -1;
        memcpy(it->ids, ids, n * sizeof *ids);
    }
    p->nitems++;
    return 0;
}

pc_hft_post *pc_hft_post_bos_eos(int32_t bos, int32_t eos) {
    pc_hft_post *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->kind = PP_TEMPLATE;
    if ((bos >= 0 && add_item(p, false, &bos, 1)) || add_item(p, true, NULL, 0) ||
        (eos >= 0 && add_item(p, false, &eos, 1))) {
        pc_hft_post_free(p);
        return NULL;
    }
    return p;
}

typedef struct {
    pc_hft_is_token is_token;
    const void *ctx;
    int32_t bound;
} vocab_ref;

/* an id some token has (an id between tokens' ids is refused too) */
static int check_id(const pc_hft_ctx *cx, const char *field, json_int_t id, const vocab_ref *v) {
    if (id < 0 || id >= v->bound || !v->is_token(v->ctx, (int32_t)id))
        return pc_hft_fail(cx, field, "id %lld is not in the vocabulary (ids 0..%d)", (long long)id,
                           v->bound - 1);
    return 0;
}

/* "cls": ["<s>", 0] */
static int token_pair(const pc_hft_ctx *cx, json_t *j, const char *path, const char *key,
                      const vocab_ref *bound, int32_t *id) {
    char f[256];
    pc_hft_pathf(f, sizeof f, "%s.%s", path, key);
    json_t *v = pc_hft_get(cx, j, path, key, false);
    if (!v) return -1;
    if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_string(json_array_get(v, 0)) ||
        !json_is_integer(json_array_get(v, 1)))
        return pc_hft_fail(cx, f, "expected [token, id]");
    json_int_t x = json_integer_value(json_array_get(v, 1));
    if (check_id(cx, f, x, bound)) return -1;
    *id = (int32_t)x;
    return 0;
}

static int parse_template(const pc_hft_ctx *cx, json_t *j, const char *path,
                          const vocab_ref *bound, pc_hft_post *p) {
    char f[256], g[300];
    json_t *single = pc_hft_get(cx, j, path, "single", false);
    json_t *specials = pc_hft_get(cx, j, path, "special_tokens", false);
    if (!single || !specials) return -1;
    pc_hft_pathf(f, sizeof f, "%s.single", path);
    if (!json_is_array(single)) return pc_hft_fail(cx, f, "expected an array");
    if (!json_is_object(specials)) {
        pc_hft_pathf(g, sizeof g, "%s.special_tokens", path);
        return pc_hft_fail(cx, g, "expected an object");
    }
    for (size_t i = 0; i < json_array_size(single); i++) {
        json_t *e = json_array_get(single, i), *body;
        pc_hft_pathf(g, sizeof g, "%s[%zu]", f, i);
        if (!json_is_object(e) || json_object_size(e) != 1)
            return pc_hft_fail(cx, g, "expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
        if ((body = json_object_get(e, "Sequence"))) {
            const char *id;
            if (pc_hft_get_str(cx, body, g, "id", false, &id, NULL)) return -1;
            if (strcmp(id, "A"))
                return pc_hft_fail(cx, g, "sequence %s in the single-sequence template", id);
            if (add_item(p, true, NULL, 0)) return pc_hft_oom(cx, g);
        } else if ((body = json_object_get(e, "SpecialToken"))) {
            const char *id;
            if (pc_hft_get_str(cx, body, g, "id", false, &id, NULL)) return -1;
            json_t *st = json_object_get(specials, id), *ids;
            char h[400];
            pc_hft_pathf(h, sizeof h, "%s.special_tokens[\"%.100s\"]", path, id);
            if (!st) return pc_hft_fail(cx, g, "special token \"%s\" is not in special_tokens", id);
            if (!(ids = pc_hft_get(cx, st, h, "ids", false))) return -1;
            if (!json_is_array(ids)) return pc_hft_fail(cx, h, "ids: expected an array");
            size_t n = json_array_size(ids);
            int32_t *v = malloc((n ? n : 1) * sizeof *v);
            if (!v) return pc_hft_oom(cx, h);
            for (size_t k = 0; k < n; k++) {
                json_t *x = json_array_get(ids, k);
                char q[420];
                pc_hft_pathf(q, sizeof q, "%s.ids[%zu]", h, k);
                if (!json_is_integer(x)) {
                    free(v);
                    return pc_hft_fail(cx, q, "expected an integer");
                }
                if (check_id(cx, q, json_integer_value(x), bound)) {
                    free(v);
                    return -1;
                }
                v[k] = (int32_t)json_integer_value(x);
            }
            int rc = add_item(p, false, v, n);
            free(v);
            if (rc) return pc_hft_oom(cx, h);
        } else {
            return pc_hft_fail(cx, g, "expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
        }
    }
    return 0;
}

int pc_hft_post_parse(const pc_hft_ctx *cx, json_t *j, const char *path, pc_hft_is_token is_token,
                      const void *ctx, int32_t id_bound, pc_hft_post **out) {
    const vocab_ref vr = {is_token, ctx, id_bound}, *bound = &vr;
    const char *type;
    char f[256];
    *out = NULL;
    if (pc_hft_get_type(cx, j, path, &type)) return -1;
    pc_hft_post *p = calloc(1, sizeof *p);
    if (!p) return pc_hft_oom(cx, path);
    if (!strcmp(type, "TemplateProcessing")) {
        p->kind = PP_TEMPLATE;
        if (parse_template(cx, j, path, bound, p)) goto fail;
    } else if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        p->kind = type[0] == 'B' ? PP_BERT : PP_ROBERTA;
        int32_t cls, sep;
        if (token_pair(cx, j, path, "cls", bound, &cls) ||
            token_pair(cx, j, path, "sep", bound, &sep))
            goto fail;
        if (add_item(p, false, &cls, 1) || add_item(p, true, NULL, 0) ||
            add_item(p, false, &sep, 1)) {
            pc_hft_oom(cx, path);
            goto fail;
        }
    } else if (!strcmp(type, "ByteLevel")) {
        p->kind = PP_BYTE_LEVEL; /* trim_offsets, add_prefix_space: offsets only */
    } else if (!strcmp(type, "Sequence")) {
        p->kind = PP_SEQ;
        json_t *a = pc_hft_get(cx, j, path, "processors", false);
        pc_hft_pathf(f, sizeof f, "%s.processors", path);
        if (!a) goto fail;
        if (!json_is_array(a)) {
            pc_hft_fail(cx, f, "expected an array");
            goto fail;
        }
        if (!(p->seq = calloc(json_array_size(a) + 1, sizeof *p->seq))) {
            pc_hft_oom(cx, path);
            goto fail;
        }
        for (size_t i = 0; i < json_array_size(a); i++) {
            char g[300];
            pc_hft_pathf(g, sizeof g, "%s[%zu]", f, i);
            if (pc_hft_post_parse(cx, json_array_get(a, i), g, is_token, ctx, id_bound,
                                  &p->seq[p->nseq]))
                goto fail;
            p->nseq++;
        }
    } else {
        pc_hft_pathf(f, sizeof f, "%s.type", path);
        pc_hft_fail(cx, f, "unsupported post-processor type %s", type);
        goto fail;
    }
    *out = p;
    return 0;
fail:
    pc_hft_post_free(p);
    return -1;
}

static int apply1(const pc_hft_post *p, const int32_t *ids, size_t n, bool add_special,
                  pc_hft_ids *out) {
    if (p->kind == PP_SEQ) {
        pc_hft_ids a = {0}, b = {0};
        int rc = 0;
        for (size_t i = 0; i < n && !rc; i++) rc = pc_hft_ids_push(&a, ids[i]);
        for (size_t k = 0; k < p->nseq && !rc; k++) {
            b.n = 0;
            rc = apply1(p->seq[k], a.v, a.n, add_special, &b);
            pc_hft_ids t = a;
            a = b;
            b = t;
        }
        for (size_t i = 0; i < a.n && !rc; i++) rc = pc_hft_ids_push(out, a.v[i]);
        free(a.v);
        free(b.v);
        return rc;
    }
    if (p->kind == PP_BYTE_LEVEL || !add_special) {
        for (size_t i = 0; i < n; i++)
            if (pc_hft_ids_push(out, ids[i])) return -1;
        return 0;
    }
    for (size_t k = 0; k < p->nitems; k++) {
        const item *it = &p->items[k];
        const int32_t *v = it->seq ? ids : it->ids;
        size_t m = it->seq ? n : it->n;
        for (size_t i = 0; i < m; i++)
            if (pc_hft_ids_push(out, v[i])) return -1;
    }
    return 0;
}

int pc_hft_post_apply(const pc_hft_post *p, const int32_t *ids, size_t n, bool add_special,
                      pc_hft_ids *out) {
    if (!p) {
        for (size_t i = 0; i < n; i++)
            if (pc_hft_ids_push(out, ids[i])) return -1;
        return 0;
    }
    return apply1(p, ids, n, add_special, out);
}

size_t pc_hft_post_added(const pc_hft_post *p) {
    if (!p) return 0;
    size_t n = 0;
    for (size_t k = 0; k < p->nitems; k++)
        if (!p->items[k].seq) n += p->items[k].n;
    for (size_t k = 0; k < p->nseq; k++) n += pc_hft_post_added(p->seq[k]);
    return n;
}

void pc_hft_post_roles(const pc_hft_post *p, int32_t *before, int32_t *after, int *kind) {
    *before = *after = -1;
    *kind = PC_HFT_ROLES_NONE;
    if (!p) return;
    if (p->kind == PP_SEQ) {
        for (size_t k = 0; k < p->nseq && *kind == PC_HFT_ROLES_NONE; k++)
            pc_hft_post_roles(p->seq[k], before, after, kind);
        return;
    }
    if (p->kind == PP_BYTE_LEVEL) return;
    bool seen = false;
    for (size_t k = 0; k < p->nitems; k++) {
        const item *it = &p->items[k];
        if (it->seq)
            seen = true;
        else if (it->n && !seen && *before < 0)
            *before = it->ids[0];
        else if (it->n && seen && *after < 0)
            *after = it->ids[0];
    }
    *kind = p->kind == PP_BERT      ? PC_HFT_ROLES_BERT
            : p->kind == PP_ROBERTA ? PC_HFT_ROLES_ROBERTA
                                    : PC_HFT_ROLES_TEMPLATE;
}
