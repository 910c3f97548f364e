/* AdaLoRA's rank allocator, as PEFT 0.21's RankAllocator and AdaLoraModel.update_and_allocate
 * (src/peft/tuners/adalora/{layer,model}.py; reference/peft.md §5.4), called by the trainer after
 * every optimizer step with step = the number of steps taken (1, 2, ...):
 *
 *   step <  T - tfinal:  for every lora_A/E/B element, I = |p ⊙ ∇p|, Ī ← β1 Ī + (1-β1) I,
 *                        Ū ← β2 Ū + (1-β2) |I - Ī| (with the new Ī); then, when the schedule says
 *                        so, mask to the budget;
 *   step == T - tfinal:  mask to the final budget (target_r per module) and empty the EMAs;
 *   step >  T - tfinal:  zero E where the final mask says so again (the optimizer revives it).
 *
 * The budget: init_bgt = Σ ranks (rows of every lora_A), target_bgt = target_r · modules;
 * step ≤ tinit: init_bgt, no masking; tinit < step ≤ T - tfinal: int((init_bgt - target_bgt)
 * (1 - (step - tinit)/(T - tfinal - tinit))³ + target_bgt), masking when step % deltaT == 0;
 * later: target_bgt. Masking: the score of rank i of a module is s(E_i) + mean_j s(A_ij) +
 * mean_k s(B_ki) with s = Ī ⊙ Ū; the threshold is the (init_bgt - budget)-th smallest score of
 * all modules (torch.kthvalue); E_i ← 0 where score ≤ threshold; the rank mask is the rest.
 * Arithmetic is float32 in PEFT's order (the means are summed in double and rounded). */
#include "passes/adapters/adalora.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_PREFIX "base_model.model."

static const char *const TENSOR[3] = {"lora_A", "lora_E", "lora_B"};

int64_t pc_adalora_budget(const pc_adapter_config *cfg, int64_t init_bgt, int64_t target_bgt, int64_t step,
                          bool *mask_ind) {
    int64_t tinit = cfg->adalora.tinit, tfinal = cfg->adalora.tfinal, total = cfg->adalora.total_step;
    if (step <= tinit) {
        *mask_ind = false;
        return init_bgt;
    }
    if (step > total - tfinal) {
        *mask_ind = true;
        return target_bgt;
    }
    double mul = 1.0 - (double)(step - tinit) / (double)(total - tfinal - tinit);
    *mask_ind = step % cfg->adalora.deltaT == 0;
    return (int64_t)((double)(init_bgt - target_bgt) * (mul * mul * mul) + (double)target_bgt);
}

void pc_adalora_alloc_free(pc_adalora_state *st) {
    for (int i = 0; i < st->nmods; i++) {
        pc_adalora_module *m = &st->mods[i];
        free(m->module);
        for (int k = 0; k < 3; k++) free(m->key[k]), free(m->ipt_ema[k]), free(m->unc_ema[k]);
        free(m->score);
        free(m->keep);
    }
    free(st->mods);
    st->mods = NULL;
    st->nmods = 0;
    st->scanned = false;
}

static int64_t numel(const pc_adalora_module *m, int k) { return k == 0 ? m->r * m->in : k == 1 ? m->r : m->out * m->r; }

/* one module from its lora_E key: shapes checked against A and B */
static int add_module(pc_adalora_state *st, const pc_tensor_io *io, const char *ekey, char *err, size_t errlen) {
    size_t plen = strlen(KEY_PREFIX), klen = strlen(ekey), tail = strlen(".lora_E");
    if (klen <= plen + tail || strncmp(ekey, KEY_PREFIX, plen))
        return snprintf(err, errlen, "tensor '%s' is not a PEFT adapter key", ekey), -1;
    pc_adalora_module *mods = realloc(st->mods, (size_t)(st->nmods + 1) * sizeof *mods);
    if (!mods) return snprintf(err, errlen, "out of memory"), -1;
    st->mods = mods;
    pc_adalora_module *m = &mods[st->nmods++];
    memset(m, 0, sizeof *m);
    size_t mlen = klen - plen - tail;
    if (!(m->module = strndup(ekey + plen, mlen))) return snprintf(err, errlen, "out of memory"), -1;
    pc_shape sh[3];
    for (int k = 0; k < 3; k++) {
        size_t n = plen + mlen + strlen(TENSOR[k]) + 2;
        if (!(m->key[k] = malloc(n))) return snprintf(err, errlen, "out of memory"), -1;
        snprintf(m->key[k], n, KEY_PREFIX "%s.%s", m->module, TENSOR[k]);
        if (!io->get(io->get_ctx, m->key[k], &sh[k]) || sh[k].rank != 2)
            return snprintf(err, errlen, "module %s: no 2-d tensor %s", m->module, m->key[k]), -1;
    }
    m->r = sh[1].dim[0], m->in = sh[0].dim[1], m->out = sh[2].dim[0];
    if (sh[1].dim[1] != 1 || sh[0].dim[0] != m->r || sh[2].dim[1] != m->r)
        return snprintf(err, errlen, "module %s: lora_A, lora_E, lora_B ranks disagree", m->module), -1;
    for (int k = 0; k < 3; k++) {
        size_t n = (size_t)(numel(m, k) ? numel(m, k) : 1);
        if (!(m->ipt_ema[k] = calloc(n, sizeof(float))) || !(m->unc_ema[k] = calloc(n, sizeof(float))))
            return snprintf(err, errlen, "out of memory"), -1;
    }
    if (!(m->score = calloc((size_t)m->r + 1, sizeof *m->score)) || !(m->keep = calloc((size_t)m->r + 1, sizeof *m->keep)))
        return snprintf(err, errlen, "out of memory"), -1;
    for (int64_t i = 0; i < m->r; i++) m->keep[i] = true;
    st->init_bgt += m->r;
    return 0;
}

/* the modules: every "<...>.lora_E" param of the run (PEFT: every lora_A of the adapter) */
static int scan(pc_adalora_state *st, const pc_adapter_config *cfg, const pc_tensor_io *io, char *err, size_t errlen) {
    if (!io->key_at) return snprintf(err, errlen, "the trainer does not list the adapter's tensors"), -1;
    st->init_bgt = 0;
    const char *key;
    for (int i = 0; (key = io->key_at(io->get_ctx, i)) != NULL; i++) {
        size_t n = strlen(key), t = strlen(".lora_E");
        if (n > t && strcmp(key + n - t, ".lora_E") == 0 && add_module(st, io, key, err, errlen)) return -1;
    }
    if (!st->nmods) return snprintf(err, errlen, "no lora_E tensor among the adapter's params"), -1;
    st->target_bgt = (int64_t)cfg->adalora.target_r * st->nmods;
    st->scanned = true;
    return 0;
}

/* RankAllocator.update_ipt */
static int update_ipt(pc_adalora_state *st, const pc_adapter_config *cfg, const pc_tensor_io *io, char *err,
                      size_t errlen) {
    if (!io->grad) return snprintf(err, errlen, "the step's gradients are not available to the rank allocator"), -1;
    const float b1 = (float)cfg->adalora.beta1.v, c1 = (float)(1.0 - cfg->adalora.beta1.v);
    const float b2 = (float)cfg->adalora.beta2.v, c2 = (float)(1.0 - cfg->adalora.beta2.v);
    if (!st->ema_live)
        for (int i = 0; i < st->nmods; i++)
            for (int k = 0; k < 3; k++) {
                memset(st->mods[i].ipt_ema[k], 0, (size_t)numel(&st->mods[i], k) * sizeof(float));
                memset(st->mods[i].unc_ema[k], 0, (size_t)numel(&st->mods[i], k) * sizeof(float));
            }
    st->ema_live = true;
    for (int i = 0; i < st->nmods; i++) {
        pc_adalora_module *m = &st->mods[i];
        for (int k = 0; k < 3; k++) {
            pc_shape ps, gs;
            const float *p = io->get(io->get_ctx, m->key[k], &ps), *g = io->grad(io->grad_ctx, m->key[k], &gs);
            if (!p || !g || pc_shape_numel(ps) != numel(m, k) || pc_shape_numel(gs) != numel(m, k))
                return snprintf(err, errlen, "no value or gradient of %s", m->key[k]), -1;
            float *ie = m->ipt_ema[k], *ue = m->unc_ema[k];
            for (int64_t j = 0, n = numel(m, k); j < n; j++) {
                float ipt = fabsf(p[j] * g[j]);
                float a = b1 * ie[j], b = c1 * ipt;
                ie[j] = a + b;
                float c = b2 * ue[j], d = c2 * fabsf(ipt - ie[j]);
                ue[j] = c + d;
            }
        }
    }
    return 0;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* RankAllocator.mask_to_budget: scores, the threshold, E masked, the rank masks */
static int mask_to_budget(pc_adalora_state *st, const pc_tensor_io *io, int64_t budget, char *err, size_t errlen) {
    float *all = malloc((size_t)(st->init_bgt ? st->init_bgt : 1) * sizeof *all);
    if (!all) return snprintf(err, errlen, "out of memory"), -1;
    int64_t n = 0;
    for (int i = 0; i < st->nmods; i++) {
        pc_adalora_module *m = &st->mods[i];
        for (int64_t r = 0; r < m->r; r++) {
            double sa = 0, sb = 0;
            for (int64_t j = 0; j < m->in; j++) sa += (double)(m->ipt_ema[0][r * m->in + j] * m->unc_ema[0][r * m->in + j]);
            for (int64_t o = 0; o < m->out; o++) sb += (double)(m->ipt_ema[2][o * m->r + r] * m->unc_ema[2][o * m->r + r]);
            float ma = m->in ? (float)(sa / (double)m->in) : NAN, mb = m->out ? (float)(sb / (double)m->out) : NAN;
            float se = m->ipt_ema[1][r] * m->unc_ema[1][r];
            m->score[r] = se + (ma + mb);
            all[n++] = m->score[r];
        }
    }
    int64_t k = st->init_bgt - budget;
    /* torch.kthvalue(k); k = 0 (target_r = init_r: nothing to prune) masks nothing, where PEFT raises */
    float thr = -INFINITY;
    if (k > 0) {
        qsort(all, (size_t)n, sizeof *all, cmp_float);
        thr = all[k - 1];
    }
    free(all);
    for (int i = 0; i < st->nmods; i++) {
        pc_adalora_module *m = &st->mods[i];
        pc_shape sh;
        float *e = io->get(io->get_ctx, m->key[1], &sh);
        if (!e) return snprintf(err, errlen, "no tensor %s", m->key[1]), -1;
        for (int64_t r = 0; r < m->r; r++) {
            m->keep[r] = !(m->score[r] <= thr);
            if (!m->keep[r]) e[r] = 0.0f;
        }
    }
    st->have_pattern = true;
    return 0;
}

/* RankAllocator.mask_using_rank_pattern */
static int mask_using_pattern(pc_adalora_state *st, const pc_tensor_io *io, char *err, size_t errlen) {
    for (int i = 0; i < st->nmods; i++) {
        pc_adalora_module *m = &st->mods[i];
        pc_shape sh;
        float *e = io->get(io->get_ctx, m->key[1], &sh);
        if (!e) return snprintf(err, errlen, "no tensor %s", m->key[1]), -1;
        for (int64_t r = 0; r < m->r; r++)
            if (!m->keep[r]) e[r] = 0.0f;
    }
    return 0;
}

/* ---- checkpoints: keys "peftc.adalora.<module>.<what>" ---- */

static const char *const EMA_NAME[2][3] = {{"ipt_A", "ipt_E", "ipt_B"}, {"unc_A", "unc_E", "unc_B"}};
#define STATE_FLAGS "peftc.adalora.flags" /* [ema_live, have_pattern] */

static void state_key(char *buf, size_t len, const pc_adalora_module *m, const char *what) {
    snprintf(buf, len, "peftc.adalora.%s.%s", m->module, what);
}

int pc_adalora_save_state(const pc_adalora_state *st, const pc_tensor_io *io, char *err, size_t errlen) {
    if (!st->scanned) return 0;
    char key[640];
    float flags[2] = {st->ema_live ? 1.0f : 0.0f, st->have_pattern ? 1.0f : 0.0f};
    if (io->put(io->put_ctx, STATE_FLAGS, PC_SHAPE(2), flags)) return snprintf(err, errlen, "out of memory"), -1;
    for (int i = 0; i < st->nmods; i++) {
        const pc_adalora_module *m = &st->mods[i];
        for (int e = 0; e < 2; e++)
            for (int k = 0; k < 3; k++) {
                state_key(key, sizeof key, m, EMA_NAME[e][k]);
                if (io->put(io->put_ctx, key, PC_SHAPE(numel(m, k)), e ? m->unc_ema[k] : m->ipt_ema[k]))
                    return snprintf(err, errlen, "out of memory"), -1;
            }
        float *keep = malloc((size_t)(m->r ? m->r : 1) * sizeof *keep);
        if (!keep) return snprintf(err, errlen, "out of memory"), -1;
        for (int64_t r = 0; r < m->r; r++) keep[r] = m->keep[r] ? 1.0f : 0.0f;
        state_key(key, sizeof key, m, "keep");
        int rc = io->put(io->put_ctx, key, PC_SHAPE(m->r), keep);
        free(keep);
        if (rc) return snprintf(err, errlen, "out of memory"), -1;
    }
    return 0;
}

/* a saved tensor of n floats, or NULL with a message */
static const float *saved(const pc_tensor_io *io, const char *key, int64_t n, char *err, size_t errlen) {
    pc_shape sh;
    const float *p = io->get(io->get_ctx, key, &sh);
    if (!p) return snprintf(err, errlen, "tensor %s is missing", key), NULL;
    if (sh.rank != 1 || sh.dim[0] != n)
        return snprintf(err, errlen, "tensor %s has %lld values, the run's module needs %lld", key,
                        (long long)pc_shape_numel(sh), (long long)n), NULL;
    return p;
}

int pc_adalora_load_state(pc_adalora_state *st, const pc_adapter_config *cfg, const pc_tensor_io *io, char *err,
                          size_t errlen) {
    pc_shape sh;
    const float *flags = io->get(io->get_ctx, STATE_FLAGS, &sh);
    if (!flags) return 0; /* saved before the first step (or by an older peftc): a fresh allocator */
    if (sh.rank != 1 || sh.dim[0] != 2) return snprintf(err, errlen, "tensor %s is not [2]", STATE_FLAGS), -1;
    if (!st->scanned && scan(st, cfg, io, err, errlen)) return -1;
    char key[640];
    for (int i = 0; i < st->nmods; i++) {
        pc_adalora_module *m = &st->mods[i];
        for (int e = 0; e < 2; e++)
            for (int k = 0; k < 3; k++) {
                state_key(key, sizeof key, m, EMA_NAME[e][k]);
                const float *p = saved(io, key, numel(m, k), err, errlen);
                if (!p) return -1;
                memcpy(e ? m->unc_ema[k] : m->ipt_ema[k], p, (size_t)numel(m, k) * sizeof *p);
            }
        state_key(key, sizeof key, m, "keep");
        const float *keep = saved(io, key, m->r, err, errlen);
        if (!keep) return -1;
        for (int64_t r = 0; r < m->r; r++) m->keep[r] = keep[r] != 0.0f;
    }
    st->ema_live = flags[0] != 0.0f;
    st->have_pattern = flags[1] != 0.0f;
    return 0;
}

int pc_adalora_step(pc_adalora_state *st, const pc_adapter_config *cfg, int64_t step, const pc_tensor_io *io,
                    char *err, size_t errlen) {
    if (!st->scanned && scan(st, cfg, io, err, errlen)) return -1;
    int64_t end = cfg->adalora.total_step - cfg->adalora.tfinal;
    bool mask_ind = false;
    st->last_masked = false;
    st->last_budget = pc_adalora_budget(cfg, st->init_bgt, st->target_bgt, step, &mask_ind);
    if (step < end) {
        if (update_ipt(st, cfg, io, err, errlen)) return -1;
        if (mask_ind) {
            st->last_masked = true;
            return mask_to_budget(st, io, st->last_budget, err, errlen);
        }
        return 0;
    }
    if (step == end) {
        st->last_masked = true;
        if (mask_to_budget(st, io, st->last_budget, err, errlen)) return -1;
        st->ema_live = false; /* reset_ipt */
        return 0;
    }
    /* past the final allocation: the final mask again (PEFT requires one to exist) */
    if (!st->have_pattern)
        return snprintf(err, errlen, "step %lld is past total_step - tfinal = %lld but no rank pattern was allocated",
                        (long long)step, (long long)end), -1;
    return mask_using_pattern(st, io, err, errlen);
}
