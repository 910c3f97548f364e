/* Gradient rules against finite differences, for every differentiable op.
 *
 * Each case builds op(params...) -> y, then loss = sum(y * R) with a fixed random R (so the
 * upstream gradient is non-trivial), runs the autograd pass, executes the graph with the reference
 * interpreter and compares every gradient element with a central difference of the loss, refined
 * by one Richardson step: D = (4 D(h/2) - D(h)) / 3, truncation O(h^4), so h can be large enough
 * (2e-2) that f32 rounding of the loss stays small. Inputs keep away from kinks (relu, abs, max,
 * maximum) by more than h. The error measure is |analytic - fd| / max(1, |fd|). */
#include "backend/ref.h"
#include "cu_main.h"
#include "fd_check.h"
#include "ir.h"
#include "ir/grad.h"
#include "passes/passes.h"
#include "runtime/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float uni(rng *r, double lo, double hi) { return (float)(lo + (hi - lo) * urand(r)); }

enum { FILL_INIT = 0, FILL_AVOID0, FILL_DISTINCT };

/* trainable params; the init spec says how the test fills them (uniform(a, b), default [-1, 1]) */
#define TP(name, ...) pc_param(g, name, name, PC_F32, PC_SHAPE(__VA_ARGS__), PC_TRAINABLE, (pc_init){0})
#define TPR(name, lo, hi, ...)                                                                     \
    pc_param(g, name, name, PC_F32, PC_SHAPE(__VA_ARGS__), PC_TRAINABLE, (pc_init){PC_INIT_UNIFORM, lo, hi})

static pc_val cuni(pc_graph *g, rng *r, double lo, double hi, pc_shape s) {
    int64_t n = pc_shape_numel(s);
    float *d = malloc((size_t)(n ? n : 1) * sizeof *d);
    for (int64_t i = 0; i < n; i++) d[i] = uni(r, lo, hi);
    pc_val v = pc_const(g, PC_F32, s, d);
    free(d);
    return v;
}
#define CU(lo, hi, ...) cuni(g, r, lo, hi, PC_SHAPE(__VA_ARGS__))
#define CI(data, ...) pc_const(g, PC_I32, PC_SHAPE(__VA_ARGS__), (const int32_t[])data)
#define L(...) __VA_ARGS__

typedef pc_val (*build_fn)(pc_graph *g, rng *r);

typedef struct {
    const char *name;
    build_fn build;
    int fill;
    double tol;
    double h; /* 0 = 2e-2 */
} gcase;

/* ---- the harness ---- */
typedef struct {
    pc_graph *g;
    pc_val loss;
    int np;
    pc_val p[8], grad[8];
    float *data[8];
    int64_t n[8];
    int nfwd;
} harness;

static void fill_param(const pc_value *p, float *d, int64_t n, int fill, int k, rng *r) {
    if (fill == FILL_DISTINCT) {
        /* a shuffled grid with spacing 0.1; param k is offset by 0.05 k (no ties across params) */
        for (int64_t i = 0; i < n; i++) d[i] = (float)((double)(i - n / 2) * 0.1 + 0.05 * k);
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = (int64_t)(urand(r) * (double)(i + 1));
            float t = d[i];
            d[i] = d[j];
            d[j] = t;
        }
        return;
    }
    double lo = -1, hi = 1;
    if (p->init.kind == PC_INIT_UNIFORM) lo = p->init.a, hi = p->init.b;
    for (int64_t i = 0; i < n; i++) {
        d[i] = uni(r, lo, hi);
        if (fill == FILL_AVOID0) d[i] = (d[i] < 0 ? -0.2f : 0.2f) + 0.8f * d[i];
    }
}

/* builds the case, runs autograd; 0 on success */
static int harness_build(harness *H, const gcase *tc, uint64_t seed, char *err, size_t errlen) {
    memset(H, 0, sizeof *H);
    rng r = {seed};
    pc_graph *g = H->g = pc_graph_new(tc->name);
    pc_val y = tc->build(g, &r);
    pc_val R = cuni(g, &r, -1, 1, pc_val_shape(g, y));
    H->loss = pc_sum(g, pc_mul(g, y, R), 0, NULL, 0);
    pc_mark_loss(g, H->loss);
    if (pc_graph_error(g)) {
        snprintf(err, errlen, "%s", pc_graph_error(g));
        return -1;
    }
    H->nfwd = g->nvals;
    for (int i = 0; i < g->nvals; i++) {
        const pc_value *p = pc_v(g, i);
        if (p->op != PC_OP_param || !(p->flags & PC_TRAINABLE) || H->np == 8) continue;
        int k = H->np++;
        H->p[k] = i;
        H->n[k] = pc_shape_numel(p->shape);
        H->data[k] = malloc((size_t)(H->n[k] ? H->n[k] : 1) * sizeof(float));
        fill_param(p, H->data[k], H->n[k], tc->fill, k, &r);
    }
    if (pc_pass_autograd(g, err, errlen)) return -1;
    for (int k = 0; k < H->np; k++) {
        char name[300];
        snprintf(name, sizeof name, "grad.%s", pc_val_name(g, H->p[k]));
        H->grad[k] = pc_lookup(g, name);
        if (H->grad[k] == PC_NONE) {
            snprintf(err, errlen, "no %s", name);
            return -1;
        }
    }
    return 0;
}

static void harness_free(harness *H) {
    for (int k = 0; k < H->np; k++) free(H->data[k]);
    pc_graph_free(H->g);
}

/* runs one case; returns the worst error (or INFINITY when something failed) */
static double check_case(const gcase *tc, uint64_t seed) {
    harness H;
    char err[1024];
    double worst = 0;
    int bad = 0;
    if (harness_build(&H, tc, seed, err, sizeof err)) {
        printf("\n    %s: %s\n", tc->name, err);
        harness_free(&H);
        return INFINITY;
    }
    pc_ref *ref = pc_ref_new(H.g, err, sizeof err);
    if (!ref) {
        printf("\n    %s: pc_ref_new: %s\n", tc->name, err);
        harness_free(&H);
        return INFINITY;
    }
    for (int k = 0; k < H.np; k++) pc_ref_bind(ref, H.p[k], H.data[k]);
    fd_run_loss(ref, H.loss, &bad);
    float *ana[8] = {0};
    for (int k = 0; k < H.np && !bad; k++) {
        const float *gd = pc_ref_data(ref, H.grad[k]);
        ana[k] = malloc((size_t)(H.n[k] ? H.n[k] : 1) * sizeof(float));
        if (!gd) { bad = 1; printf("\n    %s: no data for the gradient\n", tc->name); break; }
        memcpy(ana[k], gd, (size_t)H.n[k] * sizeof(float));
    }
    double h = tc->h > 0 ? tc->h : 2e-2;
    for (int k = 0; k < H.np && !bad; k++) {
        for (int64_t i = 0; i < H.n[k] && !bad; i++) {
            double fd = fd_richardson(ref, H.loss, &H.data[k][i], h, &bad);
            double e = fabs((double)ana[k][i] - fd) / fmax(1.0, fabs(fd));
            if (!(e <= worst)) worst = e; /* NaN-propagating max */
            if (!(e <= tc->tol))
                printf("\n    %s: d loss / d %s[%lld]: autograd %.6g, finite difference %.6g", tc->name,
                       pc_val_name(H.g, H.p[k]), (long long)i, (double)ana[k][i], fd);
        }
    }
    for (int k = 0; k < H.np; k++) free(ana[k]);
    pc_ref_free(ref);
    harness_free(&H);
    return bad ? INFINITY : worst;
}

static void run_table(const gcase *cases, int n) {
    printf("\n");
    for (int i = 0; i < n; i++) {
        double e = check_case(&cases[i], 1000 + (uint64_t)i * 7919);
        int ok = e <= cases[i].tol;
        printf("    %-26s worst error %.2e (tolerance %.0e)%s\n", cases[i].name, e, cases[i].tol,
               ok ? "" : "  FAILED");
        CU_ASSERT(ok);
    }
}

/* ================= cases ================= */

/* elementwise binary, with broadcasting */
static pc_val b_add(pc_graph *g, rng *r) { (void)r; return pc_add(g, TP("a", 3, 4), TP("b", 4)); }
static pc_val b_add_rank(pc_graph *g, rng *r) { (void)r; return pc_add(g, TP("a", 3, 1), TP("b", 2, 3, 4)); }
static pc_val b_sub(pc_graph *g, rng *r) { (void)r; return pc_sub(g, TP("a", 2, 3, 4), TP("b", 3, 1)); }
static pc_val b_sub_scalar(pc_graph *g, rng *r) { (void)r; return pc_sub(g, TP("a", 1), TP("b", 2, 3)); }
static pc_val b_mul(pc_graph *g, rng *r) { (void)r; return pc_mul(g, TP("a", 3, 4), TP("b", 1, 4)); }
static pc_val b_mul_self(pc_graph *g, rng *r) {
    (void)r;
    pc_val a = TP("a", 3, 4);
    return pc_mul(g, a, a);
}
static pc_val b_mul_const(pc_graph *g, rng *r) { return pc_mul(g, CU(-1, 1, 2, 3, 4), TP("b", 3, 1)); }
static pc_val b_div(pc_graph *g, rng *r) { (void)r; return pc_div(g, TP("a", 3, 4), TPR("b", 0.5, 2, 4)); }
static pc_val b_div_neg(pc_graph *g, rng *r) { (void)r; return pc_div(g, TP("a", 2, 1, 3), TPR("b", -2, -0.5, 4, 1)); }
static pc_val b_maximum(pc_graph *g, rng *r) { (void)r; return pc_maximum(g, TP("a", 3, 4), TP("b", 4)); }
static pc_val b_minimum(pc_graph *g, rng *r) { (void)r; return pc_minimum(g, TP("a", 3, 1), TP("b", 3, 4)); }
static pc_val b_where(pc_graph *g, rng *r) {
    (void)r;
    pc_val cond = CI(L({1, 0, 1}), 3, 1);
    return pc_where(g, cond, TP("a", 3, 4), TP("b", 4));
}
static pc_val b_where_f(pc_graph *g, rng *r) {
    pc_val cond = pc_gt(g, CU(-1, 1, 3, 4), pc_scalar(g, 0.0f));
    return pc_where(g, cond, TP("a", 2, 3, 4), TP("b", 1));
}

/* elementwise unary */
static pc_val b_neg(pc_graph *g, rng *r) { (void)r; return pc_neg(g, TP("x", 3, 4)); }
static pc_val b_scale(pc_graph *g, rng *r) { (void)r; return pc_scale(g, TP("x", 3, 4), -1.7, 0.3); }
static pc_val b_exp(pc_graph *g, rng *r) { (void)r; return pc_exp(g, TP("x", 3, 4)); }
static pc_val b_log(pc_graph *g, rng *r) { (void)r; return pc_log(g, TPR("x", 0.5, 2, 3, 4)); }
static pc_val b_sqrt(pc_graph *g, rng *r) { (void)r; return pc_sqrt(g, TPR("x", 0.5, 2, 3, 4)); }
static pc_val b_rsqrt(pc_graph *g, rng *r) { (void)r; return pc_rsqrt(g, TPR("x", 0.5, 2, 3, 4)); }
static pc_val b_square(pc_graph *g, rng *r) { (void)r; return pc_square(g, TP("x", 3, 4)); }
static pc_val b_abs(pc_graph *g, rng *r) { (void)r; return pc_abs(g, TP("x", 3, 4)); }
static pc_val b_tanh(pc_graph *g, rng *r) { (void)r; return pc_tanh(g, TPR("x", -2, 2, 3, 4)); }
static pc_val b_sigmoid(pc_graph *g, rng *r) { (void)r; return pc_sigmoid(g, TPR("x", -3, 3, 3, 4)); }
static pc_val b_relu(pc_graph *g, rng *r) { (void)r; return pc_relu(g, TP("x", 3, 4)); }
static pc_val b_gelu(pc_graph *g, rng *r) { (void)r; return pc_gelu(g, TPR("x", -3, 3, 4, 5), 0); }
static pc_val b_gelu_small(pc_graph *g, rng *r) { (void)r; return pc_gelu(g, TPR("x", -0.05, 0.05, 3, 4), 0); }
static pc_val b_gelu_tanh(pc_graph *g, rng *r) { (void)r; return pc_gelu(g, TPR("x", -3, 3, 4, 5), 1); }
static pc_val b_silu(pc_graph *g, rng *r) { (void)r; return pc_silu(g, TPR("x", -3, 3, 4, 5)); }
static pc_val b_cast(pc_graph *g, rng *r) { (void)r; return pc_cast(g, TP("x", 3, 4), PC_F32); }
static pc_val b_dropout(pc_graph *g, rng *r) {
    (void)r;
    int32_t seed = 7;
    return pc_dropout(g, TP("x", 4, 5), pc_const(g, PC_I32, PC_SCALAR, &seed), 0.3, 5);
}
/* a composite: exp(x) * tanh(x) + x^2 (several ops, multi-use of x) */
static pc_val b_chain(pc_graph *g, rng *r) {
    (void)r;
    pc_val x = TP("x", 3, 4);
    return pc_add(g, pc_mul(g, pc_exp(g, x), pc_tanh(g, x)), pc_square(g, x));
}

/* reductions */
static pc_val b_sum1(pc_graph *g, rng *r) { (void)r; return pc_sum(g, TP("x", 2, 3, 4), 1, (int64_t[]){1}, 0); }
static pc_val b_sum1k(pc_graph *g, rng *r) { (void)r; return pc_sum(g, TP("x", 2, 3, 4), 1, (int64_t[]){-1}, 1); }
static pc_val b_sum02(pc_graph *g, rng *r) { (void)r; return pc_sum(g, TP("x", 2, 3, 4), 2, (int64_t[]){0, 2}, 0); }
static pc_val b_sum_all(pc_graph *g, rng *r) { (void)r; return pc_sum(g, TP("x", 2, 3, 4), 0, NULL, 0); }
static pc_val b_sum_allk(pc_graph *g, rng *r) { (void)r; return pc_sum(g, TP("x", 2, 3, 4), 0, NULL, 1); }
static pc_val b_mean1(pc_graph *g, rng *r) { (void)r; return pc_mean(g, TP("x", 2, 3, 4), 1, (int64_t[]){1}, 0); }
static pc_val b_mean02k(pc_graph *g, rng *r) { (void)r; return pc_mean(g, TP("x", 2, 3, 4), 2, (int64_t[]){2, 0}, 1); }
static pc_val b_mean_all(pc_graph *g, rng *r) { (void)r; return pc_mean(g, TP("x", 2, 3, 4), 0, NULL, 0); }
static pc_val b_max1(pc_graph *g, rng *r) { (void)r; return pc_max(g, TP("x", 2, 3, 4), 1, (int64_t[]){1}, 0); }
static pc_val b_max_last_k(pc_graph *g, rng *r) { (void)r; return pc_max(g, TP("x", 2, 3, 4), 1, (int64_t[]){-1}, 1); }
static pc_val b_max02(pc_graph *g, rng *r) { (void)r; return pc_max(g, TP("x", 2, 3, 4), 2, (int64_t[]){0, 2}, 0); }
static pc_val b_max_all(pc_graph *g, rng *r) { (void)r; return pc_max(g, TP("x", 2, 3, 4), 0, NULL, 0); }
static pc_val b_softmax(pc_graph *g, rng *r) { (void)r; return pc_softmax(g, TPR("x", -2, 2, 3, 5), -1); }
static pc_val b_softmax1(pc_graph *g, rng *r) { (void)r; return pc_softmax(g, TPR("x", -2, 2, 2, 4, 3), 1); }
static pc_val b_softmax0(pc_graph *g, rng *r) { (void)r; return pc_softmax(g, TPR("x", -2, 2, 4, 3), 0); }
static pc_val b_logsm(pc_graph *g, rng *r) { (void)r; return pc_log_softmax(g, TPR("x", -2, 2, 3, 5), -1); }
static pc_val b_logsm1(pc_graph *g, rng *r) { (void)r; return pc_log_softmax(g, TPR("x", -2, 2, 2, 4, 3), 1); }
static pc_val b_rmsnorm(pc_graph *g, rng *r) {
    (void)r;
    return pc_rmsnorm(g, TP("x", 2, 3, 8), TPR("w", 0.5, 1.5, 8), 1e-5);
}
static pc_val b_rmsnorm_eps(pc_graph *g, rng *r) {
    (void)r;
    return pc_rmsnorm(g, TPR("x", -0.3, 0.3, 4, 6), TPR("w", 0.5, 1.5, 6), 0.05);
}
static pc_val b_rmsnorm_x(pc_graph *g, rng *r) { return pc_rmsnorm(g, TP("x", 5, 4), CU(0.5, 1.5, 4), 1e-5); }
static pc_val b_layernorm(pc_graph *g, rng *r) {
    (void)r;
    return pc_layernorm(g, TP("x", 2, 3, 8), TPR("w", 0.5, 1.5, 8), TP("b", 8), 1e-5);
}
static pc_val b_layernorm_eps(pc_graph *g, rng *r) {
    (void)r;
    return pc_layernorm(g, TPR("x", -0.3, 0.3, 4, 6), TPR("w", 0.5, 1.5, 6), TP("b", 6), 0.05);
}
static pc_val b_layernorm_b(pc_graph *g, rng *r) {
    return pc_layernorm(g, CU(-1, 1, 3, 5), CU(0.5, 1.5, 5), TP("b", 5), 1e-5);
}

/* matmul: every transpose combination, batch broadcasting on either side */
static pc_val b_mm_nn(pc_graph *g, rng *r) { (void)r; return pc_matmul(g, TP("a", 3, 4), TP("b", 4, 5), 0, 0); }
static pc_val b_mm_nt(pc_graph *g, rng *r) { (void)r; return pc_matmul(g, TP("a", 3, 4), TP("b", 5, 4), 0, 1); }
static pc_val b_mm_tn(pc_graph *g, rng *r) { (void)r; return pc_matmul(g, TP("a", 4, 3), TP("b", 4, 5), 1, 0); }
static pc_val b_mm_tt(pc_graph *g, rng *r) { (void)r; return pc_matmul(g, TP("a", 4, 3), TP("b", 5, 4), 1, 1); }
static pc_val b_mm_linear(pc_graph *g, rng *r) { (void)r; return pc_matmul(g, TP("x", 2, 3, 4), TP("w", 5, 4), 0, 1); }
static pc_val b_mm_linear_n(pc_graph *g, rng *r) { (void)r; return pc_matmul(g, TP("x", 2, 2, 3, 4), TP("w", 4, 5), 0, 0); }
static pc_val b_mm_batch_ta(pc_graph *g, rng *r) { (void)r; return pc_matmul(g, TP("a", 2, 4, 3), TP("b", 4, 5), 1, 0); }
static pc_val b_mm_batch_ta_tb(pc_graph *g, rng *r) { (void)r; return pc_matmul(g, TP("a", 2, 4, 3), TP("b", 5, 4), 1, 1); }
static pc_val b_mm_batch_b(pc_graph *g, rng *r) { (void)r; return pc_matmul(g, TP("a", 3, 4), TP("b", 2, 4, 5), 0, 0); }
static pc_val b_mm_batch_b_tt(pc_graph *g, rng *r) { (void)r; return pc_matmul(g, TP("a", 4, 3), TP("b", 2, 5, 4), 1, 1); }
static pc_val b_mm_batch_both(pc_graph *g, rng *r) { (void)r; return pc_matmul(g, TP("a", 2, 1, 3, 4), TP("b", 3, 4, 2), 0, 0); }
static pc_val b_mm_batch_both_nt(pc_graph *g, rng *r) { (void)r; return pc_matmul(g, TP("a", 1, 2, 3, 4), TP("b", 2, 1, 5, 4), 0, 1); }
static pc_val b_mm_batch_both_tn(pc_graph *g, rng *r) { (void)r; return pc_matmul(g, TP("a", 2, 1, 4, 3), TP("b", 3, 4, 2), 1, 0); }
static pc_val b_mm_frozen_b(pc_graph *g, rng *r) { return pc_matmul(g, TP("x", 2, 3, 4), CU(-1, 1, 5, 4), 0, 1); }
static pc_val b_mm_frozen_a(pc_graph *g, rng *r) { return pc_matmul(g, CU(-1, 1, 2, 3, 4), TP("w", 5, 4), 0, 1); }
static pc_val b_mm_self(pc_graph *g, rng *r) {
    (void)r;
    pc_val a = TP("a", 4, 4);
    return pc_matmul(g, a, a, 1, 0);
}
static pc_val b_kron(pc_graph *g, rng *r) { (void)r; return pc_kron(g, TP("a", 2, 3), TP("b", 3, 2)); }
static pc_val b_kron_frozen(pc_graph *g, rng *r) { return pc_kron(g, CU(-1, 1, 3, 2), TP("b", 2, 4)); }

/* layout */
static pc_val b_reshape(pc_graph *g, rng *r) { (void)r; return pc_reshape(g, TP("x", 2, 3, 4), PC_SHAPE(4, 6)); }
static pc_val b_transpose(pc_graph *g, rng *r) {
    (void)r;
    return pc_transpose(g, TP("x", 2, 3, 4), 3, (int64_t[]){2, 0, 1});
}
static pc_val b_transpose4(pc_graph *g, rng *r) {
    (void)r;
    return pc_transpose(g, TP("x", 2, 3, 1, 4), 4, (int64_t[]){1, 3, 0, 2});
}
static pc_val b_broadcast(pc_graph *g, rng *r) { (void)r; return pc_broadcast(g, TP("x", 3, 1), PC_SHAPE(2, 3, 4)); }
static pc_val b_sum_to(pc_graph *g, rng *r) { (void)r; return pc_sum_to(g, TP("x", 2, 3, 4), PC_SHAPE(3, 1)); }
static pc_val b_slice(pc_graph *g, rng *r) { (void)r; return pc_slice(g, TP("x", 3, 5, 2), 1, 1, 4); }
static pc_val b_slice_neg(pc_graph *g, rng *r) { (void)r; return pc_slice(g, TP("x", 3, 5), -1, 0, 2); }
static pc_val b_pad(pc_graph *g, rng *r) { (void)r; return pc_pad(g, TP("x", 3, 2, 2), 0, 1, 2); }
static pc_val b_pad_neg(pc_graph *g, rng *r) { (void)r; return pc_pad(g, TP("x", 3, 2), -1, 0, 3); }
static pc_val b_concat3(pc_graph *g, rng *r) {
    (void)r;
    pc_val xs[3] = {TP("a", 2, 1, 3), TP("b", 2, 3, 3), TP("c", 2, 2, 3)};
    return pc_concat(g, 3, xs, 1);
}
static pc_val b_concat_mixed(pc_graph *g, rng *r) {
    pc_val a = TP("a", 2, 3);
    pc_val xs[3] = {a, CU(-1, 1, 2, 2), a};
    return pc_concat(g, 3, xs, -1);
}

/* opaque */
static pc_val b_embedding(pc_graph *g, rng *r) {
    (void)r;
    return pc_embedding(g, TP("table", 6, 4), CI(L({0, 5, 2, 2, 5, 3}), 2, 3));
}
static pc_val b_rope0(pc_graph *g, rng *r) {
    (void)r;
    return pc_rope(g, TP("x", 2, 3, 2, 4), CI(L({0, 3, 7}), 3), 10000.0, 0, 0);
}
static pc_val b_rope1(pc_graph *g, rng *r) {
    (void)r;
    return pc_rope(g, TP("x", 2, 3, 2, 4), CI(L({1, 2, 3, 5, 8, 13}), 2, 3), 100.0, 1, 0);
}
static pc_val b_rope_inv(pc_graph *g, rng *r) {
    (void)r;
    return pc_rope(g, TP("x", 3, 1, 6), CI(L({2, 4, 9}), 3), 500.0, 1, 1);
}
static pc_val b_causal(pc_graph *g, rng *r) { (void)r; return pc_causal_mask(g, TP("s", 2, 3, 4), -0.7); }
static pc_val b_causal_softmax(pc_graph *g, rng *r) {
    (void)r;
    return pc_softmax(g, pc_causal_mask(g, TPR("s", -2, 2, 2, 4, 4), -1e9), -1);
}
static pc_val ce(pc_graph *g, int64_t ignore, int reduction) {
    pc_val t = CI(L({1, 4, -100, 0, 2, 3}), 2, 3);
    return pc_cross_entropy(g, TPR("logits", -2, 2, 2, 3, 5), t, ignore, reduction);
}
static pc_val b_ce_mean(pc_graph *g, rng *r) { (void)r; return ce(g, -100, 0); }
static pc_val b_ce_sum(pc_graph *g, rng *r) { (void)r; return ce(g, -100, 1); }
static pc_val b_ce_none(pc_graph *g, rng *r) { (void)r; return ce(g, -100, 2); }
static pc_val b_ce_mean_ig2(pc_graph *g, rng *r) {
    (void)r;
    pc_val t = CI(L({1, 2, 2, 0}), 4);
    return pc_cross_entropy(g, TPR("logits", -2, 2, 4, 3), t, 2, 0);
}
static pc_val b_ce_sum_ig2(pc_graph *g, rng *r) {
    (void)r;
    pc_val t = CI(L({1, 2, 2, 0}), 4);
    return pc_cross_entropy(g, TPR("logits", -2, 2, 4, 3), t, 2, 1);
}
static pc_val b_ce_none_ig2(pc_graph *g, rng *r) {
    (void)r;
    pc_val t = CI(L({1, 2, 2, 0}), 4);
    return pc_cross_entropy(g, TPR("logits", -2, 2, 4, 3), t, 2, 2);
}

#define T(fn, fill, tol) {&(#fn)[2], fn, fill, tol, 0}

static const gcase binary_cases[] = {
    T(b_add, FILL_INIT, 2e-4), T(b_add_rank, FILL_INIT, 2e-4), T(b_sub, FILL_INIT, 2e-4),
    T(b_sub_scalar, FILL_INIT, 2e-4), T(b_mul, FILL_INIT, 2e-4), T(b_mul_self, FILL_INIT, 2e-4),
    T(b_mul_const, FILL_INIT, 2e-4), T(b_div, FILL_INIT, 2e-4), T(b_div_neg, FILL_INIT, 2e-4),
    T(b_maximum, FILL_DISTINCT, 2e-4), T(b_minimum, FILL_DISTINCT, 2e-4), T(b_where, FILL_INIT, 2e-4),
    T(b_where_f, FILL_INIT, 2e-4),
};
static const gcase unary_cases[] = {
    T(b_neg, FILL_INIT, 2e-4), T(b_scale, FILL_INIT, 2e-4), T(b_exp, FILL_INIT, 5e-4),
    T(b_log, FILL_INIT, 2e-4), T(b_sqrt, FILL_INIT, 5e-4), T(b_rsqrt, FILL_INIT, 2e-4),
    T(b_square, FILL_INIT, 2e-4), T(b_abs, FILL_AVOID0, 2e-4), T(b_tanh, FILL_INIT, 2e-4),
    T(b_sigmoid, FILL_INIT, 2e-4), T(b_relu, FILL_AVOID0, 2e-4), T(b_gelu, FILL_INIT, 2e-4),
    T(b_gelu_small, FILL_INIT, 2e-4), T(b_gelu_tanh, FILL_INIT, 2e-4), T(b_silu, FILL_INIT, 2e-4),
    T(b_cast, FILL_INIT, 2e-4), T(b_dropout, FILL_INIT, 2e-4), T(b_chain, FILL_INIT, 2e-4),
};
static const gcase reduce_cases[] = {
    T(b_sum1, FILL_INIT, 2e-4), T(b_sum1k, FILL_INIT, 2e-4), T(b_sum02, FILL_INIT, 2e-4),
    T(b_sum_all, FILL_INIT, 2e-4), T(b_sum_allk, FILL_INIT, 2e-4), T(b_mean1, FILL_INIT, 2e-4),
    T(b_mean02k, FILL_INIT, 2e-4), T(b_mean_all, FILL_INIT, 2e-4), T(b_max1, FILL_DISTINCT, 2e-4),
    T(b_max_last_k, FILL_DISTINCT, 2e-4), T(b_max02, FILL_DISTINCT, 2e-4), T(b_max_all, FILL_DISTINCT, 2e-4),
    T(b_softmax, FILL_INIT, 2e-4), T(b_softmax1, FILL_INIT, 2e-4), T(b_softmax0, FILL_INIT, 2e-4),
    T(b_logsm, FILL_INIT, 5e-4), T(b_logsm1, FILL_INIT, 5e-4),
};
static const gcase norm_cases[] = {
    T(b_rmsnorm, FILL_INIT, 5e-4), T(b_rmsnorm_eps, FILL_INIT, 5e-4), T(b_rmsnorm_x, FILL_INIT, 5e-4),
    T(b_layernorm, FILL_INIT, 5e-4), T(b_layernorm_eps, FILL_INIT, 5e-4), T(b_layernorm_b, FILL_INIT, 5e-4),
};
static const gcase matmul_cases[] = {
    T(b_mm_nn, FILL_INIT, 5e-4), T(b_mm_nt, FILL_INIT, 5e-4), T(b_mm_tn, FILL_INIT, 5e-4),
    T(b_mm_tt, FILL_INIT, 2e-4), T(b_mm_linear, FILL_INIT, 2e-4), T(b_mm_linear_n, FILL_INIT, 5e-4),
    T(b_mm_batch_ta, FILL_INIT, 2e-4), T(b_mm_batch_ta_tb, FILL_INIT, 5e-4), T(b_mm_batch_b, FILL_INIT, 2e-4),
    T(b_mm_batch_b_tt, FILL_INIT, 2e-4), T(b_mm_batch_both, FILL_INIT, 2e-4),
    T(b_mm_batch_both_nt, FILL_INIT, 2e-4), T(b_mm_batch_both_tn, FILL_INIT, 2e-4),
    T(b_mm_frozen_b, FILL_INIT, 2e-4), T(b_mm_frozen_a, FILL_INIT, 2e-4), T(b_mm_self, FILL_INIT, 2e-4),
    T(b_kron, FILL_INIT, 2e-4), T(b_kron_frozen, FILL_INIT, 2e-4),
};
static const gcase layout_cases[] = {
    T(b_reshape, FILL_INIT, 2e-4), T(b_transpose, FILL_INIT, 2e-4), T(b_transpose4, FILL_INIT, 2e-4),
    T(b_broadcast, FILL_INIT, 2e-4), T(b_sum_to, FILL_INIT, 2e-4), T(b_slice, FILL_INIT, 2e-4),
    T(b_slice_neg, FILL_INIT, 2e-4), T(b_pad, FILL_INIT, 2e-4), T(b_pad_neg, FILL_INIT, 2e-4),
    T(b_concat3, FILL_INIT, 2e-4), T(b_concat_mixed, FILL_INIT, 2e-4),
};
static const gcase opaque_cases[] = {
    T(b_embedding, FILL_INIT, 2e-4), T(b_rope0, FILL_INIT, 2e-4), T(b_rope1, FILL_INIT, 2e-4),
    T(b_rope_inv, FILL_INIT, 2e-4), T(b_causal, FILL_INIT, 2e-4), T(b_causal_softmax, FILL_INIT, 2e-4),
    T(b_ce_mean, FILL_INIT, 5e-4), T(b_ce_sum, FILL_INIT, 5e-4), T(b_ce_none, FILL_INIT, 5e-4),
    T(b_ce_mean_ig2, FILL_INIT, 2e-4), T(b_ce_sum_ig2, FILL_INIT, 2e-4), T(b_ce_none_ig2, FILL_INIT, 2e-4),
};

#define NCASES(a) (int)(sizeof a / sizeof a[0])
static void test_binary(void) { run_table(binary_cases, NCASES(binary_cases)); }
static void test_unary(void) { run_table(unary_cases, NCASES(unary_cases)); }
static void test_reduce(void) { run_table(reduce_cases, NCASES(reduce_cases)); }
static void test_norm(void) { run_table(norm_cases, NCASES(norm_cases)); }
static void test_matmul(void) { run_table(matmul_cases, NCASES(matmul_cases)); }
static void test_layout(void) { run_table(layout_cases, NCASES(layout_cases)); }
static void test_opaque(void) { run_table(opaque_cases, NCASES(opaque_cases)); }

/* every differentiable op of ops.def appears in some case */
static void test_coverage(void) {
    const struct { const gcase *c; int n; } tables[] = {
        {binary_cases, NCASES(binary_cases)}, {unary_cases, NCASES(unary_cases)},
        {reduce_cases, NCASES(reduce_cases)}, {norm_cases, NCASES(norm_cases)},
        {matmul_cases, NCASES(matmul_cases)}, {layout_cases, NCASES(layout_cases)},
        {opaque_cases, NCASES(opaque_cases)},
    };
    bool seen[PC_OP_COUNT] = {0};
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++)
        for (int i = 0; i < tables[t].n; i++) {
            rng r = {1};
            pc_graph *g = pc_graph_new("cov");
            tables[t].c[i].build(g, &r);
            CU_ASSERT_PTR_NULL(pc_graph_error(g));
            for (int v = 0; v < g->nvals; v++) seen[g->vals[v].op] = true;
            pc_graph_free(g);
        }
    for (int op = 0; op < PC_OP_COUNT; op++)
        if (pc_op_get((pc_opcode)op)->differentiable && !seen[op]) {
            printf("\n    no gradient test for op %s", pc_op_get((pc_opcode)op)->name);
            CU_FAIL("a differentiable op has no gradient test");
        }
}

/* ---- exact checks ---- */

/* runs g (autograd applied) with params bound; returns the ref (caller frees) or NULL */
static pc_ref *run_graph(pc_graph *g, int n, const pc_val *p, float *const *data) {
    char err[512];
    pc_ref *ref = pc_ref_new(g, err, sizeof err);
    if (!ref) { printf("\n    pc_ref_new: %s\n", err); return NULL; }
    for (int i = 0; i < n; i++) pc_ref_bind(ref, p[i], data[i]);
    if (pc_ref_run(ref, err, sizeof err)) {
        printf("\n    run: %s\n", err);
        pc_ref_free(ref);
        return NULL;
    }
    return ref;
}

/* ties: maximum(a, a) gives the whole gradient to a (half through each operand); max over a row
 * with two maximal elements splits it between them */
static void test_ties(void) {
    pc_graph *g = pc_graph_new("ties");
    pc_val a = TP("a", 2, 3);
    pc_val m = pc_maximum(g, a, a);
    pc_val mn = pc_minimum(g, a, pc_const(g, PC_F32, PC_SHAPE(3), (float[]){1, 3, 0}));
    pc_val mx = pc_max(g, a, 1, (int64_t[]){1}, 0);
    pc_val loss = pc_add(g, pc_add(g, pc_sum(g, m, 0, NULL, 0), pc_sum(g, mn, 0, NULL, 0)),
                         pc_sum(g, pc_scale(g, mx, 10, 0), 0, NULL, 0));
    pc_mark_loss(g, loss);
    char err[512];
    CU_ASSERT_EQUAL_FATAL(pc_pass_autograd(g, err, sizeof err), 0);
    float ad[6] = {1, 3, 3, 2, 0, -1};
    float *data[1] = {ad};
    pc_ref *ref = run_graph(g, 1, &a, data);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ref);
    const float *gd = pc_ref_data(ref, pc_lookup(g, "grad.a"));
    /* d maximum(a,a) = 1; d minimum(a, [1,3,0]) = 1 where a < c, 0.5 on ties, 0 where a > c;
     * d max(a, axis 1) * 10: row 0 ties at 3 -> 5, 5; row 1 max 2 -> 10 */
    const float want[6] = {1 + 0.5f + 0, 1 + 0.5f + 5, 1 + 0 + 5, 1 + 0 + 10, 1 + 1 + 0, 1 + 1 + 0};
    for (int i = 0; i < 6; i++) CU_ASSERT_DOUBLE_EQUAL(gd[i], want[i], 1e-6);
    pc_ref_free(ref);
    pc_graph_free(g);
}

/* kinks: abs and relu have gradient 0 at 0 */
static void test_kinks(void) {
    pc_graph *g = pc_graph_new("kinks");
    pc_val a = TP("a", 3);
    pc_val loss = pc_sum(g, pc_add(g, pc_abs(g, a), pc_relu(g, a)), 0, NULL, 0);
    pc_mark_loss(g, loss);
    char err[512];
    CU_ASSERT_EQUAL_FATAL(pc_pass_autograd(g, err, sizeof err), 0);
    float ad[3] = {-2, 0, 2};
    float *data[1] = {ad};
    pc_ref *ref = run_graph(g, 1, &a, data);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ref);
    const float *gd = pc_ref_data(ref, pc_lookup(g, "grad.a"));
    CU_ASSERT_DOUBLE_EQUAL(gd[0], -1, 0);
    CU_ASSERT_DOUBLE_EQUAL(gd[1], 0, 0);
    CU_ASSERT_DOUBLE_EQUAL(gd[2], 2, 0);
    pc_ref_free(ref);
    pc_graph_free(g);
}

/* a path through a cast to i32 carries no gradient: the param gets a zero gradient and a warning */
static void test_cast_i32_blocks(void) {
    pc_graph *g = pc_graph_new("cast");
    pc_val a = TP("a", 4);
    pc_val y = pc_cast(g, pc_cast(g, pc_scale(g, a, 3, 0), PC_I32), PC_F32);
    pc_mark_loss(g, pc_sum(g, y, 0, NULL, 0));
    char err[512];
    CU_ASSERT_EQUAL_FATAL(pc_pass_autograd(g, err, sizeof err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "warning"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "%a"));
    float ad[4] = {0.5f, 1.5f, -2, 3};
    float *data[1] = {ad};
    pc_ref *ref = run_graph(g, 1, &a, data);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ref);
    const float *gd = pc_ref_data(ref, pc_lookup(g, "grad.a"));
    for (int i = 0; i < 4; i++) CU_ASSERT_DOUBLE_EQUAL(gd[i], 0, 0);
    pc_ref_free(ref);
    pc_graph_free(g);
}

/* pc_grad directly: need masks, integer operands, non-differentiable ops, locations */
static void test_rules_direct(void) {
    pc_graph *g = pc_graph_new("direct");
    pc_val t = pc_input(g, "t", PC_F32, PC_SHAPE(6, 4));
    pc_val ids = pc_input(g, "ids", PC_I32, PC_SHAPE(3));
    pc_val e = pc_embedding(g, t, ids);
    pc_val ge = pc_input(g, "ge", PC_F32, PC_SHAPE(3, 4));
    pc_val out[3];
    int nbefore = g->nvals;
    CU_ASSERT_EQUAL(pc_grad(g, e, ge, (const bool[]){true, true}, out), 0);
    CU_ASSERT_NOT_EQUAL(out[0], PC_NONE);
    CU_ASSERT_EQUAL(out[1], PC_NONE);
    CU_ASSERT_TRUE(pc_shape_eq(pc_val_shape(g, out[0]), PC_SHAPE(6, 4)));
    for (int v = nbefore; v < g->nvals; v++) { /* appended nodes point at the forward node */
        CU_ASSERT_EQUAL(g->vals[v].loc.line, g->vals[e].loc.line);
        CU_ASSERT_STRING_EQUAL(g->vals[v].loc.file, g->vals[e].loc.file);
    }

    pc_val a = pc_input(g, "a", PC_F32, PC_SHAPE(2, 3)), b = pc_input(g, "b", PC_F32, PC_SHAPE(3));
    pc_val m = pc_mul(g, a, b);
    pc_val gm = pc_input(g, "gm", PC_F32, PC_SHAPE(2, 3));
    CU_ASSERT_EQUAL(pc_grad(g, m, gm, (const bool[]){false, true}, out), 0);
    CU_ASSERT_EQUAL(out[0], PC_NONE);
    CU_ASSERT_TRUE(pc_shape_eq(pc_val_shape(g, out[1]), PC_SHAPE(3)));

    /* the condition of where never gets a gradient */
    pc_val w = pc_where(g, a, a, b);
    CU_ASSERT_EQUAL(pc_grad(g, w, gm, (const bool[]){true, true, true}, out), 0);
    CU_ASSERT_EQUAL(out[0], PC_NONE);
    CU_ASSERT_NOT_EQUAL(out[1], PC_NONE);
    CU_ASSERT_NOT_EQUAL(out[2], PC_NONE);

    /* a wrongly typed adjoint is refused */
    CU_ASSERT_EQUAL(pc_grad(g, m, ge, (const bool[]){true, true}, out), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(pc_graph_error(g), "adjoint"));
    pc_graph_clear_error(g);

    /* non-differentiable ops are an error */
    pc_val eg = pc_embedding_grad(g, ids, ge, 6);
    pc_val geg = pc_input(g, "geg", PC_F32, PC_SHAPE(6, 4));
    CU_ASSERT_EQUAL(pc_grad(g, eg, geg, (const bool[]){true, true}, out), -1);
    CU_ASSERT_PTR_NOT_NULL(pc_graph_error(g));
    if (pc_graph_error(g)) CU_ASSERT_PTR_NOT_NULL(strstr(pc_graph_error(g), "not differentiable"));
    pc_graph_free(g);
}

/* a gradient that must flow through a non-differentiable op makes the pass fail */
static void test_nondiff_path(void) {
    pc_graph *g = pc_graph_new("nondiff");
    pc_val ids = pc_input(g, "ids", PC_I32, PC_SHAPE(3));
    pc_val x = TP("x", 3, 4);
    pc_val eg = pc_embedding_grad(g, ids, x, 5);
    pc_mark_loss(g, pc_sum(g, eg, 0, NULL, 0));
    char err[512];
    CU_ASSERT_EQUAL(pc_pass_autograd(g, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "embedding_grad"));
    pc_graph_free(g);
}

static CU_TestInfo tests[] = {
    {"binary", test_binary},
    {"unary", test_unary},
    {"reductions", test_reduce},
    {"norms", test_norm},
    {"matmul_kron", test_matmul},
    {"layout", test_layout},
    {"opaque", test_opaque},
    {"coverage", test_coverage},
    {"ties", test_ties},
    {"kinks", test_kinks},
    {"cast_i32_blocks", test_cast_i32_blocks},
    {"rules_direct", test_rules_direct},
    {"nondiff_path", test_nondiff_path},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("grad", tests)
