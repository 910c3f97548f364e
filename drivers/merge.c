/* Folding LoRA into the base weights. */
#include "drivers/merge.h"
#include "passes/lora.h"
#include "runtime/fileio.h"
#include "runtime/target_match.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const pc_st_tensor *need(const pc_st_file *f, const char *key, int rank, const int64_t *dims,
                                char *err, size_t errlen) {
    const pc_st_tensor *t = f ? pc_st_find(f, key) : NULL;
    if (!t) { pc_errf(err, errlen, "adapter weights: missing tensor \"%s\"", key); return NULL; }
    bool ok = t->dtype == PC_F32 && t->shape.rank == rank;
    for (int i = 0; ok && i < rank; i++) ok = dims[i] < 0 || t->shape.dim[i] == dims[i];
    if (!ok) { pc_errf(err, errlen, "adapter weights: tensor \"%s\" has an unexpected dtype or shape", key); return NULL; }
    return t;
}

int pc_merge_adapter(const pc_session *s, pc_merged_model *out, char *err, size_t errlen) {
    const pc_l2c_model *m = s->model;
    const pc_adapter_config *cfg = s->adapter.cfg;
    *out = (pc_merged_model){0};
    if (!cfg) return pc_errf(err, errlen, "no adapter to merge");
    if (cfg->peft_type != PC_PEFT_LORA)
        return pc_errf(err, errlen, "merging %s adapters is not implemented yet", pc_peft_type_name(cfg->peft_type));
    if (cfg->lora.use_dora) return pc_errf(err, errlen, "merging DoRA adapters is not implemented yet");
    if (cfg->lora.lora_bias)
        return pc_errf(err, errlen, "%s: lora_bias=true: the merged bias s*b_B has nowhere to go in a bias-free llama2.c "
                       "checkpoint; run the adapter unmerged", s->adapter.weights ? "adapter" : "adapter_config.json");
    if (!s->adapter.weights) return pc_errf(err, errlen, "the adapter has no %s", PC_ADAPTER_WEIGHTS_NAME);
    size_t total = 0;
    for (int i = 0; i < m->n_tensors; i++) total += (size_t)pc_shape_numel(m->tensors[i].shape);
    out->n = m->n_tensors;
    out->tensors = malloc((size_t)m->n_tensors * sizeof *out->tensors);
    out->buf = malloc((total ? total : 1) * sizeof(float));
    if (!out->tensors || !out->buf) { pc_merged_free(out); return pc_errf(err, errlen, "out of memory"); }
    pc_target_matcher *tm = pc_target_matcher_new(cfg, err, errlen);
    if (!tm) { pc_merged_free(out); return -1; }
    size_t off = 0;
    int rc = 0;
    for (int i = 0; i < m->n_tensors && !rc; i++) {
        const pc_l2c_tensor *t = &m->tensors[i];
        pc_l2c_tensor *d = &out->tensors[i];
        *d = *t;
        int64_t n = pc_shape_numel(t->shape);
        float *w = out->buf + off;
        off += (size_t)n;
        /* a tied lm_head aliases the embedding: keep the alias */
        if (i > 0 && t->data == m->tensors[0].data && strcmp(t->name, "lm_head.weight") == 0) {
            d->data = out->tensors[0].data;
            continue;
        }
        memcpy(w, t->data, (size_t)n * sizeof(float));
        d->data = w;
        size_t nl = strlen(t->name);
        if (t->shape.rank != 2 || nl < 8 || strcmp(t->name + nl - 7, ".weight") != 0) continue;
        char module[PC_L2C_NAME_MAX];
        memcpy(module, t->name, nl - 7);
        module[nl - 7] = 0;
        if (strcmp(module, "model.embed_tokens") == 0) continue; /* not a linear */
        int hit = pc_target_match(tm, module);
        if (hit <= 0) { if (hit < 0) rc = pc_errf(err, errlen, "matching %s failed", module); continue; }
        int r;
        double alpha;
        if (pc_target_rank_alpha(tm, module, &r, &alpha) || r <= 0) { rc = pc_errf(err, errlen, "%s: no valid rank", module); break; }
        double sc = cfg->lora.use_rslora ? alpha / sqrt((double)r) : alpha / r;
        int64_t O = t->shape.dim[0], I = t->shape.dim[1];
        char ka[600], kb[600];
        pc_lora_key(ka, sizeof ka, module, NULL, "lora_A.weight");
        pc_lora_key(kb, sizeof kb, module, NULL, "lora_B.weight");
        const pc_st_tensor *A = need(s->adapter.weights, ka, 2, (int64_t[]){r, I}, err, errlen);
        const pc_st_tensor *B = A ? need(s->adapter.weights, kb, 2, (int64_t[]){O, r}, err, errlen) : NULL;
        if (!B) { rc = -1; break; }
        const float *a = A->data, *b = B->data;
        float *bperm = NULL;
        if (s->hf_qk_rows && pc_qk_rotary_key(kb, NULL)) {
            if (!(bperm = malloc((size_t)(O * r) * sizeof *bperm))) { rc = pc_errf(err, errlen, "out of memory"); break; }
            memcpy(bperm, b, (size_t)(O * r) * sizeof *bperm);
            pc_qk_permute_rows(bperm, O, r, s->cfg.dim / s->cfg.n_heads, 0);
            b = bperm;
        }
        /* W[o,i] += s * sum_k B[o,k] A[k,i], accumulated in double (merging is done once) */
        for (int64_t o = 0; o < O; o++)
            for (int64_t ii = 0; ii < I; ii++) {
                double acc = 0;
                for (int k = 0; k < r; k++) acc += (double)b[o * r + k] * a[k * I + ii];
                w[o * I + ii] += (float)(sc * acc);
            }
        free(bperm);
        out->merged_modules++;
    }
    pc_target_matcher_free(tm);
    if (!rc && out->merged_modules == 0) rc = pc_errf(err, errlen, "the adapter's target_modules matched no weight of the model");
    if (rc) pc_merged_free(out);
    return rc;
}

void pc_merged_free(pc_merged_model *m) {
    free(m->tensors);
    free(m->buf);
    *m = (pc_merged_model){0};
}

pc_l2c_model pc_merged_view(const pc_session *s, const pc_merged_model *mm) {
    pc_l2c_model v = *s->model;
    v.n_tensors = mm->n;
    v.tensors = mm->tensors;
    v.map = (pc_mmap){0};
    return v;
}
