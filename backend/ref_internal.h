/* Private interface of the reference interpreter (backend/ref*.c).
 *
 * ref.c owns the pc_ref state: per-value buffers, binding, initialisation, scheduling and
 * updates. ref_kernels*.c hold one kernel `ref_<id>` per op of ir/ops.def; the core calls the
 * kernel with a context that holds the node, its output buffer (already allocated, numel *
 * dtype size bytes, never NULL even for zero-size tensors) and its operand buffers.
 *
 * Numerical conventions (the reference every other backend is compared against):
 *   - elementwise f32 math is evaluated in double and rounded once to f32;
 *   - matmul accumulates in f32 (i-k-j order, k ascending, into the output row), like a BLAS;
 *   - reductions (sum, mean, sum_to, softmax, log_softmax, rmsnorm, layernorm, cross_entropy,
 *     embedding_grad) accumulate in double and round the result once;
 *   - i32 arithmetic wraps (two's complement); conversions from double to i32 (cast, scale of an
 *     i32 tensor) truncate toward zero and saturate, NaN -> 0;
 *   - dropout keeps element i iff pc_hash_uniform((uint64_t)(int64_t)seed, (uint64_t)salt, i)
 *     >= p and multiplies kept values by the f32 constant (float)(1 / (1 - p));
 *   - rope angles are pos * theta^(-2i/D), computed in double.
 * bf16 (a storage type: cast, matmul, embedding, reshape): f32 -> bf16 rounds to nearest even
 * (runtime/bf16.h), bf16 -> f32 is exact; a bf16 x bf16 matmul multiplies the exact f32 values
 * and accumulates in f32 like an f32 one, so only the summation order separates it from oneDNN. */
#ifndef PEFTC_BACKEND_REF_INTERNAL_H
#define PEFTC_BACKEND_REF_INTERNAL_H

#include "backend/ref.h"
#include "ir.h"

#include <stdbool.h>
#include <stdint.h>

struct pc_ref {
    const pc_graph *g;
    int n;                /* number of values when created */
    void **data;          /* current data of each value (NULL = not available) */
    bool *owned;          /* data[v] was malloc'd for a computed value of the last run */
    void **bound;         /* caller memory bound with pc_ref_bind */
    void **init;          /* internally initialised param/state memory (persists across runs) */
    int *last_use;        /* last consumer of each value (-1 = none) */
    bool *keep;           /* survives the run: outputs, update values, leaves */
    bool keep_all;
    bool check_finite;    /* stop at the first NaN/inf an op produces (backend/finite.h) */
    bool ran;             /* the last pc_ref_run succeeded */
    uint64_t seed;
    const void **inbuf;   /* operand pointers for the kernel being run */
    int maxin;
};

/* what a kernel sees */
typedef struct {
    const pc_graph *g;
    pc_val v;
    const pc_value *node;
    void *out;
    const void *const *in; /* node->nin operand buffers */
    char *err;
    size_t errlen;
} ref_kctx;

/* typed access */
static inline const pc_value *ref_opnd(const ref_kctx *k, int i) { return &k->g->vals[k->node->in[i]]; }
static inline pc_shape ref_ishape(const ref_kctx *k, int i) { return ref_opnd(k, i)->shape; }
static inline pc_dtype ref_idtype(const ref_kctx *k, int i) { return ref_opnd(k, i)->dtype; }
static inline const float *ref_inf(const ref_kctx *k, int i) { return (const float *)k->in[i]; }
static inline const int32_t *ref_ini(const ref_kctx *k, int i) { return (const int32_t *)k->in[i]; }
static inline float *ref_outf(const ref_kctx *k) { return (float *)k->out; }
static inline int32_t *ref_outi(const ref_kctx *k) { return (int32_t *)k->out; }
static inline const pc_attr *ref_attr(const ref_kctx *k, int i) { return &k->node->attr[i]; }

/* Formats "FILE:LINE: error: %name (op dtype[shape]): message" into k->err; returns -1. */
int ref_fail(const ref_kctx *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "%name (op dtype[shape])" of value v, for messages */
void ref_describe(const pc_graph *g, pc_val v, char *buf, size_t len);

/* ---- strided N-d iteration ----
 * Walks an output shape row by row (a row = the innermost axis); for each operand k it keeps
 * the offset of the row start and the operand's stride along every output axis (0 where the
 * operand is broadcast). Scalars are treated as shape [1]. */
#define REF_MAX_OPS 4
typedef struct {
    int rank;
    int64_t dim[PC_MAX_RANK];
    int nop;
    int64_t st[REF_MAX_OPS][PC_MAX_RANK];
    int64_t idx[PC_MAX_RANK];
    int64_t off[REF_MAX_OPS];
    int64_t nrows; /* number of rows (0 if the shape is empty) */
    int64_t len;   /* row length */
} ref_iter;

/* strides of a contiguous tensor of shape `in` seen through an output shape `out` that it
 * broadcasts to (trailing axes aligned; 0 on broadcast and missing axes) */
void ref_bcast_strides(pc_shape in, pc_shape out, int64_t st[PC_MAX_RANK]);
void ref_contig_strides(pc_shape s, int64_t st[PC_MAX_RANK]);
/* operand k gets strides st (given per output axis) */
void ref_iter_init(ref_iter *it, pc_shape out, int nop, const int64_t st[][PC_MAX_RANK]);
/* advances to the next row; offsets are updated incrementally */
void ref_iter_next(ref_iter *it);

/* runs the kernel of k->node's op (the compiled backend re-runs a fused kernel's ops one by one
 * here to find which of them made a NaN: backend/compiled_finite.c) */
int ref_run_kernel(const ref_kctx *k);

/* ---- kernels: one per op of ops.def (leaf kernels just refuse; the core handles leaves) ---- */
#define OP(id, name, nin, fusion, diff, attrs) int ref_##id(const ref_kctx *k);
#include "ops.def"
#undef OP

#endif
