/* Graph entry points (issue 4, item 6): a compiled graph as one C function whose parameters
 * follow the graph signature,
 *     int NAME(void *ctx, <one pointer per graph input>, <one pointer per graph output>)
 * (inputs in value order, outputs in declaration order; 0 = success). The function is generated
 * as LLVM IR (backend/llvm_entry.c) and JIT-compiled; its body binds each input, runs the
 * graph and copies each output out through the helpers in ctx (a pc_rt_ctx, so the same code
 * links without exported symbols). pc_entry_call calls it through libffi with a call interface
 * built from the graph signature. */
#ifndef PEFTC_BACKEND_ENTRY_H
#define PEFTC_BACKEND_ENTRY_H

#include "backend/exec.h"

/* what the generated entry function reads from its ctx argument */
typedef struct {
    int (*bind)(void *ctx, int input, void *data);
    int (*run)(void *ctx);
    int (*copy_out)(void *ctx, int output, void *data);
} pc_rt_ctx;

typedef struct pc_entry pc_entry;

/* the entry point of g running on e (a graph built for g; params bound by the caller) */
pc_entry *pc_entry_new(pc_exec *e, const pc_graph *g, const char *name, char *err, size_t errlen);
void pc_entry_free(pc_entry *en);
int pc_entry_ninputs(const pc_entry *en);
int pc_entry_noutputs(const pc_entry *en);
/* args: ninputs + noutputs pointers in signature order; calls the JIT'd function via libffi and
 * returns its status (0 = success; the message of a failed run in err) */
int pc_entry_call(pc_entry *en, void *const *args, char *err, size_t errlen);

#endif
