/* LoKr / KronA (PEFT's LoKrConfig, peft_type "LOKR"; reference/peft.md §4) on linear sites:
 *   y = x Wᵀ (+ b) + (x (w1 ⊗ w2)ᵀ) · s · mask,   s = alpha / r (PEFT >= 0.14, also for full-rank
 *   factors), r and alpha per module from rank_pattern / alpha_pattern.
 * Shapes: out = a·b, in = c·d with (a, b) = factorization(out), (c, d) = factorization(in)
 * (decompose_factor); w1 [a, c] is lokr_w1, or lokr_w1_a [a, r] · lokr_w1_b [r, c] when
 * decompose_both and r < max(a, c)/2; w2 [b, d] is lokr_w2, or lokr_w2_a [b, r] · lokr_w2_b [r, d]
 * when r < max(b, d)/2. ΔW[i·b+j, k·d+l] = s · w1[i,k] · w2[j,l].
 * The rewrite emits PEFT's plain form matmul(x, kron(w1, w2), transpose_b); the fuse-kron pass
 * (passes/fuse_kron.c), which every model graph goes through, turns it into two small matmuls on
 * a reshaped x, so neither ΔW nor the Kronecker product is formed in the forward or the backward;
 * with a low-rank w2 it recognises the matmul(w2_a, w2_b) below and, when cheaper, applies the
 * halves one after the other (x w2_bᵀ, w1, w2_aᵀ) without forming w2 (pc_kron_linear_lowrank_at).
 * Dropout (training only), as PEFT: rank_dropout keeps each output row of ΔW with probability
 * 1 - p (divided by the kept fraction's mean when rank_dropout_scale), which is a 0/1 mask on the
 * delta's output features; module_dropout skips the whole delta with probability p. Both masks are
 * drawn once per step (the graph's %seed), from pc_dropout's hash, not torch's generator.
 * Init (init_weights): true: w1 (w1_a) zero, the rest kaiming_uniform(a=√5); "lycoris": w1 (w1_a,
 * w1_b) and w2_a kaiming, w2 (w2_b) zero; false: all kaiming.
 * Merging: W ± s · kron(w1, w2), the Kronecker product formed once.
 * Rows (--hf-qk-rows): output row i·b+j of ΔW belongs to w2's row j, so a RoPE row order (a
 * permutation inside each head) is a permutation of w2's (w2_a's) rows when the head size divides
 * b; the session refuses the other shapes. */
#include "passes/kron.h"
#include "passes/adapt.h"
#include "runtime/target_match.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int lokr_begin(pc_adapt_ctx *cx, void *state, char *err, size_t errlen) {
    (void)state;
    const pc_adapter_config *cfg = pc_adapt_config(cx);
    if (cfg->target_modules.kind == PC_SPEC_NULL)
        return snprintf(err, errlen, "field \"target_modules\": null (no default for this model)"), -1;
    if (cfg->lycoris.use_effective_conv2d)
        return snprintf(err, errlen, "field \"use_effective_conv2d\": true is not implemented by peftc (it is the CP "
                        "decomposition of convolution kernels; peftc adapts linear layers only): set it to false"), -1;
    return 0;
}

/* the factors of one module */
typedef struct {
    int r;
    double scale;
    int64_t a, b, c, d;
    pc_val w1, w2; /* [a, c], [b, d] (products of the low-rank halves when decomposed) */
} lokr_mod;

static pc_init kaiming(void) { return (pc_init){PC_INIT_KAIMING_UNIFORM, sqrt(5.0), 0}; }
static pc_init zeros(void) { return (pc_init){PC_INIT_ZEROS, 0, 0}; }

/* the module's factors when targeted: 1, 0 not targeted, -1 error */
static int lokr_module(pc_adapt_ctx *cx, const pc_site *s, lokr_mod *m, char *err, size_t errlen) {
    const pc_adapter_config *cfg = pc_adapt_config(cx);
    int hit = pc_adapt_targets(cx, s->module);
    if (hit <= 0) return hit < 0 ? (snprintf(err, errlen, "matching module '%s' failed", s->module), -1) : 0;
    double alpha;
    char why[512] = ""; /* the regex engine's reason, if it failed */
    if (pc_target_rank_alpha_why(pc_adapt_matcher(cx), s->module, &m->r, &alpha, why, sizeof why))
        return snprintf(err, errlen, "no rank for module '%s'%s%s", s->module, why[0] ? ": " : "", why), -1;
    if (m->r <= 0)
        return snprintf(err, errlen, "field \"r\": rank %d for module '%s' must be positive", m->r, s->module), -1;
    m->scale = alpha / (double)m->r;
    int64_t f = cfg->lycoris.decompose_factor, r = m->r;
    pc_kron_factorization(s->out, f, &m->a, &m->b);
    pc_kron_factorization(s->in, f, &m->c, &m->d);
    /* PEFT: use_w1 = not (decompose_both and r < max(a, c) / 2); use_w2 = not (r < max(b, d) / 2) */
    bool full1 = !(cfg->lycoris.decompose_both && 2 * r < (m->a > m->c ? m->a : m->c));
    bool full2 = !(2 * r < (m->b > m->d ? m->b : m->d));
    pc_lycoris_init iw = cfg->lycoris.init_weights;
    pc_init w1_init = iw == PC_LYCORIS_INIT_TRUE ? zeros() : kaiming();   /* w1 or w1_a */
    pc_init w2_init = iw == PC_LYCORIS_INIT_LYCORIS ? zeros() : kaiming(); /* w2 or w2_b */
    pc_graph *g = s->g;
    if (full1) {
        m->w1 = pc_adapt_param(cx, s, "lokr_w1", PC_SHAPE(m->a, m->c), w1_init);
    } else {
        pc_val w1a = pc_adapt_param(cx, s, "lokr_w1_a", PC_SHAPE(m->a, r), w1_init);
        pc_val w1b = pc_adapt_param(cx, s, "lokr_w1_b", PC_SHAPE(r, m->c), kaiming());
        m->w1 = pc_matmul_at(g, s->loc, w1a, w1b, 0, 0);
    }
    if (full2) {
        m->w2 = pc_adapt_param(cx, s, "lokr_w2", PC_SHAPE(m->b, m->d), w2_init);
    } else {
        pc_val w2a = pc_adapt_param(cx, s, "lokr_w2_a", PC_SHAPE(m->b, r), kaiming());
        pc_val w2b = pc_adapt_param(cx, s, "lokr_w2_b", PC_SHAPE(r, m->d), w2_init);
        m->w2 = pc_matmul_at(g, s->loc, w2a, w2b, 0, 0);
    }
    return 1;
}

static int lokr_rewrite(pc_adapt_ctx *cx, void *state, pc_site *s, char *err, size_t errlen) {
    (void)state;
    lokr_mod m;
    int hit = lokr_module(cx, s, &m, err, errlen);
    if (hit <= 0) return hit;
    pc_graph *g = s->g;
    const pc_adapter_config *cfg = pc_adapt_config(cx);
    pc_val kron = pc_kron_at(g, s->loc, m.w1, m.w2);
    pc_val delta = pc_scale_at(g, s->loc, pc_matmul_at(g, s->loc, s->x, kron, 0, 1), m.scale, 0.0);
    if (pc_adapt_get_mode(cx) == PC_ADAPT_TRAIN) {
        double rd = cfg->lycoris.rank_dropout.v, md = cfg->lycoris.module_dropout.v;
        if (rd > 0) {
            pc_val mask = pc_adapt_keep_mask(cx, s, PC_SHAPE(s->out), rd, "#lokr.rank_dropout");
            if (cfg->lycoris.rank_dropout_scale) mask = pc_div_at(g, s->loc, mask, pc_mean_at(g, s->loc, mask, 0, NULL, 0));
            delta = pc_mul_at(g, s->loc, delta, mask);
        }
        if (md > 0) delta = pc_mul_at(g, s->loc, delta, pc_adapt_keep_mask(cx, s, PC_SHAPE(1), md, "#lokr.module_dropout"));
    }
    s->value = pc_add_at(g, s->loc, s->value, delta);
    return 1;
}

/* W ± s · kron(w1, w2) (sign -1: unmerge) */
static int lokr_fold(pc_adapt_ctx *cx, const pc_site *s, double sign, pc_val *w, char *err, size_t errlen) {
    lokr_mod m;
    int hit = lokr_module(cx, s, &m, err, errlen);
    if (hit <= 0) return hit;
    pc_graph *g = s->g;
    pc_val dw = pc_scale_at(g, s->loc, pc_kron_at(g, s->loc, m.w1, m.w2), sign * m.scale, 0.0);
    *w = pc_add_at(g, s->loc, s->weight, dw);
    return 1;
}

static int lokr_merge(pc_adapt_ctx *cx, void *state, const pc_site *s, pc_val *w, pc_val *b, char *err, size_t errlen) {
    (void)state, (void)b;
    return lokr_fold(cx, s, 1.0, w, err, errlen);
}

static int lokr_unmerge(pc_adapt_ctx *cx, void *state, const pc_site *s, pc_val *w, pc_val *b, char *err,
                        size_t errlen) {
    (void)state, (void)b;
    return lokr_fold(cx, s, -1.0, w, err, errlen);
}

/* w2's rows j are ΔW's rows i·b + j: a per-head row order is a row order of w2 (w2_a) when the
 * head size divides b (the session checks that the rows divide into heads) */
static int lokr_output_rows(const char *tensor) {
    return strcmp(tensor, "lokr_w2") == 0 || strcmp(tensor, "lokr_w2_a") == 0;
}

const pc_adapter_method pc_method_lokr = {
    .name = "lokr",
    .peft_type = "LOKR",
    .sites = PC_SITE_LINEAR,
    .begin = lokr_begin,
    .rewrite = lokr_rewrite,
    .merge_linear = lokr_merge,
    .unmerge_linear = lokr_unmerge,
    .output_rows = lokr_output_rows,
};
