/* Model families: what a driver needs of a model, whatever its architecture and file format.
 *
 * A family opens its checkpoint, names every frozen weight by its Hugging Face key, builds the
 * graphs of a task from a request (emitting adapter sites through a hook), and writes a
 * checkpoint in its own format with some weights replaced (merging). Drivers bind frozen params
 * by key through pc_model_weight, run the one generation loop over the family's decode graph,
 * and fill PEFT's default target_modules from its model_type.
 *
 * Decode graphs follow one contract (drivers/decode.c relies on it):
 *   inputs  %token i32[B,1], %pos i32[1], %mask f32[T+1] (0 attend, -1e30 ignore; entry T is the
 *           new token), %k_cache.{i}, %v_cache.{i} f32[B, T, ...] with info.kv_row floats per
 *           cache entry, for i < info.n_layers
 *   outputs %logits f32[B,1,V], %k_new.{i}, %v_new.{i} f32[B,1,...] (what to store at pos)
 * LM graphs: inputs %tokens, %targets i32[B,S]; output %loss (mean cross-entropy over targets
 * != -100) flagged PC_LOSS, and %logits f32[B,S,V] when asked; with req.choices > 0 the loss is
 * the multiple-choice objective of frontend/lm_objective.h (input %labels). FORWARD graphs:
 * input %tokens, output %logits.
 * Encoder graphs (BERT, RoBERTa: frontend/bert.h), S = req.seq tokens per row:
 *   SEQ_CLASSIFY (PEFT's SEQ_CLS)
 *     inputs  %tokens i32[B,S]; %attention_mask [B,S] of req.mask_dtype (f32 or i32; nonzero =
 *             a real token, 0 = padding: padding keys are never attended, so padding never
 *             changes a real token's outputs); %token_type_ids i32[B,S] only when
 *             req.token_type_ids (else every token has type 0); %labels i32[B] (-100 ignored)
 *     outputs %loss f32[] (mean cross-entropy over the labels, flagged PC_LOSS) and %logits
 *             f32[B, num_labels] (always), num_labels = pc_model_info.num_labels
 *   FEATURE_EXTRACT (PEFT's FEATURE_EXTRACTION)
 *     inputs  %tokens, %attention_mask, [%token_type_ids] as above
 *     output  %last_hidden_state f32[B,S,D] (the encoder's output; padding rows are computed
 *             but meaningless)
 * Families without an encoder refuse these tasks, encoders refuse LM, FORWARD and DECODE. */
#ifndef PEFTC_FRONTEND_FAMILY_H
#define PEFTC_FRONTEND_FAMILY_H

#include "peftc/adapter.h"
#include "peftc/peftc.h"
#include "runtime/text_tokenizer.h"

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Where a builder hands its sites: the adapters applied to the graph (drivers wire it to
 * pc_adapt_site). fn returns 0 (s->value possibly replaced) or -1 with a message. */
typedef struct {
    int (*fn)(void *ctx, pc_site *s, char *err, size_t errlen);
    void *ctx;
} pc_site_hook;

/* Gives a site to the hook (if any) and returns the value that stands for it; on failure the
 * hook's message becomes the graph's sticky error. */
pc_val pc_emit_site(const pc_site_hook *h, pc_site *s);

/* LM: tokens, targets -> loss (train/eval); FORWARD: tokens -> logits (inference, no loss);
 * DECODE: one token against a KV cache; SEQ_CLASSIFY: padded sequences, labels -> loss and
 * per-sequence logits; FEATURE_EXTRACT: padded sequences -> last hidden state (encoders; the
 * names differ from PEFT's task_type enumerators SEQ_CLS / FEATURE_EXTRACTION in
 * runtime/adapter_config.h, which drivers see beside these) */
typedef enum {
    PC_TASK_LM = 0,
    PC_TASK_FORWARD,
    PC_TASK_DECODE,
    PC_TASK_SEQ_CLASSIFY,
    PC_TASK_FEATURE_EXTRACT,
} pc_graph_task;

/* what an LM graph's loss is on multiple-choice rows (req.choices > 0): the cross-entropy of the
 * correct choice's tokens (LM), or T-Few's L_LM + L_UL + L_LN (frontend/lm_objective.h) */
typedef enum { PC_OBJECTIVE_LM = 0, PC_OBJECTIVE_TFEW } pc_objective;

typedef struct {
    pc_graph_task task;
    int64_t batch;
    int64_t seq;        /* LM, SEQ_CLASSIFY, FEATURE_EXTRACT: tokens per row; DECODE: the KV-cache length T */
    bool output_logits; /* LM: also output %logits */
    pc_adapt_mode mode; /* what the sites are told */
    bool token_type_ids; /* SEQ_CLASSIFY, FEATURE_EXTRACT: also input %token_type_ids (else all type 0) */
    pc_dtype mask_dtype; /* SEQ_CLASSIFY, FEATURE_EXTRACT: %attention_mask's dtype, PC_F32 (0) or PC_I32 */
    /* LM: multiple-choice rows, `choices` per example (batch a multiple of it; 0 = none) and the
     * objective on them; output_nll: also output %nll f32[batch,seq], the per-position
     * cross-entropy (0 at ignored targets) */
    int64_t choices;
    pc_objective objective;
    bool output_nll;
    /* LM: MPT's prompt distillation (frontend/distill_objective.h). distill_weight > 0 adds
     * λ·(L_KL + L_hidden) against inputs %teacher_logits and %teacher_hidden to the loss, at
     * temperature distill_temperature; output_hidden also outputs %final_hidden (the teacher's
     * graph) */
    double distill_weight, distill_temperature;
    bool output_hidden;
} pc_build_req;

/* A frozen tensor replaced by the caller (merged weights), by key; data borrowed. */
typedef struct {
    const char *key;
    pc_shape shape;
    const float *data;
} pc_weight;

typedef struct pc_model pc_model;

typedef struct pc_model_family {
    const char *name;       /* "llama2c" */
    const char *model_type; /* transformers model_type, for PEFT's default targets: "llama" */
    const char *format;     /* what `merge` writes: "llama2.c checkpoint" */
    /* 1 when this family reads `path` */
    int (*probe)(const char *path);
    int (*open)(pc_model *m, const char *path, char *err, size_t errlen);
    void (*close)(pc_model *m);
    pc_graph *(*build)(const pc_model *m, const pc_build_req *req, const pc_site_hook *hook, char *err,
                       size_t errlen);
    /* the checkpoint's tensor with this key, or NULL */
    const float *(*weight)(const pc_model *m, const char *key, pc_shape *shape);
    /* optional: the tensor as the checkpoint stores it when that is bf16 (no f32 copy made), else
     * NULL; a bf16 base binds it as it is (--base-dtype bf16) */
    const uint16_t *(*weight_bf16)(const pc_model *m, const char *key, pc_shape *shape);
    /* every checkpoint key, in file order (merge walks them) */
    int (*nweights)(const pc_model *m);
    const char *(*weight_key)(const pc_model *m, int i);
    /* writes the checkpoint with the given tensors replaced, atomically */
    int (*write)(const pc_model *m, const char *path, const pc_weight *replaced, int n, char *err, size_t errlen);
    /* rows per head of a q/k projection whose output rows follow RoPE's pair order (the
     * llama2.c <-> Hugging Face permutation of --hf-qk-rows); 0 = none. module: "...q_proj" */
    int (*rotary_rows)(const pc_model *m, const char *module);
    /* the model's own tokenizer (beside a llama2.c checkpoint, an HF directory's
     * tokenizer.json, a GGUF's vocabulary), used when no --tokenizer is given; NULL with err
     * left "" when the model has none, NULL with a message when it is broken. May be NULL. */
    pc_text_tokenizer *(*tokenizer)(const pc_model *m, char *err, size_t errlen);
} pc_model_family;

struct pc_model {
    const pc_model_family *family;
    char *path;
    /* asked of open: a classifier head of this many labels (transformers' from_pretrained(
     * num_labels=N)), 0 = the config's; a head in the checkpoint must have as many */
    int num_labels;
    pc_model_info info;
    int kv_row;         /* floats per KV-cache entry and layer (decode graphs) */
    void *impl;         /* the family's own state */
    /* what open wants the user told when the model is used as it is (a head the checkpoint
     * lacks, made at open); the session prints it unless the adapter brings that head. Owned. */
    char *head_note;
    /* replaced weights (a merged adapter), looked up before the checkpoint; owned */
    pc_weight *over;
    int nover;
    float *over_buf;
};

/* The decode contract's values (see the top of this file), for the builders: the inputs made by
 * pc_decode_begin (k_new / v_new left PC_NONE for the builder to fill), named and marked as
 * outputs by pc_decode_end (which frees the arrays). */
typedef struct {
    pc_val token, pos, mask;
    pc_val *k_cache, *v_cache, *k_new, *v_new; /* [n_layers] each */
    int n_layers;
} pc_decode_io;

/* inputs for batch B, cache length T, n_layers layers of [kv_heads, head_dim] entries; -1 when
 * out of memory */
int pc_decode_begin(pc_graph *g, pc_decode_io *io, int64_t B, int64_t T, int n_layers, int64_t kv_heads,
                    int64_t head_dim);
void pc_decode_end(pc_graph *g, pc_decode_io *io, pc_val logits);

/* the tokenizer of a Hugging Face model directory (its tokenizer.json), for the HF families'
 * tokenizer callback: NULL with err "" when the directory has none */
pc_text_tokenizer *pc_hf_dir_tokenizer(const pc_model *m, char *err, size_t errlen);

/* the family that reads `path` (by content, as pc_model_open picks it), NULL when none does */
const pc_model_family *pc_model_family_of(const char *path);
/* Opens `path` with the family that probes it (or the one named, e.g. "llama2c"). */
int pc_model_open(pc_model *m, const char *path, const char *family, char *err, size_t errlen);
/* the same, asking for a classification head of num_labels labels (0 = the config's) */
int pc_model_open_labels(pc_model *m, const char *path, const char *family, int num_labels, char *err, size_t errlen);
void pc_model_close(pc_model *m);
/* a frozen weight: a replaced one first, then the checkpoint */
const float *pc_model_weight(const pc_model *m, const char *key, pc_shape *shape);
/* the checkpoint's own bf16 tensor (family->weight_bf16), NULL when it is not bf16 in the file,
 * the family cannot say, or a merge replaced it */
const uint16_t *pc_model_weight_bf16(const pc_model *m, const char *key, pc_shape *shape);
pc_graph *pc_model_build(const pc_model *m, const pc_build_req *req, const pc_site_hook *hook, char *err,
                         size_t errlen);
/* takes ownership of buf (the replaced tensors' storage) and of the array */
void pc_model_set_replaced(pc_model *m, pc_weight *w, int n, float *buf);

#ifdef __cplusplus
}
#endif
#endif
