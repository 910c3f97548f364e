/* The lowering's shared state (backend/lower.c) and the graph patterns it matches
 * (backend/lower_match.c). Internal to the two files. */
#ifndef PEFTC_BACKEND_LOWER_INTERNAL_H
#define PEFTC_BACKEND_LOWER_INTERNAL_H

#include "backend/lower.h"

/* what each value becomes */
enum { D_DEAD, D_LEAF, D_VIEW, D_GROUP, D_MATMUL, D_MM_SCALE, D_MM_ACC, D_ABSORBED, D_MSOFTMAX, D_SMGRAD, D_CALL,
       D_SCALED_ALIAS /* scale(x) read only by products (through views): x's buffer, the alpha in the products */ };

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
/* the alpha a product's operand o carries (a D_SCALED_ALIAS it reads through views), or 1 */
double pc_lower_operand_alpha(const lctx *c, pc_val o);

#endif
