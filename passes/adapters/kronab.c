/* KronA^B and KronA^B_res (Edalati et al., "KronA: Parameter Efficient Tuning with Kronecker
 * Adapter", 2022, §3: KronA^B is the Kronecker adapter placed in parallel to the FFN block
 * instead of to a weight; KronA^B_res adds a learnable scaled residual connection over the
 * adapter) as a peftc method on FFN sites, peft_type "KRONAB" (no PEFT type exists). With h the
 * FFN block's input (after the post-attention norm) and FFN(h) its output [..., D]:
 *
 *   KronA^B:      y = FFN(h) + s · h (A ⊗ B)ᵀ
 *   KronA^B_res:  y = FFN(h) + s · h (A ⊗ B)ᵀ + s_res · h        (s_res a learnable scalar)
 *
 * A [a1, a2] and B [b1, b2] with a1·b1 = dim_out and a2·b2 = dim_in of the block (both the model
 * dim for a Llama's mlp), (a1, b1) = factorization(dim_out, f) and (a2, b2) = factorization(
 * dim_in, f), PEFT LoKr's rule (f = decompose_factor; A takes the smaller factors, as LoKr's w1).
 * (A ⊗ B)[i·b1 + j, k·b2 + l] = A[i, k] B[j, l]; the product is computed as two matmuls on h
 * viewed as [N, a2, b2] (pc_kron_linear_at), never materialised.
 * The formulas are the method as the brief and the paper's abstract/§3 describe it; the paper's
 * own equations could not be consulted from this machine (tests/golden/kronab.md says what is
 * and is not verified, and the initial value of s_res is a config field for that reason).
 *
 * Params per targeted FFN module (PEFT's layout, keys made by pc_adapt_param):
 *   base_model.model.model.layers.{i}.mlp.kronab_A          [a1, a2]   init 0
 *   base_model.model.model.layers.{i}.mlp.kronab_B          [b1, b2]   kaiming_uniform(a=√5)
 *   base_model.model.model.layers.{i}.mlp.kronab_res_scale  [1]        res only, init res_scale_init
 * A = 0 makes the branch a no-op at init (LoKr's init_weights=true: w1 = 0); with the default
 * res_scale_init 0 the res variant starts as the base model too.
 * Config (adapter_config.json, peft_type "KRONAB"): "decompose_factor" (-1 or a positive
 * integer, default -1), "scale" (s, default 1), "residual" (bool, default false: KronA^B_res
 * when true), "res_scale_init" (number, default 0, only with "residual": true), and the
 * targeting fields target_modules / exclude_modules / layers_to_transform as for LoRA (null
 * target_modules: every FFN site; ["mlp"] matches "model.layers.{i}.mlp"). LoRA/LoKr fields (r,
 * alpha, dropouts, init_weights, ...) are refused, naming the field.
 * Not mergeable: the branch runs in parallel to a nonlinear block. A model whose builder emits
 * no FFN site is refused ("KronAB needs an FFN hook point"). */
#include "passes/kron.h"
#include "ir/ir.h"
#include "passes/adapt.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    int64_t factor;  /* decompose_factor */
    double scale;    /* s */
    bool res;        /* KronA^B_res */
    double res_init; /* s_res at init */
    bool all;        /* target_modules null: every FFN site */
    int nffn;        /* FFN sites the builder emitted */
} kronab_state;

/* the keys a KRONAB config may hold: PeftConfig's, the targeting ones, and its own */
static const char *const known_fields[] = {
    "peft_type", "task_type", "base_model_name_or_path", "revision", "peft_version", "inference_mode",
    "auto_mapping", "modules_to_save", "target_modules", "exclude_modules", "layers_to_transform",
    "layers_pattern", "decompose_factor", "scale", "residual", "res_scale_init",
};

static int check_fields(const json_t *root, char *err, size_t errlen) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)root, key, v) {
        bool known = false;
        for (size_t i = 0; i < sizeof known_fields / sizeof *known_fields && !known; i++)
            known = strcmp(key, known_fields[i]) == 0;
        if (known) continue;
        if (!strcmp(key, "r") || !strcmp(key, "alpha") || !strcmp(key, "lora_alpha") || !strcmp(key, "decompose_both"))
            return snprintf(err, errlen, "field \"%s\": not a KRONAB field (the factor shapes come from "
                            "\"decompose_factor\", the branch's scale is \"scale\")", key), -1;
        return snprintf(err, errlen, "field \"%s\": not a KRONAB field (it has decompose_factor, scale, residual, "
                        "res_scale_init and the targeting fields)", key), -1;
    }
    return 0;
}

static int kronab_begin(pc_adapt_ctx *cx, void *state, char *err, size_t errlen) {
    kronab_state *st = state;
    const pc_adapter_config *cfg = pc_adapt_config(cx);
    double f, scale, res_init;
    json_t *root = cfg->custom_json ? json_loads(cfg->custom_json, 0, NULL) : NULL;
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return snprintf(err, errlen, "the config's own fields could not be read"), -1;
    }
    int rc = check_fields(root, err, errlen);
    const json_t *res = json_object_get(root, "residual");
    if (!rc && res && !json_is_null(res) && !json_is_boolean(res)) {
        snprintf(err, errlen, "field \"residual\": must be true (KronA^B_res) or false (KronA^B)");
        rc = -1;
    }
    st->res = json_is_true(res);
    json_decref(root);
    if (rc) return -1;
    st->all = cfg->target_modules.kind == PC_SPEC_NULL;
    if (st->all && cfg->layers_to_transform.kind != PC_LAYERS_NULL)
        return snprintf(err, errlen, "field \"layers_to_transform\": needs target_modules (e.g. [\"mlp\"])"), -1;
    if (st->all && cfg->exclude_modules.kind != PC_SPEC_NULL)
        return snprintf(err, errlen, "field \"exclude_modules\": needs target_modules (e.g. [\"mlp\"])"), -1;
    if (pc_adapt_config_number(cx, "decompose_factor", -1, &f) < 0 || f != floor(f) || (f != -1 && f < 1) || f > 1e9)
        return snprintf(err, errlen, "field \"decompose_factor\": must be -1 (factors near the square root) or a "
                        "positive integer"), -1;
    if (pc_adapt_config_number(cx, "scale", 1, &scale) < 0 || !isfinite(scale))
        return snprintf(err, errlen, "field \"scale\": must be a finite number"), -1;
    int has = pc_adapt_config_number(cx, "res_scale_init", 0, &res_init);
    if (has < 0 || !isfinite(res_init))
        return snprintf(err, errlen, "field \"res_scale_init\": must be a finite number"), -1;
    if (has == 0 && !st->res)
        return snprintf(err, errlen, "field \"res_scale_init\": only with \"residual\": true (KronA^B_res)"), -1;
    st->factor = (int64_t)f, st->scale = scale, st->res_init = res_init;
    return 0;
}

static int kronab_rewrite(pc_adapt_ctx *cx, void *state, pc_site *s, char *err, size_t errlen) {
    kronab_state *st = state;
    if (s->kind != PC_SITE_FFN) return 0;
    st->nffn++;
    int hit = st->all ? 1 : pc_adapt_targets(cx, s->module);
    if (hit <= 0) return hit < 0 ? (snprintf(err, errlen, "matching module '%s' failed", s->module), -1) : 0;
    pc_graph *g = s->g;
    if (s->x == PC_NONE) return snprintf(err, errlen, "%s: the FFN site carries no input", s->module), -1;
    pc_shape xs = pc_val_shape(g, s->x), ys = pc_val_shape(g, s->value);
    if (xs.rank < 1 || ys.rank != xs.rank)
        return snprintf(err, errlen, "%s: the FFN's input and output ranks differ", s->module), -1;
    int64_t din = xs.dim[xs.rank - 1], dout = ys.dim[ys.rank - 1], a1, b1, a2, b2;
    if (din < 1 || dout < 1) return snprintf(err, errlen, "%s: empty FFN features", s->module), -1;
    pc_kron_factorization(dout, st->factor, &a1, &b1);
    pc_kron_factorization(din, st->factor, &a2, &b2);
    pc_val a = pc_adapt_param(cx, s, "kronab_A", PC_SHAPE(a1, a2), (pc_init){PC_INIT_ZEROS, 0, 0});
    pc_val b = pc_adapt_param(cx, s, "kronab_B", PC_SHAPE(b1, b2), (pc_init){PC_INIT_KAIMING_UNIFORM, sqrt(5.0), 0});
    pc_val y = pc_scale_at(g, s->loc, pc_kron_linear_at(g, s->loc, s->x, a, b), st->scale, 0.0);
    pc_val out = pc_add_at(g, s->loc, s->value, y);
    if (st->res) {
        if (din != dout)
            return snprintf(err, errlen, "%s: the residual of KronA^B_res needs the FFN's input and output widths "
                            "equal (%lld vs %lld)", s->module, (long long)din, (long long)dout), -1;
        pc_init init = st->res_init == 0   ? (pc_init){PC_INIT_ZEROS, 0, 0}
                       : st->res_init == 1 ? (pc_init){PC_INIT_ONES, 0, 0}
                                           : (pc_init){PC_INIT_UNIFORM, st->res_init, st->res_init};
        pc_val r = pc_adapt_param(cx, s, "kronab_res_scale", PC_SHAPE(1), init);
        out = pc_add_at(g, s->loc, out, pc_mul_at(g, s->loc, s->x, r));
    }
    s->value = out;
    return 1;
}

static int kronab_finish(pc_adapt_ctx *cx, void *state, int nrewritten, char *err, size_t errlen) {
    (void)cx;
    const kronab_state *st = state;
    if (st->nffn == 0)
        return snprintf(err, errlen, "KronAB needs an FFN hook point: this model's builder emits no FFN site "
                        "(PC_SITE_FFN: the FFN block's output with its input, \"model.layers.{i}.mlp\" for a Llama)"), -1;
    if (nrewritten == 0)
        return snprintf(err, errlen, "field \"target_modules\": matched none of the model's %d FFN modules (they are "
                        "named like \"model.layers.0.mlp\": use [\"mlp\"])", st->nffn), -1;
    return 0;
}

const pc_adapter_method pc_method_kronab = {
    .name = "kronab",
    .peft_type = "KRONAB",
    .sites = PC_SITE_FFN,
    .state_size = sizeof(kronab_state),
    .begin = kronab_begin,
    .rewrite = kronab_rewrite,
    .finish = kronab_finish,
    .not_mergeable = "the KronA^B branch runs in parallel to the FFN block, a nonlinear function of its input, so "
                     "no weight of the model can absorb it (run it unmerged: peftc eval/generate without --merge)",
};
