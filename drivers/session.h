/* What every model verb opens first: the frozen base checkpoint, its tokenizer, and optionally
 * an adapter (a config to train from, or a trained adapter directory). */
#ifndef PEFTC_DRIVERS_SESSION_H
#define PEFTC_DRIVERS_SESSION_H

#include "frontend/llama.h"
#include "runtime/adapter_io.h"
#include "runtime/tokenizer.h"

#include <stdbool.h>

typedef struct {
    const char *model_path;
    pc_l2c_model *model;
    pc_llama_config cfg;
    pc_tokenizer *tok;      /* NULL when not asked for */
    pc_adapter_files adapter; /* adapter.cfg NULL = none */
    /* the adapter's q/k rows are in Hugging Face order (made by PEFT on an HF-converted Llama,
     * whose q/k rows are permuted per head for the half-split RoPE); peftc runs llama2.c
     * checkpoints in llama2.c order, so such rows are permuted on load and back on save */
    bool hf_qk_rows;
} pc_session;

/* tokenizer / adapter may be NULL. Errors name the file. */
int pc_session_open(pc_session *s, const char *model, const char *tokenizer, const char *adapter,
                    char *err, size_t errlen);
void pc_session_close(pc_session *s);

/* the default adapter of `peftc train`: LoRA r=8, alpha=16, dropout 0, all seven projections */
pc_adapter_config *pc_default_lora_config(void);

/* Applies the session's adapter (if any) to a graph built by the llama builder.
 * training: dropout active; trainable: adapter params trainable (else frozen). */
int pc_session_adapt(const pc_session *s, pc_graph **g, bool training, bool trainable, char *err, size_t errlen);

/* Permutes the q_proj/k_proj lora_B rows (weight and bias) of a store between Hugging Face
 * order and llama2.c order when s->hf_qk_rows: to_file = 1 converts llama2.c -> HF (before a
 * save), 0 converts HF -> llama2.c (after a load). No-op otherwise. */
struct pc_store;
void pc_session_fix_qk_rows(const pc_session *s, struct pc_store *st, int to_file);
/* the same permutation on one tensor (rows of head_dim entries per head) */
void pc_qk_permute_rows(float *w, int64_t rows, int64_t cols, int head_dim, int to_hf);
/* 1 if the adapter key names a q_proj/k_proj lora_B tensor (rows follow the RoPE order) */
int pc_qk_rotary_key(const char *key, int *is_k);

/* is_base callback for pc_store_init: keys the base checkpoint provides */
int pc_session_is_base(void *session, const char *key);

/* the default model/tokenizer/data paths (the bundled stories260K and tinyshakespeare),
 * resolved from PEFTC_DATA_DIR, the executable's source tree, or the current directory */
const char *pc_default_path(const char *relative, char *buf, size_t len);

#endif
