/* Graph patterns of the lowering (backend/lower.c) that replace several values by one
 * instruction or by none: the softmax backward as autograd writes it, and scales that only
 * products read. */
#include "backend/lower_internal.h"

/* the softmax backward as autograd writes it, y (g - sum(g y, last axis, keepdim)), optionally
 * followed by causal_mask(fill=0) and scale(alpha): one C kernel instead of five passes */
void pc_lower_match_softmax_grad(lctx *c, pc_val v) {
    const pc_graph *g = c->g;
    const pc_value *x = &g->vals[v];
    if (!is_op(c, v, PC_OP_mul, D_GROUP) || x->shape.rank < 1) return;
    for (int side = 0; side < 2; side++) {
        pc_val y = x->in[side], d = x->in[1 - side];
        if (!is_op(c, d, PC_OP_sub, D_GROUP) || !single_use(c, d)) continue;
        pc_val gv = g->vals[d].in[0], s = g->vals[d].in[1];
        if (!is_op(c, s, PC_OP_sum, D_CALL) || !single_use(c, s)) continue;
        const pc_value *sx = &g->vals[s];
        if (sx->attr[1].i != 1 || sx->attr[0].n != 1 || pc_norm_axis(sx->attr[0].ints[0], x->shape.rank) != x->shape.rank - 1)
            continue;
        pc_val m = sx->in[0];
        if (!is_op(c, m, PC_OP_mul, D_GROUP) || !single_use(c, m)) continue;
        const pc_value *mx = &g->vals[m];
        if (!((mx->in[0] == gv && mx->in[1] == y) || (mx->in[0] == y && mx->in[1] == gv))) continue;
        if (!pc_shape_eq(g->vals[y].shape, x->shape) || !pc_shape_eq(g->vals[gv].shape, x->shape)) continue;
        pc_val top = v, mask = PC_NONE;
        double alpha = 1.0;
        pc_val chain[5] = {m, s, d, v, PC_NONE};
        int nch = 4;
        if (single_use(c, top) && c->ustart[top + 1] > c->ustart[top]) {
            pc_val u = c->users[c->ustart[top]];
            if (is_op(c, u, PC_OP_causal_mask, D_CALL) && g->vals[u].attr[0].f == 0.0 && x->shape.rank >= 2) {
                mask = top = u;
                chain[nch++] = u;
            }
        }
        if (single_use(c, top) && c->ustart[top + 1] > c->ustart[top]) {
            pc_val u = c->users[c->ustart[top]];
            if (is_op(c, u, PC_OP_scale, D_GROUP) && g->vals[u].attr[1].f == 0.0) {
                alpha = g->vals[u].attr[0].f;
                top = u;
            }
        }
        for (int i = 0; i < nch; i++)
            if (chain[i] != top) c->kind[chain[i]] = D_ABSORBED, c->absorber[chain[i]] = top;
        c->kind[top] = D_SMGRAD;
        c->mmv[top] = v;     /* the final mul: its operands are y and the (absorbed) sub */
        c->accx[top] = mask; /* the causal mask, or PC_NONE */
        c->alpha[top] = alpha;
        return;
    }
}

/* whether every reader of v, through views, is an f32 product */
static bool only_products(const lctx *c, pc_val v, int depth) {
    const pc_graph *g = c->g;
    if (c->pinned[v] || depth > 8) return false;
    for (int k = c->ustart[v]; k < c->ustart[v + 1]; k++) {
        pc_val u = c->users[k];
        const pc_value *ux = &g->vals[u];
        if (c->kind[u] == D_VIEW) {
            if (!only_products(c, u, depth + 1)) return false;
            continue;
        }
        if (ux->op != PC_OP_matmul || ux->dtype != PC_F32) return false;
        if (c->kind[u] == D_MATMUL) continue;
        pc_val a = c->absorber[u];
        if (c->kind[u] != D_ABSORBED || a == PC_NONE || (c->kind[a] != D_MM_SCALE && c->kind[a] != D_MM_ACC)) return false;
    }
    return true;
}

/* scale(x){alpha} read only by products (directly or through views): it aliases x's buffer and
 * each product multiplies its alpha (autograd's LoRA/IA3 scalings of an adjoint would otherwise
 * be a pass over memory and a buffer of their own) */
void pc_lower_match_operand_scale(lctx *c, pc_val v) {
    const pc_value *x = &c->g->vals[v];
    if (!is_op(c, v, PC_OP_scale, D_GROUP) || x->attr[1].f != 0.0 || c->nuse[v] == 0) return;
    if (c->g->vals[x->in[0]].dtype != PC_F32 || !only_products(c, v, 0)) return;
    c->kind[v] = D_SCALED_ALIAS;
}

/* the alpha a product's operand o carries: the scale it reads through views */
double pc_lower_operand_alpha(const lctx *c, pc_val o) {
    while (c->kind[o] == D_VIEW) o = c->g->vals[o].in[0];
    return c->kind[o] == D_SCALED_ALIAS ? c->g->vals[o].attr[0].f : 1.0;
}
