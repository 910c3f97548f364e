/* Graph entry points (issue 4, item 6): a compiled graph as one C function whose parameters
 * follow the graph signature,
 *     int NAME(void *ctx, <one pointer per graph input>, <one pointer per graph output>)
 * (inputs in value order, outputs in declaration order; 0 = success). The function is generated
 * as LLVM IR (backend/llvm_entry.c); its body binds each input, runs the graph and copies each
 * output out through the helpers in ctx (a pc_rt_ctx, so the same code links without exported
 * symbols). In-process it is JIT-compiled and pc_entry_call calls it through libffi with a call
 * interface built from the graph signature; `peftc compile` emits the same function into the
 * executable's object file and its generated main.c calls it directly with the graph's C
 * prototype (pc_entry_write_prototype). The runtime side (pc_entry_rt, names, signatures) is
 * in backend/entry_rt.c and has no LLVM in it. */
#ifndef PEFTC_BACKEND_ENTRY_H
#define PEFTC_BACKEND_ENTRY_H

#include "backend/exec.h"

#include <stdio.h>

/* what the generated entry function reads from its ctx argument */
typedef struct {
    int (*bind)(void *ctx, int input, void *data);
    int (*run)(void *ctx);
    int (*copy_out)(void *ctx, int output, void *data);
} pc_rt_ctx;

/* ---- the runtime side (backend/entry_rt.c, no LLVM) ---- */

/* the ctx of an entry function over a graph built on a pc_exec (params bound by the caller):
 * bind(i, p) binds the i-th input to p (NULL leaves it unbound: the run reports it), run runs
 * e (its message goes to err), copy_out(i, p) copies the i-th output to p */
typedef struct {
    pc_rt_ctx fns; /* first: the generated code loads its helpers from here */
    pc_exec *e;
    const pc_graph *g;
    pc_val *in, *out;
    int nin, nout;
    char *err;
    size_t errlen;
} pc_entry_rt;

int pc_entry_rt_init(pc_entry_rt *rt, pc_exec *e, const pc_graph *g, char *err, size_t errlen);
void pc_entry_rt_free(pc_entry_rt *rt);

/* The name of g's entry function: "pc_entry_<graph name>_<16 hex digits>", the digits a
 * fingerprint of the graph's text (so a rebuilt graph finds the function compiled for it and a
 * different graph does not). 0, or -1 with a message. */
#define PC_ENTRY_NAME_MAX 96
int pc_entry_name(const pc_graph *g, char name[PC_ENTRY_NAME_MAX], char *err, size_t errlen);

/* the number of inputs (values with op input) and outputs of g */
int pc_entry_graph_ninputs(const pc_graph *g);

/* writes the C prototype of g's entry function, e.g.
 *   int NAME(void *ctx, const int32_t *tokens, const int32_t *targets, float *loss)
 * (no semicolon; parameter names are the value names made into C identifiers) */
void pc_entry_write_prototype(FILE *f, const pc_graph *g, const char *name);

/* The arguments of an entry call for a caller that knows its inputs by name: args[] holds the
 * input pointers (by name; a name not given is an error naming it) and one buffer per output,
 * owned here. */
typedef struct {
    void **args; /* nin + nout */
    int nin, nout;
    const pc_graph *g;
} pc_entry_args;
int pc_entry_args_init(pc_entry_args *a, const pc_graph *g, const char *const *names, void *const *ptrs, int n,
                       char *err, size_t errlen);
/* the buffer of output value v after a call (NULL if v is not an output) */
const void *pc_entry_args_output(const pc_entry_args *a, pc_val v);
void pc_entry_args_free(pc_entry_args *a);

/* Where a caller gets entry functions: open returns a handle for g running on e (NULL with a
 * message), call calls it (args as pc_entry_call), close frees the handle. The JIT provider
 * (pc_entry_provider_jit) compiles the function with LLVM and calls it through libffi; an AOT
 * executable's looks it up in its linked table and calls it directly. */
typedef struct pc_entry_provider {
    void *(*open)(const struct pc_entry_provider *p, pc_exec *e, const pc_graph *g, char *err, size_t errlen);
    int (*call)(void *handle, void *const *args, char *err, size_t errlen);
    void (*close)(void *handle);
    const void *ctx;
} pc_entry_provider;

/* ---- in-process: JIT + libffi (backend/llvm_entry.c) ---- */

typedef struct pc_entry pc_entry;

/* the entry point of g running on e (a graph built for g; params bound by the caller);
 * name NULL = pc_entry_name(g) */
pc_entry *pc_entry_new(pc_exec *e, const pc_graph *g, const char *name, char *err, size_t errlen);
void pc_entry_free(pc_entry *en);
int pc_entry_ninputs(const pc_entry *en);
int pc_entry_noutputs(const pc_entry *en);
/* args: ninputs + noutputs pointers in signature order; calls the JIT'd function via libffi and
 * returns its status (0 = success; the message of a failed run in err) */
int pc_entry_call(pc_entry *en, void *const *args, char *err, size_t errlen);

/* the LLVM IR text of g's entry function (malloc'd; for --dump-after=entry and tests) */
char *pc_entry_ir(const pc_graph *g, char *err, size_t errlen);

/* the provider over pc_entry_new / pc_entry_call */
const pc_entry_provider *pc_entry_provider_jit(void);

/* AOT: the kernels k[0..nk) and the entry functions names[i] with nin[i] inputs and nout[i]
 * outputs, optimised for the host CPU, in one relocatable object file */
struct pc_kernel_desc;
int pc_llvm_emit_object_with_entries(const struct pc_kernel_desc *k, const char *const *knames, int nk,
                                     const char *const *names, const int *nin, const int *nout, int ne,
                                     const char *path, char *err, size_t errlen);

#endif
