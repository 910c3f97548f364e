/* Llama frontend: builds graphs of a frozen Llama-2 style transformer with Hugging Face module
 * names, binds llama2.c checkpoints to them, and generates text on the reference interpreter.
 *
 * Module / param names (SSA name of each param = its module; key = module + ".weight"):
 *   model.embed_tokens                         [vocab, dim]    (embedding table)
 *   model.layers.{i}.input_layernorm           [dim]           (rmsnorm weight)
 *   model.layers.{i}.self_attn.{q,o}_proj      linear dim -> dim
 *   model.layers.{i}.self_attn.{k,v}_proj      linear dim -> n_kv_heads * head_dim
 *   model.layers.{i}.post_attention_layernorm  [dim]
 *   model.layers.{i}.mlp.{gate,up}_proj        linear dim -> hidden_dim
 *   model.layers.{i}.mlp.down_proj             linear hidden_dim -> dim
 *   model.norm                                 [dim]
 *   lm_head                                    linear dim -> vocab, only when not tied; a tied
 *                                              classifier is matmul(h, embed_tokens, transpose_b)
 *                                              and is not a linear (see frontend/linear.h)
 * Every weight is a frozen param without init (it must be loaded). The q/k rows follow the
 * checkpoint's RoPE style (rope_style 0: llama2.c adjacent pairs, rows not permuted). */
#ifndef PEFTC_FRONTEND_LLAMA_H
#define PEFTC_FRONTEND_LLAMA_H

#include "peftc/peftc.h"
#include "backend/exec.h"
#include "backend/ref.h"
#include "runtime/llama2c.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    double norm_eps;   /* 1e-5 */
    double rope_theta; /* 10000 */
    int rope_style;    /* 0 = llama2.c adjacent pairs (2i, 2i+1), 1 = Hugging Face halves */
    int tied;          /* 1: logits use model.embed_tokens.weight (no lm_head) */
} pc_llama_config;

/* ignore index of the training targets (PyTorch's default) */
#define PC_LLAMA_IGNORE (-100)

/* defaults for the optional fields (eps 1e-5, theta 1e4, style 0, tied) and zero sizes */
pc_llama_config pc_llama_config_default(void);
/* the config of a llama2.c checkpoint (rope style 0, tied = shared_classifier) */
pc_llama_config pc_llama_config_from_l2c(const pc_l2c_config *c);
/* 0, or -1 with a message naming the offending field */
int pc_llama_config_check(const pc_llama_config *cfg, char *err, size_t errlen);

/* Appends the forward pass to g: tokens i32[B,S], pos i32[S] (positions of the S tokens)
 * -> logits f32[B,S,V]. Causal attention over the S tokens. Creates the weight params (or
 * reuses those already in g with the same keys). Sticky errors: PC_NONE and pc_graph_error(g)
 * (a bad config is reported there too). */
pc_val pc_llama_forward(pc_graph *g, const pc_llama_config *cfg, pc_val tokens, pc_val pos);

/* graph @train(%tokens: i32[B,S], %targets: i32[B,S]) -> (%loss: f32[] [, %logits: f32[B,S,V]])
 * positions are a constant 0..S-1; loss = mean cross-entropy over targets != PC_LLAMA_IGNORE.
 * NULL with a message on error. */
pc_graph *pc_llama_train_graph(const pc_llama_config *cfg, int64_t B, int64_t S, int output_logits,
                               char *err, size_t errlen);

/* graph @decode for one new token per sequence with a caller-managed KV cache of T entries:
 *   inputs  %token: i32[B,1], %pos: i32[1], %mask: f32[T+1],
 *           %k_cache.{i}, %v_cache.{i}: f32[B,T,Hkv,Dh] for each layer i
 *   outputs %logits: f32[B,1,V], %k_new.{i}, %v_new.{i}: f32[B,1,Hkv,Dh] (k roped at pos)
 * Keys are concat(cache, new) along T; mask[j] is added to the score of key j (0 = attend,
 * -1e30 = ignore; the caller marks entries j < pos valid, the rest invalid, and the last entry,
 * the new token, valid). The caller writes k_new/v_new into its cache at pos. */
pc_graph *pc_llama_decode_graph(const pc_llama_config *cfg, int64_t B, int64_t T, char *err,
                                size_t errlen);

/* Checks every frozen param of g against the checkpoint (by key, same shape) and binds it to the
 * checkpoint's data. Trainable params and states are left alone. Errors name the key. The model
 * must outlive the interpreter runs. */
int pc_llama_bind_l2c(pc_exec *r, const pc_graph *g, const pc_l2c_model *m, char *err, size_t errlen);
/* Binds the frozen params whose key the checkpoint holds and leaves the others (adapter
 * params) to the caller; shapes are still checked. */
int pc_llama_bind_base(pc_exec *r, const pc_graph *g, const pc_l2c_model *m, char *err, size_t errlen);
/* the same check without binding */
int pc_llama_check_l2c(const pc_graph *g, const pc_l2c_model *m, char *err, size_t errlen);

typedef struct {
    int steps;            /* positions to run (run.c -n); clamped to seq_len; <= 0 = seq_len */
    float temperature;    /* 0 = greedy (argmax) */
    float topp;           /* nucleus mass in (0,1); <= 0 or >= 1 samples the full distribution */
    uint64_t seed;        /* sampling RNG seed (run.c's xorshift; 0 is replaced by a constant) */
    const int32_t *prompt; /* prompt ids (BOS included if wanted); NULL/0 = just BOS */
    int n_prompt;
    /* optional: rewrite the decode graph (apply an adapter) and bind what the checkpoint does
     * not hold (the adapter's tensors); with bind set, only checkpoint keys are bound here */
    int (*adapt)(void *ctx, pc_graph **g, char *err, size_t errlen);
    int (*bind)(void *ctx, const pc_graph *g, pc_exec *r, char *err, size_t errlen);
    void *ctx;
    const pc_exec_opts *exec; /* backend (NULL = the default) */
    int cache_len;        /* KV-cache entries of the decode graph (>= steps; 0 = steps): a fixed
                             value makes one graph serve every request (AOT executables) */
    /* when set (jit), each position runs through the decode graph's entry function from here
     * (backend/entry.h): an AOT generator's compiled-in table */
    const struct pc_entry_provider *entries;
} pc_llama_gen_opts;

/* Runs the decode graph step by step (on o->exec's backend), like llama2.c run.c:
 * position p feeds seq[p] and yields logits[p]; seq[p+1] is the next prompt id or, after the
 * prompt, the sampled token. Stops after `steps` positions or when BOS (1) is sampled (it is not
 * appended). tokens (capacity steps+1) receives the prompt followed by the sampled ids; *ntokens
 * their count. logits (optional, NULL) receives steps * vocab floats, one row per position run;
 * *npos (optional) the number of positions run. */
int pc_llama_generate(const pc_llama_config *cfg, const pc_l2c_model *m, const pc_llama_gen_opts *o,
                      int32_t *tokens, int *ntokens, float *logits, int *npos, char *err,
                      size_t errlen);

/* llama2.c run.c's sampler: temperature 0 = argmax; else softmax(logits / temperature), one
 * xorshift draw from *state, then multinomial sampling, or nucleus sampling when 0 < topp < 1.
 * Returns the token id, or -1 on bad arguments. logits (n) are overwritten; scratch (n entries)
 * is needed only for top-p. */
typedef struct {
    float prob;
    int index;
} pc_prob_index;
int pc_llama_sample(float *logits, int n, float temperature, float topp, uint64_t *state,
                    pc_prob_index *scratch);

#ifdef __cplusplus
}
#endif
#endif
