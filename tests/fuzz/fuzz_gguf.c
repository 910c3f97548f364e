/* GGUF reader (runtime/gguf.c) and the tokenizer a GGUF carries (runtime/gguf_tokenizer.c): the
 * input is the whole file, parsed in memory (pc_gguf_open_mem, the same parser as the file path).
 * Oracles: a file that opens answers every getter within bounds (ASan watches the exact-size
 * buffer), every tensor lies inside the input and dequantizes or is refused with a message, a
 * tokenizer built from it encodes and decodes a fixed text without fault, and the writer
 * (runtime/gguf_write.c) copies it entry by entry into a file that opens with the same metadata
 * bytes and tensors. */
#include "runtime/gguf.h"
#include "runtime/gguf_internal.h"
#include "runtime/gguf_tokenizer.h"
#include "runtime/gguf_write.h"
#include "tests/fuzz/fuzz_common.h"

#include <stdlib.h>

static void walk_metadata(const pc_gguf *g) {
    char err[256];
    for (int k = 0; k < pc_gguf_kv_count(g); k++) {
        const char *key = pc_gguf_kv_key(g, k), *s;
        FUZZ_CHECK(key && pc_gguf_kv_type(g, key) >= 0, "key %d", k);
        int64_t v;
        double d;
        int b;
        pc_gguf_vtype et;
        uint64_t n = 0;
        (void)pc_gguf_get_str(g, key, &s, NULL, err, sizeof err);
        (void)pc_gguf_get_int(g, key, &v, err, sizeof err);
        (void)pc_gguf_get_float(g, key, &d, err, sizeof err);
        (void)pc_gguf_get_bool(g, key, &b, err, sizeof err);
        if (pc_gguf_get_array(g, key, &et, &n, err, sizeof err) || n == 0) continue;
        uint64_t at[3] = {0, n - 1, n};
        for (int i = 0; i < 3; i++) {
            (void)pc_gguf_array_str(g, key, at[i], &s, NULL, err, sizeof err);
            (void)pc_gguf_array_int(g, key, at[i], &v, err, sizeof err);
            (void)pc_gguf_array_float(g, key, at[i], &d, err, sizeof err);
        }
    }
}

/* write-back: every entry and tensor copied as it is reads back the same (alignments up to 64 KiB:
 * a larger one pads a tiny input to gigabytes) */
static void round_trip(const pc_gguf *g) {
    if (pc_gguf_alignment(g) > 65536) return;
    char err[512];
    pc_gguf_writer *w = pc_gguf_writer_new("copy.gguf");
    if (!w) return;
    for (int i = 0; i < pc_gguf_kv_count(g); i++)
        FUZZ_CHECK(pc_gguf_writer_copy_kv(w, g, i, err, sizeof err) == 0, "copy entry %d: %s", i, err);
    for (int i = 0; i < pc_gguf_tensor_count(g); i++) {
        const pc_gguf_tensor *t = pc_gguf_tensor_at(g, i);
        FUZZ_CHECK(pc_gguf_writer_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, err, sizeof err) == 0,
                   "copy tensor %d: %s", i, err);
    }
    void *out = NULL;
    size_t len = 0;
    FUZZ_CHECK(pc_gguf_writer_write_mem(w, &out, &len, err, sizeof err) == 0, "write: %s", err);
    pc_gguf *h = pc_gguf_open_mem(out, len, "copy.gguf", err, sizeof err);
    FUZZ_CHECK(h, "the copy does not open: %s", err);
    FUZZ_CHECK(pc_gguf_kv_count(h) == pc_gguf_kv_count(g) && pc_gguf_tensor_count(h) == pc_gguf_tensor_count(g) &&
                   pc_gguf_alignment(h) == pc_gguf_alignment(g),
               "counts or alignment differ");
    for (int i = 0; i < pc_gguf_kv_count(g); i++) {
        const void *a, *b;
        size_t la, lb;
        FUZZ_CHECK(!pc_gguf_kv_raw(g, i, &a, &la) && !pc_gguf_kv_raw(h, i, &b, &lb) && la == lb && !memcmp(a, b, la),
                   "entry %d differs", i);
    }
    for (int i = 0; i < pc_gguf_tensor_count(g); i++) {
        const pc_gguf_tensor *x = pc_gguf_tensor_at(g, i), *y = pc_gguf_tensor_at(h, i);
        FUZZ_CHECK(!strcmp(x->name, y->name) && x->type == y->type && x->n_dims == y->n_dims &&
                       !memcmp(x->ne, y->ne, sizeof x->ne) && x->nbytes == y->nbytes &&
                       (!x->nbytes || !memcmp(x->data, y->data, x->nbytes)),
                   "tensor %d differs", i);
    }
    pc_gguf_close(h);
    free(out);
    pc_gguf_writer_free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* an exact-size copy: a read past the end is an ASan report, not a read of libFuzzer's slack */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    char err[512];
    pc_gguf *g = pc_gguf_open_mem(copy, size, "fuzz.gguf", err, sizeof err);
    if (!g) {
        FUZZ_CHECK(strstr(err, "fuzz.gguf"), "an error that does not name the file: %s", err);
        free(copy);
        return 0;
    }
    walk_metadata(g);
    for (int i = 0; i < pc_gguf_tensor_count(g); i++) {
        const pc_gguf_tensor *t = pc_gguf_tensor_at(g, i);
        FUZZ_CHECK(t && (const uint8_t *)t->data >= copy && (const uint8_t *)t->data + t->nbytes <= copy + size,
                   "tensor %d outside the file", i);
        if (t->numel > (1 << 20)) continue; /* bounded work per input */
        float *out = malloc(t->numel ? (size_t)t->numel * sizeof *out : 1);
        if (out) (void)pc_gguf_tensor_to_f32(g, t->name, out, (size_t)t->numel, err, sizeof err);
        free(out);
    }
    round_trip(g);
    pc_hftok *tok = pc_gguf_tokenizer(g, err, sizeof err);
    if (tok) {
        static const char text[] = "Hello world! 123 \xc3\xa9t\xc3\xa9 <|endoftext|>";
        int32_t *ids = NULL;
        size_t n = 0;
        if (pc_hftok_encode(tok, text, sizeof text - 1, true, &ids, &n, err, sizeof err) == 0) {
            char *back = NULL;
            (void)pc_hftok_decode(tok, ids, n, false, &back, NULL, err, sizeof err);
            free(back);
        }
        free(ids);
        pc_hftok_free(tok);
    }
    pc_gguf_close(g);
    free(copy);
    return 0;
}
