/* BERT and RoBERTa encoders: graphs of a frozen post-LayerNorm bidirectional transformer with
 * Hugging Face module names, emitting adapter sites (peftc/adapter.h) at every linear, the word
 * embeddings, the positions, each attention's K/V, each FFN and block output, the last hidden
 * state and the classification head.
 *
 * Module names are those of transformers' *ForSequenceClassification (task SEQ_CLASSIFY) or of
 * the bare BertModel / RobertaModel (task FEATURE_EXTRACT), which PEFT's keys follow: with
 * P = "bert." / "roberta." for SEQ_CLASSIFY and P = "" for FEATURE_EXTRACT,
 *   P embeddings.word_embeddings         [vocab, dim]           (the EMBED site)
 *   P embeddings.position_embeddings     [max_positions, dim]
 *   P embeddings.token_type_embeddings   [type_vocab, dim]
 *   P embeddings.LayerNorm               weight, bias [dim]
 *   P encoder.layer.{i}.attention.self.{query,key,value}   linear dim -> dim, with bias
 *   P encoder.layer.{i}.attention.output.dense             linear dim -> dim
 *   P encoder.layer.{i}.attention.output.LayerNorm
 *   P encoder.layer.{i}.intermediate.dense                 linear dim -> hidden_dim
 *   P encoder.layer.{i}.output.dense                       linear hidden_dim -> dim
 *   P encoder.layer.{i}.output.LayerNorm
 *   SEQ_CLASSIFY, BERT:    bert.pooler.dense (dim -> dim, tanh, on position 0), classifier
 *                          (dim -> num_labels)
 *   SEQ_CLASSIFY, RoBERTa: classifier.dense (dim -> dim, tanh, on position 0 = <s>),
 *                          classifier.out_proj (dim -> num_labels)
 * Every weight is a frozen param keyed "<module>.weight" / "<module>.bias" (frontend/linear.h).
 * Encoder weights have no init (they must be loaded); the pooler and classifier weights are
 * declared with transformers' init (normal(0, initializer_range), zero bias: pc_bert_head_init)
 * so a family can supply them for a checkpoint that lacks them (a bare encoder).
 *
 * Sites (module names with P as above; L = layer i):
 *   PC_SITE_EMBED      P embeddings.word_embeddings       word embeddings [B,S,D] (ids, table)
 *   PC_SITE_POSITIONS  P embeddings.position_ids          positions i32[S]: 0..S-1 (BERT),
 *                      padding_idx+1 .. padding_idx+S (RoBERTa; a method that lengthens the
 *                      sequence shifts them, as prompt tuning does; RoBERTa left as they are
 *                      takes its positions from the token ids instead, see below)
 *   PC_SITE_LINEAR     every linear above                 x Wᵀ + b (x, weight, bias, in, out)
 *   PC_SITE_ATTN_KV    P encoder.layer.L.attention.self   keys, values [B,Sk,H,Dh]
 *   PC_SITE_FFN        P encoder.layer.L.output           output.dense's output before dropout,
 *                      residual and LayerNorm; x = the FFN's input (the attention block output)
 *   PC_SITE_BLOCK      P encoder.layer.L                  the layer's output [B,S,D]
 *   PC_SITE_FINAL      P encoder                          the last hidden state [B,S,D]
 *   PC_SITE_HEAD       classifier                         logits [B, num_labels] (SEQ_CLASSIFY)
 * A method that lengthens the sequence at the EMBED site (prompt tuning: P' virtual tokens
 * first) gets the rest built for the longer sequence: the attention mask and the token types
 * are extended in front (attended, type 0), as PEFT does; keys lengthened at the ATTN_KV site
 * (prefix tuning) are attended too. The HEAD site's value must keep its shape.
 *
 * Attention is bidirectional with a padding mask: %attention_mask [B,S] (nonzero = a real
 * token, 0 = padding) adds -1e30 to the scores of padding keys, so a padding token's
 * softmax weight is exactly 0 and never changes a real token's outputs. BERT's positions are
 * 0..S-1 whatever the padding (transformers' default position_ids); RoBERTa's are computed from
 * the token ids as create_position_ids_from_input_ids does (a token that is not pad_token_id
 * gets padding_idx + its rank among such tokens, padding gets padding_idx), unless an adapter
 * replaced the positions at the site (then those, as transformers' inputs_embeds path).
 * Dropout (hidden_dropout, attention_dropout, classifier_dropout, as transformers places them)
 * is built only in PC_ADAPT_TRAIN graphs, drawn from the graph's %seed input. */
#ifndef PEFTC_FRONTEND_BERT_H
#define PEFTC_FRONTEND_BERT_H

#include "frontend/family.h"
#include "peftc/peftc.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { PC_BERT_GELU = 0, PC_BERT_GELU_TANH, PC_BERT_RELU, PC_BERT_SILU } pc_bert_act;

typedef struct {
    int roberta;          /* 0 BERT, 1 RoBERTa (module prefix, positions, classification head) */
    int dim, hidden_dim, n_layers, n_heads, vocab_size;
    int max_positions;    /* max_position_embeddings: rows of the position table */
    int type_vocab_size;  /* rows of the token-type table (>= 1) */
    int num_labels;       /* classifier outputs (>= 2: single-label classification) */
    int pad_token_id;     /* RoBERTa's padding_idx: positions start at pad_token_id + 1 */
    double norm_eps;      /* layer_norm_eps (1e-12) */
    pc_bert_act act;      /* hidden_act: gelu (erf form), gelu_new / gelu_pytorch_tanh, relu, silu */
    double hidden_dropout, attention_dropout, classifier_dropout; /* TRAIN graphs only */
    double initializer_range; /* std of the head's init (0.02) */
} pc_bert_config;

/* BERT's defaults (transformers' BertConfig: eps 1e-12, gelu, dropouts 0.1, 512 positions,
 * 2 token types, 2 labels, pad 0, init 0.02) with zero sizes; roberta = 1 sets pad 1 */
pc_bert_config pc_bert_config_default(int roberta);
/* 0, or -1 with a message naming the offending field (config.json's names) */
int pc_bert_config_check(const pc_bert_config *c, char *err, size_t errlen);
/* the module prefix of SEQ_CLASSIFY graphs: "bert" or "roberta" */
const char *pc_bert_prefix(const pc_bert_config *c);
/* positions the model can take: max_positions (BERT), max_positions - pad_token_id - 1 (RoBERTa) */
int pc_bert_context(const pc_bert_config *c);

/* The init a head param is declared with (transformers' _init_weights for nn.Linear): its
 * init for key "<module>.weight" / ".bias" of the pooler or classifier, PC_INIT_NONE for any
 * other key (an encoder weight). */
pc_init pc_bert_head_init(const pc_bert_config *c, const char *key);

/* A graph of the encoder (frontend/family.h states the contracts):
 *   SEQ_CLASSIFY: %tokens i32[B,S], %attention_mask [B,S] (req->mask_dtype), [%token_type_ids
 *     i32[B,S] when req->token_type_ids], %labels i32[B] -> %loss (mean cross-entropy over
 *     labels != -100, PC_LOSS), %logits f32[B,num_labels]
 *   FEATURE_EXTRACT: the same inputs without %labels -> %last_hidden_state f32[B,S,D]
 * with the adapter sites handed to `hook` (NULL: none). Other tasks are refused (an encoder
 * has no LM head and no KV cache). NULL with a message on error. */
pc_graph *pc_bert_build(const pc_bert_config *cfg, const pc_build_req *req, const pc_site_hook *hook, char *err,
                        size_t errlen);

/* The Hugging Face family (frontend/hf_bert_family.c): its config from an open model (NULL for a
 * model of another family). */
const pc_bert_config *pc_hf_bert_config(const pc_model *m);
extern const pc_model_family pc_family_hf_bert;

#ifdef __cplusplus
}
#endif
#endif
