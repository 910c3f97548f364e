/* The lowering's shared state (backend/lower.c) and the graph patterns it matches
 * (backend/lower_match.c). Internal to the two files. */
#ifndef PEFTC_BACKEND_LOWER_INTERNAL_H
#define PEFTC_BACKEND_LOWER_INTERNAL_H

#include "backend/lower.h"

/* what each value becomes */
enum { D_DEAD, D_LEAF, D_VIEW, D_GROUP, D_MATMUL, D_MM_SCALE, D_MM_ACC, D_ABSORBED, D_MSOFTMAX, D_SMGRAD, D_CALL,
       D_SCALED_ALIAS, /* scale(x) read only by products (through views): x's buffer, the alpha in the products */
       D_ATTN,         /* softmax(causal_mask([scale] q k^T)): one C kernel reading q and k */
       D_ATTN_GRAD,    /* a SMGRAD whose g is d o v^T: one C kernel reading y, d o and v */
       D_FLASH,        /* o = p v with p a D_ATTN only products read: one C kernel from q, k, v (p stays in cache) */
       D_FLASH_GRAD,   /* d q, d k, d v of a D_FLASH: one C kernel from q, k, v, d o, at the last of them */
       D_MM_SUM,       /* sum_to over every batch axis of a small batched product: one product summing them */
       D_MUL_SUM,      /* sum_to(a * b), the mul read by nothing else: one C kernel from a and b */
       D_RMSNORM_GRAD }; /* rmsnorm's d x as autograd writes it (two row means, eight elementwise ops): one C kernel */

typedef struct {
    const pc_graph *g;
    pc_lowered *l;
    int n;
    int *kind;
    int *nuse;        /* live users */
    bool *pinned;     /* outputs and update values */
    pc_val *mmv;      /* MM_SCALE / MM_ACC: the matmul node; MSOFTMAX: the causal_mask */
    double *alpha;
    pc_val *accx;     /* MM_ACC: the operand accumulated into */
    pc_val *absorber; /* ABSORBED: the value whose instruction computes it */
    pc_val *prod;     /* ATTN / ATTN_GRAD: the product absorbed (q k^T, d o v^T); FLASH*: the D_ATTN p */
    pc_val *fl;       /* FLASH_GRAD: 4 per value: the ATTN_GRAD, d q, d k, d v; RMSNORM_GRAD: [0] the square */
    pc_val *root;     /* buffer-level alias root (views and accumulating adds share one) */
    int *mat;         /* per value: dense materialisation buffer of a strided view, or -1 */
    int *ustart;      /* live users, CSR */
    pc_val *users;
    char *err;
    size_t errlen;
} lctx;

static inline bool single_use(const lctx *c, pc_val v) { return c->nuse[v] == 1 && !c->pinned[v]; }

static inline bool is_op(const lctx *c, pc_val v, pc_opcode op, int kind) {
    return c->g->vals[v].op == op && c->kind[v] == kind && c->g->vals[v].dtype == PC_F32;
}

/* y (g - sum(g y)) [causal_mask(fill=0)] [scale]: one D_SMGRAD value */
void pc_lower_match_softmax_grad(lctx *c, pc_val v);
/* scale(x) read only by products: D_SCALED_ALIAS */
void pc_lower_match_operand_scale(lctx *c, pc_val v);
/* D_MSOFTMAX over q k^T -> D_ATTN; D_SMGRAD of d o v^T -> D_ATTN_GRAD */
void pc_lower_match_attention(lctx *c, pc_val v);
/* o = p v over a D_ATTN p -> D_FLASH (+ D_FLASH_GRAD when its backward has the expected form) */
void pc_lower_match_flash(lctx *c, pc_val v);
/* sum_to(m) of a small batched f32 product m down to its [M, N]: D_MM_SUM (mmv: m) */
void pc_lower_match_batch_sum(lctx *c, pc_val v);
/* sum_to(mul(a, b)) with the mul read only there: D_MUL_SUM (mmv: the mul) */
void pc_lower_match_mul_sum(lctx *c, pc_val v);
/* r (g w - xh mean(g w xh)), xh = x r, r = rsqrt(mean(x^2) + eps): D_RMSNORM_GRAD (mmv: x, prod: g,
 * accx: w, alpha: eps, fl[4 v]: the square of x) */
void pc_lower_match_rmsnorm_grad(lctx *c, pc_val v);
/* what the CALL instruction of value v reads and writes */
#define PC_CALL_MAX_IN 4
typedef struct {
    pc_call_kind ck;
    int nin, nstrided, nout;      /* the last nstrided operands are read through their views */
    const pc_val *ins;            /* the nin operands: in, or the op's own (any number) */
    pc_val in[PC_CALL_MAX_IN], out[3];
    unsigned outmask;             /* FLASH_GRAD: which of d q, d k, d v are the results */
    pc_val aux, aux2;             /* masks (pc_linsn's fields of the same names) */
    double alpha, alpha2;
} pc_call_form;
void pc_lower_call_form(const lctx *c, pc_val v, pc_call_form *f);

/* the alpha a product's operand o carries (a D_SCALED_ALIAS it reads through views), or 1 */
double pc_lower_operand_alpha(const lctx *c, pc_val o);

#endif
