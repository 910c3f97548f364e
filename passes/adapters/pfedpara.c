/* pFedPara (FedPara's personalized form, Hyeon-Woo et al., ICLR 2022, §3.3) as a peftc method on
 * linear sites, peft_type "PFEDPARA" (not a PEFT type: PEFT drops unknown LoHa fields, so the
 * option cannot ride in a LOHA config and still be saved; it is its own method here). With
 * LoHa's factors and key names:
 *   W1 = w1_a w1_b   (global: a federated round sends and averages these)
 *   W2 = w2_a w2_b   (local: they stay on the client)
 *   ΔW = (W1 ⊙ (W2 + 1)) · alpha / r    [out, in];   y = x Wᵀ (+ b) + x ΔWᵀ
 * FedPara writes the layer weight itself as W1 ⊙ (W2 + 1) = W1 ⊙ W2 + W1; on a frozen base the
 * adapter's delta takes that form. w1_a, w2_a [out, r]; w1_b, w2_b [r, in]; keys
 * "<module>.hada_w1_a" ... as LoHa. Init: w1_b = 0 (so ΔW = 0 and the run starts at the base
 * model; w1_b still gets a gradient because W2 + 1 is not 0), w1_a, w2_a, w2_b
 * kaiming_uniform(a=√5) as LoHa's.
 * Config: "r" (default 8), "alpha" (default 8), and the split, required so that the saved
 * adapter_config.json records it: "global_factors": ["hada_w1_a", "hada_w1_b"] and
 * "local_factors": ["hada_w2_a", "hada_w2_b"] (exactly these; peftc trains all four today).
 * Targeting fields as for LoRA; rank_pattern / alpha_pattern, dropouts and init_weights are not
 * implemented (refused). Merging: W ± ΔW. */
#include "passes/adapt.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    int r;
    double scale;
} pfp_state;

/* the config field `name` must be exactly the list a, b */
static int check_split(const json_t *root, const char *name, const char *a, const char *b, char *err, size_t errlen) {
    const json_t *v = json_object_get(root, name);
    if (!v) return snprintf(err, errlen, "field \"%s\": required: [\"%s\", \"%s\"] (pFedPara records which "
                            "factors are global and which local)", name, a, b), -1;
    if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_string(json_array_get(v, 0)) ||
        !json_is_string(json_array_get(v, 1)) || strcmp(json_string_value(json_array_get(v, 0)), a) ||
        strcmp(json_string_value(json_array_get(v, 1)), b))
        return snprintf(err, errlen, "field \"%s\": must be [\"%s\", \"%s\"] (pFedPara: W1 = w1_a w1_b is global, "
                        "W2 = w2_a w2_b local)", name, a, b), -1;
    return 0;
}

static int pfp_begin(pc_adapt_ctx *cx, void *state, char *err, size_t errlen) {
    pfp_state *st = state;
    const pc_adapter_config *cfg = pc_adapt_config(cx);
    double r, alpha, unused;
    if (cfg->target_modules.kind == PC_SPEC_NULL)
        return snprintf(err, errlen, "field \"target_modules\": null (PFEDPARA has no default; list the modules)"), -1;
    if (pc_adapt_config_number(cx, "r", 8, &r) < 0 || r < 1 || r != floor(r) || r > 1e6)
        return snprintf(err, errlen, "field \"r\": must be a positive integer"), -1;
    if (pc_adapt_config_number(cx, "alpha", 8, &alpha) < 0 || !isfinite(alpha))
        return snprintf(err, errlen, "field \"alpha\": must be a finite number"), -1;
    static const char *const refused[] = {"rank_pattern", "alpha_pattern", "rank_dropout", "module_dropout",
                                          "init_weights", "use_effective_conv2d"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
        if (pc_adapt_config_number(cx, refused[i], 0, &unused) != 1)
            return snprintf(err, errlen, "field \"%s\": not implemented by peftc for PFEDPARA yet (remove it)",
                            refused[i]), -1;
    json_t *root = cfg->custom_json ? json_loads(cfg->custom_json, 0, NULL) : NULL;
    if (!root) return snprintf(err, errlen, "the config's own fields could not be read"), -1;
    int rc = check_split(root, "global_factors", "hada_w1_a", "hada_w1_b", err, errlen);
    if (!rc) rc = check_split(root, "local_factors", "hada_w2_a", "hada_w2_b", err, errlen);
    json_decref(root);
    st->r = (int)r, st->scale = alpha / r;
    return rc;
}

/* the module's factors when it is targeted: 1, 0 not targeted, -1 error */
static int pfp_module(pc_adapt_ctx *cx, const pfp_state *st, const pc_site *s, pc_val f[4], char *err, size_t errlen) {
    int hit = pc_adapt_targets(cx, s->module);
    if (hit <= 0) return hit < 0 ? (snprintf(err, errlen, "matching module '%s' failed", s->module), -1) : 0;
    pc_init kaiming = {PC_INIT_KAIMING_UNIFORM, sqrt(5.0), 0}, zeros = {PC_INIT_ZEROS, 0, 0};
    f[0] = pc_adapt_param(cx, s, "hada_w1_a", PC_SHAPE(s->out, st->r), kaiming);
    f[1] = pc_adapt_param(cx, s, "hada_w1_b", PC_SHAPE(st->r, s->in), zeros);
    f[2] = pc_adapt_param(cx, s, "hada_w2_a", PC_SHAPE(s->out, st->r), kaiming);
    f[3] = pc_adapt_param(cx, s, "hada_w2_b", PC_SHAPE(st->r, s->in), kaiming);
    return 1;
}

/* ΔW = (W1 ⊙ (W2 + 1)) · scale */
static pc_val pfp_delta(const pc_site *s, const pc_val f[4], double scale) {
    pc_graph *g = s->g;
    pc_val w1 = pc_matmul_at(g, s->loc, f[0], f[1], 0, 0), w2 = pc_matmul_at(g, s->loc, f[2], f[3], 0, 0);
    pc_val h = pc_mul_at(g, s->loc, w1, pc_scale_at(g, s->loc, w2, 1.0, 1.0));
    return pc_scale_at(g, s->loc, h, scale, 0.0);
}

static int pfp_rewrite(pc_adapt_ctx *cx, void *state, pc_site *s, char *err, size_t errlen) {
    const pfp_state *st = state;
    pc_val f[4];
    int hit = pfp_module(cx, st, s, f, err, errlen);
    if (hit <= 0) return hit;
    pc_val delta = pc_matmul_at(s->g, s->loc, s->x, pfp_delta(s, f, st->scale), 0, 1);
    s->value = pc_add_at(s->g, s->loc, s->value, delta);
    return 1;
}

static int pfp_fold(pc_adapt_ctx *cx, const pfp_state *st, const pc_site *s, bool unmerge, pc_val *w, char *err,
                    size_t errlen) {
    pc_val f[4];
    int hit = pfp_module(cx, st, s, f, err, errlen);
    if (hit <= 0) return hit;
    pc_val dw = pfp_delta(s, f, st->scale);
    *w = unmerge ? pc_sub_at(s->g, s->loc, s->weight, dw) : pc_add_at(s->g, s->loc, s->weight, dw);
    return 1;
}

static int pfp_merge(pc_adapt_ctx *cx, void *state, const pc_site *s, pc_val *w, pc_val *b, char *err, size_t errlen) {
    (void)b;
    return pfp_fold(cx, state, s, false, w, err, errlen);
}

static int pfp_unmerge(pc_adapt_ctx *cx, void *state, const pc_site *s, pc_val *w, pc_val *b, char *err, size_t errlen) {
    (void)b;
    return pfp_fold(cx, state, s, true, w, err, errlen);
}

static int pfp_output_rows(const char *tensor) {
    return strcmp(tensor, "hada_w1_a") == 0 || strcmp(tensor, "hada_w2_a") == 0;
}

const pc_adapter_method pc_method_pfedpara = {
    .name = "pfedpara",
    .peft_type = "PFEDPARA",
    .sites = PC_SITE_LINEAR,
    .state_size = sizeof(pfp_state),
    .begin = pfp_begin,
    .rewrite = pfp_rewrite,
    .merge_linear = pfp_merge,
    .unmerge_linear = pfp_unmerge,
    .output_rows = pfp_output_rows,
};
