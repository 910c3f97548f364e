/* The T-Few objective (frontend/lm_objective.h) and rank classification against
 * tests/golden/gen_tfew.py: stories260K + the committed IA3 adapter (non-zero ia3_l), the
 * multiple-choice file tests/data/tfew/mc.jsonl (3, 2, 4 and 3 choices: padding choice rows and
 * right padding both occur). Checks: the loader's ids equal the reference tokenizer's; the
 * training graph's loss_lm, loss_ul, loss_ln, loss (rel 1e-5), choice scores (1e-5) and every
 * ia3_l gradient (1e-4 x max(1, max|g|)) on the reference interpreter and the compiled backend;
 * pc_eval_tasks' per-example means and accuracy (rel 1e-5); and that the LM objective on the same
 * rows is loss_lm alone. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cu_main.h"
#include "drivers/evaluate_tasks.h"
#include "drivers/session.h"
#include "drivers/store.h"
#include "drivers/task_batch.h"
#include "ir/ir.h"
#include "passes/pipeline.h"
#include "runtime/safetensors.h"
#include "runtime/task_data.h"

#define MODEL PEFTC_SOURCE_DIR "/data/stories260K/stories260K.bin"
#define ADAPTER PEFTC_SOURCE_DIR "/tests/data/peft_ia3_stories260k"
#define MC PEFTC_SOURCE_DIR "/tests/data/tfew/mc.jsonl"
#define EXPECTED PEFTC_SOURCE_DIR "/tests/data/tfew/expected.safetensors"

static const float *want(const pc_st_file *f, const char *key, int64_t n) {
    const pc_st_tensor *t = pc_st_find(f, key);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_FATAL(pc_shape_numel(t->shape) == n);
    return t->data;
}

static double rel(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-30); }

typedef struct {
    pc_session s;
    pc_st_file *ex;
    pc_task_data d;
    pc_td_item *items;
    size_t nitems;
    pc_task_batch b;
    size_t E, C, S;
} env;

static void env_open(env *x) {
    char err[2048] = "";
    memset(x, 0, sizeof *x);
    int rc = pc_session_open(&x->s, NULL, MODEL, NULL, ADAPTER, err, sizeof err);
    if (rc) printf("\n    %s\n", err);
    CU_ASSERT_FATAL(rc == 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x->ex = pc_st_open(EXPECTED, err, sizeof err));
    rc = pc_task_data_load(&x->d, MC, x->s.tok, err, sizeof err) ||
         pc_td_items(&x->d, NULL, x->d.n, 64, &x->items, &x->nitems, err, sizeof err);
    if (rc) printf("\n    %s\n", err);
    CU_ASSERT_FATAL(rc == 0);
    x->E = x->nitems, x->C = (size_t)x->d.max_choices, x->S = 0;
    for (size_t i = 0; i < x->nitems; i++)
        if ((size_t)x->items[i].len - 1 > x->S) x->S = (size_t)x->items[i].len - 1;
    x->S += 3; /* right padding on every row */
    CU_ASSERT_FATAL(pc_task_batch_init(&x->b, x->E, x->C, x->S, x->d.max_row, 0, err, sizeof err) == 0);
    pc_task_batch_fill(&x->b, &x->d, x->items, x->nitems);
}

static void env_close(env *x) {
    pc_task_batch_free(&x->b);
    free(x->items);
    pc_task_data_free(&x->d);
    pc_st_close(x->ex);
    pc_session_close(&x->s);
}

static void test_loader_ids(void) {
    env x;
    env_open(&x);
    CU_ASSERT_EQUAL(x.d.shape, PC_TD_CHOICE);
    CU_ASSERT_EQUAL(x.d.n, 4);
    CU_ASSERT_EQUAL(x.d.max_choices, 4);
    for (size_t e = 0; e < x.d.n; e++) {
        char key[32];
        snprintf(key, sizeof key, "ids.%zu", e);
        const pc_st_tensor *ids = pc_st_find(x.ex, key);
        snprintf(key, sizeof key, "off.%zu", e);
        const pc_st_tensor *off = pc_st_find(x.ex, key);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ids);
        CU_ASSERT_PTR_NOT_NULL_FATAL(off);
        const pc_td_example *ex = &x.d.ex[e];
        CU_ASSERT_EQUAL(pc_shape_numel(ids->shape), ex->n);
        CU_ASSERT_EQUAL(pc_shape_numel(off->shape), ex->nchoices + 1);
        if (pc_shape_numel(ids->shape) == ex->n)
            CU_ASSERT(memcmp(ids->data, ex->ids, (size_t)ex->n * sizeof(int32_t)) == 0);
        if (pc_shape_numel(off->shape) == ex->nchoices + 1)
            CU_ASSERT(memcmp(off->data, ex->choice_off, (size_t)(ex->nchoices + 1) * sizeof(int32_t)) == 0);
        CU_ASSERT_EQUAL(ex->label, ((const int32_t *)pc_st_find(x.ex, "label")->data)[e]);
    }
    CU_ASSERT_EQUAL(x.d.ex[3].task, -1); /* no "task" field */
    CU_ASSERT_EQUAL(x.d.ex[1].task, 2);
    env_close(&x);
}

/* the training graph of the objective on the batch; outputs loss (first), the three terms and
 * the scores; gradients when `grads` */
static pc_graph *objective_graph(env *x, pc_objective obj, bool grads, pc_store *st) {
    char err[2048] = "";
    pc_build_req req = {.task = PC_TASK_LM, .batch = (int64_t)(x->E * x->C), .seq = (int64_t)x->S,
                        .mode = PC_ADAPT_TRAIN, .choices = (int64_t)x->C, .objective = obj};
    pc_graph *g = pc_session_build(&x->s, &req, true, err, sizeof err);
    if (!g) printf("\n    %s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    static const char *const names[] = {"loss_lm", "loss_ul", "loss_ln", "choice_scores"};
    for (int i = 0; obj == PC_OBJECTIVE_TFEW && i < 4; i++) CU_ASSERT(pc_mark_output(g, pc_lookup(g, names[i])) == 0);
    int rc = grads ? pc_run_pipeline(&g, "autograd", NULL, err, sizeof err) : 0;
    if (!rc) rc = pc_session_store(&x->s, g, st, NULL, 0, err, sizeof err);
    if (rc) printf("\n    %s\n", err);
    CU_ASSERT_FATAL(rc == 0);
    return g;
}

static pc_exec *run(env *x, pc_graph *g, pc_store *st, pc_backend_kind kind) {
    char err[2048] = "";
    pc_exec *r = pc_exec_new(g, &(pc_exec_opts){.kind = kind, .threads = 1}, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    const char *names[4];
    void *ptrs[4];
    int n = pc_task_batch_inputs(&x->b, &x->d, names, ptrs), rc = 0;
    rc = pc_session_bind_base(&x->s, r, g, false, err, sizeof err) || pc_store_bind(st, r);
    for (int i = 0; !rc && i < n; i++)
        if (pc_lookup(g, names[i]) != PC_NONE) rc = pc_exec_bind(r, pc_lookup(g, names[i]), ptrs[i]);
    if (!rc) rc = pc_exec_run(r, err, sizeof err);
    if (rc) printf("\n    bind/run: %s\n", err);
    CU_ASSERT_FATAL(rc == 0);
    return r;
}

static void check_graph(pc_backend_kind kind, const char *what) {
    env x;
    env_open(&x);
    pc_store st = {0};
    pc_graph *g = objective_graph(&x, PC_OBJECTIVE_TFEW, true, &st);
    pc_exec *r = run(&x, g, &st, kind);
    static const char *const terms[] = {"loss_lm", "loss_ul", "loss_ln", "loss"};
    printf("\n    %s:", what);
    for (int i = 0; i < 4; i++) {
        double got = *(const float *)pc_exec_data(r, pc_lookup(g, terms[i])), w = want(x.ex, terms[i], 1)[0];
        printf(" %s %.7f (ref %.7f, rel %.1e)", terms[i], got, w, rel(got, w));
        CU_ASSERT(rel(got, w) <= 1e-5);
    }
    /* the scores of the real choices */
    const float *sc = pc_exec_data(r, pc_lookup(g, "choice_scores")), *ws = want(x.ex, "scores", (int64_t)(x.E * x.C));
    double worst = 0;
    for (size_t e = 0; e < x.E; e++)
        for (int c = 0; c < x.d.ex[e].nchoices; c++) worst = fmax(worst, rel(sc[e * x.C + c], ws[e * x.C + c]));
    printf("\n      scores worst rel %.1e;", worst);
    CU_ASSERT(worst <= 1e-5);
    int ngrad = 0;
    double gworst = 0;
    for (int i = 0; i < st.n; i++) {
        const pc_store_entry *e = &st.e[i];
        if (!(e->flags & PC_TRAINABLE)) continue;
        char name[600], key[600];
        snprintf(name, sizeof name, "grad.%s", pc_val_name(g, e->v));
        snprintf(key, sizeof key, "grad.%s", e->key);
        pc_val gv = pc_lookup(g, name);
        CU_ASSERT_FATAL(gv != PC_NONE);
        const float *gg = pc_exec_data(r, gv), *wg = want(x.ex, key, e->n);
        double mx = 1;
        for (int64_t j = 0; j < e->n; j++) mx = fmax(mx, fabs(wg[j]));
        for (int64_t j = 0; j < e->n; j++) gworst = fmax(gworst, fabs(gg[j] - wg[j]) / mx);
        ngrad++;
    }
    printf(" %d ia3_l gradients, worst %.1e", ngrad, gworst);
    CU_ASSERT_EQUAL(ngrad, 15);
    CU_ASSERT(gworst <= 1e-4);
    pc_exec_free(r);
    pc_store_free(&st);
    pc_graph_free(g);
    env_close(&x);
}

static void test_graph_ref(void) { check_graph(PC_BACKEND_REF, "ref"); }
static void test_graph_jit(void) { check_graph(PC_BACKEND_JIT, "jit"); }

/* --objective lm on multiple-choice rows: the correct choices' cross-entropy only */
static void test_lm_objective(void) {
    env x;
    env_open(&x);
    pc_store st = {0};
    pc_graph *g = objective_graph(&x, PC_OBJECTIVE_LM, false, &st);
    pc_exec *r = run(&x, g, &st, PC_BACKEND_REF);
    double got = *(const float *)pc_exec_data(r, g->outputs[0]), w = want(x.ex, "loss_lm", 1)[0];
    printf("\n    lm objective %.7f (ref loss_lm %.7f)", got, w);
    CU_ASSERT(rel(got, w) <= 1e-5);
    pc_exec_free(r);
    pc_store_free(&st);
    pc_graph_free(g);
    env_close(&x);
}

static void test_eval(void) {
    env x;
    env_open(&x);
    char err[2048] = "";
    pc_task_eval_result res;
    /* batch 3 over 4 examples: a second batch with padding examples */
    pc_eval_opts o = {.seq = 0, .batch = 3, .exec = {.kind = PC_BACKEND_JIT, .threads = 1}};
    int rc = pc_eval_tasks(&x.s, MC, &o, &res, err, sizeof err);
    if (rc) printf("\n    %s\n", err);
    CU_ASSERT_FATAL(rc == 0);
    const float *lm = want(x.ex, "ex_lm", 4), *ul = want(x.ex, "ex_ul", 4), *ln = want(x.ex, "ex_ln", 4);
    const int32_t *pred = (const int32_t *)pc_st_find(x.ex, "pred")->data, *lab = (const int32_t *)pc_st_find(x.ex, "label")->data;
    double m[3] = {0}, acc = 0;
    for (int e = 0; e < 4; e++) m[0] += lm[e] / 4, m[1] += ul[e] / 4, m[2] += ln[e] / 4, acc += (pred[e] == lab[e]) / 4.0;
    printf("\n    eval: accuracy %.4f (ref %.4f) loss_lm %.7f (%.7f) loss_ul %.7f (%.7f) loss_ln %.7f (%.7f)", res.accuracy,
           acc, res.loss_lm, m[0], res.loss_ul, m[1], res.loss_ln, m[2]);
    CU_ASSERT(res.choice);
    CU_ASSERT_EQUAL(res.n_examples, 4);
    CU_ASSERT_DOUBLE_EQUAL(res.accuracy, acc, 1e-12);
    CU_ASSERT(rel(res.loss_lm, m[0]) <= 1e-5);
    CU_ASSERT(rel(res.loss_ul, m[1]) <= 1e-5);
    CU_ASSERT(rel(res.loss_ln, m[2]) <= 1e-5);
    env_close(&x);
}

static CU_TestInfo tests[] = {
    {"loader ids = the reference tokenizer's", test_loader_ids},
    {"T-Few losses, scores, gradients (ref)", test_graph_ref},
    {"T-Few losses, scores, gradients (jit)", test_graph_jit},
    {"lm objective on choices = loss_lm", test_lm_objective},
    {"eval: per-example means, rank classification", test_eval},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("tfew", tests)
