/* Gradient rules (the grad_<id>() of ops.def): each appends the adjoints of an op's operands as a
 * composite of existing ops. See ir/grad.h for the contract. */
#include "grad.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* everything a rule needs: the graph, the forward node, its adjoint, and where to build */
typedef struct {
    pc_graph *g;
    pc_val v;    /* forward node */
    pc_val gv;   /* its adjoint */
    pc_loc at;   /* v's location, for every appended node */
    const bool *need;
    pc_val *out;
    pc_val zero; /* lazily made f32[] 0 */
} gctx;

static pc_val IN(const gctx *c, int i) { return c->g->vals[c->v].in[i]; }
static pc_shape SH(const gctx *c, pc_val x) { return pc_val_shape(c->g, x); }
static bool NEED(const gctx *c, int i) {
    return c->need[i] && c->g->vals[IN(c, i)].dtype != PC_I32; /* f32 or bf16: an f32 adjoint */
}

static pc_val zero(gctx *c) {
    if (c->zero == PC_NONE) c->zero = pc_scalar_at(c->g, c->at, 0.0f);
    return c->zero;
}

/* ---- small builders at the forward location ---- */
#define G c->g, c->at
static pc_val add(gctx *c, pc_val a, pc_val b) { return pc_add_at(G, a, b); }
static pc_val sub(gctx *c, pc_val a, pc_val b) { return pc_sub_at(G, a, b); }
static pc_val mul(gctx *c, pc_val a, pc_val b) { return pc_mul_at(G, a, b); }
static pc_val dv(gctx *c, pc_val a, pc_val b) { return pc_div_at(G, a, b); }
static pc_val sc(gctx *c, pc_val x, double alpha, double beta) { return pc_scale_at(G, x, alpha, beta); }
static pc_val sq(gctx *c, pc_val x) { return pc_square_at(G, x); }
/* a product in the dtype of its bf16 operand, if any: an f32 adjoint meets a bf16 weight rounded,
 * as the forward rounded its activation (the result is f32 either way) */
static pc_val mm(gctx *c, pc_val a, pc_val b, int ta, int tb) {
    pc_dtype da = pc_v(c->g, a)->dtype, db = pc_v(c->g, b)->dtype;
    if (da == PC_BF16 && db == PC_F32) b = pc_cast_at(G, b, PC_BF16);
    if (db == PC_BF16 && da == PC_F32) a = pc_cast_at(G, a, PC_BF16);
    return pc_matmul_at(G, a, b, ta, tb);
}
static pc_val mean_last(gctx *c, pc_val x) { /* mean over the last axis, keepdim */
    int64_t ax = -1;
    return pc_mean_at(G, x, 1, &ax, 1);
}

/* reduce a broadcast adjoint back to an operand's shape */
static pc_val unb(gctx *c, pc_val x, pc_shape s) {
    if (x == PC_NONE || pc_shape_eq(SH(c, x), s)) return x;
    return pc_sum_to_at(G, x, s);
}
static pc_val reshape_to(gctx *c, pc_val x, pc_shape s) {
    if (x == PC_NONE || pc_shape_eq(SH(c, x), s)) return x;
    return pc_reshape_at(G, x, s);
}
static pc_val bcast_to(gctx *c, pc_val x, pc_shape s) {
    if (x == PC_NONE || pc_shape_eq(SH(c, x), s)) return x;
    return pc_broadcast_at(G, x, s);
}
/* adjoint of operand i of a broadcasting elementwise op, given the full-shape adjoint */
static void set_unb(gctx *c, int i, pc_val full) { c->out[i] = unb(c, full, SH(c, IN(c, i))); }

/* ---- elementwise binary ---- */
static void grad_add(gctx *c) {
    if (NEED(c, 0)) set_unb(c, 0, c->gv);
    if (NEED(c, 1)) set_unb(c, 1, c->gv);
}

static void grad_sub(gctx *c) {
    if (NEED(c, 0)) set_unb(c, 0, c->gv);
    /* negate after reducing: the smaller tensor */
    if (NEED(c, 1)) c->out[1] = pc_neg_at(G, unb(c, c->gv, SH(c, IN(c, 1))));
}

static void grad_mul(gctx *c) {
    if (NEED(c, 0)) set_unb(c, 0, mul(c, c->gv, IN(c, 1)));
    if (NEED(c, 1)) set_unb(c, 1, mul(c, c->gv, IN(c, 0)));
}

static void grad_div(gctx *c) {
    /* y = a / b: da = g / b, db = -g * y / b */
    if (NEED(c, 0)) set_unb(c, 0, dv(c, c->gv, IN(c, 1)));
    if (NEED(c, 1)) c->out[1] = pc_neg_at(G, unb(c, dv(c, mul(c, c->gv, c->v), IN(c, 1)), SH(c, IN(c, 1))));
}

/* maximum (sign +1) / minimum (sign -1): the selected operand gets g, ties split it evenly.
 * s = gt(a, b) - lt(a, b) in {1, 0, -1}; weight of a = 0.5 + 0.5*sign*s, of b = 0.5 - 0.5*sign*s */
static void grad_extremum(gctx *c, double sign) {
    pc_val a = IN(c, 0), b = IN(c, 1);
    pc_val s = sub(c, pc_gt_at(G, a, b), pc_lt_at(G, a, b));
    if (NEED(c, 0)) set_unb(c, 0, mul(c, c->gv, sc(c, s, 0.5 * sign, 0.5)));
    if (NEED(c, 1)) set_unb(c, 1, mul(c, c->gv, sc(c, s, -0.5 * sign, 0.5)));
}

static void grad_where(gctx *c) {
    pc_val cond = IN(c, 0);
    if (NEED(c, 1)) set_unb(c, 1, pc_where_at(G, cond, c->gv, zero(c)));
    if (NEED(c, 2)) set_unb(c, 2, pc_where_at(G, cond, zero(c), c->gv));
}

/* ---- elementwise unary: out[0] = g * f'(x) ---- */
static void grad_unary(gctx *c) {
    pc_graph *g = c->g;
    pc_val x = IN(c, 0), y = c->v, gv = c->gv, d = PC_NONE;
    switch (g->vals[c->v].op) {
    case PC_OP_neg: c->out[0] = pc_neg_at(G, gv); return;
    case PC_OP_scale: c->out[0] = sc(c, gv, pc_attr_f(g, c->v, "alpha"), 0.0); return;
    case PC_OP_exp: c->out[0] = mul(c, gv, y); return;
    case PC_OP_log: c->out[0] = dv(c, gv, x); return;
    /* sqrt: g / (2y) */
    case PC_OP_sqrt: c->out[0] = sc(c, dv(c, gv, y), 0.5, 0.0); return;
    /* rsqrt: y = x^-1/2, dy/dx = -y / (2x) */
    case PC_OP_rsqrt: c->out[0] = sc(c, dv(c, mul(c, gv, y), x), -0.5, 0.0); return;
    case PC_OP_square: c->out[0] = mul(c, gv, sc(c, x, 2.0, 0.0)); return;
    /* abs: sign(x) = gt(x, 0) - lt(x, 0), 0 at 0 */
    case PC_OP_abs: d = sub(c, pc_gt_at(G, x, zero(c)), pc_lt_at(G, x, zero(c))); break;
    /* tanh: 1 - y^2 */
    case PC_OP_tanh: d = sc(c, sq(c, y), -1.0, 1.0); break;
    /* sigmoid: y (1 - y) */
    case PC_OP_sigmoid: d = mul(c, y, sc(c, y, -1.0, 1.0)); break;
    /* relu: 1 where x > 0 */
    case PC_OP_relu: d = pc_gt_at(G, x, zero(c)); break;
    /* silu: y = x s, s = sigmoid(x); dy = s + x s (1 - s) = s + y (1 - s) */
    case PC_OP_silu: {
        pc_val s = pc_sigmoid_at(G, x);
        d = add(c, s, mul(c, y, sc(c, s, -1.0, 1.0)));
        break;
    }
    case PC_OP_gelu:
        if (pc_attr_i(g, c->v, "approximate") == 0) {
            /* y = x Phi(x); dy = Phi(x) + x phi(x), phi(x) = exp(-x^2/2) / sqrt(2 pi).
             * No erf op: Phi(x) = y / x recovers it to f32 rounding (a product, no cancellation);
             * at x = 0 it is 1/2 (the division uses a safe denominator there). */
            pc_val isz = pc_eq_at(G, x, zero(c));
            pc_val one = pc_scalar_at(G, 1.0f), half = pc_scalar_at(G, 0.5f);
            pc_val phi_cdf = pc_where_at(G, isz, half, dv(c, y, pc_where_at(G, isz, one, x)));
            pc_val pdf = pc_exp_at(G, sc(c, sq(c, x), -0.5, 0.0));
            d = add(c, phi_cdf, sc(c, mul(c, x, pdf), 0.39894228040143267794, 0.0));
        } else {
            /* y = x/2 (1 + t), t = tanh(u), u = k (x + c3 x^3), k = sqrt(2/pi), c3 = 0.044715
             * dy = (1 + t)/2 + x/2 (1 - t^2) k (1 + 3 c3 x^2) */
            const double k = 0.79788456080286535588, c3 = 0.044715;
            pc_val x2 = sq(c, x);
            pc_val t = pc_tanh_at(G, mul(c, x, sc(c, x2, k * c3, k)));
            pc_val a = sc(c, t, 0.5, 0.5);
            pc_val b = mul(c, mul(c, x, sc(c, sq(c, t), -1.0, 1.0)), sc(c, x2, 0.5 * k * 3.0 * c3, 0.5 * k));
            d = add(c, a, b);
        }
        break;
    default: return;
    }
    c->out[0] = mul(c, gv, d);
}

static void grad_cast(gctx *c) {
    /* between floats (f32, bf16) the adjoint passes straight through (the rounding's derivative is
     * taken as 1, as mixed-precision training does); to or from an integer type it is piecewise constant */
    pc_dtype to = c->g->vals[c->v].dtype, from = c->g->vals[IN(c, 0)].dtype;
    if (NEED(c, 0) && to != PC_I32 && from != PC_I32) c->out[0] = c->gv;
}

static void grad_dropout(gctx *c) {
    /* the mask is a pure function of (seed, salt, index): the same dropout of the adjoint */
    if (NEED(c, 0))
        c->out[0] = pc_dropout_at(G, c->gv, IN(c, 1), pc_attr_f(c->g, c->v, "p"), pc_attr_i(c->g, c->v, "salt"));
}

/* ---- reductions ---- */
/* the result shape with keepdim = 1 and the number of elements reduced into each result */
static pc_shape keep_shape(gctx *c, int64_t *count) {
    pc_shape x = SH(c, IN(c, 0)), s = x;
    const pc_attr *axes = pc_attr_get(c->g, c->v, "axes");
    unsigned mask = 0;
    if (!axes || axes->n == 0) mask = (1u << x.rank) - 1;
    else
        for (int k = 0; k < axes->n; k++) {
            int64_t ax = pc_norm_axis(axes->ints[k], x.rank);
            if (ax >= 0) mask |= 1u << ax;
        }
    *count = 1;
    for (int i = 0; i < x.rank; i++)
        if (mask & (1u << i)) {
            *count *= x.dim[i];
            s.dim[i] = 1;
        }
    return s;
}

static void grad_reduce(gctx *c) {
    if (!NEED(c, 0)) return;
    pc_opcode op = c->g->vals[c->v].op;
    pc_shape xs = SH(c, IN(c, 0));
    int64_t count;
    pc_shape ks = keep_shape(c, &count);
    pc_val gk = reshape_to(c, c->gv, ks); /* keepdim = 0 dropped the axes: put them back */
    switch (op) {
    case PC_OP_sum: c->out[0] = bcast_to(c, gk, xs); break;
    case PC_OP_mean:
        c->out[0] = bcast_to(c, count > 0 ? sc(c, gk, 1.0 / (double)count, 0.0) : gk, xs);
        break;
    case PC_OP_max: {
        /* every maximal element gets g / (number of maximal elements in its group) */
        pc_val yk = reshape_to(c, c->v, ks);
        pc_val mask = pc_eq_at(G, IN(c, 0), yk);
        const pc_attr *axes = pc_attr_get(c->g, c->v, "axes");
        pc_val cnt = pc_sum_at(G, mask, axes->n, axes->ints, 1);
        c->out[0] = mul(c, mask, dv(c, gk, cnt));
        break;
    }
    default: break;
    }
}

static void grad_softmax(gctx *c) {
    if (!NEED(c, 0)) return;
    int64_t ax = pc_attr_i(c->g, c->v, "axis");
    pc_val y = c->v, gv = c->gv;
    if (c->g->vals[c->v].op == PC_OP_softmax) {
        /* y (g - sum(g y)) */
        pc_val s = pc_sum_at(G, mul(c, gv, y), 1, &ax, 1);
        c->out[0] = mul(c, y, sub(c, gv, s));
    } else {
        /* g - exp(y) sum(g) */
        pc_val s = pc_sum_at(G, gv, 1, &ax, 1);
        c->out[0] = sub(c, gv, mul(c, pc_exp_at(G, y), s));
    }
}

/* rmsnorm: y = x r w, r = rsqrt(mean(x^2) + eps), xh = x r over the last axis
 *   dx = r (g w - xh mean(g w xh)),  dw = sum over leading axes of g xh */
static void grad_rmsnorm(gctx *c) {
    pc_val x = IN(c, 0), w = IN(c, 1), gv = c->gv;
    double eps = pc_attr_f(c->g, c->v, "eps");
    if (!NEED(c, 0) && !NEED(c, 1)) return;
    pc_val r = pc_rsqrt_at(G, sc(c, mean_last(c, sq(c, x)), 1.0, eps));
    pc_val xh = mul(c, x, r);
    if (NEED(c, 0)) {
        pc_val gw = mul(c, gv, w);
        pc_val dot = mean_last(c, mul(c, gw, xh));
        c->out[0] = mul(c, r, sub(c, gw, mul(c, xh, dot)));
    }
    if (NEED(c, 1)) c->out[1] = unb(c, mul(c, gv, xh), SH(c, w));
}

/* layernorm: y = xh w + b, xh = (x - mean(x)) r, r = rsqrt(var(x) + eps) (biased variance)
 *   dx = r (g w - mean(g w) - xh mean(g w xh)),  dw = sum g xh,  db = sum g */
static void grad_layernorm(gctx *c) {
    pc_val x = IN(c, 0), w = IN(c, 1), b = IN(c, 2), gv = c->gv;
    double eps = pc_attr_f(c->g, c->v, "eps");
    if (NEED(c, 0) || NEED(c, 1)) {
        pc_val xc = sub(c, x, mean_last(c, x));
        pc_val r = pc_rsqrt_at(G, sc(c, mean_last(c, sq(c, xc)), 1.0, eps));
        pc_val xh = mul(c, xc, r);
        if (NEED(c, 0)) {
            pc_val gw = mul(c, gv, w);
            pc_val m1 = mean_last(c, gw);
            pc_val m2 = mean_last(c, mul(c, gw, xh));
            c->out[0] = mul(c, r, sub(c, sub(c, gw, m1), mul(c, xh, m2)));
        }
        if (NEED(c, 1)) c->out[1] = unb(c, mul(c, gv, xh), SH(c, w));
    }
    if (NEED(c, 2)) c->out[2] = unb(c, gv, SH(c, b));
}

/* ---- matmul: C = op(A) op(B) with op = transpose when the flag is set ----
 *   dA = G op(B)^T (transposed back when ta), dB = op(A)^T G (transposed back when tb);
 * batch broadcasting is reduced with sum_to. When B is a matrix and A a batch of non-transposed
 * rows (the common x W^T of a linear layer), the batch is flattened into the rows instead, so
 * dB is one GEMM and no per-batch copy of dB is ever materialised. */
static void grad_matmul(gctx *c) {
    pc_val A = IN(c, 0), B = IN(c, 1), gv = c->gv;
    int ta = (int)pc_attr_i(c->g, c->v, "transpose_a"), tb = (int)pc_attr_i(c->g, c->v, "transpose_b");
    pc_shape as = SH(c, A), bs = SH(c, B), gs = SH(c, gv);
    if (NEED(c, 0)) {
        pc_val r = !ta ? (tb ? mm(c, gv, B, 0, 0) : mm(c, gv, B, 0, 1))
                       : (tb ? mm(c, B, gv, 1, 1) : mm(c, B, gv, 0, 1));
        c->out[0] = unb(c, r, as);
    }
    if (NEED(c, 1)) {
        pc_val r;
        if (bs.rank == 2 && as.rank > 2 && !ta) {
            int64_t k = as.dim[as.rank - 1], n = gs.dim[gs.rank - 1];
            pc_val a2 = pc_reshape_at(G, A, pc_shape_make(2, (int64_t[]){pc_shape_numel(as) / (k ? k : 1), k}));
            pc_val g2 = pc_reshape_at(G, gv, pc_shape_make(2, (int64_t[]){pc_shape_numel(gs) / (n ? n : 1), n}));
            r = tb ? mm(c, g2, a2, 1, 0) : mm(c, a2, g2, 1, 0);
        } else {
            r = !tb ? (ta ? mm(c, A, gv, 0, 0) : mm(c, A, gv, 1, 0))
                    : (ta ? mm(c, gv, A, 1, 1) : mm(c, gv, A, 1, 0));
        }
        c->out[1] = unb(c, r, bs);
    }
}

/* kron(A [m,n], B [p,q])[i p + k, j q + l] = A[i,j] B[k,l]. With G4 = reshape(g, [m,p,n,q]):
 *   dA[i,j] = sum_{k,l} G4[i,k,j,l] B[k,l],  dB[k,l] = sum_{i,j} G4[i,k,j,l] A[i,j] */
static void grad_kron(gctx *c) {
    pc_val A = IN(c, 0), B = IN(c, 1);
    pc_shape as = SH(c, A), bs = SH(c, B);
    int64_t m = as.dim[0], n = as.dim[1], p = bs.dim[0], q = bs.dim[1];
    if (!NEED(c, 0) && !NEED(c, 1)) return;
    pc_val g4 = pc_reshape_at(G, c->gv, pc_shape_make(4, (int64_t[]){m, p, n, q}));
    if (NEED(c, 0)) {
        pc_val b4 = pc_reshape_at(G, B, pc_shape_make(4, (int64_t[]){1, p, 1, q}));
        c->out[0] = pc_sum_at(G, mul(c, g4, b4), 2, (int64_t[]){1, 3}, 0);
    }
    if (NEED(c, 1)) {
        pc_val a4 = pc_reshape_at(G, A, pc_shape_make(4, (int64_t[]){m, 1, n, 1}));
        c->out[1] = pc_sum_at(G, mul(c, g4, a4), 2, (int64_t[]){0, 2}, 0);
    }
}

/* ---- layout ---- */
static void grad_layout(gctx *c) {
    pc_graph *g = c->g;
    pc_val v = c->v, gv = c->gv;
    pc_opcode op = g->vals[v].op;
    if (op == PC_OP_concat) {
        int64_t ax = pc_norm_axis(pc_attr_i(g, v, "axis"), SH(c, v).rank), off = 0;
        for (int i = 0; i < g->vals[v].nin; i++) {
            int64_t len = SH(c, IN(c, i)).dim[ax];
            if (NEED(c, i)) c->out[i] = pc_slice_at(G, gv, ax, off, off + len);
            off += len;
        }
        return;
    }
    if (!NEED(c, 0)) return;
    pc_shape xs = SH(c, IN(c, 0));
    switch (op) {
    case PC_OP_reshape: c->out[0] = reshape_to(c, gv, xs); break;
    case PC_OP_transpose: {
        const pc_attr *p = pc_attr_get(g, v, "perm");
        int64_t inv[PC_MAX_INTS];
        for (int i = 0; i < p->n; i++) inv[p->ints[i]] = i;
        c->out[0] = pc_transpose_at(G, gv, p->n, inv);
        break;
    }
    case PC_OP_broadcast: c->out[0] = unb(c, gv, xs); break;
    case PC_OP_sum_to: c->out[0] = bcast_to(c, gv, xs); break;
    case PC_OP_slice: {
        int64_t ax = pc_norm_axis(pc_attr_i(g, v, "axis"), xs.rank);
        int64_t s = pc_attr_i(g, v, "start"), e = pc_attr_i(g, v, "end");
        c->out[0] = pc_pad_at(G, gv, ax, s, xs.dim[ax] - e);
        break;
    }
    case PC_OP_pad: {
        int64_t ax = pc_norm_axis(pc_attr_i(g, v, "axis"), xs.rank);
        int64_t before = pc_attr_i(g, v, "before");
        c->out[0] = pc_slice_at(G, gv, ax, before, before + xs.dim[ax]);
        break;
    }
    default: break;
    }
}

/* ---- opaque ---- */
static void grad_embedding(gctx *c) {
    if (NEED(c, 0)) c->out[0] = pc_embedding_grad_at(G, IN(c, 1), c->gv, SH(c, IN(c, 0)).dim[0]);
}

static void grad_rope(gctx *c) {
    /* a rotation: the adjoint rotates back by the same angles */
    pc_graph *g = c->g;
    if (NEED(c, 0)) {
        const pc_attr *a = g->vals[c->v].attr;
        pc_rope_scaling sc = {a[3].f, a[4].f, a[5].f, (int)a[6].i};
        c->out[0] = pc_rope_scaled_at(G, c->gv, IN(c, 1), a[0].f, (int)a[1].i, !a[2].i, &sc);
    }
}

static void grad_causal_mask(gctx *c) {
    /* masked entries are constants: their adjoint is zero */
    if (NEED(c, 0)) c->out[0] = pc_causal_mask_at(G, c->gv, 0.0);
}

static void grad_cross_entropy(gctx *c) {
    if (!NEED(c, 0)) return;
    pc_val in[3] = {IN(c, 0), IN(c, 1), c->gv};
    c->out[0] = pc_node(G, PC_OP_cross_entropy_grad, 3, in, c->g->vals[c->v].attr);
}
#undef G

bool pc_grad_is_constant_op(pc_opcode op) {
    const pc_op_info *info = pc_op_get(op);
    return info && info->constant_grad;
}

int pc_grad(pc_graph *g, pc_val v, pc_val gv, const bool *need, pc_val *out) {
    if (!g || g->error) return -1;
    if (!pc_valid(g, v)) { pc_fail(g, (pc_loc){0}, "pc_grad: %d is not a value", (int)v); return -1; }
    const pc_value *x = pc_v(g, v);
    pc_loc at = x->loc;
    int nin = x->nin;
    for (int i = 0; i < nin; i++) out[i] = PC_NONE;
    const pc_op_info *info = pc_op_get(x->op);
    if (!info->differentiable) {
        pc_fail(g, at, "op %s (%%%s) is not differentiable, but a gradient flows through it", info->name, x->name);
        return -1;
    }
    if (!pc_valid(g, gv) || pc_v(g, gv)->dtype != pc_adjoint_dtype(x->dtype) || !pc_shape_eq(pc_v(g, gv)->shape, x->shape)) {
        pc_fail(g, at, "gradient of %%%s: the adjoint has a different type", x->name);
        return -1;
    }
    gctx cx = {g, v, gv, at, need, out, PC_NONE}, *c = &cx;
    switch (x->op) {
    case PC_OP_add: grad_add(c); break;
    case PC_OP_sub: grad_sub(c); break;
    case PC_OP_mul: grad_mul(c); break;
    case PC_OP_div: grad_div(c); break;
    case PC_OP_maximum: grad_extremum(c, 1.0); break;
    case PC_OP_minimum: grad_extremum(c, -1.0); break;
    case PC_OP_where: grad_where(c); break;
    case PC_OP_neg: case PC_OP_scale: case PC_OP_exp: case PC_OP_log: case PC_OP_sqrt: case PC_OP_rsqrt:
    case PC_OP_square: case PC_OP_abs: case PC_OP_tanh: case PC_OP_sigmoid: case PC_OP_relu:
    case PC_OP_gelu: case PC_OP_silu:
        if (NEED(c, 0)) grad_unary(c);
        break;
    case PC_OP_cast: grad_cast(c); break;
    case PC_OP_dropout: grad_dropout(c); break;
    case PC_OP_sum: case PC_OP_mean: case PC_OP_max: grad_reduce(c); break;
    case PC_OP_softmax: case PC_OP_log_softmax: grad_softmax(c); break;
    case PC_OP_rmsnorm: grad_rmsnorm(c); break;
    case PC_OP_layernorm: grad_layernorm(c); break;
    case PC_OP_matmul: grad_matmul(c); break;
    case PC_OP_kron: grad_kron(c); break;
    case PC_OP_reshape: case PC_OP_transpose: case PC_OP_broadcast: case PC_OP_sum_to: case PC_OP_slice:
    case PC_OP_pad: case PC_OP_concat:
        grad_layout(c);
        break;
    case PC_OP_embedding: grad_embedding(c); break;
    case PC_OP_rope: grad_rope(c); break;
    case PC_OP_causal_mask: grad_causal_mask(c); break;
    case PC_OP_cross_entropy: grad_cross_entropy(c); break;
    default:
        pc_fail(g, at, "op %s has no gradient rule", info->name);
        return -1;
    }
    if (g->error) return -1;
    x = pc_v(g, v); /* the value array may have moved */
    for (int i = 0; i < nin; i++) {
        if (out[i] == PC_NONE) continue;
        const pc_value *o = pc_v(g, out[i]), *in = pc_v(g, x->in[i]);
        if (o->dtype != pc_adjoint_dtype(in->dtype) || !pc_shape_eq(o->shape, in->shape)) {
            char a[96], b[96];
            pc_shape_str(o->shape, a, sizeof a);
            pc_shape_str(in->shape, b, sizeof b);
            pc_fail(g, at, "internal error: gradient of operand %d of %s is %s, the operand is %s", i + 1,
                    info->name, a, b);
            return -1;
        }
    }
    return 0;
}
