/* Shape and dtype inference for every op: the typing rules of the IR.
 * The builder calls it for each new node; the verifier re-runs it on every node. */
#include "ir.h"

#include <stdio.h>
#include <string.h>

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); return -1; } while (0)

typedef struct {
    const pc_graph *g;
    int nin;
    const pc_val *in;
    const pc_attr *a;
    char *err;
    size_t errlen;
} ctx;

static pc_shape S(const ctx *c, int i) { return c->g->vals[c->in[i]].shape; }
static pc_dtype D(const ctx *c, int i) { return c->g->vals[c->in[i]].dtype; }

static const char *shs(pc_shape s, char *buf) { pc_shape_str(s, buf, 96); return buf; }

static int want_dtype(const ctx *c, int i, pc_dtype dt) {
    if (D(c, i) != dt) {
        snprintf(c->err, c->errlen, "operand %d must be %s, got %s", i + 1, pc_dtype_name(dt),
                 pc_dtype_name(D(c, i)));
        return -1;
    }
    return 0;
}

static int want_float(const ctx *c, int i) { return want_dtype(c, i, PC_F32); }

static int bcast(const ctx *c, int i, int j, pc_shape *out) {
    if (pc_broadcast_shapes(S(c, i), S(c, j), out)) {
        char a[96], b[96];
        snprintf(c->err, c->errlen, "shapes %s and %s of operands %d and %d do not broadcast",
                 shs(S(c, i), a), shs(S(c, j), b), i + 1, j + 1);
        return -1;
    }
    return 0;
}

/* reduce: normalises the axes list into a bit mask */
static int axes_mask(const ctx *c, const pc_attr *axes, int rank, unsigned *mask) {
    *mask = 0;
    if (axes->n == 0) { *mask = (1u << rank) - 1; return 0; }
    for (int k = 0; k < axes->n; k++) {
        int64_t ax = pc_norm_axis(axes->ints[k], rank);
        if (ax < 0) {
            snprintf(c->err, c->errlen, "axis %lld out of range for rank %d", (long long)axes->ints[k], rank);
            return -1;
        }
        if (*mask & (1u << ax)) {
            snprintf(c->err, c->errlen, "axis %lld repeated", (long long)axes->ints[k]);
            return -1;
        }
        *mask |= 1u << ax;
    }
    return 0;
}

static int check_dims(const ctx *c, pc_shape s) {
    double n = 1;
    if (s.rank > PC_MAX_RANK) { snprintf(c->err, c->errlen, "result rank %d exceeds %d", s.rank, PC_MAX_RANK); return -1; }
    for (int i = 0; i < s.rank; i++) {
        if (s.dim[i] < 0) { snprintf(c->err, c->errlen, "negative dimension %lld", (long long)s.dim[i]); return -1; }
        n *= (double)s.dim[i];
    }
    if (n > (double)(1ll << 40)) { snprintf(c->err, c->errlen, "result of %.0f elements is too large", n); return -1; }
    return 0;
}

int pc_infer(const pc_graph *g, pc_opcode op, int nin, const pc_val *in, const pc_attr *a,
             pc_dtype *dt, pc_shape *shape, char *err, size_t errlen) {
    ctx cx = {g, nin, in, a, err, errlen}, *c = &cx;
    char b1[96], b2[96];
    pc_shape s = {0};
    *dt = PC_F32;
    /* bf16 is a storage type for frozen weights and the operands of their products: only these
     * ops read it (reshape keeps it; transposes are matmul attributes) */
    if (op != PC_OP_cast && op != PC_OP_matmul && op != PC_OP_embedding && op != PC_OP_reshape)
        for (int i = 0; i < nin; i++)
            if (D(c, i) == PC_BF16) FAIL("operand %d is bf16: %s reads f32 (cast it first)", i + 1, pc_op_get(op)->name);
    switch (op) {
    case PC_OP_input: case PC_OP_param: case PC_OP_state: case PC_OP_const: case PC_OP_COUNT:
        FAIL("not a computing op");

    case PC_OP_add: case PC_OP_sub: case PC_OP_mul: case PC_OP_div:
    case PC_OP_maximum: case PC_OP_minimum:
        if (D(c, 0) != D(c, 1)) FAIL("operand dtypes differ (%s, %s)", pc_dtype_name(D(c, 0)), pc_dtype_name(D(c, 1)));
        if (bcast(c, 0, 1, &s)) return -1;
        *dt = D(c, 0);
        if (*dt != PC_F32 && op != PC_OP_add && op != PC_OP_sub && op != PC_OP_mul &&
            op != PC_OP_maximum && op != PC_OP_minimum)
            FAIL("%s needs f32 operands", pc_op_get(op)->name);
        break;
    case PC_OP_eq: case PC_OP_lt: case PC_OP_gt:
        if (D(c, 0) != D(c, 1)) FAIL("operand dtypes differ (%s, %s)", pc_dtype_name(D(c, 0)), pc_dtype_name(D(c, 1)));
        if (bcast(c, 0, 1, &s)) return -1;
        *dt = PC_F32;
        break;
    case PC_OP_where: {
        pc_shape t;
        if (D(c, 1) != D(c, 2)) FAIL("operands 2 and 3 have different dtypes");
        if (bcast(c, 1, 2, &t)) return -1;
        if (pc_broadcast_shapes(S(c, 0), t, &s))
            FAIL("condition shape %s does not broadcast with %s", shs(S(c, 0), b1), shs(t, b2));
        *dt = D(c, 1);
        break;
    }

    case PC_OP_neg: case PC_OP_scale: case PC_OP_stop_gradient:
        if (D(c, 0) == PC_BF16) FAIL("bf16 is not supported yet");
        *dt = D(c, 0);
        s = S(c, 0);
        break;
    case PC_OP_exp: case PC_OP_log: case PC_OP_sqrt: case PC_OP_rsqrt: case PC_OP_square:
    case PC_OP_abs: case PC_OP_tanh: case PC_OP_sigmoid: case PC_OP_relu: case PC_OP_silu:
        if (want_float(c, 0)) return -1;
        s = S(c, 0);
        break;
    case PC_OP_gelu:
        if (want_float(c, 0)) return -1;
        if (a[0].i != 0 && a[0].i != 1) FAIL("approximate must be 0 (erf) or 1 (tanh)");
        s = S(c, 0);
        break;
    case PC_OP_cast:
        if (a[0].i != PC_F32 && a[0].i != PC_I32 && a[0].i != PC_BF16) FAIL("cast target must be 0 (f32), 1 (i32) or 2 (bf16)");
        /* bf16 is a storage type of floats: it converts to and from f32 only */
        if ((a[0].i == PC_BF16 || D(c, 0) == PC_BF16) && (a[0].i == PC_I32 || D(c, 0) == PC_I32))
            FAIL("cast between bf16 and i32: go through f32");
        *dt = (pc_dtype)a[0].i;
        s = S(c, 0);
        break;
    case PC_OP_dropout:
        if (want_float(c, 0) || want_dtype(c, 1, PC_I32)) return -1;
        if (S(c, 1).rank != 0) FAIL("the seed (operand 2) must be a scalar i32");
        if (!(a[0].f >= 0.0 && a[0].f < 1.0)) FAIL("p must be in [0, 1), got %g", a[0].f);
        s = S(c, 0);
        break;

    case PC_OP_sum: case PC_OP_mean: case PC_OP_max: {
        unsigned mask;
        pc_shape x = S(c, 0);
        if (op != PC_OP_sum && want_float(c, 0)) return -1;
        if (D(c, 0) == PC_BF16) FAIL("bf16 is not supported yet");
        if (axes_mask(c, &a[0], x.rank, &mask)) return -1;
        if (a[1].i != 0 && a[1].i != 1) FAIL("keepdim must be 0 or 1");
        for (int i = 0; i < x.rank; i++) {
            if (mask & (1u << i)) {
                if (op == PC_OP_max && x.dim[i] == 0) FAIL("max over an empty axis %d", i);
                if (a[1].i) s.dim[s.rank++] = 1;
            } else s.dim[s.rank++] = x.dim[i];
        }
        *dt = D(c, 0);
        break;
    }
    case PC_OP_softmax: case PC_OP_log_softmax:
        if (want_float(c, 0)) return -1;
        if (pc_norm_axis(a[0].i, S(c, 0).rank) < 0) FAIL("axis %lld out of range for rank %d", (long long)a[0].i, S(c, 0).rank);
        s = S(c, 0);
        break;
    case PC_OP_rmsnorm: case PC_OP_layernorm: {
        pc_shape x = S(c, 0);
        for (int i = 0; i < nin; i++) if (want_float(c, i)) return -1;
        if (x.rank < 1) FAIL("operand 1 must have rank >= 1");
        for (int i = 1; i < nin; i++)
            if (S(c, i).rank != 1 || S(c, i).dim[0] != x.dim[x.rank - 1])
                FAIL("operand %d must have shape [%lld] (the last axis of %s), got %s", i + 1,
                     (long long)x.dim[x.rank - 1], shs(x, b1), shs(S(c, i), b2));
        if (!(a[0].f >= 0)) FAIL("eps must be >= 0");
        s = x;
        break;
    }

    case PC_OP_matmul: {
        pc_shape x = S(c, 0), y = S(c, 1);
        /* f32 x f32, or bf16 x bf16 with exact products accumulated in f32: the result is f32 */
        if (D(c, 0) == PC_BF16 ? want_dtype(c, 1, PC_BF16) : want_float(c, 0) || want_float(c, 1)) return -1;
        *dt = PC_F32;
        if (x.rank < 2 || y.rank < 2) FAIL("operands must have rank >= 2, got %s and %s", shs(x, b1), shs(y, b2));
        int64_t m = a[0].i ? x.dim[x.rank - 1] : x.dim[x.rank - 2];
        int64_t k1 = a[0].i ? x.dim[x.rank - 2] : x.dim[x.rank - 1];
        int64_t k2 = a[1].i ? y.dim[y.rank - 1] : y.dim[y.rank - 2];
        int64_t n = a[1].i ? y.dim[y.rank - 2] : y.dim[y.rank - 1];
        if (k1 != k2)
            FAIL("contraction dimensions differ: %s%s x %s%s (%lld vs %lld)", shs(x, b1), a[0].i ? "^T" : "",
                 shs(y, b2), a[1].i ? "^T" : "", (long long)k1, (long long)k2);
        pc_shape bx = x, by = y, bs;
        bx.rank -= 2;
        by.rank -= 2;
        if (pc_broadcast_shapes(bx, by, &bs)) FAIL("batch dimensions of %s and %s do not broadcast", shs(x, b1), shs(y, b2));
        s = bs;
        s.dim[s.rank++] = m;
        s.dim[s.rank++] = n;
        break;
    }
    case PC_OP_kron: {
        pc_shape x = S(c, 0), y = S(c, 1);
        if (want_float(c, 0) || want_float(c, 1)) return -1;
        if (x.rank != 2 || y.rank != 2) FAIL("operands must be matrices, got %s and %s", shs(x, b1), shs(y, b2));
        s = pc_shape_make(2, (int64_t[]){x.dim[0] * y.dim[0], x.dim[1] * y.dim[1]});
        break;
    }

    case PC_OP_reshape: {
        if (a[0].n > PC_MAX_RANK) FAIL("rank %d exceeds %d", a[0].n, PC_MAX_RANK);
        s = pc_shape_make(a[0].n, a[0].ints);
        int infer_at = -1;
        int64_t known = 1;
        for (int i = 0; i < s.rank; i++) {
            if (s.dim[i] == -1) {
                if (infer_at >= 0) FAIL("more than one -1 in the new shape");
                infer_at = i;
            } else if (s.dim[i] < 0) FAIL("negative dimension %lld", (long long)s.dim[i]);
            else known *= s.dim[i];
        }
        int64_t n = pc_shape_numel(S(c, 0));
        if (infer_at >= 0) {
            if (known == 0 || n % known) FAIL("cannot infer -1 reshaping %s", shs(S(c, 0), b1));
            s.dim[infer_at] = n / known;
        }
        if (pc_shape_numel(s) != n)
            FAIL("cannot reshape %s (%lld elements) to %s", shs(S(c, 0), b1), (long long)n, shs(s, b2));
        *dt = D(c, 0);
        break;
    }
    case PC_OP_transpose: {
        pc_shape x = S(c, 0);
        if (a[0].n != x.rank) FAIL("permutation has %d entries for rank %d", a[0].n, x.rank);
        unsigned seen = 0;
        s.rank = x.rank;
        for (int i = 0; i < x.rank; i++) {
            int64_t p = a[0].ints[i];
            if (p < 0 || p >= x.rank || (seen & (1u << p))) FAIL("perm is not a permutation of 0..%d", x.rank - 1);
            seen |= 1u << p;
            s.dim[i] = x.dim[p];
        }
        *dt = D(c, 0);
        break;
    }
    case PC_OP_broadcast: {
        pc_shape r;
        if (a[0].n > PC_MAX_RANK) FAIL("rank %d exceeds %d", a[0].n, PC_MAX_RANK);
        s = pc_shape_make(a[0].n, a[0].ints);
        if (pc_broadcast_shapes(S(c, 0), s, &r) || !pc_shape_eq(r, s))
            FAIL("cannot broadcast %s to %s", shs(S(c, 0), b1), shs(s, b2));
        *dt = D(c, 0);
        break;
    }
    case PC_OP_sum_to: {
        pc_shape r;
        if (a[0].n > PC_MAX_RANK) FAIL("rank %d exceeds %d", a[0].n, PC_MAX_RANK);
        s = pc_shape_make(a[0].n, a[0].ints);
        if (pc_broadcast_shapes(S(c, 0), s, &r) || !pc_shape_eq(r, S(c, 0)))
            FAIL("%s is not a broadcast of %s", shs(S(c, 0), b1), shs(s, b2));
        *dt = D(c, 0);
        break;
    }
    case PC_OP_slice: {
        pc_shape x = S(c, 0);
        int64_t ax = pc_norm_axis(a[0].i, x.rank);
        if (ax < 0) FAIL("axis %lld out of range for rank %d", (long long)a[0].i, x.rank);
        if (a[1].i < 0 || a[2].i < a[1].i || a[2].i > x.dim[ax])
            FAIL("slice [%lld, %lld) out of range for dimension %lld", (long long)a[1].i, (long long)a[2].i,
                 (long long)x.dim[ax]);
        s = x;
        s.dim[ax] = a[2].i - a[1].i;
        *dt = D(c, 0);
        break;
    }
    case PC_OP_pad: {
        pc_shape x = S(c, 0);
        int64_t ax = pc_norm_axis(a[0].i, x.rank);
        if (ax < 0) FAIL("axis %lld out of range for rank %d", (long long)a[0].i, x.rank);
        if (a[1].i < 0 || a[2].i < 0) FAIL("padding must be >= 0");
        s = x;
        s.dim[ax] += a[1].i + a[2].i;
        *dt = D(c, 0);
        break;
    }
    case PC_OP_concat: {
        pc_shape x = S(c, 0);
        int64_t ax = pc_norm_axis(a[0].i, x.rank);
        if (ax < 0) FAIL("axis %lld out of range for rank %d", (long long)a[0].i, x.rank);
        s = x;
        for (int i = 1; i < nin; i++) {
            pc_shape y = S(c, i);
            if (D(c, i) != D(c, 0)) FAIL("operand %d has dtype %s, operand 1 has %s", i + 1,
                                         pc_dtype_name(D(c, i)), pc_dtype_name(D(c, 0)));
            if (y.rank != x.rank) FAIL("operand %d has rank %d, operand 1 has %d", i + 1, y.rank, x.rank);
            for (int d = 0; d < x.rank; d++)
                if (d != ax && y.dim[d] != x.dim[d])
                    FAIL("operand %d shape %s differs from %s outside axis %lld", i + 1, shs(y, b1), shs(x, b2), (long long)ax);
            s.dim[ax] += y.dim[ax];
        }
        *dt = D(c, 0);
        break;
    }

    case PC_OP_embedding: {
        pc_shape t = S(c, 0), ids = S(c, 1);
        /* a bf16 table gives f32 rows (exact) */
        if ((D(c, 0) != PC_BF16 && want_float(c, 0)) || want_dtype(c, 1, PC_I32)) return -1;
        *dt = PC_F32;
        if (t.rank != 2) FAIL("the table must be [rows, dim], got %s", shs(t, b1));
        if (ids.rank + 1 > PC_MAX_RANK) FAIL("ids rank %d too large", ids.rank);
        s = ids;
        s.dim[s.rank++] = t.dim[1];
        break;
    }
    case PC_OP_embedding_grad: {
        pc_shape ids = S(c, 0), gr = S(c, 1);
        if (want_dtype(c, 0, PC_I32) || want_float(c, 1)) return -1;
        if (gr.rank != ids.rank + 1) FAIL("gradient %s must be the ids shape %s plus one axis", shs(gr, b1), shs(ids, b2));
        for (int i = 0; i < ids.rank; i++)
            if (gr.dim[i] != ids.dim[i]) FAIL("gradient %s must be the ids shape %s plus one axis", shs(gr, b1), shs(ids, b2));
        if (a[0].i <= 0) FAIL("rows must be > 0");
        s = pc_shape_make(2, (int64_t[]){a[0].i, gr.dim[gr.rank - 1]});
        break;
    }
    case PC_OP_rope: {
        pc_shape x = S(c, 0), p = S(c, 1);
        if (want_float(c, 0) || want_dtype(c, 1, PC_I32)) return -1;
        if (x.rank < 3) FAIL("x must be [..., S, H, D], got %s", shs(x, b1));
        if (x.dim[x.rank - 1] % 2) FAIL("head dimension %lld must be even", (long long)x.dim[x.rank - 1]);
        if (a[1].i != 0 && a[1].i != 1) FAIL("style must be 0 (adjacent pairs) or 1 (halves)");
        if (a[2].i != 0 && a[2].i != 1) FAIL("inverse must be 0 or 1");
        if (!(a[0].f > 0)) FAIL("theta must be > 0");
        if (a[6].i < 0) FAIL("orig_ctx must be >= 0");
        if (a[6].i > 0 && !(a[3].f > 0 && a[4].f > 0 && a[5].f > a[4].f))
            FAIL("llama3 scaling needs factor > 0 and 0 < low_freq < high_freq");
        /* pos is [S] or the leading axes of x up to S */
        bool ok = p.rank == 1 && p.dim[0] == x.dim[x.rank - 3];
        if (!ok && p.rank == x.rank - 2) {
            ok = true;
            for (int i = 0; i < p.rank; i++) ok = ok && p.dim[i] == x.dim[i];
        }
        if (!ok) FAIL("positions %s must be [S] or the leading axes of x %s", shs(p, b1), shs(x, b2));
        s = x;
        break;
    }
    case PC_OP_causal_mask:
        if (want_float(c, 0)) return -1;
        if (S(c, 0).rank < 2) FAIL("scores must have rank >= 2");
        if (S(c, 0).dim[S(c, 0).rank - 1] < S(c, 0).dim[S(c, 0).rank - 2])
            FAIL("scores %s have fewer keys than queries", shs(S(c, 0), b1));
        s = S(c, 0);
        break;
    case PC_OP_cross_entropy: case PC_OP_cross_entropy_grad: {
        pc_shape l = S(c, 0), t = S(c, 1);
        if (want_float(c, 0) || want_dtype(c, 1, PC_I32)) return -1;
        if (l.rank < 1 || t.rank != l.rank - 1) FAIL("targets %s must be the logits shape %s without its last axis", shs(t, b1), shs(l, b2));
        for (int i = 0; i < t.rank; i++)
            if (t.dim[i] != l.dim[i]) FAIL("targets %s must be the logits shape %s without its last axis", shs(t, b1), shs(l, b2));
        if (a[1].i < 0 || a[1].i > 2) FAIL("reduction must be 0 (mean), 1 (sum) or 2 (none)");
        if (op == PC_OP_cross_entropy) {
            s = a[1].i == 2 ? t : (pc_shape){0};
        } else {
            pc_shape want = a[1].i == 2 ? t : (pc_shape){0};
            if (want_float(c, 2)) return -1;
            if (!pc_shape_eq(S(c, 2), want)) FAIL("the incoming gradient must have shape %s", shs(want, b1));
            s = l;
        }
        break;
    }

    case PC_OP_adamw_m: case PC_OP_adamw_v: case PC_OP_adamw_p:
        for (int i = 0; i < nin; i++) if (want_float(c, i)) return -1;
        if (!pc_shape_eq(S(c, 0), S(c, 1))) FAIL("operands 1 and 2 must have the same shape");
        if (op == PC_OP_adamw_p) {
            if (!pc_shape_eq(S(c, 0), S(c, 2))) FAIL("operands 1 and 3 must have the same shape");
            if (S(c, 3).rank != 1 || S(c, 3).dim[0] != 8) FAIL("hyper-parameters (operand 4) must be f32[8]");
        } else {
            if (S(c, 2).rank != 1 || S(c, 2).dim[0] != 8) FAIL("hyper-parameters (operand 3) must be f32[8]");
            if (S(c, 3).rank != 0) FAIL("the gradient scale (operand 4) must be a scalar");
        }
        s = S(c, 0);
        break;
    case PC_OP_clip_coef:
        if (want_float(c, 0) || want_float(c, 1)) return -1;
        if (S(c, 0).rank != 0) FAIL("operand 1 must be a scalar");
        if (S(c, 1).rank != 1 || S(c, 1).dim[0] != 8) FAIL("hyper-parameters (operand 2) must be f32[8]");
        break;
    }
    if (check_dims(c, s)) return -1;
    *shape = s;
    return 0;
}
