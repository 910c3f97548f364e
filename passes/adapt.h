/* Applying an adapter method (include/peftc/adapter.h) to a graph: the context its callbacks
 * see, the hook model builders hand their sites to, and the rewrite of linear sites in any
 * graph (the `adapt` pass of `peftc opt`, for IR text).
 *
 *   pc_adapt_ctx *cx = pc_adapt_new(method, cfg, "x/adapter_config.json", PC_ADAPT_TRAIN, true, &info, err, n);
 *   pc_site_hook h = {pc_adapt_site, cx};          // frontend/family.h
 *   g = pc_model_build(model, &req, &h, err, n);   // the builder calls the method at each site
 *   pc_adapt_finish(cx, g, err, n);                // "target_modules matched nothing", loss terms
 *   pc_adapt_free(cx);
 */
#ifndef PEFTC_PASSES_ADAPT_H
#define PEFTC_PASSES_ADAPT_H

#include "peftc/adapter.h"
#include "runtime/adapter_config.h"

#include <stdbool.h>
#include <stddef.h>

/* Starts an application: runs the method's begin (errors are prefixed with `source`, the config
 * file). cfg and info are borrowed and must outlive the context. NULL on error. */
pc_adapt_ctx *pc_adapt_new(const pc_adapter_method *m, const pc_adapter_config *cfg, const char *source,
                           pc_adapt_mode mode, bool trainable, const pc_model_info *info, char *err, size_t errlen);
void pc_adapt_free(pc_adapt_ctx *cx);
/* what a method may draw on besides the graph: the tokenizer (encode with BOS; count or -1) and
 * the run's seed */
void pc_adapt_set_env(pc_adapt_ctx *cx, int (*tokenize)(void *ctx, const char *text, int32_t *ids, int cap),
                      void *tokenize_ctx, uint64_t seed);
/* marks the application as part of a training run (pc_adapt_training_run), also for graphs
 * whose params are frozen: the trainer's evaluation graph */
void pc_adapt_set_training_run(pc_adapt_ctx *cx, bool on);

/* A mixed application (adapter.h: rewrite_mixed) of members[0..n) (contexts of one method, made
 * by pc_adapt_new with trainable = false; owned from now on, with the array, also on error),
 * named names[i] (borrowed; their params are keyed "<name>/<PEFT key>"). NULL with a message
 * when the methods differ or the method cannot be mixed. */
pc_adapt_ctx *pc_adapt_new_mixed(pc_adapt_ctx **members, int n, const char *const *names, char *err, size_t errlen);

/* the task of pc_adapt_task (the session's --task-id) */
void pc_adapt_set_task(pc_adapt_ctx *cx, int task);

/* the site hook: calls the method's rewrite for the kinds it declared (ctx is the pc_adapt_ctx) */
int pc_adapt_site(void *ctx, pc_site *s, char *err, size_t errlen);

/* After the graph is built: the method's finish check (default: at least one site rewritten)
 * and, in TRAIN mode, its loss term added to the graph's loss. 0 or -1. */
int pc_adapt_finish(pc_adapt_ctx *cx, pc_graph *g, char *err, size_t errlen);

const pc_adapter_method *pc_adapt_method(const pc_adapt_ctx *cx);
int pc_adapt_nrewritten(const pc_adapt_ctx *cx);
/* the method's virtual tokens (0 when it has none) */
int pc_adapt_virtual_tokens(pc_adapt_ctx *cx);
/* the positions the method fills before the sequence without tokens (0 when none) */
int pc_adapt_prefix_positions(pc_adapt_ctx *cx);
/* the PEFT target matcher of the config (NULL for prompt methods): ranks, feedforward modules */
const struct pc_target_matcher *pc_adapt_matcher(const pc_adapt_ctx *cx);
/* the method's state (for callbacks drivers make: merge, init, step hooks) */
void *pc_adapt_state(pc_adapt_ctx *cx);

/* Rebuilds *g with the method applied to every linear found by the linear convention
 * (frontend/linear.h); the replacement must keep each linear's type. *nmatched (may be NULL)
 * gets the count. On error *g is unchanged. */
int pc_adapt_linears(pc_graph **g, pc_adapt_ctx *cx, int *nmatched, char *err, size_t errlen);

/* The i32[] input `%seed` that dropout masks hash (created on first use). */
pc_val pc_dropout_seed(pc_graph *g);

/* PEFT's key of an adapter tensor of `module` for adapter `name` (NULL or "default": the saved
 * form "base_model.model.<module>.<tensor>"; else PEFT's in-memory form with the name after the
 * tensor's first component: "lora_A.<name>.weight", "ia3_l.<name>"). module NULL: "<tensor>". */
int pc_adapter_key(char *buf, size_t len, const char *module, const char *name, const char *tensor);

/* the peft_types of the registered methods that are not PEFT's (what a config reader must accept
 * besides PEFT's own): how many were written to names (at most cap) */
size_t pc_registry_custom_types(const pc_registry *r, const char **names, size_t cap);

/* the built-in methods, NULL-terminated (passes/adapters/registry.c) */
const pc_adapter_method *const *pc_builtin_methods(void);

#endif
