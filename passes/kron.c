/* Kronecker products without forming them (see kron.h). */
#include "passes/kron.h"
#include "ir/ir.h"

void pc_kron_factorization(int64_t dim, int64_t factor, int64_t *m_out, int64_t *n_out) {
    if (factor > 0 && dim % factor == 0) {
        *m_out = factor, *n_out = dim / factor;
        return;
    }
    if (factor == -1) factor = dim;
    int64_t m = 1, n = dim, length = m + n;
    while (m < n) {
        int64_t new_m = m + 1;
        while (dim % new_m != 0) new_m++;
        int64_t new_n = dim / new_m;
        if (new_m + new_n > length || new_m > factor) break;
        m = new_m, n = new_n;
    }
    if (m > n) { int64_t t = m; m = n; n = t; }
    *m_out = m, *n_out = n;
}

/* N: x's rows, the product of its leading dims (not numel / (a2·b2): a factor may be empty) */
static int64_t rows(pc_shape xs) {
    int64_t n = 1;
    for (int i = 0; i + 1 < xs.rank; i++) n *= xs.dim[i];
    return n;
}

pc_val pc_kron_linear_at(pc_graph *g, pc_loc at, pc_val x, pc_val a, pc_val b) {
    if (pc_graph_error(g)) return PC_NONE;
    pc_shape xs = pc_val_shape(g, x), as = pc_val_shape(g, a), bs = pc_val_shape(g, b);
    if (as.rank != 2 || bs.rank != 2 || xs.rank < 1 || xs.dim[xs.rank - 1] != as.dim[1] * bs.dim[1])
        return pc_fail(g, at, "kron linear: x [..., %lld] does not take A [%lld, %lld] ⊗ B [%lld, %lld]",
                       xs.rank ? (long long)xs.dim[xs.rank - 1] : 0LL, (long long)as.dim[0],
                       (long long)(as.rank > 1 ? as.dim[1] : 0), (long long)bs.dim[0],
                       (long long)(bs.rank > 1 ? bs.dim[1] : 0));
    const int64_t a1 = as.dim[0], a2 = as.dim[1], b1 = bs.dim[0], b2 = bs.dim[1];
    const int64_t n = rows(xs);
    pc_val y;
    if (a1 * b2 < a2 * b1) {
        /* S[n, i, l] = Σ_k A[i, k] x[n, k, l] (A broadcast over N), then one [N·a1, b2] @ Bᵀ
         * GEMM: the intermediate autograd keeps for dB is S, N·a1·b2 floats, the smaller one
         * here (stories260K's and d768's up/gate projections) */
        pc_val s = pc_matmul_at(g, at, a, pc_reshape_at(g, at, x, PC_SHAPE(n, a2, b2)), 0, 0);
        y = pc_matmul_at(g, at, pc_reshape_at(g, at, s, PC_SHAPE(n * a1, b2)), b, 0, 1);
    } else {
        /* T[n, k, j] = Σ_l x[n, k, l] B[j, l]: one [N·a2, b2] @ Bᵀ GEMM; then Y[n] = A T[n] (A
         * broadcast over N); autograd keeps T (N·a2·b1 floats) for dA */
        pc_val t = pc_matmul_at(g, at, pc_reshape_at(g, at, x, PC_SHAPE(n * a2, b2)), b, 0, 1);
        y = pc_matmul_at(g, at, a, pc_reshape_at(g, at, t, PC_SHAPE(n, a2, b1)), 0, 0);
    }
    pc_shape ys = xs;
    ys.dim[ys.rank - 1] = a1 * b1;
    return pc_reshape_at(g, at, y, ys);
}

/* multiply-adds per row of x ([a2·b2] -> [a1·b1]) of each order (kron.h) */
static int64_t cost_b_first(int64_t a1, int64_t a2, int64_t b1, int64_t b2) { return a2 * b1 * (b2 + a1); }
static int64_t cost_a_first(int64_t a1, int64_t a2, int64_t b1, int64_t b2) { return a1 * b2 * (a2 + b1); }
static int64_t cost_rank(int64_t a1, int64_t a2, int64_t b1, int64_t b2, int64_t r) {
    return r * (a2 * b2 + a1 * a2 + a1 * b1);
}

pc_val pc_kron_linear_lowrank_at(pc_graph *g, pc_loc at, pc_val x, pc_val a, pc_val b, pc_val ba, pc_val bb) {
    if (pc_graph_error(g)) return PC_NONE;
    pc_shape xs = pc_val_shape(g, x), as = pc_val_shape(g, a), ps = pc_val_shape(g, ba), qs = pc_val_shape(g, bb);
    if (as.rank != 2 || ps.rank != 2 || qs.rank != 2 || ps.dim[1] != qs.dim[0] || xs.rank < 1 ||
        xs.dim[xs.rank - 1] != as.dim[1] * qs.dim[1])
        return pc_fail(g, at, "kron linear: x [..., %lld] does not take A [%lld, %lld] ⊗ (Ba [%lld, %lld] · Bb [%lld, %lld])",
                       xs.rank ? (long long)xs.dim[xs.rank - 1] : 0LL, (long long)as.dim[0],
                       (long long)(as.rank > 1 ? as.dim[1] : 0), (long long)ps.dim[0],
                       (long long)(ps.rank > 1 ? ps.dim[1] : 0), (long long)qs.dim[0],
                       (long long)(qs.rank > 1 ? qs.dim[1] : 0));
    const int64_t a1 = as.dim[0], a2 = as.dim[1], b1 = ps.dim[0], r = ps.dim[1], b2 = qs.dim[1];
    int64_t full = cost_b_first(a1, a2, b1, b2), af = cost_a_first(a1, a2, b1, b2);
    if (af < full) full = af;
    if (cost_rank(a1, a2, b1, b2, r) >= full) /* a rank too large to pay: one of the full-B orders */
        return pc_kron_linear_at(g, at, x, a, b != PC_NONE ? b : pc_matmul_at(g, at, ba, bb, 0, 0));
    const int64_t n = rows(xs);
    /* U[n, k, p] = Σ_l x[n, k, l] Bb[p, l]: one [N·a2, b2] @ Bbᵀ GEMM */
    pc_val u = pc_matmul_at(g, at, pc_reshape_at(g, at, x, PC_SHAPE(n * a2, b2)), bb, 0, 1);
    /* V[n, i, p] = Σ_k A[i, k] U[n, k, p] (A broadcast over N) */
    pc_val v = pc_matmul_at(g, at, a, pc_reshape_at(g, at, u, PC_SHAPE(n, a2, r)), 0, 0);
    /* Y[n, i, j] = Σ_p V[n, i, p] Ba[j, p]: one [N·a1, r] @ Baᵀ GEMM */
    pc_val y = pc_matmul_at(g, at, pc_reshape_at(g, at, v, PC_SHAPE(n * a1, r)), ba, 0, 1);
    pc_shape ys = xs;
    ys.dim[ys.rank - 1] = a1 * b1;
    return pc_reshape_at(g, at, y, ys);
}

