/* The compiled backend's attention kernels (backend/compiled_attention.c) against the reference
 * interpreter: causal attention o = softmax(causal_mask(alpha q kᵀ)) v with a loss sum(o w), its
 * gradients by autograd, over the shapes the kernels treat differently (queries and keys not
 * multiples of 16, keys past the queries as prefix tuning has them, head dims with tails, one
 * query), gradients for some of q, k, v only, a mask fill that does not underflow (the kernels'
 * row-by-row path), and broadcast heads (grouped-query attention). Each case also checks which
 * kernel the lowering picked, so that a pattern the matcher stops recognising fails here. */
#include "backend/compiled_internal.h"
#include "cu_main.h"
#include "test_rng.h"
#include "passes/passes.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_rng = 0x2545f4914f6cdd1dull;
static double rnd(void) { return test_rng_unit(&g_rng); }

/* max |a - b| / max |b| (or / max(1, max |b|)) */
static double rel_err(const float *a, const float *b, int64_t n, bool floor_one) {
    double m = 0, s = floor_one ? 1.0 : 1e-30;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(a[i]) != isnan(b[i])) return INFINITY;
        s = fmax(s, fabs(b[i]));
        m = fmax(m, fabs((double)a[i] - b[i]));
    }
    return m / s;
}

typedef struct {
    const char *name;
    int64_t B, H, Hkv, Sq, Sk, D;
    int train_q, train_k, train_v; /* which inputs are trainable (get a gradient) */
    double fill, alpha;
    bool flash, flash_grad; /* the kernels the lowering is expected to pick */
    bool denormal;          /* scores set so that probabilities fall below FLT_MIN (t_denormal) */
    bool bshd;              /* q, k, v stored [B, S, H, D] and transposed, as the Llama frontend has them */
    bool copy_kv;           /* grouped kv heads copied per query head (broadcast, reshape), not a batch axis */
} acase;

static bool has_call(const pc_lowered *l, pc_call_kind k) {
    for (int i = 0; i < l->ninsns; i++)
        if (l->insn[i].kind == PC_LI_CALL && l->insn[i].call == k) return true;
    return false;
}

static bool has_kind(const pc_lowered *l, pc_li_kind k) {
    for (int i = 0; i < l->ninsns; i++)
        if (l->insn[i].kind == k) return true;
    return false;
}

/* a call of op itself left in the lowered program */
static bool has_op_call(const pc_lowered *l, const pc_graph *g, pc_opcode op) {
    for (int i = 0; i < l->ninsns; i++)
        if (l->insn[i].kind == PC_LI_CALL && l->insn[i].call == PC_CALL_OP && l->insn[i].v >= 0 &&
            pc_v(g, l->insn[i].v)->op == op)
            return true;
    return false;
}

static pc_val leaf(pc_graph *g, const char *name, pc_shape s, int trainable, float **data) {
    pc_val v = pc_param(g, name, name, PC_F32, s, trainable ? PC_TRAINABLE : PC_FROZEN, (pc_init){PC_INIT_ZEROS, 0, 0});
    int64_t n = pc_shape_numel(s);
    *data = malloc((size_t)n * sizeof **data);
    for (int64_t i = 0; i < n; i++) (*data)[i] = (float)(2 * rnd() - 1);
    return v;
}

static void run_case(const acase *t) {
    pc_graph *g = pc_graph_new("attn");
    float *dq, *dk, *dv, *dw;
    int64_t rep = t->H / t->Hkv;
    bool grouped = rep > 1 && !t->copy_kv; /* [B, Hkv, rep, S, D] against [B, Hkv, 1, S, D] */
    pc_val lq, lk, lv, q, k, v; /* the stored leaves; the operands, [B, H, S, D] or grouped */
    if (t->bshd) { /* rows of a head t->H * t->D floats apart */
        lq = leaf(g, "q", PC_SHAPE(t->B, t->Sq, t->H, t->D), t->train_q, &dq);
        lk = leaf(g, "k", PC_SHAPE(t->B, t->Sk, t->Hkv, t->D), t->train_k, &dk);
        lv = leaf(g, "v", PC_SHAPE(t->B, t->Sk, t->Hkv, t->D), t->train_v, &dv);
        if (grouped) {
            const int64_t perm[5] = {0, 2, 3, 1, 4};
            q = pc_transpose(g, pc_reshape(g, lq, PC_SHAPE(t->B, t->Sq, t->Hkv, rep, t->D)), 5, perm);
            k = pc_transpose(g, pc_reshape(g, lk, PC_SHAPE(t->B, t->Sk, t->Hkv, 1, t->D)), 5, perm);
            v = pc_transpose(g, pc_reshape(g, lv, PC_SHAPE(t->B, t->Sk, t->Hkv, 1, t->D)), 5, perm);
        } else {
            const int64_t perm[4] = {0, 2, 1, 3};
            q = pc_transpose(g, lq, 4, perm), k = pc_transpose(g, lk, 4, perm), v = pc_transpose(g, lv, 4, perm);
        }
    } else {
        q = lq = leaf(g, "q", PC_SHAPE(t->B, t->H, t->Sq, t->D), t->train_q, &dq);
        k = lk = leaf(g, "k", PC_SHAPE(t->B, t->Hkv, t->Sk, t->D), t->train_k, &dk);
        v = lv = leaf(g, "v", PC_SHAPE(t->B, t->Hkv, t->Sk, t->D), t->train_v, &dv);
        if (grouped) {
            q = pc_reshape(g, lq, PC_SHAPE(t->B, t->Hkv, rep, t->Sq, t->D));
            k = pc_reshape(g, lk, PC_SHAPE(t->B, t->Hkv, 1, t->Sk, t->D));
            v = pc_reshape(g, lv, PC_SHAPE(t->B, t->Hkv, 1, t->Sk, t->D));
        }
    }
    pc_val w = leaf(g, "w", PC_SHAPE(t->B, t->H, t->Sq, t->D), 0, &dw), lw = w;
    if (grouped) w = pc_reshape(g, w, PC_SHAPE(t->B, t->Hkv, rep, t->Sq, t->D));
    if (t->denormal) { /* q = e0, k[j] = s_j e0 (alpha 1): keys 0 and 1 score 0, the others about
                        * -87.2, so a row's later keys get exp(-87.2) / 2 ~ 7e-39 < FLT_MIN */
        for (int64_t i = 0; i < t->B * t->H * t->Sq * t->D; i++) dq[i] = i % t->D == 0 ? 1.0f : 0.0f;
        for (int64_t i = 0; i < t->B * t->Hkv * t->Sk * t->D; i++) {
            int64_t j = (i / t->D) % t->Sk;
            dk[i] = i % t->D ? 0.0f : j < 2 ? 0.0f : -87.1f - 0.02f * (float)(j % 8);
        }
    }
    pc_val kk = k, vv = v;
    if (rep > 1 && t->copy_kv) { /* each kv head copied for its query heads */
        pc_shape s5 = PC_SHAPE(t->B, t->Hkv, 1, t->Sk, t->D), b5 = PC_SHAPE(t->B, t->Hkv, rep, t->Sk, t->D);
        pc_shape s4 = PC_SHAPE(t->B, t->H, t->Sk, t->D);
        kk = pc_reshape(g, pc_broadcast(g, pc_reshape(g, k, s5), b5), s4);
        vv = pc_reshape(g, pc_broadcast(g, pc_reshape(g, v, s5), b5), s4);
    }
    pc_val s = pc_scale(g, pc_matmul(g, q, kk, 0, 1), t->alpha, 0);
    pc_val p = pc_softmax(g, pc_causal_mask(g, s, t->fill), -1);
    pc_val o = pc_matmul(g, p, vv, 0, 0);
    pc_mark_loss(g, pc_sum(g, pc_mul(g, o, w), 0, NULL, 0));
    char err[4096] = "";
    CU_ASSERT_FATAL(pc_pass_autograd(g, err, sizeof err) == 0);
    pc_ref *r = pc_ref_new(g, err, sizeof err);
    pc_exec_opts eo = {.kind = PC_BACKEND_JIT, .threads = 1};
    pc_compiled *c = pc_compiled_new(g, &eo, err, sizeof err);
    if (!r || !c) printf("\n    %s: %s\n", t->name, err);
    CU_ASSERT_FATAL(r && c);
    const pc_lowered *l = pc_compiled_lowered(c);
    bool fwd = has_call(l, PC_CALL_FLASH), bwd = has_call(l, PC_CALL_FLASH_GRAD);
    CU_ASSERT(fwd == t->flash && bwd == t->flash_grad);
    /* grouped heads: the kernels read k, v in place (no copy) and write d k, d v summed */
    if (grouped && t->flash) CU_ASSERT(!has_op_call(l, g, PC_OP_sum_to));
    /* [B, S, H, D] leaves: the kernels write their gradients in that layout, through strides */
    if (t->bshd && t->flash_grad) CU_ASSERT(!has_kind(l, PC_LI_COPY));
    pc_val leaves[4] = {lq, lk, lv, lw};
    float *data[4] = {dq, dk, dv, dw};
    for (int i = 0; i < 4; i++) pc_ref_bind(r, leaves[i], data[i]), pc_compiled_bind(c, leaves[i], data[i]);
    CU_ASSERT_FATAL(pc_ref_run(r, err, sizeof err) == 0);
    CU_ASSERT_FATAL(pc_compiled_run(c, err, sizeof err) == 0);
    /* gradients relative to their largest entry; the loss, a sum of terms of both signs, to 1e-5.
     * With denormal probabilities a gradient can consist of flushed terms only (d q here: 1.3e-35
     * in the interpreter, 0 in the kernel): those are compared as the golden tests compare, relative
     * to max(1, max |g|) */
    double worst = 0, loss = 0;
    for (int i = 0; i < g->noutputs; i++) {
        pc_val x = g->outputs[i];
        double e = rel_err(pc_compiled_data(c, x), pc_ref_data(r, x), pc_shape_numel(pc_v(g, x)->shape), t->denormal);
        if (pc_v(g, x)->flags & PC_LOSS) loss = e;
        else worst = fmax(worst, e);
    }
    printf("\n    %-24s %s%s%s: loss %.1e, %d gradients %.1e", t->name, fwd ? "flash" : "unfused",
           bwd ? " + flash grad" : "", t->flash ? "" : " (as expected)", loss, g->noutputs - 1, worst);
    CU_ASSERT(worst <= 2e-6 && loss <= 1e-5);
    pc_ref_free(r);
    pc_compiled_free(c);
    pc_graph_free(g);
    free(dq), free(dk), free(dv), free(dw);
}

static const acase cases[] = {
    {"stories260K heads", 2, 8, 8, 64, 64, 8, 1, 1, 1, -1e30, 0.35355339059327373, true, true, false, false, false},
    {"prefix keys (shift 8)", 2, 3, 3, 5, 13, 8, 1, 1, 1, -1e30, 0.5, true, true, false, false, false},
    {"prefix, long", 1, 2, 2, 33, 50, 16, 1, 1, 1, -1e30, 0.25, true, true, false, false, false},
    {"head dim 24 (tails)", 1, 2, 2, 20, 20, 24, 1, 1, 1, -1e30, 0.2, true, true, false, false, false},
    {"head dim 4", 3, 2, 2, 17, 40, 4, 1, 1, 1, -1e30, 0.5, true, true, false, false, false},
    {"one query", 2, 4, 4, 1, 9, 8, 1, 1, 1, -1e30, 0.35, true, true, false, false, false},
    {"q only", 1, 2, 2, 24, 24, 8, 1, 0, 0, -1e30, 0.35, true, true, false, false, false},
    {"v only", 1, 2, 2, 24, 24, 8, 0, 0, 1, -1e30, 0.35, true, true, false, false, false},
    {"k and v", 1, 2, 2, 24, 30, 8, 0, 1, 1, -1e30, 0.35, true, true, false, false, false},
    {"k only", 2, 2, 2, 24, 24, 8, 0, 1, 0, -1e30, 0.35, true, true, false, false, false},
    {"mild fill (row path)", 2, 2, 2, 19, 23, 8, 1, 1, 1, -2.0, 0.5, true, true, false, false, false},
    {"grouped kv heads", 2, 4, 2, 32, 32, 8, 1, 1, 1, -1e30, 0.35, true, true, false, false, false},
    {"grouped, copied kv", 2, 4, 2, 32, 32, 8, 1, 1, 1, -1e30, 0.35, true, true, false, false, true},
    {"grouped, v only", 1, 6, 2, 24, 24, 8, 0, 0, 1, -1e30, 0.35, true, true, false, false, false},
    {"grouped, k only, dim 64", 2, 4, 1, 40, 40, 64, 0, 1, 0, -1e30, 0.125, true, true, false, false, false},
    {"grouped, dim 24", 1, 4, 2, 20, 20, 24, 1, 1, 1, -1e30, 0.2, true, true, false, true, false},
    {"inference only", 2, 2, 2, 16, 16, 8, 0, 0, 0, -1e30, 0.35, true, false, false, false, false},
    {"beyond 256 keys", 1, 1, 1, 8, 300, 8, 1, 1, 1, -1e30, 0.35, false, false, false, false, false},
    /* the layouts of the bench models: rows of a head H * D floats apart (transposes of whole
     * 16-row blocks in registers, k quads from strided rows), head dim 64 */
    {"stories260K layout", 2, 8, 4, 64, 64, 8, 1, 1, 1, -1e30, 0.35355339059327373, true, true, false, true, false},
    {"mid heads (dim 64)", 1, 2, 2, 128, 128, 64, 1, 1, 1, -1e30, 0.125, true, true, false, true, false},
    {"dim 64, 37 queries", 1, 2, 2, 37, 37, 64, 1, 1, 1, -1e30, 0.125, true, true, false, false, false},
};

static void t_cases(void) {
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
    printf("\n");
}

/* probabilities below FLT_MIN (and gradients through them, 210 values here): the flash kernels
 * flush those to zero, the interpreter keeps them; both agree to the tolerance */
static void t_denormal(void) {
    acase t = {"denormal probabilities", 1, 2, 2, 16, 16, 8, 1, 1, 1, -1e30, 1.0, true, true, true, false, false};
    run_case(&t);
    printf("\n");
}

static CU_TestInfo tests[] = {
    {"shapes_and_gradients", t_cases},
    {"denormal_probabilities", t_denormal},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("attention", tests)
