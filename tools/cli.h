/* Shared helpers of the peftc command-line verbs. */
#ifndef PEFTC_TOOLS_CLI_H
#define PEFTC_TOOLS_CLI_H

#include "peftc/adapter.h"
#include "runtime/outpath.h"

#include <stdbool.h>
#include <stddef.h>

/* An option table entry. Options are `--name VALUE`, `--name=VALUE`, or bare `--name` for flags. */
typedef struct {
    const char *name;  /* without dashes; "o" means -o */
    bool takes_value;
    const char **value; /* where a value goes (takes_value) */
    bool *flag;         /* set when present (!takes_value) */
} pc_cli_opt;

/* Parses argv (after the verb). Positional arguments go to pos[] (up to maxpos).
 * Returns 0, 1 when --help was asked, or -1 after printing an error naming the verb and flag. */
int pc_cli_parse(const char *verb, int argc, char **argv, const pc_cli_opt *opts, int nopts,
                 const char **pos, int maxpos, int *npos);

/* Takes every `--NAME VALUE` / `--NAME=VALUE` out of argv (in place, order kept) for an option
 * that may be repeated (--adapter NAME=DIR ...): the values in vals[0..cap), their count in
 * *nvals. Returns the new argc, or -1 after printing an error. */
int pc_cli_take_repeated(const char *verb, int argc, char **argv, const char *name, const char **vals, int cap,
                         int *nvals);

/* Parses an integer/float option value; prints an error naming the flag and returns -1. */
int pc_cli_int(const char *verb, const char *flag, const char *text, long long lo, long long hi, long long *out);
int pc_cli_double(const char *verb, const char *flag, const char *text, double lo, double hi, double *out);

/* --check-finite, the flag of every verb that runs graphs (run, train, eval, generate): the first
 * NaN/inf an op produces stops the run with an error naming the op, its result and origin
 * (backend/finite.h); the reference interpreter always checks, the compiled backend only then */
#define PC_CLI_CHECK_FINITE_HELP                                                                   \
    "  --check-finite     stop at the first NaN/inf an op produces, naming the op, its value and\n" \
    "                     origin (always on with --backend ref; costs a pass over each result)\n"

/* --base-dtype f32|bf16, the flag of every verb that runs a model: prints the error itself */
int pc_cli_base_dtype(const char *verb, const char *value, pc_dtype *out);
#define PC_CLI_BASE_DTYPE_HELP                                                                     \
    "  --base-dtype bf16  hold the frozen base weights in bf16 and run their products on the CPU's\n" \
    "                     bf16 units (f32 sums); adapters, gradients and AdamW stay f32 (default f32)\n"

/* checks a --dump-after value of a verb that builds graphs without a pass pipeline: "adapt",
 * "all" or NULL; prints the error itself */
int pc_cli_dump_stage(const char *verb, const char *value);

/* Every verb calls this with all its outputs and inputs after parsing its flags, before any work
 * (runtime/outpath.h: an output that would replace an input, a file where a directory is
 * written or the reverse, a directory that cannot be written). Prints "PROG: message" and
 * returns -1 on a refusal. */
int pc_cli_check_outputs(const char *prog, const pc_out *outs, int nouts, const pc_in *ins, int nins);

/* An --adapter (or --resume) path as inputs: the path, and for a directory also the two files
 * inside it that are read (an output must not replace them either). Fills ins[0..3) and returns
 * how many it used; bufs holds the joined paths. */
typedef struct {
    char config[4200], weights[4200];
} pc_cli_adapter_paths;
int pc_cli_adapter_inputs(const char *flag, const char *path, pc_in *ins, pc_cli_adapter_paths *bufs);

/* reads FILE ("-" = stdin) fully; prints the error itself */
char *pc_cli_read(const char *verb, const char *path, size_t *len);
/* writes text to path atomically ("-" or NULL = stdout), creating missing directories above it
 * (outputs are created with their parents, once the work is done); prints the error itself */
int pc_cli_write(const char *verb, const char *path, const char *text, size_t len);

/* What a standalone executable built by `peftc compile` fixes (tools/aot_main.c): its train /
 * generate verb takes the flags of `peftc train` / `peftc generate` minus these. */
#include "backend/exec.h"
typedef struct {
    const char *prog;  /* the executable, for messages */
    const char *about; /* what was compiled in, for --help */
    const char *model, *tokenizer, *adapter; /* its files (adapter NULL = the default LoRA) */
    int batch, seq;    /* train */
    const int *cache_sizes; /* generate: the KV capacities compiled (pc_decode_opts) */
    int ncache_sizes;
    /* generate: `adapter` is a directory of several named adapters served by one mixed graph
     * (%adapter_ids); --active picks one at run time */
    bool mixed;
    const pc_kernel_provider *kernels;
    const struct pc_entry_provider *entries; /* the graphs' entry functions (train) */
    pc_dtype base_dtype; /* the frozen base weights' dtype compiled in (--base-dtype) */
} pc_cli_fixed;
/* an executable's compiled-in base dtype: *dt = fx's; a --base-dtype flag that names another
 * one is refused (the kernels were compiled for those graphs). fx NULL: nothing to do. */
int pc_cli_fixed_base_dtype(const pc_cli_fixed *fx, const char *flag, pc_dtype *dt);
int pc_train_main(const pc_registry *reg, int argc, char **argv, const pc_cli_fixed *fx);
int pc_generate_main(const pc_registry *reg, int argc, char **argv, const pc_cli_fixed *fx);

int pc_cmd_opt(const pc_registry *reg, int argc, char **argv);
int pc_cmd_dot(const pc_registry *reg, int argc, char **argv);
int pc_cmd_run(const pc_registry *reg, int argc, char **argv);
int pc_cmd_train(const pc_registry *reg, int argc, char **argv);
int pc_cmd_eval(const pc_registry *reg, int argc, char **argv);
int pc_cmd_predict(const pc_registry *reg, int argc, char **argv);
int pc_cmd_generate(const pc_registry *reg, int argc, char **argv);
int pc_cmd_merge(const pc_registry *reg, int argc, char **argv);
int pc_cmd_combine(const pc_registry *reg, int argc, char **argv);
int pc_cmd_dump(const pc_registry *reg, int argc, char **argv);
int pc_cmd_compile(const pc_registry *reg, int argc, char **argv);
int pc_cmd_methods(const pc_registry *reg, int argc, char **argv);
int pc_cmd_pack(const pc_registry *reg, int argc, char **argv);

#endif
