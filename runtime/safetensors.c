/* safetensors reader (mmap + jansson, everything validated against the file size) and writer. */
#include "runtime/safetensors.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fileio.h"
#include "runtime/textbuf.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; big-endian hosts are not supported"
#endif

/* the Rust library refuses larger headers too */
#define ST_MAX_HEADER ((uint64_t)100000000)

const char *pc_st_dtype_name(pc_dtype dt) {
    switch (dt) {
    case PC_F32: return "F32";
    case PC_I32: return "I32";
    case PC_BF16: return "BF16";
    }
    return "?";
}

size_t pc_st_dtype_size(pc_dtype dt) {
    switch (dt) {
    case PC_F32: return 4;
    case PC_I32: return 4;
    case PC_BF16: return 2;
    }
    return 0;
}

/* dtypes the format defines that peftc does not compute in: a file holding them opens (a Hugging
 * Face checkpoint keeps an I64 position_ids buffer; f16 weights convert with pc_st_to_f32), the
 * tensor's dtype is PC_ST_FOREIGN and dtype_name says which */
static const struct {
    const char *name;
    size_t size;
} st_foreign_dtypes[] = {
    {"BOOL", 1}, {"U8", 1}, {"I8", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2}, {"U32", 4}, {"I64", 8}, {"U64", 8},
    {"F64", 8}, {"C64", 8}, {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1}, {"F8_E4M3FNUZ", 1}, {"F8_E5M2FNUZ", 1},
};
/* packed sub-byte types: reported as "unsupported" rather than "unknown" so the user knows the
 * file is fine and only the type is the problem */
static const char *const st_other_dtypes[] = {"F4", "F6_E2M3", "F6_E3M2", NULL};

struct pc_st_file {
    char *path;
    pc_mmap map;
    void *copy; /* aligned copies of the tensors, only when some would be misaligned in the mapping */
    int n;
    pc_st_tensor *t; /* sorted by offset */
    int *by_name;    /* indices into t sorted by name */
    int n_meta;
    char **meta_key; /* sorted by key */
    char **meta_val;
};

/* the __metadata__ of a file or a writer: n owned keys and values, and the two arrays */
static void free_metadata(char **keys, char **vals, int n) {
    for (int i = 0; i < n; i++) {
        free(keys[i]);
        free(vals[i]);
    }
    free(keys);
    free(vals);
}

void pc_st_close(pc_st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++) free((char *)f->t[i].name);
    free_metadata(f->meta_key, f->meta_val, f->n_meta);
    free(f->t);
    free(f->by_name);
    free(f->copy);
    pc_mmap_close(&f->map);
    free(f->path);
    free(f);
}

static int cmp_offset(const void *a, const void *b) {
    const pc_st_tensor *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* qsort has no context argument: sort index/name pairs instead */
typedef struct {
    const char *name;
    int idx;
} name_idx;

static int cmp_name_idx(const void *a, const void *b) {
    return strcmp(((const name_idx *)a)->name, ((const name_idx *)b)->name);
}

typedef struct {
    const char *key;
    const char *val;
} kv;

static int cmp_kv(const void *a, const void *b) {
    return strcmp(((const kv *)a)->key, ((const kv *)b)->key);
}

static int parse_meta(pc_st_file *f, json_t *meta, char *err, size_t errlen) {
    if (!json_is_object(meta))
        return pc_errf(err, errlen, "%s: header: __metadata__ is not an object", f->path);
    size_t n = json_object_size(meta);
    kv *tmp = calloc(n ? n : 1, sizeof *tmp);
    f->meta_key = calloc(n ? n : 1, sizeof(char *));
    f->meta_val = calloc(n ? n : 1, sizeof(char *));
    if (!tmp || !f->meta_key || !f->meta_val) {
        free(tmp);
        return pc_errf(err, errlen, "%s: out of memory", f->path);
    }
    const char *key;
    json_t *v;
    size_t i = 0;
    json_object_foreach(meta, key, v) {
        if (!json_is_string(v)) {
            free(tmp);
            return pc_errf(err, errlen, "%s: header: __metadata__ value of '%s' is not a string",
                           f->path, key);
        }
        tmp[i].key = key;
        tmp[i].val = json_string_value(v);
        i++;
    }
    qsort(tmp, n, sizeof *tmp, cmp_kv);
    for (i = 0; i < n; i++) {
        f->meta_key[i] = strdup(tmp[i].key);
        f->meta_val[i] = strdup(tmp[i].val);
        f->n_meta = (int)i + 1;
        if (!f->meta_key[i] || !f->meta_val[i]) {
            free(tmp);
            return pc_errf(err, errlen, "%s: out of memory", f->path);
        }
    }
    free(tmp);
    return 0;
}

static int parse_dtype(const char *path, const char *name, json_t *v, pc_st_tensor *t, char *err,
                       size_t errlen) {
    pc_dtype *dt = &t->dtype;
    if (!json_is_string(v))
        return pc_errf(err, errlen, "%s: tensor '%s': dtype is missing or not a string", path,
                       name);
    const char *s = json_string_value(v);
    static const pc_dtype ours[] = {PC_F32, PC_I32, PC_BF16};
    for (size_t i = 0; i < sizeof ours / sizeof ours[0]; i++)
        if (strcmp(s, pc_st_dtype_name(ours[i])) == 0) {
            *dt = ours[i];
            t->dtype_name = pc_st_dtype_name(ours[i]);
            t->elem_size = pc_st_dtype_size(ours[i]);
            return 0;
        }
    for (size_t i = 0; i < sizeof st_foreign_dtypes / sizeof st_foreign_dtypes[0]; i++)
        if (strcmp(s, st_foreign_dtypes[i].name) == 0) {
            *dt = PC_ST_FOREIGN;
            t->dtype_name = st_foreign_dtypes[i].name;
            t->elem_size = st_foreign_dtypes[i].size;
            return 0;
        }
    for (int i = 0; st_other_dtypes[i]; i++)
        if (strcmp(s, st_other_dtypes[i]) == 0)
            return pc_errf(err, errlen,
                           "%s: tensor '%s': unsupported dtype %s (packed sub-byte types are not read)",
                           path, name, s);
    return pc_errf(err, errlen, "%s: tensor '%s': unknown dtype '%s'", path, name, s);
}

/* validates one tensor entry against a data section of dlen bytes */
static int parse_tensor(const char *path, const char *name, json_t *v, uint64_t dlen,
                        pc_st_tensor *t, char *err, size_t errlen) {
    if (!json_is_object(v))
        return pc_errf(err, errlen, "%s: tensor '%s': entry is not a JSON object", path, name);
    if (parse_dtype(path, name, json_object_get(v, "dtype"), t, err, errlen)) return -1;

    json_t *shape = json_object_get(v, "shape");
    if (!json_is_array(shape))
        return pc_errf(err, errlen, "%s: tensor '%s': shape is missing or not an array", path,
                       name);
    size_t rank = json_array_size(shape);
    if (rank > PC_MAX_RANK)
        return pc_errf(err, errlen, "%s: tensor '%s': shape has rank %zu, at most %d supported",
                       path, name, rank, PC_MAX_RANK);
    uint64_t numel = 1;
    int overflow = 0;
    t->shape.rank = (int)rank;
    for (size_t i = 0; i < rank; i++) {
        json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d))
            return pc_errf(err, errlen, "%s: tensor '%s': shape[%zu] is not an integer", path, name,
                           i);
        json_int_t x = json_integer_value(d);
        if (x < 0)
            return pc_errf(err, errlen, "%s: tensor '%s': shape[%zu] is negative (%lld)", path,
                           name, i, (long long)x);
        t->shape.dim[i] = (int64_t)x;
        overflow |= __builtin_mul_overflow(numel, (uint64_t)x, &numel);
    }
    uint64_t nbytes;
    overflow |= __builtin_mul_overflow(numel, (uint64_t)t->elem_size, &nbytes);
    if (overflow || nbytes > SIZE_MAX)
        return pc_errf(err, errlen, "%s: tensor '%s': shape is too large (byte count overflows)",
                       path, name);

    json_t *off = json_object_get(v, "data_offsets");
    if (!json_is_array(off) || json_array_size(off) != 2 ||
        !json_is_integer(json_array_get(off, 0)) || !json_is_integer(json_array_get(off, 1)))
        return pc_errf(err, errlen,
                       "%s: tensor '%s': data_offsets is missing or not [begin, end] integers",
                       path, name);
    json_int_t b = json_integer_value(json_array_get(off, 0));
    json_int_t e = json_integer_value(json_array_get(off, 1));
    if (b < 0 || e < 0 || b > e)
        return pc_errf(err, errlen, "%s: tensor '%s': data_offsets [%lld, %lld] are invalid", path,
                       name, (long long)b, (long long)e);
    if ((uint64_t)e > dlen)
        return pc_errf(err, errlen,
                       "%s: tensor '%s': data_offsets [%lld, %lld] exceed the data section "
                       "(%llu bytes)",
                       path, name, (long long)b, (long long)e, (unsigned long long)dlen);
    if ((uint64_t)(e - b) != nbytes)
        return pc_errf(
            err, errlen, "%s: tensor '%s': data_offsets span %lld bytes but %s shape needs %llu",
            path, name, (long long)(e - b), t->dtype_name, (unsigned long long)nbytes);
    t->offset = (uint64_t)b;
    t->nbytes = (size_t)nbytes;
    return 0;
}

static int parse_header(pc_st_file *f, char *err, size_t errlen) {
    const unsigned char *p = f->map.data;
    size_t size = f->map.len;
    if (size < 8)
        return pc_errf(err, errlen,
                       "%s: truncated: %zu bytes, need at least 8 for the header length", f->path,
                       size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | p[i];
    if (n > size - 8)
        return pc_errf(err, errlen,
                       "%s: header length %llu exceeds the %zu bytes that follow it (truncated or "
                       "not a safetensors file)",
                       f->path, (unsigned long long)n, size - 8);
    if (n > ST_MAX_HEADER)
        return pc_errf(err, errlen, "%s: header length %llu is larger than the %llu byte limit",
                       f->path, (unsigned long long)n, (unsigned long long)ST_MAX_HEADER);
    if (n < 2 || p[8] != '{')
        return pc_errf(err, errlen, "%s: header is not a JSON object (it must start with '{')",
                       f->path);
    uint64_t dlen = size - 8 - n;
    const unsigned char *base = p + 8 + n;

    json_error_t jerr;
    json_t *root = json_loadb((const char *)p + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return pc_errf(err, errlen, "%s: header: bad JSON at line %d column %d: %s", f->path,
                       jerr.line, jerr.column, jerr.text);
    int rc = -1;
    if (!json_is_object(root)) {
        pc_errf(err, errlen, "%s: header is not a JSON object", f->path);
        goto done;
    }
    json_t *meta = json_object_get(root, "__metadata__");
    if (meta && parse_meta(f, meta, err, errlen)) goto done;

    size_t nt = json_object_size(root) - (meta ? 1 : 0);
    if (nt > (size_t)INT32_MAX / 2) {
        pc_errf(err, errlen, "%s: header: too many tensors (%zu)", f->path, nt);
        goto done;
    }
    f->t = calloc(nt ? nt : 1, sizeof *f->t);
    f->by_name = calloc(nt ? nt : 1, sizeof *f->by_name);
    if (!f->t || !f->by_name) {
        pc_errf(err, errlen, "%s: out of memory", f->path);
        goto done;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) continue;
        pc_st_tensor *t = &f->t[f->n];
        t->name = strdup(key);
        if (!t->name) {
            pc_errf(err, errlen, "%s: out of memory", f->path);
            goto done;
        }
        f->n++;
        if (parse_tensor(f->path, key, v, dlen, t, err, errlen)) goto done;
    }

    qsort(f->t, (size_t)f->n, sizeof *f->t, cmp_offset);
    const pc_st_tensor *prev = NULL; /* last non-empty tensor */
    int misaligned = 0;
    for (int i = 0; i < f->n; i++) {
        pc_st_tensor *t = &f->t[i];
        if (t->nbytes == 0) continue;
        if (prev && t->offset < prev->offset + prev->nbytes) {
            pc_errf(err, errlen, "%s: tensors '%s' and '%s' overlap in the data section", f->path,
                    prev->name, t->name);
            goto done;
        }
        prev = t;
        if ((uintptr_t)(base + t->offset) % t->elem_size) misaligned = 1;
    }
    for (int i = 0; i < f->n; i++) f->t[i].data = base + f->t[i].offset;
    if (misaligned) {
        /* a header not padded to 8 bytes, or offsets that are not multiples of their element
         * size (the format does not require them to be): each tensor is copied to an 8-aligned
         * place, so typed loads stay aligned */
        size_t total = 0;
        for (int i = 0; i < f->n; i++) total = ((total + 7) & ~(size_t)7) + f->t[i].nbytes;
        f->copy = malloc(total ? total : 1);
        if (!f->copy) {
            pc_errf(err, errlen, "%s: out of memory copying %llu data bytes", f->path, (unsigned long long)total);
            goto done;
        }
        size_t at = 0;
        for (int i = 0; i < f->n; i++) {
            at = (at + 7) & ~(size_t)7;
            if (f->t[i].nbytes) memcpy((unsigned char *)f->copy + at, f->t[i].data, f->t[i].nbytes);
            f->t[i].data = (unsigned char *)f->copy + at;
            at += f->t[i].nbytes;
        }
    }
    name_idx *ni = calloc(nt ? nt : 1, sizeof *ni);
    if (!ni) {
        pc_errf(err, errlen, "%s: out of memory", f->path);
        goto done;
    }
    for (int i = 0; i < f->n; i++) ni[i] = (name_idx){f->t[i].name, i};
    qsort(ni, (size_t)f->n, sizeof *ni, cmp_name_idx);
    for (int i = 0; i < f->n; i++) f->by_name[i] = ni[i].idx;
    free(ni);
    rc = 0;
done:
    json_decref(root);
    return rc;
}

pc_st_file *pc_st_open(const char *path, char *err, size_t errlen) {
    pc_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        pc_errf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    if (pc_mmap_open(&f->map, path, err, errlen) || parse_header(f, err, errlen)) {
        pc_st_close(f);
        return NULL;
    }
    return f;
}

int pc_st_count(const pc_st_file *f) { return f ? f->n : 0; }

const pc_st_tensor *pc_st_get(const pc_st_file *f, int i) {
    return f && i >= 0 && i < f->n ? &f->t[i] : NULL;
}

const pc_st_tensor *pc_st_find(const pc_st_file *f, const char *name) {
    if (!f || !name) return NULL;
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const pc_st_tensor *t = &f->t[f->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return NULL;
}

int pc_st_meta_count(const pc_st_file *f) { return f ? f->n_meta : 0; }
const char *pc_st_meta_key(const pc_st_file *f, int i) {
    return f && i >= 0 && i < f->n_meta ? f->meta_key[i] : NULL;
}
const char *pc_st_meta_value(const pc_st_file *f, int i) {
    return f && i >= 0 && i < f->n_meta ? f->meta_val[i] : NULL;
}
const char *pc_st_meta(const pc_st_file *f, const char *key) {
    for (int i = 0; f && key && i < f->n_meta; i++)
        if (strcmp(f->meta_key[i], key) == 0) return f->meta_val[i];
    return NULL;
}

/* ---------------------------------------------------------------- writer */

typedef struct {
    char *name;
    pc_dtype dtype;
    pc_shape shape;
    const void *data;
    size_t nbytes;
} st_entry;

struct pc_st_writer {
    int n, cap;
    st_entry *e;
    int n_meta, cap_meta;
    char **meta_key, **meta_val;
};

pc_st_writer *pc_st_writer_new(void) { return calloc(1, sizeof(pc_st_writer)); }

void pc_st_writer_free(pc_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->e[i].name);
    free_metadata(w->meta_key, w->meta_val, w->n_meta);
    free(w->e);
    free(w);
}

/* the header is JSON: names must be valid UTF-8 (jansson checks it for us) */
static int valid_utf8(const char *s) {
    json_t *j = json_string(s);
    json_decref(j);
    return j != NULL;
}

int pc_st_writer_add(pc_st_writer *w, const char *name, pc_dtype dt, pc_shape shape,
                     const void *data, char *err, size_t errlen) {
    if (!name || !*name) return pc_errf(err, errlen, "safetensors writer: empty tensor name");
    if (strcmp(name, "__metadata__") == 0)
        return pc_errf(err, errlen, "safetensors writer: '__metadata__' is reserved");
    if (!valid_utf8(name))
        return pc_errf(err, errlen, "safetensors writer: tensor name is not valid UTF-8");
    if (pc_st_dtype_size(dt) == 0)
        return pc_errf(err, errlen, "safetensors writer: tensor '%s': invalid dtype %d", name,
                       (int)dt);
    if (shape.rank < 0 || shape.rank > PC_MAX_RANK)
        return pc_errf(err, errlen, "safetensors writer: tensor '%s': rank %d out of range", name,
                       shape.rank);
    uint64_t nb = pc_st_dtype_size(dt);
    for (int i = 0; i < shape.rank; i++) {
        if (shape.dim[i] < 0)
            return pc_errf(err, errlen, "safetensors writer: tensor '%s': dim %d is negative", name,
                           i);
        if (__builtin_mul_overflow(nb, (uint64_t)shape.dim[i], &nb) || nb > SIZE_MAX)
            return pc_errf(err, errlen, "safetensors writer: tensor '%s': too large", name);
    }
    if (nb > 0 && !data)
        return pc_errf(err, errlen, "safetensors writer: tensor '%s': no data", name);
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->e[i].name, name) == 0)
            return pc_errf(err, errlen, "safetensors writer: duplicate tensor '%s'", name);
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 16;
        st_entry *e = realloc(w->e, (size_t)cap * sizeof *e);
        if (!e) return pc_errf(err, errlen, "safetensors writer: out of memory");
        w->e = e;
        w->cap = cap;
    }
    st_entry *e = &w->e[w->n];
    for (int i = shape.rank; i < PC_MAX_RANK; i++) shape.dim[i] = 0;
    *e = (st_entry){strdup(name), dt, shape, data, (size_t)nb};
    if (!e->name) return pc_errf(err, errlen, "safetensors writer: out of memory");
    w->n++;
    return 0;
}

int pc_st_writer_meta(pc_st_writer *w, const char *key, const char *value, char *err,
                      size_t errlen) {
    if (!key || !value || !valid_utf8(key) || !valid_utf8(value))
        return pc_errf(err, errlen, "safetensors writer: metadata key/value missing or not UTF-8");
    char *v = strdup(value);
    if (!v) return pc_errf(err, errlen, "safetensors writer: out of memory");
    for (int i = 0; i < w->n_meta; i++)
        if (strcmp(w->meta_key[i], key) == 0) {
            free(w->meta_val[i]);
            w->meta_val[i] = v;
            return 0;
        }
    if (w->n_meta == w->cap_meta) {
        int cap = w->cap_meta ? 2 * w->cap_meta : 8;
        char **k = realloc(w->meta_key, (size_t)cap * sizeof *k);
        if (k) w->meta_key = k;
        char **vv = k ? realloc(w->meta_val, (size_t)cap * sizeof *vv) : NULL;
        if (!vv) {
            free(v);
            return pc_errf(err, errlen, "safetensors writer: out of memory");
        }
        w->meta_val = vv;
        w->cap_meta = cap;
    }
    w->meta_key[w->n_meta] = strdup(key);
    if (!w->meta_key[w->n_meta]) {
        free(v);
        return pc_errf(err, errlen, "safetensors writer: out of memory");
    }
    w->meta_val[w->n_meta++] = v;
    return 0;
}

/* JSON string escaped the way serde_json does it (short escapes, else \u00xx lowercase) */
static void sb_json_str(pc_textbuf *b, const char *s) {
    pc_tb_putn(b, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        char tmp[8];
        switch (*c) {
        case '"': pc_tb_puts(b, "\\\""); break;
        case '\\': pc_tb_puts(b, "\\\\"); break;
        case '\b': pc_tb_puts(b, "\\b"); break;
        case '\f': pc_tb_puts(b, "\\f"); break;
        case '\n': pc_tb_puts(b, "\\n"); break;
        case '\r': pc_tb_puts(b, "\\r"); break;
        case '\t': pc_tb_puts(b, "\\t"); break;
        default:
            if (*c < 0x20) {
                snprintf(tmp, sizeof tmp, "\\u%04x", *c);
                pc_tb_puts(b, tmp);
            } else {
                pc_tb_putn(b, (const char *)c, 1);
            }
        }
    }
    pc_tb_putn(b, "\"", 1);
}

/* descending alignment as in the Rust Dtype order (... BF16 < I32 < F32) */
static int dtype_rank(pc_dtype dt) { return dt == PC_F32 ? 2 : dt == PC_I32 ? 1 : 0; }

static int cmp_entry(const void *a, const void *b) {
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    if (dtype_rank(x->dtype) != dtype_rank(y->dtype))
        return dtype_rank(y->dtype) - dtype_rank(x->dtype);
    return strcmp(x->name, y->name);
}

static int cmp_str_idx(const void *a, const void *b) {
    return strcmp(**(char *const *const *)a, **(char *const *const *)b);
}

int pc_st_write(const pc_st_writer *w, const char *path, char *err, size_t errlen) {
    const st_entry **order = calloc(w->n ? (size_t)w->n : 1, sizeof *order);
    char ***mk = calloc(w->n_meta ? (size_t)w->n_meta : 1, sizeof *mk); /* sorted meta_key refs */
    pc_textbuf b = {0};
    if (!order || !mk) {
        free(order);
        free(mk);
        return pc_errf(err, errlen, "%s: out of memory", path);
    }
    for (int i = 0; i < w->n; i++) order[i] = &w->e[i];
    qsort(order, (size_t)w->n, sizeof *order, cmp_entry);
    for (int i = 0; i < w->n_meta; i++) mk[i] = &w->meta_key[i];
    qsort(mk, (size_t)w->n_meta, sizeof mk[0], cmp_str_idx);

    pc_tb_puts(&b, "{");
    if (w->n_meta > 0) {
        pc_tb_puts(&b, "\"__metadata__\":{");
        for (int i = 0; i < w->n_meta; i++) {
            if (i) pc_tb_puts(&b, ",");
            sb_json_str(&b, *mk[i]);
            pc_tb_puts(&b, ":");
            sb_json_str(&b, w->meta_val[mk[i] - w->meta_key]);
        }
        pc_tb_puts(&b, "}");
    }
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const st_entry *e = order[i];
        char num[48];
        if (i || w->n_meta > 0) pc_tb_puts(&b, ",");
        sb_json_str(&b, e->name);
        pc_tb_puts(&b, ":{\"dtype\":\"");
        pc_tb_puts(&b, pc_st_dtype_name(e->dtype));
        pc_tb_puts(&b, "\",\"shape\":[");
        for (int d = 0; d < e->shape.rank; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)e->shape.dim[d]);
            pc_tb_puts(&b, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                 (unsigned long long)(off + e->nbytes));
        pc_tb_puts(&b, num);
        off += e->nbytes;
    }
    pc_tb_puts(&b, "}");
    while (!b.oom && b.n % 8) pc_tb_puts(&b, " ");
    free(mk);
    if (b.oom) {
        free(order);
        free(b.p);
        return pc_errf(err, errlen, "%s: out of memory building the header", path);
    }

    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)b.n >> (8 * i));
    int rc = -1;
    pc_atomic_file *af = pc_atomic_open(path, err, errlen);
    if (af) {
        pc_atomic_write(af, len8, 8);
        pc_atomic_write(af, b.p, b.n);
        for (int i = 0; i < w->n; i++) pc_atomic_write(af, order[i]->data, order[i]->nbytes);
        rc = pc_atomic_commit(af, err, errlen);
    }
    free(order);
    free(b.p);
    return rc;
}

const char *pc_st_path(const pc_st_file *f) { return f ? f->path : NULL; }

/* IEEE half to float, exactly (every half is a float) */
static float half_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) bits = sign | 0x7f800000u | (man << 13);
    else if (exp) bits = sign | ((exp + 112) << 23) | (man << 13);
    else if (!man) bits = sign;
    else {
        /* subnormal: normalize */
        int e = -1;
        do { man <<= 1; e++; } while (!(man & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

int pc_st_to_f32(const pc_st_file *f, const pc_st_tensor *t, float *out, char *err, size_t errlen) {
    size_t n = t->elem_size ? t->nbytes / t->elem_size : 0;
    const unsigned char *p = t->data;
    const char *dn = t->dtype_name ? t->dtype_name : "?";
    if (t->dtype == PC_F32) memcpy(out, p, n * sizeof *out);
    else if (t->dtype == PC_BF16)
        for (size_t i = 0; i < n; i++) {
            uint32_t bits = (uint32_t)(p[2 * i] | p[2 * i + 1] << 8) << 16;
            memcpy(&out[i], &bits, sizeof bits);
        }
    else if (strcmp(dn, "F16") == 0)
        for (size_t i = 0; i < n; i++) out[i] = half_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
    else if (strcmp(dn, "F64") == 0)
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, sizeof d);
            out[i] = (float)d;
        }
    else
        return pc_errf(err, errlen, "%s: tensor '%s': dtype %s is not a floating-point type (F32, BF16, F16, F64)",
                       pc_st_path(f), t->name, dn);
    return 0;
}
