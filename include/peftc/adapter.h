/* peftc adapter methods: the one interface every method implements, built-in or a user's own.
 *
 * A model builder emits *sites*, stable hook points named like PEFT module paths, and hands each
 * one to the adapters applied to the graph (llama.cpp's "one choke point per projection",
 * extended past linears). A method rewrites the sites it wants: it gets the site's value and
 * replaces it with its own subgraph. A rewrite may change the value's type (prompt tuning makes
 * the sequence longer): the builder reads the shapes of what comes back and builds on.
 *
 *   static int gain_rewrite(pc_adapt_ctx *cx, void *state, pc_site *s, char *err, size_t errlen) {
 *       if (s->kind != PC_SITE_LINEAR || pc_adapt_targets(cx, s->module) != 1) return 0;
 *       pc_val g = pc_adapt_param(cx, s, "gain", PC_SHAPE(s->out), (pc_init){PC_INIT_ONES});
 *       s->value = pc_mul_at(s->g, s->loc, s->value, g);
 *       return 1;
 *   }
 *   static const pc_adapter_method gain = {.name = "gain", .peft_type = "GAIN",
 *                                          .sites = PC_SITE_LINEAR, .rewrite = gain_rewrite};
 *   pc_registry_add(reg, &gain, err, sizeof err);
 *
 * Parameters a method creates through pc_adapt_param are keyed as PEFT keys them
 * ("base_model.model.<module>.<tensor>"), are trainable while training and frozen otherwise, and
 * are saved, loaded, merged and permuted by every verb without further code. */
#ifndef PEFTC_ADAPTER_H
#define PEFTC_ADAPTER_H

#include "peftc/peftc.h"

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Site kinds (a bit set in pc_adapter_method.sites). What `value` is at each: */
typedef enum {
    PC_SITE_LINEAR = 1u << 0,    /* x Wᵀ (+ b) [..., out]; x, weight, bias, in, out are set */
    PC_SITE_EMBED = 1u << 1,     /* input embeddings [B, S, D]; ids i32[B, S] and weight = table [V, D] */
    PC_SITE_POSITIONS = 1u << 2, /* positions i32[S] of the sequence (a decode step: i32[1]) */
    PC_SITE_ATTN_KV = 1u << 3,   /* keys [B, Sk, Hkv, Dh] after RoPE; value2 = values [B, Sk, Hkv, Dh] */
    PC_SITE_FFN = 1u << 4,       /* FFN block output [B, S, D]; x = its input (after the norm) */
    PC_SITE_BLOCK = 1u << 5,     /* transformer block output [B, S, D] (residual stream) */
    PC_SITE_FINAL = 1u << 6,     /* final hidden state after the last norm [B, S, D] */
    PC_SITE_HEAD = 1u << 7,      /* logits [B, S, V]; a sequence classifier's: [B, num_labels] */
} pc_site_kind;

typedef struct pc_site {
    pc_site_kind kind;
    const char *module;   /* PEFT module path: "model.layers.0.self_attn.q_proj", "model.embed_tokens",
                             "model.layers.0.self_attn", "model.layers.0.mlp", "model.layers.0",
                             "model.norm", "lm_head" */
    int layer;            /* the layer index PEFT reads from the path, or -1 */
    pc_graph *g;          /* append the replacement here */
    pc_loc loc;           /* where the model made the site */
    pc_val value;         /* what the site produces; a rewrite replaces it */
    pc_val value2;        /* PC_SITE_ATTN_KV: the values */
    pc_val x;             /* LINEAR, FFN: the input */
    pc_val weight, bias;  /* LINEAR: frozen W [out, in] and b [out] or PC_NONE; EMBED: the table */
    pc_val ids;           /* EMBED: the token ids */
    int64_t in, out;      /* LINEAR: features */
} pc_site;

/* how a graph is used: dropout is active only in TRAIN; DECODE graphs run one new token against
 * a KV cache (virtual tokens are fed by the generation loop, see virtual_tokens) */
typedef enum { PC_ADAPT_TRAIN = 0, PC_ADAPT_EVAL, PC_ADAPT_DECODE } pc_adapt_mode;

struct pc_adapter_config; /* runtime/adapter_config.h: a PEFT config (built-in methods read it) */

/* One adapter applied to one graph: the method, its config, the mode. Opaque. */
typedef struct pc_adapt_ctx pc_adapt_ctx;

/* The model facts a method may need (sizes for its params, checks against the context). */
typedef struct {
    const char *model_type; /* transformers model_type: "llama" */
    int dim, vocab, context, n_layers, n_heads, n_kv_heads;
    int num_labels;         /* outputs of a sequence-classification head (0: the model has none) */
    const char *head_weight; /* the key of that head's output weight [num_labels, ...], NULL without */
    /* generation: the token an empty prompt starts from, and the one that ends the text (-1:
     * none). llama2.c: 1 and 1 (run.c stops at BOS); Hugging Face and GGUF: the checkpoint's BOS
     * and EOS ids */
    int start_id, stop_id;
    /* a bidirectional encoder (BERT, RoBERTa): its graphs are SEQ_CLASSIFY and FEATURE_EXTRACT,
     * not the causal-LM ones */
    bool encoder;
    /* the model's projections are transformers Conv1D modules (GPT-2), whose checkpoint stores
     * W as [in, out]: PEFT sets fan_in_fan_out = true for them. The family hands them to the
     * graph as [out, in] like any linear, so the adapter math is the same. */
    bool conv1d;
} pc_model_info;

/* A frozen base tensor by checkpoint key (inits computed from the base: DoRA's magnitude,
 * prompt tuning's TEXT init), else a tensor of the run by its key as the store filled it (from
 * the adapter file or its declared init: DoRA reads lora_A and lora_B), else an f32 tensor of
 * the adapter file the run started from that is not one of the run's params (P-tuning finds a
 * saved prompt_embeddings there). NULL when there is no such tensor. */
typedef const float *(*pc_base_lookup)(void *ctx, const char *key, pc_shape *shape);

/* The tensors of a run by key, for the callbacks that run between steps: `get` returns a param's
 * current values (writable: a step hook may mask them), NULL when the key is unknown; `put`
 * (save_tensors only) adds a copy of a tensor to the adapter file being written; `key_at` lists
 * the adapter's params (the i-th key, NULL past the last; ctx get_ctx); `grad` (step_hook only,
 * else NULL) gives the gradient of the step just taken for a trainable param as the optimizer
 * applied it: averaged over micro-batches and scaled by the clip coefficient, i.e. what PyTorch's
 * p.grad holds after clip_grad_norm_ and optimizer.step() (NULL when the key is unknown). */
typedef struct {
    float *(*get)(void *get_ctx, const char *key, pc_shape *shape);
    int (*put)(void *put_ctx, const char *key, pc_shape shape, const float *data);
    void *get_ctx, *put_ctx;
    const char *(*key_at)(void *get_ctx, int i);
    const float *(*grad)(void *grad_ctx, const char *key, pc_shape *shape);
    void *grad_ctx;
} pc_tensor_io;

typedef struct pc_adapter_method {
    const char *name;      /* registry name, lower case: "lora" */
    const char *peft_type; /* the adapter_config.json "peft_type" that selects it: "LORA" */
    unsigned sites;        /* the PC_SITE_* kinds `rewrite` is called for */
    size_t state_size;     /* bytes of per-application state handed to the callbacks (zeroed) */

    /* Validates the config and fills the state (matchers, sizes). Errors name the config field
     * ("field num_virtual_tokens: ..."); the caller prefixes the file. Optional. */
    int (*begin)(pc_adapt_ctx *cx, void *state, char *err, size_t errlen);
    void (*end)(void *state); /* frees what begin made. Optional. */

    /* Rewrites one site: sets s->value (and s->value2) to the replacement. Returns 1 when it
     * rewrote the site, 0 when it left it alone, -1 on error (message in err or the graph's
     * sticky error). Required. */
    int (*rewrite)(pc_adapt_ctx *cx, void *state, pc_site *s, char *err, size_t errlen);

    /* After the whole graph is built: -1 when the application is not valid, e.g. nothing was
     * targeted (PEFT raises there too). Optional: the default requires >= 1 rewritten site. */
    int (*finish)(pc_adapt_ctx *cx, void *state, int nrewritten, char *err, size_t errlen);

    /* Merging into a linear (PEFT's merge_and_unload): builds W' from s->weight (and the bias
     * into *bias, left PC_NONE when unchanged) with the method's params, or returns 0 when the
     * module is not adapted. 1 merged, -1 error. NULL: not mergeable, for `not_mergeable`. */
    int (*merge_linear)(pc_adapt_ctx *cx, void *state, const pc_site *s, pc_val *weight, pc_val *bias,
                        char *err, size_t errlen);
    const char *not_mergeable; /* why merging is impossible (prompt methods) */
    /* The inverse: W (and b) from a merged s->weight (s->bias), as PEFT's unmerge. Optional. */
    int (*unmerge_linear)(pc_adapt_ctx *cx, void *state, const pc_site *s, pc_val *weight, pc_val *bias,
                          char *err, size_t errlen);

    /* 1 when the rows of this adapter tensor are the module's output rows (they follow a
     * Llama's q/k RoPE row order, see --hf-qk-rows); tensor is the key's tail after the
     * module: "lora_B.weight". Optional (no such rows). */
    int (*output_rows)(const char *tensor);

    /* Tokens the method prepends to every sequence (prompt methods): graphs built in DECODE
     * mode expect the generation loop to feed them first, as ids vocab .. vocab+P-1 at
     * positions 0..P-1. Optional (0). */
    int (*virtual_tokens)(pc_adapt_ctx *cx, void *state);

    /* Positions 0..n-1 of every sequence that the method fills at every attention itself, as
     * key/value rows without tokens (prefix tuning): the real tokens sit at positions n..; graphs
     * built in DECODE mode supply KV-cache rows 0..n-1 themselves (they replace what the cache
     * holds there), so the generation loop runs no step for them, starts the first token at
     * position n and lets it attend to rows 0..n-1. Counts against the context like virtual
     * tokens. Optional (0). */
    int (*prefix_positions)(pc_adapt_ctx *cx, void *state);

    /* Fills a trainable param whose init needs the frozen base (TEXT init from embeddings).
     * Returns 1 when it filled `data`, 0 to keep the param's declared init. Optional. */
    int (*init_from_base)(pc_adapt_ctx *cx, void *state, const char *key, float *data, pc_shape shape,
                          pc_base_lookup base, void *base_ctx, char *err, size_t errlen);

    /* A term added to the training loss (AdaLoRA's orthogonal regularizer, T-Few's losses):
     * built once in TRAIN mode after the model, in g; returns a scalar f32, or PC_NONE for none
     * (an error: the graph's sticky error). Optional. */
    pc_val (*loss_term)(pc_adapt_ctx *cx, void *state, pc_graph *g, pc_val loss, char *err, size_t errlen);

    /* Called by the trainer after every optimizer step with the adapter's tensors (AdaLoRA's
     * rank allocator). Optional. */
    int (*step_hook)(pc_adapt_ctx *cx, void *state, int step, const pc_tensor_io *io, char *err, size_t errlen);

    /* What the adapter file holds, when it is not every trainable param under its key: puts
     * PEFT's tensors (P-tuning's prompt_embeddings computed by its encoder, AdaLoRA's pruned
     * ranks) and returns 1, or 0 for the default. Optional (the default). */
    int (*save_tensors)(pc_adapt_ctx *cx, void *state, const pc_tensor_io *io, char *err, size_t errlen);

    /* Edits the config written beside the saved tensors (a copy of the run's config; AdaLoRA
     * records the ranks its allocator kept in rank_pattern). 0 or -1. Optional. */
    int (*save_config)(pc_adapt_ctx *cx, void *state, struct pc_adapter_config *cfg, char *err, size_t errlen);

    /* A training run's state beyond its params and their optimizer moments (AdaLoRA's importance
     * EMAs and rank masks), so that --resume continues the run exactly: save_state puts tensors
     * into a resumable checkpoint with io->put (keys "peftc.<method>.<...>", apart from the
     * params'), load_state reads them back with io->get, which also gives the run's params as
     * the checkpoint restored them (io->key_at lists those). 0 or -1. Optional, both or neither. */
    int (*save_state)(pc_adapt_ctx *cx, void *state, const pc_tensor_io *io, char *err, size_t errlen);
    int (*load_state)(pc_adapt_ctx *cx, void *state, const pc_tensor_io *io, char *err, size_t errlen);

    /* Mixed-adapter batches (inference): one graph serves several trained adapters of this
     * method at once, each row of the batch with its own (or none: the base model). Rewrites a
     * site for all the members (pc_adapt_members, pc_adapt_member: each member's config, targets
     * and params as in `rewrite`) and selects each row's with pc_adapt_rows, so the graph does
     * one adapter's work per row (punica's BGMV), not one pass per adapter. Same returns as
     * `rewrite`. NULL: the method cannot be mixed in one batch (its message says so). */
    int (*rewrite_mixed)(pc_adapt_ctx *cx, void *state, pc_site *s, char *err, size_t errlen);
} pc_adapter_method;

/* ---- what a method's callbacks may ask of the context ---- */
pc_adapt_mode pc_adapt_get_mode(const pc_adapt_ctx *cx);
bool pc_adapt_trainable(const pc_adapt_ctx *cx); /* params trainable (else frozen: a trained adapter) */
/* the graph belongs to a training run: true for its step graph and for the evaluation graph that
 * shares the run's params (frozen there), false where a trained adapter is applied (eval,
 * generate, compile, merge). A method whose trained params differ from what it saves (P-tuning
 * trains an encoder, saves its output) builds the training form whenever this is true. */
bool pc_adapt_training_run(const pc_adapt_ctx *cx);
const pc_model_info *pc_adapt_model(const pc_adapt_ctx *cx);
/* PEFT's target matching of the config (target_modules, exclude_modules, layers_to_transform,
 * modules_to_save): 1 targeted, 0 not, -1 error */
int pc_adapt_targets(pc_adapt_ctx *cx, const char *module);
/* The config (runtime/adapter_config.h's struct) for built-in methods */
const struct pc_adapter_config *pc_adapt_config(const pc_adapt_ctx *cx);
/* a field of the config the method defines itself: 0 found, 1 absent (out = dflt), -1 wrong type */
int pc_adapt_config_number(const pc_adapt_ctx *cx, const char *field, double dflt, double *out);
/* The method's param `tensor` of a site: key "base_model.model.<module>.<tensor>" (for a site
 * whose module the method set to NULL: "<tensor>", as PEFT keys prompt_embeddings), created
 * once per key (a second call returns the same value), trainable when training. */
pc_val pc_adapt_param(pc_adapt_ctx *cx, const pc_site *s, const char *tensor, pc_shape shape, pc_init init);
/* ids of `text` by the model's tokenizer with BOS first (as PEFT's tokenizer(text) for a Llama):
 * how many (at most cap), or -1 when the run has no tokenizer */
int pc_adapt_tokenize(pc_adapt_ctx *cx, const char *text, int32_t *ids, int cap);
/* the run's seed (--seed), for inits drawn by a method */
uint64_t pc_adapt_seed(const pc_adapt_ctx *cx);
/* The task a multitask method (MPT's per-task prompts) serves where the graph cannot take the
 * task per row: DECODE graphs bake it in (peftc generate --task-id N); train and eval graphs
 * instead read a per-row i32 input %task_ids [B] the method creates and the drivers fill, and a
 * method may still check this one (the driver's --task-id) against its task count. 0 unless the
 * driver set another. */
int pc_adapt_task(const pc_adapt_ctx *cx);
/* a 0/1 f32 mask of `shape`, each entry 1 with probability 1 - p, drawn like dropout from the
 * graph's %seed, distinct per site and `tag` (rank and module dropout of LoHa/LoKr) */
pc_val pc_adapt_keep_mask(pc_adapt_ctx *cx, const pc_site *s, pc_shape shape, double p, const char *tag);
/* dropout(x, p) with the graph's %seed input, distinct per site; identity unless training */
pc_val pc_adapt_dropout(pc_adapt_ctx *cx, const pc_site *s, pc_val x, double p);

/* ---- mixed-adapter batches (rewrite_mixed) ----
 * The adapters a mixed graph serves: 0 outside rewrite_mixed. Member i is an ordinary context of
 * adapter i (its config, pc_adapt_targets, pc_adapt_param; its params are keyed
 * "<adapter name>/<PEFT key>" and loaded from that adapter's file, frozen). */
int pc_adapt_members(const pc_adapt_ctx *cx);
pc_adapt_ctx *pc_adapt_member(pc_adapt_ctx *cx, int i);
/* Each row's tensor: per_member[0..N] (N = pc_adapt_members; entry N is the base model's,
 * usually the method's identity: zeros for LoRA, ones for IA3) all of one shape, weights only
 * (so the inference graph folds their stack [N+1, ...] once); rows are selected by the i32
 * input %adapter_ids [batch] (created on first use; the drivers fill it, N = the base model)
 * with the embedding op. Returns [batch, shape...]. */
pc_val pc_adapt_rows(pc_adapt_ctx *cx, const pc_site *s, const pc_val *per_member, int64_t batch);

/* ---- the registry: methods by name, built-in and registered ---- */
typedef struct pc_registry pc_registry;

pc_registry *pc_registry_new(void); /* holds the built-in methods */
void pc_registry_free(pc_registry *r);
/* adds a method (the struct must outlive the registry); a taken name or peft_type is an error */
int pc_registry_add(pc_registry *r, const pc_adapter_method *m, char *err, size_t errlen);
/* by name ("lora") or peft_type ("LORA"), NULL when unknown */
const pc_adapter_method *pc_registry_find(const pc_registry *r, const char *name);
int pc_registry_count(const pc_registry *r);
const pc_adapter_method *pc_registry_at(const pc_registry *r, int i);

/* The peftc command line with a registry: `peftc VERB ARGS...` where argv[0] is the program and
 * argv[1] the verb. A program that registers its own methods and calls this is peftc with
 * those methods (examples/custom_adapter.c). Returns the exit code. */
int pc_cli_main(const pc_registry *r, int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
