/* The autograd and AdamW passes on whole models: gradients against finite differences, frozen
 * weights never getting a gradient, multi-use values, the AdamW step against a hand computation,
 * and the passes' error guards. */
#include "backend/ref.h"
#include "cu_main.h"
#include "fd_check.h"
#include "ir.h"
#include "passes/passes.h"
#include "runtime/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* ---- a graph with every leaf bound to test-owned memory ---- */
#define MAXB 24
typedef struct {
    pc_graph *g;
    int n;
    pc_val v[MAXB];
    void *data[MAXB];
} bindings;

static void *bind_new(bindings *b, pc_val v, double lo, double hi, rng *r) {
    pc_shape s = pc_val_shape(b->g, v);
    int64_t n = pc_shape_numel(s);
    float *d = calloc((size_t)(n ? n : 1), sizeof(float));
    for (int64_t i = 0; i < n; i++) d[i] = (float)(lo + (hi - lo) * urand(r));
    b->v[b->n] = v;
    b->data[b->n++] = d;
    return d;
}
static void bind_ints(bindings *b, pc_val v, const int32_t *src) {
    int64_t n = pc_shape_numel(pc_val_shape(b->g, v));
    int32_t *d = malloc((size_t)(n ? n : 1) * sizeof *d);
    memcpy(d, src, (size_t)n * sizeof *d);
    b->v[b->n] = v;
    b->data[b->n++] = d;
}
static void bindings_free(bindings *b) {
    for (int i = 0; i < b->n; i++) free(b->data[i]);
    pc_graph_free(b->g);
}

static pc_ref *make_ref(const bindings *b) {
    char err[512];
    pc_ref *ref = pc_ref_new(b->g, err, sizeof err);
    if (!ref) { printf("\n    pc_ref_new: %s\n", err); return NULL; }
    for (int i = 0; i < b->n; i++) pc_ref_bind(ref, b->v[i], b->data[i]);
    return ref;
}

/* compares grad.<P> of every trainable param with a Richardson-refined central difference;
 * returns the worst |analytic - fd| / max(1, |fd|) */
static double check_fd(const bindings *b, pc_val loss, double h) {
    pc_graph *g = b->g;
    pc_ref *ref = make_ref(b);
    if (!ref) return INFINITY;
    int bad = 0;
    double worst = 0;
    fd_run_loss(ref, loss, &bad);
    for (int k = 0; k < b->n && !bad; k++) {
        const pc_value *p = pc_v(g, b->v[k]);
        if (p->op != PC_OP_param || !(p->flags & PC_TRAINABLE)) continue;
        char name[300];
        snprintf(name, sizeof name, "grad.%s", p->name);
        pc_val gv = pc_lookup(g, name);
        CU_ASSERT_NOT_EQUAL_FATAL(gv, PC_NONE);
        int64_t n = pc_shape_numel(p->shape);
        float *ana = malloc((size_t)n * sizeof *ana);
        fd_run_loss(ref, loss, &bad);
        memcpy(ana, pc_ref_data(ref, gv), (size_t)n * sizeof *ana);
        float *x = b->data[k];
        for (int64_t i = 0; i < n && !bad; i++) {
            double fd = fd_richardson(ref, loss, &x[i], h, &bad);
            double e = fabs(ana[i] - fd) / fmax(1.0, fabs(fd));
            if (!(e <= worst)) worst = e;
            if (!(e <= 1e-3))
                printf("\n    d loss / d %s[%lld]: autograd %.6g, finite difference %.6g", p->name, (long long)i,
                       (double)ana[i], fd);
        }
        free(ana);
    }
    pc_ref_free(ref);
    return bad ? INFINITY : worst;
}

static int count_grad_outputs(const pc_graph *g) {
    int n = 0;
    for (int i = 0; i < g->noutputs; i++)
        if (strncmp(g->vals[g->outputs[i]].name, "grad.", 5) == 0) n++;
    return n;
}

static bool is_output(const pc_graph *g, pc_val v) {
    for (int i = 0; i < g->noutputs; i++)
        if (g->outputs[i] == v) return true;
    return false;
}

#define TRAIN(name, ...) pc_param(g, name, "model." name, PC_F32, PC_SHAPE(__VA_ARGS__), PC_TRAINABLE, (pc_init){0})
#define FROZEN(name, ...) pc_param(g, name, "model." name, PC_F32, PC_SHAPE(__VA_ARGS__), PC_FROZEN, (pc_init){0})

/* ---- (1) MLP with a frozen W1, a LoRA branch on it, and a trainable head ----
 * with_ia3: x is first scaled by a trainable vector s, so the gradient must flow through the
 * frozen W1 to s (dX), still without any dW1 */
static void mlp(bool with_ia3) {
    rng r = {42};
    bindings b = {.g = pc_graph_new("mlp")};
    pc_graph *g = b.g;
    pc_val x = pc_input(g, "x", PC_F32, PC_SHAPE(4, 8));
    pc_val t = pc_input(g, "t", PC_I32, PC_SHAPE(4));
    pc_val w1 = FROZEN("w1", 16, 8), a = TRAIN("lora_a", 2, 8), bb = TRAIN("lora_b", 16, 2);
    pc_val w2 = TRAIN("w2", 5, 16);
    pc_val s = with_ia3 ? TRAIN("ia3", 8) : PC_NONE;
    pc_val xs = with_ia3 ? pc_mul(g, x, s) : x;
    pc_val h = pc_add(g, pc_matmul(g, xs, w1, 0, 1), pc_matmul(g, pc_matmul(g, xs, a, 0, 1), bb, 0, 1));
    pc_val logits = pc_matmul(g, pc_gelu(g, h, 0), w2, 0, 1);
    pc_val loss = pc_cross_entropy(g, logits, t, -100, 0);
    pc_mark_loss(g, loss);
    CU_ASSERT_PTR_NULL_FATAL(pc_graph_error(g));
    int nfwd = g->nvals;

    char err[512];
    CU_ASSERT_EQUAL_FATAL(pc_pass_autograd(g, err, sizeof err), 0);
    CU_ASSERT_STRING_EQUAL(err, "");
    /* the only gradient outputs are those of the trainable params */
    CU_ASSERT_EQUAL(count_grad_outputs(g), with_ia3 ? 4 : 3);
    CU_ASSERT_EQUAL(pc_lookup(g, "grad.w1"), PC_NONE);
    CU_ASSERT_TRUE(is_output(g, pc_lookup(g, "grad.lora_a")));
    CU_ASSERT_TRUE(is_output(g, pc_lookup(g, "grad.lora_b")));
    CU_ASSERT_TRUE(is_output(g, pc_lookup(g, "grad.w2")));
    if (with_ia3) CU_ASSERT_TRUE(is_output(g, pc_lookup(g, "grad.ia3")));
    for (int v = nfwd; v < g->nvals; v++) {
        /* nothing of W1's shape is ever computed: no dW1 */
        CU_ASSERT_FALSE(pc_shape_eq(g->vals[v].shape, PC_SHAPE(16, 8)));
        /* without a trainable value before it, W1 is not used by the backward at all (no dX) */
        for (int k = 0; k < g->vals[v].nin && !with_ia3; k++) CU_ASSERT_NOT_EQUAL(g->vals[v].in[k], w1);
        /* the input needs no gradient: nothing reads x's adjoint; no node has x's shape unless
         * dX is needed for ia3 */
        if (!with_ia3) CU_ASSERT_FALSE(pc_shape_eq(g->vals[v].shape, PC_SHAPE(4, 8)));
    }

    bind_new(&b, x, -1, 1, &r);
    bind_ints(&b, t, (const int32_t[]){1, 4, 0, 3});
    bind_new(&b, w1, -0.5, 0.5, &r);
    bind_new(&b, a, -0.5, 0.5, &r);
    bind_new(&b, bb, -0.5, 0.5, &r);
    bind_new(&b, w2, -0.5, 0.5, &r);
    if (with_ia3) bind_new(&b, s, 0.5, 1.5, &r);
    double e = check_fd(&b, loss, 2e-2);
    printf("\n    mlp%s: worst error %.2e ", with_ia3 ? " + ia3" : "", e);
    CU_ASSERT(e <= 5e-4);
    bindings_free(&b);
}
static void test_mlp_lora(void) { mlp(false); }
static void test_mlp_frozen_passes_dx(void) { mlp(true); }

/* ---- (2) an attention block: q/k/v projections, rope, q k^T / sqrt(d), causal mask, softmax,
 * weighted sum of v, output projection, rmsnorm ---- */
static void attention(int rope_style) {
    enum { B = 2, S = 4, H = 2, D = 4, C = H * D };
    rng r = {7 + (uint64_t)rope_style};
    bindings b = {.g = pc_graph_new("attn")};
    pc_graph *g = b.g;
    pc_val x = pc_input(g, "x", PC_F32, PC_SHAPE(B, S, C));
    pc_val pos = pc_input(g, "pos", PC_I32, PC_SHAPE(S));
    pc_val wq = TRAIN("wq", C, C), wk = TRAIN("wk", C, C), wv = TRAIN("wv", C, C), wo = TRAIN("wo", C, C);
    pc_val nw = TRAIN("norm", C);
    pc_val R = pc_input(g, "r", PC_F32, PC_SHAPE(B, S, C));
    const int64_t to_heads[4] = {0, 2, 1, 3};
    pc_val q = pc_reshape(g, pc_matmul(g, x, wq, 0, 1), PC_SHAPE(B, S, H, D));
    pc_val k = pc_reshape(g, pc_matmul(g, x, wk, 0, 1), PC_SHAPE(B, S, H, D));
    pc_val v = pc_reshape(g, pc_matmul(g, x, wv, 0, 1), PC_SHAPE(B, S, H, D));
    q = pc_transpose(g, pc_rope(g, q, pos, 10000.0, rope_style, 0), 4, to_heads);
    k = pc_transpose(g, pc_rope(g, k, pos, 10000.0, rope_style, 0), 4, to_heads);
    v = pc_transpose(g, v, 4, to_heads);
    pc_val sc = pc_scale(g, pc_matmul(g, q, k, 0, 1), 1.0 / sqrt((double)D), 0.0);
    pc_val p = pc_softmax(g, pc_causal_mask(g, sc, -1e30), -1);
    pc_val o = pc_transpose(g, pc_matmul(g, p, v, 0, 0), 4, to_heads);
    o = pc_matmul(g, pc_reshape(g, o, PC_SHAPE(B, S, C)), wo, 0, 1);
    pc_val y = pc_rmsnorm(g, pc_add(g, o, x), nw, 1e-5);
    pc_val loss = pc_sum(g, pc_mul(g, y, R), 0, NULL, 0);
    pc_mark_loss(g, loss);
    CU_ASSERT_PTR_NULL_FATAL(pc_graph_error(g));

    char err[512];
    CU_ASSERT_EQUAL_FATAL(pc_pass_autograd(g, err, sizeof err), 0);
    CU_ASSERT_EQUAL(count_grad_outputs(g), 5);
    bind_new(&b, x, -1, 1, &r);
    bind_ints(&b, pos, (const int32_t[]){0, 1, 2, 3});
    bind_new(&b, R, -1, 1, &r);
    bind_new(&b, wq, -0.5, 0.5, &r);
    bind_new(&b, wk, -0.5, 0.5, &r);
    bind_new(&b, wv, -0.5, 0.5, &r);
    bind_new(&b, wo, -0.5, 0.5, &r);
    bind_new(&b, nw, 0.5, 1.5, &r);
    double e = check_fd(&b, loss, 2e-2);
    printf("\n    attention (rope style %d): worst error %.2e ", rope_style, e);
    CU_ASSERT(e <= 5e-4);
    bindings_free(&b);
}
static void test_attention(void) {
    attention(0);
    attention(1);
}

/* ---- (3) a value used several times sums its gradients ---- */
static void test_multi_use(void) {
    rng r = {3};
    bindings b = {.g = pc_graph_new("multi")};
    pc_graph *g = b.g;
    pc_val x = TRAIN("x", 3, 4);
    pc_val c = pc_input(g, "c", PC_F32, PC_SHAPE(3, 4));
    /* x feeds mul (twice), exp, and a reduction; h feeds two consumers */
    pc_val h = pc_add(g, pc_mul(g, x, x), pc_exp(g, x));
    pc_val y = pc_add(g, pc_mul(g, h, c), pc_tanh(g, h));
    pc_val loss = pc_add(g, pc_sum(g, y, 0, NULL, 0), pc_mean(g, x, 0, NULL, 0));
    pc_mark_loss(g, loss);
    int nfwd = g->nvals;
    char err[512];
    CU_ASSERT_EQUAL_FATAL(pc_pass_autograd(g, err, sizeof err), 0);
    /* the contributions to x are summed by add nodes located at x */
    int adds_x = 0, adds_h = 0;
    for (int v = nfwd; v < g->nvals; v++) {
        if (g->vals[v].op != PC_OP_add) continue;
        if (g->vals[v].loc.line == g->vals[x].loc.line) adds_x++;
        if (g->vals[v].loc.line == g->vals[h].loc.line) adds_h++;
    }
    CU_ASSERT_EQUAL(adds_x, 3); /* four contributions: mean, exp, mul lhs, mul rhs */
    CU_ASSERT(adds_h >= 1);
    bind_new(&b, x, -1, 1, &r);
    bind_new(&b, c, -1, 1, &r);
    double e = check_fd(&b, loss, 2e-2);
    printf("\n    multi-use: worst error %.2e ", e);
    CU_ASSERT(e <= 5e-4);

    /* exact: d/dx sum(x + x) = 2 through two uses of one add */
    pc_graph *g2 = pc_graph_new("twice");
    pc_val p = pc_param(g2, "p", "p", PC_F32, PC_SHAPE(2), PC_TRAINABLE, (pc_init){0});
    pc_mark_loss(g2, pc_sum(g2, pc_add(g2, p, p), 0, NULL, 0));
    CU_ASSERT_EQUAL_FATAL(pc_pass_autograd(g2, err, sizeof err), 0);
    float pd[2] = {0.25f, -4};
    pc_ref *ref = pc_ref_new(g2, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ref);
    pc_ref_bind(ref, p, pd);
    CU_ASSERT_EQUAL_FATAL(pc_ref_run(ref, err, sizeof err), 0);
    const float *gp = pc_ref_data(ref, pc_lookup(g2, "grad.p"));
    CU_ASSERT_DOUBLE_EQUAL(gp[0], 2, 0);
    CU_ASSERT_DOUBLE_EQUAL(gp[1], 2, 0);
    pc_ref_free(ref);
    pc_graph_free(g2);
    bindings_free(&b);
}

/* two params whose gradient is the same node each get their own named output */
static void test_shared_gradient(void) {
    pc_graph *g = pc_graph_new("shared");
    pc_val p = pc_param(g, "p", "p", PC_F32, PC_SCALAR, PC_TRAINABLE, (pc_init){0});
    pc_val q = pc_param(g, "q", "q", PC_F32, PC_SCALAR, PC_TRAINABLE, (pc_init){0});
    pc_mark_loss(g, pc_add(g, p, q));
    char err[512];
    CU_ASSERT_EQUAL_FATAL(pc_pass_autograd(g, err, sizeof err), 0);
    pc_val gp = pc_lookup(g, "grad.p"), gq = pc_lookup(g, "grad.q");
    CU_ASSERT_NOT_EQUAL(gp, PC_NONE);
    CU_ASSERT_NOT_EQUAL(gq, PC_NONE);
    CU_ASSERT_NOT_EQUAL(gp, gq);
    float pd = 1, qd = 2;
    pc_ref *ref = pc_ref_new(g, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ref);
    pc_ref_bind(ref, p, &pd);
    pc_ref_bind(ref, q, &qd);
    CU_ASSERT_EQUAL_FATAL(pc_ref_run(ref, err, sizeof err), 0);
    CU_ASSERT_DOUBLE_EQUAL(*(const float *)pc_ref_data(ref, gp), 1, 0);
    CU_ASSERT_DOUBLE_EQUAL(*(const float *)pc_ref_data(ref, gq), 1, 0);
    pc_ref_free(ref);
    pc_graph_free(g);
}

/* a trainable param the loss ignores: zero gradient and a warning */
static void test_unused_param(void) {
    pc_graph *g = pc_graph_new("unused");
    pc_val p = pc_param(g, "p", "p", PC_F32, PC_SHAPE(3), PC_TRAINABLE, (pc_init){0});
    pc_val u = pc_param(g, "u", "u", PC_F32, PC_SHAPE(2, 2), PC_TRAINABLE, (pc_init){0});
    pc_mark_loss(g, pc_sum(g, pc_square(g, p), 0, NULL, 0));
    char err[512];
    CU_ASSERT_EQUAL_FATAL(pc_pass_autograd(g, err, sizeof err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "warning"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "%u"));
    CU_ASSERT_PTR_NULL(strstr(err, "%p"));
    pc_val gu = pc_lookup(g, "grad.u");
    CU_ASSERT_TRUE_FATAL(gu != PC_NONE && is_output(g, gu));
    float pd[3] = {1, 2, 3}, ud[4] = {5, 6, 7, 8};
    pc_ref *ref = pc_ref_new(g, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ref);
    pc_ref_bind(ref, p, pd);
    pc_ref_bind(ref, u, ud);
    CU_ASSERT_EQUAL_FATAL(pc_ref_run(ref, err, sizeof err), 0);
    const float *d = pc_ref_data(ref, gu);
    for (int i = 0; i < 4; i++) CU_ASSERT_DOUBLE_EQUAL(d[i], 0, 0);
    const float *dp = pc_ref_data(ref, pc_lookup(g, "grad.p"));
    for (int i = 0; i < 3; i++) CU_ASSERT_DOUBLE_EQUAL(dp[i], 2 * pd[i], 0);
    pc_ref_free(ref);
    pc_graph_free(g);
}

/* stop_gradient: its result is a constant for autograd (torch's detach). loss = sum(p ⊙ sg(p²))
 * + sum(q ⊙ sg(p)) has d/dp = p² (not 3p²), d/dq = p; a param reached only through
 * stop_gradient gets the zero gradient and the unused-param warning */
static void test_stop_gradient(void) {
    pc_graph *g = pc_graph_new("detach");
    pc_val p = pc_param(g, "p", "p", PC_F32, PC_SHAPE(3), PC_TRAINABLE, (pc_init){0});
    pc_val q = pc_param(g, "q", "q", PC_F32, PC_SHAPE(3), PC_TRAINABLE, (pc_init){0});
    pc_val r = pc_param(g, "r", "r", PC_F32, PC_SHAPE(3), PC_TRAINABLE, (pc_init){0});
    pc_val t1 = pc_sum(g, pc_mul(g, p, pc_stop_gradient(g, pc_square(g, p))), 0, NULL, 0);
    pc_val t2 = pc_sum(g, pc_mul(g, q, pc_stop_gradient(g, p)), 0, NULL, 0);
    pc_val t3 = pc_sum(g, pc_stop_gradient(g, r), 0, NULL, 0);
    pc_mark_loss(g, pc_add(g, pc_add(g, t1, t2), t3));
    char err[512];
    CU_ASSERT_EQUAL_FATAL(pc_pass_autograd(g, err, sizeof err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "%r"));
    CU_ASSERT_PTR_NULL(strstr(err, "%p"));
    float pd[3] = {1, -2, 3}, qd[3] = {4, 5, 6}, rd[3] = {7, 8, 9};
    pc_ref *ref = pc_ref_new(g, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ref);
    pc_ref_bind(ref, p, pd);
    pc_ref_bind(ref, q, qd);
    pc_ref_bind(ref, r, rd);
    CU_ASSERT_EQUAL_FATAL(pc_ref_run(ref, err, sizeof err), 0);
    const float *dp = pc_ref_data(ref, pc_lookup(g, "grad.p")), *dq = pc_ref_data(ref, pc_lookup(g, "grad.q"));
    const float *dr = pc_ref_data(ref, pc_lookup(g, "grad.r"));
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_DOUBLE_EQUAL(dp[i], pd[i] * pd[i], 0);
        CU_ASSERT_DOUBLE_EQUAL(dq[i], pd[i], 0);
        CU_ASSERT_DOUBLE_EQUAL(dr[i], 0, 0);
    }
    pc_ref_free(ref);
    pc_graph_free(g);
}

/* two identical builds give identical backward graphs */
static pc_graph *small_model(void) {
    pc_graph *g = pc_graph_new("det");
    pc_val x = pc_input(g, "x", PC_F32, PC_SHAPE(3, 4));
    pc_val w = TRAIN("w", 4, 4), v = TRAIN("v", 4);
    pc_val h = pc_matmul(g, x, w, 0, 1);
    pc_val y = pc_add(g, pc_mul(g, h, v), pc_silu(g, h));
    pc_mark_loss(g, pc_mean(g, pc_mul(g, y, h), 0, NULL, 0));
    return g;
}
static void test_deterministic(void) {
    pc_graph *a = small_model(), *b = small_model();
    char err[512];
    CU_ASSERT_EQUAL_FATAL(pc_pass_autograd(a, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(pc_pass_autograd(b, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(a->nvals, b->nvals);
    for (int i = 0; i < a->nvals; i++) {
        CU_ASSERT_EQUAL(a->vals[i].op, b->vals[i].op);
        CU_ASSERT_STRING_EQUAL(a->vals[i].name, b->vals[i].name);
        CU_ASSERT_EQUAL(a->vals[i].nin, b->vals[i].nin);
        for (int k = 0; k < a->vals[i].nin && k < b->vals[i].nin; k++)
            CU_ASSERT_EQUAL(a->vals[i].in[k], b->vals[i].in[k]);
    }
    CU_ASSERT_EQUAL(a->noutputs, b->noutputs);
    pc_graph_free(a);
    pc_graph_free(b);
}

/* ---- (4) AdamW: two steps against a hand computation, with and without clipping ---- */
static void adamw_case(int clip) {
    enum { NP = 12, NQ = 5 };
    pc_graph *g = pc_graph_new("adamw");
    pc_val p = pc_param(g, "p", "layer.p", PC_F32, PC_SHAPE(3, 4), PC_TRAINABLE, (pc_init){0});
    pc_val q = pc_param(g, "q", "layer.q", PC_F32, PC_SHAPE(5), PC_TRAINABLE, (pc_init){0});
    pc_val f = pc_param(g, "f", "layer.f", PC_F32, PC_SHAPE(5), PC_FROZEN, (pc_init){0});
    pc_val tgt = pc_input(g, "target", PC_F32, PC_SHAPE(3, 4));
    /* loss = 0.5 sum((p - target)^2) + sum(q f): dp = p - target, dq = f */
    pc_val loss = pc_add(g, pc_scale(g, pc_sum(g, pc_square(g, pc_sub(g, p, tgt)), 0, NULL, 0), 0.5, 0),
                         pc_sum(g, pc_mul(g, q, f), 0, NULL, 0));
    pc_mark_loss(g, loss);
    char err[512];
    CU_ASSERT_EQUAL_FATAL(pc_pass_autograd(g, err, sizeof err), 0);
    pc_adamw_opts opts = {.clip = clip};
    CU_ASSERT_EQUAL_FATAL(pc_pass_adamw(g, &opts, err, sizeof err), 0);
    pc_val hp = pc_lookup(g, "hp");
    pc_val mp = pc_lookup(g, "adam_m.p"), vp = pc_lookup(g, "adam_v.p");
    pc_val mq = pc_lookup(g, "adam_m.q"), vq = pc_lookup(g, "adam_v.q");
    CU_ASSERT_TRUE_FATAL(hp != PC_NONE && mp != PC_NONE && vp != PC_NONE && mq != PC_NONE && vq != PC_NONE);
    CU_ASSERT_EQUAL(g->vals[hp].op, PC_OP_input);
    CU_ASSERT_TRUE(pc_shape_eq(g->vals[hp].shape, PC_SHAPE(8)));
    CU_ASSERT_EQUAL(pc_lookup_key(g, "layer.p.adam_m"), mp);
    CU_ASSERT_EQUAL(pc_lookup_key(g, "layer.q.adam_v"), vq);
    CU_ASSERT_EQUAL(g->vals[mp].init.kind, PC_INIT_ZEROS);
    CU_ASSERT_EQUAL(pc_lookup(g, "adam_m.f"), PC_NONE); /* no optimizer state for frozen params */
    CU_ASSERT_EQUAL(g->nupdates, 6);
    CU_ASSERT_EQUAL(count_grad_outputs(g), 2); /* the gradients stay outputs */
    CU_ASSERT_TRUE(is_output(g, loss));

    float pd[NP], qd[NQ], fd[NQ], td[NP], m1[NP] = {0}, v1[NP] = {0}, m2[NQ] = {0}, v2[NQ] = {0};
    float hpd[8] = {0.05f, 0.9f, 0.99f, 1e-8f, 0.1f, 1, clip ? 0.75f : 0, 0};
    rng r = {11};
    for (int i = 0; i < NP; i++) pd[i] = (float)(urand(&r) * 2 - 1), td[i] = (float)(urand(&r) * 2 - 1);
    for (int i = 0; i < NQ; i++) qd[i] = (float)(urand(&r) * 2 - 1), fd[i] = (float)(urand(&r) * 2 - 1);
    /* the reference in double, from the same f32 start */
    double P[NP], Q[NQ], M1[NP] = {0}, V1[NP] = {0}, M2[NQ] = {0}, V2[NQ] = {0};
    for (int i = 0; i < NP; i++) P[i] = pd[i];
    for (int i = 0; i < NQ; i++) Q[i] = qd[i];

    pc_ref *ref = pc_ref_new(g, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ref);
    pc_ref_bind(ref, p, pd);
    pc_ref_bind(ref, q, qd);
    pc_ref_bind(ref, f, fd);
    pc_ref_bind(ref, tgt, td);
    pc_ref_bind(ref, hp, hpd);
    pc_ref_bind(ref, mp, m1);
    pc_ref_bind(ref, vp, v1);
    pc_ref_bind(ref, mq, m2);
    pc_ref_bind(ref, vq, v2);
    const double lr = hpd[0], b1 = hpd[1], b2 = hpd[2], eps = hpd[3], wd = hpd[4];
    for (int step = 1; step <= 3; step++) {
        hpd[5] = (float)step;
        CU_ASSERT_EQUAL_FATAL(pc_ref_run(ref, err, sizeof err), 0);
        CU_ASSERT_EQUAL_FATAL(pc_ref_apply_updates(ref), 0);
        double gP[NP], gQ[NQ], ss = 0;
        for (int i = 0; i < NP; i++) gP[i] = P[i] - td[i], ss += gP[i] * gP[i];
        for (int i = 0; i < NQ; i++) gQ[i] = fd[i], ss += gQ[i] * gQ[i];
        double gs = 1;
        if (clip) {
            gs = hpd[6] / (sqrt(ss) + 1e-6);
            if (gs > 1) gs = 1;
            CU_ASSERT(gs < 1); /* the test clips for real */
        }
        double c1 = 1 - pow(b1, step), c2 = 1 - pow(b2, step);
        for (int i = 0; i < NP + NQ; i++) {
            double *x = i < NP ? &P[i] : &Q[i - NP], gr = gs * (i < NP ? gP[i] : gQ[i - NP]);
            double *m = i < NP ? &M1[i] : &M2[i - NP], *v = i < NP ? &V1[i] : &V2[i - NP];
            *m = b1 * *m + (1 - b1) * gr;
            *v = b2 * *v + (1 - b2) * gr * gr;
            *x = *x - lr * wd * *x - lr * (*m / c1) / (sqrt(*v / c2) + eps);
        }
        double worst = 0;
        for (int i = 0; i < NP; i++) {
            worst = fmax(worst, fabs(pd[i] - P[i]));
            worst = fmax(worst, fabs(m1[i] - M1[i]) + fabs(v1[i] - V1[i]));
        }
        for (int i = 0; i < NQ; i++) {
            worst = fmax(worst, fabs(qd[i] - Q[i]));
            worst = fmax(worst, fabs(m2[i] - M2[i]) + fabs(v2[i] - V2[i]));
        }
        if (!(worst < 2e-6)) printf("\n    adamw%s step %d: worst difference %.3g", clip ? " (clip)" : "", step, worst);
        CU_ASSERT(worst < 2e-6);
    }
    pc_ref_free(ref);
    pc_graph_free(g);
}
static void test_adamw(void) { adamw_case(0); }
static void test_adamw_clip(void) { adamw_case(1); }

/* ---- guards ---- */
static void test_errors(void) {
    char err[512];
    /* no loss */
    pc_graph *g = pc_graph_new("noloss");
    pc_val p = TRAIN("p", 3);
    pc_mark_output(g, pc_sum(g, p, 0, NULL, 0));
    CU_ASSERT_EQUAL(pc_pass_autograd(g, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no loss"));
    /* adamw before autograd */
    CU_ASSERT_EQUAL(pc_pass_adamw(g, NULL, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "autograd"));
    CU_ASSERT_EQUAL(pc_lookup(g, "hp"), PC_NONE);
    pc_graph_free(g);

    /* two losses */
    g = pc_graph_new("twoloss");
    p = TRAIN("p", 3);
    pc_mark_loss(g, pc_sum(g, p, 0, NULL, 0));
    pc_mark_loss(g, pc_mean(g, p, 0, NULL, 0));
    CU_ASSERT_EQUAL(pc_pass_autograd(g, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "more than one loss"));
    pc_graph_free(g);

    /* a loss that is not a scalar (flag set behind the builder's back, as a parser could) */
    g = pc_graph_new("vecloss");
    p = TRAIN("p", 3);
    pc_val l = pc_square(g, p);
    pc_mark_output(g, l);
    g->vals[l].flags |= PC_LOSS;
    CU_ASSERT_EQUAL(pc_pass_autograd(g, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "scalar"));
    pc_graph_free(g);

    /* idempotence: autograd twice, adamw twice */
    g = pc_graph_new("twice");
    p = TRAIN("p", 3);
    pc_mark_loss(g, pc_sum(g, pc_square(g, p), 0, NULL, 0));
    CU_ASSERT_EQUAL_FATAL(pc_pass_autograd(g, err, sizeof err), 0);
    int n = g->nvals;
    CU_ASSERT_EQUAL(pc_pass_autograd(g, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "autograd ran"));
    CU_ASSERT_EQUAL(g->nvals, n); /* nothing appended */
    CU_ASSERT_PTR_NULL(pc_graph_error(g));
    CU_ASSERT_EQUAL_FATAL(pc_pass_adamw(g, NULL, err, sizeof err), 0);
    n = g->nvals;
    CU_ASSERT_EQUAL(pc_pass_adamw(g, NULL, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "adamw ran"));
    CU_ASSERT_EQUAL(g->nvals, n);
    CU_ASSERT_EQUAL(pc_pass_autograd(g, err, sizeof err), -1);
    pc_graph_free(g);

    /* a name collision for the gradient */
    g = pc_graph_new("taken");
    p = TRAIN("p", 3);
    pc_val s = pc_sum(g, pc_square(g, p), 0, NULL, 0);
    pc_set_name(g, s, "grad.p");
    pc_mark_loss(g, pc_scale(g, s, 2, 0));
    CU_ASSERT_EQUAL(pc_pass_autograd(g, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "taken"));
    pc_graph_free(g);
}

static CU_TestInfo tests[] = {
    {"mlp_lora_frozen_w1", test_mlp_lora},
    {"mlp_frozen_w1_passes_dx", test_mlp_frozen_passes_dx},
    {"attention_block", test_attention},
    {"multi_use", test_multi_use},
    {"shared_gradient", test_shared_gradient},
    {"unused_param", test_unused_param},
    {"stop_gradient", test_stop_gradient},
    {"deterministic", test_deterministic},
    {"adamw_step", test_adamw},
    {"adamw_step_clip", test_adamw_clip},
    {"errors", test_errors},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("autograd", tests)
