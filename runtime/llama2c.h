/* llama2.c legacy ("v0") checkpoints: read (mmap) and write.
 *
 * Layout (little-endian): 7 x int32 header {dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 * vocab_size, seq_len}, a negative vocab_size meaning an untied classifier follows; then float32
 * arrays back to back: token_embedding (vocab, dim), rms_att (L, dim), wq (L, dim, dim),
 * wk (L, kv_dim, dim), wv (L, kv_dim, dim), wo (L, dim, dim), rms_ffn (L, dim),
 * w1 (L, hidden, dim), w2 (L, dim, hidden), w3 (L, hidden, dim), rms_final (dim),
 * freq_cis_real (seq_len, head_size/2), freq_cis_imag (same), then wcls (vocab, dim) if untied.
 *
 * Tensors are exposed under Hugging Face Llama names (model.embed_tokens.weight,
 * model.layers.{i}.self_attn.q_proj.weight, ...). The q/k rows keep llama2.c's order (RoPE on
 * adjacent pairs); they are NOT permuted the way HF conversion scripts do. */
#ifndef PEFTC_RUNTIME_LLAMA2C_H
#define PEFTC_RUNTIME_LLAMA2C_H

#include <peftc/types.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/fileio.h"

typedef struct {
    int dim, hidden_dim, n_layers, n_heads, n_kv_heads;
    int vocab_size; /* always positive here; the sign in the file is shared_classifier */
    int seq_len;
    int shared_classifier; /* 1: lm_head is the embedding (file vocab_size > 0) */
} pc_l2c_config;

#define PC_L2C_NAME_MAX 80

typedef struct {
    char name[PC_L2C_NAME_MAX]; /* Hugging Face name */
    pc_shape shape;
    const float *data; /* NULL in specs */
} pc_l2c_tensor;

typedef struct {
    pc_l2c_config cfg;
    /* the stacked arrays in file order, pointing into the read-only mapping */
    const float *token_embedding, *rms_att, *wq, *wk, *wv, *wo, *rms_ffn, *w1, *w2, *w3, *rms_final,
        *freq_cis_real, *freq_cis_imag, *wcls; /* wcls == token_embedding if tied */
    int n_tensors;
    pc_l2c_tensor *tensors; /* embed, per layer {input_layernorm, q, k, v, o,
                               post_attention_layernorm, gate, down, up}, norm, lm_head */
    char *path;
    pc_mmap map;
} pc_l2c_model;

/* checks sizes and divisibility; `file` names the source in messages */
int pc_l2c_config_check(const pc_l2c_config *c, const char *file, char *err, size_t errlen);
/* exact file size for a valid config (0 if the config is invalid) */
uint64_t pc_l2c_file_size(const pc_l2c_config *c);

/* names and shapes for a config (data NULL); out needs pc_l2c_tensor_count(c) entries */
int pc_l2c_tensor_count(const pc_l2c_config *c);
void pc_l2c_tensor_specs(const pc_l2c_config *c, pc_l2c_tensor *out);

pc_l2c_model *pc_l2c_open(const char *path, char *err, size_t errlen);
void pc_l2c_close(pc_l2c_model *m); /* NULL is fine */
const pc_l2c_tensor *pc_l2c_find(const pc_l2c_model *m, const char *name);

/* RoPE tables as llama2.c's model.py computes them (float32 throughout):
 * real[pos][i] = cos(pos * 10000^(-2i/head_size)), imag = sin; each seq_len * head_size/2 */
void pc_l2c_rope_tables(const pc_l2c_config *c, float *real, float *imag);

/* Writes a legacy checkpoint atomically. `tensors` holds every tensor of
 * pc_l2c_tensor_specs(cfg) by HF name, in any order, with matching shapes; lm_head.weight may be
 * omitted when cfg->shared_classifier (if given it must equal the embedding). Unknown or duplicate
 * names are errors. freq_real/freq_imag: the RoPE tables to store, or NULL to recompute them. */
int pc_l2c_write(const char *path, const pc_l2c_config *cfg, const pc_l2c_tensor *tensors, int n,
                 const float *freq_real, const float *freq_imag, char *err, size_t errlen);

#endif
