/* GPT-2 frontend: graphs of a frozen GPT-2 (transformers' GPT2LMHeadModel) with Hugging Face
 * module names, emitting adapter sites (peftc/adapter.h) at every linear, the token embeddings,
 * the positions, each attention's K/V, each FFN and block output, the final norm and the head.
 *
 * Module / param names (SSA name of each param = its module; keys = module + ".weight"/".bias"):
 *   transformer.wte                  [vocab, dim]           token embeddings (and the tied head)
 *   transformer.wpe                  [n_positions, dim]     learned position embeddings
 *   transformer.h.{i}.ln_1, ln_2     LayerNorm weight, bias [dim]
 *   transformer.h.{i}.attn.c_attn    linear dim -> 3 dim, bias (q, k, v side by side)
 *   transformer.h.{i}.attn.c_proj    linear dim -> dim, bias
 *   transformer.h.{i}.mlp.c_fc       linear dim -> hidden_dim, bias
 *   transformer.h.{i}.mlp.c_proj     linear hidden_dim -> dim, bias
 *   transformer.ln_f                 LayerNorm weight, bias [dim]
 *   lm_head                          only when not tied: a bias-free linear dim -> vocab; the tied
 *                                    head is matmul(h, wte, transpose_b), not a linear
 * The four projections are transformers' Conv1D modules, whose checkpoint tensors are [in, out]
 * (PEFT's fan_in_fan_out). In the graph every weight follows peftc's linear convention, [out, in]
 * (frontend/linear.h): the model family transposes Conv1D tensors once when it loads them and
 * back when it writes, so every adapter method applies unchanged. Their sites are marked conv1d.
 * Every weight is a frozen param without init (it must be loaded). */
#ifndef PEFTC_FRONTEND_GPT2_H
#define PEFTC_FRONTEND_GPT2_H

#include "frontend/family.h"
#include "peftc/peftc.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int dim, hidden_dim, n_layers, n_heads, vocab_size, n_positions;
    double norm_eps;            /* layer_norm_epsilon, 1e-5 */
    int gelu_tanh;              /* 1: gelu_new / gelu_pytorch_tanh (GPT-2's), 0: gelu (erf form) */
    int scale_attn_weights;     /* 1: scores / sqrt(head_dim) */
    int scale_by_inverse_layer; /* 1: scores of layer i also / (i + 1) */
    int tied;                   /* 1: logits use transformer.wte.weight (no lm_head) */
} pc_gpt2_config;

/* ignore index of the training targets (PyTorch's default) */
#define PC_GPT2_IGNORE (-100)

/* GPT-2's defaults for the optional fields (eps 1e-5, tanh gelu, scaled attention, tied) and
 * zero sizes */
pc_gpt2_config pc_gpt2_config_default(void);
/* 0, or -1 with a message naming the offending field */
int pc_gpt2_config_check(const pc_gpt2_config *cfg, char *err, size_t errlen);

/* 1 when `key` is the weight of one of the Conv1D modules above (stored [in, out]) */
int pc_gpt2_is_conv1d_key(const char *key);

/* Any graph of the family with the adapter sites handed to `hook` (NULL: none), with the
 * contracts of frontend/family.h:
 *   LM       %tokens, %targets i32[B,S] -> %loss (mean cross-entropy over targets !=
 *            PC_GPT2_IGNORE) [, %logits f32[B,S,V]]; positions 0..S-1
 *   FORWARD  %tokens -> %logits
 *   DECODE   %token i32[B,1], %pos i32[1], %mask f32[T+1], %k_cache.{i}, %v_cache.{i}
 *            f32[B,T,H,Dh] -> %logits f32[B,1,V], %k_new.{i}, %v_new.{i} f32[B,1,H,Dh]
 *            (keys = concat(cache, new) along T, mask[j] added to the score of key j; kv_row =
 *            dim floats per entry)
 * NULL with a message on error. */
pc_graph *pc_gpt2_build(const pc_gpt2_config *cfg, const pc_build_req *req, const pc_site_hook *hook, char *err,
                        size_t errlen);

extern const pc_model_family pc_family_hf_gpt2;

#ifdef __cplusplus
}
#endif
#endif
