/* The linear rewrite driver: copies a graph, handing each matched linear to a builder. */
#include "passes/adapt.h"
#include "ir/ir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

pc_val pc_dropout_seed(pc_graph *g) {
    pc_val s = pc_lookup(g, "seed");
    if (s != PC_NONE) {
        if (pc_v(g, s)->op == PC_OP_input && pc_v(g, s)->dtype == PC_I32 && pc_v(g, s)->shape.rank == 0) return s;
        return pc_fail(g, pc_v(g, s)->loc, "%%seed exists but is not an i32[] input");
    }
    return pc_input_at(g, (pc_loc){0}, "seed", PC_I32, pc_shape_make(0, NULL));
}

/* PEFT's layer index: the first numbered path segment that follows another segment */
static int layer_index(const char *module) {
    const char *p = strchr(module, '.');
    while (p) {
        const char *q = p + 1;
        const char *e = q;
        while (*e >= '0' && *e <= '9') e++;
        if (e > q && *e == '.') return atoi(q);
        p = strchr(q, '.');
    }
    return -1;
}

/* the bias add that completes a linear: its only user is add(mm, param "<module>.bias") */
static pc_val bias_add(const pc_graph *g, pc_val mm, const char *module, int *uses) {
    pc_val found = PC_NONE;
    for (pc_val u = mm + 1; u < g->nvals; u++) {
        const pc_value *x = pc_v(g, u);
        for (int k = 0; k < x->nin; k++) {
            if (x->in[k] != mm) continue;
            uses[0]++;
            const pc_value *b = x->nin == 2 ? pc_v(g, x->in[1 - k]) : x;
            size_t ml = strlen(module);
            if (x->op == PC_OP_add && x->nin == 2 && b->op == PC_OP_param && b->key &&
                strncmp(b->key, module, ml) == 0 && strcmp(b->key + ml, ".bias") == 0)
                found = u;
        }
    }
    return uses[0] == 1 ? found : PC_NONE;
}

int pc_rewrite_linears(pc_graph **gp, const pc_linear_rewrite *rw, int *nmatched, char *err, size_t errlen) {
    pc_graph *g = *gp;
    pc_val *map = malloc(((size_t)g->nvals + 1) * sizeof *map);
    pc_val *bias_of = malloc(((size_t)g->nvals + 1) * sizeof *bias_of); /* bias add -> its matmul */
    pc_graph *ng = pc_graph_new(g->name);
    int count = 0, rc = -1;
    char module[512], msg[1024] = "";
    if (!map || !bias_of || !ng) { snprintf(err, errlen, "%s: out of memory", rw->name); goto done; }
    for (int v = 0; v < g->nvals; v++) bias_of[v] = map[v] = PC_NONE;
    for (int v = 0; v < g->nvals; v++) {
        if (map[v] != PC_NONE) continue; /* a bias param copied early */
        if (bias_of[v] != PC_NONE) { /* the add completing a rewritten linear: already replaced */
            map[v] = map[bias_of[v]];
            continue;
        }
        if ((map[v] = pc_copy_value(ng, g, v, map)) == PC_NONE) break;
        if (!pc_linear_module(g, v, module, sizeof module)) continue;
        int m = rw->match(rw->user, module, msg, sizeof msg);
        if (m < 0) { snprintf(err, errlen, "%s: %s", rw->name, msg); goto done; }
        if (!m) continue;
        const pc_value *mm = pc_v(g, v);
        int uses = 0;
        pc_val badd = bias_add(g, v, module, &uses);
        pc_linear_site site = {
            .g = ng, .module = module, .layer = layer_index(module),
            .x = map[mm->in[0]], .weight = map[mm->in[1]], .bias = PC_NONE, .base = map[v],
            .in = pc_v(g, mm->in[1])->shape.dim[1], .out = pc_v(g, mm->in[1])->shape.dim[0], .loc = mm->loc,
        };
        if (badd != PC_NONE) {
            /* build the bias add now so the builder sees the whole linear */
            const pc_value *a = pc_v(g, badd);
            pc_val b = a->in[0] == v ? a->in[1] : a->in[0];
            if (map[b] == PC_NONE) { /* bias param defined after the matmul: copy it early */
                if ((map[b] = pc_copy_value(ng, g, b, map)) == PC_NONE) break;
            }
            site.bias = map[b];
            site.base = pc_add_at(ng, a->loc, map[v], map[b]);
            bias_of[badd] = v;
        }
        msg[0] = 0;
        pc_val r = rw->build(rw->user, &site, msg, sizeof msg);
        if (r == PC_NONE) {
            snprintf(err, errlen, "%s: %s: %s", rw->name, module, ng->error ? ng->error : msg[0] ? msg : "builder failed");
            goto done;
        }
        if (pc_val_dtype(ng, r) != pc_val_dtype(ng, site.base) || !pc_shape_eq(pc_val_shape(ng, r), pc_val_shape(ng, site.base))) {
            snprintf(err, errlen, "%s: %s: the replacement's type differs from the linear's", rw->name, module);
            goto done;
        }
        map[v] = r;
        count++;
    }
    if (!ng->error) pc_copy_outputs(ng, g, map);
    if (ng->error) { snprintf(err, errlen, "%s: %s", rw->name, ng->error); goto done; }
    pc_graph_free(g);
    *gp = ng;
    ng = NULL;
    if (nmatched) *nmatched = count;
    rc = 0;
done:
    pc_graph_free(ng);
    free(map);
    free(bias_of);
    return rc;
}
