/* The PEFT-fixture harness (peft_fixture.h). */
#include "peft_fixture.h"
#include "compare.h"
#include "drivers/merge.h"
#include "passes/pipeline.h"

#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* max(m, e), NaN winning (a NaN difference must fail the tolerance, not vanish) */
static double worse(double m, double e) { return e > m || e != e ? e : m; }

int pf_graph(pf_fixture *x, pc_adapt_mode mode, bool trainable) {
    char err[2048];
    pc_build_req req = {.task = PC_TASK_LM, .batch = PF_B, .seq = PF_S, .output_logits = true, .mode = mode};
    if (!(x->g = pc_session_build(&x->s, &req, trainable, err, sizeof err))) { fprintf(stderr, "build: %s\n", err); return -1; }
    if (trainable && pc_run_pipeline(&x->g, "autograd", NULL, err, sizeof err)) { fprintf(stderr, "autograd: %s\n", err); return -1; }
    if (pc_session_store(&x->s, x->g, &x->store, NULL, 0, err, sizeof err)) { fprintf(stderr, "store: %s\n", err); return -1; }
    return 0;
}

int pf_open_model(pf_fixture *x, const char *model, const char *adapter, const char *expected, pc_adapt_mode mode,
                  bool trainable, bool build) {
    char err[2048], path[1024];
    memset(x, 0, sizeof *x);
    if (pc_session_open(&x->s, NULL, model, NULL, adapter, err, sizeof err)) { fprintf(stderr, "%s\n", err); return -1; }
    if (!expected) snprintf(path, sizeof path, "%s/expected.safetensors", adapter), expected = path;
    if (!(x->ex = pc_st_open(expected, err, sizeof err))) { fprintf(stderr, "%s\n", err); return -1; }
    const pc_st_tensor *tk = pc_st_find(x->ex, "tokens"), *tg = pc_st_find(x->ex, "targets");
    if (!tk || !tg || tk->dtype != PC_I32 || tg->dtype != PC_I32 || pc_shape_numel(tk->shape) != PF_N ||
        pc_shape_numel(tg->shape) != PF_N) {
        fprintf(stderr, "%s: bad tokens/targets\n", expected);
        return -1;
    }
    memcpy(x->tokens, tk->data, sizeof x->tokens);
    memcpy(x->targets, tg->data, sizeof x->targets);
    const pc_st_tensor *ti = pc_st_find(x->ex, "task_ids");
    if (ti && (ti->dtype != PC_I32 || pc_shape_numel(ti->shape) != PF_B)) {
        fprintf(stderr, "%s: bad task_ids\n", expected);
        return -1;
    }
    if (ti) memcpy(x->task_ids, ti->data, sizeof x->task_ids);
    return build ? pf_graph(x, mode, trainable) : 0;
}

void pf_close(pf_fixture *x) {
    pc_store_free(&x->store);
    pc_graph_free(x->g);
    pc_st_close(x->ex);
    pc_session_close(&x->s);
}

pc_exec *pf_run(pf_fixture *x, pc_backend_kind kind) {
    char err[2048] = "";
    pc_exec *r = pc_exec_new(x->g, &(pc_exec_opts){.kind = kind}, err, sizeof err);
    if (!r) { fprintf(stderr, "exec_new: %s\n", err); return NULL; }
    if (pc_session_bind_base(&x->s, r, x->g, false, err, sizeof err) || pc_store_bind(&x->store, r) ||
        pc_exec_bind(r, pc_lookup(x->g, "tokens"), x->tokens) || pc_exec_bind(r, pc_lookup(x->g, "targets"), x->targets) ||
        (pc_lookup(x->g, "task_ids") != PC_NONE && pc_exec_bind(r, pc_lookup(x->g, "task_ids"), x->task_ids)) ||
        pc_exec_run(r, err, sizeof err)) {
        fprintf(stderr, "bind/run: %s\n", err);
        pc_exec_free(r);
        return NULL;
    }
    return r;
}

pc_val pf_output(const pc_graph *g, bool loss) {
    for (int i = 0; i < g->noutputs; i++) {
        const pc_value *o = pc_v(g, g->outputs[i]);
        if (loss ? (o->flags & PC_LOSS) != 0 : (!(o->flags & PC_LOSS) && o->shape.rank == 3)) return g->outputs[i];
    }
    return PC_NONE;
}

const float *pf_logits(const pf_fixture *x, const pc_exec *r) {
    pc_val lv = pf_output(x->g, false);
    if (lv == PC_NONE || !pc_shape_eq(pc_val_shape(x->g, lv), PC_SHAPE(PF_B, PF_S, PF_V))) return NULL;
    return pc_exec_data(r, lv);
}

double pf_logits_diff(const pf_fixture *x, const pc_exec *r, const pc_st_file *f, const char *key) {
    const float *l = pf_logits(x, r);
    const pc_st_tensor *w = pc_st_find(f ? f : x->ex, key);
    if (!l || !w || pc_shape_numel(w->shape) != (int64_t)PF_N * PF_V) return INFINITY;
    return max_abs_diff(l, w->data, (int64_t)PF_N * PF_V);
}

int pf_trainable_from_file(const pf_fixture *x, const char *key_part, int *loaded) {
    int n = 0;
    *loaded = 0;
    for (int i = 0; i < x->store.n; i++) {
        const pc_store_entry *e = &x->store.e[i];
        if (!(e->flags & PC_TRAINABLE)) continue;
        n++;
        const pc_st_tensor *f = pc_st_find(x->s.adapter.weights, e->key);
        if (key_part) CU_ASSERT(f != NULL && strstr(e->key, key_part) != NULL);
        if (e->loaded && f && f->nbytes == (size_t)e->n * sizeof(float) && !memcmp(f->data, e->data, f->nbytes)) (*loaded)++;
    }
    return n;
}

void pf_check_loss_logits_grads(pf_fixture *x, pc_backend_kind kind, int want_grads, const char *loss_note,
                                const pf_grad_group *groups, int ngroups) {
    pc_exec *r = pf_run(x, kind);
    CU_ASSERT_FATAL(r != NULL);
    const char *bk = pc_backend_name(kind);
    pc_val lv = pf_output(x->g, true);
    const pc_st_tensor *wl = pc_st_find(x->ex, "loss");
    CU_ASSERT_FATAL(lv != PC_NONE && wl != NULL);
    float loss = *(const float *)pc_exec_data(r, lv), want = *(const float *)wl->data;
    double le = pf_logits_diff(x, r, NULL, "logits");
    printf("\n    [%s] loss %.7f (PEFT %.7f%s%s, rel %.2e), logits max |diff| %.2e\n", bk, loss, want,
           loss_note ? " " : "", loss_note ? loss_note : "", fabs(loss - want) / fabs(want), le);
    CU_ASSERT(fabs(loss - want) <= 1e-5 * fabs(want));
    CU_ASSERT(le <= 1e-4);
    enum { MAXG = 8 };
    double worst[MAXG] = {0}, worst_abs = 0;
    int checked = 0, ng = ngroups > 0 ? ngroups : 1;
    CU_ASSERT_FATAL(ng <= MAXG);
    for (int i = 0; i < x->store.n; i++) {
        const pc_store_entry *e = &x->store.e[i];
        if (!(e->flags & PC_TRAINABLE)) continue;
        char gname[700], gkey[700];
        snprintf(gname, sizeof gname, "grad.%s", pc_val_name(x->g, e->v));
        snprintf(gkey, sizeof gkey, "grad.%s", e->key);
        pc_val gv = pc_lookup(x->g, gname);
        const pc_st_tensor *wg = pc_st_find(x->ex, gkey);
        CU_ASSERT_FATAL(gv != PC_NONE && (pc_v(x->g, gv)->flags & PC_OUTPUT) && wg != NULL);
        CU_ASSERT_FATAL(pc_shape_numel(wg->shape) == e->n && pc_shape_eq(pc_val_shape(x->g, gv), e->shape));
        double d = max_abs_diff(pc_exec_data(r, gv), wg->data, e->n), scale = max_abs(wg->data, e->n);
        double rel = d / (scale > 1 ? scale : 1); /* 1e-4 x max|g|, or 1e-4 abs */
        int k = 0;
        while (k < ng - 1 && !(groups[k].key_part && strstr(e->key, groups[k].key_part))) k++;
        worst[k] = worse(worst[k], rel);
        worst_abs = worse(worst_abs, d);
        checked++;
    }
    printf("    [%s] %d gradients: max |diff| %.2e", bk, checked, worst_abs);
    if (ngroups <= 0) printf(", worst rel (to max(1, max|g|)) %.2e", worst[0]);
    for (int k = 0; k < ngroups; k++) printf("%s%s %.2e", k ? ", " : "; worst rel: ", groups[k].label, worst[k]);
    printf("\n");
    CU_ASSERT_EQUAL(checked, want_grads);
    for (int k = 0; k < ng; k++) CU_ASSERT(worst[k] <= 1e-4);
    pc_exec_free(r);
}

int pf_merged_weights(const pc_session *s, const pc_st_file *f, bool relative, bool must_move, double *worst) {
    int checked = 0;
    *worst = 0;
    for (int i = 0; i < pc_st_count(f); i++) {
        const pc_st_tensor *t = pc_st_get(f, i);
        if (strncmp(t->name, "merged.", 7)) continue; /* not merged_logits */
        pc_shape ms;
        const float *w = pc_model_weight(&s->model, t->name + 7, &ms);
        CU_ASSERT_FATAL(w != NULL && pc_shape_eq(ms, t->shape));
        int64_t k = pc_shape_numel(t->shape);
        double e = max_abs_diff(w, t->data, k) / (relative ? fmax(1.0, max_abs(t->data, k)) : 1.0);
        *worst = worse(*worst, e);
        if (must_move) { /* the merged weight really differs from the checkpoint's */
            const float *base = s->model.family->weight(&s->model, t->name + 7, NULL);
            CU_ASSERT(base && max_abs_diff(base, t->data, k) > 1e-3);
        }
        checked++;
    }
    return checked;
}

int pf_check_merge(pf_fixture *m, const char *model, const pf_merge_spec *spec) {
    char err[2048];
    pf_fixture u;
    if (pf_open_model(m, model, spec->adapter, spec->expected, PC_ADAPT_EVAL, false, false)) { CU_FAIL("setup"); return -1; }
    int nmod = 0, rc = pc_session_merge(&m->s, &nmod, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT(m->s.merged);
    CU_ASSERT_EQUAL(nmod, spec->modules);
    double worst;
    int checked = pf_merged_weights(&m->s, m->ex, spec->relative, true, &worst);
    printf("\n    %d merged modules; %d merged weights (layers 0, 4) %s %.2e\n", nmod, checked, spec->weights_label, worst);
    CU_ASSERT_EQUAL(checked, spec->weights);
    CU_ASSERT(worst <= 1e-6);
    /* the merged model's graph: no adapter params */
    CU_ASSERT_EQUAL_FATAL(pf_graph(m, PC_ADAPT_EVAL, false), 0);
    CU_ASSERT_EQUAL(m->store.n, 0);
    pc_exec *rm = pf_run(m, PC_BACKEND_REF), *ru = NULL;
    CU_ASSERT_FATAL(rm != NULL);
    double em = pf_logits_diff(m, rm, NULL, "merged_logits");
    /* the unmerged EVAL graph */
    if (pf_open_model(&u, model, spec->adapter, spec->expected, PC_ADAPT_EVAL, false, true) == 0) ru = pf_run(&u, spec->unmerged_kind);
    CU_ASSERT(ru != NULL);
    if (ru) {
        const float *lm = pf_logits(m, rm), *lu = pf_logits(&u, ru);
        double eu = pf_logits_diff(&u, ru, NULL, "logits"), mu = lm && lu ? max_abs_diff(lm, lu, (int64_t)PF_N * PF_V) : INFINITY;
        printf("    logits max |diff|: merged vs PEFT merged %.2e, unmerged (eval%s) vs PEFT %.2e, merged vs unmerged %.2e\n",
               em, spec->unmerged_kind == PC_BACKEND_REF ? "" : ", jit", eu, mu);
        CU_ASSERT(eu <= 1e-4);
        CU_ASSERT(mu <= 1e-4);
    }
    CU_ASSERT(em <= 1e-4);
    pc_exec_free(ru);
    pc_exec_free(rm);
    pf_close(&u);
    return 0;
}

void pf_unmerge_roundtrip(pc_session *merged, const char *model, const char *adapter, pf_roundtrip *rt) {
    char err[2048], path[] = "/tmp/peftc_unmerge_XXXXXX";
    memset(rt, 0, sizeof *rt);
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    close(fd);
    pc_session fresh, b;
    pc_session *a = merged;
    if (!a) {
        a = &fresh;
        CU_ASSERT_EQUAL_FATAL(pc_session_open(a, NULL, model, NULL, adapter, err, sizeof err), 0);
        CU_ASSERT_EQUAL_FATAL(pc_session_merge(a, &rt->merged, err, sizeof err), 0);
    }
    CU_ASSERT_EQUAL_FATAL(pc_session_write_model(a, path, err, sizeof err), 0);
    int rc = pc_session_open(&b, NULL, path, NULL, adapter, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL_FATAL(pc_session_unmerge(&b, &rt->unmerged, err, sizeof err), 0);
    for (int i = 0; i < a->model.nover; i++) {
        const pc_weight *m = &a->model.over[i];
        pc_shape sh;
        const float *base = a->model.family->weight(&a->model, m->key, &sh);
        const float *back = pc_model_weight(&b.model, m->key, NULL);
        CU_ASSERT_FATAL(base && back);
        int64_t k = pc_shape_numel(sh);
        double e = max_abs_diff(back, base, k);
        rt->restored_abs = worse(rt->restored_abs, e);
        rt->restored = worse(rt->restored, e / fmax(1.0, max_abs(base, k)));
        rt->moved = worse(rt->moved, max_abs_diff(m->data, base, k));
        rt->weights++;
    }
    if (!merged) pc_session_close(a);
    pc_session_close(&b);
    unlink(path);
}

void pf_check_unmerge(const char *model, const char *adapter, const char *label, int modules, double tol) {
    pf_roundtrip rt;
    pf_unmerge_roundtrip(NULL, model, adapter, &rt);
    CU_ASSERT_EQUAL(rt.merged, modules);
    CU_ASSERT_EQUAL(rt.unmerged, modules);
    printf("\n    %s%s%d weights, merge moved them by up to %.3g, unmerge restores within %.3g\n", label ? label : "",
           label ? ": " : "", rt.weights, rt.moved, rt.restored);
    CU_ASSERT_EQUAL(rt.weights, modules);
    CU_ASSERT(rt.moved > 1e-3);
    CU_ASSERT(rt.restored <= tol);
}
