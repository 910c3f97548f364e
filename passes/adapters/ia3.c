/* (IA)³ (PEFT's IA3Config; reference/peft.md §6) on linear sites: a learned vector ia3_l scales
 * the output of a targeted module, y = (x Wᵀ + b) ⊙ l with l [out, 1] (the bias is scaled too),
 * or, for a feedforward module, its input: y = (x ⊙ l) Wᵀ + b with l [1, in].
 * Init: ones (init_ia3_weights, an exact no-op) or N(0, 1). Merging scales W's rows and b, or
 * W's columns (the bias stays); unmerging divides by l + 1e-8 as PEFT does. */
#include "passes/adapt.h"
#include "runtime/target_match.h"

#include <stdio.h>
#include <string.h>

static int ia3_begin(pc_adapt_ctx *cx, void *state, char *err, size_t errlen) {
    (void)state;
    const pc_adapter_config *cfg = pc_adapt_config(cx);
    if (cfg->target_modules.kind == PC_SPEC_NULL)
        return snprintf(err, errlen, "field \"target_modules\": null (no default for this model)"), -1;
    /* fan_in_fan_out names the checkpoint's layout of the weight (Conv1D [in, out]); families hand
     * every weight to the graph as [out, in], so l scales the same rows or columns either way
     * (PEFT's merge transposes l to reach them in [in, out]). The session sets it as PEFT does. */
    return 0;
}

/* 1 targeted (ff: feedforward), 0 not, -1 error */
static int ia3_target(pc_adapt_ctx *cx, const pc_site *s, int *ff, char *err, size_t errlen) {
    char why[512] = ""; /* the regex engine's reason, if feedforward_modules failed */
    int hit = pc_adapt_targets(cx, s->module);
    if (hit > 0) *ff = pc_target_is_feedforward_why(pc_adapt_matcher(cx), s->module, why, sizeof why);
    if (hit < 0 || (hit > 0 && *ff < 0))
        return snprintf(err, errlen, "matching module '%s' failed%s%s", s->module, why[0] ? ": " : "", why), -1;
    return hit;
}

static pc_val ia3_vector(pc_adapt_ctx *cx, const pc_site *s, int ff) {
    pc_init init = pc_adapt_config(cx)->ia3.init_ia3_weights ? (pc_init){PC_INIT_ONES, 0, 0}
                                                             : (pc_init){PC_INIT_NORMAL, 1.0, 0};
    return pc_adapt_param(cx, s, "ia3_l", ff ? PC_SHAPE(1, s->in) : PC_SHAPE(s->out, 1), init);
}

static int ia3_rewrite(pc_adapt_ctx *cx, void *state, pc_site *s, char *err, size_t errlen) {
    (void)state;
    int ff = 0, hit = ia3_target(cx, s, &ff, err, errlen);
    if (hit <= 0) return hit;
    pc_graph *g = s->g;
    pc_val l = ia3_vector(cx, s, ff);
    if (ff) {
        /* the base linear again, on the scaled input (the unscaled one is left for dce) */
        pc_val x = pc_mul_at(g, s->loc, s->x, pc_reshape_at(g, s->loc, l, PC_SHAPE(s->in)));
        pc_val y = pc_matmul_at(g, s->loc, x, s->weight, 0, 1);
        s->value = s->bias == PC_NONE ? y : pc_add_at(g, s->loc, y, s->bias);
    } else {
        s->value = pc_mul_at(g, s->loc, s->value, pc_reshape_at(g, s->loc, l, PC_SHAPE(s->out)));
    }
    return 1;
}

/* Mixed batches: each row's l (ones for the base model and for adapters that leave the module
 * alone) gathered by %adapter_ids and broadcast over the sequence. */
static int ia3_rewrite_mixed(pc_adapt_ctx *cx, void *state, pc_site *s, char *err, size_t errlen) {
    (void)state;
    pc_graph *g = s->g;
    const int n = pc_adapt_members(cx);
    pc_shape vs = pc_val_shape(g, s->value);
    if (vs.rank != 3)
        return snprintf(err, errlen, "a mixed batch needs the output of %s as [batch, seq, out]", s->module), -1;
    if (n > 64) return snprintf(err, errlen, "a mixed batch serves at most 64 adapters, not %d", n), -1;
    pc_val l[65];
    int ff = -1;
    for (int i = 0; i < n; i++) {
        int f = 0, hit = ia3_target(pc_adapt_member(cx, i), s, &f, err, errlen);
        if (hit < 0) return -1;
        l[i] = PC_NONE;
        if (!hit) continue;
        if (ff >= 0 && f != ff)
            return snprintf(err, errlen, "IA3 adapters cannot be mixed in one batch when %s is a feedforward module "
                            "in one and not in another (one scales its input, the other its output)", s->module), -1;
        ff = f;
        l[i] = ia3_vector(pc_adapt_member(cx, i), s, f);
    }
    if (ff < 0) return 0;
    int64_t dim = ff ? s->in : s->out;
    pc_val one = pc_broadcast_at(g, s->loc, pc_scalar_at(g, s->loc, 1.0f), PC_SHAPE(dim));
    for (int i = 0; i <= n; i++) l[i] = i == n || l[i] == PC_NONE ? one : pc_reshape_at(g, s->loc, l[i], PC_SHAPE(dim));
    pc_val rows = pc_reshape_at(g, s->loc, pc_adapt_rows(cx, s, l, vs.dim[0]), PC_SHAPE(vs.dim[0], 1, dim));
    if (ff) {
        pc_val y = pc_matmul_at(g, s->loc, pc_mul_at(g, s->loc, s->x, rows), s->weight, 0, 1);
        s->value = s->bias == PC_NONE ? y : pc_add_at(g, s->loc, y, s->bias);
    } else {
        s->value = pc_mul_at(g, s->loc, s->value, rows);
    }
    return 1;
}

/* W ⊙ l (merge) or W ⊘ (l + 1e-8) (unmerge, as PEFT divides) on rows or columns, the bias with
 * the rows */
static int ia3_fold(pc_adapt_ctx *cx, const pc_site *s, bool unmerge, pc_val *w, pc_val *b, char *err, size_t errlen) {
    int ff = 0, hit = ia3_target(cx, s, &ff, err, errlen);
    if (hit <= 0) return hit;
    pc_val l = ia3_vector(cx, s, ff); /* [out,1] scales rows, [1,in] columns: both broadcast */
    if (unmerge) l = pc_scale_at(s->g, s->loc, l, 1.0, 1e-8);
    pc_val (*op)(pc_graph *, pc_loc, pc_val, pc_val) = unmerge ? pc_div_at : pc_mul_at;
    *w = op(s->g, s->loc, s->weight, l);
    if (!ff && s->bias != PC_NONE) *b = op(s->g, s->loc, s->bias, pc_reshape_at(s->g, s->loc, l, PC_SHAPE(s->out)));
    return 1;
}

static int ia3_merge(pc_adapt_ctx *cx, void *state, const pc_site *s, pc_val *w, pc_val *b, char *err, size_t errlen) {
    (void)state;
    return ia3_fold(cx, s, false, w, b, err, errlen);
}

static int ia3_unmerge(pc_adapt_ctx *cx, void *state, const pc_site *s, pc_val *w, pc_val *b, char *err, size_t errlen) {
    (void)state;
    return ia3_fold(cx, s, true, w, b, err, errlen);
}

static int ia3_output_rows(const char *tensor) { return strcmp(tensor, "ia3_l") == 0; }

const pc_adapter_method pc_method_ia3 = {
    .name = "ia3",
    .peft_type = "IA3",
    .sites = PC_SITE_LINEAR,
    .begin = ia3_begin,
    .rewrite = ia3_rewrite,
    .merge_linear = ia3_merge,
    .unmerge_linear = ia3_unmerge,
    .output_rows = ia3_output_rows,
    .rewrite_mixed = ia3_rewrite_mixed,
};
