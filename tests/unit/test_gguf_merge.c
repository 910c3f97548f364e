/* The GGUF Llama family writing a model (what `peftc merge` does with a GGUF file), on
 * tests/data/gguf/tiny_llama.gguf (F32, F16, BF16, Q8_0, Q4_0, Q4_1 tensors, q/k in llama.cpp's
 * order): with a q projection and an FFN weight replaced, the output has the source's metadata
 * entry for entry (general.file_type 0), every tensor in F32 under its name and dims, the
 * replaced ones equal to the replacement (q permuted back), the others to the dequantized
 * source; reopened, the family gives the replaced model's weights and logits. Tensors the Llama
 * does not use are carried over; bad replacements are refused by name and nothing is written. */
#include "cu_main.h"
#include "temp_dir.h"
#include "drivers/session.h"
#include "ir/ir.h"
#include "runtime/gguf.h"
#include "runtime/gguf_internal.h"
#include "runtime/gguf_write.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DATA PEFTC_SOURCE_DIR "/tests/data/gguf/"
#define TINY DATA "tiny_llama.gguf"
#define QKEY "model.layers.0.self_attn.q_proj.weight"
#define DKEY "model.layers.1.mlp.down_proj.weight"

static void remove_dir(char *dir) {
    DIR *d = opendir(dir);
    char p[512];
    for (struct dirent *e; d && (e = readdir(d));)
        if (e->d_name[0] != '.') snprintf(p, sizeof p, "%s/%s", dir, e->d_name), unlink(p);
    if (d) closedir(d);
    rmdir(dir);
    free(dir);
}

/* two replacements: a q projection and a down projection, the base plus a pattern */
typedef struct {
    pc_weight w[2];
    float *buf;
} replacement;

static void make_replacement(const pc_model *m, replacement *r) {
    const char *keys[2] = {QKEY, DKEY};
    pc_shape sh[2];
    const float *base[2];
    for (int k = 0; k < 2; k++) CU_ASSERT_PTR_NOT_NULL_FATAL(base[k] = pc_model_weight(m, keys[k], &sh[k]));
    size_t n0 = (size_t)pc_shape_numel(sh[0]), n1 = (size_t)pc_shape_numel(sh[1]);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r->buf = malloc((n0 + n1) * sizeof(float)));
    for (size_t i = 0; i < n0 + n1; i++)
        r->buf[i] = (i < n0 ? base[0][i] : base[1][i - n0]) + 0.05f * sinf((float)i);
    r->w[0] = (pc_weight){QKEY, sh[0], r->buf};
    r->w[1] = (pc_weight){DKEY, sh[1], r->buf + n0};
}

/* the FORWARD logits of tokens [1, 12] on the reference interpreter (malloc'd) */
static float *logits(pc_session *s, int64_t *n) {
    int32_t tokens[12] = {0, 84, 72, 69, 257, 99, 3, 264, 40, 101, 200, 11};
    char err[2048] = "";
    pc_build_req req = {.task = PC_TASK_FORWARD, .batch = 1, .seq = 12, .mode = PC_ADAPT_EVAL};
    pc_graph *g = pc_session_build(s, &req, false, err, sizeof err);
    pc_exec *r = g ? pc_exec_new(g, &(pc_exec_opts){.kind = PC_BACKEND_REF, .threads = 1}, err, sizeof err) : NULL;
    float *out = NULL;
    if (r && !pc_session_bind_base(s, r, g, true, err, sizeof err) && !pc_exec_bind(r, pc_lookup(g, "tokens"), tokens) &&
        !pc_exec_run(r, err, sizeof err)) {
        pc_val lv = pc_lookup(g, "logits");
        *n = pc_shape_numel(pc_val_shape(g, lv));
        if ((out = malloc((size_t)*n * sizeof *out))) memcpy(out, pc_exec_data(r, lv), (size_t)*n * sizeof *out);
    }
    if (!out) fprintf(stderr, "logits: %s\n", err);
    pc_exec_free(r);
    pc_graph_free(g);
    return out;
}

static void check_file(const char *path, const replacement *rep, int nheads) {
    char err[512] = "";
    pc_gguf *a = pc_gguf_open(TINY, err, sizeof err), *b = pc_gguf_open(path, err, sizeof err);
    CU_ASSERT_FATAL(a && b);
    CU_ASSERT_EQUAL(pc_gguf_version(b), 3);
    CU_ASSERT_EQUAL_FATAL(pc_gguf_kv_count(a), pc_gguf_kv_count(b));
    for (int i = 0; i < pc_gguf_kv_count(a); i++) {
        const char *key = pc_gguf_kv_key(a, i);
        CU_ASSERT_STRING_EQUAL(key, pc_gguf_kv_key(b, i));
        int64_t ft = -1;
        if (strcmp(key, "general.file_type") == 0) {
            CU_ASSERT(pc_gguf_kv_type(b, key) == PC_GGUF_UINT32 && !pc_gguf_get_int(b, key, &ft, err, sizeof err) && ft == 0);
            continue;
        }
        const void *pa, *pb;
        size_t la, lb;
        CU_ASSERT(!pc_gguf_kv_raw(a, i, &pa, &la) && !pc_gguf_kv_raw(b, i, &pb, &lb) && la == lb && !memcmp(pa, pb, la));
    }
    CU_ASSERT_EQUAL_FATAL(pc_gguf_tensor_count(a), pc_gguf_tensor_count(b));
    int replaced = 0;
    for (int i = 0; i < pc_gguf_tensor_count(a); i++) {
        const pc_gguf_tensor *x = pc_gguf_tensor_at(a, i), *y = pc_gguf_tensor_at(b, i);
        CU_ASSERT_STRING_EQUAL(x->name, y->name);
        CU_ASSERT(y->type == PC_GGML_F32 && x->n_dims == y->n_dims && !memcmp(x->ne, y->ne, sizeof x->ne));
        CU_ASSERT_FATAL(y->numel == x->numel);
        float *want = malloc((size_t)x->numel * sizeof *want);
        CU_ASSERT_FATAL(want && !pc_gguf_tensor_to_f32(a, x->name, want, (size_t)x->numel, err, sizeof err));
        const pc_weight *w = !strcmp(x->name, "blk.0.attn_q.weight")    ? &rep->w[0]
                             : !strcmp(x->name, "blk.1.ffn_down.weight") ? &rep->w[1]
                                                                          : NULL;
        if (w) {
            CU_ASSERT(pc_shape_numel(w->shape) == x->numel);
            memcpy(want, w->data, (size_t)x->numel * sizeof *want);
            if (w == &rep->w[0]) CU_ASSERT(!pc_gguf_permute_qk(want, x->ne[1], x->ne[0], nheads, err, sizeof err));
            replaced++;
        }
        CU_ASSERT(memcmp(want, y->data, (size_t)x->numel * sizeof *want) == 0); /* bit for bit */
        free(want);
    }
    CU_ASSERT_EQUAL(replaced, 2);
    pc_gguf_close(a);
    pc_gguf_close(b);
}

static void test_write_replaced(void) {
    char err[2048] = "", *dir = pc_test_temp_dir("gguf_merge"), path[256];
    snprintf(path, sizeof path, "%s/merged.gguf", dir);
    pc_session s0, s1;
    CU_ASSERT_EQUAL_FATAL(pc_session_open(&s0, NULL, TINY, NULL, NULL, err, sizeof err), 0);
    CU_ASSERT_STRING_EQUAL(s0.model.family->name, "gguf-llama");
    replacement rep;
    make_replacement(&s0.model, &rep);
    int rc = s0.model.family->write(&s0.model, path, rep.w, 2, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(pc_test_dir_entries(dir), 1);
    check_file(path, &rep, s0.model.info.n_heads);
    /* reopened: the replaced model's weights, keys in the same order, and its logits */
    CU_ASSERT_EQUAL_FATAL(pc_session_open(&s1, NULL, path, NULL, NULL, err, sizeof err), 0);
    const pc_model *m0 = &s0.model, *m1 = &s1.model;
    CU_ASSERT_EQUAL_FATAL(m0->family->nweights(m0), m1->family->nweights(m1));
    for (int i = 0; i < m0->family->nweights(m0); i++) {
        const char *key = m0->family->weight_key(m0, i);
        CU_ASSERT_STRING_EQUAL(key, m1->family->weight_key(m1, i));
        pc_shape s_0, s_1;
        const float *w0 = pc_model_weight(m0, key, &s_0), *w1 = pc_model_weight(m1, key, &s_1);
        if (!strcmp(key, QKEY)) w0 = rep.w[0].data;
        if (!strcmp(key, DKEY)) w0 = rep.w[1].data;
        CU_ASSERT_FATAL(w0 && w1 && pc_shape_eq(s_0, s_1));
        CU_ASSERT(memcmp(w0, w1, (size_t)pc_shape_numel(s_0) * sizeof *w0) == 0);
    }
    int64_t n0 = 0, n1 = 0, nb = 0;
    float *base = logits(&s0, &nb);
    pc_weight *over = malloc(sizeof rep.w);
    CU_ASSERT_FATAL(over != NULL);
    memcpy(over, rep.w, sizeof rep.w);
    pc_model_set_replaced(&s0.model, over, 2, rep.buf); /* s0 owns them now */
    float *want = logits(&s0, &n0), *got = logits(&s1, &n1);
    CU_ASSERT_FATAL(base && want && got && n0 == n1 && nb == n0 && n0 == 12 * 265);
    double d = 0, moved = 0;
    for (int64_t i = 0; i < n0; i++) d = fmax(d, fabs(want[i] - got[i])), moved = fmax(moved, fabs(want[i] - base[i]));
    printf("\n  tiny_llama.gguf written with q (layer 0) and down (layer 1) replaced, read back: logits max |diff| "
           "%.3g (the replacement moved them by %.3g)", d, moved);
    CU_ASSERT(d == 0);
    CU_ASSERT(moved > 1e-3);
    /* the vocabulary came along */
    int32_t *i0 = NULL, *i1 = NULL;
    size_t k0 = 0, k1 = 0;
    CU_ASSERT(!pc_text_encode(s0.tok, "the other", 9, true, &i0, &k0, err, sizeof err) &&
              !pc_text_encode(s1.tok, "the other", 9, true, &i1, &k1, err, sizeof err) && k0 == k1 && k0 > 0 &&
              !memcmp(i0, i1, k0 * sizeof *i0));
    free(i0), free(i1), free(base), free(want), free(got);
    pc_session_close(&s1);
    pc_session_close(&s0);
    remove_dir(dir);
}

static void expect_refused(pc_model *m, const char *dir, const pc_weight *w, int n, const char *n1, const char *n2) {
    char err[1024] = "", path[256];
    snprintf(path, sizeof path, "%s/out.gguf", dir);
    int rc = m->family->write(m, path, w, n, err, sizeof err);
    int ok = rc == -1 && strstr(err, n1) && (!n2 || strstr(err, n2)) && strstr(err, "out.gguf");
    if (!ok) fprintf(stderr, "unexpected (rc %d): '%s' (want '%s', '%s')\n", rc, err, n1, n2 ? n2 : "");
    CU_ASSERT(ok);
    CU_ASSERT_EQUAL(pc_test_dir_entries(dir), 0); /* nothing written, no temporary left */
}

static void test_refused(void) {
    char err[1024] = "", *dir = pc_test_temp_dir("gguf_merge");
    pc_model m = {0};
    CU_ASSERT_EQUAL_FATAL(pc_model_open(&m, TINY, NULL, err, sizeof err), 0);
    replacement rep;
    make_replacement(&m, &rep);
    pc_weight bad = rep.w[0];
    bad.shape = PC_SHAPE(64, 32);
    expect_refused(&m, dir, &bad, 1, "tensor 'blk.0.attn_q.weight' (" QKEY "): the merged tensor is [64,32]",
                   "the model's is [64,64]; nothing written");
    bad = (pc_weight){"model.layers.0.self_attn.q_proj.bias", PC_SHAPE(64), rep.buf};
    expect_refused(&m, dir, &bad, 1, "tiny_llama.gguf has no tensor 'model.layers.0.self_attn.q_proj.bias'", NULL);
    pc_weight twice[2] = {rep.w[1], rep.w[1]};
    expect_refused(&m, dir, twice, 2, "tensor '" DKEY "' is replaced twice", NULL);
    free(rep.buf);
    pc_model_close(&m);
    remove_dir(dir);
}

/* tensors the Llama does not read: dequantized to F32, or kept as they are (Q4_K) */
static void test_unused_tensors(void) {
    char err[1024] = "", *dir = pc_test_temp_dir("gguf_merge"), src[256], out[256];
    snprintf(src, sizeof src, "%s/extra.gguf", dir);
    snprintf(out, sizeof out, "%s/out.gguf", dir);
    pc_gguf *llama = pc_gguf_open(TINY, err, sizeof err), *tiny = pc_gguf_open(DATA "tiny.gguf", err, sizeof err);
    CU_ASSERT_FATAL(llama && tiny);
    pc_gguf_writer *w = pc_gguf_writer_new(src);
    for (int i = 0; i < pc_gguf_kv_count(llama); i++) CU_ASSERT(!pc_gguf_writer_copy_kv(w, llama, i, err, sizeof err));
    for (int i = 0; i < pc_gguf_tensor_count(llama); i++) {
        const pc_gguf_tensor *t = pc_gguf_tensor_at(llama, i);
        CU_ASSERT(!pc_gguf_writer_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, err, sizeof err));
    }
    const pc_gguf_tensor *q4k = pc_gguf_tensor_find(tiny, "q4_k.unsupported"), *f16 = pc_gguf_tensor_find(tiny, "f16.odd");
    CU_ASSERT_FATAL(q4k && f16);
    CU_ASSERT(!pc_gguf_writer_tensor(w, "extra.q4_k", q4k->type, q4k->n_dims, q4k->ne, q4k->data, err, sizeof err));
    CU_ASSERT(!pc_gguf_writer_tensor(w, "extra.f16", f16->type, f16->n_dims, f16->ne, f16->data, err, sizeof err));
    CU_ASSERT_EQUAL_FATAL(pc_gguf_writer_write(w, src, err, sizeof err), 0);
    pc_gguf_writer_free(w);
    pc_model m = {0};
    CU_ASSERT_EQUAL_FATAL(pc_model_open(&m, src, NULL, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(m.family->write(&m, out, NULL, 0, err, sizeof err), 0);
    pc_gguf *g = pc_gguf_open(out, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    CU_ASSERT_EQUAL(pc_gguf_tensor_count(g), pc_gguf_tensor_count(llama) + 2);
    const pc_gguf_tensor *a = pc_gguf_tensor_find(g, "extra.q4_k"), *b = pc_gguf_tensor_find(g, "extra.f16");
    CU_ASSERT_FATAL(a && b);
    CU_ASSERT(a->type == q4k->type && a->nbytes == q4k->nbytes && !memcmp(a->data, q4k->data, a->nbytes));
    float want[35];
    CU_ASSERT_FATAL(f16->numel == 35 && !pc_gguf_tensor_to_f32(tiny, "f16.odd", want, 35, err, sizeof err));
    CU_ASSERT(b->type == PC_GGML_F32 && b->n_dims == 2 && b->ne[0] == 7 && !memcmp(b->data, want, sizeof want));
    pc_gguf_close(g);
    pc_model_close(&m);
    pc_gguf_close(tiny);
    pc_gguf_close(llama);
    remove_dir(dir);
}

static CU_TestInfo tests[] = {
    {"tiny_llama.gguf written with 2 tensors replaced: metadata, tensors, weights, logits", test_write_replaced},
    {"misshapen, unknown and doubled replacements refused, nothing written", test_refused},
    {"tensors the Llama does not use are carried over", test_unused_tensors},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("gguf_merge", tests)
