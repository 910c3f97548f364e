/* DoRA (see dora.h): PEFT's DoraLinearVariant on linear sites.
 *
 *   forward   y = x Wᵀ + b + (f - 1) ⊙ x_d Wᵀ + (f ⊙ x_d Aᵀ Bᵀ) · s,   f = m / stop_gradient(‖W + s·B A‖_row)
 *             which is f ⊙ (x Wᵀ + s · x Aᵀ Bᵀ) + b without dropout: PEFT's order of operations,
 *             so the numbers match it; the norm carries no gradient (DoRA paper §4.3, PEFT's
 *             .detach()), so m and B, A get PEFT's gradients. Without dropout f moves onto B:
 *             y = f ⊙ x Wᵀ + x Aᵀ (s·f ⊙ B)ᵀ + b (s·f ⊙ B folded once in inference).
 *   merge     W' = (m / ‖W + ΔW‖_row) ⊙ (W + ΔW), b unchanged.
 *   unmerge   none from a merged checkpoint: W' keeps only the direction of each row of W + ΔW
 *             (‖W'_row‖ = |m|), so the row norms of W + ΔW, and with them W, are gone. PEFT
 *             unmerges only in memory, with the norm it cached while merging.
 *   init      m = ‖W + s·B A‖_row (= ‖W‖_row when B = 0), computed from the frozen W. */
#include "passes/adapters/dora.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MAGNITUDE "lora_magnitude_vector"

int pc_dora_begin(pc_adapt_ctx *cx, char *err, size_t errlen) {
    if (pc_adapt_config(cx)->lora.lora_bias)
        return snprintf(err, errlen, "field \"lora_bias\": true is not supported with \"use_dora\": true (PEFT refuses it too)"), -1;
    return 0;
}

static pc_val magnitude(pc_adapt_ctx *cx, const pc_site *s) {
    /* the declared init is a placeholder: the store overwrites it with the row norms of the
     * base (init_from_base) whenever the adapter file does not hold the magnitude */
    return pc_adapt_param(cx, s, MAGNITUDE, PC_SHAPE(s->out), (pc_init){PC_INIT_ONES, 0, 0});
}

/* ‖rows of W + s·B A‖ [out] (keepdim: [out, 1]), and W + s·B A in *sum when asked */
static pc_val row_norms(const pc_site *s, double scale, pc_val A, pc_val B, int keepdim, pc_val *sum) {
    pc_graph *g = s->g;
    pc_val ba = pc_matmul_at(g, s->loc, B, A, 0, 0);
    pc_val w = pc_add_at(g, s->loc, s->weight, pc_scale_at(g, s->loc, ba, scale, 0.0));
    if (sum) *sum = w;
    pc_val sq = pc_sum_at(g, s->loc, pc_square_at(g, s->loc, w), 1, (const int64_t[]){1}, keepdim);
    return pc_sqrt_at(g, s->loc, sq);
}

int pc_dora_rewrite(pc_adapt_ctx *cx, pc_site *s, double scale, pc_val A, pc_val B) {
    pc_graph *g = s->g;
    pc_loc at = s->loc;
    /* one statement per node: the graph's order does not depend on argument evaluation */
    pc_val m = magnitude(cx, s);
    pc_val norm = pc_stop_gradient_at(g, at, row_norms(s, scale, A, B, 0, NULL));
    pc_val f = pc_div_at(g, at, m, norm);
    /* PEFT: with dropout active the base product is recomputed on the dropped input; otherwise
     * it is the layer's result less its bias */
    pc_val xd = pc_adapt_dropout(cx, s, s->x, pc_adapt_config(cx)->lora.lora_dropout.v);
    if (xd == s->x) {
        /* without dropout: y = f ⊙ (x Wᵀ) + (x Aᵀ)(s · f ⊙ B)ᵀ + b, the same sum with f moved
         * onto B, so what runs per token is LoRA's two products plus one scaling of x Wᵀ by f
         * (LoRA scales its update by s), and the backward reduces one [.., out] product for
         * f's gradient instead of two. In inference s · f ⊙ B depends on weights only
         * (fold_weights computes it once) */
        pc_val fb = pc_scale_at(g, at, pc_mul_at(g, at, pc_reshape_at(g, at, f, PC_SHAPE(s->out, 1)), B), scale, 0.0);
        pc_val xw = s->bias != PC_NONE ? pc_sub_at(g, at, s->value, s->bias) : s->value;
        pc_val scaled = pc_mul_at(g, at, xw, f);
        pc_val up = pc_matmul_at(g, at, pc_matmul_at(g, at, xd, A, 0, 1), fb, 0, 1);
        pc_val y = pc_add_at(g, at, scaled, up);
        s->value = s->bias != PC_NONE ? pc_add_at(g, at, y, s->bias) : y;
        return pc_graph_error(g) ? -1 : 1;
    }
    pc_val base = xd != s->x ? pc_matmul_at(g, at, xd, s->weight, 0, 1)
                  : s->bias != PC_NONE ? pc_sub_at(g, at, s->value, s->bias) : s->value;
    pc_val down = pc_matmul_at(g, at, xd, A, 0, 1);
    pc_val lora = pc_matmul_at(g, at, down, B, 0, 1);
    pc_val fm1 = pc_scale_at(g, at, f, 1.0, -1.0);
    pc_val t1 = pc_mul_at(g, at, fm1, base);
    pc_val t2 = pc_scale_at(g, at, pc_mul_at(g, at, f, lora), scale, 0.0);
    s->value = pc_add_at(g, at, s->value, pc_add_at(g, at, t1, t2));
    return pc_graph_error(g) ? -1 : 1;
}

int pc_dora_merge(pc_adapt_ctx *cx, const pc_site *s, double scale, pc_val A, pc_val B, pc_val *weight) {
    pc_graph *g = s->g;
    pc_val sum, m = pc_reshape_at(g, s->loc, magnitude(cx, s), PC_SHAPE(s->out, 1));
    pc_val n = row_norms(s, scale, A, B, 1, &sum);
    pc_val f = pc_div_at(g, s->loc, m, n);
    *weight = pc_mul_at(g, s->loc, f, sum);
    return pc_graph_error(g) ? -1 : 1;
}

int pc_dora_unmerge(char *err, size_t errlen) {
    return snprintf(err, errlen, "DoRA cannot be unmerged from merged weights: W' = (m / ||W + dW||) * (W + dW) "
                    "keeps only the direction of each row of W + dW, so its row norms (and W) are lost; PEFT "
                    "unmerges only in memory, with the norm it cached while merging. Keep the base checkpoint instead"), -1;
}

int pc_dora_magnitude_module(const char *key, char *module, size_t len) {
    static const char pre[] = "base_model.model.", suf[] = "." MAGNITUDE;
    size_t kl = strlen(key), pl = sizeof pre - 1, sl = sizeof suf - 1;
    if (kl <= pl + sl || strncmp(key, pre, pl) || strcmp(key + kl - sl, suf)) return 0;
    int n = snprintf(module, len, "%.*s", (int)(kl - pl - sl), key + pl);
    return n > 0 && (size_t)n < len;
}

int pc_dora_init_magnitude(const char *module, double scale, float *m, pc_shape shape, pc_base_lookup base,
                           void *base_ctx, char *err, size_t errlen) {
    char key[600];
    pc_shape ws, as, bs;
    snprintf(key, sizeof key, "%s.weight", module);
    const float *w = base(base_ctx, key, &ws);
    if (!w || ws.rank != 2 || shape.rank != 1 || shape.dim[0] != ws.dim[0])
        return snprintf(err, errlen, "%s." MAGNITUDE ": the model has no weight '%s' with %lld rows to take the "
                        "magnitude from", module, key, shape.rank == 1 ? (long long)shape.dim[0] : -1LL), -1;
    int64_t out = ws.dim[0], in = ws.dim[1];
    snprintf(key, sizeof key, "base_model.model.%s.lora_A.weight", module);
    const float *a = base(base_ctx, key, &as);
    snprintf(key, sizeof key, "base_model.model.%s.lora_B.weight", module);
    const float *b = base(base_ctx, key, &bs);
    if (!a || !b || as.rank != 2 || bs.rank != 2 || as.dim[1] != in || bs.dim[0] != out || bs.dim[1] != as.dim[0])
        return snprintf(err, errlen, "%s." MAGNITUDE ": no lora_A [r, %lld] and lora_B [%lld, r] to take the magnitude "
                        "from", module, (long long)in, (long long)out), -1;
    int64_t r = as.dim[0];
    /* m_i = ‖W_i + s · B_i A‖, in double */
    for (int64_t i = 0; i < out; i++) {
        double ss = 0;
        for (int64_t j = 0; j < in; j++) {
            double d = 0;
            for (int64_t k = 0; k < r; k++) d += (double)b[i * r + k] * a[k * in + j];
            double v = w[i * in + j] + scale * d;
            ss += v * v;
        }
        m[i] = (float)sqrt(ss);
    }
    return 1;
}

int pc_dora_output_rows(const char *tensor) { return strcmp(tensor, MAGNITUDE) == 0; }
