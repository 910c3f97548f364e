/* safetensors: writer/reader round trip, byte layout of the Python library, malformed files. */
#include <CUnit/CUnit.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

#include "cu_main.h"
#include "peftc/peftc.h" /* PC_SHAPE, PC_SCALAR */
#include "runtime/fileio.h"
#include "runtime/safetensors.h"

static void path_in_build(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", PEFTC_BINARY_DIR, name);
}

/* no "<name>.tmp.*" left in the build dir */
static int leftover_temps(const char *name) {
    DIR *d = opendir(PEFTC_BINARY_DIR);
    if (!d) return -1;
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%s.tmp.", name);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

static void test_roundtrip(void) {
    char path[512], err[512];
    path_in_build(path, sizeof path, "st_roundtrip.safetensors");
    float a[6] = {1, 2, 3, 4, 5, 6.5f};
    int32_t ids[4] = {-1, 0, 7, 2147483647};
    uint16_t bf[3] = {0x3f80, 0x4000, 0xbf80}; /* 1, 2, -1 in bfloat16 */
    float scalar = 42.0f;
    pc_st_writer *w = pc_st_writer_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    CU_ASSERT_EQUAL(pc_st_writer_add(w, "layer.weight", PC_F32, PC_SHAPE(2, 3), a, err, sizeof err),
                    0);
    CU_ASSERT_EQUAL(pc_st_writer_add(w, "ids", PC_I32, PC_SHAPE(4), ids, err, sizeof err), 0);
    CU_ASSERT_EQUAL(pc_st_writer_add(w, "half", PC_BF16, PC_SHAPE(3, 1), bf, err, sizeof err), 0);
    CU_ASSERT_EQUAL(
        pc_st_writer_add(w, "empty.lora_A", PC_F32, PC_SHAPE(0, 5), NULL, err, sizeof err), 0);
    CU_ASSERT_EQUAL(pc_st_writer_add(w, "scalar", PC_F32, PC_SCALAR, &scalar, err, sizeof err), 0);
    CU_ASSERT_EQUAL(
        pc_st_writer_add(w, "caf\xc3\xa9 \"q\"", PC_F32, PC_SHAPE(1), &scalar, err, sizeof err), 0);
    CU_ASSERT_EQUAL(pc_st_writer_meta(w, "format", "pt", err, sizeof err), 0);
    CU_ASSERT_EQUAL(pc_st_writer_meta(w, "note", "line\nbreak \"quoted\" \\", err, sizeof err), 0);
    CU_ASSERT_EQUAL(pc_st_writer_meta(w, "format", "peftc", err, sizeof err), 0); /* replaces */
    CU_ASSERT_EQUAL_FATAL(pc_st_write(w, path, err, sizeof err), 0);
    pc_st_writer_free(w);
    CU_ASSERT_EQUAL(leftover_temps("st_roundtrip.safetensors"), 0);

    pc_st_file *f = pc_st_open(path, err, sizeof err);
    if (!f) fprintf(stderr, "%s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(pc_st_count(f), 6);
    const pc_st_tensor *t = pc_st_find(f, "layer.weight");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_EQUAL(t->dtype, PC_F32);
    CU_ASSERT(t->shape.rank == 2 && t->shape.dim[0] == 2 && t->shape.dim[1] == 3);
    CU_ASSERT_EQUAL(t->nbytes, 24);
    CU_ASSERT(memcmp(t->data, a, 24) == 0);
    CU_ASSERT_EQUAL((uintptr_t)t->data % 4, 0);
    t = pc_st_find(f, "ids");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT(t->dtype == PC_I32 && t->nbytes == 16 && memcmp(t->data, ids, 16) == 0);
    t = pc_st_find(f, "half");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT(t->dtype == PC_BF16 && t->nbytes == 6 && memcmp(t->data, bf, 6) == 0);
    t = pc_st_find(f, "empty.lora_A");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT(t->nbytes == 0 && t->shape.rank == 2 && t->shape.dim[0] == 0 && t->shape.dim[1] == 5);
    t = pc_st_find(f, "scalar");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT(t->shape.rank == 0 && t->nbytes == 4 && *(const float *)t->data == 42.0f);
    CU_ASSERT_PTR_NOT_NULL(pc_st_find(f, "caf\xc3\xa9 \"q\""));
    CU_ASSERT_PTR_NULL(pc_st_find(f, "nope"));
    CU_ASSERT_PTR_NULL(pc_st_get(f, 6));
    /* data order: F32 tensors by name, then I32, then BF16 */
    const char *order[] = {
        "caf\xc3\xa9 \"q\"", "empty.lora_A", "layer.weight", "scalar", "ids", "half"};
    uint64_t prev_end = 0;
    for (int i = 0; i < 6; i++) {
        t = pc_st_get(f, i);
        CU_ASSERT_STRING_EQUAL(t->name, order[i]);
        CU_ASSERT_EQUAL(t->offset, prev_end);
        prev_end = t->offset + t->nbytes;
    }
    CU_ASSERT_EQUAL(pc_st_meta_count(f), 2);
    CU_ASSERT_STRING_EQUAL(pc_st_meta(f, "format"), "peftc");
    CU_ASSERT_STRING_EQUAL(pc_st_meta(f, "note"), "line\nbreak \"quoted\" \\");
    CU_ASSERT_STRING_EQUAL(pc_st_meta_key(f, 0), "format");
    CU_ASSERT_STRING_EQUAL(pc_st_meta_value(f, 1), "line\nbreak \"quoted\" \\");
    CU_ASSERT_PTR_NULL(pc_st_meta(f, "absent"));
    pc_st_close(f);
}

/* the exact bytes the Python/Rust library writes for the same tensors */
static void test_python_layout(void) {
    char path[512], err[512];
    path_in_build(path, sizeof path, "st_layout.safetensors");
    float b[2] = {1.0f, -2.0f};
    int32_t a[1] = {5};
    pc_st_writer *w = pc_st_writer_new();
    CU_ASSERT_EQUAL(pc_st_writer_add(w, "a", PC_I32, PC_SHAPE(1), a, err, sizeof err), 0);
    CU_ASSERT_EQUAL(pc_st_writer_add(w, "b", PC_F32, PC_SHAPE(2), b, err, sizeof err), 0);
    CU_ASSERT_EQUAL(pc_st_writer_meta(w, "format", "pt", err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(pc_st_write(w, path, err, sizeof err), 0);
    pc_st_writer_free(w);
    const char *json = "{\"__metadata__\":{\"format\":\"pt\"},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"a\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[8,12]}}";
    size_t jl = strlen(json), padded = (jl + 7) / 8 * 8;
    char *buf;
    size_t len;
    CU_ASSERT_EQUAL_FATAL(pc_read_file(path, &buf, &len, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(len, 8 + padded + 12);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | (unsigned char)buf[i];
    CU_ASSERT_EQUAL(n, padded);
    CU_ASSERT(memcmp(buf + 8, json, jl) == 0);
    for (size_t i = jl; i < padded; i++) CU_ASSERT_EQUAL(buf[8 + i], ' ');
    CU_ASSERT(memcmp(buf + 8 + padded, b, 8) == 0);
    CU_ASSERT(memcmp(buf + 8 + padded + 8, a, 4) == 0);
    free(buf);

    /* an empty writer gives "{}" padded to 8 */
    w = pc_st_writer_new();
    CU_ASSERT_EQUAL_FATAL(pc_st_write(w, path, err, sizeof err), 0);
    pc_st_writer_free(w);
    CU_ASSERT_EQUAL_FATAL(pc_read_file(path, &buf, &len, err, sizeof err), 0);
    CU_ASSERT(len == 16 && memcmp(buf, "\x08\0\0\0\0\0\0\0{}      ", 16) == 0);
    free(buf);
    pc_st_file *f = pc_st_open(path, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL(f);
    CU_ASSERT_EQUAL(pc_st_count(f), 0);
    pc_st_close(f);
}

/* writes 8-byte length (or `hlen` if not ~0) + header + data */
static void make_file(const char *path, const char *header, uint64_t hlen, const void *data,
                      size_t dlen) {
    size_t jl = strlen(header);
    if (hlen == ~(uint64_t)0) hlen = jl;
    unsigned char *buf = malloc(8 + jl + dlen + 1);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(buf + 8, header, jl);
    if (dlen) memcpy(buf + 8 + jl, data, dlen);
    char err[256];
    CU_ASSERT_EQUAL(pc_write_file_atomic(path, buf, 8 + jl + dlen, err, sizeof err), 0);
    free(buf);
}

static void expect_bad(const char *name, const char *header, uint64_t hlen, size_t dlen,
                       const char *needle) {
    char path[512], err[512] = "";
    path_in_build(path, sizeof path, name);
    unsigned char data[64] = {0};
    make_file(path, header, hlen, data, dlen);
    pc_st_file *f = pc_st_open(path, err, sizeof err);
    CU_ASSERT_PTR_NULL(f);
    pc_st_close(f);
    int ok = strstr(err, name) && strstr(err, needle);
    if (!ok) fprintf(stderr, "\n%s: message '%s' lacks the file name or '%s'\n", name, err, needle);
    CU_ASSERT(ok);
}

#define ANY (~(uint64_t)0)
#define T1(dtype, shape, offs)                                                                     \
    "{\"t\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":" offs "}}"

static void test_malformed(void) {
    char path[512], err[512];
    /* short files */
    path_in_build(path, sizeof path, "st_bad_empty.safetensors");
    CU_ASSERT_EQUAL(pc_write_file_atomic(path, "", 0, err, sizeof err), 0);
    CU_ASSERT_PTR_NULL(pc_st_open(path, err, sizeof err));
    CU_ASSERT(strstr(err, "st_bad_empty.safetensors") && strstr(err, "truncated"));
    path_in_build(path, sizeof path, "st_bad_5bytes.safetensors");
    CU_ASSERT_EQUAL(pc_write_file_atomic(path, "\x10\0\0\0\0", 5, err, sizeof err), 0);
    CU_ASSERT_PTR_NULL(pc_st_open(path, err, sizeof err));
    CU_ASSERT(strstr(err, "st_bad_5bytes.safetensors") && strstr(err, "truncated"));
    CU_ASSERT_PTR_NULL(pc_st_open(PEFTC_BINARY_DIR "/st_missing.safetensors", err, sizeof err));
    CU_ASSERT(strstr(err, "st_missing.safetensors") && strstr(err, "cannot open"));
    CU_ASSERT_PTR_NULL(pc_st_open(PEFTC_BINARY_DIR, err, sizeof err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not a regular file"));

    /* header length */
    expect_bad("st_bad_hlen_big.safetensors", "{}", 1000, 0, "exceeds");
    expect_bad("st_bad_hlen_huge.safetensors", "{}", (uint64_t)1 << 63, 0, "exceeds");
    expect_bad("st_bad_hlen_zero.safetensors", "{}", 0, 0, "not a JSON object");
    expect_bad("st_bad_truncated_json.safetensors", "{\"t\":{\"dtype\":", ANY, 0, "bad JSON");
    expect_bad("st_bad_json.safetensors", "{\"t\" 1}", ANY, 0, "bad JSON");
    expect_bad("st_bad_array.safetensors", "[1, 2]", ANY, 0, "not a JSON object");
    expect_bad("st_bad_dupkey.safetensors", "{\"a\":{},\"a\":{}}", ANY, 0, "bad JSON");
    /* tensor entries */
    expect_bad("st_bad_entry.safetensors", "{\"t\":5}", ANY, 0, "'t': entry is not");
    expect_bad("st_bad_nodtype.safetensors", "{\"t\":{\"shape\":[1],\"data_offsets\":[0,4]}}", ANY,
               4, "dtype is missing");
    expect_bad("st_bad_dtype.safetensors", T1("Q7", "[1]", "[0,4]"), ANY, 4, "unknown dtype 'Q7'");
    expect_bad("st_bad_f4.safetensors", T1("F4", "[2]", "[0,1]"), ANY, 1, "unsupported dtype F4");
    expect_bad("st_bad_f16_span.safetensors", T1("F16", "[3]", "[0,4]"), ANY, 4, "F16 shape needs 6");
    expect_bad("st_bad_negdim.safetensors", T1("F32", "[-1,4]", "[0,4]"), ANY, 4, "negative");
    expect_bad("st_bad_floatdim.safetensors", T1("F32", "[2.5]", "[0,4]"), ANY, 4,
               "not an integer");
    expect_bad("st_bad_rank.safetensors", T1("F32", "[1,1,1,1,1,1,1]", "[0,4]"), ANY, 4, "rank 7");
    expect_bad("st_bad_noshape.safetensors", T1("F32", "3", "[0,4]"), ANY, 4, "shape is missing");
    expect_bad("st_bad_overflow.safetensors", T1("F32", "[4611686018427387904,4]", "[0,4]"), ANY, 4,
               "too large");
    expect_bad("st_bad_beyond.safetensors", T1("F32", "[4]", "[0,16]"), ANY, 8,
               "exceed the data section");
    expect_bad("st_bad_count.safetensors", T1("F32", "[3]", "[0,8]"), ANY, 8, "needs 12");
    expect_bad("st_bad_reversed.safetensors", T1("F32", "[0]", "[8,0]"), ANY, 8, "invalid");
    expect_bad("st_bad_negoff.safetensors", T1("F32", "[1]", "[-4,0]"), ANY, 8, "invalid");
    expect_bad("st_bad_offarity.safetensors", T1("F32", "[1]", "[0]"), ANY, 8, "data_offsets");
    expect_bad("st_bad_overlap.safetensors",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
               ANY, 16, "overlap");
    expect_bad("st_bad_meta.safetensors", "{\"__metadata__\":{\"format\":1}}", ANY, 0,
               "'format' is not a string");
    expect_bad("st_bad_meta_type.safetensors", "{\"__metadata__\":[1]}", ANY, 0,
               "__metadata__ is not an object");
    CU_ASSERT_EQUAL(leftover_temps("st_bad_meta.safetensors"), 0);
}

/* a header not padded to 8 bytes: still readable, data copied so typed loads stay aligned */
static void test_unaligned_header(void) {
    char path[512], err[512];
    path_in_build(path, sizeof path, "st_unaligned.safetensors");
    float v[3] = {1.5f, -2.5f, 3.25f};
    make_file(path, T1("F32", "[3]", "[0,12]"), ANY, v, sizeof v);
    pc_st_file *f = pc_st_open(path, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    const pc_st_tensor *t = pc_st_find(f, "t");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_EQUAL((uintptr_t)t->data % 4, 0);
    const float *d = t->data;
    CU_ASSERT(d[0] == 1.5f && d[1] == -2.5f && d[2] == 3.25f);
    pc_st_close(f);

    /* extra keys inside a tensor entry and trailing data are tolerated; zero-size with begin == end
     */
    make_file(path,
              "{\"z\":{\"dtype\":\"BF16\",\"shape\":[3,0],\"data_offsets\":[4,4]},"
              "\"t\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}    ",
              ANY, v, sizeof v);
    f = pc_st_open(path, err, sizeof err);
    if (!f) fprintf(stderr, "%s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(pc_st_count(f), 2);
    CU_ASSERT_EQUAL(pc_st_find(f, "z")->nbytes, 0);
    pc_st_close(f);
}

/* offsets that are not multiples of their element size (found by fuzzing: an I64 tensor at
 * offset 132 of an 8-aligned data section): every tensor still aligned for typed loads, with
 * the file's bytes */
static void test_unaligned_offsets(void) {
    char path[512], err[512];
    path_in_build(path, sizeof path, "st_unaligned_offsets.safetensors");
    unsigned char bytes[4 + 16 + 2 + 8];
    float f0 = 0.75f;
    int64_t q[2] = {-3, 1ll << 40};
    uint16_t h = 0x3c00;
    double d = 2.5;
    memcpy(bytes, &f0, 4);
    memcpy(bytes + 4, q, 16);
    memcpy(bytes + 20, &h, 2);
    memcpy(bytes + 22, &d, 8);
    make_file(path,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
              "\"q\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[4,20]},"
              "\"h\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[20,22]},"
              "\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[22,30]}}      ",
              ANY, bytes, sizeof bytes);
    pc_st_file *f = pc_st_open(path, err, sizeof err);
    if (!f) fprintf(stderr, "%s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    static const char *const names[] = {"a", "q", "h", "d"};
    static const size_t at[] = {0, 4, 20, 22};
    for (int i = 0; i < 4; i++) {
        const pc_st_tensor *t = pc_st_find(f, names[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(t);
        CU_ASSERT_EQUAL((uintptr_t)t->data % t->elem_size, 0);
        CU_ASSERT_EQUAL(t->offset, at[i]);
        CU_ASSERT(memcmp(t->data, bytes + at[i], t->nbytes) == 0);
    }
    float out = 0;
    CU_ASSERT_EQUAL(pc_st_to_f32(f, pc_st_find(f, "d"), &out, err, sizeof err), 0);
    CU_ASSERT(out == 2.5f);
    pc_st_close(f);
}

static void test_writer_errors(void) {
    char err[512];
    float x[4] = {0};
    pc_st_writer *w = pc_st_writer_new();
    CU_ASSERT_EQUAL(pc_st_writer_add(w, "a", PC_F32, PC_SHAPE(4), x, err, sizeof err), 0);
    CU_ASSERT_EQUAL(pc_st_writer_add(w, "a", PC_F32, PC_SHAPE(4), x, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "duplicate tensor 'a'"));
    CU_ASSERT_EQUAL(pc_st_writer_add(w, "__metadata__", PC_F32, PC_SHAPE(4), x, err, sizeof err),
                    -1);
    CU_ASSERT_EQUAL(pc_st_writer_add(w, "", PC_F32, PC_SHAPE(4), x, err, sizeof err), -1);
    CU_ASSERT_EQUAL(pc_st_writer_add(w, "bad\xff", PC_F32, PC_SHAPE(4), x, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "UTF-8"));
    CU_ASSERT_EQUAL(pc_st_writer_add(w, "neg", PC_F32, PC_SHAPE(-1), x, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "negative"));
    CU_ASSERT_EQUAL(pc_st_writer_add(w, "nodata", PC_F32, PC_SHAPE(2), NULL, err, sizeof err), -1);
    CU_ASSERT_EQUAL(pc_st_writer_add(w, "dt", (pc_dtype)9, PC_SHAPE(2), x, err, sizeof err), -1);
    CU_ASSERT_EQUAL(pc_st_writer_meta(w, "k", "bad\xc3", err, sizeof err), -1);
    /* unwritable destination: error names the path, nothing is left behind */
    CU_ASSERT_EQUAL(pc_st_write(w, PEFTC_BINARY_DIR "/no/such/dir/x.safetensors", err, sizeof err),
                    -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no/such/dir/x.safetensors"));
    pc_st_writer_free(w);
    pc_st_writer_free(NULL);
    pc_st_close(NULL);
}

/* replacing an existing file is atomic: a reader holding the old mapping keeps the old bytes */
static void test_atomic_replace(void) {
    char path[512], err[512];
    path_in_build(path, sizeof path, "st_atomic.safetensors");
    float one = 1.0f, two = 2.0f;
    pc_st_writer *w = pc_st_writer_new();
    pc_st_writer_add(w, "v", PC_F32, PC_SHAPE(1), &one, err, sizeof err);
    CU_ASSERT_EQUAL_FATAL(pc_st_write(w, path, err, sizeof err), 0);
    pc_st_writer_free(w);
    pc_st_file *old = pc_st_open(path, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(old);
    w = pc_st_writer_new();
    pc_st_writer_add(w, "v", PC_F32, PC_SHAPE(1), &two, err, sizeof err);
    CU_ASSERT_EQUAL_FATAL(pc_st_write(w, path, err, sizeof err), 0);
    pc_st_writer_free(w);
    pc_st_file *cur = pc_st_open(path, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cur);
    CU_ASSERT_EQUAL(*(const float *)pc_st_find(old, "v")->data, 1.0f);
    CU_ASSERT_EQUAL(*(const float *)pc_st_find(cur, "v")->data, 2.0f);
    pc_st_close(old);
    pc_st_close(cur);
    CU_ASSERT_EQUAL(leftover_temps("st_atomic.safetensors"), 0);
}

/* the format's other dtypes open as foreign; the floating-point ones convert to f32 exactly */
static void test_foreign_dtypes(void) {
    char path[512], err[512];
    path_in_build(path, sizeof path, "st_foreign.safetensors");
    /* F16: 1, -2, the smallest subnormal, 65504, inf; then one I64 */
    const char *header = "{\"h\":{\"dtype\":\"F16\",\"shape\":[5],\"data_offsets\":[0,10]},"
                         "\"i\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[16,24]}}";
    char padded[256];
    snprintf(padded, sizeof padded, "%-*s", (int)((strlen(header) + 7) / 8 * 8), header);
    unsigned char data[24] = {0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00, 0xff, 0x7b, 0x00, 0x7c, 0, 0, 0, 0, 0, 0, 7};
    make_file(path, padded, ANY, data, sizeof data);
    pc_st_file *f = pc_st_open(path, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    const pc_st_tensor *h = pc_st_find(f, "h"), *i = pc_st_find(f, "i");
    CU_ASSERT_FATAL(h && i);
    CU_ASSERT(h->dtype == PC_ST_FOREIGN && strcmp(h->dtype_name, "F16") == 0 && h->elem_size == 2);
    CU_ASSERT(i->dtype == PC_ST_FOREIGN && strcmp(i->dtype_name, "I64") == 0);
    float v[5];
    CU_ASSERT_EQUAL(pc_st_to_f32(f, h, v, err, sizeof err), 0);
    CU_ASSERT(v[0] == 1.0f && v[1] == -2.0f && v[2] == 0x1p-24f && v[3] == 65504.0f && v[4] == INFINITY);
    CU_ASSERT_EQUAL(pc_st_to_f32(f, i, v, err, sizeof err), -1);
    CU_ASSERT(strstr(err, "'i'") && strstr(err, "I64"));
    pc_st_close(f);
}

static CU_TestInfo tests[] = {
    {"foreign_dtypes", test_foreign_dtypes},
    {"roundtrip", test_roundtrip},
    {"python_layout", test_python_layout},
    {"malformed", test_malformed},
    {"unaligned_header", test_unaligned_header},
    {"unaligned_offsets", test_unaligned_offsets},
    {"writer_errors", test_writer_errors},
    {"atomic_replace", test_atomic_replace},
    CU_TEST_INFO_NULL,
};

PC_TEST_MAIN("safetensors", tests)
