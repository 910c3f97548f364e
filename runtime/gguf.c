/* GGUF reader: the header is parsed and validated in one pass against the file size; strings are
 * copied (NUL-terminated) into one arena, numeric arrays and tensor data stay in the mapping. */
#include "runtime/gguf.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fileio.h"
#include "runtime/gguf_internal.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "GGUF files are read as little-endian; big-endian hosts are not supported"
#endif

#define GGUF_DEFAULT_ALIGNMENT 32u
/* the fewest bytes one metadata entry / one tensor info can take: an empty key, a type, a
 * one-byte value / an empty name, n_dims 0, a type, an offset */
#define KV_MIN_BYTES 13u
#define TINFO_MIN_BYTES 24u

typedef struct {
    size_t off, len; /* in the string arena */
} strref;

typedef union {
    uint64_t u;
    int64_t i;
    double f;
} num;

typedef struct {
    strref key;
    uint32_t type;     /* pc_gguf_vtype */
    uint32_t arr_type; /* ARRAY: element type */
    uint64_t n;        /* ARRAY: length */
    num v;             /* numeric scalars and bools */
    strref s;          /* STRING */
    size_t at;         /* numeric ARRAY: file offset of element 0; string ARRAY: first ref */
    size_t raw, raw_len; /* the whole entry (key, type, value) in the file */
} gguf_kv;

typedef struct {
    const char *name;
    int idx;
} name_idx;

struct pc_gguf {
    char *path;
    pc_mmap map; /* empty when opened on a caller's buffer */
    const unsigned char *p;
    size_t len;
    uint32_t version, alignment;
    int n_kv;
    gguf_kv *kv;
    name_idx *kv_by_key;
    int n_t;
    pc_gguf_tensor *t;
    name_idx *t_by_name;
    strref *t_name; /* tensor names while parsing (the arena may still move) */
    char *strs;
    size_t strs_len, strs_cap;
    strref *refs; /* elements of string arrays */
    size_t n_refs, refs_cap;
};

/* ---- value types ---- */

static const char *const vtype_names[] = {"uint8",  "int8",    "uint16", "int16", "uint32",
                                          "int32",  "float32", "bool",   "string", "array",
                                          "uint64", "int64",   "float64"};

const char *pc_gguf_vtype_name(int type) {
    return type >= 0 && type <= PC_GGUF_FLOAT64 ? vtype_names[type] : "?";
}

/* bytes of one value of a fixed-size type, 0 for string / array / unknown */
static size_t vtype_size(uint32_t t) {
    switch (t) {
    case PC_GGUF_UINT8: case PC_GGUF_INT8: case PC_GGUF_BOOL: return 1;
    case PC_GGUF_UINT16: case PC_GGUF_INT16: return 2;
    case PC_GGUF_UINT32: case PC_GGUF_INT32: case PC_GGUF_FLOAT32: return 4;
    case PC_GGUF_UINT64: case PC_GGUF_INT64: case PC_GGUF_FLOAT64: return 8;
    }
    return 0;
}

static int is_int_type(uint32_t t) {
    return t <= PC_GGUF_INT32 || t == PC_GGUF_UINT64 || t == PC_GGUF_INT64;
}
static int is_signed_type(uint32_t t) {
    return t == PC_GGUF_INT8 || t == PC_GGUF_INT16 || t == PC_GGUF_INT32 || t == PC_GGUF_INT64;
}

/* decodes one little-endian value of a fixed-size type (bounds already checked) */
static num decode_num(uint32_t t, const unsigned char *p) {
    num v = {0};
    switch (t) {
    case PC_GGUF_UINT8: v.u = p[0]; break;
    case PC_GGUF_INT8: v.i = (int8_t)p[0]; break;
    case PC_GGUF_BOOL: v.u = p[0] != 0; break;
    case PC_GGUF_UINT16: { uint16_t x; memcpy(&x, p, 2); v.u = x; } break;
    case PC_GGUF_INT16: { int16_t x; memcpy(&x, p, 2); v.i = x; } break;
    case PC_GGUF_UINT32: { uint32_t x; memcpy(&x, p, 4); v.u = x; } break;
    case PC_GGUF_INT32: { int32_t x; memcpy(&x, p, 4); v.i = x; } break;
    case PC_GGUF_FLOAT32: { float x; memcpy(&x, p, 4); v.f = x; } break;
    case PC_GGUF_UINT64: memcpy(&v.u, p, 8); break;
    case PC_GGUF_INT64: memcpy(&v.i, p, 8); break;
    case PC_GGUF_FLOAT64: memcpy(&v.f, p, 8); break;
    }
    return v;
}

/* ---- parsing ---- */

typedef struct {
    pc_gguf *g;
    size_t pos;
    char ctx[320]; /* "metadata key 'x'", "tensor 'y'": what the next error is about */
    char *err;
    size_t errlen;
} rd;

static int avail(const rd *r, uint64_t n) { return n <= r->g->len - r->pos; }

static int past_end(rd *r, const char *what, uint64_t need) {
    return pc_errf(r->err, r->errlen,
                   "%s: %s: %s (%llu bytes at offset %zu) runs past the end of the file "
                   "(%zu bytes; truncated?)",
                   r->g->path, r->ctx, what, (unsigned long long)need, r->pos, r->g->len);
}

/* rd_u32, rd_u64: *out is 0 after a failure */
static int rd_u32(rd *r, uint32_t *out, const char *what) {
    *out = 0;
    if (!avail(r, 4)) return past_end(r, what, 4);
    memcpy(out, r->g->p + r->pos, 4);
    r->pos += 4;
    return 0;
}

static int rd_u64(rd *r, uint64_t *out, const char *what) {
    *out = 0;
    if (!avail(r, 8)) return past_end(r, what, 8);
    memcpy(out, r->g->p + r->pos, 8);
    r->pos += 8;
    return 0;
}

static int oom(rd *r) { return pc_errf(r->err, r->errlen, "%s: out of memory", r->g->path); }

/* a length-prefixed string, copied into the arena with a NUL after it */
static int rd_str(rd *r, strref *s, const char *what) {
    pc_gguf *g = r->g;
    uint64_t n;
    char lw[64];
    snprintf(lw, sizeof lw, "%s length", what);
    if (rd_u64(r, &n, lw)) return -1;
    if (!avail(r, n))
        return pc_errf(r->err, r->errlen,
                       "%s: %s: %s length %llu at offset %zu runs past the end of the file "
                       "(%zu bytes)",
                       g->path, r->ctx, what, (unsigned long long)n, r->pos - 8, g->len);
    if (g->strs_cap - g->strs_len < n + 1) { /* n < file size: no overflow */
        size_t cap = g->strs_cap ? g->strs_cap : 4096;
        while (cap - g->strs_len < n + 1) cap *= 2;
        char *p = realloc(g->strs, cap);
        if (!p) return oom(r);
        g->strs = p;
        g->strs_cap = cap;
    }
    memcpy(g->strs + g->strs_len, g->p + r->pos, (size_t)n);
    g->strs[g->strs_len + n] = '\0';
    *s = (strref){g->strs_len, (size_t)n};
    g->strs_len += (size_t)n + 1;
    r->pos += (size_t)n;
    return 0;
}

/* keys and tensor names are looked up as C strings: a NUL inside would make them unreachable */
static int check_name(rd *r, strref s, const char *what, uint64_t i) {
    if (memchr(r->g->strs + s.off, '\0', s.len))
        return pc_errf(r->err, r->errlen, "%s: %s #%llu contains a NUL byte", r->g->path, what,
                       (unsigned long long)i);
    return 0;
}

static int rd_array(rd *r, gguf_kv *kv) {
    pc_gguf *g = r->g;
    if (rd_u32(r, &kv->arr_type, "array element type") || rd_u64(r, &kv->n, "array length"))
        return -1;
    uint32_t et = kv->arr_type;
    if (et == PC_GGUF_ARRAY)
        return pc_errf(r->err, r->errlen, "%s: %s: arrays of arrays are not supported", g->path,
                       r->ctx);
    if (et == PC_GGUF_STRING) {
        /* every element takes at least its 8-byte length: bounds the index before allocating */
        if (kv->n > (g->len - r->pos) / 8)
            return pc_errf(r->err, r->errlen,
                           "%s: %s: array of %llu strings at offset %zu cannot fit in the %zu "
                           "bytes left in the file",
                           g->path, r->ctx, (unsigned long long)kv->n, r->pos, g->len - r->pos);
        if (g->refs_cap - g->n_refs < kv->n) {
            size_t cap = g->refs_cap ? g->refs_cap : 256;
            while (cap - g->n_refs < kv->n) cap *= 2;
            strref *p = realloc(g->refs, cap * sizeof *p);
            if (!p) return oom(r);
            g->refs = p;
            g->refs_cap = cap;
        }
        kv->at = g->n_refs;
        for (uint64_t i = 0; i < kv->n; i++) {
            char what[48];
            snprintf(what, sizeof what, "string [%llu]", (unsigned long long)i);
            if (rd_str(r, &g->refs[g->n_refs], what)) return -1;
            g->n_refs++;
        }
        return 0;
    }
    size_t es = vtype_size(et);
    if (!es)
        return pc_errf(r->err, r->errlen, "%s: %s: unknown array element type %u", g->path,
                       r->ctx, et);
    if (kv->n > (g->len - r->pos) / es)
        return pc_errf(r->err, r->errlen,
                       "%s: %s: array of %llu %s values at offset %zu runs past the end of the "
                       "file (%zu bytes)",
                       g->path, r->ctx, (unsigned long long)kv->n, vtype_names[et], r->pos,
                       g->len);
    kv->at = r->pos;
    r->pos += (size_t)kv->n * es;
    return 0;
}

static int rd_kv_body(rd *r, gguf_kv *kv, uint64_t i) {
    pc_gguf *g = r->g;
    snprintf(r->ctx, sizeof r->ctx, "metadata entry #%llu", (unsigned long long)i);
    if (rd_str(r, &kv->key, "key") || check_name(r, kv->key, "metadata key", i)) return -1;
    snprintf(r->ctx, sizeof r->ctx, "metadata key '%.200s'", g->strs + kv->key.off);
    if (rd_u32(r, &kv->type, "value type")) return -1;
    if (kv->type == PC_GGUF_STRING) return rd_str(r, &kv->s, "string value");
    if (kv->type == PC_GGUF_ARRAY) return rd_array(r, kv);
    size_t sz = vtype_size(kv->type);
    if (!sz)
        return pc_errf(r->err, r->errlen, "%s: %s: unknown value type %u", g->path, r->ctx,
                       kv->type);
    if (!avail(r, sz)) return past_end(r, "value", sz);
    kv->v = decode_num(kv->type, g->p + r->pos);
    r->pos += sz;
    return 0;
}

static int rd_kv(rd *r, uint64_t i) {
    gguf_kv *kv = &r->g->kv[i];
    kv->raw = r->pos;
    if (rd_kv_body(r, kv, i)) return -1;
    kv->raw_len = r->pos - kv->raw;
    return 0;
}

/* general.alignment: a uint32 power of two when present (ggml's rule) */
static int read_alignment(rd *r) {
    pc_gguf *g = r->g;
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    for (int i = 0; i < g->n_kv; i++) {
        if (strcmp(g->strs + g->kv[i].key.off, "general.alignment") != 0) continue;
        if (g->kv[i].type != PC_GGUF_UINT32)
            return pc_errf(r->err, r->errlen,
                           "%s: metadata key 'general.alignment' is %s, expected uint32",
                           g->path, pc_gguf_vtype_name((int)g->kv[i].type));
        uint64_t a = g->kv[i].v.u;
        if (a == 0 || (a & (a - 1)))
            return pc_errf(r->err, r->errlen,
                           "%s: metadata key 'general.alignment' is %llu, not a power of two",
                           g->path, (unsigned long long)a);
        g->alignment = (uint32_t)a;
    }
    return 0;
}

static int rd_tensor_info(rd *r, uint64_t i) {
    pc_gguf *g = r->g;
    pc_gguf_tensor *t = &g->t[i];
    snprintf(r->ctx, sizeof r->ctx, "tensor info #%llu", (unsigned long long)i);
    if (rd_str(r, &g->t_name[i], "name") || check_name(r, g->t_name[i], "tensor name", i))
        return -1;
    snprintf(r->ctx, sizeof r->ctx, "tensor '%.200s'", g->strs + g->t_name[i].off);
    uint32_t nd;
    if (rd_u32(r, &nd, "n_dims")) return -1;
    if (nd > PC_GGUF_MAX_DIMS)
        return pc_errf(r->err, r->errlen, "%s: %s: %u dims, at most %d supported", g->path,
                       r->ctx, nd, PC_GGUF_MAX_DIMS);
    t->n_dims = (int)nd;
    uint64_t numel = 1;
    int overflow = 0;
    for (int d = 0; d < PC_GGUF_MAX_DIMS; d++) {
        uint64_t x = 1;
        if (d < t->n_dims) {
            char what[16];
            snprintf(what, sizeof what, "ne[%d]", d);
            if (rd_u64(r, &x, what)) return -1;
            if (x > (uint64_t)INT64_MAX)
                return pc_errf(r->err, r->errlen, "%s: %s: ne[%d] = %llu is negative as int64",
                               g->path, r->ctx, d, (unsigned long long)x);
        }
        t->ne[d] = (int64_t)x;
        /* every partial product too (ggml multiplies the dims in int64, left to right): dims
         * such as [64, 2^57, 0] are refused though their product is 0, as the writer does */
        overflow |= __builtin_mul_overflow(numel, x, &numel) || numel > (uint64_t)INT64_MAX;
    }
    if (rd_u32(r, &t->type, "type") || rd_u64(r, &t->offset, "offset")) return -1;
    const pc_gguf_ttype_info *ti = pc_gguf_ttype(t->type);
    if (!ti)
        return pc_errf(r->err, r->errlen, "%s: %s: unknown GGML tensor type id %u", g->path,
                       r->ctx, t->type);
    if (overflow || numel > (uint64_t)INT64_MAX)
        return pc_errf(r->err, r->errlen,
                       "%s: %s: dims %lld x %lld x %lld x %lld overflow the element count",
                       g->path, r->ctx, (long long)t->ne[0], (long long)t->ne[1],
                       (long long)t->ne[2], (long long)t->ne[3]);
    if (t->ne[0] % ti->block)
        return pc_errf(r->err, r->errlen,
                       "%s: %s: ne[0] = %lld is not a multiple of the %s block size %u", g->path,
                       r->ctx, (long long)t->ne[0], ti->name, ti->block);
    uint64_t nbytes;
    if (__builtin_mul_overflow(numel / ti->block, (uint64_t)ti->block_bytes, &nbytes) ||
        nbytes > SIZE_MAX)
        return pc_errf(r->err, r->errlen, "%s: %s: %llu %s elements overflow the byte count",
                       g->path, r->ctx, (unsigned long long)numel, ti->name);
    t->numel = (int64_t)numel;
    t->nbytes = (size_t)nbytes;
    return 0;
}

static int cmp_name_idx(const void *a, const void *b) {
    return strcmp(((const name_idx *)a)->name, ((const name_idx *)b)->name);
}

/* a name → index table sorted by name; a duplicate is an error */
static int build_index(rd *r, name_idx **out, int n, const char *(*name_of)(const pc_gguf *, int),
                       const char *what) {
    name_idx *ni = calloc(n > 0 ? (size_t)n : 1, sizeof *ni);
    if (!ni) return oom(r);
    for (int i = 0; i < n; i++) ni[i] = (name_idx){name_of(r->g, i), i};
    qsort(ni, (size_t)n, sizeof *ni, cmp_name_idx);
    *out = ni;
    for (int i = 1; i < n; i++)
        if (strcmp(ni[i - 1].name, ni[i].name) == 0)
            return pc_errf(r->err, r->errlen, "%s: duplicate %s '%.200s'", r->g->path, what,
                           ni[i].name);
    return 0;
}

static const char *kv_name(const pc_gguf *g, int i) { return g->strs + g->kv[i].key.off; }
static const char *t_name(const pc_gguf *g, int i) { return g->t[i].name; }

typedef struct {
    uint64_t offset;
    size_t nbytes;
    int idx;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

/* offsets aligned, data inside the file, no two tensors sharing bytes */
static int check_data(rd *r) {
    pc_gguf *g = r->g;
    size_t a = g->alignment;
    size_t data_start = r->pos + (a - r->pos % a) % a;
    for (int i = 0; i < g->n_t; i++) {
        pc_gguf_tensor *t = &g->t[i];
        if (t->offset % a)
            return pc_errf(r->err, r->errlen,
                           "%s: tensor '%.200s': offset %llu is not a multiple of the alignment "
                           "%zu",
                           g->path, t->name, (unsigned long long)t->offset, a);
        if (data_start > g->len || t->offset > g->len - data_start ||
            t->nbytes > g->len - data_start - t->offset)
            return pc_errf(r->err, r->errlen,
                           "%s: tensor '%.200s': data (%zu bytes at offset %llu of the data "
                           "section starting at %zu) runs past the end of the file (%zu bytes; "
                           "truncated?)",
                           g->path, t->name, t->nbytes, (unsigned long long)t->offset, data_start,
                           g->len);
        t->data = g->p + data_start + t->offset;
    }
    span *s = calloc(g->n_t > 0 ? (size_t)g->n_t : 1, sizeof *s);
    if (!s) return oom(r);
    for (int i = 0; i < g->n_t; i++) s[i] = (span){g->t[i].offset, g->t[i].nbytes, i};
    qsort(s, (size_t)g->n_t, sizeof *s, cmp_span);
    const span *prev = NULL;
    int rc = 0;
    for (int i = 0; i < g->n_t && !rc; i++) {
        if (!s[i].nbytes) continue;
        if (prev && s[i].offset < prev->offset + prev->nbytes)
            rc = pc_errf(r->err, r->errlen, "%s: tensors '%.200s' and '%.200s' overlap", g->path,
                         g->t[prev->idx].name, g->t[s[i].idx].name);
        prev = &s[i];
    }
    free(s);
    return rc;
}

static int parse(pc_gguf *g, char *err, size_t errlen) {
    rd r = {.g = g, .err = err, .errlen = errlen};
    snprintf(r.ctx, sizeof r.ctx, "header");
    if (g->len < 4)
        return pc_errf(err, errlen, "%s: %zu bytes, too short for a GGUF file", g->path, g->len);
    if (memcmp(g->p, "GGUF", 4) != 0)
        return pc_errf(err, errlen,
                       "%s: not a GGUF file (magic %02x %02x %02x %02x, expected \"GGUF\")",
                       g->path, g->p[0], g->p[1], g->p[2], g->p[3]);
    r.pos = 4;
    uint64_t n_t, n_kv;
    if (rd_u32(&r, &g->version, "version")) return -1;
    if (g->version == 0x02000000u || g->version == 0x03000000u)
        return pc_errf(err, errlen, "%s: big-endian GGUF files are not supported", g->path);
    if (g->version == 1)
        return pc_errf(err, errlen,
                       "%s: GGUF version 1 is not supported (peftc reads versions 2 and 3)",
                       g->path);
    if (g->version != 2 && g->version != 3)
        return pc_errf(err, errlen, "%s: unknown GGUF version %u (peftc reads versions 2 and 3)",
                       g->path, g->version);
    if (rd_u64(&r, &n_t, "tensor count") || rd_u64(&r, &n_kv, "metadata count")) return -1;
    if (n_kv > (g->len - r.pos) / KV_MIN_BYTES || n_kv > INT_MAX)
        return pc_errf(err, errlen,
                       "%s: header: metadata count %llu cannot fit in the file (%zu bytes)",
                       g->path, (unsigned long long)n_kv, g->len);
    g->kv = calloc(n_kv ? (size_t)n_kv : 1, sizeof *g->kv);
    if (!g->kv) return oom(&r);
    for (uint64_t i = 0; i < n_kv; i++) {
        if (rd_kv(&r, i)) return -1;
        g->n_kv = (int)i + 1;
    }
    if (read_alignment(&r)) return -1;
    snprintf(r.ctx, sizeof r.ctx, "header");
    if (n_t > (g->len - r.pos) / TINFO_MIN_BYTES || n_t > INT_MAX)
        return pc_errf(err, errlen,
                       "%s: header: tensor count %llu cannot fit in the %zu bytes left after the "
                       "metadata",
                       g->path, (unsigned long long)n_t, g->len - r.pos);
    g->t = calloc(n_t ? (size_t)n_t : 1, sizeof *g->t);
    g->t_name = calloc(n_t ? (size_t)n_t : 1, sizeof *g->t_name);
    if (!g->t || !g->t_name) return oom(&r);
    for (uint64_t i = 0; i < n_t; i++) {
        if (rd_tensor_info(&r, i)) return -1;
        g->n_t = (int)i + 1;
    }
    /* the arena is final: names become pointers */
    for (int i = 0; i < g->n_t; i++) g->t[i].name = g->strs + g->t_name[i].off;
    if (build_index(&r, &g->kv_by_key, g->n_kv, kv_name, "metadata key") ||
        build_index(&r, &g->t_by_name, g->n_t, t_name, "tensor name"))
        return -1;
    return check_data(&r);
}

static pc_gguf *open_common(pc_gguf *g, char *err, size_t errlen) {
    if (parse(g, err, errlen)) {
        pc_gguf_close(g);
        return NULL;
    }
    return g;
}

pc_gguf *pc_gguf_open(const char *path, char *err, size_t errlen) {
    pc_gguf *g = calloc(1, sizeof *g);
    if (!g || !(g->path = strdup(path))) {
        free(g);
        pc_errf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    if (pc_mmap_open(&g->map, path, err, errlen)) {
        pc_gguf_close(g);
        return NULL;
    }
    g->p = g->map.data;
    g->len = g->map.len;
    return open_common(g, err, errlen);
}

pc_gguf *pc_gguf_open_mem(const void *data, size_t len, const char *name, char *err,
                          size_t errlen) {
    pc_gguf *g = calloc(1, sizeof *g);
    if (!g || !(g->path = strdup(name))) {
        free(g);
        pc_errf(err, errlen, "%s: out of memory", name);
        return NULL;
    }
    g->p = data;
    g->len = data ? len : 0;
    return open_common(g, err, errlen);
}

void pc_gguf_close(pc_gguf *g) {
    if (!g) return;
    free(g->kv);
    free(g->kv_by_key);
    free(g->t);
    free(g->t_by_name);
    free(g->t_name);
    free(g->strs);
    free(g->refs);
    pc_mmap_close(&g->map);
    free(g->path);
    free(g);
}

const char *pc_gguf_path(const pc_gguf *g) { return g->path; }
uint32_t pc_gguf_version(const pc_gguf *g) { return g->version; }
uint32_t pc_gguf_alignment(const pc_gguf *g) { return g->alignment; }

/* ---- metadata getters ---- */

int pc_gguf_kv_count(const pc_gguf *g) { return g->n_kv; }

int pc_gguf_kv_raw(const pc_gguf *g, int i, const void **data, size_t *len) {
    if (i < 0 || i >= g->n_kv) return -1;
    *data = g->p + g->kv[i].raw;
    *len = g->kv[i].raw_len;
    return 0;
}

const char *pc_gguf_kv_key(const pc_gguf *g, int i) {
    return i >= 0 && i < g->n_kv ? g->strs + g->kv[i].key.off : NULL;
}

static const gguf_kv *find_kv(const pc_gguf *g, const char *key) {
    name_idx k = {key, 0};
    const name_idx *hit = bsearch(&k, g->kv_by_key, (size_t)g->n_kv, sizeof k, cmp_name_idx);
    return hit ? &g->kv[hit->idx] : NULL;
}

int pc_gguf_kv_type(const pc_gguf *g, const char *key) {
    const gguf_kv *kv = find_kv(g, key);
    return kv ? (int)kv->type : -1;
}

/* the entry for key, or an error when it is missing */
static const gguf_kv *need_kv(const pc_gguf *g, const char *key, char *err, size_t errlen) {
    const gguf_kv *kv = find_kv(g, key);
    if (!kv) pc_errf(err, errlen, "%s: metadata key '%s' is missing", g->path, key);
    return kv;
}

static int wrong_type(const pc_gguf *g, const char *key, uint32_t type, const char *elem,
                      const char *want, char *err, size_t errlen) {
    return pc_errf(err, errlen, "%s: metadata key '%s'%s is %s, expected %s", g->path, key, elem,
                   pc_gguf_vtype_name((int)type), want);
}

static int as_int(const pc_gguf *g, const char *key, const char *elem, uint32_t type, num v,
                  int64_t *out, char *err, size_t errlen) {
    if (!is_int_type(type)) return wrong_type(g, key, type, elem, "an integer", err, errlen);
    if (is_signed_type(type)) {
        *out = v.i;
        return 0;
    }
    if (v.u > (uint64_t)INT64_MAX)
        return pc_errf(err, errlen, "%s: metadata key '%s'%s: %llu does not fit in int64",
                       g->path, key, elem, (unsigned long long)v.u);
    *out = (int64_t)v.u;
    return 0;
}

static int as_float(const pc_gguf *g, const char *key, const char *elem, uint32_t type, num v,
                    double *out, char *err, size_t errlen) {
    if (type == PC_GGUF_FLOAT32 || type == PC_GGUF_FLOAT64) {
        *out = v.f;
        return 0;
    }
    if (!is_int_type(type)) return wrong_type(g, key, type, elem, "a number", err, errlen);
    *out = is_signed_type(type) ? (double)v.i : (double)v.u;
    return 0;
}

int pc_gguf_get_str(const pc_gguf *g, const char *key, const char **out, size_t *len, char *err,
                    size_t errlen) {
    const gguf_kv *kv = need_kv(g, key, err, errlen);
    if (!kv) return -1;
    if (kv->type != PC_GGUF_STRING)
        return wrong_type(g, key, kv->type, "", "a string", err, errlen);
    *out = g->strs + kv->s.off;
    if (len) *len = kv->s.len;
    return 0;
}

int pc_gguf_get_int(const pc_gguf *g, const char *key, int64_t *out, char *err, size_t errlen) {
    const gguf_kv *kv = need_kv(g, key, err, errlen);
    return kv ? as_int(g, key, "", kv->type, kv->v, out, err, errlen) : -1;
}

int pc_gguf_get_float(const pc_gguf *g, const char *key, double *out, char *err, size_t errlen) {
    const gguf_kv *kv = need_kv(g, key, err, errlen);
    return kv ? as_float(g, key, "", kv->type, kv->v, out, err, errlen) : -1;
}

int pc_gguf_get_bool(const pc_gguf *g, const char *key, int *out, char *err, size_t errlen) {
    const gguf_kv *kv = need_kv(g, key, err, errlen);
    if (!kv) return -1;
    if (kv->type != PC_GGUF_BOOL) return wrong_type(g, key, kv->type, "", "bool", err, errlen);
    *out = (int)kv->v.u;
    return 0;
}

int pc_gguf_get_array(const pc_gguf *g, const char *key, pc_gguf_vtype *elem_type, uint64_t *len,
                      char *err, size_t errlen) {
    const gguf_kv *kv = need_kv(g, key, err, errlen);
    if (!kv) return -1;
    if (kv->type != PC_GGUF_ARRAY) return wrong_type(g, key, kv->type, "", "an array", err, errlen);
    if (elem_type) *elem_type = (pc_gguf_vtype)kv->arr_type;
    if (len) *len = kv->n;
    return 0;
}

/* the array entry for key with element i in range; elem receives "[i]" for messages */
static const gguf_kv *need_elem(const pc_gguf *g, const char *key, uint64_t i, char *elem,
                                size_t elen, char *err, size_t errlen) {
    const gguf_kv *kv = need_kv(g, key, err, errlen);
    if (!kv) return NULL;
    if (kv->type != PC_GGUF_ARRAY) {
        wrong_type(g, key, kv->type, "", "an array", err, errlen);
        return NULL;
    }
    if (i >= kv->n) {
        pc_errf(err, errlen, "%s: metadata key '%s': index %llu is past the array's %llu elements",
                g->path, key, (unsigned long long)i, (unsigned long long)kv->n);
        return NULL;
    }
    snprintf(elem, elen, "[%llu]", (unsigned long long)i);
    return kv;
}

int pc_gguf_array_str(const pc_gguf *g, const char *key, uint64_t i, const char **out,
                      size_t *len, char *err, size_t errlen) {
    char elem[32];
    const gguf_kv *kv = need_elem(g, key, i, elem, sizeof elem, err, errlen);
    if (!kv) return -1;
    if (kv->arr_type != PC_GGUF_STRING)
        return wrong_type(g, key, kv->arr_type, elem, "a string", err, errlen);
    const strref *s = &g->refs[kv->at + i];
    *out = g->strs + s->off;
    if (len) *len = s->len;
    return 0;
}

static int array_num(const pc_gguf *g, const char *key, uint64_t i, int64_t *iout, double *fout,
                     char *err, size_t errlen) {
    char elem[32];
    const gguf_kv *kv = need_elem(g, key, i, elem, sizeof elem, err, errlen);
    if (!kv) return -1;
    size_t es = vtype_size(kv->arr_type);
    num v = es ? decode_num(kv->arr_type, g->p + kv->at + (size_t)i * es) : (num){0};
    return iout ? as_int(g, key, elem, kv->arr_type, v, iout, err, errlen)
                : as_float(g, key, elem, kv->arr_type, v, fout, err, errlen);
}

int pc_gguf_array_int(const pc_gguf *g, const char *key, uint64_t i, int64_t *out, char *err,
                      size_t errlen) {
    return array_num(g, key, i, out, NULL, err, errlen);
}

int pc_gguf_array_float(const pc_gguf *g, const char *key, uint64_t i, double *out, char *err,
                        size_t errlen) {
    return array_num(g, key, i, NULL, out, err, errlen);
}

/* ---- tensors ---- */

int pc_gguf_tensor_count(const pc_gguf *g) { return g->n_t; }

const pc_gguf_tensor *pc_gguf_tensor_at(const pc_gguf *g, int i) {
    return i >= 0 && i < g->n_t ? &g->t[i] : NULL;
}

const pc_gguf_tensor *pc_gguf_tensor_find(const pc_gguf *g, const char *name) {
    name_idx k = {name, 0};
    const name_idx *hit = bsearch(&k, g->t_by_name, (size_t)g->n_t, sizeof k, cmp_name_idx);
    return hit ? &g->t[hit->idx] : NULL;
}
