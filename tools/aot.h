/* Standalone executables built by `peftc compile` (tools/cmd_compile.c).
 *
 * The generated main() of such an executable holds a pc_aot_image: the mode, the shapes that were
 * compiled in, and a table of its fused kernels (emitted by LLVM into an object file, named by
 * pc_kernel_name). pc_aot_main (tools/aot_main.c, in libpeftc_aot.a: no LLVM) finds the data
 * directory OUT.weights beside the executable, rebuilds the graphs with the same builders and runs
 * the verb of `peftc train` or `peftc generate` with the kernels taken from the table. A graph
 * that asks for a kernel the table lacks fails with "compiled for a different graph".
 *
 * The object file also holds each graph's entry function (backend/entry.h: the same LLVM code
 * the JIT compiles), and main.c declares it with the graph's C prototype and calls it directly
 * from a small wrapper in the entry table; the trainer runs its step and evaluation graphs
 * through them, the generator its decode graph (pc_cli_fixed.entries). */
#ifndef PEFTC_TOOLS_AOT_H
#define PEFTC_TOOLS_AOT_H

#include "backend/exec.h"

typedef enum { PC_AOT_TRAIN = 1, PC_AOT_INFER = 2 } pc_aot_mode;

#define PC_AOT_MAX_CACHES 16

typedef struct {
    const char *name; /* pc_kernel_name */
    pc_kernel_fn fn;
} pc_aot_kernel;

/* an entry function compiled in: call(ctx, args) calls NAME(ctx, args[0], ..., args[nin+nout-1]) */
typedef struct {
    const char *name; /* pc_entry_name */
    int nin, nout;
    int (*call)(void *ctx, void *const *args);
} pc_aot_entry;

typedef struct {
    pc_aot_mode mode;
    int batch, seq;       /* train */
    const int *cache_sizes; /* infer: the decode graphs' KV capacities, ascending (at most
                             * PC_AOT_MAX_CACHES) */
    int ncache_sizes;
    int mixed; /* infer: several named adapters in one graph (pc_cli_fixed.mixed) */
    int base_dtype; /* the frozen base weights' pc_dtype (pc_cli_fixed.base_dtype) */
    const char *about;    /* what was compiled in (for --help) */
    const char *build_id; /* also in OUT.weights/build-id: the two belong together */
    const pc_aot_kernel *kernels;
    int nkernels;
    const pc_aot_entry *entries;
    int nentries;
} pc_aot_image;

/* the files of the data directory */
/* the model in its own format (a llama2.c or GGUF file, a Hugging Face directory), found by
 * content like every --model; a tokenizer file only when the model holds none (llama2.c) or one
 * was given to compile */
#define PC_AOT_MODEL "model"
#define PC_AOT_TOKENIZER "tokenizer"
#define PC_AOT_ADAPTER_DIR "adapter"                 /* a trained adapter (train mode) */
#define PC_AOT_ADAPTER_CONFIG "adapter_config.json" /* or a config to train from */
#define PC_AOT_BUILD_ID "build-id"

int pc_aot_main(int argc, char **argv, const pc_aot_image *img);

#endif
