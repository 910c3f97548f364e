/* The pass manager: passes by name with options, run in order, with IR dumps after any of them.
 * Every pass is graph -> graph; a pass may replace *g (rebuilding passes) or append to it.
 * A pipeline is text: "adapt{config=x/adapter_config.json},autograd,adamw{clip}". Every driver
 * (train, eval, generate, dump, compile, the bench and the example) runs its graphs through it. */
#ifndef PEFTC_PASSES_PIPELINE_H
#define PEFTC_PASSES_PIPELINE_H

#include "peftc/adapter.h"
#include "peftc/peftc.h"
#include <stdio.h>

typedef struct {
    const char *args;        /* the text inside the braces ("" when none) */
    const pc_registry *reg;  /* adapter methods (NULL = the built-ins) */
} pc_pass_args;

typedef int (*pc_pass_fn)(pc_graph **g, const pc_pass_args *a, char *err, size_t errlen);

typedef struct {
    const char *name;
    const char *help;
    pc_pass_fn run;
} pc_pass_info;

/* the registered passes, terminated by a zero entry */
const pc_pass_info *pc_pass_list(void);
const pc_pass_info *pc_pass_find(const char *name);

typedef struct {
    const char *dump_after; /* NULL, a pass name, or "all" */
    FILE *dump;             /* where dumps go (stderr if NULL) */
    pc_print_opts print;
    int verify_each;        /* run the verifier after every pass */
    const pc_registry *reg; /* for the adapt pass (NULL = the built-in methods) */
} pc_pipeline_opts;

/* runs a comma-separated list of passes ("name" or "name{args}"); on error *g is left valid
 * (the last good graph) */
int pc_run_pipeline(pc_graph **g, const char *list, const pc_pipeline_opts *opts, char *err, size_t errlen);

/* prints g as "after `stage`" when opts->dump_after names it (or "all"): for a stage a driver ran
 * itself (the adapt stage of model graphs, done by the model builder at its sites) */
void pc_pipeline_dump(const pc_graph *g, const char *stage, const pc_pipeline_opts *opts);

/* the pipeline of a training step after the adapted forward graph */
#define PC_TRAIN_PASSES "autograd,adamw"
#define PC_TRAIN_PASSES_CLIP "autograd,adamw{clip}"

/* built-in passes implemented in passes/ */
int pc_pass_dce(pc_graph **g, char *err, size_t errlen);
int pc_pass_fuse_lowrank(pc_graph **g, char *err, size_t errlen);
int pc_pass_fuse_kron(pc_graph **g, char *err, size_t errlen); /* every model graph (pc_session_build) */
/* base-bf16 (passes/base_bf16.c): frozen weights in bf16 where only products and embeddings read
 * them. pc_base_bf16_apply limits it to the params is_base(ctx, key) accepts (NULL: every frozen
 * one) and reports how many it converted. */
typedef int (*pc_base_pred)(void *ctx, const char *key);
int pc_base_bf16_apply(pc_graph **g, pc_base_pred is_base, void *ctx, int *nconverted, char *err, size_t errlen);
int pc_pass_base_bf16(pc_graph **g, char *err, size_t errlen);
/* adapt{config=FILE[,mode=train|eval]}: an adapter method on every linear of any graph */
int pc_pass_adapt(pc_graph **g, const pc_pass_args *a, char *err, size_t errlen);

#endif
