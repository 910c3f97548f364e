/* Folding an adapter into the base weights. */
#include "drivers/merge.h"
#include "drivers/store.h"
#include "ir/ir.h"
#include "passes/fold_adapters.h"
#include "runtime/fileio.h"

#include <stdlib.h>
#include <string.h>

/* the model's own spelling of a key (it outlives the fold graph) */
static const char *model_key(const pc_model *m, const char *key) {
    for (int i = 0; i < m->family->nweights(m); i++)
        if (strcmp(m->family->weight_key(m, i), key) == 0) return m->family->weight_key(m, i);
    return NULL;
}

/* evaluates the method's (un)merge rule for every module and replaces the model's tensors */
static int fold_model(pc_session *s, bool unmerge, int *nmodules, char *err, size_t errlen) {
    if (!s->adapter.cfg || !s->method) return pc_errf(err, errlen, "no adapter to merge");
    if (!s->method->merge_linear || (unmerge && !s->method->unmerge_linear))
        return pc_errf(err, errlen, "%s: %s adapters cannot be %smerged: %s", s->adapter_source, s->method->name, unmerge ? "un" : "",
                       s->method->merge_linear ? "the method has no unmerge rule"
                       : s->method->not_mergeable ? s->method->not_mergeable : "the method has no merge rule");
    if (!s->adapter.weights) return pc_session_missing_weights(s, NULL, err, errlen);
    pc_build_req req = {.task = PC_TASK_LM, .batch = 1, .seq = 1, .mode = PC_ADAPT_EVAL};
    pc_graph *model = pc_model_build(&s->model, &req, NULL, err, errlen), *fg = NULL;
    pc_adapt_ctx *cx = model ? pc_session_adapter(s, PC_ADAPT_EVAL, false, 0, err, errlen) : NULL;
    pc_exec *r = NULL;
    pc_store store = {0};
    pc_weight *rep = NULL;
    float *buf = NULL;
    int rc = -1, n = 0;
    if (!cx || pc_fold_adapters(model, cx, unmerge, &fg, &n, err, errlen)) goto done;
    if (n == 0) { pc_errf(err, errlen, "%s: target_modules matched no weight of the model", s->adapter_source); goto done; }
    /* weights-only: evaluated once, on the reference interpreter */
    pc_exec_opts ref = {.kind = PC_BACKEND_REF, .threads = 1};
    if (!(r = pc_exec_new(fg, &ref, err, errlen)) || pc_session_bind_base(s, r, fg, false, err, errlen) ||
        pc_session_store(s, fg, &store, NULL, 0, err, errlen))
        goto done;
    if (pc_store_bind(&store, r)) { pc_errf(err, errlen, "merge: binding the adapter failed"); goto done; }
    if (pc_exec_run(r, err, errlen)) goto done;
    size_t total = 0;
    for (int i = 0; i < fg->noutputs; i++) total += (size_t)pc_shape_numel(pc_v(fg, fg->outputs[i])->shape);
    rep = calloc(fg->noutputs > 0 ? (size_t)fg->noutputs : 1, sizeof *rep);
    buf = malloc((total ? total : 1) * sizeof *buf);
    if (!rep || !buf) {
        pc_errf(err, errlen, "merge: out of memory allocating the %d merged weights (%zu bytes)", fg->noutputs,
                (total ? total : 1) * sizeof *buf);
        goto done;
    }
    size_t off = 0;
    for (int i = 0; i < fg->noutputs; i++) {
        const pc_value *v = pc_v(fg, fg->outputs[i]);
        const char *key = model_key(&s->model, v->name + strlen("merged."));
        if (!key) { pc_errf(err, errlen, "merge: the model has no tensor '%s'", v->name + strlen("merged.")); goto done; }
        size_t k = (size_t)pc_shape_numel(v->shape);
        memcpy(buf + off, pc_exec_data(r, fg->outputs[i]), k * sizeof *buf);
        rep[i] = (pc_weight){.key = key, .shape = v->shape, .data = buf + off};
        off += k;
    }
    pc_model_set_replaced(&s->model, rep, fg->noutputs, buf);
    rep = NULL, buf = NULL;
    if (nmodules) *nmodules = n;
    rc = 0;
done:
    free(rep);
    free(buf);
    pc_store_free(&store);
    pc_exec_free(r);
    pc_adapt_free(cx);
    pc_graph_free(fg);
    pc_graph_free(model);
    return rc;
}

int pc_session_merge(pc_session *s, int *nmodules, char *err, size_t errlen) {
    if (s->merged) return 0;
    if (fold_model(s, false, nmodules, err, errlen)) return -1;
    s->merged = true;
    return 0;
}

int pc_session_unmerge(pc_session *s, int *nmodules, char *err, size_t errlen) {
    if (s->merged) return pc_errf(err, errlen, "unmerge: the adapter was merged in this session already");
    return fold_model(s, true, nmodules, err, errlen);
}

int pc_session_write_model(const pc_session *s, const char *path, char *err, size_t errlen) {
    const pc_model *m = &s->model;
    return m->family->write(m, path, m->over, m->nover, err, errlen);
}
