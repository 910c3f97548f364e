/* The compiled backend (fusion, lowering, memory plan, oneDNN + LLVM + C kernels) against the
 * reference interpreter: every op and fused chains on random inputs, error messages, an MLP
 * trained with autograd + AdamW, the whole stories260K + LoRA train step, and the PyTorch golden
 * fixture. Prints the train-step speed of both backends and a profile of the compiled one. */
#include "backend/compiled_internal.h"
#include "backend/exec.h"
#include "cu_main.h"
#include "test_rng.h"
#include "drivers/session.h"
#include "drivers/store.h"
#include "frontend/llama.h"
#include "passes/pipeline.h"
#include "passes/passes.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MODEL PEFTC_SOURCE_DIR "/data/stories260K/stories260K.bin"
#define FIXTURE PEFTC_SOURCE_DIR "/tests/data/golden_llama_lora.safetensors"

/* ---------------------------------------------------------------- plumbing */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static double rnd(void) { return test_rng_unit(&g_rng); }

#define MAXB 64
typedef struct {
    pc_graph *g;
    int nb;
    pc_val bv[MAXB];
    void *bp[MAXB];
    char err[4096];
} H;

static H *hnew(void) {
    H *h = calloc(1, sizeof *h);
    h->g = pc_graph_new("t");
    return h;
}
static void hfree(H *h) {
    for (int i = 0; i < h->nb; i++) free(h->bp[i]);
    pc_graph_free(h->g);
    free(h);
}
static void *hbind(H *h, pc_val v, size_t bytes) {
    void *p = calloc(bytes ? bytes : 1, 1);
    h->bv[h->nb] = v;
    h->bp[h->nb++] = p;
    return p;
}
static pc_val fin(H *h, const char *name, pc_shape s, double lo, double hi) {
    pc_val v = pc_input(h->g, name, PC_F32, s);
    float *d = hbind(h, v, (size_t)pc_shape_numel(s) * 4);
    for (int64_t i = 0; i < pc_shape_numel(s); i++) d[i] = (float)(lo + (hi - lo) * rnd());
    return v;
}
static pc_val iin(H *h, const char *name, pc_shape s, int lo, int hi) {
    pc_val v = pc_input(h->g, name, PC_I32, s);
    int32_t *d = hbind(h, v, (size_t)pc_shape_numel(s) * 4);
    for (int64_t i = 0; i < pc_shape_numel(s); i++) d[i] = lo + (int)(rnd() * (hi - lo + 1));
    return v;
}
static pc_val mo(H *h, pc_val v) {
    pc_mark_output(h->g, v);
    return v;
}

/* max |a-b| / max|b| over n (NaN must match NaN); i32 compared exactly */
static double tensor_err(pc_dtype dt, const void *a, const void *b, int64_t n) {
    if (dt == PC_I32) return memcmp(a, b, (size_t)n * 4) ? 1.0 : 0.0;
    const float *x = a, *y = b;
    double m = 0, scale = 1e-30;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(y[i]) && fabs(y[i]) > scale) scale = fabs(y[i]);
    for (int64_t i = 0; i < n; i++) {
        if (isnan(x[i]) || isnan(y[i]) || isinf(x[i]) || isinf(y[i])) {
            if (!(isnan(x[i]) && isnan(y[i])) && x[i] != y[i]) return INFINITY;
            continue;
        }
        if (fabs((double)x[i] - y[i]) > m) m = fabs((double)x[i] - y[i]);
    }
    return m / scale;
}

static pc_compiled *compile(const pc_graph *g, char *err, size_t errlen) {
    const char *th = getenv("PEFTC_TEST_THREADS");
    pc_exec_opts o = {.kind = PC_BACKEND_JIT, .threads = th ? atoi(th) : 1, .dump_after = getenv("PEFTC_TEST_DUMP")};
    return pc_compiled_new(g, &o, err, errlen);
}

/* runs the graph on both backends with the bound inputs; returns the worst output error (or
 * INFINITY on any failure); with want_err both must fail with the same message */
static double hcheck_ex(H *h, const char *what, const char *want_err) {
    char e1[4096] = "", e2[4096] = "";
    double worst = INFINITY;
    if (pc_graph_error(h->g)) { printf("\n    %s: graph: %s\n", what, pc_graph_error(h->g)); return worst; }
    pc_ref *r = pc_ref_new(h->g, e1, sizeof e1);
    pc_compiled *c = compile(h->g, e2, sizeof e2);
    if (!r || !c) { printf("\n    %s: create: %s | %s\n", what, e1, e2); goto done; }
    /* the backends are compared on every value, NaN included (a mean over an empty axis): the
     * finiteness check has its own tests (test_finite.c) */
    pc_ref_check_finite(r, 0);
    for (int i = 0; i < h->nb; i++) {
        pc_ref_bind(r, h->bv[i], h->bp[i]);
        pc_compiled_bind(c, h->bv[i], h->bp[i]);
    }
    int rr = pc_ref_run(r, e1, sizeof e1), rc = pc_compiled_run(c, e2, sizeof e2);
    if (want_err) {
        if (rr == 0 || rc == 0 || strcmp(e1, e2) != 0 || !strstr(e2, want_err))
            printf("\n    %s: errors differ:\n      ref: %s\n      jit: %s\n", what, e1, e2);
        else worst = 0;
        goto done;
    }
    if (rr || rc) { printf("\n    %s: run: %s | %s\n", what, e1, e2); goto done; }
    worst = 0;
    for (int i = 0; i < h->g->noutputs; i++) {
        pc_val v = h->g->outputs[i];
        const pc_value *x = pc_v(h->g, v);
        const void *a = pc_compiled_data(c, v), *b = pc_ref_data(r, v);
        double e = a && b ? tensor_err(x->dtype, a, b, pc_shape_numel(x->shape)) : INFINITY;
        if (e > worst) worst = e;
    }
done:
    pc_ref_free(r);
    pc_compiled_free(c);
    return worst;
}

static void hcheck(H *h, const char *what, double tol) {
    double e = hcheck_ex(h, what, NULL);
    if (!(e <= tol)) printf("\n    %s: error %.3g > %.3g\n", what, e, tol);
    CU_ASSERT(e <= tol);
}

/* ---------------------------------------------------------------- ops */

static void t_elementwise(void) {
    static const char *const bin[] = {"add", "sub", "mul", "div", "maximum", "minimum", "eq", "lt", "gt"};
    pc_shape sa[] = {PC_SHAPE(4, 5), PC_SHAPE(3, 4, 5), PC_SHAPE(2, 1, 7), PC_SCALAR, PC_SHAPE(33)};
    pc_shape sb[] = {PC_SHAPE(4, 5), PC_SHAPE(5), PC_SHAPE(3, 1), PC_SHAPE(6), PC_SHAPE(1)};
    for (size_t o = 0; o < sizeof bin / sizeof *bin; o++)
        for (size_t s = 0; s < sizeof sa / sizeof *sa; s++) {
            H *h = hnew();
            pc_val a = fin(h, "a", sa[s], -2, 2), b = fin(h, "b", sb[s], 0.5, 2);
            mo(h, pc_op(h->g, bin[o], 2, (pc_val[]){a, b}, 0, NULL));
            hcheck(h, bin[o], 1e-6);
            hfree(h);
        }
    static const char *const ibin[] = {"add", "sub", "mul", "maximum", "minimum", "eq", "lt", "gt"};
    for (size_t o = 0; o < sizeof ibin / sizeof *ibin; o++) {
        H *h = hnew();
        pc_val a = iin(h, "a", PC_SHAPE(3, 8), -100, 100), b = iin(h, "b", PC_SHAPE(8), -100, 100);
        mo(h, pc_op(h->g, ibin[o], 2, (pc_val[]){a, b}, 0, NULL));
        hcheck(h, ibin[o], 0);
        hfree(h);
    }
    static const char *const un[] = {"neg", "stop_gradient", "exp", "log", "sqrt", "rsqrt", "square", "abs", "tanh", "sigmoid", "relu",
                                      "silu"};
    for (size_t o = 0; o < sizeof un / sizeof *un; o++) {
        H *h = hnew();
        bool pos = !strcmp(un[o], "log") || !strcmp(un[o], "sqrt") || !strcmp(un[o], "rsqrt");
        pc_val a = fin(h, "a", PC_SHAPE(7, 37), pos ? 0.01 : -8, 8);
        mo(h, pc_op(h->g, un[o], 1, &a, 0, NULL));
        hcheck(h, un[o], 2e-6);
        hfree(h);
    }
    H *h = hnew();
    pc_val a = fin(h, "a", PC_SHAPE(5, 9), -5, 5), ia = iin(h, "ia", PC_SHAPE(5, 9), -1000, 1000);
    pc_val c = fin(h, "c", PC_SHAPE(9), -1, 1), seed = iin(h, "seed", PC_SCALAR, 0, 1000);
    mo(h, pc_gelu(h->g, a, 0));
    mo(h, pc_gelu(h->g, a, 1));
    mo(h, pc_scale(h->g, a, 0.3, -1.5));
    mo(h, pc_scale(h->g, ia, 0.5, 3));
    mo(h, pc_neg(h->g, ia));
    mo(h, pc_stop_gradient(h->g, ia));
    mo(h, pc_cast(h->g, pc_scale(h->g, a, 100, 0), PC_I32));
    mo(h, pc_cast(h->g, ia, PC_F32));
    mo(h, pc_where(h->g, pc_gt(h->g, c, pc_scalar(h->g, 0)), a, pc_square(h->g, a)));
    mo(h, pc_where(h->g, ia, ia, pc_cast(h->g, a, PC_I32)));
    mo(h, pc_dropout(h->g, a, seed, 0.25, 7));
    mo(h, pc_dropout(h->g, a, seed, 0.0, 7));
    hcheck(h, "unary with attributes, where, cast, dropout", 2e-6);
    hfree(h);
}

static void t_reductions(void) {
    pc_shape xs = PC_SHAPE(3, 4, 5, 6);
    static const int64_t axsets[][3] = {{-1}, {0}, {1, 2}, {0, 3}, {1}, {0, 1, 2}};
    static const int nax[] = {1, 1, 2, 2, 1, 3};
    for (int s = 0; s < 6; s++)
        for (int keep = 0; keep < 2; keep++) {
            H *h = hnew();
            pc_val x = fin(h, "x", xs, -3, 3), xi = iin(h, "xi", xs, -50, 50);
            mo(h, pc_sum(h->g, x, nax[s], axsets[s], keep));
            mo(h, pc_mean(h->g, x, nax[s], axsets[s], keep));
            mo(h, pc_max(h->g, x, nax[s], axsets[s], keep));
            mo(h, pc_sum(h->g, xi, nax[s], axsets[s], keep));
            hcheck(h, "sum/mean/max", 1e-6);
            hfree(h);
        }
    H *h = hnew();
    pc_val x = fin(h, "x", xs, -3, 3);
    mo(h, pc_sum(h->g, x, 0, NULL, 0));
    mo(h, pc_sum_to(h->g, x, PC_SHAPE(4, 1, 6)));
    mo(h, pc_sum_to(h->g, x, PC_SHAPE(6)));
    mo(h, pc_sum_to(h->g, x, PC_SHAPE(3, 1, 1, 6)));
    for (int ax = 0; ax < 4; ax++) {
        mo(h, pc_softmax(h->g, x, ax));
        mo(h, pc_log_softmax(h->g, x, ax));
    }
    mo(h, pc_rmsnorm(h->g, x, fin(h, "w", PC_SHAPE(6), -1, 1), 1e-5));
    mo(h, pc_layernorm(h->g, x, fin(h, "w2", PC_SHAPE(6), -1, 1), fin(h, "b2", PC_SHAPE(6), -1, 1), 1e-5));
    pc_val big = fin(h, "big", PC_SHAPE(4, 300), -30, 30);
    mo(h, pc_softmax(h->g, big, -1));
    mo(h, pc_log_softmax(h->g, big, -1));
    mo(h, pc_rmsnorm(h->g, big, fin(h, "w3", PC_SHAPE(300), -1, 1), 1e-6));
    hcheck(h, "sum_to, softmax, norms", 2e-6);
    hfree(h);
}

static void mm_case(pc_shape as, pc_shape bs, int ta, int tb, bool frozen_b) {
    H *h = hnew();
    pc_val a = fin(h, "a", as, -1, 1), b;
    if (frozen_b) {
        b = pc_param(h->g, "w", "w", PC_F32, bs, PC_FROZEN, (pc_init){PC_INIT_NORMAL, 0.5, 0});
    } else b = fin(h, "b", bs, -1, 1);
    mo(h, pc_matmul(h->g, a, b, ta, tb));
    char what[256], s1[64], s2[64];
    pc_shape_str(as, s1, sizeof s1);
    pc_shape_str(bs, s2, sizeof s2);
    snprintf(what, sizeof what, "matmul %s%s x %s%s", s1, ta ? "^T" : "", s2, tb ? "^T" : "");
    hcheck(h, what, 1e-5);
    hfree(h);
}

static void t_matmul(void) {
    mm_case(PC_SHAPE(7, 5), PC_SHAPE(5, 3), 0, 0, false);
    mm_case(PC_SHAPE(5, 7), PC_SHAPE(5, 3), 1, 0, false);
    mm_case(PC_SHAPE(7, 5), PC_SHAPE(3, 5), 0, 1, true);
    mm_case(PC_SHAPE(5, 7), PC_SHAPE(3, 5), 1, 1, false);
    mm_case(PC_SHAPE(2, 3, 7, 5), PC_SHAPE(5, 4), 0, 0, true);
    mm_case(PC_SHAPE(2, 3, 7, 5), PC_SHAPE(4, 5), 0, 1, false);
    mm_case(PC_SHAPE(2, 3, 5, 7), PC_SHAPE(5, 4), 1, 0, false);
    mm_case(PC_SHAPE(2, 1, 7, 5), PC_SHAPE(3, 5, 4), 0, 0, false);
    mm_case(PC_SHAPE(7, 5), PC_SHAPE(2, 5, 4), 0, 0, false);
    mm_case(PC_SHAPE(4, 7, 5), PC_SHAPE(4, 6, 5), 0, 1, false);
    mm_case(PC_SHAPE(64, 200), PC_SHAPE(200, 48), 0, 0, true);
    mm_case(PC_SHAPE(3, 0), PC_SHAPE(0, 4), 0, 0, false);
    H *h = hnew(); /* kron and a matmul over views */
    pc_val a = fin(h, "a", PC_SHAPE(3, 4), -1, 1), b = fin(h, "b", PC_SHAPE(2, 5), -1, 1);
    mo(h, pc_kron(h->g, a, b));
    pc_val x = fin(h, "x", PC_SHAPE(2, 6, 3, 4), -1, 1), y = fin(h, "y", PC_SHAPE(2, 6, 3, 4), -1, 1);
    pc_val xt = pc_transpose(h->g, x, 4, (int64_t[]){0, 2, 1, 3}), yt = pc_transpose(h->g, y, 4, (int64_t[]){0, 2, 1, 3});
    mo(h, pc_matmul(h->g, xt, yt, 0, 1));
    mo(h, pc_matmul(h->g, xt, yt, 1, 0));
    pc_val w2 = fin(h, "w2", PC_SHAPE(4, 5), -1, 1);
    mo(h, pc_matmul(h->g, pc_slice(h->g, x, 1, 1, 4), w2, 0, 0)); /* batch axes that do not merge */
    mo(h, pc_matmul(h->g, pc_broadcast(h->g, a, PC_SHAPE(2, 3, 4)), w2, 0, 0)); /* stride-0 batch */
    hcheck(h, "kron, matmul of transposed views", 1e-5);
    hfree(h);
}

static void t_layout(void) {
    H *h = hnew();
    pc_val x = fin(h, "x", PC_SHAPE(2, 3, 4, 5), -1, 1), v = fin(h, "v", PC_SHAPE(4, 1, 5), -1, 1);
    pc_val t = pc_transpose(h->g, x, 4, (int64_t[]){3, 1, 0, 2});
    mo(h, t);                                                   /* a strided output */
    mo(h, pc_reshape(h->g, t, PC_SHAPE(5, 3, 8)));              /* reshape of a strided view */
    mo(h, pc_exp(h->g, t));                                     /* strided kernel input */
    mo(h, pc_softmax(h->g, t, -1));                             /* strided call input */
    pc_val bc = pc_broadcast(h->g, v, PC_SHAPE(3, 4, 2, 5));
    mo(h, pc_reshape(h->g, bc, PC_SHAPE(12, 10)));
    mo(h, pc_add(h->g, bc, pc_scalar(h->g, 1)));
    mo(h, pc_slice(h->g, x, 2, 1, 3));
    mo(h, pc_slice(h->g, t, 0, 2, 4));
    mo(h, pc_pad(h->g, x, 1, 2, 1));
    mo(h, pc_pad(h->g, t, -1, 0, 3));
    mo(h, pc_concat(h->g, 3, (pc_val[]){x, pc_neg(h->g, x), x}, 2));
    mo(h, pc_concat(h->g, 2, (pc_val[]){t, t}, 0));
    mo(h, pc_reshape(h->g, pc_slice(h->g, x, 0, 1, 2), PC_SHAPE(60)));
    hcheck(h, "views, pad, concat", 1e-6);
    hfree(h);
}

static void t_model_ops(void) {
    H *h = hnew();
    pc_val table = fin(h, "table", PC_SHAPE(11, 6), -1, 1), ids = iin(h, "ids", PC_SHAPE(3, 4), 0, 10);
    pc_val e = mo(h, pc_embedding(h->g, table, ids));
    mo(h, pc_embedding_grad(h->g, ids, pc_square(h->g, e), 11));
    pc_val q = fin(h, "q", PC_SHAPE(2, 5, 3, 8), -1, 1), pos = iin(h, "pos", PC_SHAPE(5), 0, 50);
    pc_val pos2 = iin(h, "pos2", PC_SHAPE(2, 5), 0, 50);
    int32_t cpos[5] = {0, 1, 2, 3, 4};
    pc_val posc = pc_const(h->g, PC_I32, PC_SHAPE(5), cpos);
    pc_val q16 = fin(h, "q16", PC_SHAPE(2, 5, 3, 16), -1, 1); /* whole 16-lane vectors */
    for (int style = 0; style < 2; style++)
        for (int inv = 0; inv < 2; inv++) {
            mo(h, pc_rope(h->g, q, pos, 10000.0, style, inv));
            mo(h, pc_rope(h->g, q, pos2, 500.0, style, inv));
            mo(h, pc_rope(h->g, q, posc, 10000.0, style, inv));
            mo(h, pc_rope(h->g, q16, pos, 10000.0, style, inv));
            mo(h, pc_rope(h->g, q16, pos2, 500.0, style, inv));
        }
    pc_val sc = fin(h, "sc", PC_SHAPE(2, 3, 5, 7), -3, 3);
    mo(h, pc_causal_mask(h->g, sc, -1e30));
    mo(h, pc_causal_mask(h->g, sc, 0.0));
    pc_val m2 = pc_causal_mask(h->g, pc_scale(h->g, sc, 0.5, 0), -1e30);
    mo(h, pc_softmax(h->g, m2, -1)); /* the fused causal softmax */
    hcheck(h, "embedding, rope, causal_mask, causal softmax", 1e-6);
    hfree(h);
    for (int red = 0; red < 3; red++) {
        h = hnew();
        pc_val lg = fin(h, "logits", PC_SHAPE(3, 4, 37), -6, 6), tg = iin(h, "t", PC_SHAPE(3, 4), 0, 36);
        ((int32_t *)h->bp[h->nb - 1])[5] = -100;
        mo(h, pc_cross_entropy(h->g, lg, tg, -100, red));
        pc_val gin = red == 2 ? fin(h, "g", PC_SHAPE(3, 4), -1, 1) : pc_scalar(h->g, 1.5f);
        mo(h, pc_op(h->g, "cross_entropy_grad", 3, (pc_val[]){lg, tg, gin}, 2,
                    (const char *const[]){"ignore_index=-100", red == 0 ? "reduction=0" : red == 1 ? "reduction=1" : "reduction=2"}));
        hcheck(h, "cross_entropy and its gradient", 1e-6);
        hfree(h);
    }
    h = hnew();
    pc_val p = fin(h, "p", PC_SHAPE(4, 9), -1, 1), m = fin(h, "m", PC_SHAPE(4, 9), -1, 1);
    pc_val vv = fin(h, "vv", PC_SHAPE(4, 9), 0, 1), gg = fin(h, "gg", PC_SHAPE(4, 9), -1, 1);
    pc_val hp = pc_input(h->g, "hp", PC_F32, PC_SHAPE(8));
    float *hpd = hbind(h, hp, 32);
    memcpy(hpd, (float[]){0.01f, 0.9f, 0.999f, 1e-8f, 0.01f, 3, 0.5f, 0}, 32);
    pc_val ss = pc_sum(h->g, pc_square(h->g, gg), 0, NULL, 0);
    pc_val gs = mo(h, pc_op(h->g, "clip_coef", 2, (pc_val[]){ss, hp}, 0, NULL));
    pc_val m1 = mo(h, pc_op(h->g, "adamw_m", 4, (pc_val[]){m, gg, hp, gs}, 0, NULL));
    pc_val v1 = mo(h, pc_op(h->g, "adamw_v", 4, (pc_val[]){vv, gg, hp, gs}, 0, NULL));
    mo(h, pc_op(h->g, "adamw_p", 4, (pc_val[]){p, m1, v1, hp}, 0, NULL));
    hcheck(h, "adamw, clip_coef", 1e-6);
    hfree(h);
}

/* empty tensors and scalars go through every instruction kind */
static void t_zero_size(void) {
    H *h = hnew();
    pc_val x = fin(h, "x", PC_SHAPE(0, 4), -1, 1), w = fin(h, "w", PC_SHAPE(4, 3), -1, 1);
    pc_val s = fin(h, "s", PC_SCALAR, -1, 1), ids = iin(h, "ids", PC_SHAPE(0), 0, 2);
    mo(h, pc_exp(h->g, x));
    mo(h, pc_sum(h->g, x, 1, (int64_t[]){0}, 0));
    mo(h, pc_mean(h->g, x, 1, (int64_t[]){0}, 1));
    mo(h, pc_softmax(h->g, x, -1));
    mo(h, pc_matmul(h->g, x, w, 0, 0));
    mo(h, pc_matmul(h->g, x, x, 1, 0)); /* K = 0: zeros */
    mo(h, pc_transpose(h->g, x, 2, (int64_t[]){1, 0}));
    mo(h, pc_embedding(h->g, w, ids));
    mo(h, pc_mul(h->g, s, pc_exp(h->g, s)));
    mo(h, pc_sum(h->g, s, 0, NULL, 0));
    hcheck(h, "empty tensors and scalars", 1e-6);
    hfree(h);
}

/* fused chains: checks the result and how it was lowered */
static void t_fusion(void) {
    H *h = hnew();
    pc_val x = fin(h, "x", PC_SHAPE(16, 32), -1, 1), w = fin(h, "w", PC_SHAPE(48, 32), -1, 1);
    pc_val a = fin(h, "a", PC_SHAPE(4, 32), -1, 1), b = fin(h, "b", PC_SHAPE(48, 4), -1, 1);
    pc_val g = fin(h, "g", PC_SHAPE(48), -1, 1);
    pc_val base = pc_matmul(h->g, x, w, 0, 1);
    pc_val lora = pc_scale(h->g, pc_matmul(h->g, pc_matmul(h->g, x, a, 0, 1), b, 0, 1), 2.0, 0);
    pc_val y = pc_add(h->g, base, lora);                       /* accumulate */
    pc_val z = pc_mul(h->g, pc_silu(h->g, y), pc_add(h->g, y, g)); /* one kernel */
    pc_val r = pc_rsqrt(h->g, pc_scale(h->g, pc_mean(h->g, pc_square(h->g, z), 1, (int64_t[]){-1}, 1), 1, 1e-5));
    mo(h, pc_mul(h->g, z, r));
    mo(h, pc_sum(h->g, z, 0, NULL, 0));
    hcheck(h, "LoRA accumulate + fused chain", 1e-5);
    char err[2048];
    pc_compiled *c = compile(h->g, err, sizeof err);
    CU_ASSERT_FATAL(c != NULL);
    const pc_lowered *l = pc_compiled_lowered(c);
    int nk = 0;
    for (int i = 0; i < l->ninsns; i++) nk += l->insn[i].kind == PC_LI_KERNEL;
    CU_ASSERT_EQUAL(l->naccumulate, 1);
    CU_ASSERT_EQUAL(nk, 3); /* silu*add*mul, scale+rsqrt, final mul */
    pc_compiled_free(c);
    hfree(h);
}

static void t_errors(void) {
    H *h = hnew();
    pc_val t = fin(h, "table", PC_SHAPE(5, 3), -1, 1), ids = iin(h, "ids", PC_SHAPE(2, 3), 0, 4);
    ((int32_t *)h->bp[1])[4] = 9;
    mo(h, pc_embedding(h->g, t, ids));
    CU_ASSERT(hcheck_ex(h, "embedding id out of range", "id 9 at index [1,1] of %ids is out of range [0, 5)") == 0);
    hfree(h);
    h = hnew();
    pc_val lg = fin(h, "lg", PC_SHAPE(4, 6), -1, 1), tg = iin(h, "tg", PC_SHAPE(4), 0, 5);
    ((int32_t *)h->bp[1])[2] = 6;
    mo(h, pc_cross_entropy(h->g, lg, tg, -100, 0));
    CU_ASSERT(hcheck_ex(h, "target out of range", "target 6 at index [2] of %tg is out of range") == 0);
    hfree(h);
    h = hnew();
    pc_val x = pc_input(h->g, "x", PC_F32, PC_SHAPE(3));
    mo(h, pc_exp(h->g, x));
    CU_ASSERT(hcheck_ex(h, "unbound input", "is not bound") == 0);
    hfree(h);
}

/* updates: apply_updates writes the new values (including one that is another leaf) */
static void t_updates(void) {
    H *h = hnew();
    pc_val p = pc_param(h->g, "p", "p", PC_F32, PC_SHAPE(3, 4), PC_TRAINABLE, (pc_init){PC_INIT_UNIFORM, -1, 1});
    pc_val s = pc_state(h->g, "s", "s", PC_F32, PC_SHAPE(3, 4), (pc_init){PC_INIT_ONES, 0, 0});
    pc_val x = fin(h, "x", PC_SHAPE(3, 4), -1, 1);
    pc_val np = pc_add(h->g, p, pc_mul(h->g, x, s));
    mo(h, pc_sum(h->g, np, 0, NULL, 0));
    pc_add_update(h->g, p, np);
    pc_add_update(h->g, s, p); /* s <- old p */
    char err[2048];
    pc_ref *r = pc_ref_new(h->g, err, sizeof err);
    pc_compiled *c = compile(h->g, err, sizeof err);
    CU_ASSERT_FATAL(r && c);
    pc_ref_bind(r, x, h->bp[0]);
    pc_compiled_bind(c, x, h->bp[0]);
    double worst = 0;
    for (int step = 0; step < 3; step++) {
        CU_ASSERT_FATAL(pc_ref_run(r, err, sizeof err) == 0 && pc_compiled_run(c, err, sizeof err) == 0);
        CU_ASSERT(pc_ref_apply_updates(r) == 0 && pc_compiled_apply_updates(c) == 0);
        for (int k = 0; k < 2; k++) {
            pc_val v = k ? s : p;
            double e = tensor_err(PC_F32, pc_compiled_data(c, v), pc_ref_data(r, v), 12);
            if (e > worst) worst = e;
        }
    }
    CU_ASSERT(worst <= 1e-6);
    pc_ref_free(r);
    pc_compiled_free(c);
    hfree(h);
}


/* ---------------------------------------------------------------- training graphs */

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* worst error over every output: losses at loss_tol, the rest (gradients) at grad_tol */
static int compare_outputs(const pc_graph *g, pc_ref *r, pc_compiled *c, double *loss_err, double *grad_err) {
    *loss_err = *grad_err = 0;
    for (int i = 0; i < g->noutputs; i++) {
        pc_val v = g->outputs[i];
        const pc_value *x = pc_v(g, v);
        const void *a = pc_compiled_data(c, v), *b = pc_ref_data(r, v);
        if (!a || !b) return -1;
        double e = tensor_err(x->dtype, a, b, pc_shape_numel(x->shape));
        double *w = (x->flags & PC_LOSS) ? loss_err : grad_err;
        if (e > *w) *w = e;
        if (getenv("PEFTC_TEST_VERBOSE") && e > 2e-6) printf("\n      output %s %.2e", x->name, e);
    }
    return 0;
}

static void t_mlp_adamw(void) {
    pc_graph *g = pc_graph_new("mlp");
    pc_val x = pc_input(g, "x", PC_F32, PC_SHAPE(16, 32)), t = pc_input(g, "t", PC_I32, PC_SHAPE(16));
    pc_val w1 = pc_param(g, "w1", "w1", PC_F32, PC_SHAPE(64, 32), PC_FROZEN, (pc_init){PC_INIT_NORMAL, 0.2, 0});
    pc_val la = pc_param(g, "la", "la", PC_F32, PC_SHAPE(4, 32), PC_TRAINABLE, (pc_init){PC_INIT_NORMAL, 0.1, 0});
    pc_val lb = pc_param(g, "lb", "lb", PC_F32, PC_SHAPE(64, 4), PC_TRAINABLE, (pc_init){PC_INIT_NORMAL, 0.1, 0});
    pc_val w2 = pc_param(g, "w2", "w2", PC_F32, PC_SHAPE(10, 64), PC_TRAINABLE, (pc_init){PC_INIT_NORMAL, 0.2, 0});
    pc_val up = pc_scale(g, pc_matmul(g, pc_matmul(g, x, la, 0, 1), lb, 0, 1), 2.0, 0);
    pc_val hdn = pc_gelu(g, pc_add(g, pc_matmul(g, x, w1, 0, 1), up), 0);
    pc_mark_loss(g, pc_cross_entropy(g, pc_matmul(g, hdn, w2, 0, 1), t, -100, 0));
    char err[4096];
    pc_adamw_opts ao = {.clip = 1};
    CU_ASSERT_FATAL(pc_pass_autograd(g, err, sizeof err) == 0 && pc_pass_adamw(g, &ao, err, sizeof err) == 0);
    float xd[16 * 32], hp[8] = {0.01f, 0.9f, 0.999f, 1e-8f, 0.01f, 1, 1.0f, 0};
    int32_t td[16];
    for (int i = 0; i < 16 * 32; i++) xd[i] = (float)(2 * rnd() - 1);
    for (int i = 0; i < 16; i++) td[i] = (int32_t)(rnd() * 10);
    td[3] = -100;
    pc_ref *r = pc_ref_new(g, err, sizeof err);
    pc_compiled *c = compile(g, err, sizeof err);
    if (!c) printf("\n    %s\n", err);
    CU_ASSERT_FATAL(r && c);
    pc_val hpv = pc_lookup(g, "hp");
    pc_ref_bind(r, x, xd), pc_ref_bind(r, t, td), pc_ref_bind(r, hpv, hp);
    pc_compiled_bind(c, x, xd), pc_compiled_bind(c, t, td), pc_compiled_bind(c, hpv, hp);
    double le = 0, ge = 0, we = 0;
    for (int step = 1; step <= 3; step++) {
        hp[5] = (float)step;
        CU_ASSERT_FATAL(pc_ref_run(r, err, sizeof err) == 0);
        CU_ASSERT_FATAL(pc_compiled_run(c, err, sizeof err) == 0);
        double l1, g1;
        CU_ASSERT_FATAL(compare_outputs(g, r, c, &l1, &g1) == 0);
        le = fmax(le, l1), ge = fmax(ge, g1);
        CU_ASSERT(pc_ref_apply_updates(r) == 0 && pc_compiled_apply_updates(c) == 0);
    }
    for (int i = 0; i < g->nupdates; i++) {
        pc_val p = g->updates[i].target;
        double e = tensor_err(PC_F32, pc_compiled_data(c, p), pc_ref_data(r, p), pc_shape_numel(pc_v(g, p)->shape));
        we = fmax(we, e);
    }
    printf("\n    mlp 3 AdamW steps: loss %.2e, gradients %.2e, updated params/states %.2e\n", le, ge, we);
    CU_ASSERT(le <= 1e-5 && ge <= 1e-4 && we <= 1e-5);
    pc_ref_free(r);
    pc_compiled_free(c);
    pc_graph_free(g);
}

/* stories260K + LoRA: the graph, the frozen checkpoint and two stores (one per backend) */
typedef struct {
    pc_session s;
    pc_graph *g;
    pc_store st[2];
    int32_t *tokens, *targets;
    float hp[8];
    pc_ref *r;
    pc_compiled *c;
} llama;

static void llama_close(llama *x) {
    pc_ref_free(x->r);
    pc_compiled_free(x->c);
    pc_store_free(&x->st[0]);
    pc_store_free(&x->st[1]);
    pc_graph_free(x->g);
    pc_session_close(&x->s);
    free(x->tokens);
    free(x->targets);
}

static int llama_bind_compiled(llama *x, char *err, size_t errlen) {
    const pc_graph *g = x->g;
    for (pc_val v = 0; v < g->nvals; v++) {
        const pc_value *p = pc_v(g, v);
        const float *t = p->op == PC_OP_param && p->key ? pc_model_weight(&x->s.model, p->key, NULL) : NULL;
        if (t && pc_compiled_bind(x->c, v, (void *)t)) return -1;
    }
    for (int i = 0; i < x->st[1].n; i++)
        if (pc_compiled_bind(x->c, x->st[1].e[i].v, x->st[1].e[i].data)) return -1;
    (void)err, (void)errlen;
    return 0;
}

/* fx: the golden fixture (tokens, LoRA r/alpha) or NULL (random tokens, B x S) */
/* rank: LoRA r with alpha = 2r on all seven projections (4 = the golden fixture's, 8 = peftc train's) */
static int llama_open(llama *x, const pc_st_file *fx, int64_t B, int64_t S, int rank, int adamw, int ref) {
    char err[4096];
    memset(x, 0, sizeof *x);
    if (pc_session_open(&x->s, NULL, MODEL, NULL, NULL, err, sizeof err)) goto fail;
    pc_adapter_config *cfg = pc_adapter_config_new(PC_PEFT_LORA);
    static const char *const tm[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
    cfg->r = rank;
    cfg->lora.lora_alpha = (pc_num){.v = 2.0 * rank, .is_int = true};
    pc_spec_set_list(&cfg->target_modules, tm, 7);
    if (pc_session_set_adapter(&x->s, cfg, "test", err, sizeof err)) goto fail;
    pc_build_req req = {.task = PC_TASK_LM, .batch = B, .seq = S, .output_logits = fx != NULL, .mode = PC_ADAPT_TRAIN};
    if (!(x->g = pc_session_build(&x->s, &req, true, err, sizeof err)) ||
        pc_run_pipeline(&x->g, adamw ? PC_TRAIN_PASSES : "autograd", NULL, err, sizeof err))
        goto fail;
    const pc_st_file *files[1] = {fx};
    for (int k = 0; k < 2; k++)
        if (pc_store_init(&x->st[k], x->g, pc_session_is_base, &x->s, files, fx ? 1 : 0, 7, err, sizeof err)) goto fail;
    x->tokens = malloc((size_t)(B * S) * 4);
    x->targets = malloc((size_t)(B * S) * 4);
    if (fx) {
        memcpy(x->tokens, pc_st_find(fx, "tokens")->data, (size_t)(B * S) * 4);
        memcpy(x->targets, pc_st_find(fx, "targets")->data, (size_t)(B * S) * 4);
    } else {
        for (int64_t i = 0; i < B * S; i++) {
            x->tokens[i] = (int32_t)(rnd() * x->s.model.info.vocab);
            x->targets[i] = i % 29 == 5 ? PC_LLAMA_IGNORE : (int32_t)(rnd() * x->s.model.info.vocab);
        }
    }
    memcpy(x->hp, (float[]){0.01f, 0.9f, 0.999f, 1e-8f, 0.01f, 1, 0, 0}, sizeof x->hp);
    pc_val tok = pc_lookup(x->g, "tokens"), tgt = pc_lookup(x->g, "targets"), hp = pc_lookup(x->g, "hp");
    if (ref) {
        if (!(x->r = pc_ref_new(x->g, err, sizeof err))) goto fail;
        /* the interpreter is bound by hand: the frontend binders take a pc_exec */
        for (pc_val v = 0; v < x->g->nvals; v++) {
            const pc_value *pv = pc_v(x->g, v);
            const float *t = pv->op == PC_OP_param && pv->key ? pc_model_weight(&x->s.model, pv->key, NULL) : NULL;
            if (t && pc_ref_bind(x->r, v, (void *)t)) goto fail;
        }
        for (int i = 0; i < x->st[0].n; i++)
            if (pc_ref_bind(x->r, x->st[0].e[i].v, x->st[0].e[i].data)) goto fail;
        pc_ref_bind(x->r, tok, x->tokens), pc_ref_bind(x->r, tgt, x->targets);
        if (adamw) pc_ref_bind(x->r, hp, x->hp);
    }
    if (!(x->c = compile(x->g, err, sizeof err)) || llama_bind_compiled(x, err, sizeof err)) goto fail;
    pc_compiled_bind(x->c, tok, x->tokens), pc_compiled_bind(x->c, tgt, x->targets);
    if (adamw) pc_compiled_bind(x->c, hp, x->hp);
    return 0;
fail:
    printf("\n    setup: %s\n", err);
    return -1;
}

static pc_val loss_of(const pc_graph *g) {
    for (int i = 0; i < g->noutputs; i++)
        if (pc_v(g, g->outputs[i])->flags & PC_LOSS) return g->outputs[i];
    return PC_NONE;
}

static double rel_err(const float *a, const float *b, int64_t n) { /* as test_golden_lora.c */
    double m = 0, scale = 1;
    for (int64_t i = 0; i < n; i++) if (fabs(b[i]) > scale) scale = fabs(b[i]);
    for (int64_t i = 0; i < n; i++) if (fabs((double)a[i] - b[i]) > m) m = fabs((double)a[i] - b[i]);
    return m / scale;
}

static void t_llama_lora_steps(void) {
    llama x;
    char err[4096];
    if (llama_open(&x, NULL, 4, 32, 4, 1, 1)) { CU_FAIL("setup"); llama_close(&x); return; }
    double le = 0, ge = 0, we = 0, me = 0, wt = 0;
    int64_t noise = 0;
    for (int step = 1; step <= 3; step++) {
        /* each step starts both backends from the interpreter's weights and moments: AdamW turns
         * rounding-level differences of near-zero gradients into +-lr steps of a zero-initialised
         * lora_B, so free-running trajectories drift apart for reasons no backend can avoid */
        for (int i = 0; i < x.st[0].n; i++) memcpy(x.st[1].e[i].data, x.st[0].e[i].data, (size_t)x.st[0].e[i].n * 4);
        x.hp[5] = (float)step;
        CU_ASSERT_FATAL(pc_ref_run(x.r, err, sizeof err) == 0);
        if (pc_compiled_run(x.c, err, sizeof err)) printf("\n    %s\n", err);
        double l1, g1;
        CU_ASSERT_FATAL(compare_outputs(x.g, x.r, x.c, &l1, &g1) == 0);
        if (getenv("PEFTC_TEST_VERBOSE")) printf("\n    step %d: loss %.2e, gradients %.2e", step, l1, g1);
        le = fmax(le, l1), ge = fmax(ge, g1);
        CU_ASSERT(pc_ref_apply_updates(x.r) == 0 && pc_compiled_apply_updates(x.c) == 0);
        /* updated weights as test_golden_lora.c compares them (relative to max(1, max|w|)), and
         * relative to their own scale; moments relative to their own scale. AdamW divides by the
         * gradient's magnitude: where the gradient is below the gradient tolerance (1e-5 of its
         * largest entry) its direction is rounding noise, and so is the step; those entries are
         * counted, not compared. */
        for (int i = 0; i < x.st[0].n; i++) {
            const pc_store_entry *a = &x.st[1].e[i], *b = &x.st[0].e[i];
            if (b->flags & PC_STATE) {
                me = fmax(me, tensor_err(PC_F32, a->data, b->data, b->n));
                continue;
            }
            char gname[700];
            snprintf(gname, sizeof gname, "grad.%s", pc_v(x.g, b->v)->name);
            const float *gr = pc_ref_data(x.r, pc_lookup(x.g, gname));
            double gm = 0, wm = 1, wo = 1e-30, d = 0;
            for (int64_t j = 0; j < b->n; j++) gm = fmax(gm, fabs(gr[j])), wm = fmax(wm, fabs(b->data[j])), wo = fmax(wo, fabs(b->data[j]));
            for (int64_t j = 0; j < b->n; j++) {
                if (fabs(gr[j]) < 1e-5 * gm) { noise++; continue; }
                d = fmax(d, fabs((double)a->data[j] - b->data[j]));
            }
            we = fmax(we, d / wm), wt = fmax(wt, d / wo);
        }
    }
    printf("\n    stories260K+LoRA, 3 AdamW steps: loss %.2e, gradients %.2e, updated weights %.2e (%.2e of their own "
           "scale; %lld entries with gradients in the noise skipped), moments %.2e\n", le, ge, we, wt, (long long)noise, me);
    CU_ASSERT(le <= 1e-5 && ge <= 1e-4 && we <= 1e-5 && me <= 1e-4);
    llama_close(&x);
}

static void t_golden(void) {
    char err[4096];
    pc_st_file *fx = pc_st_open(FIXTURE, err, sizeof err);
    CU_ASSERT_FATAL(fx != NULL);
    llama x;
    if (llama_open(&x, fx, 2, 16, 4, 0, 0)) { CU_FAIL("setup"); llama_close(&x); pc_st_close(fx); return; }
    CU_ASSERT_FATAL(pc_compiled_run(x.c, err, sizeof err) == 0);
    pc_val lv = loss_of(x.g), logits = PC_NONE;
    for (int i = 0; i < x.g->noutputs; i++)
        if (pc_v(x.g, x.g->outputs[i])->shape.rank == 3) logits = x.g->outputs[i];
    float loss = *(const float *)pc_compiled_data(x.c, lv), want = *(const float *)pc_st_find(fx, "loss")->data;
    const pc_st_tensor *wl = pc_st_find(fx, "logits");
    double le = rel_err(pc_compiled_data(x.c, logits), wl->data, pc_shape_numel(wl->shape)), worst = 0;
    int checked = 0;
    for (int i = 0; i < x.st[1].n; i++) {
        char gname[700], gkey[700];
        snprintf(gname, sizeof gname, "grad.%s", pc_v(x.g, x.st[1].e[i].v)->name);
        snprintf(gkey, sizeof gkey, "grad.%s", x.st[1].e[i].key);
        const pc_st_tensor *wg = pc_st_find(fx, gkey);
        const void *got = pc_compiled_data(x.c, pc_lookup(x.g, gname));
        CU_ASSERT_FATAL(wg && got);
        worst = fmax(worst, rel_err(got, wg->data, x.st[1].e[i].n));
        checked++;
    }
    printf("\n    golden: loss %.7f (PyTorch %.7f), logits %.2e, %d gradients %.2e", loss, want, le, checked, worst);
    CU_ASSERT(fabs(loss - want) <= 1e-5 * fabs(want) && le <= 1e-5 && worst <= 1e-4 && checked == 70);
    llama_close(&x);
    /* 10 AdamW steps */
    if (llama_open(&x, fx, 2, 16, 4, 1, 0)) { CU_FAIL("setup"); llama_close(&x); pc_st_close(fx); return; }
    const float *wlosses = pc_st_find(fx, "losses")->data;
    double tw = 0, fw = 0;
    for (int t = 1; t <= 10; t++) {
        x.hp[5] = (float)t;
        CU_ASSERT_FATAL(pc_compiled_run(x.c, err, sizeof err) == 0);
        tw = fmax(tw, fabs(*(const float *)pc_compiled_data(x.c, loss_of(x.g)) - wlosses[t - 1]) / fabs(wlosses[t - 1]));
        CU_ASSERT_FATAL(pc_compiled_apply_updates(x.c) == 0);
    }
    for (int i = 0; i < x.st[1].n; i++) {
        if (!(x.st[1].e[i].flags & PC_TRAINABLE)) continue;
        char key[700];
        snprintf(key, sizeof key, "final.%s", x.st[1].e[i].key);
        const pc_st_tensor *wf = pc_st_find(fx, key);
        CU_ASSERT_FATAL(wf != NULL);
        fw = fmax(fw, rel_err(x.st[1].e[i].data, wf->data, x.st[1].e[i].n));
    }
    printf("; 10 steps: losses %.2e, final A/B %.2e\n", tw, fw);
    CU_ASSERT(tw <= 1e-4 && fw <= 1e-4);
    llama_close(&x);
    pc_st_close(fx);
}

/* train-step speed at B=8, S=64 with peftc train's default adapter (LoRA r=8 on all seven
 * projections, AdamW): printed, not asserted, with a profile of where the time goes */
static void t_speed(void) {
    llama x;
    char err[4096];
    const int64_t B = 8, S = 64;
    if (llama_open(&x, NULL, B, S, 8, 1, 1)) { CU_FAIL("setup"); llama_close(&x); return; }
    double t0 = now_s();
    CU_ASSERT_FATAL(pc_ref_run(x.r, err, sizeof err) == 0);
    double tref = now_s() - t0;
    for (int i = 0; i < 3; i++) CU_ASSERT_FATAL(pc_compiled_run(x.c, err, sizeof err) == 0); /* warm up */
    double best = 1e9, total = 0;
    int n = 0;
    while (total < 1.0 || n < 10) {
        t0 = now_s();
        pc_compiled_run(x.c, err, sizeof err);
        pc_compiled_apply_updates(x.c);
        double dt = now_s() - t0;
        total += dt, n++;
        if (dt < best) best = dt;
    }
    double mean = total / n;
    printf("\n    train step B=%lld S=%lld: interpreter %.0f tok/s (%.1f ms); compiled %.0f tok/s mean (%.3f ms), "
           "%.0f tok/s best; %.0fx\n",
           (long long)B, (long long)S, (double)(B * S) / tref, 1e3 * tref, (double)(B * S) / mean, 1e3 * mean,
           (double)(B * S) / best, tref / mean);
    pc_compiled_set_profile(x.c, 1);
    for (int i = 0; i < 20; i++) pc_compiled_run(x.c, err, sizeof err);
    pc_compiled_profile_report(x.c, stdout);
    llama_close(&x);
}

/* a frozen weight rewritten in place and bound again is seen by the next run (the eval graph of
 * `peftc train` holds the adapter as frozen params that change between evaluations) */
static void t_rebind_refreshes(void) {
    char err[1024];
    pc_graph *g = pc_graph_new("rebind");
    pc_val x = pc_input(g, "x", PC_F32, PC_SHAPE(32, 64));
    pc_val w = pc_param(g, "w", "w.weight", PC_F32, PC_SHAPE(48, 64), PC_FROZEN, (pc_init){0});
    pc_val y = pc_matmul(g, x, w, 0, 1);
    pc_mark_output(g, y);
    float *xd = malloc(32 * 64 * sizeof *xd), *wd = malloc(48 * 64 * sizeof *wd);
    for (int i = 0; i < 32 * 64; i++) xd[i] = (float)((i * 37) % 11) - 5;
    for (int i = 0; i < 48 * 64; i++) wd[i] = (float)((i * 13) % 7) - 3;
    pc_compiled *c = compile(g, err, sizeof err);
    CU_ASSERT_FATAL(c != NULL);
    pc_compiled_bind(c, x, xd);
    pc_compiled_bind(c, w, wd);
    CU_ASSERT_FATAL(pc_compiled_run(c, err, sizeof err) == 0);
    float first = ((const float *)pc_compiled_data(c, y))[5];
    for (int i = 0; i < 48 * 64; i++) wd[i] *= 2;
    pc_compiled_bind(c, w, wd);
    CU_ASSERT_FATAL(pc_compiled_run(c, err, sizeof err) == 0);
    CU_ASSERT_DOUBLE_EQUAL(((const float *)pc_compiled_data(c, y))[5], 2 * first, 1e-3);
    CU_ASSERT(first != 0);
    pc_compiled_free(c);
    pc_graph_free(g);
    free(xd);
    free(wd);
}

static CU_TestInfo tests[] = {
    {"rebind_refreshes_constants", t_rebind_refreshes},
    {"elementwise_ops", t_elementwise},
    {"reductions_softmax_norms", t_reductions},
    {"matmul_kron", t_matmul},
    {"views_pad_concat", t_layout},
    {"embedding_rope_mask_ce_adamw", t_model_ops},
    {"fused_chains", t_fusion},
    {"empty_tensors_scalars", t_zero_size},
    {"runtime_errors", t_errors},
    {"apply_updates", t_updates},
    {"mlp_autograd_adamw_3_steps", t_mlp_adamw},
    {"stories260k_lora_3_steps", t_llama_lora_steps},
    {"golden_fixture", t_golden},
    {"train_step_speed", t_speed},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("compiled", tests)
