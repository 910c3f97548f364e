/* One execution API over every backend: the reference interpreter ("ref") and the compiled
 * backend ("jit": oneDNN matmuls + LLVM-generated fused kernels + C kernels over one arena).
 * Same contract as backend/ref.h: bind inputs/params/states (borrowed memory), run, read
 * outputs and update values, apply updates into the bound memory. */
#ifndef PEFTC_BACKEND_EXEC_H
#define PEFTC_BACKEND_EXEC_H

#include "peftc/peftc.h"
#include <stddef.h>
#include <stdint.h>

typedef enum { PC_BACKEND_REF = 0, PC_BACKEND_JIT = 1 } pc_backend_kind;

/* Where the compiled backend gets the machine code of its fused kernels (backend/kernel.h).
 * compile fills fns[i] for the kernels k[0..nk) named names[i] (pc_kernel_name) and returns a
 * handle that owns them (released with release), or NULL with a message. The JIT provider
 * compiles them with LLVM; an AOT executable's provider looks them up in its linked table. */
struct pc_kernel_desc;
typedef void (*pc_kernel_fn)(void *const *args);
typedef struct pc_kernel_provider {
    void *(*compile)(const struct pc_kernel_provider *p, const struct pc_kernel_desc *k, const char *const *names,
                     int nk, pc_kernel_fn *fns, char *err, size_t errlen);
    void (*release)(const struct pc_kernel_provider *p, void *handle);
    const void *ctx;
} pc_kernel_provider;

/* the provider used when pc_exec_opts.kernels is NULL: the LLVM JIT in the peftc compiler;
 * in an AOT executable's runtime library (no LLVM) one that reports that no JIT is linked */
const pc_kernel_provider *pc_kernel_provider_default(void);

typedef struct {
    pc_backend_kind kind;
    int threads;            /* oneDNN / kernel threads (default 1) */
    const char *dump_after; /* "lower" prints the instruction IR to stderr (jit) */
    const pc_kernel_provider *kernels; /* NULL = pc_kernel_provider_default() */
    /* stop at the first NaN/inf an op produces, naming it (backend/finite.h): > 0 on, < 0 off,
     * 0 the backend's default: on in the reference interpreter, off in the compiled backend
     * (there it scans every instruction's result: --check-finite) */
    int check_finite;
    /* jit: executors given the same arena share its memory for their intermediate values (it
     * grows to the largest one's size); they must run one at a time, each one's outputs read
     * before another runs. NULL = an arena of its own. */
    struct pc_arena *arena;
} pc_exec_opts;

/* memory executors share (pc_exec_opts.arena): the intermediate values' arena, and the frozen
 * weights oneDNN reorders into its blocked layout (one copy per weight and layout, not one per
 * executor). Start it zeroed ({0}); free it after every executor that uses it. */
typedef struct pc_arena {
    void *base;
    size_t size;
    struct pc_dnnl_wcache *weights; /* made by the first executor that reorders a weight */
} pc_arena;
void pc_arena_free(pc_arena *a);

typedef struct pc_exec pc_exec;

/* parses "ref" / "jit" (NULL = the default backend); -1 on anything else */
int pc_backend_parse(const char *name, pc_backend_kind *out);
const char *pc_backend_name(pc_backend_kind k);

pc_exec *pc_exec_new(const pc_graph *g, const pc_exec_opts *o, char *err, size_t errlen);
void pc_exec_free(pc_exec *e);
int pc_exec_bind(pc_exec *e, pc_val v, void *data);
void pc_exec_set_seed(pc_exec *e, uint64_t seed);
int pc_exec_run(pc_exec *e, char *err, size_t errlen);
const void *pc_exec_data(const pc_exec *e, pc_val v);
int pc_exec_apply_updates(pc_exec *e);

#endif
