/* AdaLoRA (PEFT's AdaLoraConfig, peft_type "ADALORA"; reference/peft.md §5; PEFT 0.21
 * src/peft/tuners/adalora/{layer,model}.py) on linear sites, SVD-shaped (P Λ Q):
 *   y = x Wᵀ (+ b) + (dropout(x) (A ⊙ E)ᵀ) Bᵀ · s,   A [r, in], E [r, 1], B [out, r],
 *   s = scaling / (ranknum + 1e-5), scaling = lora_alpha (or r when lora_alpha <= 0),
 *   ranknum = init_r: PEFT keeps it when it prunes, so s never changes (8/12 by default).
 * Keys "<module>.lora_A", "lora_E", "lora_B" (ParameterDicts: no ".weight"); ranknum is not saved.
 * Init (init_lora_weights true or "gaussian"): E = 0, A and B ~ N(0, 0.02); false: all N(0, 1)
 * (torch.randn, which PEFT leaves in place).
 * Training loss: + orth_reg_weight · (1/N) Σ_{P ∈ A's and B's} ‖C(P) − I‖_F with C(A) = A Aᵀ,
 * C(B) = Bᵀ B ([r, r]) and the non-squared Frobenius norm (AdaLoraModel.forward); N counts A and B.
 * After every step the rank allocator (adalora_alloc.c) masks E; the adapter file keeps only the
 * allocated ranks (E and A rows, B columns) and the config records them in rank_pattern
 * ({"<module>.lora_E": [bool] * init_r}), from which a loaded module takes its rank (0 allowed:
 * the module adds nothing).
 * Merging: W' = W + B (A ⊙ E) s; unmerging: W = W' − B (A ⊙ E) s. */
#include "passes/adapters/adalora.h"
#include "ir/ir.h"
#include "passes/adapt.h"
#include "runtime/target_match.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int adalora_begin(pc_adapt_ctx *cx, void *state, char *err, size_t errlen) {
    pc_adalora_state *st = state;
    st->last_budget = -1;
    const pc_adapter_config *cfg = pc_adapt_config(cx);
    const __typeof__(cfg->adalora) *a = &cfg->adalora;
    if (cfg->lora.bias != PC_BIAS_NONE)
        return snprintf(err, errlen, "field \"bias\": \"%s\" is not implemented by peftc yet (use \"none\")",
                        cfg->lora.bias == PC_BIAS_ALL ? "all" : "lora_only"), -1;
    if (cfg->lora.lora_bias) return snprintf(err, errlen, "field \"lora_bias\": AdaLoRA has no lora_bias (use false)"), -1;
    if (cfg->target_modules.kind == PC_SPEC_NULL)
        return snprintf(err, errlen, "field \"target_modules\": null (no default for this model)"), -1;
    if (a->target_r > a->init_r)
        return snprintf(err, errlen, "field \"target_r\": %d exceeds init_r = %d (the allocator only removes ranks)",
                        a->target_r, a->init_r), -1;
    if (!pc_adapt_trainable(cx) || pc_adapt_get_mode(cx) != PC_ADAPT_TRAIN) return 0;
    /* PEFT's RankAllocator asserts 0 < beta < 1 */
    if (!(a->beta1.v > 0 && a->beta1.v < 1))
        return snprintf(err, errlen, "field \"beta1\": %g; the rank allocator needs 0 < beta1 < 1", a->beta1.v), -1;
    if (!(a->beta2.v > 0 && a->beta2.v < 1))
        return snprintf(err, errlen, "field \"beta2\": %g; the rank allocator needs 0 < beta2 < 1", a->beta2.v), -1;
    if (!cfg->rank_pattern.is_null && cfg->rank_pattern.n)
        return snprintf(err, errlen, "field \"rank_pattern\": the ranks of this adapter were already allocated; "
                        "training it again is not supported (PEFT's allocator would count its budget from init_r "
                        "over pruned modules, and peftc keeps no allocator state in checkpoints); train from a "
                        "config without rank_pattern"), -1;
    return 0;
}

static void adalora_end(void *state) {
    pc_adalora_state *st = state;
    free(st->orth);
    pc_adalora_alloc_free(st);
}

/* the module's rank (0 allowed) and scale; its params when the rank is > 0. 1 targeted, 0 not, -1 error */
static int adalora_module(pc_adapt_ctx *cx, const pc_site *s, int *r, double *scale, pc_val p[3], char *err,
                          size_t errlen) {
    const pc_adapter_config *cfg = pc_adapt_config(cx);
    int hit = pc_adapt_targets(cx, s->module);
    double alpha;
    if (hit <= 0) return hit < 0 ? (snprintf(err, errlen, "matching module '%s' failed", s->module), -1) : 0;
    char why[512] = ""; /* the regex engine's reason, if it failed */
    if (pc_target_rank_alpha_why(pc_adapt_matcher(cx), s->module, r, &alpha, why, sizeof why))
        return snprintf(err, errlen, "no rank for module '%s'%s%s", s->module, why[0] ? ": " : "", why), -1;
    if (*r < 0) return snprintf(err, errlen, "field \"rank_pattern\": negative rank for module '%s'", s->module), -1;
    /* scaling / (ranknum + 1e-5), ranknum a float32 holding init_r */
    double scaling = alpha > 0 ? alpha : (double)*r;
    *scale = scaling / (double)((float)cfg->adalora.init_r + 1e-5f);
    if (*r == 0) return 1;
    pc_init ie = {PC_INIT_ZEROS, 0, 0}, iab = {PC_INIT_NORMAL, 0.02, 0};
    if (cfg->lora.init_lora_weights == PC_LORA_INIT_FALSE) ie = iab = (pc_init){PC_INIT_NORMAL, 1.0, 0};
    p[0] = pc_adapt_param(cx, s, "lora_A", PC_SHAPE(*r, s->in), iab);
    p[1] = pc_adapt_param(cx, s, "lora_E", PC_SHAPE(*r, 1), ie);
    p[2] = pc_adapt_param(cx, s, "lora_B", PC_SHAPE(s->out, *r), iab);
    return 1;
}

/* B (A ⊙ E) · s, [out, in] */
static pc_val adalora_delta(const pc_site *s, const pc_val p[3], double scale) {
    pc_graph *g = s->g;
    pc_val ae = pc_mul_at(g, s->loc, p[0], p[1]);
    return pc_scale_at(g, s->loc, pc_matmul_at(g, s->loc, p[2], ae, 0, 0), scale, 0.0);
}

static int adalora_rewrite(pc_adapt_ctx *cx, void *state, pc_site *s, char *err, size_t errlen) {
    pc_adalora_state *st = state;
    int r;
    double sc;
    pc_val p[3];
    int hit = adalora_module(cx, s, &r, &sc, p, err, errlen);
    if (hit <= 0) return hit;
    st->nadapted++;
    if (r == 0) return 1; /* a module pruned to rank 0 adds nothing */
    if (st->north + 2 > st->corth) {
        int cap = st->corth ? 2 * st->corth : 64;
        pc_val *o = realloc(st->orth, (size_t)cap * sizeof *o);
        if (!o) return snprintf(err, errlen, "out of memory"), -1;
        st->orth = o, st->corth = cap;
    }
    st->orth[st->north++] = p[0];
    st->orth[st->north++] = p[2];
    pc_graph *g = s->g;
    pc_val h = pc_adapt_dropout(cx, s, s->x, pc_adapt_config(cx)->lora.lora_dropout.v);
    pc_val ae = pc_mul_at(g, s->loc, p[0], p[1]);
    pc_val up = pc_matmul_at(g, s->loc, pc_matmul_at(g, s->loc, h, ae, 0, 1), p[2], 0, 1);
    s->value = pc_add_at(g, s->loc, s->value, pc_scale_at(g, s->loc, up, sc, 0.0));
    return 1;
}

/* a loaded adapter may have every module at rank 0: still an application */
static int adalora_finish(pc_adapt_ctx *cx, void *state, int nrewritten, char *err, size_t errlen) {
    (void)cx, (void)nrewritten;
    return ((pc_adalora_state *)state)->nadapted ? 0
                                                 : (snprintf(err, errlen, "target_modules matched no module of the model"), -1);
}

/* orth_reg_weight · mean over the A's and B's of ‖C − I‖_F */
static pc_val adalora_loss(pc_adapt_ctx *cx, void *state, pc_graph *g, pc_val loss, char *err, size_t errlen) {
    (void)err, (void)errlen;
    pc_adalora_state *st = state;
    pc_loc at = pc_v(g, loss)->loc;
    double w = pc_adapt_config(cx)->adalora.orth_reg_weight.v;
    if (st->north == 0) return pc_scalar_at(g, at, 0.0f);
    pc_val sum = PC_NONE;
    float *eye = NULL;
    int64_t eye_r = -1;
    for (int i = 0; i < st->north; i++) {
        pc_val p = st->orth[i];
        pc_shape sh = pc_val_shape(g, p);
        bool is_a = (i % 2) == 0;
        int64_t r = is_a ? sh.dim[0] : sh.dim[1];
        if (r != eye_r) {
            float *e2 = realloc(eye, (size_t)(r * r) * sizeof *e2);
            if (!e2) { free(eye); return pc_fail(g, at, "out of memory"); }
            eye = e2, eye_r = r;
            for (int64_t j = 0; j < r * r; j++) eye[j] = j % (r + 1) == 0 ? 1.0f : 0.0f;
        }
        pc_val cov = is_a ? pc_matmul_at(g, at, p, p, 0, 1) : pc_matmul_at(g, at, p, p, 1, 0);
        pc_val d = pc_sub_at(g, at, cov, pc_const_at(g, at, PC_F32, PC_SHAPE(r, r), eye));
        pc_val norm = pc_sqrt_at(g, at, pc_sum_at(g, at, pc_square_at(g, at, d), 0, NULL, 0));
        sum = sum == PC_NONE ? norm : pc_add_at(g, at, sum, norm);
    }
    free(eye);
    return pc_scale_at(g, at, sum, w / (double)st->north, 0.0);
}

/* W ± B (A ⊙ E) s (sign -1: unmerge); a rank-0 module leaves W as it is */
static int adalora_fold(pc_adapt_ctx *cx, const pc_site *s, double sign, pc_val *w, char *err, size_t errlen) {
    int r;
    double sc;
    pc_val p[3];
    int hit = adalora_module(cx, s, &r, &sc, p, err, errlen);
    if (hit <= 0) return hit;
    if (r == 0) return *w = s->weight, 1;
    pc_val dw = adalora_delta(s, p, sc);
    *w = sign > 0 ? pc_add_at(s->g, s->loc, s->weight, dw) : pc_sub_at(s->g, s->loc, s->weight, dw);
    return 1;
}

static int adalora_merge(pc_adapt_ctx *cx, void *state, const pc_site *s, pc_val *w, pc_val *b, char *err,
                         size_t errlen) {
    (void)state, (void)b;
    return adalora_fold(cx, s, 1.0, w, err, errlen);
}

static int adalora_unmerge(pc_adapt_ctx *cx, void *state, const pc_site *s, pc_val *w, pc_val *b, char *err,
                           size_t errlen) {
    (void)state, (void)b;
    return adalora_fold(cx, s, -1.0, w, err, errlen);
}

static int adalora_output_rows(const char *tensor) { return strcmp(tensor, "lora_B") == 0; }

static int adalora_step(pc_adapt_ctx *cx, void *state, int step, const pc_tensor_io *io, char *err, size_t errlen) {
    return pc_adalora_step(state, pc_adapt_config(cx), step, io, err, errlen);
}

static int adalora_save_state(pc_adapt_ctx *cx, void *state, const pc_tensor_io *io, char *err, size_t errlen) {
    (void)cx;
    return pc_adalora_save_state(state, io, err, errlen);
}

static int adalora_load_state(pc_adapt_ctx *cx, void *state, const pc_tensor_io *io, char *err, size_t errlen) {
    return pc_adalora_load_state(state, pc_adapt_config(cx), io, err, errlen);
}

/* the allocated ranks only: E and A rows, B columns (resize_state_dict_by_rank_pattern) */
static int put_pruned(const pc_adalora_module *m, const pc_tensor_io *io, char *err, size_t errlen) {
    int64_t kept = 0;
    for (int64_t r = 0; r < m->r; r++) kept += m->keep[r];
    pc_shape sh;
    const float *A = io->get(io->get_ctx, m->key[0], &sh), *E = io->get(io->get_ctx, m->key[1], &sh),
                *B = io->get(io->get_ctx, m->key[2], &sh);
    if (!A || !E || !B) return snprintf(err, errlen, "module %s: its tensors are gone", m->module), -1;
    size_t n = (size_t)(kept * (m->in > m->out ? m->in : m->out));
    float *buf = malloc((n ? n : 1) * sizeof *buf);
    if (!buf) return snprintf(err, errlen, "out of memory"), -1;
    int rc = 0;
    int64_t k = 0;
    for (int64_t r = 0; r < m->r; r++)
        if (m->keep[r]) memcpy(buf + k++ * m->in, A + r * m->in, (size_t)m->in * sizeof *buf);
    rc |= io->put(io->put_ctx, m->key[0], PC_SHAPE(kept, m->in), buf);
    k = 0;
    for (int64_t r = 0; r < m->r; r++)
        if (m->keep[r]) buf[k++] = E[r];
    rc |= io->put(io->put_ctx, m->key[1], PC_SHAPE(kept, 1), buf);
    for (int64_t o = 0; o < m->out; o++) {
        k = 0;
        for (int64_t r = 0; r < m->r; r++)
            if (m->keep[r]) buf[o * kept + k++] = B[o * m->r + r];
    }
    rc |= io->put(io->put_ctx, m->key[2], PC_SHAPE(m->out, kept), buf);
    free(buf);
    return rc ? (snprintf(err, errlen, "module %s: writing its tensors failed", m->module), -1) : 0;
}

static int adalora_save(pc_adapt_ctx *cx, void *state, const pc_tensor_io *io, char *err, size_t errlen) {
    (void)cx;
    pc_adalora_state *st = state;
    if (!st->have_pattern) return 0; /* nothing allocated yet: every param as it is, as PEFT */
    for (int i = 0; i < st->nmods; i++)
        if (put_pruned(&st->mods[i], io, err, errlen)) return -1;
    return 1;
}

/* rank_pattern {"<module>.lora_E": [kept, ...]} (PEFT saves it without the adapter name) */
static int adalora_save_config(pc_adapt_ctx *cx, void *state, pc_adapter_config *cfg, char *err, size_t errlen) {
    (void)cx;
    pc_adalora_state *st = state;
    if (!st->have_pattern) return 0;
    pc_pattern_clear(&cfg->rank_pattern, false);
    for (int i = 0; i < st->nmods; i++) {
        const pc_adalora_module *m = &st->mods[i];
        char key[1024];
        snprintf(key, sizeof key, "%s.lora_E", m->module);
        int64_t kept = 0;
        for (int64_t r = 0; r < m->r; r++) kept += m->keep[r];
        if (pc_pattern_add(&cfg->rank_pattern, key, (double)kept, true))
            return snprintf(err, errlen, "out of memory"), -1;
        pc_pattern_entry *e = &cfg->rank_pattern.items[cfg->rank_pattern.n - 1];
        if (!(e->mask = malloc((size_t)(m->r ? m->r : 1) * sizeof *e->mask))) return snprintf(err, errlen, "out of memory"), -1;
        memcpy(e->mask, m->keep, (size_t)m->r * sizeof *e->mask);
        e->mask_len = (size_t)m->r;
    }
    return 0;
}

const pc_adapter_method pc_method_adalora = {
    .name = "adalora",
    .peft_type = "ADALORA",
    .sites = PC_SITE_LINEAR,
    .state_size = sizeof(pc_adalora_state),
    .begin = adalora_begin,
    .end = adalora_end,
    .rewrite = adalora_rewrite,
    .finish = adalora_finish,
    .merge_linear = adalora_merge,
    .unmerge_linear = adalora_unmerge,
    .output_rows = adalora_output_rows,
    .loss_term = adalora_loss,
    .step_hook = adalora_step,
    .save_tensors = adalora_save,
    .save_config = adalora_save_config,
    .save_state = adalora_save_state,
    .load_state = adalora_load_state,
};
