/* The instruction IR: the level below the graph IR (Glow-style). A lowered graph is a linear
 * list of instructions over explicit buffers:
 *
 *   MATMUL  a oneDNN matmul (transposes and batch broadcast as dims/strides; alpha from a folded
 *           scale; accumulate = c += alpha a@b into the buffer of an add's other operand)
 *   KERNEL  a fused group of elementwise ops (fuse-elementwise) -> a pc_kernel_desc for LLVM
 *   CALL    a C kernel for one op (softmax, rmsnorm, embedding, reductions, ...), dense operands
 *   COPY    materialises a strided view densely (a transpose feeding a CALL, a broadcast that a
 *           reshape cannot express, a strided graph output)
 *   VIEW    reshape / transpose / broadcast / slice: no code, the value aliases its operand's
 *           buffer with an offset and strides (kept in the list for the dump only)
 *
 * Every value that exists in memory has a view: a buffer, an element offset and per-axis element
 * strides. Buffers are external (inputs, params, states: bound by the user; constants: graph
 * data) or arena buffers whose offsets come from the memory plan (backend/memplan.c).
 *
 *   pc_lowered *l = pc_lower(g, err, sizeof err);     // fusion + lowering
 *   ... set l->insn[i].scratch for CALLs that need scratch memory ...
 *   pc_memplan(l, err, sizeof err);                    // liveness -> arena offsets
 *   char *text = pc_lowered_print(l);                  // the --dump-after=lower text
 */
#ifndef PEFTC_BACKEND_LOWER_H
#define PEFTC_BACKEND_LOWER_H

#include "backend/kernel.h"
#include "backend/onednn.h"
#include "ir/ir.h"

#include <stdbool.h>
#include <stdint.h>

/* ---- fuse-elementwise (backend/fuse_elementwise.c) ----
 * Groups ELEMENTWISE-class ops of one result shape into kernels. A value joins the group of an
 * operand when the shapes agree and no value outside the group has used a member yet (so the
 * kernel, run at the position of its last member, precedes every outside user). Groups respect
 * the pc_kernel_desc limits. */
typedef struct {
    int ngroups;
    int *group;    /* per value: group id, or -1 (not fused) */
    pc_val *last;  /* per group: the member with the highest index (where the kernel runs) */
    int *nmembers; /* per group */
} pc_fusion;

/* which ops may be fused and which operand is a hyper-parameter vector: backend/kernel.h
 * (pc_fusable_op, pc_kernel_hp_operand), shared with the LLVM kernel emitter.
 * exclude (per value, may be NULL): values that must not be fused; live (per value, may be
 * NULL): values that are computed at all. 0 or -1 (out of memory). */
int pc_fuse_elementwise(const pc_graph *g, const bool *exclude, const bool *live, pc_fusion *f, char *err,
                        size_t errlen);
void pc_fusion_free(pc_fusion *f);

/* ---- buffers and views ---- */
typedef enum { PC_BUF_ARENA, PC_BUF_INPUT, PC_BUF_PARAM, PC_BUF_STATE, PC_BUF_CONST } pc_buf_kind;

typedef struct {
    pc_buf_kind kind;
    pc_val owner;   /* the value whose storage it is (PC_NONE for a temporary / scratch) */
    int64_t bytes;
    int64_t offset; /* arena offset in bytes (after pc_memplan) */
    int first, last; /* live interval over instruction indices (after pc_memplan) */
    bool pinned;    /* holds an output or an update value: lives to the end */
} pc_lbuf;

typedef struct {
    int buf;                     /* -1: the value is not in memory (fused away or dead) */
    int64_t off;                 /* element offset */
    int64_t st[PC_MAX_RANK];     /* element strides (0 = broadcast) */
    bool dense;                  /* row-major contiguous at off */
} pc_lview;

/* an instruction operand or result: a tensor in memory */
typedef struct {
    pc_val v;   /* the graph value (for names), PC_NONE for a temporary */
    pc_dtype dt;
    pc_shape shape;
    pc_lview view;
} pc_lref;

typedef enum { PC_LI_MATMUL, PC_LI_KERNEL, PC_LI_CALL, PC_LI_COPY, PC_LI_VIEW } pc_li_kind;

/* CALL variants beyond "the op of value v" */
typedef enum {
    PC_CALL_OP = 0,         /* the op of value v, operands = its operands (dense) */
    PC_CALL_MASKED_SOFTMAX, /* softmax(causal_mask(x)) over the last axis; attrs from both */
    PC_CALL_SOFTMAX_GRAD,   /* alpha * [causal_mask0](y (g - sum(g y, last axis))): operands y, g */
    PC_CALL_ATTN,           /* softmax(causal_mask(alpha q k^T)): operands q [.., Sq, D], k [.., Sk, D] (views) */
    PC_CALL_ATTN_GRAD,      /* SOFTMAX_GRAD with g = d o v^T: operands y (dense), d o [.., Sq, D], v [.., Sk, D] (views) */
    PC_CALL_FLASH,          /* o = ATTN(q, k) v: operands q, k, v (views); result o */
    PC_CALL_FLASH_GRAD,     /* its backward: operands q, k, v, d o (views); results d q, d k, d v (outmask); aux/alpha: the
                               forward's mask and scale, aux2/alpha2: the softmax backward's */
    PC_CALL_MUL_SUM,        /* sum_to(a * b) of value v: operands a, b (views, the product's shape); the product is not stored */
    PC_CALL_RMSNORM_GRAD,   /* d x of rmsnorm(x, w) as autograd writes it: operands x, w, d y (dense); alpha: eps;
                             * aux: the absorbed square of x (--check-finite names it when x^2 overflows) */
} pc_call_kind;

typedef struct {
    pc_li_kind kind;
    pc_val v;          /* the value it computes (KERNEL: its last member) */
    int nin, nout;
    pc_lref *in, *out; /* owned */
    /* MATMUL */
    pc_matmul_desc mm;
    bool mm_zero;      /* K == 0: the result is zeros (no primitive) */
    bool mm_c;         /* the backend runs it with its own C kernel, not oneDNN (set before the dump) */
    /* KERNEL */
    pc_kernel_desc *kd; /* owned */
    int group;
    pc_val *members;   /* fused values in order (owned) */
    int nmembers;
    /* CALL */
    pc_call_kind call;
    pc_val aux;        /* the causal_mask value of a MASKED_SOFTMAX / SOFTMAX_GRAD / ATTN* (or PC_NONE) */
    double alpha;      /* SOFTMAX_GRAD, ATTN*, FLASH*: the folded scale */
    pc_val aux2;       /* FLASH_GRAD: the softmax backward's causal_mask (or PC_NONE) */
    double alpha2;     /* FLASH_GRAD: the softmax backward's scale */
    unsigned outmask;  /* FLASH_GRAD: which of d q, d k, d v (bits 0, 1, 2) are its results, in that order */
    int64_t scratch;   /* bytes of arena scratch the C kernel needs (set before pc_memplan) */
    int scratch_buf;   /* after pc_memplan: the scratch buffer, or -1 */
} pc_linsn;

typedef struct {
    const pc_graph *g;
    pc_lview *view;    /* per value */
    bool *live;        /* per value: computed at all (reaches an output or update) */
    pc_lbuf *buf;
    int nbufs, capbufs;
    pc_linsn *insn;
    int ninsns, capinsns;
    pc_fusion fusion;
    int64_t arena_bytes;  /* after pc_memplan */
    int64_t peak_bytes;   /* lower bound: the largest sum of simultaneously live buffers */
    int naccumulate;      /* matmuls accumulating into an add's operand */
} pc_lowered;

pc_lowered *pc_lower(const pc_graph *g, char *err, size_t errlen);
void pc_lowered_free(pc_lowered *l);

/* liveness over the instruction list and a greedy best-fit placement of arena buffers
 * (64-byte aligned); fills buf[].offset/first/last, scratch_buf and arena_bytes */
int pc_memplan(pc_lowered *l, char *err, size_t errlen);

/* the text dump (malloc'd): one instruction per line with buffers, shapes, offsets, sizes */
char *pc_lowered_print(const pc_lowered *l);
/* "arena+64:131072", "param", ... for a reference (for messages) */
void pc_lref_str(const pc_lowered *l, const pc_lref *r, char *buf, size_t len);

/* view geometry (backend/memplan.c) */
void pc_contig_strides(pc_shape s, int64_t st[PC_MAX_RANK]);
bool pc_view_is_dense(pc_shape s, const int64_t st[PC_MAX_RANK]); /* size-1 axes ignored */
/* numpy's no-copy reshape: strides for shape ns over the elements of (os, ost), or false */
bool pc_reshape_strides(pc_shape os, const int64_t *ost, pc_shape ns, int64_t *nst);

#endif
