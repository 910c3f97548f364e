/* dce: removes values that reach no output and no update. Inputs are kept (they are the
 * graph's signature) even when unused. */
#include "passes/pipeline.h"
#include "ir/ir.h"

#include <stdio.h>
#include <stdlib.h>

int pc_pass_dce(pc_graph **gp, char *err, size_t errlen) {
    pc_graph *g = *gp;
    bool *live = calloc((size_t)g->nvals + 1, sizeof *live);
    pc_val *map = malloc(((size_t)g->nvals + 1) * sizeof *map);
    pc_graph *ng = pc_graph_new(g->name);
    int rc = -1;
    if (!live || !map || !ng) { snprintf(err, errlen, "dce: out of memory"); goto done; }
    for (int i = 0; i < g->noutputs; i++) live[g->outputs[i]] = true;
    for (int i = 0; i < g->nupdates; i++) live[g->updates[i].target] = live[g->updates[i].next] = true;
    for (int v = g->nvals - 1; v >= 0; v--) {
        if (g->vals[v].op == PC_OP_input) live[v] = true;
        if (!live[v]) continue;
        for (int k = 0; k < g->vals[v].nin; k++) live[g->vals[v].in[k]] = true;
    }
    for (int v = 0; v < g->nvals; v++) {
        map[v] = PC_NONE;
        if (live[v] && (map[v] = pc_copy_value(ng, g, v, map)) == PC_NONE) break;
    }
    if (pc_rebuild_commit(gp, &ng, map, "dce", err, errlen)) goto done;
    rc = 0;
done:
    pc_graph_free(ng);
    free(live);
    free(map);
    return rc;
}
