/* LoHa (PEFT's LoHaConfig, peft_type "LOHA"; reference/peft.md §3; FedPara's Hadamard form) on
 * linear sites:
 *   ΔW = ((w1_a w1_b) ⊙ (w2_a w2_b)) · alpha / r          [out, in]
 *   y  = x Wᵀ (+ b) + x ΔWᵀ
 * with w1_a, w2_a [out, r] and w1_b, w2_b [r, in] (keys "<module>.hada_w1_a" ...), r and alpha
 * per module from rank_pattern / alpha_pattern (the config's scaling field is `alpha`). ΔW is
 * formed from the factors in the graph every step, as PEFT does, and added to W (one product
 * x (W + ΔW)ᵀ), unless the rank-r² factors are cheaper (see loha_rewrite).
 * Init (init_weights=true): w1_a, w1_b, w2_a kaiming_uniform(a=√5) (bound 1/√fan_in, fan_in =
 * the tensor's second dim), w2_b = 0, so ΔW = 0; init_weights=false: all four kaiming.
 * Training only, as PEFT's LoHaLayer.forward / get_delta_weight:
 *   rank_dropout p:   ΔW's output row i is multiplied by m_i / mean(m), m_i = 1 with
 *                     probability 1-p, else 0 (PEFT always divides by the mean in LoHa);
 *   module_dropout p: the whole x ΔWᵀ term is dropped with probability p (one draw per module
 *                     per step).
 * The masks are pc_dropout masks of a ones tensor turned into exact 0/1 by `> 0`: a pure
 * function of (%seed, a salt per module and purpose, row), so a step's forward and backward
 * see the same mask and a resumed run draws the same ones.
 * Merging: W' = W + ΔW; unmerging: W = W' − ΔW (LycorisLayer.merge / unmerge). */
#include "passes/adapt.h"
#include "runtime/target_match.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int loha_begin(pc_adapt_ctx *cx, void *state, char *err, size_t errlen) {
    (void)state;
    const pc_adapter_config *cfg = pc_adapt_config(cx);
    if (cfg->target_modules.kind == PC_SPEC_NULL)
        return snprintf(err, errlen, "field \"target_modules\": null (no default for this model)"), -1;
    /* use_effective_conv2d only changes convolutions (PEFT ignores it on linears): accepted */
    if (cfg->lycoris.rank_dropout.v >= 1.0)
        return snprintf(err, errlen, "field \"rank_dropout\": %g is not implemented by peftc (every row would be "
                        "dropped and PEFT divides by their zero mean); use a value below 1",
                        cfg->lycoris.rank_dropout.v), -1;
    if (cfg->lycoris.module_dropout.v >= 1.0)
        return snprintf(err, errlen, "field \"module_dropout\": %g is not implemented by peftc (the adapter would "
                        "never run in training); use a value below 1", cfg->lycoris.module_dropout.v), -1;
    return 0;
}

/* the module's factors and scale when it is targeted: 1, 0 not targeted, -1 error */
static int loha_module(pc_adapt_ctx *cx, const pc_site *s, double *scale, pc_val f[4], char *err, size_t errlen) {
    int r, hit = pc_adapt_targets(cx, s->module);
    double alpha;
    if (hit <= 0) return hit < 0 ? (snprintf(err, errlen, "matching module '%s' failed", s->module), -1) : 0;
    char why[512] = ""; /* the regex engine's reason, if it failed */
    if (pc_target_rank_alpha_why(pc_adapt_matcher(cx), s->module, &r, &alpha, why, sizeof why))
        return snprintf(err, errlen, "no rank for module '%s'%s%s", s->module, why[0] ? ": " : "", why), -1;
    if (r <= 0) return snprintf(err, errlen, "field \"r\": rank %d for module '%s' must be positive", r, s->module), -1;
    *scale = alpha / (double)r;
    pc_init kaiming = {PC_INIT_KAIMING_UNIFORM, sqrt(5.0), 0}, zeros = {PC_INIT_ZEROS, 0, 0};
    bool noop = pc_adapt_config(cx)->lycoris.init_weights == PC_LYCORIS_INIT_TRUE;
    f[0] = pc_adapt_param(cx, s, "hada_w1_a", PC_SHAPE(s->out, r), kaiming);
    f[1] = pc_adapt_param(cx, s, "hada_w1_b", PC_SHAPE(r, s->in), kaiming);
    f[2] = pc_adapt_param(cx, s, "hada_w2_a", PC_SHAPE(s->out, r), kaiming);
    f[3] = pc_adapt_param(cx, s, "hada_w2_b", PC_SHAPE(r, s->in), noop ? zeros : kaiming);
    return 1;
}

/* ΔW = ((w1_a w1_b) ⊙ (w2_a w2_b)) · scale, [out, in] */
static pc_val loha_delta(const pc_site *s, const pc_val f[4], double scale) {
    pc_graph *g = s->g;
    pc_val w1 = pc_matmul_at(g, s->loc, f[0], f[1], 0, 0), w2 = pc_matmul_at(g, s->loc, f[2], f[3], 0, 0);
    return pc_scale_at(g, s->loc, pc_mul_at(g, s->loc, w1, w2), scale, 0.0);
}

/* x ΔWᵀ without forming ΔW: a Hadamard product of two rank-r products has rank <= r², with
 * ΔW = U V, U[:, k·r+l] = w1_a[:, k] ⊙ w2_a[:, l] and V[k·r+l, :] = w1_b[k, :] ⊙ w2_b[l, :] */
static pc_val loha_apply_factored(const pc_site *s, const pc_val f[4], int64_t r, double scale) {
    pc_graph *g = s->g;
    pc_loc at = s->loc;
    const int64_t out = s->out, in = s->in;
    pc_val a1 = pc_broadcast_at(g, at, pc_reshape_at(g, at, f[0], PC_SHAPE(out, r, 1)), PC_SHAPE(out, r, r));
    pc_val a2 = pc_broadcast_at(g, at, pc_reshape_at(g, at, f[2], PC_SHAPE(out, 1, r)), PC_SHAPE(out, r, r));
    pc_val b1 = pc_broadcast_at(g, at, pc_reshape_at(g, at, f[1], PC_SHAPE(r, 1, in)), PC_SHAPE(r, r, in));
    pc_val b2 = pc_broadcast_at(g, at, pc_reshape_at(g, at, f[3], PC_SHAPE(1, r, in)), PC_SHAPE(r, r, in));
    pc_val u = pc_reshape_at(g, at, pc_mul_at(g, at, a1, a2), PC_SHAPE(out, r * r));
    pc_val v = pc_reshape_at(g, at, pc_mul_at(g, at, b1, b2), PC_SHAPE(r * r, in));
    pc_val h = pc_matmul_at(g, at, pc_matmul_at(g, at, s->x, v, 0, 1), u, 0, 1);
    return pc_scale_at(g, at, h, scale, 0.0);
}

static int loha_rewrite(pc_adapt_ctx *cx, void *state, pc_site *s, char *err, size_t errlen) {
    (void)state;
    double sc;
    pc_val f[4];
    int hit = loha_module(cx, s, &sc, f, err, errlen);
    if (hit <= 0) return hit;
    const pc_adapter_config *cfg = pc_adapt_config(cx);
    bool train = pc_adapt_get_mode(cx) == PC_ADAPT_TRAIN;
    pc_graph *g = s->g;
    /* PEFT forms ΔW every step; when r² (in + out) < in·out the rank-r² factors are cheaper */
    int64_t r = pc_val_shape(g, f[0]).dim[1];
    bool factored = r * r * (s->in + s->out) < s->in * s->out;
    bool rank_drop = train && cfg->lycoris.rank_dropout.v > 0, module_drop = train && cfg->lycoris.module_dropout.v > 0;
    if (!factored && !rank_drop && !module_drop) {
        /* ΔW is formed anyway: y = x (W + ΔW)ᵀ (+ b) is one product where x Wᵀ + x ΔWᵀ is two
         * (and one dX product in the backward instead of two); the site's x Wᵀ is left to dce.
         * In inference W + ΔW depends on weights only, so fold_weights turns it into one weight. */
        pc_val w = pc_add_at(g, s->loc, s->weight, loha_delta(s, f, sc));
        pc_val y = pc_matmul_at(g, s->loc, s->x, w, 0, 1);
        s->value = s->bias != PC_NONE ? pc_add_at(g, s->loc, y, s->bias) : y;
        return 1;
    }
    pc_val delta = factored ? loha_apply_factored(s, f, r, sc) : pc_matmul_at(g, s->loc, s->x, loha_delta(s, f, sc), 0, 1);
    if (rank_drop) {
        /* PEFT: drop = (rand(out) > p); drop /= drop.mean(); ΔW *= drop[:, None], i.e. the
         * output features of x ΔWᵀ scaled */
        pc_val m = pc_adapt_keep_mask(cx, s, PC_SHAPE(s->out), cfg->lycoris.rank_dropout.v, ".rank_dropout");
        pc_val mean = pc_mean_at(g, s->loc, m, 1, (const int64_t[]){0}, 0);
        delta = pc_mul_at(g, s->loc, delta, pc_div_at(g, s->loc, m, mean));
    }
    if (module_drop) /* PEFT: the term is added when rand(1) > p */
        delta = pc_mul_at(g, s->loc, delta, pc_adapt_keep_mask(cx, s, PC_SHAPE(1), cfg->lycoris.module_dropout.v, ".module_dropout"));
    s->value = pc_add_at(g, s->loc, s->value, delta);
    return 1;
}

/* W ± ΔW (sign -1: unmerge); the bias is unchanged */
static int loha_fold(pc_adapt_ctx *cx, const pc_site *s, double sign, pc_val *w, char *err, size_t errlen) {
    double sc;
    pc_val f[4];
    int hit = loha_module(cx, s, &sc, f, err, errlen);
    if (hit <= 0) return hit;
    pc_val dw = loha_delta(s, f, sc);
    *w = sign > 0 ? pc_add_at(s->g, s->loc, s->weight, dw) : pc_sub_at(s->g, s->loc, s->weight, dw);
    return 1;
}

static int loha_merge(pc_adapt_ctx *cx, void *state, const pc_site *s, pc_val *w, pc_val *b, char *err, size_t errlen) {
    (void)state, (void)b;
    return loha_fold(cx, s, 1.0, w, err, errlen);
}

static int loha_unmerge(pc_adapt_ctx *cx, void *state, const pc_site *s, pc_val *w, pc_val *b, char *err, size_t errlen) {
    (void)state, (void)b;
    return loha_fold(cx, s, -1.0, w, err, errlen);
}

/* w1_a and w2_a hold ΔW's output rows (ΔW's row i is (w1_a[i] w1_b) ⊙ (w2_a[i] w2_b)) */
static int loha_output_rows(const char *tensor) {
    return strcmp(tensor, "hada_w1_a") == 0 || strcmp(tensor, "hada_w2_a") == 0;
}

const pc_adapter_method pc_method_loha = {
    .name = "loha",
    .peft_type = "LOHA",
    .sites = PC_SITE_LINEAR,
    .begin = loha_begin,
    .rewrite = loha_rewrite,
    .merge_linear = loha_merge,
    .unmerge_linear = loha_unmerge,
    .output_rows = loha_output_rows,
};
