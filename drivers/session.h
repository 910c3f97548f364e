/* What every model verb opens first: the frozen base model (a family's checkpoint), its
 * tokenizer, and optionally an adapter (a config to train from, or a trained adapter
 * directory) with the method that implements it. */
#ifndef PEFTC_DRIVERS_SESSION_H
#define PEFTC_DRIVERS_SESSION_H

#include "backend/exec.h"
#include "frontend/family.h"
#include "passes/adapt.h"
#include "runtime/adapter_io.h"
#include "runtime/text_tokenizer.h"

#include <stdbool.h>

struct pc_store;

/* One of several adapters loaded onto the base model under a name (drivers/session_named.c) */
typedef struct {
    char *name, *source;            /* the name (PEFT's adapter_name) and the path it came from */
    pc_adapter_files files;         /* owned */
    const pc_adapter_method *method;
} pc_named_adapter;

/* the name of the base model where an adapter is named (PEFT's adapter_names "__base__") */
#define PC_BASE_ADAPTER_NAME "__base__"

typedef struct {
    pc_model model;
    pc_text_tokenizer *tok;           /* NULL when not asked for */
    pc_adapter_files adapter;         /* adapter.cfg NULL = none; owned (also the default config) */
    const char *adapter_source;       /* the adapter path, for messages */
    const pc_adapter_method *method;  /* the adapter's method (NULL = none) */
    const pc_registry *reg;           /* the methods known (borrowed, or own_reg) */
    pc_registry *own_reg;
    /* the adapter's q/k rows are in Hugging Face order (made by PEFT on an HF-converted Llama,
     * whose q/k rows are permuted per head for the half-split RoPE); peftc runs llama2.c
     * checkpoints in llama2.c order, so such rows are permuted on load and back on save */
    bool hf_qk_rows;
    /* the adapter is folded into the model's weights (pc_session_merge): graphs are built
     * without it */
    bool merged;
    /* the session trains its adapter (set by the trainer): every graph built here, also the
     * frozen evaluation graph, is told so (pc_adapt_training_run) */
    bool training_run;
    /* print graphs built here after the "adapt" stage (a stage name or "all"; NULL: none) */
    const char *dump_after;
    /* a multitask adapter's task (MPT, --task-id; default 0): decode graphs are built for it
     * (train and eval graphs read each row's task from %task_ids, which their drivers fill) */
    int task_id;
    /* named adapters (pc_session_add_adapters): all loaded, the active one (index, -1: the base
     * model) mirrored in adapter / adapter_source / method, which then do not own it */
    pc_named_adapter *named;
    int nnamed, active;
    /* graphs serve every named adapter at once, per row: the i32 input %adapter_ids [B] holds each
     * row's adapter index (nnamed = the base model); see pc_session_bind_adapter_ids */
    bool mixed;
    /* the frozen base weights' dtype in every graph built here (pc_session_set_base_dtype): PC_BF16
     * holds the weights products read in bf16 (passes/base_bf16.c), their copies in bf16 */
    pc_dtype base_dtype;
    struct pc_bf16_weights *bf16; /* owned; made with base_dtype bf16 */
} pc_session;

/* reg NULL = the built-in methods; tokenizer / adapter may be NULL. Errors name the file. */
int pc_session_open(pc_session *s, const pc_registry *reg, const char *model, const char *tokenizer,
                    const char *adapter, char *err, size_t errlen);
/* the same with a classifier head of num_labels labels (the --labels of a classifier's data; 0 =
 * the labels of the head the adapter trained, else the model config's) */
int pc_session_open_labels(pc_session *s, const pc_registry *reg, const char *model, const char *tokenizer,
                           const char *adapter, int num_labels, char *err, size_t errlen);
void pc_session_close(pc_session *s);
/* PC_F32 (the default) or PC_BF16; bf16 without the CPU's bf16 instructions runs on f32 with a
 * warning (the emulated bf16 products would be slower than f32, never faster) */
int pc_session_set_base_dtype(pc_session *s, pc_dtype dt, char *err, size_t errlen);
/* 0 when the session has a tokenizer; else -1 with a message saying `what` needs one */
int pc_session_need_tokenizer(const pc_session *s, const char *what, char *err, size_t errlen);

/* gives the session this adapter config (owned from now on, also on error) and finds its method;
 * source names it in messages */
int pc_session_set_adapter(pc_session *s, pc_adapter_config *cfg, const char *source, char *err, size_t errlen);

/* gives a session without an adapter `peftc train`'s default: LoRA r=8, alpha=16, dropout 0,
 * on every projection of the model: the seven of a Llama, GPT-2's c_attn, c_proj (attention and
 * MLP) and c_fc (with fan_in_fan_out = true, as PEFT sets it on their Conv1D modules) */
int pc_session_default_adapter(pc_session *s, char *err, size_t errlen);

/* PEFT's SEQ_CLS rule: modules_to_save gets "classifier" and "score" (those missing); -1 when
 * out of memory */
int pc_session_seq_cls_heads(pc_adapter_config *c);

/* The session's adapter applied to a graph in `mode` (params trainable or frozen); NULL with a
 * message when it cannot be (a bad config field names the file). seed: inits drawn by methods. */
pc_adapt_ctx *pc_session_adapter(const pc_session *s, pc_adapt_mode mode, bool trainable, uint64_t seed, char *err,
                                 size_t errlen);

/* A graph of the model with the session's adapter (if any) at its sites, its modules_to_save
 * params re-keyed as the adapter's (passes/modules_to_save.h), checked, loss terms added, dead
 * values removed: the "adapt" stage every verb starts from. */
pc_graph *pc_session_build(const pc_session *s, const pc_build_req *req, bool trainable, char *err, size_t errlen);
/* the same, printing the graph after the adapt stage when dump_after names it (or "all")
 * instead of s->dump_after */
pc_graph *pc_session_build_dump(const pc_session *s, const pc_build_req *req, bool trainable, const char *dump_after,
                                char *err, size_t errlen);

/* the error for an adapter given as a config file where trained tensors are needed: which
 * weights file is missing in which directory (or that the directory has it: pass that instead);
 * key (may be NULL) names a tensor that was wanted. Returns -1. */
int pc_session_missing_weights(const pc_session *s, const char *key, char *err, size_t errlen);

/* ---- named adapters (drivers/session_named.c) ----
 * Adds adapters from `spec`: "NAME=PATH" loads PATH (a directory or config file) as NAME; a bare
 * "PATH" is PEFT's save_pretrained layout: the adapter at the directory's root is "default" and
 * each subdirectory holding adapter_config.json is the adapter of its name (training checkpoints
 * "checkpoint-*" are not adapters). Each is checked against the base model (every tensor's
 * shape: an error names the adapter, file and tensor). The first adapter added becomes active.
 * Errors: a name given twice, a name with '/' or "__base__", a path without an adapter. */
int pc_session_add_adapters(pc_session *s, const char *spec, char *err, size_t errlen);
/* Opens a session with the adapters of specs[0..n) (pc_session_add_adapters) and `active` (NULL:
 * the first). One plain adapter path without `active` or `force` opens as pc_session_open_labels
 * does (the single-adapter session every verb knows); otherwise the adapters are named. */
int pc_session_open_named(pc_session *s, const pc_registry *reg, const char *model, const char *tokenizer,
                          const char *const *specs, int n, const char *active, bool force, int num_labels, char *err,
                          size_t errlen);
/* one adapter under a name (a session opened without an adapter, or with named ones) */
int pc_session_add_adapter(pc_session *s, const char *name, const char *path, char *err, size_t errlen);
/* makes `name` the adapter every graph is built with ("__base__": none, the base model) */
int pc_session_set_active(pc_session *s, const char *name, char *err, size_t errlen);
/* unloads an adapter; deleting the active one activates the first left (or the base model) */
int pc_session_delete_adapter(pc_session *s, const char *name, char *err, size_t errlen);
/* the index of a name in s->named, nnamed for "__base__", -1 when unknown */
int pc_session_adapter_index(const pc_session *s, const char *name);
/* "a, b, c" (the names, for messages) */
void pc_session_adapter_names(const pc_session *s, char *buf, size_t len);
/* Fills %adapter_ids [B] of a mixed graph with ids[0..B) (NULL: every row the active adapter) in
 * *rows (malloc'd, freed by the caller after r), bound to r; checks each id. No such input:
 * nothing. */
int pc_session_bind_adapter_ids(const pc_session *s, const pc_graph *g, pc_exec *r, const int32_t *ids,
                                int32_t **rows, char *err, size_t errlen);
/* every tensor of named adapter k against the base model (an evaluation graph with it, filled);
 * the error names the adapter, the file and the tensor */
int pc_session_check_adapter(pc_session *s, int k, char *err, size_t errlen);
/* the method lookup of an adapter just placed in s->adapter (session.c's config checks) */
int pc_session_find_method(pc_session *s, char *err, size_t errlen);
/* the mixed application of every named adapter (build of a mixed session) */
pc_adapt_ctx *pc_session_mixed_adapter(const pc_session *s, pc_adapt_mode mode, char *err, size_t errlen);
/* pc_session_store for a mixed graph: each "<name>/<key>" param from that adapter's file */
int pc_session_store_mixed(const pc_session *s, const pc_graph *g, struct pc_store *st, char *err, size_t errlen);
void pc_session_named_free(pc_session *s);

/* the positions the adapter takes before the sequence (what the context loses): its virtual
 * tokens (prompt methods) and its prefix positions (prefix tuning); 0 without */
int pc_session_virtual_tokens(const pc_session *s);
/* of those, the prefix positions: key/value rows without tokens (the decode graph fills them) */
int pc_session_prefix_positions(const pc_session *s);

/* is_base callback for pc_store_init: keys the base model provides */
int pc_session_is_base(void *session, const char *key);

/* The adapter tensors a run owns, for graph g: from the adapter's weights (and `extra` files),
 * else their init (methods fill inits computed from the base, e.g. TEXT), rows in peftc's order.
 * (pc_store_init + init_from_base + the q/k row fix.) */
int pc_session_store(const pc_session *s, const pc_graph *g, struct pc_store *st, const pc_st_file *extra,
                     uint64_t seed, char *err, size_t errlen);

/* Binds every frozen param of g that the base model holds (shapes checked; errors name the key);
 * with all = true a frozen param the model lacks is an error, else it is left to the caller. */
int pc_session_bind_base(const pc_session *s, pc_exec *r, const pc_graph *g, bool all, char *err, size_t errlen);

/* Permutes the adapter tensors whose rows follow a q/k projection's RoPE order (the method says
 * which tensors, the family which modules) between Hugging Face order and llama2.c order when
 * s->hf_qk_rows: to_file = 1 converts to HF (before a save), 0 back (after a load). */
void pc_session_fix_qk_rows(const pc_session *s, struct pc_store *st, int to_file);
/* the permutation on one tensor (rows of head_dim entries per head) */
void pc_qk_permute_rows(float *w, int64_t rows, int64_t cols, int head_dim, int to_hf);

/* the default model/tokenizer/data paths (the bundled stories260K and tinyshakespeare): the
 * first readable one of PEFTC_DATA_DIR/relative, the installed data beside the executable
 * (<exe dir>/../share/peftc/data/relative), the source tree's data/relative (a build tree's
 * binaries) and ./data/relative; if none is readable, the path in the first of those
 * directories that exists (for the error message) */
const char *pc_default_path(const char *relative, char *buf, size_t len);
/* the first of those directories that exists (canonical), NULL if none */
const char *pc_default_data_dir(char *buf, size_t len);
/* the directory of the running executable (/proc/self/exe, symlinks resolved); NULL if unknown */
const char *pc_exe_dir(char *buf, size_t len);

#endif
