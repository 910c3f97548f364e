/* Private interface of the compiled backend (backend/compiled*.c).
 *
 * compiled.c owns the pc_compiled state: the lowered instruction list, the arena, oneDNN
 * primitives, JIT kernels, bindings and run-time pointers. compiled_kernels.c holds the C kernels
 * of CALL instructions (fast versions of the reference kernels' semantics; anything without one
 * runs the reference kernel itself) and the strided copy of COPY instructions. */
#ifndef PEFTC_BACKEND_COMPILED_INTERNAL_H
#define PEFTC_BACKEND_COMPILED_INTERNAL_H

#include "backend/compiled.h"
#include "backend/ref_internal.h"
#include "passes/lower.h"

#include <stdio.h>

/* what a C kernel sees: the reference kernel context (node, operand and output buffers, message
 * buffer) plus the instruction's arena scratch and its extras */
typedef struct {
    ref_kctx k;
    void *scratch;         /* pc_ck_select's scratch bytes, in the arena */
    const pc_value *mask;  /* CALL_MASKED_SOFTMAX / SOFTMAX_GRAD: the causal_mask node, or NULL */
    double alpha;          /* CALL_SOFTMAX_GRAD: the folded scale */
    const double *table;   /* rope: (cos, sin) per position index and frequency, or NULL */
} pc_ckctx;

typedef int (*pc_ck_fn)(const pc_ckctx *c);

/* The C kernel of a CALL instruction; *scratch receives the bytes of arena scratch it needs and
 * *name a short name for profiles ("softmax", "ref:kron" for a reference fallback). */
pc_ck_fn pc_ck_select(const pc_graph *g, const pc_linsn *I, int64_t *scratch, const char **name);

/* rope tables for constant positions, computed once: n_pos rows of half (cos, sin) pairs, in
 * double, exactly as the reference computes them (malloc'd; NULL if out of memory or a position
 * is negative, which the kernel then reports at run time) */
double *pc_ck_rope_table(const pc_graph *g, pc_val rope, const int32_t *pos);

/* small matmuls in C (N = 4, 8 or 16), for shapes where oneDNN wastes its vectors */
bool pc_ck_gemm_small_ok(const pc_matmul_desc *d);
void pc_ck_gemm_small(const pc_matmul_desc *d, const float *a, const float *b, float *c);

/* dst (dense) = src read with element strides st over dims (4-byte elements) */
void pc_ck_copy(void *dst, const void *src, int rank, const int64_t *dims, const int64_t *st);

/* ---- profiling (tests and benchmarks) ---- */
void pc_compiled_set_profile(pc_compiled *c, int on);
/* per instruction kind and per CALL/op name: calls and time since profiling was switched on */
void pc_compiled_profile_report(const pc_compiled *c, FILE *f);
/* the lowered program (for tests and dumps) */
const pc_lowered *pc_compiled_lowered(const pc_compiled *c);

#endif
