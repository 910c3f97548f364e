/* Typed DSL builders: thin wrappers that fill attributes in schema order and call pc_node. */
#include "ir.h"

#include <string.h>

static pc_val node1(pc_graph *g, pc_loc at, pc_opcode op, pc_val x) { return pc_node(g, at, op, 1, &x, NULL); }
static pc_val node2(pc_graph *g, pc_loc at, pc_opcode op, pc_val a, pc_val b) {
    pc_val in[2] = {a, b};
    return pc_node(g, at, op, 2, in, NULL);
}

#define BINARY(id)                                                                                \
    pc_val pc_##id##_at(pc_graph *g, pc_loc at, pc_val a, pc_val b) { return node2(g, at, PC_OP_##id, a, b); }
#define UNARY(id)                                                                                 \
    pc_val pc_##id##_at(pc_graph *g, pc_loc at, pc_val x) { return node1(g, at, PC_OP_##id, x); }

BINARY(add) BINARY(sub) BINARY(mul) BINARY(div) BINARY(maximum) BINARY(minimum)
BINARY(eq) BINARY(lt) BINARY(gt) BINARY(kron)
UNARY(neg) UNARY(exp) UNARY(log) UNARY(sqrt) UNARY(rsqrt) UNARY(square) UNARY(abs)
UNARY(tanh) UNARY(sigmoid) UNARY(relu) UNARY(silu) UNARY(stop_gradient)

pc_val pc_where_at(pc_graph *g, pc_loc at, pc_val cond, pc_val a, pc_val b) {
    pc_val in[3] = {cond, a, b};
    return pc_node(g, at, PC_OP_where, 3, in, NULL);
}

/* attribute array with defaults for op, then set slot i */
#define ATTRS_FOR(op) pc_attr a[PC_MAX_ATTRS]; pc_attr_defaults(op, a)
#define SET_I(k, v) (a[k].i = (int64_t)(v), a[k].f = (double)(v))
#define SET_F(k, v) (a[k].f = (double)(v), a[k].i = pc_f2i((double)(v)))

static void set_ints(pc_attr *a, int n, const int64_t *xs) {
    a->n = n < 0 ? 0 : n > PC_MAX_INTS ? PC_MAX_INTS : n;
    if (xs) memcpy(a->ints, xs, (size_t)a->n * sizeof *xs);
}

pc_val pc_scale_at(pc_graph *g, pc_loc at, pc_val x, double alpha, double beta) {
    ATTRS_FOR(PC_OP_scale);
    SET_F(0, alpha);
    SET_F(1, beta);
    return pc_node(g, at, PC_OP_scale, 1, &x, a);
}

pc_val pc_gelu_at(pc_graph *g, pc_loc at, pc_val x, int tanh_approx) {
    ATTRS_FOR(PC_OP_gelu);
    SET_I(0, tanh_approx ? 1 : 0);
    return pc_node(g, at, PC_OP_gelu, 1, &x, a);
}

pc_val pc_cast_at(pc_graph *g, pc_loc at, pc_val x, pc_dtype to) {
    ATTRS_FOR(PC_OP_cast);
    SET_I(0, to);
    return pc_node(g, at, PC_OP_cast, 1, &x, a);
}

pc_val pc_dropout_at(pc_graph *g, pc_loc at, pc_val x, pc_val seed, double p, int64_t salt) {
    ATTRS_FOR(PC_OP_dropout);
    SET_F(0, p);
    SET_I(1, salt);
    pc_val in[2] = {x, seed};
    return pc_node(g, at, PC_OP_dropout, 2, in, a);
}

static pc_val reduce(pc_graph *g, pc_loc at, pc_opcode op, pc_val x, int naxes, const int64_t *axes, int keepdim) {
    if (naxes > PC_MAX_INTS) return pc_fail(g, at, "too many axes (%d)", naxes);
    ATTRS_FOR(op);
    set_ints(&a[0], naxes, axes);
    SET_I(1, keepdim ? 1 : 0);
    return pc_node(g, at, op, 1, &x, a);
}
pc_val pc_sum_at(pc_graph *g, pc_loc at, pc_val x, int n, const int64_t *axes, int keepdim) { return reduce(g, at, PC_OP_sum, x, n, axes, keepdim); }
pc_val pc_mean_at(pc_graph *g, pc_loc at, pc_val x, int n, const int64_t *axes, int keepdim) { return reduce(g, at, PC_OP_mean, x, n, axes, keepdim); }
pc_val pc_max_at(pc_graph *g, pc_loc at, pc_val x, int n, const int64_t *axes, int keepdim) { return reduce(g, at, PC_OP_max, x, n, axes, keepdim); }

pc_val pc_softmax_at(pc_graph *g, pc_loc at, pc_val x, int64_t axis) {
    ATTRS_FOR(PC_OP_softmax);
    SET_I(0, axis);
    return pc_node(g, at, PC_OP_softmax, 1, &x, a);
}

pc_val pc_log_softmax_at(pc_graph *g, pc_loc at, pc_val x, int64_t axis) {
    ATTRS_FOR(PC_OP_log_softmax);
    SET_I(0, axis);
    return pc_node(g, at, PC_OP_log_softmax, 1, &x, a);
}

pc_val pc_rmsnorm_at(pc_graph *g, pc_loc at, pc_val x, pc_val w, double eps) {
    ATTRS_FOR(PC_OP_rmsnorm);
    SET_F(0, eps);
    pc_val in[2] = {x, w};
    return pc_node(g, at, PC_OP_rmsnorm, 2, in, a);
}

pc_val pc_layernorm_at(pc_graph *g, pc_loc at, pc_val x, pc_val w, pc_val b, double eps) {
    ATTRS_FOR(PC_OP_layernorm);
    SET_F(0, eps);
    pc_val in[3] = {x, w, b};
    return pc_node(g, at, PC_OP_layernorm, 3, in, a);
}

pc_val pc_matmul_at(pc_graph *g, pc_loc at, pc_val x, pc_val y, int transpose_a, int transpose_b) {
    ATTRS_FOR(PC_OP_matmul);
    SET_I(0, transpose_a ? 1 : 0);
    SET_I(1, transpose_b ? 1 : 0);
    pc_val in[2] = {x, y};
    return pc_node(g, at, PC_OP_matmul, 2, in, a);
}

static pc_val shape_op(pc_graph *g, pc_loc at, pc_opcode op, pc_val x, pc_shape s) {
    if (s.rank < 0 || s.rank > PC_MAX_RANK) return pc_fail(g, at, "rank %d exceeds %d", s.rank, PC_MAX_RANK);
    ATTRS_FOR(op);
    set_ints(&a[0], s.rank, s.dim);
    return pc_node(g, at, op, 1, &x, a);
}
pc_val pc_reshape_at(pc_graph *g, pc_loc at, pc_val x, pc_shape s) { return shape_op(g, at, PC_OP_reshape, x, s); }
pc_val pc_broadcast_at(pc_graph *g, pc_loc at, pc_val x, pc_shape s) { return shape_op(g, at, PC_OP_broadcast, x, s); }
pc_val pc_sum_to_at(pc_graph *g, pc_loc at, pc_val x, pc_shape s) { return shape_op(g, at, PC_OP_sum_to, x, s); }

pc_val pc_transpose_at(pc_graph *g, pc_loc at, pc_val x, int n, const int64_t *perm) {
    if (n < 0 || n > PC_MAX_RANK) return pc_fail(g, at, "permutation of length %d", n);
    ATTRS_FOR(PC_OP_transpose);
    set_ints(&a[0], n, perm);
    return pc_node(g, at, PC_OP_transpose, 1, &x, a);
}

pc_val pc_slice_at(pc_graph *g, pc_loc at, pc_val x, int64_t axis, int64_t start, int64_t end) {
    ATTRS_FOR(PC_OP_slice);
    SET_I(0, axis);
    SET_I(1, start);
    SET_I(2, end);
    return pc_node(g, at, PC_OP_slice, 1, &x, a);
}

pc_val pc_pad_at(pc_graph *g, pc_loc at, pc_val x, int64_t axis, int64_t before, int64_t after) {
    ATTRS_FOR(PC_OP_pad);
    SET_I(0, axis);
    SET_I(1, before);
    SET_I(2, after);
    return pc_node(g, at, PC_OP_pad, 1, &x, a);
}

pc_val pc_concat_at(pc_graph *g, pc_loc at, int n, const pc_val *xs, int64_t axis) {
    ATTRS_FOR(PC_OP_concat);
    SET_I(0, axis);
    return pc_node(g, at, PC_OP_concat, n, xs, a);
}

pc_val pc_embedding_at(pc_graph *g, pc_loc at, pc_val table, pc_val ids) { return node2(g, at, PC_OP_embedding, table, ids); }

pc_val pc_embedding_grad_at(pc_graph *g, pc_loc at, pc_val ids, pc_val grad, int64_t rows) {
    ATTRS_FOR(PC_OP_embedding_grad);
    SET_I(0, rows);
    pc_val in[2] = {ids, grad};
    return pc_node(g, at, PC_OP_embedding_grad, 2, in, a);
}

pc_val pc_rope_scaled_at(pc_graph *g, pc_loc at, pc_val x, pc_val pos, double theta, int style, int inverse,
                         const pc_rope_scaling *sc) {
    ATTRS_FOR(PC_OP_rope);
    SET_F(0, theta);
    SET_I(1, style);
    SET_I(2, inverse ? 1 : 0);
    if (sc && sc->original_context > 0) {
        SET_F(3, sc->factor);
        SET_F(4, sc->low_freq_factor);
        SET_F(5, sc->high_freq_factor);
        SET_I(6, sc->original_context);
    }
    pc_val in[2] = {x, pos};
    return pc_node(g, at, PC_OP_rope, 2, in, a);
}

pc_val pc_rope_at(pc_graph *g, pc_loc at, pc_val x, pc_val pos, double theta, int style, int inverse) {
    return pc_rope_scaled_at(g, at, x, pos, theta, style, inverse, NULL);
}

pc_val pc_causal_mask_at(pc_graph *g, pc_loc at, pc_val scores, double fill) {
    ATTRS_FOR(PC_OP_causal_mask);
    SET_F(0, fill);
    return pc_node(g, at, PC_OP_causal_mask, 1, &scores, a);
}

pc_val pc_cross_entropy_at(pc_graph *g, pc_loc at, pc_val logits, pc_val targets, int64_t ignore_index,
                           int reduction) {
    ATTRS_FOR(PC_OP_cross_entropy);
    SET_I(0, ignore_index);
    SET_I(1, reduction);
    pc_val in[2] = {logits, targets};
    return pc_node(g, at, PC_OP_cross_entropy, 2, in, a);
}
