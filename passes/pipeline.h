/* The pass manager: passes by name, run in order, with IR dumps after any of them.
 * Every pass is graph -> graph; a pass may replace *g (rebuilding passes) or append to it. */
#ifndef PEFTC_PASSES_PIPELINE_H
#define PEFTC_PASSES_PIPELINE_H

#include "peftc/peftc.h"
#include <stdio.h>

typedef int (*pc_pass_fn)(pc_graph **g, char *err, size_t errlen);

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
} pc_pipeline_opts;

/* runs a comma-separated list of pass names; on error *g is left valid (the last good graph) */
int pc_run_pipeline(pc_graph **g, const char *list, const pc_pipeline_opts *opts, char *err, size_t errlen);

/* built-in passes implemented in passes/ */
int pc_pass_dce(pc_graph **g, char *err, size_t errlen);
int pc_pass_fuse_lowrank(pc_graph **g, char *err, size_t errlen);

#endif
