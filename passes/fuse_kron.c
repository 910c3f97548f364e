/* fuse-kron: a product with a Kronecker product, x (A ⊗ B)ᵀ, without forming A ⊗ B.
 *
 * With A [a,c], B [b,d], x [..., c·d] and N = numel(x) / (c·d),
 *   y[n, i·b+j] = Σ_k Σ_l A[i,k] B[j,l] x[n, k·d+l],
 * i.e. y[n] = A X[n] Bᵀ for X[n] = x[n] as a [c, d] matrix. The pass rewrites
 *
 *   %K = kron %A, %B                        %u = matmul (reshape %x [N·c, d]), %B {transpose_b=1}  [N·c, b]
 *   %y = matmul %x, %K {transpose_b=1}  =>  %v = matmul %A, (reshape %u [N, c, b])                 [N, a, b]
 *                                           %y = reshape %v [..., a·b]
 *
 * (the second product broadcasts A over the N batches; pc_kron_linear_at takes A first,
 * S[n] = A X[n] then S Bᵀ, when that intermediate, the one autograd keeps, is smaller), so there
 * are only views between the two
 * GEMMs: N·(c·d·b + a·c·b) multiply-adds instead of N·a·b·c·d, no [a·b, c·d] tensor, and autograd
 * of the result differentiates those GEMMs, so the backward never forms A ⊗ B or its gradient
 * either. The
 * kron is left to dce when nothing else reads it.
 * When B is itself a product matmul(Ba [b,r], Bb [r,d]) (LoKr's low-rank w2), the pass hands
 * the halves to pc_kron_linear_lowrank_at, which takes the cheapest of three orders in
 * multiply-adds per row: the two above (B formed), or the rank-r order x Bbᵀ, then A, then Baᵀ,
 * r·(c·d + a·c + a·b) per row, whose intermediates (the ones autograd keeps) are rank-r wide like
 * LoRA's; B and the full-width intermediate are then never formed. LoKr's rewrite (passes/adapters/lokr.c) emits
 * the plain form; pc_session_build runs this pass on every model graph (train, eval, decode);
 * merge graphs do not go through it and form the product once. */
#include "passes/kron.h"
#include "passes/pipeline.h"
#include "ir/ir.h"

#include <stdio.h>
#include <stdlib.h>

/* matmul(x, kron(A, B), transpose_a=0, transpose_b=1) with x of rank >= 2 */
static bool is_kron_product(const pc_graph *g, pc_val v) {
    const pc_value *m = pc_v(g, v);
    if (m->op != PC_OP_matmul || pc_attr_i(g, v, "transpose_a") || !pc_attr_i(g, v, "transpose_b")) return false;
    const pc_value *k = pc_v(g, m->in[1]), *x = pc_v(g, m->in[0]);
    return k->op == PC_OP_kron && k->dtype == PC_F32 && x->dtype == PC_F32 && x->shape.rank >= 2;
}

/* B = matmul(Ba [b1, r], Bb [r, b2]), no transposes, f32: LoKr's low-rank w2 */
static bool is_low_rank(const pc_graph *g, pc_val b) {
    const pc_value *m = pc_v(g, b);
    if (m->op != PC_OP_matmul || m->dtype != PC_F32 || m->shape.rank != 2 || pc_attr_i(g, b, "transpose_a") ||
        pc_attr_i(g, b, "transpose_b"))
        return false;
    const pc_value *p = pc_v(g, m->in[0]), *q = pc_v(g, m->in[1]);
    return p->dtype == PC_F32 && q->dtype == PC_F32 && p->shape.rank == 2 && q->shape.rank == 2;
}

static pc_val fused(pc_graph *ng, const pc_graph *g, pc_val v, const pc_val *map) {
    const pc_value *m = pc_v(g, v), *k = pc_v(g, m->in[1]);
    if (is_low_rank(g, k->in[1])) {
        const pc_value *b = pc_v(g, k->in[1]);
        return pc_kron_linear_lowrank_at(ng, m->loc, map[m->in[0]], map[k->in[0]], map[k->in[1]], map[b->in[0]],
                                         map[b->in[1]]);
    }
    return pc_kron_linear_at(ng, m->loc, map[m->in[0]], map[k->in[0]], map[k->in[1]]);
}

int pc_pass_fuse_kron(pc_graph **gp, char *err, size_t errlen) {
    pc_graph *g = *gp;
    int n = g->nvals, rc = -1, nfused = 0;
    pc_val *map = malloc(((size_t)n + 1) * sizeof *map);
    for (int v = 0; v < n && map; v++) nfused += is_kron_product(g, v);
    if (map && nfused == 0) { free(map); return 0; } /* nothing to do: the graph stays as it is */
    pc_graph *ng = pc_graph_new(g->name);
    if (!map || !ng) { snprintf(err, errlen, "fuse-kron: out of memory"); goto done; }
    for (int v = 0; v < n; v++) {
        if (!is_kron_product(g, v)) {
            if ((map[v] = pc_copy_value(ng, g, v, map)) == PC_NONE) break;
            continue;
        }
        if ((map[v] = fused(ng, g, v, map)) == PC_NONE) break;
        const char *name = pc_v(g, v)->name;
        if (name && pc_lookup(ng, name) == PC_NONE) pc_set_name(ng, map[v], name);
    }
    if (pc_rebuild_commit(gp, &ng, map, "fuse-kron", err, errlen)) goto done;
    rc = 0;
done:
    pc_graph_free(ng);
    free(map);
    return rc;
}
