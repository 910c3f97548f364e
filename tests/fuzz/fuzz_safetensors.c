/* safetensors reader (runtime/safetensors.c): the input is the whole file.
 * Oracles: every tensor lies inside the file's data section, aligned for its dtype, and is found
 * by name; metadata is sorted; floating-point tensors (F32, BF16, F16, F64) convert to f32 and
 * no other type does; a file of peftc's own types that opens writes back (pc_st_write) and
 * reopens with the same tensors, bytes and metadata. */
#include "runtime/safetensors.h"

#include <stdbool.h>
#include "tests/fuzz/fuzz_common.h"

static int64_t numel(pc_shape s) {
    int64_t n = 1;
    for (int i = 0; i < s.rank; i++) n *= s.dim[i];
    return n;
}

static void same_file(const pc_st_file *a, const pc_st_file *b) {
    FUZZ_CHECK(pc_st_count(a) == pc_st_count(b), "%d vs %d tensors", pc_st_count(a), pc_st_count(b));
    for (int i = 0; i < pc_st_count(a); i++) {
        const pc_st_tensor *x = pc_st_get(a, i), *y = pc_st_find(b, x->name);
        FUZZ_CHECK(y, "tensor '%s' lost in the round trip", x->name);
        FUZZ_CHECK(x->dtype == y->dtype && x->shape.rank == y->shape.rank && x->nbytes == y->nbytes,
                   "tensor '%s' changed", x->name);
        for (int d = 0; d < x->shape.rank; d++) FUZZ_CHECK(x->shape.dim[d] == y->shape.dim[d], "dim");
        FUZZ_CHECK(x->nbytes == 0 || memcmp(x->data, y->data, x->nbytes) == 0, "data of '%s'", x->name);
    }
    FUZZ_CHECK(pc_st_meta_count(a) == pc_st_meta_count(b), "metadata count");
    for (int i = 0; i < pc_st_meta_count(a); i++) {
        const char *v = pc_st_meta(b, pc_st_meta_key(a, i));
        FUZZ_CHECK(v && strcmp(v, pc_st_meta_value(a, i)) == 0, "metadata '%s'", pc_st_meta_key(a, i));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("in.safetensors", data, size);
    char err[512];
    pc_st_file *f = pc_st_open(path, err, sizeof err);
    if (!f) return 0;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | data[i];
    size_t dlen = size - 8 - (size_t)hlen;
    int n = pc_st_count(f);
    bool foreign = false;
    FUZZ_CHECK(n >= 0 && !pc_st_get(f, n) && !pc_st_get(f, -1), "count %d", n);
    for (int i = 0; i < n; i++) {
        const pc_st_tensor *t = pc_st_get(f, i);
        /* the format's other dtypes open as foreign, with their name and element size */
        size_t es = t->dtype == PC_ST_FOREIGN ? t->elem_size : pc_st_dtype_size(t->dtype);
        FUZZ_CHECK(es > 0 && es == t->elem_size && t->dtype_name, "dtype of '%s'", t->name);
        foreign |= t->dtype == PC_ST_FOREIGN;
        if (numel(t->shape) <= 4096) { /* conversion: a float type converts, any other is refused */
            float buf[4096];
            int rc = pc_st_to_f32(f, t, buf, err, sizeof err);
            bool floating = t->dtype == PC_F32 || t->dtype == PC_BF16 || !strcmp(t->dtype_name, "F16") ||
                            !strcmp(t->dtype_name, "F64");
            FUZZ_CHECK((rc == 0) == floating, "to_f32 of '%s' (%s): %d", t->name, t->dtype_name, rc);
        }
        FUZZ_CHECK((uint64_t)numel(t->shape) * es == t->nbytes, "nbytes of '%s'", t->name);
        FUZZ_CHECK(t->offset <= dlen && t->nbytes <= dlen - t->offset, "'%s' outside the data", t->name);
        FUZZ_CHECK((uintptr_t)t->data % es == 0, "'%s' misaligned", t->name);
        if (t->nbytes) { /* the bytes are the file's (the reader may have copied them) */
            FUZZ_CHECK(memcmp(t->data, data + 8 + hlen + t->offset, t->nbytes) == 0, "'%s' bytes", t->name);
        }
        FUZZ_CHECK(i == 0 || pc_st_get(f, i - 1)->offset <= t->offset, "order");
        FUZZ_CHECK(pc_st_find(f, t->name) == t, "find '%s'", t->name);
    }
    for (int i = 0; i + 1 < pc_st_meta_count(f); i++)
        FUZZ_CHECK(strcmp(pc_st_meta_key(f, i), pc_st_meta_key(f, i + 1)) < 0, "metadata order");
    for (int i = 0; i < pc_st_meta_count(f); i++)
        FUZZ_CHECK(pc_st_meta(f, pc_st_meta_key(f, i)) == pc_st_meta_value(f, i), "metadata lookup");
    (void)pc_st_find(f, "model.embed_tokens.weight");
    (void)pc_st_meta(f, "format");

    /* write back and reopen; every file the reader accepts is one the writer can produce (the
     * writer writes the types peftc computes in, not the foreign ones) */
    if (size <= 1 << 16 && !foreign) {
        pc_st_writer *w = pc_st_writer_new();
        FUZZ_CHECK(w, "out of memory");
        for (int i = 0; i < n; i++) {
            const pc_st_tensor *t = pc_st_get(f, i);
            FUZZ_CHECK(pc_st_writer_add(w, t->name, t->dtype, t->shape, t->data, err, sizeof err) == 0,
                       "writer rejects tensor '%s' the reader accepted: %s", t->name, err);
        }
        for (int i = 0; i < pc_st_meta_count(f); i++)
            FUZZ_CHECK(pc_st_writer_meta(w, pc_st_meta_key(f, i), pc_st_meta_value(f, i), err, sizeof err) == 0,
                       "writer rejects metadata the reader accepted: %s", err);
        char out[400];
        snprintf(out, sizeof out, "%s/out.safetensors", fuzz_tmpdir());
        FUZZ_CHECK(pc_st_write(w, out, err, sizeof err) == 0, "write: %s", err);
        pc_st_writer_free(w);
        pc_st_file *g = pc_st_open(out, err, sizeof err);
        FUZZ_CHECK(g, "the written file does not reopen: %s", err);
        same_file(f, g);
        pc_st_close(g);
    }
    pc_st_close(f);
    return 0;
}
