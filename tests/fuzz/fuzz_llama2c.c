/* llama2.c checkpoint reader (runtime/llama2c.c): the input is the file.
 * Each input is opened twice: as it is (header checks, the exact-size rule), and, when its
 * 28-byte header is valid and the checkpoint it describes is at most 256 KiB, once more with the
 * weights truncated or zero-padded to that size, so the code after the size check runs on
 * every valid header the fuzzer finds. Oracles: every tensor lies inside the mapping, in file
 * order, at the offset its shape implies, and is found by name; a small checkpoint (<= 64 KiB,
 * <= 32 layers) writes back (pc_l2c_write) byte for byte. */
#include "runtime/llama2c.h"
#include "tests/fuzz/fuzz_common.h"

#define MAX_RESIZED (256u << 10)
#define MAX_ROUNDTRIP (64u << 10)

static int64_t numel(pc_shape s) {
    int64_t n = 1;
    for (int i = 0; i < s.rank; i++) n *= s.dim[i];
    return n;
}

static void check_model(const pc_l2c_model *m, const uint8_t *data, size_t size, const char *path) {
    FUZZ_CHECK(pc_l2c_file_size(&m->cfg) == size, "size");
    FUZZ_CHECK(m->n_tensors == pc_l2c_tensor_count(&m->cfg), "count");
    const char *lo = (const char *)m->map.data + 28, *hi = (const char *)m->map.data + m->map.len;
    int64_t total = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const pc_l2c_tensor *t = &m->tensors[i];
        const char *p = (const char *)t->data;
        int64_t bytes = 4 * numel(t->shape);
        FUZZ_CHECK(p >= lo && bytes <= hi - p, "tensor %s outside the file", t->name);
        /* pc_l2c_find is a linear scan: look up a sample (all of them would be quadratic in
         * n_layers, up to 1024) */
        if (i < 12 || i >= m->n_tensors - 3 || i % 97 == 0)
            FUZZ_CHECK(pc_l2c_find(m, t->name) == t, "find %s", t->name);
        if (bytes) { /* first and last element are the file's bytes at that place */
            FUZZ_CHECK(memcmp(p, data + (p - (const char *)m->map.data), 4) == 0, "first of %s", t->name);
            FUZZ_CHECK(memcmp(p + bytes - 4, data + (p + bytes - 4 - (const char *)m->map.data), 4) == 0,
                       "last of %s", t->name);
        }
        if (strcmp(t->name, "lm_head.weight") || !m->cfg.shared_classifier) total += bytes;
    }
    /* the tensors and the two RoPE tables tile the file exactly */
    int64_t half = (int64_t)m->cfg.seq_len * (m->cfg.dim / m->cfg.n_heads) / 2;
    FUZZ_CHECK(28 + total + 8 * half == (int64_t)size, "tensors + rope tables != file size");
    FUZZ_CHECK(m->freq_cis_imag == m->freq_cis_real + half, "rope tables");
    FUZZ_CHECK(!pc_l2c_find(m, "model.layers.99999.mlp.up_proj.weight") || m->cfg.n_layers > 99999, "find");

    /* byte-exact write back (pc_l2c_write matches names by a linear scan, quadratic in n_layers:
     * kept to small models so the harness stays fast) */
    if (size <= MAX_ROUNDTRIP && m->cfg.n_layers <= 32) {
        char out[400], err[512];
        snprintf(out, sizeof out, "%s/out.bin", fuzz_tmpdir());
        FUZZ_CHECK(pc_l2c_write(out, &m->cfg, m->tensors, m->n_tensors, m->freq_cis_real, m->freq_cis_imag,
                                err, sizeof err) == 0,
                   "write back of %s: %s", path, err);
        size_t n;
        unsigned char *b = fuzz_slurp(out, &n);
        FUZZ_CHECK(b && n == size && memcmp(b, data, size) == 0, "the written checkpoint differs");
        free(b);
    }
}

static void open_one(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("in.bin", data, size);
    char err[512];
    pc_l2c_model *m = pc_l2c_open(path, err, sizeof err);
    if (m) {
        check_model(m, data, size, path);
        pc_l2c_close(m);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    open_one(data, size);
    if (size < 28) return 0;
    int32_t h[7];
    memcpy(h, data, sizeof h);
    pc_l2c_config c = {h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[5] > 0};
    if (h[5] < 0 && h[5] != INT32_MIN) c.vocab_size = -h[5];
    uint64_t want = pc_l2c_file_size(&c);
    if (want == 0 || want == size || want > MAX_RESIZED) return 0;
    uint8_t *buf = calloc(1, want);
    if (!buf) return 0;
    memcpy(buf, data, size < want ? size : want);
    open_one(buf, want);
    free(buf);
    return 0;
}
