/* Graph patterns of the lowering (backend/lower.c) that replace several values by one
 * instruction or by none: the softmax backward as autograd writes it, and scales that only
 * products read. */
#include "backend/lower_internal.h"

#include <string.h>

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

/* sum_to(m) with m a batched product [B..., M, N] and the target [M, N] (leading 1s allowed):
 * the weight gradient of a factor broadcast over the batch, as autograd writes it (LoKr's w1,
 * passes/kron.c: dA = sum_n dS[n] X[n]^T over N = 512 rows of 4x8). One product that sums the
 * batch as it goes needs neither the [B, M, N] buffer nor the pass over it. Only the C kernels
 * run it, so only small matrices (at most 64 x 64, K <= 64) take it; larger ones keep oneDNN's
 * batched product and the sum_to. */
void pc_lower_match_batch_sum(lctx *c, pc_val v) {
    const pc_graph *g = c->g;
    const pc_value *x = &g->vals[v];
    if (!is_op(c, v, PC_OP_sum_to, D_CALL)) return;
    pc_val m = x->in[0];
    if (c->kind[m] != D_MATMUL || !single_use(c, m)) return;
    const pc_value *mx = &g->vals[m];
    if (g->vals[mx->in[0]].dtype != PC_F32 || g->vals[mx->in[1]].dtype != PC_F32) return;
    int R = mx->shape.rank, r = x->shape.rank;
    if (R < 3 || r > R || r < 2) return;
    int64_t M = mx->shape.dim[R - 2], N = mx->shape.dim[R - 1];
    if (x->shape.dim[r - 2] != M || x->shape.dim[r - 1] != N) return;
    for (int i = 0; i < r - 2; i++)
        if (x->shape.dim[i] != 1) return;
    const pc_value *ax = &g->vals[mx->in[0]];
    int64_t K = ax->shape.dim[ax->shape.rank - (mx->attr[0].i ? 2 : 1)];
    if (M > 64 || N > 64 || K > 64) return;
    c->kind[v] = D_MM_SUM;
    c->mmv[v] = m;
    c->alpha[v] = 1.0;
    c->kind[m] = D_ABSORBED;
    c->absorber[m] = v;
}

/* sum_to(m) with m = a * b read by nothing else (autograd's gradient of a broadcast factor:
 * LoHa's Khatri-Rao rows, IA3's vector): one C kernel reading a and b through their views
 * (compiled_mul_sum.c), neither m's buffer nor the pass over it */
void pc_lower_match_mul_sum(lctx *c, pc_val v) {
    const pc_graph *g = c->g;
    if (!is_op(c, v, PC_OP_sum_to, D_CALL)) return;
    pc_val m = g->vals[v].in[0];
    if (!is_op(c, m, PC_OP_mul, D_GROUP) || !single_use(c, m)) return;
    const pc_value *mx = &g->vals[m];
    for (int k = 0; k < 2; k++)
        if (g->vals[mx->in[k]].dtype != PC_F32 || !pc_shape_eq(g->vals[mx->in[k]].shape, mx->shape)) return;
    c->kind[v] = D_MUL_SUM;
    c->mmv[v] = m;
    c->kind[m] = D_ABSORBED;
    c->absorber[m] = v;
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
        if (c->kind[u] != D_ABSORBED || a == PC_NONE || (c->kind[a] != D_MM_SCALE && c->kind[a] != D_MM_ACC && c->kind[a] != D_MM_SUM)) return false;
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

/* a mean over the last axis with keepdim, f32, read only once */
static bool row_mean(const lctx *c, pc_val m) {
    const pc_value *x = &c->g->vals[m];
    return is_op(c, m, PC_OP_mean, D_CALL) && single_use(c, m) && x->attr[1].i == 1 && x->attr[0].n == 1 &&
           pc_norm_axis(x->attr[0].ints[0], x->shape.rank) == x->shape.rank - 1;
}

/* a mul of f32 group members a and b, in either order */
static bool mul_of(const lctx *c, pc_val m, pc_val a, pc_val b) {
    const pc_value *x = &c->g->vals[m];
    return is_op(c, m, PC_OP_mul, D_GROUP) && ((x->in[0] == a && x->in[1] == b) || (x->in[0] == b && x->in[1] == a));
}

/* the other operand of a binary m than o, or PC_NONE */
static pc_val other_operand(const lctx *c, pc_val m, pc_val o) {
    const pc_value *x = &c->g->vals[m];
    return x->in[0] == o ? x->in[1] : x->in[1] == o ? x->in[0] : PC_NONE;
}

/* rmsnorm's backward as ir/grad.c writes it, d x = r (g w - xh dot) with dot = mean(g w xh),
 * xh = x r, r = rsqrt(scale(mean(square(x)), 1, eps)): ten values besides d x, two of them row
 * means, each a pass over the rows (and four stored [rows, d] intermediates). One C kernel reads
 * x, w and g once per row. Only where nothing else reads the intermediates (a trainable w also reads xh).
 * x^2 overflowing makes r 0 and d x finite: --check-finite looks at the square itself (aux). */
void pc_lower_match_rmsnorm_grad(lctx *c, pc_val v) {
    const pc_graph *g = c->g;
    const pc_value *vx = &g->vals[v];
    if (!is_op(c, v, PC_OP_mul, D_GROUP) || vx->shape.rank < 1) return;
    for (int side = 0; side < 2; side++) {
        pc_val r = vx->in[side], d = vx->in[1 - side];
        if (!is_op(c, r, PC_OP_rsqrt, D_GROUP) || c->nuse[r] != 2 || c->pinned[r]) continue;
        if (!is_op(c, d, PC_OP_sub, D_GROUP) || !single_use(c, d)) continue;
        pc_val gw = g->vals[d].in[0], t = g->vals[d].in[1];
        if (!is_op(c, gw, PC_OP_mul, D_GROUP) || c->nuse[gw] != 2 || c->pinned[gw]) continue;
        if (!is_op(c, t, PC_OP_mul, D_GROUP) || !single_use(c, t)) continue;
        /* t = xh dot: xh = x r (read by t and dot's product only), dot = mean(gw xh) */
        pc_val xh = PC_NONE, dot = PC_NONE;
        for (int k = 0; k < 2; k++) {
            pc_val a = g->vals[t].in[k], b = g->vals[t].in[1 - k];
            if (is_op(c, a, PC_OP_mul, D_GROUP) && other_operand(c, a, r) != PC_NONE && row_mean(c, b)) xh = a, dot = b;
        }
        if (xh == PC_NONE || c->nuse[xh] != 2 || c->pinned[xh]) continue;
        pc_val x = other_operand(c, xh, r), m2 = g->vals[dot].in[0];
        if (!mul_of(c, m2, gw, xh) || !single_use(c, m2)) continue;
        /* r = rsqrt(scale(mean(square(x)), alpha 1, beta eps)) */
        pc_val sc = g->vals[r].in[0];
        if (!is_op(c, sc, PC_OP_scale, D_GROUP) || !single_use(c, sc) || g->vals[sc].attr[0].f != 1.0) continue;
        pc_val ms = g->vals[sc].in[0];
        if (!row_mean(c, ms)) continue;
        pc_val sq = g->vals[ms].in[0];
        if (!is_op(c, sq, PC_OP_square, D_GROUP) || !single_use(c, sq) || g->vals[sq].in[0] != x) continue;
        /* gw = g w: g of x's shape, w a vector over the last axis */
        pc_val gr = g->vals[gw].in[0], w = g->vals[gw].in[1];
        if (!pc_shape_eq(g->vals[gr].shape, vx->shape)) gr = g->vals[gw].in[1], w = g->vals[gw].in[0];
        pc_shape xs = g->vals[x].shape, ws = g->vals[w].shape;
        if (!pc_shape_eq(xs, vx->shape) || !pc_shape_eq(g->vals[gr].shape, vx->shape) || ws.rank != 1 ||
            ws.dim[0] != xs.dim[xs.rank - 1] || g->vals[x].dtype != PC_F32 || g->vals[w].dtype != PC_F32 ||
            g->vals[gr].dtype != PC_F32)
            continue;
        const pc_val absorbed[10] = {r, d, gw, t, xh, dot, m2, sc, ms, sq};
        for (int i = 0; i < 10; i++) c->kind[absorbed[i]] = D_ABSORBED, c->absorber[absorbed[i]] = v;
        c->kind[v] = D_RMSNORM_GRAD;
        c->mmv[v] = x, c->prod[v] = gr, c->accx[v] = w;
        c->alpha[v] = g->vals[sc].attr[1].f;
        c->fl[4 * v] = sq;
        return;
    }
}

/* the alpha a product's operand o carries: the scale it reads through views */
double pc_lower_operand_alpha(const lctx *c, pc_val o) {
    while (c->kind[o] == D_VIEW) o = c->g->vals[o].in[0];
    return c->kind[o] == D_SCALED_ALIAS ? c->g->vals[o].attr[0].f : 1.0;
}

/* a product q k^T (transpose_b, f32) whose operands have the result's rank: the form the
 * attention kernels read through the operands' views */
static bool attention_product(const lctx *c, pc_val m) {
    const pc_value *x = &c->g->vals[m];
    if (x->op != PC_OP_matmul || x->dtype != PC_F32 || x->attr[0].i != 0 || x->attr[1].i != 1) return false;
    for (int k = 0; k < 2; k++) {
        const pc_value *o = &c->g->vals[x->in[k]];
        if (o->dtype != PC_F32 || o->shape.rank != x->shape.rank) return false;
    }
    return true;
}

/* the scores of causal attention, softmax(causal_mask([scale] q k^T)), and the softmax backward
 * whose incoming gradient is d o v^T: the product runs inside the C kernel, row by row next to
 * the softmax, so that neither the raw scores nor d p go through memory */
void pc_lower_match_attention(lctx *c, pc_val v) {
    const pc_graph *g = c->g;
    if (c->kind[v] == D_MSOFTMAX) {
        pc_val s = g->vals[c->mmv[v]].in[0], m = s;
        double alpha = 1.0;
        if (!single_use(c, s)) return;
        if (c->kind[s] == D_MM_SCALE) m = c->mmv[s], alpha = c->alpha[s];
        else if (c->kind[s] != D_MATMUL) return;
        /* a scale read through a reshape of the product (lower.c) leaves the kernel's shapes */
        if (!pc_shape_eq(g->vals[m].shape, g->vals[s].shape) || !attention_product(c, m)) return;
        c->kind[v] = D_ATTN;
        c->prod[v] = m;
        c->alpha[v] = alpha;
        c->kind[s] = c->kind[m] = D_ABSORBED;
        c->absorber[s] = c->absorber[m] = v;
        return;
    }
    if (c->kind[v] != D_SMGRAD) return;
    const pc_value *mx = &g->vals[c->mmv[v]]; /* y (g - s): the sub is absorbed into v */
    int ds = g->vals[mx->in[1]].op == PC_OP_sub && c->kind[mx->in[1]] == D_ABSORBED && c->absorber[mx->in[1]] == v;
    pc_val gv = g->vals[mx->in[ds]].in[0];
    if (c->kind[gv] != D_MATMUL || c->pinned[gv] || !attention_product(c, gv)) return;
    for (int k = c->ustart[gv]; k < c->ustart[gv + 1]; k++) /* read only inside the softmax backward */
        if (c->kind[c->users[k]] != D_ABSORBED || c->absorber[c->users[k]] != v) return;
    c->kind[v] = D_ATTN_GRAD;
    c->prod[v] = gv;
    c->kind[gv] = D_ABSORBED;
    c->absorber[gv] = v;
}

/* a product a b of the given transposes (f32), kind D_MATMUL, with those operands */
static bool product_of(const lctx *c, pc_val m, int ta, int tb, pc_val a, pc_val b) {
    const pc_value *x = &c->g->vals[m];
    return x->op == PC_OP_matmul && x->dtype == PC_F32 && c->kind[m] == D_MATMUL && x->attr[0].i == ta &&
           x->attr[1].i == tb && x->in[0] == a && x->in[1] == b;
}

/* every live reader of v comes after position pos */
static bool read_after(const lctx *c, pc_val v, pc_val pos) {
    for (int k = c->ustart[v]; k < c->ustart[v + 1]; k++)
        if (c->users[k] <= pos) return false;
    return true;
}

/* the sum_to that is m's only reader, if it sums batch axes only ([.., S, D] kept): autograd's
 * reduction of d k or d v over query heads that share a kv head (a broadcast batch axis) */
static pc_val heads_sum(const lctx *c, pc_val m) {
    if (!single_use(c, m) || c->ustart[m + 1] <= c->ustart[m]) return PC_NONE;
    pc_val s = c->users[c->ustart[m]];
    if (!is_op(c, s, PC_OP_sum_to, D_CALL)) return PC_NONE;
    pc_shape a = c->g->vals[m].shape, b = c->g->vals[s].shape;
    if (a.rank != b.rank || a.dim[a.rank - 1] != b.dim[b.rank - 1] || a.dim[a.rank - 2] != b.dim[b.rank - 2]) return PC_NONE;
    for (int i = 0; i < a.rank - 2; i++)
        if (b.dim[i] != a.dim[i] && b.dim[i] != 1) return PC_NONE;
    return s;
}

/* Causal attention as one kernel each way (the flash-attention idea): o = p v where p is a
 * D_ATTN read by nothing but products computes p head by head in cache and never stores it.
 * In a training graph p is also read by its backward, d v = pᵀ d o and the softmax backward g
 * (a D_ATTN_GRAD over d o vᵀ), whose result only d q = g k and d k = gᵀ q read: then those
 * products (the ones present: an input may need no gradient) are one kernel too, which
 * recomputes p, at the position of the first of them (its inputs q, k, v and d o are all there;
 * a later one may already be read). Grouped kv heads (k, v broadcast over query heads): d k and
 * d v come out summed over the heads that share them, the sum_to absorbed. Heads up to 256 x 256
 * (p, g in cache). */
void pc_lower_match_flash(lctx *c, pc_val v) {
    const pc_graph *g = c->g;
    const pc_value *x = &g->vals[v];
    if (x->op != PC_OP_matmul || c->kind[v] != D_MATMUL || x->dtype != PC_F32 || x->attr[0].i || x->attr[1].i) return;
    pc_val p = x->in[0], vv = x->in[1];
    if (c->kind[p] != D_ATTN || c->pinned[p] || g->vals[vv].dtype != PC_F32 || g->vals[vv].shape.rank != x->shape.rank)
        return;
    pc_shape ps = g->vals[p].shape;
    if (ps.dim[ps.rank - 2] > 256 || ps.dim[ps.rank - 1] > 256) return;
    const pc_value *qk = &g->vals[c->prod[p]];
    pc_val q = qk->in[0], k = qk->in[1], dv = PC_NONE, sg = PC_NONE;
    for (int u = c->ustart[p]; u < c->ustart[p + 1]; u++) { /* v, d v, and the softmax backward's members */
        pc_val w = c->users[u], a = c->kind[w] == D_ABSORBED ? c->absorber[w] : PC_NONE;
        if (w == v) continue;
        if (a != PC_NONE && c->kind[a] == D_ATTN_GRAD && (sg == PC_NONE || sg == a)) sg = a;
        else if (c->kind[w] == D_MATMUL && dv == PC_NONE) dv = w;
        else return;
    }
    pc_val dq = PC_NONE, dk = PC_NONE, pos = PC_NONE;
    if (dv != PC_NONE && sg == PC_NONE) { /* only v needs a gradient */
        if (!product_of(c, dv, 1, 0, p, g->vals[dv].in[1]) || !read_after(c, dv, dv)) return;
        pos = dv;
    }
    if (sg != PC_NONE) { /* the backward: d v = pᵀ d o, g over d o vᵀ, d q = g k, d k = gᵀ q */
        const pc_value *dp = &g->vals[c->prod[sg]];
        pc_val d_o = dp->in[0];
        if (dp->in[1] != vv || (dv != PC_NONE && !product_of(c, dv, 1, 0, p, d_o))) return;
        const pc_value *mx = &g->vals[c->mmv[sg]]; /* y (g - s): y must be p */
        if (mx->in[0] != p && mx->in[1] != p) return;
        if (c->pinned[sg] || c->nuse[sg] < 1 || c->nuse[sg] > 2) return;
        for (int u = c->ustart[sg]; u < c->ustart[sg + 1]; u++) {
            pc_val w = c->users[u];
            if (product_of(c, w, 0, 0, sg, k) && dq == PC_NONE) dq = w;
            else if (product_of(c, w, 1, 0, sg, q) && dk == PC_NONE) dk = w;
            else return;
        }
        pc_val outs[3] = {dq, dk, dv}; /* PC_NONE (-1) where the input needs no gradient */
        for (int i = 0; i < 3; i++)
            if (outs[i] != PC_NONE && (pos == PC_NONE || outs[i] < pos)) pos = outs[i];
        for (int i = 0; i < 3; i++)
            if (outs[i] != PC_NONE && !read_after(c, outs[i], pos)) return;
    }
    c->kind[v] = D_FLASH;
    c->prod[v] = p;
    c->kind[p] = D_ABSORBED;
    c->absorber[p] = v;
    if (pos == PC_NONE) return;
    pc_val outs[3] = {dq, dk, dv};
    for (int i = 0; i < 3; i++)
        if (outs[i] != PC_NONE && outs[i] != pos) c->kind[outs[i]] = D_ABSORBED, c->absorber[outs[i]] = pos;
    for (int i = 1; i < 3; i++) { /* d k, d v summed over broadcast heads: the kernel writes the sum */
        pc_val s = outs[i] == PC_NONE ? PC_NONE : heads_sum(c, outs[i]);
        if (s == PC_NONE) continue;
        c->kind[s] = D_ABSORBED, c->absorber[s] = pos; /* the product (pos, perhaps) is no result */
        outs[i] = s;
    }
    if (sg != PC_NONE) c->kind[sg] = D_ABSORBED, c->absorber[sg] = pos;
    c->kind[pos] = D_FLASH_GRAD;
    c->prod[pos] = p;
    c->mmv[pos] = v;
    c->fl[4 * pos] = sg, c->fl[4 * pos + 1] = dq, c->fl[4 * pos + 2] = outs[1], c->fl[4 * pos + 3] = outs[2];
}

/* the operands, results and attributes of v's CALL: v's own op, or the pattern v stands for */
void pc_lower_call_form(const lctx *c, pc_val v, pc_call_form *f) {
    const pc_graph *g = c->g;
    const pc_value *x = &g->vals[v];
    memset(f, 0, sizeof *f);
    f->ins = f->in;
    f->ck = PC_CALL_OP;
    f->nout = 1, f->out[0] = v;
    f->aux = f->aux2 = PC_NONE;
    f->alpha = f->alpha2 = 1.0;
    switch (c->kind[v]) {
    case D_MSOFTMAX: /* softmax(causal_mask(x)): x, the mask's attributes */
        f->ck = PC_CALL_MASKED_SOFTMAX;
        f->aux = c->mmv[v];
        f->nin = 1, f->in[0] = g->vals[c->mmv[v]].in[0];
        return;
    case D_SMGRAD:
    case D_ATTN_GRAD: { /* y and g of y (g - sum(g y)); g = d o vᵀ: y, d o, v */
        const pc_value *mx = &g->vals[c->mmv[v]];
        int ds = g->vals[mx->in[1]].op == PC_OP_sub && c->kind[mx->in[1]] == D_ABSORBED && c->absorber[mx->in[1]] == v;
        f->ck = PC_CALL_SOFTMAX_GRAD;
        f->aux = c->accx[v], f->alpha = c->alpha[v];
        f->nin = 2, f->in[0] = mx->in[1 - ds], f->in[1] = g->vals[mx->in[ds]].in[0];
        if (c->kind[v] == D_ATTN_GRAD) {
            f->ck = PC_CALL_ATTN_GRAD;
            f->in[1] = g->vals[c->prod[v]].in[0], f->in[2] = g->vals[c->prod[v]].in[1];
            f->nin = 3, f->nstrided = 2;
        }
        return;
    }
    case D_ATTN: /* q and k of q kᵀ */
        f->ck = PC_CALL_ATTN;
        f->aux = c->mmv[v], f->alpha = c->alpha[v];
        f->nin = 2, f->nstrided = 2;
        f->in[0] = g->vals[c->prod[v]].in[0], f->in[1] = g->vals[c->prod[v]].in[1];
        return;
    case D_FLASH:
    case D_FLASH_GRAD: { /* q, k, v [, d o] */
        pc_val p = c->prod[v], sg = c->fl[4 * v];
        const pc_value *qk = &g->vals[c->prod[p]];
        f->aux = c->mmv[p], f->alpha = c->alpha[p];
        f->in[0] = qk->in[0], f->in[1] = qk->in[1];
        if (c->kind[v] == D_FLASH) {
            f->ck = PC_CALL_FLASH;
            f->in[2] = x->in[1];
            f->nin = f->nstrided = 3;
            return;
        }
        f->ck = PC_CALL_FLASH_GRAD; /* v of the forward; d o of d p = d o vᵀ, or of d v = pᵀ d o */
        f->in[2] = g->vals[c->mmv[v]].in[1];
        pc_val dvp = c->fl[4 * v + 3]; /* d v, or its heads_sum */
        if (sg == PC_NONE && g->vals[dvp].op == PC_OP_sum_to) dvp = g->vals[dvp].in[0];
        f->in[3] = sg != PC_NONE ? g->vals[c->prod[sg]].in[0] : g->vals[dvp].in[1];
        f->nin = f->nstrided = 4;
        f->nout = 0;
        for (int i = 0; i < 3; i++)
            if (c->fl[4 * v + 1 + i] != PC_NONE) f->out[f->nout++] = c->fl[4 * v + 1 + i], f->outmask |= 1u << i;
        if (sg != PC_NONE) f->aux2 = c->accx[sg], f->alpha2 = c->alpha[sg];
        return;
    }
    case D_RMSNORM_GRAD: /* x, w, d y; eps */
        f->ck = PC_CALL_RMSNORM_GRAD;
        f->alpha = c->alpha[v], f->aux = c->fl[4 * v];
        f->nin = 3;
        f->in[0] = c->mmv[v], f->in[1] = c->accx[v], f->in[2] = c->prod[v];
        return;
    case D_MUL_SUM: /* a and b of the absorbed mul */
        f->ck = PC_CALL_MUL_SUM;
        f->nin = f->nstrided = 2;
        f->in[0] = g->vals[c->mmv[v]].in[0], f->in[1] = g->vals[c->mmv[v]].in[1];
        return;
    default: /* the op itself, its operands dense */
        f->nin = x->nin, f->ins = x->in;
        return;
    }
}
