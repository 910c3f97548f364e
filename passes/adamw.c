/* The AdamW update as graph ops (see passes/passes.h and the adamw_* ops in ir/ops.def). */
#include "ir/ir.h"
#include "passes/pass_error.h"
#include "passes/passes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_trainable(const pc_value *x) { return x->op == PC_OP_param && (x->flags & PC_TRAINABLE); }

static bool is_output(const pc_graph *g, pc_val v) {
    for (int i = 0; i < g->noutputs; i++)
        if (g->outputs[i] == v) return true;
    return false;
}

static pc_val op4(pc_graph *g, pc_loc at, pc_opcode op, pc_val a, pc_val b, pc_val c, pc_val d) {
    pc_val in[4] = {a, b, c, d};
    return pc_node(g, at, op, 4, in, NULL);
}

int pc_pass_adamw(pc_graph *g, const pc_adamw_opts *opts, char *err, size_t errlen) {
    if (errlen) err[0] = 0;
    if (!g) return pc_pass_errorf(err, errlen, (pc_loc){0}, "adamw", "%s", "no graph");
    if (g->error) { snprintf(err, errlen, "%s", g->error); return -1; }
    int clip = opts && opts->clip;
    if (pc_lookup(g, "hp") != PC_NONE)
        return pc_pass_errorf(err, errlen, pc_v(g, pc_lookup(g, "hp"))->loc, "adamw",
                              "the graph already has a value %%%s (adamw ran?)", "hp");

    /* the params and their gradients, in param order */
    const int n = g->nvals;
    int np = 0;
    pc_val *ps = malloc(((size_t)n + 1) * 2 * sizeof *ps), *gs = ps ? ps + n + 1 : NULL;
    if (!ps) { snprintf(err, errlen, "error: adamw: out of memory"); return -1; }
    int rc = -1;
    pc_loc at0 = {0};
    for (int i = 0; i < n; i++) {
        const pc_value *p = pc_v(g, i);
        if (!is_trainable(p)) continue;
        char name[512];
        snprintf(name, sizeof name, "grad.%s", p->name);
        pc_val gr = pc_lookup(g, name);
        if (gr == PC_NONE || !is_output(g, gr)) {
            pc_pass_errorf(err, errlen, p->loc, "adamw",
                           "trainable param %%%s has no gradient output (run autograd first)", p->name);
            goto done;
        }
        for (int u = 0; u < g->nupdates; u++)
            if (g->updates[u].target == i) {
                pc_pass_errorf(err, errlen, p->loc, "adamw",
                               "trainable param %%%s is already updated (adamw ran?)", p->name);
                goto done;
            }
        if (!np) at0 = p->loc;
        ps[np] = i;
        gs[np++] = gr;
    }
    if (!np) {
        pc_pass_errorf(err, errlen, at0, "adamw", "%s", "the graph has no trainable params");
        goto done;
    }
    for (int i = 0; i < g->noutputs; i++)
        if (pc_v(g, g->outputs[i])->flags & PC_LOSS) at0 = pc_v(g, g->outputs[i])->loc;

    pc_val hp = pc_input_at(g, at0, "hp", PC_F32, pc_shape_make(1, (int64_t[]){8}));
    pc_val scale;
    if (clip) {
        /* global norm over every gradient, in param order */
        pc_val sumsq = PC_NONE;
        for (int k = 0; k < np; k++) {
            pc_loc at = pc_v(g, ps[k])->loc;
            pc_val s = pc_sum_at(g, at, pc_square_at(g, at, gs[k]), 0, NULL, 0);
            sumsq = sumsq == PC_NONE ? s : pc_add_at(g, at, sumsq, s);
        }
        pc_val in[2] = {sumsq, hp};
        scale = pc_node(g, at0, PC_OP_clip_coef, 2, in, NULL);
    } else {
        scale = pc_scalar_at(g, at0, 1.0f);
    }

    for (int k = 0; k < np && !g->error; k++) {
        pc_val p = ps[k];
        pc_loc at = pc_v(g, p)->loc;
        pc_shape s = pc_v(g, p)->shape;
        const char *pname = pc_v(g, p)->name, *pkey = pc_v(g, p)->key ? pc_v(g, p)->key : pname;
        char mname[512], vname[512], mkey[512], vkey[512];
        snprintf(mname, sizeof mname, "adam_m.%s", pname);
        snprintf(vname, sizeof vname, "adam_v.%s", pname);
        snprintf(mkey, sizeof mkey, "%s.adam_m", pkey);
        snprintf(vkey, sizeof vkey, "%s.adam_v", pkey);
        pc_init zeros = {PC_INIT_ZEROS, 0, 0};
        pc_val m = pc_state_at(g, at, mname, mkey, PC_F32, s, zeros);
        pc_val v = pc_state_at(g, at, vname, vkey, PC_F32, s, zeros);
        pc_val m2 = op4(g, at, PC_OP_adamw_m, m, gs[k], hp, scale);
        pc_val v2 = op4(g, at, PC_OP_adamw_v, v, gs[k], hp, scale);
        pc_val p2 = op4(g, at, PC_OP_adamw_p, p, m2, v2, hp);
        if (p2 == PC_NONE) break;
        if (pc_add_update(g, p, p2) || pc_add_update(g, m, m2) || pc_add_update(g, v, v2)) break;
    }
    if (g->error) {
        snprintf(err, errlen, "%s", g->error);
        goto done;
    }
    rc = 0;
done:
    free(ps);
    return rc;
}
