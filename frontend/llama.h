/* Llama frontend: builds graphs of a frozen Llama-2 style transformer with Hugging Face module
 * names, emitting adapter sites (peftc/adapter.h) at every linear, the input embeddings, the
 * positions, each attention's K/V, each FFN and block output, the final norm and the head.
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

#include "frontend/family.h"
#include "peftc/peftc.h"
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
    pc_rope_scaling rope_scaling; /* llama3 frequency scaling; original_context 0 = none */
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

/* Any graph of the family with the adapter sites handed to `hook` (NULL: none): an LM graph
 * (train/eval) or a decode step (frontend/family.h states both contracts). */
pc_graph *pc_llama_build(const pc_llama_config *cfg, const pc_build_req *req, const pc_site_hook *hook, char *err,
                         size_t errlen);

/* what the Llama families tell drivers of an open model: m->info and m->kv_row from cfg */
void pc_llama_describe(pc_model *m, const pc_llama_config *cfg);

/* The llama2.c checkpoint family (frontend/llama2c_family.c): its config from an open model. */
const pc_llama_config *pc_llama2c_config(const pc_model *m);
extern const pc_model_family pc_family_llama2c;

#ifdef __cplusplus
}
#endif
#endif
