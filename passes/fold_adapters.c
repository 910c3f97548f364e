/* fold-adapters (see fold_adapters.h). */
#include "passes/fold_adapters.h"
#include "ir/ir.h"
#include "runtime/fileio.h"

#include <stdio.h>
#include <string.h>

/* a frozen copy of a model param in the fold graph (no init: the base binds it) */
static pc_val base_param(pc_graph *fg, const pc_graph *g, pc_val p) {
    const pc_value *v = pc_v(g, p);
    pc_val q = pc_lookup_key(fg, v->key);
    return q != PC_NONE ? q : pc_param_at(fg, v->loc, NULL, v->key, v->dtype, v->shape, PC_FROZEN, (pc_init){0});
}

static int name_output(pc_graph *fg, pc_val v, const char *key) {
    char name[600];
    if ((size_t)snprintf(name, sizeof name, "merged.%s", key) >= sizeof name) return -1; /* too long a key */
    return v == PC_NONE || pc_set_name(fg, v, name) || pc_mark_output(fg, v);
}

int pc_fold_adapters(const pc_graph *g, pc_adapt_ctx *cx, bool unmerge, pc_graph **out, int *nmerged, char *err,
                     size_t errlen) {
    const pc_adapter_method *m = pc_adapt_method(cx);
    *out = NULL;
    *nmerged = 0;
    if (!m->merge_linear)
        return pc_errf(err, errlen, "%s adapters cannot be merged: %s", m->name, m->not_mergeable ? m->not_mergeable : "the method has no merge rule");
    if (unmerge && !m->unmerge_linear) return pc_errf(err, errlen, "%s adapters cannot be unmerged: the method has no inverse rule", m->name);
    pc_graph *fg = pc_graph_new("fold");
    if (!fg) return pc_errf(err, errlen, "out of memory");
    char module[512], key[600], msg[1024] = "";
    for (pc_val v = 0; v < g->nvals; v++) {
        pc_val w = pc_linear_weight(g, v);
        if (w == PC_NONE || !pc_linear_module(g, v, module, sizeof module)) continue;
        if (pc_lookup_key(fg, pc_v(g, w)->key) != PC_NONE) continue; /* a weight used twice merges once */
        snprintf(key, sizeof key, "%s.bias", module);
        pc_val b = pc_lookup_key(g, key);
        const pc_shape ws = pc_v(g, w)->shape;
        pc_site s = {.kind = PC_SITE_LINEAR, .module = module, .layer = -1, .g = fg, .loc = pc_v(g, v)->loc,
                     .value = PC_NONE, .value2 = PC_NONE, .x = PC_NONE, .weight = base_param(fg, g, w),
                     .bias = b != PC_NONE ? base_param(fg, g, b) : PC_NONE, .ids = PC_NONE,
                     .in = ws.dim[1], .out = ws.dim[0]};
        pc_val nw = PC_NONE, nb = PC_NONE;
        int r = (unmerge ? m->unmerge_linear : m->merge_linear)(cx, pc_adapt_state(cx), &s, &nw, &nb, msg, sizeof msg);
        if (r < 0 || fg->error) {
            pc_errf(err, errlen, "%smerging %s: %s", unmerge ? "un" : "", module, fg->error ? fg->error : msg);
            pc_graph_free(fg);
            return -1;
        }
        if (r == 0) continue;
        if (name_output(fg, nw, pc_v(g, w)->key) || (nb != PC_NONE && name_output(fg, nb, key))) {
            pc_errf(err, errlen, "merging %s: %s", module, fg->error ? fg->error : "cannot name the merged tensor");
            pc_graph_free(fg);
            return -1;
        }
        (*nmerged)++;
    }
    *out = fg;
    return 0;
}
