/* Opening a model, its tokenizer and an adapter. */
#include "drivers/session.h"
#include "drivers/store.h"
#include "ir/ir.h"
#include "passes/lora.h"
#include "runtime/fileio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef PEFTC_SOURCE_ROOT
#define PEFTC_SOURCE_ROOT "."
#endif

const char *pc_default_path(const char *relative, char *buf, size_t len) {
    const char *env = getenv("PEFTC_DATA_DIR");
    const char *roots[] = {env, PEFTC_SOURCE_ROOT "/data", "data"};
    for (size_t i = 0; i < sizeof roots / sizeof roots[0]; i++) {
        if (!roots[i]) continue;
        snprintf(buf, len, "%s/%s", roots[i], relative);
        if (access(buf, R_OK) == 0) return buf;
    }
    snprintf(buf, len, "%s/%s", PEFTC_SOURCE_ROOT "/data", relative);
    return buf;
}

int pc_session_open(pc_session *s, const char *model, const char *tokenizer, const char *adapter,
                    char *err, size_t errlen) {
    *s = (pc_session){.model_path = model};
    if (!(s->model = pc_l2c_open(model, err, errlen))) return -1;
    s->cfg = pc_llama_config_from_l2c(&s->model->cfg);
    if (pc_llama_config_check(&s->cfg, err, errlen)) goto fail;
    if (tokenizer && !(s->tok = pc_tok_load(tokenizer, s->cfg.vocab_size, err, errlen))) goto fail;
    if (adapter && pc_adapter_load(adapter, &s->adapter, err, errlen)) goto fail;
    if (s->adapter.cfg) {
        for (size_t i = 0; i < s->adapter.cfg->n_warnings; i++)
            fprintf(stderr, "warning: %s: %s\n", adapter, s->adapter.cfg->warnings[i]);
    }
    return 0;
fail:
    pc_session_close(s);
    return -1;
}

void pc_session_close(pc_session *s) {
    pc_l2c_close(s->model);
    pc_tok_free(s->tok);
    pc_adapter_close(&s->adapter);
    *s = (pc_session){0};
}

pc_adapter_config *pc_default_lora_config(void) {
    pc_adapter_config *c = pc_adapter_config_new(PC_PEFT_LORA);
    static const char *const targets[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
    if (!c) return NULL;
    c->r = 8;
    c->lora.lora_alpha = (pc_num){16, true};
    c->lora.lora_dropout = (pc_num){0.0, false};
    c->task_type = PC_TASK_CAUSAL_LM;
    if (pc_spec_set_list(&c->target_modules, targets, 7)) { pc_adapter_config_free(c); return NULL; }
    return c;
}

int pc_session_adapt(const pc_session *s, pc_graph **g, bool training, bool trainable, char *err, size_t errlen) {
    const pc_adapter_config *cfg = s->adapter.cfg;
    if (!cfg) return 0;
    switch (cfg->peft_type) {
    case PC_PEFT_LORA: {
        pc_lora_opts o = {.cfg = cfg, .adapter_name = NULL, .training = training, .trainable = trainable};
        return pc_apply_lora(g, &o, NULL, err, errlen);
    }
    default:
        return pc_errf(err, errlen, "peft_type %s is not implemented by peftc yet", pc_peft_type_name(cfg->peft_type));
    }
}

int pc_session_is_base(void *session, const char *key) {
    const pc_session *s = session;
    return pc_l2c_find(s->model, key) != NULL;
}


int pc_qk_rotary_key(const char *key, int *is_k) {
    static const char *const sfx[] = {"q_proj.lora_B.weight", "k_proj.lora_B.weight", "q_proj.lora_B.bias", "k_proj.lora_B.bias"};
    size_t n = strlen(key);
    for (int i = 0; i < 4; i++) {
        size_t m = strlen(sfx[i]);
        if (n >= m && strcmp(key + n - m, sfx[i]) == 0) {
            if (is_k) *is_k = i % 2;
            return 1;
        }
    }
    return 0;
}

/* llama2.c rotates adjacent pairs (2i, 2i+1); HF-converted checkpoints store row 2i+j of each
 * head at j*hd/2 + i (llama2.c export.py's permute) */
void pc_qk_permute_rows(float *w, int64_t rows, int64_t cols, int hd, int to_hf) {
    float *tmp = malloc((size_t)hd * (size_t)cols * sizeof *tmp);
    if (!tmp || hd < 2 || rows % hd) { free(tmp); return; }
    for (int64_t h = 0; h < rows / hd; h++) {
        float *blk = w + h * hd * cols;
        memcpy(tmp, blk, (size_t)hd * (size_t)cols * sizeof *tmp);
        for (int i = 0; i < hd / 2; i++)
            for (int j = 0; j < 2; j++) {
                int l2c = 2 * i + j, hf = j * (hd / 2) + i;
                int dst = to_hf ? hf : l2c, src = to_hf ? l2c : hf;
                memcpy(blk + (int64_t)dst * cols, tmp + (int64_t)src * cols, (size_t)cols * sizeof *tmp);
            }
    }
    free(tmp);
}

void pc_session_fix_qk_rows(const pc_session *s, pc_store *st, int to_file) {
    if (!s->hf_qk_rows) return;
    int hd = s->cfg.dim / s->cfg.n_heads;
    for (int i = 0; i < st->n; i++) {
        pc_store_entry *e = &st->e[i];
        if (!(e->flags & (PC_TRAINABLE | PC_FROZEN)) || !pc_qk_rotary_key(e->key, NULL)) continue;
        int64_t cols = e->shape.rank == 2 ? e->shape.dim[1] : 1;
        pc_qk_permute_rows(e->data, e->shape.dim[0], cols, hd, to_file);
    }
}
