/* MPT's prompt distillation (frontend/distill_objective.h, drivers/train_distill.h) on
 * stories260K:
 *  - the training graph's %loss_kl, %loss_hidden, %loss_distill and %loss equal a direct double
 *    computation of the formulas from the graph's student %logits / %final_hidden and random
 *    teacher inputs (rel 1e-5), with ignored targets and two tasks in the batch;
 *  - the gradients of the whole loss (task + distillation) w.r.t. the MPT tensors match
 *    finite differences on the reference interpreter;
 *  - the trainer's teacher path: a student whose per-task prompts ARE the teachers' (shared 1,
 *    cols I, rows = teacher t) has zero distillation loss, so its first step's loss equals the
 *    run without teachers; with the teachers swapped between tasks it is larger (the per-row
 *    gather by %task_ids picks each row's own teacher);
 *  - bad --distill-teachers: a task of the data without a teacher, a teacher of another
 *    length or width, a teacher that is not prompt tuning: errors naming them, nothing written. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cu_main.h"
#include "drivers/session.h"
#include "drivers/store.h"
#include "drivers/train.h"
#include "ir/ir.h"
#include "passes/pipeline.h"
#include "runtime/adapter_io.h"
#include "runtime/rng.h"
#include "temp_dir.h"

#define MODEL PEFTC_SOURCE_DIR "/data/stories260K/stories260K.bin"
#define TOK PEFTC_SOURCE_DIR "/data/stories260K/tok512.bin"

enum { B = 3, S = 6, P = 4, NT = 2 };
static const double LAMBDA = 0.7, TEMP = 2.0;

static double urand(uint64_t *s) {
    double u = (double)(pc_mix64(*s) >> 11) * 0x1.0p-53;
    *s += 0x9e3779b97f4a7c15ull;
    return u;
}

static pc_adapter_config *mpt_config(int ranks) {
    char json[512], err[1024] = "";
    snprintf(json, sizeof json,
             "{\"peft_type\": \"MULTITASK_PROMPT_TUNING\", \"task_type\": \"CAUSAL_LM\", \"num_virtual_tokens\": %d, "
             "\"num_tasks\": %d, \"num_ranks\": %d, \"prompt_tuning_init\": \"RANDOM\"}", P, NT, ranks);
    pc_adapter_config *c = pc_adapter_config_parse(json, strlen(json), "test", err, sizeof err);
    if (!c) printf("\n    %s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    return c;
}

typedef struct {
    pc_session s;
    pc_graph *g;
    pc_store st;
    pc_exec *r;
    int32_t tokens[B * S], targets[B * S], task_ids[B];
    float *tl, *th; /* teacher logits [B,S,V], hidden [B,P+S,D] */
    int64_t V, D;
} env;

static void env_open(env *x, bool grads) {
    char err[2048] = "";
    memset(x, 0, sizeof *x);
    int rc = pc_session_open(&x->s, NULL, MODEL, NULL, NULL, err, sizeof err);
    if (!rc) rc = pc_session_set_adapter(&x->s, mpt_config(2), "test", err, sizeof err);
    if (rc) printf("\n    %s\n", err);
    CU_ASSERT_FATAL(rc == 0);
    x->V = x->s.model.info.vocab, x->D = x->s.model.info.dim;
    pc_build_req req = {.task = PC_TASK_LM, .batch = B, .seq = S, .mode = PC_ADAPT_TRAIN, .output_logits = true,
                        .output_hidden = true, .distill_weight = LAMBDA, .distill_temperature = TEMP};
    x->g = pc_session_build(&x->s, &req, true, err, sizeof err);
    if (!x->g) printf("\n    %s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x->g);
    static const char *const outs[] = {"loss_task", "loss_kl", "loss_hidden", "loss_distill"};
    for (int i = 0; i < 4; i++) CU_ASSERT_FATAL(pc_mark_output(x->g, pc_lookup(x->g, outs[i])) == 0);
    rc = grads ? pc_run_pipeline(&x->g, "autograd", NULL, err, sizeof err) : 0;
    if (!rc) rc = pc_session_store(&x->s, x->g, &x->st, NULL, 7, err, sizeof err);
    if (rc) printf("\n    %s\n", err);
    CU_ASSERT_FATAL(rc == 0);
    /* the factors away from their tiny init, so the tasks' prompts differ visibly */
    uint64_t seed = 11;
    for (int i = 0; i < x->st.n; i++)
        for (int64_t j = 0; j < x->st.e[i].n; j++) x->st.e[i].data[j] = (float)(urand(&seed) * 2 - 1);
    for (int i = 0; i < B * S; i++) x->tokens[i] = (int32_t)(urand(&seed) * 500) + 5, x->targets[i] = (int32_t)(urand(&seed) * 500) + 5;
    x->targets[2] = x->targets[S + 4] = x->targets[2 * S] = -100; /* ignored positions */
    x->task_ids[0] = 1, x->task_ids[1] = 0, x->task_ids[2] = 1;
    size_t nl = (size_t)(B * S * x->V), nh = (size_t)(B * (P + S) * x->D);
    CU_ASSERT_FATAL((x->tl = malloc(nl * sizeof *x->tl)) && (x->th = malloc(nh * sizeof *x->th)));
    for (size_t i = 0; i < nl; i++) x->tl[i] = (float)(urand(&seed) * 6 - 3);
    for (size_t i = 0; i < nh; i++) x->th[i] = (float)(urand(&seed) * 2 - 1);
    x->r = pc_exec_new(x->g, &(pc_exec_opts){.kind = PC_BACKEND_REF, .threads = 1}, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x->r);
    rc = pc_session_bind_base(&x->s, x->r, x->g, false, err, sizeof err) || pc_store_bind(&x->st, x->r);
    const char *names[] = {"tokens", "targets", "task_ids", "teacher_logits", "teacher_hidden"};
    void *ptrs[] = {x->tokens, x->targets, x->task_ids, x->tl, x->th};
    for (int i = 0; !rc && i < 5; i++) {
        pc_val v = pc_lookup(x->g, names[i]);
        CU_ASSERT_FATAL(v != PC_NONE);
        rc = pc_exec_bind(x->r, v, ptrs[i]);
    }
    if (!rc) rc = pc_exec_run(x->r, err, sizeof err);
    if (rc) printf("\n    %s\n", err);
    CU_ASSERT_FATAL(rc == 0);
}

static void env_close(env *x) {
    pc_exec_free(x->r);
    pc_store_free(&x->st);
    pc_graph_free(x->g);
    pc_session_close(&x->s);
    free(x->tl);
    free(x->th);
}

static double out(env *x, const char *name) { return *(const float *)pc_exec_data(x->r, pc_lookup(x->g, name)); }
static double rel(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-30); }

/* log softmax of z/T over n entries into out (double) */
static void log_softmax_t(const float *z, int64_t n, double T, double *o) {
    double m = -INFINITY, s = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, z[i] / T);
    for (int64_t i = 0; i < n; i++) s += exp(z[i] / T - m);
    for (int64_t i = 0; i < n; i++) o[i] = z[i] / T - m - log(s);
}

static void test_loss_direct(void) {
    env x;
    env_open(&x, false);
    const float *sl = pc_exec_data(x.r, pc_lookup(x.g, "logits")), *sh = pc_exec_data(x.r, pc_lookup(x.g, "final_hidden"));
    CU_ASSERT_EQUAL_FATAL(pc_shape_numel(pc_val_shape(x.g, pc_lookup(x.g, "final_hidden"))), B * (P + S) * x.D);
    double *lt = malloc((size_t)x.V * sizeof *lt), *ls = malloc((size_t)x.V * sizeof *ls);
    CU_ASSERT_FATAL(lt && ls);
    double kl = 0, mse = 0;
    int n = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < S; t++) {
            if (x.targets[b * S + t] == -100) continue;
            n++;
            log_softmax_t(x.tl + (b * S + t) * x.V, x.V, TEMP, lt);
            log_softmax_t(sl + (b * S + t) * x.V, x.V, TEMP, ls);
            for (int64_t v = 0; v < x.V; v++) kl += exp(lt[v]) * (lt[v] - ls[v]);
            for (int64_t d = 0; d < x.D; d++) {
                int64_t i = ((int64_t)b * (P + S) + P + t) * x.D + d;
                mse += (sh[i] - x.th[i]) * (sh[i] - x.th[i]);
            }
        }
    kl /= n, mse /= (double)n * (double)x.D;
    double want_term = LAMBDA * (kl + mse);
    printf("\n    kl %.7f (direct %.7f) hidden %.7f (direct %.7f) term %.7f (direct %.7f) over %d positions", out(&x, "loss_kl"),
           kl, out(&x, "loss_hidden"), mse, out(&x, "loss_distill"), want_term, n);
    CU_ASSERT_EQUAL(n, B * S - 3);
    CU_ASSERT(kl > 0.1 && mse > 0.1); /* not a vacuous comparison */
    CU_ASSERT(rel(out(&x, "loss_kl"), kl) <= 1e-5);
    CU_ASSERT(rel(out(&x, "loss_hidden"), mse) <= 1e-5);
    CU_ASSERT(rel(out(&x, "loss_distill"), want_term) <= 1e-5);
    CU_ASSERT(rel(out(&x, "loss"), out(&x, "loss_task") + want_term) <= 1e-6);
    free(lt);
    free(ls);
    env_close(&x);
}

static void test_grad_fd(void) {
    env x;
    env_open(&x, true);
    char err[1024];
    int checked = 0;
    double worst = 0;
    for (int i = 0; i < x.st.n; i++) {
        pc_store_entry *e = &x.st.e[i];
        if (!(e->flags & PC_TRAINABLE)) continue;
        char name[600];
        snprintf(name, sizeof name, "grad.%s", pc_val_name(x.g, e->v));
        pc_val gv = pc_lookup(x.g, name);
        CU_ASSERT_FATAL(gv != PC_NONE);
        CU_ASSERT_FATAL(pc_exec_run(x.r, err, sizeof err) == 0);
        float *gcopy = malloc((size_t)e->n * sizeof *gcopy);
        CU_ASSERT_FATAL(gcopy != NULL);
        memcpy(gcopy, pc_exec_data(x.r, gv), (size_t)e->n * sizeof *gcopy);
        for (int k = 0; k < 6; k++) {
            int64_t j = (int64_t)((k * 2654435761u) % (uint64_t)e->n);
            float x0 = e->data[j];
            const double h = 1e-2, steps[4] = {h, -h, h / 2, -h / 2};
            double f[4];
            for (int q = 0; q < 4; q++) {
                e->data[j] = (float)(x0 + steps[q]);
                CU_ASSERT_FATAL(pc_exec_run(x.r, err, sizeof err) == 0);
                f[q] = out(&x, "loss");
            }
            e->data[j] = x0;
            double fd = (4 * (f[2] - f[3]) / h - (f[0] - f[1]) / (2 * h)) / 3;
            double d = fabs(fd - gcopy[j]) / fmax(1.0, fabs(fd));
            worst = fmax(worst, d);
            checked++;
        }
        free(gcopy);
    }
    printf("\n    %d gradient entries vs finite differences, worst %.1e", checked, worst);
    CU_ASSERT_EQUAL(checked, 18);
    CU_ASSERT(worst <= 2e-3);
    env_close(&x);
}

/* ---- the trainer ---- */

static void save_dir(const char *dir, pc_adapter_config *cfg, int n, const char *const *keys, const pc_shape *shapes,
                     float *const *data) {
    char err[1024] = "";
    pc_st_writer *w = pc_st_writer_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    for (int i = 0; i < n; i++) CU_ASSERT_FATAL(pc_st_writer_add(w, keys[i], PC_F32, shapes[i], data[i], err, sizeof err) == 0);
    int rc = pc_adapter_save(dir, cfg, w, err, sizeof err);
    if (rc) printf("\n    %s\n", err);
    CU_ASSERT_FATAL(rc == 0);
    pc_st_writer_free(w);
    pc_adapter_config_free(cfg);
}

static void teacher_dir(const char *dir, int p, int width, const float *prompt) {
    char err[1024] = "", json[256];
    snprintf(json, sizeof json, "{\"peft_type\": \"PROMPT_TUNING\", \"task_type\": \"CAUSAL_LM\", \"num_virtual_tokens\": %d}", p);
    pc_adapter_config *c = pc_adapter_config_parse(json, strlen(json), "test", err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    const char *key = "prompt_embeddings";
    pc_shape sh = PC_SHAPE(p, width);
    float *d = (float *)prompt;
    save_dir(dir, c, 1, &key, &sh, &d);
}

typedef struct {
    char *dir, path[8][1024];
    float teach[NT][P * 64];
} tenv;

static void tenv_open(tenv *t) {
    t->dir = pc_test_temp_dir("distill");
    static const char *const names[] = {"t0", "t1", "student", "data.jsonl", "out", "t_short", "t_narrow", "bad.jsonl"};
    for (int i = 0; i < 8; i++) snprintf(t->path[i], sizeof t->path[i], "%s/%s", t->dir, names[i]);
    uint64_t seed = 5;
    for (int k = 0; k < NT; k++)
        for (int i = 0; i < P * 64; i++) t->teach[k][i] = (float)(urand(&seed) * 2 - 1);
    teacher_dir(t->path[0], P, 64, t->teach[0]);
    teacher_dir(t->path[1], P, 64, t->teach[1]);
    float short_p[(P - 1) * 64] = {0};
    teacher_dir(t->path[5], P - 1, 64, short_p);
    teacher_dir(t->path[6], P, 48, short_p); /* another model's width */
    /* the student: prompt 1, cols[t] = I, rows[t] = teacher t (rank P) */
    static float ones[P * 64], cols[NT * P * P], rows[NT * P * 64];
    for (int i = 0; i < P * 64; i++) ones[i] = 1;
    memset(cols, 0, sizeof cols);
    for (int k = 0; k < NT; k++) {
        for (int i = 0; i < P; i++) cols[(k * P + i) * P + i] = 1;
        memcpy(rows + k * P * 64, t->teach[k], sizeof t->teach[k]);
    }
    const char *keys[] = {"prompt_embeddings", "prefix_task_cols", "prefix_task_rows"};
    pc_shape shapes[] = {PC_SHAPE(P, 64), PC_SHAPE(NT, P, P), PC_SHAPE(NT, P, 64)};
    float *data[] = {ones, cols, rows};
    save_dir(t->path[2], mpt_config(P), 3, keys, shapes, data);
    FILE *f = fopen(t->path[3], "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    for (int i = 0; i < 24; i++)
        fprintf(f, "{\"input\": \"Once upon a time %d\", \"target\": \" there was a cat number %d.\", \"task\": %d}\n", i, i, i % 2);
    fclose(f);
    CU_ASSERT_FATAL((f = fopen(t->path[7], "w")) != NULL);
    for (int i = 0; i < 8; i++) fprintf(f, "{\"text\": \"One day Lily ran %d times.\", \"task\": %d}\n", i, i == 5 ? 3 : i % 2);
    fclose(f);
}

static void tenv_close(tenv *t) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->dir);
    CU_ASSERT(system(cmd) == 0);
    free(t->dir);
}

static int train(tenv *t, const char *teachers, const char *data, double *loss, char *err, size_t errlen) {
    pc_train_opts o = pc_train_defaults();
    o.model = MODEL, o.tokenizer = TOK, o.adapter = t->path[2], o.data = data ? data : t->path[3], o.out = t->path[4];
    o.steps = 1, o.batch = 4, o.warmup = 0, o.eval_batches = 1, o.quiet = true, o.val_fraction = 0.25;
    o.distill_teachers = teachers, o.distill_weight = 0.5, o.distill_temperature = 2;
    pc_train_result res;
    if (pc_train(&o, &res, err, errlen)) return -1;
    *loss = res.ncurve ? res.curve[0].train_loss : NAN;
    pc_train_result_free(&res);
    return 0;
}

static void test_trainer_teachers(void) {
    tenv t;
    tenv_open(&t);
    char err[2048] = "", spec[2200];
    double plain = NAN, same = NAN, swapped = NAN;
    CU_ASSERT_FATAL(train(&t, NULL, NULL, &plain, err, sizeof err) == 0);
    snprintf(spec, sizeof spec, "0=%s,1=%s", t.path[0], t.path[1]);
    int rc = train(&t, spec, NULL, &same, err, sizeof err);
    if (rc) printf("\n    %s\n", err);
    CU_ASSERT_FATAL(rc == 0);
    snprintf(spec, sizeof spec, "0=%s,1=%s", t.path[1], t.path[0]);
    CU_ASSERT_FATAL(train(&t, spec, NULL, &swapped, err, sizeof err) == 0);
    printf("\n    step-1 loss: no teachers %.7f, own teachers %.7f, swapped teachers %.7f", plain, same, swapped);
    CU_ASSERT(fabs(same - plain) <= 1e-5 * fabs(plain));
    CU_ASSERT(swapped > plain + 0.01);
    tenv_close(&t);
}

static void bad(tenv *t, const char *spec, const char *data, const char *want) {
    char err[2048] = "";
    double loss;
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->path[4]);
    CU_ASSERT(system(cmd) == 0);
    CU_ASSERT(train(t, spec, data, &loss, err, sizeof err) != 0);
    printf("\n    %s", err);
    CU_ASSERT(strstr(err, want) != NULL);
    FILE *f = fopen(t->path[4], "r");
    CU_ASSERT(f == NULL); /* nothing written */
    if (f) fclose(f);
}

static void test_bad_teachers(void) {
    tenv t;
    tenv_open(&t);
    char spec[2200];
    snprintf(spec, sizeof spec, "0=%s", t.path[0]);
    bad(&t, spec, NULL, "task 1 has no teacher in --distill-teachers");
    snprintf(spec, sizeof spec, "0=%s,1=%s", t.path[0], t.path[1]);
    bad(&t, spec, t.path[7], "bad.jsonl:6: field \"task\": task 3 has no teacher");
    snprintf(spec, sizeof spec, "0=%s,1=%s", t.path[0], t.path[5]);
    bad(&t, spec, NULL, "the teacher has 3 virtual tokens, the student 4");
    snprintf(spec, sizeof spec, "1=%s,0=%s", t.path[1], t.path[6]);
    bad(&t, spec, NULL, "t_narrow: prompt_embeddings is 48 wide, but the model's hidden size is 64");
    snprintf(spec, sizeof spec, "0=%s,1=%s", t.path[0], t.path[2]);
    bad(&t, spec, NULL, "peft_type is MULTITASK_PROMPT_TUNING; a teacher is a prompt-tuning adapter");
    snprintf(spec, sizeof spec, "0=%s,0=%s", t.path[0], t.path[1]);
    bad(&t, spec, NULL, "task 0 is given two teachers");
    bad(&t, "zero=x", NULL, "'zero' is not a task id");
    snprintf(spec, sizeof spec, "0=%s/nowhere,1=%s", t.dir, t.path[1]);
    bad(&t, spec, NULL, "--distill-teachers 0=");
    tenv_close(&t);
}

static CU_TestInfo tests[] = {
    {"distillation loss = direct KL + MSE", test_loss_direct},
    {"gradients = finite differences", test_grad_fd},
    {"trainer: own teachers add nothing, swapped ones do", test_trainer_teachers},
    {"bad --distill-teachers", test_bad_teachers},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("mpt_distill", tests)
