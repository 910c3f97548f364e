/* The GGUF writer (runtime/gguf_write.c): tests/data/gguf/tiny.gguf (every metadata value type,
 * general.alignment 64, a tensor of each dequantized type and a Q4_K one) copied entry by entry
 * and tensor by tensor comes out byte for byte as gguf-py wrote it; its output passes the
 * reader; bad entries are refused by name before anything is written, and a failed write leaves
 * no file; the q/k permutation is the inverse of the un-permutation and is llama.cpp's. */
#include "cu_main.h"
#include "temp_dir.h"
#include "runtime/fileio.h"
#include "runtime/gguf.h"
#include "runtime/gguf_internal.h"
#include "runtime/gguf_write.h"
#include "runtime/safetensors.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DATA PEFTC_SOURCE_DIR "/tests/data/gguf/"

static void expect_err(int rc, const char *err, const char *n1, const char *n2) {
    int ok = rc == -1 && strstr(err, n1) && (!n2 || strstr(err, n2));
    if (!ok) fprintf(stderr, "unexpected (rc %d): '%s' (want '%s'%s%s)\n", rc, err, n1, n2 ? ", " : "", n2 ? n2 : "");
    CU_ASSERT(ok);
}

/* a writer holding every entry and tensor of g as it is */
static pc_gguf_writer *copy_all(const pc_gguf *g, const char *name) {
    char err[512] = "";
    pc_gguf_writer *w = pc_gguf_writer_new(name);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    for (int i = 0; i < pc_gguf_kv_count(g); i++) CU_ASSERT_EQUAL(pc_gguf_writer_copy_kv(w, g, i, err, sizeof err), 0);
    for (int i = 0; i < pc_gguf_tensor_count(g); i++) {
        const pc_gguf_tensor *t = pc_gguf_tensor_at(g, i);
        CU_ASSERT_EQUAL(pc_gguf_writer_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, err, sizeof err), 0);
    }
    if (err[0]) fprintf(stderr, "%s\n", err);
    return w;
}

/* same entries (raw bytes, order) and tensors (name, type, dims, bytes) */
static void check_same(const pc_gguf *a, const pc_gguf *b) {
    CU_ASSERT_EQUAL_FATAL(pc_gguf_kv_count(a), pc_gguf_kv_count(b));
    CU_ASSERT_EQUAL_FATAL(pc_gguf_tensor_count(a), pc_gguf_tensor_count(b));
    CU_ASSERT_EQUAL(pc_gguf_alignment(a), pc_gguf_alignment(b));
    for (int i = 0; i < pc_gguf_kv_count(a); i++) {
        const void *pa = NULL, *pb = NULL;
        size_t la = 0, lb = 0;
        CU_ASSERT_FATAL(pc_gguf_kv_raw(a, i, &pa, &la) == 0 && pc_gguf_kv_raw(b, i, &pb, &lb) == 0);
        CU_ASSERT(la == lb && memcmp(pa, pb, la) == 0);
        CU_ASSERT_STRING_EQUAL(pc_gguf_kv_key(a, i), pc_gguf_kv_key(b, i));
    }
    for (int i = 0; i < pc_gguf_tensor_count(a); i++) {
        const pc_gguf_tensor *x = pc_gguf_tensor_at(a, i), *y = pc_gguf_tensor_at(b, i);
        CU_ASSERT_STRING_EQUAL(x->name, y->name);
        CU_ASSERT(x->type == y->type && x->n_dims == y->n_dims && !memcmp(x->ne, y->ne, sizeof x->ne));
        CU_ASSERT(x->nbytes == y->nbytes && memcmp(x->data, y->data, x->nbytes) == 0);
        CU_ASSERT(y->offset % pc_gguf_alignment(b) == 0);
    }
}

static void test_roundtrip_tiny(void) {
    char err[512] = "", *orig = NULL;
    size_t olen = 0;
    CU_ASSERT_EQUAL_FATAL(pc_read_file(DATA "tiny.gguf", &orig, &olen, err, sizeof err), 0);
    pc_gguf *g = pc_gguf_open(DATA "tiny.gguf", err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    CU_ASSERT_EQUAL(pc_gguf_alignment(g), 64);
    pc_gguf_writer *w = copy_all(g, "copy.gguf");
    CU_ASSERT_EQUAL(pc_gguf_writer_count_kv(w), pc_gguf_kv_count(g));
    CU_ASSERT_EQUAL(pc_gguf_writer_count_tensors(w), pc_gguf_tensor_count(g));
    void *mem = NULL;
    size_t len = 0;
    CU_ASSERT_EQUAL_FATAL(pc_gguf_writer_write_mem(w, &mem, &len, err, sizeof err), 0);
    /* gguf-py's layout exactly: header, entries, infos, padding, data padded to 64 */
    printf("\n  tiny.gguf copied: %zu bytes (gguf-py wrote %zu), %s", len, olen,
           len == olen && !memcmp(mem, orig, len) ? "identical" : "DIFFERENT");
    CU_ASSERT(len == olen && memcmp(mem, orig, len) == 0);
    pc_gguf *h = pc_gguf_open_mem(mem, len, "copy.gguf", err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    CU_ASSERT_EQUAL(pc_gguf_version(h), 3);
    check_same(g, h);
    /* the file path writes the same bytes */
    char *dir = pc_test_temp_dir("gguf_write"), path[256], *file = NULL;
    size_t flen = 0;
    snprintf(path, sizeof path, "%s/sub.gguf", dir);
    CU_ASSERT_EQUAL(pc_gguf_writer_write(w, path, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(pc_read_file(path, &file, &flen, err, sizeof err), 0);
    CU_ASSERT(flen == len && memcmp(file, mem, len) == 0);
    CU_ASSERT_EQUAL(pc_test_dir_entries(dir), 1);
    unlink(path);
    rmdir(dir);
    free(dir);
    free(file);
    pc_gguf_close(h);
    free(mem);
    pc_gguf_writer_free(w);
    pc_gguf_close(g);
    free(orig);
}

/* alignment from an added entry, integer entries of every width, tensors of 0 to 4 dims */
static void test_written_entries(void) {
    char err[512] = "";
    pc_gguf_writer *w = pc_gguf_writer_new("new.gguf");
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    CU_ASSERT_EQUAL(pc_gguf_writer_kv_int(w, "general.alignment", PC_GGUF_UINT32, 128, err, sizeof err), 0);
    CU_ASSERT_EQUAL(pc_gguf_writer_kv_int(w, "a.i8", PC_GGUF_INT8, -128, err, sizeof err), 0);
    CU_ASSERT_EQUAL(pc_gguf_writer_kv_int(w, "a.u16", PC_GGUF_UINT16, 65535, err, sizeof err), 0);
    CU_ASSERT_EQUAL(pc_gguf_writer_kv_int(w, "a.i64", PC_GGUF_INT64, INT64_MIN, err, sizeof err), 0);
    float v[6] = {1, 2, 3, 4, 5, 6}, s = 7;
    CU_ASSERT_EQUAL(pc_gguf_writer_tensor(w, "scalar", PC_GGML_F32, 0, NULL, &s, err, sizeof err), 0);
    CU_ASSERT_EQUAL(pc_gguf_writer_tensor(w, "m", PC_GGML_F32, 2, (int64_t[]){3, 2}, v, err, sizeof err), 0);
    CU_ASSERT_EQUAL(pc_gguf_writer_tensor(w, "t4", PC_GGML_F32, 4, (int64_t[]){1, 3, 1, 2}, v, err, sizeof err), 0);
    CU_ASSERT_EQUAL(pc_gguf_writer_tensor(w, "empty", PC_GGML_F32, 2, (int64_t[]){0, 5}, NULL, err, sizeof err), 0);
    void *mem = NULL;
    size_t len = 0;
    CU_ASSERT_EQUAL_FATAL(pc_gguf_writer_write_mem(w, &mem, &len, err, sizeof err), 0);
    pc_gguf *g = pc_gguf_open_mem(mem, len, "new.gguf", err, sizeof err);
    if (!g) fprintf(stderr, "%s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    int64_t x = 0;
    CU_ASSERT_EQUAL(pc_gguf_alignment(g), 128);
    CU_ASSERT(pc_gguf_get_int(g, "a.i8", &x, err, sizeof err) == 0 && x == -128);
    CU_ASSERT(pc_gguf_kv_type(g, "a.i8") == PC_GGUF_INT8 && pc_gguf_kv_type(g, "a.u16") == PC_GGUF_UINT16);
    CU_ASSERT(pc_gguf_get_int(g, "a.u16", &x, err, sizeof err) == 0 && x == 65535);
    CU_ASSERT(pc_gguf_get_int(g, "a.i64", &x, err, sizeof err) == 0 && x == INT64_MIN);
    const pc_gguf_tensor *m = pc_gguf_tensor_find(g, "m"), *t4 = pc_gguf_tensor_find(g, "t4"),
                         *sc = pc_gguf_tensor_find(g, "scalar");
    CU_ASSERT_FATAL(m && t4 && sc);
    CU_ASSERT(m->n_dims == 2 && m->ne[0] == 3 && m->ne[1] == 2 && !memcmp(m->data, v, sizeof v));
    CU_ASSERT(t4->n_dims == 4 && t4->ne[1] == 3 && t4->ne[3] == 2 && t4->offset % 128 == 0);
    CU_ASSERT(sc->n_dims == 0 && sc->numel == 1 && *(const float *)sc->data == 7);
    CU_ASSERT(pc_gguf_tensor_find(g, "empty") && pc_gguf_tensor_find(g, "empty")->numel == 0);
    pc_gguf_close(g);
    free(mem);
    pc_gguf_writer_free(w);
}

static void test_refused(void) {
    char err[512] = "";
    float v[64] = {0};
    pc_gguf_writer *w = pc_gguf_writer_new("bad.gguf");
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    expect_err(pc_gguf_writer_kv_int(w, "k", PC_GGUF_UINT8, 256, err, sizeof err), err, "bad.gguf: metadata key 'k'",
               "256 does not fit in uint8");
    expect_err(pc_gguf_writer_kv_int(w, "k", PC_GGUF_UINT64, -1, err, sizeof err), err, "'k'", "does not fit in uint64");
    expect_err(pc_gguf_writer_kv_int(w, "k", PC_GGUF_FLOAT32, 1, err, sizeof err), err, "'k'",
               "float32 is not an integer type");
    expect_err(pc_gguf_writer_kv_int(w, "general.alignment", PC_GGUF_UINT32, 48, err, sizeof err), err,
               "general.alignment", "power of two");
    expect_err(pc_gguf_writer_kv_int(w, "general.alignment", PC_GGUF_UINT64, 64, err, sizeof err), err,
               "general.alignment", "uint32");
    expect_err(pc_gguf_writer_tensor(w, "q", PC_GGML_Q8_0, 2, (int64_t[]){33, 1}, v, err, sizeof err), err,
               "bad.gguf: tensor 'q'", "ne[0] = 33 is not a multiple of the Q8_0 block size 32");
    expect_err(pc_gguf_writer_tensor(w, "u", 4, 1, (int64_t[]){4}, v, err, sizeof err), err, "tensor 'u'",
               "unknown GGML type id 4");
    expect_err(pc_gguf_writer_tensor(w, "d", PC_GGML_F32, 5, (int64_t[]){1, 1, 1, 1, 1}, v, err, sizeof err), err,
               "tensor 'd'", "5 dims");
    expect_err(pc_gguf_writer_tensor(w, "n", PC_GGML_F32, 1, (int64_t[]){-2}, v, err, sizeof err), err, "tensor 'n'",
               "negative");
    expect_err(pc_gguf_writer_tensor(w, "o", PC_GGML_F32, 4, (int64_t[]){1LL << 40, 1LL << 40, 1, 1}, v, err, sizeof err),
               err, "tensor 'o'", "overflow");
    expect_err(pc_gguf_writer_tensor(w, "z", PC_GGML_F32, 1, (int64_t[]){4}, NULL, err, sizeof err), err, "tensor 'z'",
               "no data");
    CU_ASSERT(pc_gguf_writer_count_kv(w) == 0 && pc_gguf_writer_count_tensors(w) == 0);
    /* duplicates are found when writing: no file, no temporary */
    char *dir = pc_test_temp_dir("gguf_write"), path[256];
    snprintf(path, sizeof path, "%s/out.gguf", dir);
    CU_ASSERT_EQUAL(pc_gguf_writer_tensor(w, "t", PC_GGML_F32, 1, (int64_t[]){4}, v, err, sizeof err), 0);
    CU_ASSERT_EQUAL(pc_gguf_writer_tensor(w, "t", PC_GGML_F32, 1, (int64_t[]){2}, v, err, sizeof err), 0);
    expect_err(pc_gguf_writer_write(w, path, err, sizeof err), err, "bad.gguf: duplicate tensor name 't'", NULL);
    pc_gguf_writer_free(w);
    w = pc_gguf_writer_new("bad.gguf");
    CU_ASSERT_EQUAL(pc_gguf_writer_kv_int(w, "k", PC_GGUF_INT32, 1, err, sizeof err), 0);
    CU_ASSERT_EQUAL(pc_gguf_writer_kv_int(w, "k", PC_GGUF_INT32, 2, err, sizeof err), 0);
    expect_err(pc_gguf_writer_write(w, path, err, sizeof err), err, "bad.gguf: duplicate metadata key 'k'", NULL);
    void *mem = NULL;
    size_t len = 0;
    expect_err(pc_gguf_writer_write_mem(w, &mem, &len, err, sizeof err), err, "duplicate metadata key 'k'", NULL);
    CU_ASSERT_EQUAL(pc_test_dir_entries(dir), 0);
    /* a directory that does not exist: nothing anywhere */
    snprintf(path, sizeof path, "%s/missing/out.gguf", dir);
    pc_gguf_writer_free(w);
    w = pc_gguf_writer_new("bad.gguf");
    expect_err(pc_gguf_writer_write(w, path, err, sizeof err), err, "missing/out.gguf", NULL);
    CU_ASSERT_EQUAL(pc_test_dir_entries(dir), 0);
    pc_gguf_writer_free(w);
    rmdir(dir);
    free(dir);
}

/* permute ∘ unpermute = identity, and permute(transformers' un-permuted arange) = the arange */
static void test_permute(void) {
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
        float w[120];
        memcpy(w, e->data, (size_t)n * 4);
        CU_ASSERT_EQUAL(pc_gguf_permute_qk(w, cases[c].rows, cases[c].cols, cases[c].n_head, err, sizeof err), 0);
        for (int i = 0; i < n; i++) CU_ASSERT_EQUAL(w[i], (float)i);
        CU_ASSERT_EQUAL(pc_gguf_unpermute_qk(w, cases[c].rows, cases[c].cols, cases[c].n_head, err, sizeof err), 0);
        CU_ASSERT(memcmp(w, e->data, (size_t)n * 4) == 0);
    }
    float w[12];
    expect_err(pc_gguf_permute_qk(w, 6, 2, 2, err, sizeof err), err, "q/k permutation",
               "6 rows are not a multiple of 2 x 2 heads");
    pc_st_close(st);
}

static CU_TestInfo tests[] = {
    {"tiny.gguf copied entry by entry = gguf-py's bytes", test_roundtrip_tiny},
    {"added entries, alignment and tensors of 0-4 dims read back", test_written_entries},
    {"bad entries refused by name, nothing written", test_refused},
    {"q/k permutation = llama.cpp's, inverse of the un-permutation", test_permute},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("gguf_write", tests)
