/* LoRA (PEFT's LoraConfig; reference/peft.md §2) on linear sites:
 *   y = x Wᵀ (+ b) + s · (dropout(x) Aᵀ) Bᵀ (+ s · b_B),  A [r, in], B [out, r],
 *   s = alpha / r, or alpha / sqrt(r) with rsLoRA; r and alpha per module from the patterns.
 * Merging: W' = W + s · B A (b' = b + s · b_B). Keys: "<module>.lora_A.weight", "lora_B.weight",
 * "lora_B.bias". With use_dora the callbacks hand the module's A, B and s to DoRA (dora.c). */
#include "passes/adapt.h"
#include "passes/adapters/dora.h"
#include "runtime/target_match.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int lora_begin(pc_adapt_ctx *cx, void *state, char *err, size_t errlen) {
    (void)state;
    const pc_adapter_config *cfg = pc_adapt_config(cx);
    if (cfg->lora.use_dora && pc_dora_begin(cx, err, errlen)) return -1;
    if (cfg->lora.bias != PC_BIAS_NONE)
        return snprintf(err, errlen, "field \"bias\": \"%s\" is not implemented by peftc yet (use \"none\")",
                        cfg->lora.bias == PC_BIAS_ALL ? "all" : "lora_only"), -1;
    if (cfg->target_modules.kind == PC_SPEC_NULL)
        return snprintf(err, errlen, "field \"target_modules\": null (no default for this model)"), -1;
    return 0;
}

/* r and the scale of a targeted module */
static int rank_scale(pc_adapt_ctx *cx, const pc_site *s, int *r, double *scale, char *err, size_t errlen) {
    const pc_adapter_config *cfg = pc_adapt_config(cx);
    double alpha;
    /* the context's matcher holds rank_pattern / alpha_pattern */
    char why[512] = ""; /* the regex engine's reason, if it failed */
    if (pc_target_rank_alpha_why(pc_adapt_matcher(cx), s->module, r, &alpha, why, sizeof why))
        return snprintf(err, errlen, "no rank for module '%s'%s%s", s->module, why[0] ? ": " : "", why), -1;
    if (*r <= 0) return snprintf(err, errlen, "rank %d for module '%s' must be positive", *r, s->module), -1;
    *scale = cfg->lora.use_rslora ? alpha / sqrt((double)*r) : alpha / (double)*r;
    return 0;
}

/* the adapter's params of a module: A, B (and b_B) */
static void lora_params(pc_adapt_ctx *cx, const pc_site *s, int r, pc_val *A, pc_val *B, pc_val *bB) {
    const pc_adapter_config *cfg = pc_adapt_config(cx);
    pc_init ia = {PC_INIT_KAIMING_UNIFORM, sqrt(5.0), 0}, ib = {PC_INIT_ZEROS, 0, 0};
    if (cfg->lora.init_lora_weights == PC_LORA_INIT_GAUSSIAN) ia = (pc_init){PC_INIT_NORMAL, 1.0 / r, 0};
    if (cfg->lora.init_lora_weights == PC_LORA_INIT_FALSE) ib = (pc_init){PC_INIT_KAIMING_UNIFORM, sqrt(5.0), 0};
    *A = pc_adapt_param(cx, s, "lora_A.weight", PC_SHAPE(r, s->in), ia);
    *B = pc_adapt_param(cx, s, "lora_B.weight", PC_SHAPE(s->out, r), ib);
    *bB = cfg->lora.lora_bias ? pc_adapt_param(cx, s, "lora_B.bias", PC_SHAPE(s->out), (pc_init){PC_INIT_ZEROS, 0, 0})
                              : PC_NONE;
}

/* the module's adapter, when targeted: rank, scale and params. 1 targeted, 0 not, -1 error */
static int lora_module(pc_adapt_ctx *cx, const pc_site *s, double *sc, pc_val *A, pc_val *B, pc_val *bB, char *err,
                       size_t errlen) {
    int r, hit = pc_adapt_targets(cx, s->module);
    if (hit <= 0) return hit < 0 ? (snprintf(err, errlen, "matching module '%s' failed", s->module), -1) : 0;
    if (rank_scale(cx, s, &r, sc, err, errlen)) return -1;
    lora_params(cx, s, r, A, B, bB);
    return 1;
}

static int lora_rewrite(pc_adapt_ctx *cx, void *state, pc_site *s, char *err, size_t errlen) {
    (void)state;
    double sc;
    pc_val A, B, bB;
    int hit = lora_module(cx, s, &sc, &A, &B, &bB, err, errlen);
    if (hit <= 0) return hit;
    if (pc_adapt_config(cx)->lora.use_dora) return pc_dora_rewrite(cx, s, sc, A, B);
    pc_graph *g = s->g;
    pc_val h = pc_adapt_dropout(cx, s, s->x, pc_adapt_config(cx)->lora.lora_dropout.v);
    pc_val up = pc_matmul_at(g, s->loc, pc_matmul_at(g, s->loc, h, A, 0, 1), B, 0, 1);
    if (bB != PC_NONE) up = pc_add_at(g, s->loc, up, bB);
    s->value = pc_add_at(g, s->loc, s->value, pc_scale_at(g, s->loc, up, sc, 0.0));
    return 1;
}

/* Mixed batches: each adapter's A [r_i, in] and B [out, r_i], zero-padded to the largest rank
 * (zeros add nothing), stacked with an all-zero entry for the base model, and each row's pair
 * (and scale s_i) gathered by %adapter_ids: s_row · (x A_rowᵀ) B_rowᵀ as two batched GEMMs, one
 * adapter's FLOPs. */
static int lora_rewrite_mixed(pc_adapt_ctx *cx, void *state, pc_site *s, char *err, size_t errlen) {
    (void)state;
    pc_graph *g = s->g;
    const int n = pc_adapt_members(cx);
    pc_shape xs = pc_val_shape(g, s->x);
    if (xs.rank != 3)
        return snprintf(err, errlen, "a mixed batch needs the input of %s as [batch, seq, in]", s->module), -1;
    pc_val A[65], B[65];
    double sc[65];
    bool hit[65];
    int64_t rmax = 0;
    if (n > 64) return snprintf(err, errlen, "a mixed batch serves at most 64 adapters, not %d", n), -1;
    for (int i = 0; i < n; i++) {
        pc_adapt_ctx *m = pc_adapt_member(cx, i);
        const pc_adapter_config *cfg = pc_adapt_config(m);
        if (cfg->lora.use_dora)
            return snprintf(err, errlen, "LoRA with use_dora (DoRA) cannot be mixed in one batch: its weight norm "
                            "belongs to one adapter; select one with --active"), -1;
        if (cfg->lora.lora_bias)
            return snprintf(err, errlen, "LoRA with lora_bias cannot be mixed in one batch yet; select one with "
                            "--active"), -1;
        pc_val bB;
        int h = lora_module(m, s, &sc[i], &A[i], &B[i], &bB, err, errlen);
        if (h < 0) return -1;
        if (!(hit[i] = h)) continue;
        if (pc_val_shape(g, A[i]).dim[0] > rmax) rmax = pc_val_shape(g, A[i]).dim[0];
    }
    if (rmax == 0) return 0;
    pc_val zero = pc_scalar_at(g, s->loc, 0.0f);
    for (int i = 0; i <= n; i++) {
        if (i == n || !hit[i]) { /* the base model, or an adapter that leaves the module alone */
            A[i] = pc_broadcast_at(g, s->loc, zero, PC_SHAPE(rmax, s->in));
            B[i] = pc_broadcast_at(g, s->loc, zero, PC_SHAPE(s->out, rmax));
            continue;
        }
        int64_t r = pc_val_shape(g, A[i]).dim[0];
        if (r < rmax) {
            A[i] = pc_concat_at(g, s->loc, 2, (pc_val[]){A[i], pc_broadcast_at(g, s->loc, zero, PC_SHAPE(rmax - r, s->in))}, 0);
            B[i] = pc_concat_at(g, s->loc, 2, (pc_val[]){B[i], pc_broadcast_at(g, s->loc, zero, PC_SHAPE(s->out, rmax - r))}, 1);
        }
    }
    /* each row's scale applied to its update as the single-adapter graph applies it, so a row
     * rounds as it does alone (scaling B instead moves logits by ~1e-5 relative) */
    pc_val scale[65];
    for (int i = 0; i <= n; i++) {
        float v = i < n && hit[i] ? (float)sc[i] : 0.0f;
        scale[i] = pc_const_at(g, s->loc, PC_F32, PC_SHAPE(1), &v);
    }
    const int64_t rows = xs.dim[0];
    pc_val a = pc_adapt_rows(cx, s, A, rows), b = pc_adapt_rows(cx, s, B, rows);
    pc_val up = pc_matmul_at(g, s->loc, pc_matmul_at(g, s->loc, s->x, a, 0, 1), b, 0, 1);
    up = pc_mul_at(g, s->loc, up, pc_reshape_at(g, s->loc, pc_adapt_rows(cx, s, scale, rows), PC_SHAPE(rows, 1, 1)));
    s->value = pc_add_at(g, s->loc, s->value, up);
    return 1;
}

/* W ± s·B A, b ± s·b_B (sign -1: unmerge) */
static int lora_fold(pc_adapt_ctx *cx, const pc_site *s, double sign, pc_val *w, pc_val *b, char *err, size_t errlen) {
    double sc;
    pc_val A, B, bB;
    int hit = lora_module(cx, s, &sc, &A, &B, &bB, err, errlen);
    if (hit <= 0) return hit;
    if (pc_adapt_config(cx)->lora.use_dora)
        return sign > 0 ? pc_dora_merge(cx, s, sc, A, B, w) : pc_dora_unmerge(err, errlen);
    if (bB != PC_NONE && s->bias == PC_NONE)
        return snprintf(err, errlen, "lora_bias=true: the merged bias s*b_B of %s has nowhere to go in a bias-free "
                        "base; run the adapter unmerged", s->module), -1;
    pc_graph *g = s->g;
    *w = pc_add_at(g, s->loc, s->weight, pc_scale_at(g, s->loc, pc_matmul_at(g, s->loc, B, A, 0, 0), sign * sc, 0.0));
    if (bB != PC_NONE) *b = pc_add_at(g, s->loc, s->bias, pc_scale_at(g, s->loc, bB, sign * sc, 0.0));
    return 1;
}

static int lora_merge(pc_adapt_ctx *cx, void *state, const pc_site *s, pc_val *w, pc_val *b, char *err, size_t errlen) {
    (void)state;
    return lora_fold(cx, s, 1.0, w, b, err, errlen);
}

static int lora_unmerge(pc_adapt_ctx *cx, void *state, const pc_site *s, pc_val *w, pc_val *b, char *err, size_t errlen) {
    (void)state;
    return lora_fold(cx, s, -1.0, w, b, err, errlen);
}

static int lora_output_rows(const char *tensor) {
    return strcmp(tensor, "lora_B.weight") == 0 || strcmp(tensor, "lora_B.bias") == 0 || pc_dora_output_rows(tensor);
}

/* DoRA's magnitude: the row norms of the module's W + s·B A */
static int lora_init(pc_adapt_ctx *cx, void *state, const char *key, float *data, pc_shape shape, pc_base_lookup base,
                     void *base_ctx, char *err, size_t errlen) {
    (void)state;
    char module[512];
    int r;
    double sc;
    if (!pc_adapt_config(cx)->lora.use_dora || !pc_dora_magnitude_module(key, module, sizeof module)) return 0;
    if (rank_scale(cx, &(pc_site){.module = module}, &r, &sc, err, errlen)) return -1;
    return pc_dora_init_magnitude(module, sc, data, shape, base, base_ctx, err, errlen);
}

const pc_adapter_method pc_method_lora = {
    .name = "lora",
    .peft_type = "LORA",
    .sites = PC_SITE_LINEAR,
    .begin = lora_begin,
    .rewrite = lora_rewrite,
    .merge_linear = lora_merge,
    .unmerge_linear = lora_unmerge,
    .output_rows = lora_output_rows,
    .init_from_base = lora_init,
    .rewrite_mixed = lora_rewrite_mixed,
};
