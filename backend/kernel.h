/* Fused elementwise kernels: the description the lowering produces and the LLVM backend
 * compiles (backend/llvm_*.c). A kernel iterates over an N-d space (its output shape); every
 * input is read at an affine offset (per-axis element strides, 0 along broadcast axes); a
 * short SSA program of elementwise ops computes one or more outputs, each dense over the
 * iteration space. */
#ifndef PEFTC_BACKEND_KERNEL_H
#define PEFTC_BACKEND_KERNEL_H

#include "ir/ir.h"

#include <stdbool.h>

#define PC_K_MAX_IN 16
#define PC_K_MAX_OUT 8
#define PC_K_MAX_INSNS 64

typedef struct {
    pc_opcode op;  /* an ELEMENTWISE op of ops.def (not rope / causal_mask; see backend docs) */
    int nin;
    int in[4];     /* >= 0: kernel input index; < 0: result of insn (-in - 1) */
    pc_attr attr[PC_MAX_ATTRS];
    pc_dtype dtype; /* result dtype */
} pc_kinsn;

typedef struct {
    pc_dtype dtype;
    int64_t stride[PC_MAX_RANK]; /* element stride per iteration axis; 0 = broadcast */
} pc_kinput;

typedef struct pc_kernel_desc {
    int rank; /* iteration space; rank 0 = one element */
    int64_t dim[PC_MAX_RANK];
    int ninputs;
    pc_kinput input[PC_K_MAX_IN];
    int ninsns;
    pc_kinsn insn[PC_K_MAX_INSNS];
    int noutputs;
    int output[PC_K_MAX_OUT]; /* insn index whose value is stored, dense row-major */
} pc_kernel_desc;

/* Which ops a fused kernel may contain and how it reads them: defined once (backend/
 * kernel_desc.c) for the fusion (backend/fuse_elementwise.c) and the LLVM kernel emitter
 * (backend/llvm_kernel.c), which must agree.
 *
 * pc_fusable_op: the ELEMENTWISE class of ops.def minus rope and causal_mask (their semantics
 * depend on positions, not just on the element).
 * pc_kernel_hp_operand: the operand an optimizer-like op (adamw_m/v/p, clip_coef) reads as its
 * f32[8] hyper-parameter vector through the base pointer, so it must be a kernel input, never a
 * fused value; -1 for every other op. (dropout, also fusable, hashes the flat index of the
 * iteration space.) */
bool pc_fusable_op(pc_opcode op);
int pc_kernel_hp_operand(pc_opcode op);

/* a compiled kernel: args = input pointers (in order) then output pointers */
typedef void (*pc_kernel_fn)(void *const *args);

/* A 64-bit fingerprint of what a kernel computes (every field that matters, no padding bytes),
 * the same in every process. Kernels are named after it: pc_kernel_name gives "pc_k_<16 hex>",
 * so the compiled backend asks for the same names whether it JIT-compiles the kernels or takes
 * them from an AOT executable's table (backend/exec.h: pc_kernel_provider). */
uint64_t pc_kernel_desc_hash(const pc_kernel_desc *k);
#define PC_KERNEL_NAME_MAX 24
void pc_kernel_name(const pc_kernel_desc *k, char name[PC_KERNEL_NAME_MAX]);

/* the JIT kernel provider (backend/llvm_jit.c) */
struct pc_kernel_provider;
const struct pc_kernel_provider *pc_kernel_provider_jit(void);

/* ---- LLVM 19 (backend/llvm_jit.c: every ORC call lives there) ---- */
typedef struct pc_jit pc_jit;

/* the version of the LLVM library in use ("19.1.7": LLVMGetVersion) */
void pc_llvm_version(char *buf, size_t len);

pc_jit *pc_jit_new(char *err, size_t errlen);
void pc_jit_free(pc_jit *j); /* frees every compiled kernel */
/* Compiles nk kernels in one module (-O3 for the host CPU, AVX-512 here) and returns their
 * entry points. Names must be unique C identifiers within the jit (used for AOT too). */
int pc_jit_compile(pc_jit *j, const pc_kernel_desc *k, const char *const *names, int nk,
                   pc_kernel_fn *fns, char *err, size_t errlen);
/* Emits the same kernels into a relocatable object file (AOT). */
int pc_llvm_emit_object(const pc_kernel_desc *k, const char *const *names, int nk, const char *path,
                        char *err, size_t errlen);
/* The LLVM IR text of the kernels before optimisation (for dumps and tests); malloc'd */
char *pc_llvm_kernel_ir(const pc_kernel_desc *k, const char *name, char *err, size_t errlen);
/* ... and after -O3 for the host CPU (what the vectorizers made of them; for tests) */
char *pc_llvm_kernel_ir_o3(const pc_kernel_desc *k, const char *name, char *err, size_t errlen);

#endif
