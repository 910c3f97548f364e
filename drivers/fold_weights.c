/* Folding the weights-only parts of an inference graph (see fold_weights.h). */
#include "drivers/fold_weights.h"
#include "ir/ir.h"
#include "passes/pipeline.h"
#include "runtime/fileio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* what each value is: computed from frozen params and constants alone (wonly), and whether that
 * took real work (not just views of a param) */
typedef struct {
    bool *wonly, *work, *frontier;
    int nfront;
} analysis;

static void analysis_free(analysis *a) {
    free(a->wonly);
    free(a->work);
    free(a->frontier);
}

static int analyse(const pc_graph *g, analysis *a) {
    int n = g->nvals;
    *a = (analysis){calloc((size_t)n + 1, 1), calloc((size_t)n + 1, 1), calloc((size_t)n + 1, 1), 0};
    if (!a->wonly || !a->work || !a->frontier) return -1;
    for (pc_val v = 0; v < n; v++) {
        const pc_value *x = pc_v(g, v);
        const pc_op_info *op = pc_op_get(x->op);
        if (op->fusion == PC_FUSE_SOURCE) {
            a->wonly[v] = x->op == PC_OP_const || (x->op == PC_OP_param && (x->flags & PC_FROZEN));
            continue;
        }
        /* views cost nothing; a concat is a copy (prompt tuning's extended token table) */
        bool all = x->nin > 0, work = op->fusion != PC_FUSE_SHAPE || x->op == PC_OP_concat;
        for (int k = 0; k < x->nin && all; k++) all = a->wonly[x->in[k]], work = work || a->work[x->in[k]];
        a->wonly[v] = all && x->dtype == PC_F32;
        a->work[v] = a->wonly[v] && work;
    }
    /* the folded values: weights-only work read by the rest of the graph (or an output) */
    for (pc_val v = 0; v < n; v++) {
        const pc_value *x = pc_v(g, v);
        for (int k = 0; k < x->nin; k++)
            if (!a->wonly[v] && a->work[x->in[k]]) a->frontier[x->in[k]] = true;
    }
    for (int i = 0; i < g->noutputs; i++)
        if (a->work[g->outputs[i]]) a->frontier[g->outputs[i]] = true;
    for (pc_val v = 0; v < n; v++) a->nfront += a->frontier[v];
    return 0;
}

/* the weights-only values, with the folded ones as outputs */
static pc_graph *fold_graph(const pc_graph *g, const analysis *a, char *err, size_t errlen) {
    pc_graph *fg = pc_graph_new("fold_weights");
    pc_val *map = malloc(((size_t)g->nvals + 1) * sizeof *map);
    if (!fg || !map) {
        pc_graph_free(fg);
        free(map);
        pc_errf(err, errlen, "out of memory");
        return NULL;
    }
    for (pc_val v = 0; v < g->nvals; v++) {
        map[v] = a->wonly[v] ? pc_copy_value(fg, g, v, map) : PC_NONE;
        if (a->frontier[v]) pc_mark_output(fg, map[v]);
    }
    free(map);
    if (fg->error) {
        pc_errf(err, errlen, "folding weights: %s", fg->error);
        pc_graph_free(fg);
        return NULL;
    }
    return fg;
}

/* the graph with each folded value read from a frozen param "folded.<i>" */
static pc_graph *rebuilt(const pc_graph *g, const analysis *a, pc_folded *f, char *err, size_t errlen) {
    pc_graph *ng = pc_graph_new(g->name);
    pc_val *map = malloc(((size_t)g->nvals + 1) * sizeof *map);
    int i = 0;
    for (pc_val v = 0; ng && map && v < g->nvals && !ng->error; v++) {
        const pc_value *x = pc_v(g, v);
        if (!a->frontier[v]) {
            map[v] = pc_copy_value(ng, g, v, map);
            continue;
        }
        const char *name = x->name && pc_lookup(ng, x->name) == PC_NONE ? x->name : NULL;
        map[v] = pc_param_at(ng, x->loc, name, f->keys[i++], x->dtype, x->shape, PC_FROZEN, (pc_init){0});
    }
    if (ng && map && !ng->error) pc_copy_outputs(ng, g, map);
    free(map);
    if (!ng || ng->error) {
        pc_errf(err, errlen, "folding weights: %s", ng ? ng->error : "out of memory");
        pc_graph_free(ng);
        return NULL;
    }
    return ng;
}

int pc_fold_weights(pc_graph **gp, const pc_session *s, const pc_store *st, pc_folded *out, char *err,
                    size_t errlen) {
    *out = (pc_folded){0};
    analysis a;
    if (analyse(*gp, &a)) {
        analysis_free(&a);
        return pc_errf(err, errlen, "out of memory");
    }
    int rc = -1;
    pc_graph *fg = NULL, *ng = NULL;
    pc_exec *r = NULL;
    if (a.nfront == 0) { rc = 0; goto done; }
    if (!(fg = fold_graph(*gp, &a, err, errlen))) goto done;
    /* evaluated once: on the reference interpreter, the oracle */
    pc_exec_opts ref = {.kind = PC_BACKEND_REF, .threads = 1};
    if (!(r = pc_exec_new(fg, &ref, err, errlen)) || pc_session_bind_base(s, r, fg, false, err, errlen)) goto done;
    if (pc_store_bind_shared(st, fg, r)) { pc_errf(err, errlen, "folding weights: binding the adapter failed"); goto done; }
    if (pc_exec_run(r, err, errlen)) goto done;
    out->keys = calloc((size_t)a.nfront, sizeof *out->keys);
    out->data = calloc((size_t)a.nfront, sizeof *out->data);
    if (!out->keys || !out->data) { pc_errf(err, errlen, "out of memory"); goto done; }
    for (int i = 0; i < fg->noutputs; i++) {
        pc_val o = fg->outputs[i];
        size_t n = (size_t)pc_shape_numel(pc_v(fg, o)->shape);
        char key[32];
        snprintf(key, sizeof key, "folded.%d", i);
        if (!(out->keys[i] = strdup(key)) || !(out->data[i] = malloc((n ? n : 1) * sizeof(float)))) {
            out->n = i + 1;
            pc_errf(err, errlen, "folding weights: out of memory allocating %s (%zu bytes)", key, (n ? n : 1) * sizeof(float));
            goto done;
        }
        out->n = i + 1;
        memcpy(out->data[i], pc_exec_data(r, o), n * sizeof(float));
    }
    if (!(ng = rebuilt(*gp, &a, out, err, errlen))) goto done;
    if (pc_pass_dce(&ng, err, errlen)) goto done; /* what only fed the folded values */
    pc_graph_free(*gp);
    *gp = ng;
    ng = NULL;
    rc = 0;
done:
    if (rc) pc_folded_free(out);
    pc_graph_free(ng);
    pc_exec_free(r);
    pc_graph_free(fg);
    analysis_free(&a);
    return rc;
}

int pc_folded_bind(const pc_folded *f, const pc_graph *g, pc_exec *r) {
    for (int i = 0; i < f->n; i++) {
        pc_val v = pc_lookup_key(g, f->keys[i]);
        if (v == PC_NONE) continue; /* folded, then not needed */
        if (pc_exec_bind(r, v, f->data[i])) return -1;
    }
    return 0;
}

void pc_folded_free(pc_folded *f) {
    for (int i = 0; i < f->n; i++) {
        free(f->keys[i]);
        free(f->data[i]);
    }
    free(f->keys);
    free(f->data);
    *f = (pc_folded){0};
}

pc_graph *pc_session_inference_graph(const pc_session *s, const pc_build_req *req, pc_store *st, pc_folded *f,
                                     char *err, size_t errlen) {
    *f = (pc_folded){0};
    pc_graph *g = pc_session_build(s, req, false, err, errlen);
    if (!g) return NULL;
    if (pc_session_store(s, g, st, NULL, 0, err, errlen) || pc_fold_weights(&g, s, st, f, err, errlen)) {
        pc_graph_free(g);
        pc_store_free(st);
        return NULL;
    }
    return g;
}

int pc_session_bind_inference(const pc_session *s, const pc_graph *g, const pc_store *st, const pc_folded *f,
                              pc_exec *r, char *err, size_t errlen) {
    if (pc_session_bind_base(s, r, g, false, err, errlen)) return -1;
    if (pc_store_bind_shared(st, g, r) || pc_folded_bind(f, g, r))
        return pc_errf(err, errlen, "binding the adapter failed");
    return 0;
}
