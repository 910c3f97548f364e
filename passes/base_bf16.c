/* base-bf16: the frozen base model's weights held in bf16.
 *
 * A frozen f32 param of rank 2 becomes bf16 when every use of it reads it as a product operand
 * (matmul) or an embedding table, and the caller's predicate says it is a base weight. Each of
 * those products reads its other operand through one shared cast to bf16 (round to nearest even):
 *
 *   %w = param frozen f32[out, in]           %w = param frozen bf16[out, in]
 *   %y = matmul %x, %w {transpose_b=1}  =>   %x.bf16 = cast %x {to=2}
 *                                            %y = matmul %x.bf16, %w {transpose_b=1}   (f32)
 *
 * so the frozen products run on the CPU's bf16 units with f32 accumulation (products of two bf16
 * values are exact in f32), while adapters, norms, everything between the products, and every
 * gradient stay f32: autograd differentiates the cast as the identity and rounds an adjoint only
 * where it meets a bf16 weight (dX = round(dY) W). A weight read any other way (DoRA's row norms
 * of W, a merge) keeps f32. pc_session_build runs this after the adapter rewrites when a session's
 * base dtype is bf16; the pipeline form converts every qualifying frozen param. */
#include "passes/pipeline.h"
#include "ir/ir.h"

#include <stdio.h>
#include <stdlib.h>

static bool reads_as_weight(const pc_graph *g, pc_val w) {
    int nuses = 0;
    for (pc_val u = w + 1; u < g->nvals; u++) {
        const pc_value *x = pc_v(g, u);
        for (int k = 0; k < x->nin; k++) {
            if (x->in[k] != w) continue;
            nuses++;
            if (x->op != PC_OP_matmul && !(x->op == PC_OP_embedding && k == 0)) return false;
        }
    }
    for (int i = 0; i < g->noutputs; i++)
        if (g->outputs[i] == w) return false;
    for (int i = 0; i < g->nupdates; i++)
        if (g->updates[i].target == w || g->updates[i].next == w) return false;
    return nuses > 0;
}

static bool qualifies(const pc_graph *g, pc_val v, pc_base_pred is_base, void *ctx) {
    const pc_value *x = pc_v(g, v);
    /* a checkpoint's weight: bound, never initialised (random inits are f32-only) */
    return x->op == PC_OP_param && (x->flags & PC_FROZEN) && x->dtype == PC_F32 && x->shape.rank == 2 &&
           x->init.kind == PC_INIT_NONE &&
           (!is_base || (x->key && is_base(ctx, x->key))) && reads_as_weight(g, v);
}

/* operand k of matmul v in the new graph: a converted weight as it is, anything else f32 through
 * one cast per value (the q, k and v projections of a layer share theirs) */
static pc_val operand(pc_graph *ng, const pc_graph *g, pc_val v, int k, const pc_val *map, pc_val *cast) {
    pc_val o = pc_v(g, v)->in[k];
    if (pc_v(ng, map[o])->dtype != PC_F32) return map[o];
    if (cast[o] == PC_NONE) {
        cast[o] = pc_cast_at(ng, pc_v(g, v)->loc, map[o], PC_BF16);
        const char *name = pc_v(g, o)->name;
        char buf[256];
        if (cast[o] != PC_NONE && name && snprintf(buf, sizeof buf, "%s.bf16", name) < (int)sizeof buf &&
            pc_lookup(ng, buf) == PC_NONE)
            pc_set_name(ng, cast[o], buf);
    }
    return cast[o];
}

int pc_base_bf16_apply(pc_graph **gp, pc_base_pred is_base, void *ctx, int *nconverted, char *err, size_t errlen) {
    pc_graph *g = *gp;
    int n = g->nvals, rc = -1, nconv = 0;
    if (nconverted) *nconverted = 0;
    bool *conv = calloc((size_t)n + 1, sizeof *conv);
    pc_val *map = malloc(((size_t)n + 1) * sizeof *map), *cast = malloc(((size_t)n + 1) * sizeof *cast);
    pc_graph *ng = NULL;
    if (!conv || !map || !cast) { snprintf(err, errlen, "base-bf16: out of memory"); goto done; }
    for (pc_val v = 0; v < n; v++) {
        cast[v] = map[v] = PC_NONE;
        nconv += conv[v] = qualifies(g, v, is_base, ctx);
    }
    if (nconv == 0) { rc = 0; goto done; } /* the graph stays as it is */
    if (!(ng = pc_graph_new(g->name))) { snprintf(err, errlen, "base-bf16: out of memory"); goto done; }
    for (pc_val v = 0; v < n && !ng->error; v++) {
        const pc_value *x = pc_v(g, v);
        bool mixed = x->op == PC_OP_matmul && (conv[x->in[0]] || conv[x->in[1]]);
        if (!mixed) {
            map[v] = pc_copy_value(ng, g, v, map);
            if (conv[v] && map[v] != PC_NONE) pc_v(ng, map[v])->dtype = PC_BF16; /* before any user exists */
            continue;
        }
        pc_val a = operand(ng, g, v, 0, map, cast), b = operand(ng, g, v, 1, map, cast);
        if (a == PC_NONE || b == PC_NONE) break;
        map[v] = pc_matmul_at(ng, x->loc, a, b, (int)pc_attr_i(g, v, "transpose_a"), (int)pc_attr_i(g, v, "transpose_b"));
        if (map[v] != PC_NONE && x->name && pc_lookup(ng, x->name) == PC_NONE) pc_set_name(ng, map[v], x->name);
    }
    if (pc_rebuild_commit(gp, &ng, map, "base-bf16", err, errlen)) goto done;
    if (nconverted) *nconverted = nconv;
    rc = 0;
done:
    pc_graph_free(ng);
    free(conv);
    free(map);
    free(cast);
    return rc;
}

int pc_pass_base_bf16(pc_graph **g, char *err, size_t errlen) { return pc_base_bf16_apply(g, NULL, NULL, NULL, err, errlen); }
