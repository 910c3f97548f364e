/* Reverse-mode autograd as an append-only graph transform (see passes/passes.h).
 *
 *  1. requires-grad: a value needs a gradient when it is a trainable f32 param, or an f32 result of
 *     an op with an operand that needs one, except ops without a gradient by definition
 *     (comparisons, stop_gradient: ops.def differentiable = 2), whose results are constants. Values are stored in
 *     topological order (operands always precede their users), so one forward sweep suffices.
 *  2. seed the loss with const 1.0 and walk the values from the loss down: each value with an
 *     adjoint asks its gradient rule (ir/grad.c) for the operands that need one; contributions to a
 *     value are summed with add nodes in the order they arrive (users by decreasing index, then
 *     operands in order), which is deterministic.
 *  3. name and mark the adjoint of every trainable param as output `grad.<name>`.
 */
#include "ir/grad.h"
#include "passes/pass_error.h"
#include "passes/passes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_leaf(pc_opcode op) {
    return op == PC_OP_input || op == PC_OP_param || op == PC_OP_state || op == PC_OP_const;
}

static bool is_trainable(const pc_value *x) { return x->op == PC_OP_param && (x->flags & PC_TRAINABLE); }

static int graph_fail(pc_graph *g, char *err, size_t errlen) {
    snprintf(err, errlen, "%s", g->error ? g->error : "autograd: out of memory");
    return -1;
}

/* adds contribution d to the adjoint of x */
static int accumulate(pc_graph *g, pc_val *adj, pc_val x, pc_val d) {
    if (d == PC_NONE) return 0;
    if (adj[x] == PC_NONE) adj[x] = d;
    else adj[x] = pc_add_at(g, g->vals[x].loc, adj[x], d);
    return adj[x] == PC_NONE ? -1 : 0;
}

int pc_pass_autograd(pc_graph *g, char *err, size_t errlen) {
    if (errlen) err[0] = 0;
    if (!g) return pc_pass_errorf(err, errlen, (pc_loc){0}, "autograd", "%s", "no graph");
    if (g->error) return graph_fail(g, err, errlen);

    /* the loss, and the idempotence guard */
    pc_val loss = PC_NONE;
    for (int i = 0; i < g->noutputs; i++) {
        const pc_value *o = pc_v(g, g->outputs[i]);
        if (strncmp(o->name, "grad.", 5) == 0)
            return pc_pass_errorf(err, errlen, o->loc, "autograd",
                                  "the graph already has gradient output %%%s (autograd ran)", o->name);
        if (o->flags & PC_LOSS) {
            if (loss != PC_NONE) return pc_pass_errorf(err, errlen, o->loc, "autograd",
                                                       "more than one loss (%%%s)", o->name);
            loss = g->outputs[i];
        }
    }
    if (loss == PC_NONE) return pc_pass_errorf(err, errlen, (pc_loc){0}, "autograd",
                                               "%s", "the graph has no loss output");
    {
        const pc_value *l = pc_v(g, loss);
        if (l->dtype != PC_F32 || l->shape.rank != 0)
            return pc_pass_errorf(err, errlen, l->loc, "autograd", "the loss %%%s must be a scalar f32", l->name);
    }

    const int n = g->nvals; /* the forward graph; everything appended is backward */
    for (int i = 0; i < n; i++)
        if (is_trainable(pc_v(g, i)) && pc_v(g, i)->dtype != PC_F32)
            return pc_pass_errorf(err, errlen, pc_v(g, i)->loc, "autograd",
                                  "trainable param %%%s is not f32", pc_v(g, i)->name);

    bool *needs = calloc((size_t)n + 1, sizeof *needs);
    pc_val *adj = malloc(((size_t)n + 1) * sizeof *adj);
    bool *need_in = NULL;
    pc_val *outs = NULL;
    int nneed_in = 0, rc = -1;
    if (!needs || !adj) goto oom;

    for (int i = 0; i < n; i++) {
        const pc_value *x = pc_v(g, i);
        adj[i] = PC_NONE;
        if (x->dtype != PC_F32 && x->dtype != PC_BF16) continue; /* bf16: a rounded activation */
        if (is_leaf(x->op)) { needs[i] = is_trainable(x); continue; }
        if (pc_grad_is_constant_op(x->op)) continue;
        for (int k = 0; k < x->nin && !needs[i]; k++) needs[i] = needs[x->in[k]];
    }

    if (needs[loss]) {
        adj[loss] = pc_scalar_at(g, pc_v(g, loss)->loc, 1.0f);
        if (adj[loss] == PC_NONE) goto gfail;
    }
    for (pc_val v = loss; v >= 0; v--) {
        if (adj[v] == PC_NONE || !needs[v] || is_leaf(pc_v(g, v)->op)) continue;
        int nin = pc_v(g, v)->nin;
        if (nin > nneed_in) {
            bool *p = realloc(need_in, (size_t)nin * sizeof *p);
            if (!p) goto oom;
            need_in = p;
            pc_val *q = realloc(outs, (size_t)nin * sizeof *q);
            if (!q) goto oom;
            outs = q;
            nneed_in = nin;
        }
        for (int k = 0; k < nin; k++) need_in[k] = needs[pc_v(g, v)->in[k]];
        int bad = pc_grad(g, v, adj[v], need_in, outs);
        for (int k = 0; !bad && k < nin; k++)
            if (need_in[k]) bad = accumulate(g, adj, pc_v(g, v)->in[k], outs[k]);
        if (bad) goto gfail;
    }

    /* name and mark the gradients */
    char warn[256] = "";
    size_t wlen = 0;
    int nunused = 0;
    for (int i = 0; i < n; i++) {
        const pc_value *p = pc_v(g, i);
        if (!is_trainable(p)) continue;
        pc_loc at = p->loc;
        pc_shape s = p->shape;
        pc_val d = adj[i];
        if (d == PC_NONE) {
            if (nunused++ < 4 && wlen < sizeof warn - 1) { /* long names: the list is cut, never overrun */
                int k = snprintf(warn + wlen, sizeof warn - wlen, "%s%%%s", nunused > 1 ? ", " : "", p->name);
                wlen = k < 0 ? wlen : wlen + (size_t)k < sizeof warn ? wlen + (size_t)k : sizeof warn - 1;
            }
            d = pc_scalar_at(g, at, 0.0f);
            if (s.rank > 0) d = pc_broadcast_at(g, at, d, s);
        } else if (d < n || strncmp(pc_v(g, d)->name, "grad.", 5) == 0) {
            /* shared with another param's gradient (e.g. both operands of an add): a copy */
            d = pc_reshape_at(g, at, d, s);
        }
        if (d == PC_NONE) goto gfail;
        char name[512];
        snprintf(name, sizeof name, "grad.%s", pc_v(g, i)->name);
        if (pc_set_name(g, d, name)) {
            pc_pass_errorf(err, errlen, at, "autograd", "cannot name the gradient %%%s (the name is taken)", name);
            goto done;
        }
        if (pc_mark_output(g, d)) goto gfail;
    }
    if (nunused)
        snprintf(err, errlen, "warning: autograd: the loss does not depend on %d trainable param%s (%s%s); "
                 "their gradients are zero", nunused, nunused > 1 ? "s" : "", warn, nunused > 4 ? ", ..." : "");
    rc = 0;
    goto done;
oom:
    snprintf(err, errlen, "error: autograd: out of memory");
    goto done;
gfail:
    graph_fail(g, err, errlen);
done:
    free(needs);
    free(adj);
    free(need_in);
    free(outs);
    return rc;
}
