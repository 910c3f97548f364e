/* Folding an adapter into the base weights. */
#include "drivers/merge.h"
#include "drivers/store.h"
#include "ir/ir.h"
#include "passes/fold_adapters.h"
#include "passes/modules_to_save.h"
#include "runtime/fileio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the model's own spelling of a key (it outlives the fold graph) */
static const char *model_key(const pc_model *m, const char *key) {
    for (int i = 0; i < m->family->nweights(m); i++)
        if (strcmp(m->family->weight_key(m, i), key) == 0) return m->family->weight_key(m, i);
    return NULL;
}

/* the adapter's modules_to_save copies ("base_model.model.<key>" for a model tensor <key> its
 * list selects), by model key: how many (found in the file), their shapes and sizes into
 * keys/shapes (room for cap), total floats into *total; -1 with a message when one is not f32-convertible
 * or has another shape */
static int saved_modules(const pc_session *s, const char **keys, const pc_st_tensor **ts, int cap, size_t *total,
                         char *err, size_t errlen) {
    const pc_model *m = &s->model;
    int n = 0;
    *total = 0;
    for (int i = 0; i < m->family->nweights(m); i++) {
        const char *key = m->family->weight_key(m, i);
        if (!pc_modules_to_save_match(&s->adapter.cfg->modules_to_save, key)) continue;
        char pk[1024];
        snprintf(pk, sizeof pk, "%s%s", PC_PEFT_KEY_PREFIX, key);
        const pc_st_tensor *t = pc_st_find(s->adapter.weights, pk);
        if (!t) continue; /* a module the list names that this adapter did not train */
        pc_shape sh;
        if (!pc_model_weight(m, key, &sh) || !pc_shape_eq(sh, t->shape)) {
            char a[96], b[96];
            pc_shape_str(t->shape, a, sizeof a);
            pc_shape_str(sh, b, sizeof b);
            return pc_errf(err, errlen, "%s: %s is %s, but the model's %s is %s", pc_st_path(s->adapter.weights), pk, a,
                           key, b);
        }
        if (n >= cap) return pc_errf(err, errlen, "merge: more than %d modules_to_save tensors", cap);
        keys[n] = key, ts[n++] = t;
        *total += (size_t)pc_shape_numel(t->shape);
    }
    return n;
}

/* evaluates the method's (un)merge rule for every module and replaces the model's tensors (and
 * those of the adapter's modules_to_save copies when merging) */
static int fold_model(pc_session *s, bool unmerge, int *nmodules, char *err, size_t errlen) {
    if (!s->adapter.cfg || !s->method) return pc_errf(err, errlen, "no adapter to merge");
    if (!s->method->merge_linear || (unmerge && !s->method->unmerge_linear))
        return pc_errf(err, errlen, "%s: %s adapters cannot be %smerged: %s", s->adapter_source, s->method->name, unmerge ? "un" : "",
                       s->method->merge_linear ? "the method has no unmerge rule"
                       : s->method->not_mergeable ? s->method->not_mergeable : "the method has no merge rule");
    if (!s->adapter.weights) return pc_session_missing_weights(s, NULL, err, errlen);
    pc_build_req req = {.task = s->model.info.encoder ? PC_TASK_SEQ_CLASSIFY : PC_TASK_LM, .batch = 1, .seq = 1,
                        .mode = PC_ADAPT_EVAL};
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
    size_t total = 0, mts_total = 0;
    enum { MAX_SAVED = 256 };
    const char *mkeys[MAX_SAVED];
    const pc_st_tensor *mts[MAX_SAVED];
    int nm = unmerge ? 0 : saved_modules(s, mkeys, mts, MAX_SAVED, &mts_total, err, errlen);
    if (nm < 0) goto done;
    for (int i = 0; i < fg->noutputs; i++) total += (size_t)pc_shape_numel(pc_v(fg, fg->outputs[i])->shape);
    total += mts_total;
    rep = calloc((size_t)(fg->noutputs + nm) + 1, sizeof *rep);
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
    /* the trained copies of whole modules replace theirs */
    for (int i = 0; i < nm; i++) {
        if (pc_st_to_f32(s->adapter.weights, mts[i], buf + off, err, errlen)) goto done;
        rep[fg->noutputs + i] = (pc_weight){.key = mkeys[i], .shape = mts[i]->shape, .data = buf + off};
        off += (size_t)pc_shape_numel(mts[i]->shape);
    }
    pc_model_set_replaced(&s->model, rep, fg->noutputs + nm, buf);
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
