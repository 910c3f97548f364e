/* GGUF writer (runtime/gguf_write.h): metadata is kept serialized as it is added, tensors as
 * descriptions with borrowed bytes; the layout is computed once and streamed to the output. */
#include "runtime/gguf_write.h"

#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fileio.h"
#include "runtime/gguf_internal.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "GGUF files are written little-endian; big-endian hosts are not supported"
#endif

#define GGUF_WRITE_VERSION 3u
#define GGUF_DEFAULT_ALIGNMENT 32u

typedef struct {
    char *name;
    uint32_t type;
    int n_dims;
    int64_t ne[PC_GGUF_MAX_DIMS];
    const void *data;
    size_t nbytes;
} out_tensor;

struct pc_gguf_writer {
    char *name;
    uint32_t alignment;
    unsigned char *kv; /* the serialized entries */
    size_t kv_len, kv_cap;
    char **keys; /* owned copies, for the duplicate check */
    int n_kv, keys_cap;
    out_tensor *t;
    int n_t, t_cap;
};

pc_gguf_writer *pc_gguf_writer_new(const char *name) {
    pc_gguf_writer *w = calloc(1, sizeof *w);
    if (w && !(w->name = strdup(name ? name : "GGUF output"))) {
        free(w);
        return NULL;
    }
    if (w) w->alignment = GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void pc_gguf_writer_free(pc_gguf_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n_kv; i++) free(w->keys[i]);
    for (int i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->keys);
    free(w->t);
    free(w->kv);
    free(w->name);
    free(w);
}

int pc_gguf_writer_count_kv(const pc_gguf_writer *w) { return w->n_kv; }
int pc_gguf_writer_count_tensors(const pc_gguf_writer *w) { return w->n_t; }

static int oom(const pc_gguf_writer *w, char *err, size_t errlen) {
    return pc_errf(err, errlen, "%s: out of memory", w->name);
}

static int kv_put(pc_gguf_writer *w, const void *p, size_t n) {
    if (w->kv_cap - w->kv_len < n) {
        size_t cap = w->kv_cap ? w->kv_cap : 1024;
        while (cap - w->kv_len < n) {
            if (cap > SIZE_MAX / 2) return -1;
            cap *= 2;
        }
        unsigned char *q = realloc(w->kv, cap);
        if (!q) return -1;
        w->kv = q;
        w->kv_cap = cap;
    }
    memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
    return 0;
}

/* records the key of the entry just added (duplicates are found when writing) */
static int add_key(pc_gguf_writer *w, const char *key) {
    if (w->n_kv == w->keys_cap) {
        int cap = w->keys_cap ? w->keys_cap * 2 : 64;
        char **k = realloc(w->keys, (size_t)cap * sizeof *k);
        if (!k) return -1;
        w->keys = k;
        w->keys_cap = cap;
    }
    if (!(w->keys[w->n_kv] = strdup(key))) return -1;
    w->n_kv++;
    return 0;
}

int pc_gguf_writer_copy_kv(pc_gguf_writer *w, const pc_gguf *src, int i, char *err, size_t errlen) {
    const void *raw;
    size_t len;
    const char *key = pc_gguf_kv_key(src, i);
    if (!key || pc_gguf_kv_raw(src, i, &raw, &len))
        return pc_errf(err, errlen, "%s: %s has no metadata entry #%d", w->name, pc_gguf_path(src), i);
    if (w->n_kv == INT_MAX) return pc_errf(err, errlen, "%s: too many metadata entries", w->name);
    size_t mark = w->kv_len;
    if (kv_put(w, raw, len) || add_key(w, key)) {
        w->kv_len = mark;
        return oom(w, err, errlen);
    }
    /* the reader validated it: a uint32 power of two */
    if (strcmp(key, "general.alignment") == 0) w->alignment = pc_gguf_alignment(src);
    return 0;
}

/* the byte size of an integer value type and whether v fits; 0 when type is not an integer */
static size_t int_type_size(pc_gguf_vtype type, int64_t v, bool *fits) {
    switch (type) {
    case PC_GGUF_UINT8: *fits = v >= 0 && v <= UINT8_MAX; return 1;
    case PC_GGUF_INT8: *fits = v >= INT8_MIN && v <= INT8_MAX; return 1;
    case PC_GGUF_UINT16: *fits = v >= 0 && v <= UINT16_MAX; return 2;
    case PC_GGUF_INT16: *fits = v >= INT16_MIN && v <= INT16_MAX; return 2;
    case PC_GGUF_UINT32: *fits = v >= 0 && v <= (int64_t)UINT32_MAX; return 4;
    case PC_GGUF_INT32: *fits = v >= INT32_MIN && v <= INT32_MAX; return 4;
    case PC_GGUF_UINT64: *fits = v >= 0; return 8;
    case PC_GGUF_INT64: *fits = true; return 8;
    default: *fits = false; return 0;
    }
}

int pc_gguf_writer_kv_int(pc_gguf_writer *w, const char *key, pc_gguf_vtype type, int64_t v, char *err,
                          size_t errlen) {
    bool fits;
    size_t sz = int_type_size(type, v, &fits);
    if (!sz)
        return pc_errf(err, errlen, "%s: metadata key '%s': %s is not an integer type", w->name, key,
                       pc_gguf_vtype_name((int)type));
    if (!fits)
        return pc_errf(err, errlen, "%s: metadata key '%s': %lld does not fit in %s", w->name, key, (long long)v,
                       pc_gguf_vtype_name((int)type));
    bool align = strcmp(key, "general.alignment") == 0;
    if (align && (type != PC_GGUF_UINT32 || v == 0 || (v & (v - 1))))
        return pc_errf(err, errlen, "%s: metadata key 'general.alignment' must be a uint32 power of two", w->name);
    if (w->n_kv == INT_MAX) return pc_errf(err, errlen, "%s: too many metadata entries", w->name);
    uint64_t klen = strlen(key);
    uint32_t t = (uint32_t)type;
    unsigned char val[8];
    uint64_t u = (uint64_t)v; /* two's complement: the low sz bytes are the value, little-endian */
    memcpy(val, &u, 8);
    size_t mark = w->kv_len;
    if (kv_put(w, &klen, 8) || kv_put(w, key, (size_t)klen) || kv_put(w, &t, 4) || kv_put(w, val, sz) ||
        add_key(w, key)) {
        w->kv_len = mark;
        return oom(w, err, errlen);
    }
    if (align) w->alignment = (uint32_t)v;
    return 0;
}

int pc_gguf_writer_tensor(pc_gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *ne,
                          const void *data, char *err, size_t errlen) {
    const pc_gguf_ttype_info *ti = pc_gguf_ttype(type);
    if (!ti) return pc_errf(err, errlen, "%s: tensor '%s': unknown GGML type id %u", w->name, name, type);
    if (n_dims < 0 || n_dims > PC_GGUF_MAX_DIMS)
        return pc_errf(err, errlen, "%s: tensor '%s': %d dims, at most %d", w->name, name, n_dims, PC_GGUF_MAX_DIMS);
    out_tensor t = {.type = type, .n_dims = n_dims, .data = data};
    uint64_t numel = 1;
    for (int d = 0; d < PC_GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] < 0)
            return pc_errf(err, errlen, "%s: tensor '%s': ne[%d] = %lld is negative", w->name, name, d,
                           (long long)t.ne[d]);
        if (__builtin_mul_overflow(numel, (uint64_t)t.ne[d], &numel) || numel > (uint64_t)INT64_MAX)
            return pc_errf(err, errlen, "%s: tensor '%s': dims overflow the element count", w->name, name);
    }
    if (t.ne[0] % ti->block)
        return pc_errf(err, errlen, "%s: tensor '%s': ne[0] = %lld is not a multiple of the %s block size %u",
                       w->name, name, (long long)t.ne[0], ti->name, ti->block);
    uint64_t nbytes;
    if (__builtin_mul_overflow(numel / ti->block, (uint64_t)ti->block_bytes, &nbytes) || nbytes > SIZE_MAX / 2)
        return pc_errf(err, errlen, "%s: tensor '%s': %llu %s elements overflow the byte count", w->name, name,
                       (unsigned long long)numel, ti->name);
    t.nbytes = (size_t)nbytes;
    if (!data && t.nbytes) return pc_errf(err, errlen, "%s: tensor '%s': no data", w->name, name);
    if (w->n_t == INT_MAX) return pc_errf(err, errlen, "%s: too many tensors", w->name);
    if (w->n_t == w->t_cap) {
        int cap = w->t_cap ? w->t_cap * 2 : 64;
        out_tensor *p = realloc(w->t, (size_t)cap * sizeof *p);
        if (!p) return oom(w, err, errlen);
        w->t = p;
        w->t_cap = cap;
    }
    if (!(t.name = strdup(name))) return oom(w, err, errlen);
    w->t[w->n_t++] = t;
    return 0;
}

/* ---- layout and output ---- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* the first name that occurs twice, or NULL (dup: n pointers of scratch) */
static const char *duplicate(char **names, int n, const char **dup) {
    if (n <= 0) return NULL;
    memcpy(dup, names, (size_t)n * sizeof *dup);
    qsort(dup, (size_t)n, sizeof *dup, cmp_str);
    for (int i = 1; i < n; i++)
        if (strcmp(dup[i - 1], dup[i]) == 0) return dup[i];
    return NULL;
}

static size_t pad_to(size_t n, size_t a) { return (a - n % a) % a; }

/* the header's bytes before the data section, and the data section's bytes; -1 on a duplicate
 * or when the sizes overflow */
static int layout(const pc_gguf_writer *w, size_t *head, size_t *data, char *err, size_t errlen) {
    int n = w->n_kv > w->n_t ? w->n_kv : w->n_t;
    const char **scratch = malloc((size_t)(n ? n : 1) * sizeof *scratch);
    if (!scratch) return oom(w, err, errlen);
    const char *dk = duplicate(w->keys, w->n_kv, scratch), *dt = NULL;
    char **names = dk ? NULL : malloc((size_t)(w->n_t ? w->n_t : 1) * sizeof *names);
    if (!dk && names) {
        for (int i = 0; i < w->n_t; i++) names[i] = w->t[i].name;
        dt = duplicate(names, w->n_t, scratch);
    }
    int rc = 0;
    if (dk) rc = pc_errf(err, errlen, "%s: duplicate metadata key '%.200s'", w->name, dk);
    else if (!names) rc = oom(w, err, errlen);
    else if (dt) rc = pc_errf(err, errlen, "%s: duplicate tensor name '%.200s'", w->name, dt);
    free(names);
    free(scratch);
    if (rc) return rc;
    size_t h = 4 + 4 + 8 + 8 + w->kv_len, d = 0, a = w->alignment;
    for (int i = 0; i < w->n_t; i++) {
        const out_tensor *t = &w->t[i];
        size_t info = 8 + strlen(t->name) + 4 + 8 * (size_t)t->n_dims + 4 + 8;
        size_t padded = t->nbytes + pad_to(t->nbytes, a);
        if (h > SIZE_MAX / 4 - info || d > SIZE_MAX / 4 - padded)
            return pc_errf(err, errlen, "%s: the file would be too large", w->name);
        h += info;
        d += padded;
    }
    *head = h + pad_to(h, a);
    *data = d;
    return 0;
}

/* where the bytes go: an atomic file, or a buffer of the exact size */
typedef struct {
    pc_atomic_file *f;
    unsigned char *buf;
    size_t len;
} sink;

static void put(sink *s, const void *p, size_t n) {
    if (s->f) pc_atomic_write(s->f, p, n); /* the first error is reported by commit */
    else if (n) memcpy(s->buf + s->len, p, n);
    s->len += n;
}

static void put_zeros(sink *s, size_t n) {
    static const unsigned char zeros[256];
    for (size_t k; n; n -= k) {
        k = n < sizeof zeros ? n : sizeof zeros;
        put(s, zeros, k);
    }
}

static void emit(const pc_gguf_writer *w, sink *s) {
    uint32_t version = GGUF_WRITE_VERSION;
    uint64_t nt = (uint64_t)w->n_t, nkv = (uint64_t)w->n_kv, offset = 0;
    put(s, "GGUF", 4);
    put(s, &version, 4);
    put(s, &nt, 8);
    put(s, &nkv, 8);
    put(s, w->kv, w->kv_len);
    for (int i = 0; i < w->n_t; i++) {
        const out_tensor *t = &w->t[i];
        uint64_t nlen = strlen(t->name);
        uint32_t nd = (uint32_t)t->n_dims;
        put(s, &nlen, 8);
        put(s, t->name, (size_t)nlen);
        put(s, &nd, 4);
        for (int d = 0; d < t->n_dims; d++) put(s, &t->ne[d], 8);
        put(s, &t->type, 4);
        put(s, &offset, 8);
        offset += t->nbytes + pad_to(t->nbytes, w->alignment);
    }
    put_zeros(s, pad_to(s->len, w->alignment));
    for (int i = 0; i < w->n_t; i++) {
        put(s, w->t[i].data, w->t[i].nbytes);
        put_zeros(s, pad_to(w->t[i].nbytes, w->alignment));
    }
}

int pc_gguf_writer_write(const pc_gguf_writer *w, const char *path, char *err, size_t errlen) {
    size_t head, data;
    if (layout(w, &head, &data, err, errlen)) return -1;
    pc_atomic_file *f = pc_atomic_open(path, err, errlen);
    if (!f) return -1;
    sink s = {.f = f};
    emit(w, &s);
    return pc_atomic_commit(f, err, errlen);
}

int pc_gguf_writer_write_mem(const pc_gguf_writer *w, void **data, size_t *len, char *err, size_t errlen) {
    size_t head, body;
    if (layout(w, &head, &body, err, errlen)) return -1;
    sink s = {.buf = malloc(head + body ? head + body : 1)};
    if (!s.buf) return oom(w, err, errlen);
    emit(w, &s);
    if (s.len != head + body) { /* the layout and the bytes emitted must agree */
        free(s.buf);
        return pc_errf(err, errlen, "%s: internal error: %zu bytes written, %zu laid out", w->name, s.len, head + body);
    }
    *data = s.buf;
    *len = s.len;
    return 0;
}
