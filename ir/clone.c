/* Copying values between graphs: the basis of every pass that rebuilds a graph
 * (dead-code elimination, adapter rewrites). */
#include "ir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

pc_val pc_copy_value(pc_graph *dst, const pc_graph *src, pc_val v, const pc_val *map) {
    if (!dst || dst->error) return PC_NONE;
    const pc_value *s = pc_v(src, v);
    pc_val ins[64], *in = ins;
    if (s->nin > 64 && !(in = malloc((size_t)s->nin * sizeof *in))) return pc_fail(dst, s->loc, "out of memory");
    for (int i = 0; i < s->nin; i++) {
        in[i] = map[s->in[i]];
        if (in[i] == PC_NONE) {
            if (in != ins) free(in);
            return pc_fail(dst, s->loc, "copying %%%s: operand %d was not copied", s->name, i + 1);
        }
    }
    /* keep the source name when it is free in dst, so dumps stay readable across passes */
    const char *name = pc_lookup(dst, s->name) == PC_NONE ? s->name : NULL;
    pc_val id = pc_node_raw(dst, s->loc, name, s->op, s->nin, in, s->attr, s->dtype, s->shape);
    if (in != ins) free(in);
    if (id == PC_NONE) return PC_NONE;
    pc_value *d = pc_v(dst, id);
    d->flags = s->flags & ~(unsigned)(PC_OUTPUT | PC_LOSS);
    d->init = s->init;
    if (s->key && !(d->key = strdup(s->key))) return pc_fail(dst, s->loc, "out of memory");
    if (s->data) {
        size_t n = (size_t)pc_shape_numel(s->shape) * pc_dtype_size(s->dtype);
        if (!(d->data = malloc(n ? n : 1))) return pc_fail(dst, s->loc, "out of memory");
        memcpy(d->data, s->data, n);
    }
    return id;
}

int pc_rebuild_commit(pc_graph **gp, pc_graph **ng, const pc_val *map, const char *pass, char *err, size_t errlen) {
    if (!(*ng)->error) pc_copy_outputs(*ng, *gp, map);
    if ((*ng)->error) {
        snprintf(err, errlen, "%s: %s", pass, (*ng)->error);
        return -1;
    }
    pc_graph_free(*gp);
    *gp = *ng;
    *ng = NULL;
    return 0;
}

int pc_copy_outputs(pc_graph *dst, const pc_graph *src, const pc_val *map) {
    for (int i = 0; i < src->noutputs; i++) {
        pc_val o = map[src->outputs[i]];
        if (o == PC_NONE) { pc_fail(dst, pc_v(src, src->outputs[i])->loc, "output was removed"); return -1; }
        if ((pc_v(src, src->outputs[i])->flags & PC_LOSS) ? pc_mark_loss(dst, o) : pc_mark_output(dst, o)) return -1;
    }
    for (int i = 0; i < src->nupdates; i++) {
        pc_val t = map[src->updates[i].target], n = map[src->updates[i].next];
        if (t == PC_NONE || n == PC_NONE) { pc_fail(dst, pc_v(src, src->updates[i].next)->loc, "update was removed"); return -1; }
        if (pc_add_update(dst, t, n)) return -1;
    }
    return 0;
}
