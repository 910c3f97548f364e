/* llama2.c legacy checkpoints: the real stories260K.bin, byte-exact rewrite, untied classifier,
 * malformed headers and sizes, writer errors. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cu_main.h"
#include "runtime/fileio.h"
#include "runtime/llama2c.h"

#define MODEL_PATH PEFTC_SOURCE_DIR "/data/stories260K/stories260K.bin"
#define MODEL_BYTES 1056540

static pc_l2c_model *open_model(void) {
    char err[512];
    pc_l2c_model *m = pc_l2c_open(MODEL_PATH, err, sizeof err);
    if (!m) fprintf(stderr, "%s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    return m;
}

static int shape2(const pc_l2c_tensor *t, int64_t a, int64_t b) {
    return t && t->shape.rank == 2 && t->shape.dim[0] == a && t->shape.dim[1] == b;
}
static int shape1(const pc_l2c_tensor *t, int64_t a) {
    return t && t->shape.rank == 1 && t->shape.dim[0] == a;
}

static void test_open_stories260k(void) {
    pc_l2c_model *m = open_model();
    const pc_l2c_config *c = &m->cfg;
    CU_ASSERT(c->dim == 64 && c->hidden_dim == 172 && c->n_layers == 5 && c->n_heads == 8 &&
              c->n_kv_heads == 4 && c->vocab_size == 512 && c->seq_len == 512);
    CU_ASSERT_EQUAL(c->shared_classifier, 1);
    CU_ASSERT_EQUAL(pc_l2c_file_size(c), MODEL_BYTES);
    CU_ASSERT_EQUAL(m->map.len, MODEL_BYTES);
    CU_ASSERT_EQUAL(m->n_tensors, 1 + 9 * 5 + 2);
    CU_ASSERT_EQUAL(pc_l2c_tensor_count(c), 48);

    const float *base = (const float *)((const char *)m->map.data + 28);
    CU_ASSERT_PTR_EQUAL(m->token_embedding, base);
    CU_ASSERT_PTR_EQUAL(m->rms_att, base + 32768);
    CU_ASSERT_PTR_EQUAL(m->wq, m->rms_att + 320);
    CU_ASSERT_PTR_EQUAL(m->wk, m->wq + 20480);
    CU_ASSERT_PTR_EQUAL(m->wv, m->wk + 10240);
    CU_ASSERT_PTR_EQUAL(m->wo, m->wv + 10240);
    CU_ASSERT_PTR_EQUAL(m->rms_ffn, m->wo + 20480);
    CU_ASSERT_PTR_EQUAL(m->w1, m->rms_ffn + 320);
    CU_ASSERT_PTR_EQUAL(m->w2, m->w1 + 55040);
    CU_ASSERT_PTR_EQUAL(m->w3, m->w2 + 55040);
    CU_ASSERT_PTR_EQUAL(m->rms_final, m->w3 + 55040);
    CU_ASSERT_PTR_EQUAL(m->freq_cis_real, m->rms_final + 64);
    CU_ASSERT_PTR_EQUAL(m->freq_cis_imag, m->freq_cis_real + 2048);
    CU_ASSERT_PTR_EQUAL(m->freq_cis_imag + 2048, base + 264128);
    CU_ASSERT_PTR_EQUAL(m->wcls, m->token_embedding);

    const pc_l2c_tensor *t = pc_l2c_find(m, "model.embed_tokens.weight");
    CU_ASSERT(shape2(t, 512, 64) && t->data == m->token_embedding);
    t = pc_l2c_find(m, "model.layers.0.input_layernorm.weight");
    CU_ASSERT(shape1(t, 64) && t->data == m->rms_att);
    t = pc_l2c_find(m, "model.layers.3.input_layernorm.weight");
    CU_ASSERT(shape1(t, 64) && t->data == m->rms_att + 3 * 64);
    t = pc_l2c_find(m, "model.layers.2.self_attn.q_proj.weight");
    CU_ASSERT(shape2(t, 64, 64) && t->data == m->wq + 2 * 4096);
    t = pc_l2c_find(m, "model.layers.1.self_attn.k_proj.weight");
    CU_ASSERT(shape2(t, 32, 64) && t->data == m->wk + 1 * 2048);
    t = pc_l2c_find(m, "model.layers.4.self_attn.v_proj.weight");
    CU_ASSERT(shape2(t, 32, 64) && t->data == m->wv + 4 * 2048);
    t = pc_l2c_find(m, "model.layers.4.self_attn.o_proj.weight");
    CU_ASSERT(shape2(t, 64, 64) && t->data == m->wo + 4 * 4096);
    t = pc_l2c_find(m, "model.layers.1.post_attention_layernorm.weight");
    CU_ASSERT(shape1(t, 64) && t->data == m->rms_ffn + 64);
    t = pc_l2c_find(m, "model.layers.2.mlp.gate_proj.weight");
    CU_ASSERT(shape2(t, 172, 64) && t->data == m->w1 + 2 * 172 * 64);
    t = pc_l2c_find(m, "model.layers.2.mlp.down_proj.weight");
    CU_ASSERT(shape2(t, 64, 172) && t->data == m->w2 + 2 * 172 * 64);
    t = pc_l2c_find(m, "model.layers.2.mlp.up_proj.weight");
    CU_ASSERT(shape2(t, 172, 64) && t->data == m->w3 + 2 * 172 * 64);
    t = pc_l2c_find(m, "model.norm.weight");
    CU_ASSERT(shape1(t, 64) && t->data == m->rms_final);
    t = pc_l2c_find(m, "lm_head.weight");
    CU_ASSERT(shape2(t, 512, 64) && t->data == m->token_embedding);
    CU_ASSERT_PTR_NULL(pc_l2c_find(m, "model.layers.5.mlp.up_proj.weight"));
    CU_ASSERT_PTR_NULL(pc_l2c_find(m, "freq_cis_real"));

    /* real weights: finite, not all zero; RoPE row 0 is cos 0 = 1, sin 0 = 0 */
    int finite = 1;
    double sum = 0;
    for (int i = 0; i < 264128; i++) {
        finite &= isfinite(base[i]);
        sum += fabs(base[i]);
    }
    CU_ASSERT(finite && sum > 1000);
    for (int i = 0; i < 4; i++)
        CU_ASSERT(m->freq_cis_real[i] == 1.0f && m->freq_cis_imag[i] == 0.0f);
    pc_l2c_close(m);
    pc_l2c_close(NULL);
}

static void test_specs_and_rope(void) {
    pc_l2c_model *m = open_model();
    pc_l2c_tensor *spec = calloc(48, sizeof *spec);
    pc_l2c_tensor_specs(&m->cfg, spec);
    for (int i = 0; i < 48; i++) {
        CU_ASSERT_STRING_EQUAL(spec[i].name, m->tensors[i].name);
        CU_ASSERT(memcmp(&spec[i].shape, &m->tensors[i].shape, sizeof(pc_shape)) == 0);
        CU_ASSERT_PTR_NULL(spec[i].data);
    }
    free(spec);
    /* recomputed tables match the stored ones to float32 rounding (the export used torch's cos) */
    float *r = malloc(2 * 2048 * sizeof *r);
    pc_l2c_rope_tables(&m->cfg, r, r + 2048);
    double md = 0;
    for (int i = 0; i < 2048; i++) {
        md = fmax(md, fabs((double)r[i] - m->freq_cis_real[i]));
        md = fmax(md, fabs((double)r[2048 + i] - m->freq_cis_imag[i]));
    }
    CU_ASSERT(md < 1e-7);
    free(r);
    pc_l2c_close(m);
}

static int files_equal(const char *a, const char *b, size_t *differ_at) {
    char *x, *y, err[256];
    size_t nx, ny;
    if (pc_read_file(a, &x, &nx, err, sizeof err)) return 0;
    if (pc_read_file(b, &y, &ny, err, sizeof err)) {
        free(x);
        return 0;
    }
    size_t i = 0;
    while (i < nx && i < ny && x[i] == y[i]) i++;
    if (differ_at) *differ_at = i;
    int eq = nx == ny && i == nx;
    free(x);
    free(y);
    return eq;
}

static void test_write_byte_exact(void) {
    pc_l2c_model *m = open_model();
    char err[512];
    const char *out = PEFTC_BINARY_DIR "/l2c_rewrite.bin";
    /* tensors in reverse order: the writer places them by name */
    pc_l2c_tensor *rev = malloc(48 * sizeof *rev);
    for (int i = 0; i < 48; i++) rev[i] = m->tensors[47 - i];
    CU_ASSERT_EQUAL_FATAL(
        pc_l2c_write(out, &m->cfg, rev, 48, m->freq_cis_real, m->freq_cis_imag, err, sizeof err),
        0);
    size_t at = 0;
    CU_ASSERT(files_equal(out, MODEL_PATH, &at));
    /* lm_head may be left out when tied */
    CU_ASSERT_EQUAL_FATAL(pc_l2c_write(out, &m->cfg, m->tensors, 47, m->freq_cis_real,
                                       m->freq_cis_imag, err, sizeof err),
                          0);
    CU_ASSERT(files_equal(out, MODEL_PATH, NULL));
    /* recomputed RoPE tables: same everywhere but the tables, which agree to 1e-7 */
    CU_ASSERT_EQUAL_FATAL(pc_l2c_write(out, &m->cfg, m->tensors, 48, NULL, NULL, err, sizeof err),
                          0);
    pc_l2c_model *m2 = pc_l2c_open(out, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m2);
    size_t before_tables = (size_t)((const char *)m->freq_cis_real - (const char *)m->map.data);
    CU_ASSERT(memcmp(m2->map.data, m->map.data, before_tables) == 0);
    for (int i = 0; i < 2048; i++) {
        CU_ASSERT(fabsf(m2->freq_cis_real[i] - m->freq_cis_real[i]) < 1e-7f);
        CU_ASSERT(fabsf(m2->freq_cis_imag[i] - m->freq_cis_imag[i]) < 1e-7f);
    }
    pc_l2c_close(m2);
    free(rev);
    pc_l2c_close(m);
}

static void test_write_untied(void) {
    pc_l2c_model *m = open_model();
    char err[512];
    const char *out = PEFTC_BINARY_DIR "/l2c_untied.bin";
    float *cls = malloc(512 * 64 * sizeof *cls);
    for (int i = 0; i < 512 * 64; i++) cls[i] = m->token_embedding[i] * 0.5f + 1.0f;
    pc_l2c_tensor *ts = malloc(48 * sizeof *ts);
    memcpy(ts, m->tensors, 48 * sizeof *ts);
    ts[47].data = cls;
    pc_l2c_config c = m->cfg;
    /* tied config with a different lm_head would lose it: refused */
    CU_ASSERT_EQUAL(pc_l2c_write(out, &c, ts, 48, NULL, NULL, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "lm_head.weight differs"));
    c.shared_classifier = 0;
    CU_ASSERT_EQUAL(pc_l2c_write(out, &c, ts, 47, NULL, NULL, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "'lm_head.weight' is missing"));
    CU_ASSERT_EQUAL_FATAL(
        pc_l2c_write(out, &c, ts, 48, m->freq_cis_real, m->freq_cis_imag, err, sizeof err), 0);
    pc_l2c_model *u = pc_l2c_open(out, err, sizeof err);
    if (!u) fprintf(stderr, "%s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(u);
    CU_ASSERT_EQUAL(u->cfg.shared_classifier, 0);
    CU_ASSERT_EQUAL(u->cfg.vocab_size, 512);
    CU_ASSERT_EQUAL(u->map.len, MODEL_BYTES + 512 * 64 * 4);
    int32_t hdr[7];
    memcpy(hdr, u->map.data, sizeof hdr);
    CU_ASSERT_EQUAL(hdr[5], -512);
    const pc_l2c_tensor *lm = pc_l2c_find(u, "lm_head.weight");
    CU_ASSERT(lm && lm->data == u->wcls && lm->data != u->token_embedding);
    CU_ASSERT(lm && memcmp(lm->data, cls, 512 * 64 * 4) == 0);
    CU_ASSERT(memcmp((const char *)u->map.data + 28, (const char *)m->map.data + 28,
                     MODEL_BYTES - 28) == 0);
    pc_l2c_close(u);
    free(ts);
    free(cls);
    pc_l2c_close(m);
}

static void test_write_errors(void) {
    pc_l2c_model *m = open_model();
    char err[512];
    const char *out = PEFTC_BINARY_DIR "/l2c_err.bin";
    pc_l2c_tensor *ts = malloc(49 * sizeof *ts);
    memcpy(ts, m->tensors, 48 * sizeof *ts);
    CU_ASSERT_EQUAL(pc_l2c_write(out, &m->cfg, ts, 40, NULL, NULL, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "is missing"));
    ts[48] = ts[3];
    CU_ASSERT_EQUAL(pc_l2c_write(out, &m->cfg, ts, 49, NULL, NULL, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "given twice"));
    snprintf(ts[48].name, PC_L2C_NAME_MAX, "model.layers.0.self_attn.qq_proj.weight");
    CU_ASSERT_EQUAL(pc_l2c_write(out, &m->cfg, ts, 49, NULL, NULL, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "qq_proj"));
    ts[2].shape.dim[0] = 32;
    CU_ASSERT_EQUAL(pc_l2c_write(out, &m->cfg, ts, 48, NULL, NULL, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "has shape [32, 64], the config needs [64, 64]"));
    ts[2] = m->tensors[2];
    ts[5].data = NULL;
    CU_ASSERT_EQUAL(pc_l2c_write(out, &m->cfg, ts, 48, NULL, NULL, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no data"));
    pc_l2c_config c = m->cfg;
    c.n_heads = 7;
    CU_ASSERT_EQUAL(pc_l2c_write(out, &c, m->tensors, 48, NULL, NULL, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "n_heads (7) does not divide dim (64)"));
    CU_ASSERT_EQUAL(pc_l2c_write(PEFTC_BINARY_DIR "/no/such/dir/m.bin", &m->cfg, m->tensors, 48,
                                 NULL, NULL, err, sizeof err),
                    -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no/such/dir/m.bin"));
    free(ts);
    pc_l2c_close(m);
}

/* writes a copy of the real checkpoint with header fields and length changed */
static void expect_bad(const char *name, const int32_t *hdr, size_t len, const char *needle) {
    char *buf, err[512] = "", path[512];
    size_t n;
    CU_ASSERT_EQUAL_FATAL(pc_read_file(MODEL_PATH, &buf, &n, err, sizeof err), 0);
    char *grown = realloc(buf, len > n ? len : n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(grown);
    buf = grown;
    if (len > n) memset(buf + n, 0, len - n);
    if (hdr) memcpy(buf, hdr, 28);
    snprintf(path, sizeof path, "%s/%s", PEFTC_BINARY_DIR, name);
    CU_ASSERT_EQUAL(pc_write_file_atomic(path, buf, len, err, sizeof err), 0);
    free(buf);
    pc_l2c_model *m = pc_l2c_open(path, err, sizeof err);
    CU_ASSERT_PTR_NULL(m);
    pc_l2c_close(m);
    int ok = strstr(err, name) && strstr(err, needle);
    if (!ok) fprintf(stderr, "\n%s: message '%s' lacks the file name or '%s'\n", name, err, needle);
    CU_ASSERT(ok);
}

static void test_malformed(void) {
    const int32_t good[7] = {64, 172, 5, 8, 4, 512, 512};
    int32_t h[7];
#define WITH(i, v) (memcpy(h, good, sizeof h), h[i] = (v), h)
    expect_bad("l2c_empty.bin", NULL, 0, "truncated");
    expect_bad("l2c_hdr_only.bin", NULL, 20, "header: truncated, 20 bytes");
    expect_bad("l2c_truncated.bin", NULL, MODEL_BYTES - 4,
               "needs 1056540 bytes but the file has 1056536 (truncated)");
    expect_bad("l2c_trailing.bin", NULL, MODEL_BYTES + 8, "(trailing bytes)");
    expect_bad("l2c_cut.bin", NULL, 1000, "truncated");
    expect_bad("l2c_zero_dim.bin", WITH(0, 0), MODEL_BYTES, "dim (0) must be positive");
    expect_bad("l2c_neg_hidden.bin", WITH(1, -172), MODEL_BYTES,
               "hidden_dim (-172) must be positive");
    expect_bad("l2c_zero_layers.bin", WITH(2, 0), MODEL_BYTES, "n_layers (0)");
    expect_bad("l2c_heads.bin", WITH(3, 7), MODEL_BYTES, "n_heads (7) does not divide dim (64)");
    expect_bad("l2c_kv_heads.bin", WITH(4, 3), MODEL_BYTES,
               "n_kv_heads (3) does not divide n_heads (8)");
    expect_bad("l2c_odd_head.bin", WITH(3, 64), MODEL_BYTES, "must be even");
    expect_bad("l2c_vocab0.bin", WITH(5, 0), MODEL_BYTES, "vocab_size (0) must be positive");
    expect_bad("l2c_vocab_min.bin", WITH(5, INT32_MIN), MODEL_BYTES, "vocab_size");
    expect_bad("l2c_untied_short.bin", WITH(5, -512), MODEL_BYTES, "untied");
    expect_bad("l2c_huge_dim.bin", WITH(0, 1 << 30), MODEL_BYTES, "absurdly large");
    expect_bad("l2c_huge_seq.bin", WITH(6, 1 << 21), MODEL_BYTES, "needs");
    expect_bad("l2c_magic.bin", WITH(0, 0x616b3432), MODEL_BYTES, "ak42");
    /* no magic number: a header that is no model's, or sizes that disagree, say "not a checkpoint" */
    expect_bad("l2c_not_zero_dim.bin", WITH(0, 0), MODEL_BYTES, "not a llama2.c checkpoint (its 28-byte header");
    expect_bad("l2c_not_negative.bin", WITH(0, -970066998), MODEL_BYTES, "dim (-970066998) must be positive");
    expect_bad("l2c_not_negative2.bin", WITH(0, -970066998), MODEL_BYTES, "not a llama2.c checkpoint");
    expect_bad("l2c_not_size.bin", NULL, MODEL_BYTES + 8, "not a llama2.c checkpoint, or a damaged one");
    char err[512];
    CU_ASSERT_PTR_NULL(pc_l2c_open(PEFTC_BINARY_DIR "/l2c_missing.bin", err, sizeof err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "l2c_missing.bin"));
#undef WITH
}

static void test_config_check(void) {
    char err[256];
    pc_l2c_config c = {288, 768, 6, 6, 6, 32000, 256, 1}; /* stories15M */
    CU_ASSERT_EQUAL(pc_l2c_config_check(&c, "cfg", err, sizeof err), 0);
    CU_ASSERT_EQUAL(pc_l2c_file_size(&c), 60816028); /* the size of llama2.c's stories15M.bin */
    c.n_kv_heads = 4;
    CU_ASSERT_EQUAL(pc_l2c_config_check(&c, "cfg", err, sizeof err), -1);
    CU_ASSERT_STRING_EQUAL(err, "cfg: header: n_kv_heads (4) does not divide n_heads (6)");
    CU_ASSERT_EQUAL(pc_l2c_file_size(&c), 0);
    CU_ASSERT_EQUAL(pc_l2c_config_check(&c, "cfg", NULL, 0), -1); /* no buffer is fine */
}

static CU_TestInfo tests[] = {
    {"open_stories260k", test_open_stories260k}, {"specs_and_rope", test_specs_and_rope},
    {"write_byte_exact", test_write_byte_exact}, {"write_untied", test_write_untied},
    {"write_errors", test_write_errors},         {"malformed", test_malformed},
    {"config_check", test_config_check},         CU_TEST_INFO_NULL,
};

PC_TEST_MAIN("llama2c", tests)
