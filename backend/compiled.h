/* The compiled backend behind pc_exec (kind PC_BACKEND_JIT). Same contract as backend/ref.h.
 * Pipeline: fuse-elementwise grouping -> lowering to instructions (backend/lower.c) -> memory
 * plan (one arena, offsets fixed at compile time, allocated and touched once) -> oneDNN matmul
 * primitives created once + LLVM JIT kernels compiled once -> run = walk the schedule. */
#ifndef PEFTC_BACKEND_COMPILED_H
#define PEFTC_BACKEND_COMPILED_H

#include "backend/exec.h"

typedef struct pc_compiled pc_compiled;

pc_compiled *pc_compiled_new(const pc_graph *g, const pc_exec_opts *o, char *err, size_t errlen);
void pc_compiled_free(pc_compiled *c);
/* Binding a param (again, even to the same memory) tells the backend its contents may have
 * changed: constant operands prepared from it are prepared again on the next run. */
int pc_compiled_bind(pc_compiled *c, pc_val v, void *data);
void pc_compiled_set_seed(pc_compiled *c, uint64_t seed);
int pc_compiled_run(pc_compiled *c, char *err, size_t errlen);
const void *pc_compiled_data(const pc_compiled *c, pc_val v);
int pc_compiled_apply_updates(pc_compiled *c);

#endif
