/* tokenizer.json reader: messages, JSON field readers, piece and id lists. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fileio.h"
#include "runtime/tokenizer_json_internal.h"

int pc_hft_fail(const pc_hft_ctx *cx, const char *field, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (field && *field) return pc_errf(cx->err, cx->errlen, "%s: %s: %s", cx->file, field, msg);
    return pc_errf(cx->err, cx->errlen, "%s: %s", cx->file, msg);
}

int pc_hft_oom(const pc_hft_ctx *cx, const char *field) {
    return pc_hft_fail(cx, field, "out of memory");
}

static const char *type_name(const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* "path.key" (or "key" at the top) into buf */
static const char *join(char *buf, size_t n, const char *path, const char *key) {
    if (path && *path)
        pc_hft_pathf(buf, n, "%s.%s", path, key);
    else
        pc_hft_pathf(buf, n, "%s", key);
    return buf;
}

json_t *pc_hft_get(const pc_hft_ctx *cx, json_t *obj, const char *path, const char *key,
                   bool optional) {
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    if (!v && !optional) {
        char f[256];
        pc_hft_fail(cx, join(f, sizeof f, path, key), "missing");
    }
    return v;
}

int pc_hft_get_bool(const pc_hft_ctx *cx, json_t *obj, const char *path, const char *key,
                    bool dflt_present, bool dflt, bool *out) {
    char f[256];
    json_t *v = pc_hft_get(cx, obj, path, key, dflt_present);
    if (!v) {
        if (!dflt_present) return -1;
        *out = dflt;
        return 0;
    }
    if (!json_is_boolean(v))
        return pc_hft_fail(cx, join(f, sizeof f, path, key), "expected a boolean, got %s",
                           type_name(v));
    *out = json_is_true(v);
    return 0;
}

int pc_hft_get_str(const pc_hft_ctx *cx, json_t *obj, const char *path, const char *key,
                   bool null_ok, const char **out, size_t *len) {
    char f[256];
    json_t *v = pc_hft_get(cx, obj, path, key, null_ok);
    if (!v || (null_ok && json_is_null(v))) {
        if (!null_ok) return -1;
        *out = NULL;
        if (len) *len = 0;
        return 0;
    }
    if (!json_is_string(v))
        return pc_hft_fail(cx, join(f, sizeof f, path, key), "expected a string%s, got %s",
                           null_ok ? " or null" : "", type_name(v));
    *out = json_string_value(v);
    if (len) *len = json_string_length(v);
    return 0;
}

int pc_hft_get_int(const pc_hft_ctx *cx, json_t *obj, const char *path, const char *key, int64_t lo,
                   int64_t hi, int64_t *out) {
    char f[256];
    json_t *v = pc_hft_get(cx, obj, path, key, false);
    if (!v) return -1;
    if (!json_is_integer(v))
        return pc_hft_fail(cx, join(f, sizeof f, path, key), "expected an integer, got %s",
                           type_name(v));
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return pc_hft_fail(cx, join(f, sizeof f, path, key), "%lld is out of range [%lld, %lld]",
                           (long long)x, (long long)lo, (long long)hi);
    *out = x;
    return 0;
}

int pc_hft_get_type(const pc_hft_ctx *cx, json_t *obj, const char *path, const char **type) {
    if (!json_is_object(obj))
        return pc_hft_fail(cx, path, "expected an object, got %s", type_name(obj));
    return pc_hft_get_str(cx, obj, path, "type", false, type, NULL);
}

void pc_hft_pathf(char *buf, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, n, fmt, ap);
    va_end(ap);
}

char *pc_hft_strndup(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* ---- pieces ---- */

int pc_hft_pieces_add(pc_hft_pieces *ps, const char *s, size_t len, int32_t id, bool at_start) {
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 16;
        pc_hft_piece *v = realloc(ps->v, cap * sizeof *v);
        if (!v) return -1;
        ps->v = v;
        ps->cap = cap;
    }
    size_t off = ps->text.len;
    if (pc_hft_buf_put(&ps->text, s, len)) return -1;
    ps->v[ps->n++] = (pc_hft_piece){.off = off, .len = len, .id = id, .at_start = at_start};
    return 0;
}

void pc_hft_pieces_clear(pc_hft_pieces *ps) {
    ps->n = 0;
    ps->text.len = 0;
}

void pc_hft_pieces_free(pc_hft_pieces *ps) {
    pc_hft_buf_free(&ps->text);
    free(ps->v);
    ps->v = NULL;
    ps->n = ps->cap = 0;
}

int pc_hft_ids_push(pc_hft_ids *ids, int32_t id) {
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 64;
        int32_t *v = realloc(ids->v, cap * sizeof *v);
        if (!v) return -1;
        ids->v = v;
        ids->cap = cap;
    }
    ids->v[ids->n++] = id;
    return 0;
}

int pc_hft_spans_push(pc_hft_spans *sp, size_t start, size_t end, bool match) {
    if (sp->n == sp->cap) {
        size_t cap = sp->cap ? sp->cap * 2 : 32;
        pc_hft_span *v = realloc(sp->v, cap * sizeof *v);
        if (!v) return -1;
        sp->v = v;
        sp->cap = cap;
    }
    sp->v[sp->n++] = (pc_hft_span){start, end, match};
    return 0;
}
