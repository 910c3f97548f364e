/* DoRA (LoRA with use_dora) against an adapter directory written by Hugging Face PEFT
 * (tests/golden/gen_peft_dora.py): tests/data/peft_dora_stories260k/ has r=4, alpha=8 on the
 * seven projections with non-zero A, B and magnitudes that differ from the row norms.
 * Forward (logits, loss) and the gradients of all 105 adapter tensors on the reference
 * interpreter and the JIT (the gradients match PEFT's only with the weight norm detached),
 * merge vs PEFT's merge_and_unload, the refused unmerge, the magnitude init from the base
 * (m = the row norms of W, or of W + s·B A when B starts non-zero) and a fresh DoRA being the
 * base model. */
#include "cu_main.h"
#include "compare.h"
#include "backend/exec.h"
#include "drivers/merge.h"
#include "drivers/session.h"
#include "drivers/store.h"
#include "ir/ir.h"
#include "passes/pipeline.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MODEL PEFTC_SOURCE_DIR "/data/stories260K/stories260K.bin"
#define DORA_DIR PEFTC_SOURCE_DIR "/tests/data/peft_dora_stories260k"
#define DORA_CONFIG PEFTC_SOURCE_DIR "/examples/configs/dora.json"

enum { B = 2, S = 16, V = 512, N = B * S, NMOD = 35 };

typedef struct {
    pc_session s;
    pc_st_file *ex;
    pc_graph *g;
    pc_store store;
    int32_t tokens[N], targets[N];
} fixture;

static int fx_graph(fixture *x, pc_adapt_mode mode, bool trainable) {
    char err[2048];
    pc_build_req req = {.task = PC_TASK_LM, .batch = B, .seq = S, .output_logits = true, .mode = mode};
    if (!(x->g = pc_session_build(&x->s, &req, trainable, err, sizeof err))) { fprintf(stderr, "build: %s\n", err); return -1; }
    if (trainable && pc_run_pipeline(&x->g, "autograd", NULL, err, sizeof err)) { fprintf(stderr, "autograd: %s\n", err); return -1; }
    if (pc_session_store(&x->s, x->g, &x->store, NULL, 0, err, sizeof err)) { fprintf(stderr, "store: %s\n", err); return -1; }
    return 0;
}

/* a session on `adapter` (a directory or a config), the fixture's batch, optionally the graph */
static int fx_open(fixture *x, const char *adapter, pc_adapt_mode mode, bool trainable, bool build) {
    char err[2048];
    memset(x, 0, sizeof *x);
    if (pc_session_open(&x->s, NULL, MODEL, NULL, adapter, err, sizeof err)) { fprintf(stderr, "%s\n", err); return -1; }
    if (!(x->ex = pc_st_open(DORA_DIR "/expected.safetensors", err, sizeof err))) { fprintf(stderr, "%s\n", err); return -1; }
    const pc_st_tensor *tk = pc_st_find(x->ex, "tokens"), *tg = pc_st_find(x->ex, "targets");
    if (!tk || !tg || tk->dtype != PC_I32 || tg->dtype != PC_I32 || pc_shape_numel(tk->shape) != N ||
        pc_shape_numel(tg->shape) != N) {
        fprintf(stderr, "expected.safetensors: bad tokens/targets\n");
        return -1;
    }
    memcpy(x->tokens, tk->data, sizeof x->tokens);
    memcpy(x->targets, tg->data, sizeof x->targets);
    return build ? fx_graph(x, mode, trainable) : 0;
}

static void fx_close(fixture *x) {
    pc_store_free(&x->store);
    pc_graph_free(x->g);
    pc_st_close(x->ex);
    pc_session_close(&x->s);
}

static pc_exec *fx_run(fixture *x, pc_backend_kind kind) {
    char err[2048] = "";
    pc_exec *r = pc_exec_new(x->g, &(pc_exec_opts){.kind = kind}, err, sizeof err);
    if (!r) { fprintf(stderr, "exec_new: %s\n", err); return NULL; }
    if (pc_session_bind_base(&x->s, r, x->g, false, err, sizeof err) || pc_store_bind(&x->store, r) ||
        pc_exec_bind(r, pc_lookup(x->g, "tokens"), x->tokens) || pc_exec_bind(r, pc_lookup(x->g, "targets"), x->targets) ||
        pc_exec_run(r, err, sizeof err)) {
        fprintf(stderr, "bind/run: %s\n", err);
        pc_exec_free(r);
        return NULL;
    }
    return r;
}

static pc_val output_where(const pc_graph *g, bool loss) {
    for (int i = 0; i < g->noutputs; i++) {
        const pc_value *o = pc_v(g, g->outputs[i]);
        if (loss ? (o->flags & PC_LOSS) != 0 : (!(o->flags & PC_LOSS) && o->shape.rank == 3)) return g->outputs[i];
    }
    return PC_NONE;
}

static const float *logits_of(const fixture *x, const pc_exec *r) {
    pc_val lv = output_where(x->g, false);
    if (lv == PC_NONE || !pc_shape_eq(pc_val_shape(x->g, lv), PC_SHAPE(B, S, V))) return NULL;
    return pc_exec_data(r, lv);
}

static double logits_vs(const fixture *x, const pc_exec *r, const char *key) {
    const float *l = logits_of(x, r);
    const pc_st_tensor *w = pc_st_find(x->ex, key);
    if (!l || !w || pc_shape_numel(w->shape) != (int64_t)N * V) return INFINITY;
    return max_abs_diff(l, w->data, (int64_t)N * V);
}

/* 1. loss, logits and the 105 gradients (A, B, magnitude of 35 modules) vs PEFT */
static void check_forward_backward(fixture *x, pc_backend_kind kind) {
    pc_exec *r = fx_run(x, kind);
    CU_ASSERT_FATAL(r != NULL);
    const char *bk = pc_backend_name(kind);
    pc_val lv = output_where(x->g, true);
    const pc_st_tensor *wl = pc_st_find(x->ex, "loss");
    CU_ASSERT_FATAL(lv != PC_NONE && wl != NULL);
    float loss = *(const float *)pc_exec_data(r, lv), want = *(const float *)wl->data;
    double le = logits_vs(x, r, "logits");
    printf("\n    [%s] loss %.7f (PEFT %.7f, rel %.2e), logits max |diff| %.2e\n", bk, loss, want,
           fabs(loss - want) / fabs(want), le);
    CU_ASSERT(fabs(loss - want) <= 1e-5 * fabs(want));
    CU_ASSERT(le <= 1e-4);
    double worst[3] = {0}, worst_abs = 0;
    int checked = 0;
    for (int i = 0; i < x->store.n; i++) {
        const pc_store_entry *e = &x->store.e[i];
        if (!(e->flags & PC_TRAINABLE)) continue;
        char gname[700], gkey[700];
        snprintf(gname, sizeof gname, "grad.%s", pc_val_name(x->g, e->v));
        snprintf(gkey, sizeof gkey, "grad.%s", e->key);
        pc_val gv = pc_lookup(x->g, gname);
        const pc_st_tensor *wg = pc_st_find(x->ex, gkey);
        CU_ASSERT_FATAL(gv != PC_NONE && wg != NULL);
        CU_ASSERT_FATAL(pc_shape_numel(wg->shape) == e->n && pc_shape_eq(pc_val_shape(x->g, gv), e->shape));
        double d = max_abs_diff(pc_exec_data(r, gv), wg->data, e->n), scale = max_abs(wg->data, e->n);
        double rel = d / (scale > 1 ? scale : 1);
        int kind3 = strstr(e->key, "lora_A") ? 0 : strstr(e->key, "lora_B") ? 1 : 2;
        if (rel > worst[kind3]) worst[kind3] = rel;
        if (d > worst_abs) worst_abs = d;
        checked++;
    }
    printf("    [%s] %d gradients: max |diff| %.2e; worst rel: lora_A %.2e, lora_B %.2e, magnitude %.2e\n", bk,
           checked, worst_abs, worst[0], worst[1], worst[2]);
    CU_ASSERT_EQUAL(checked, 3 * NMOD);
    CU_ASSERT(worst[0] <= 1e-4 && worst[1] <= 1e-4 && worst[2] <= 1e-4);
    pc_exec_free(r);
}

static void test_loss_and_grads(void) {
    fixture x;
    if (fx_open(&x, DORA_DIR, PC_ADAPT_TRAIN, true, true)) { CU_FAIL("setup"); fx_close(&x); return; }
    CU_ASSERT_EQUAL(x.s.adapter.cfg->peft_type, PC_PEFT_LORA);
    CU_ASSERT(x.s.adapter.cfg->lora.use_dora);
    int mags = 0, loaded = 0;
    for (int i = 0; i < x.store.n; i++) {
        const pc_store_entry *e = &x.store.e[i];
        if (!(e->flags & PC_TRAINABLE)) continue;
        const pc_st_tensor *f = pc_st_find(x.s.adapter.weights, e->key);
        if (strstr(e->key, ".lora_magnitude_vector")) mags += e->shape.rank == 1;
        if (e->loaded && f && f->nbytes == (size_t)e->n * sizeof(float) && !memcmp(f->data, e->data, f->nbytes)) loaded++;
    }
    CU_ASSERT_EQUAL(mags, NMOD);
    CU_ASSERT_EQUAL(loaded, 3 * NMOD); /* every tensor from the file, none from an init */
    /* the weight norm is detached: a stop_gradient per module in the step */
    int sg = 0;
    for (int v = 0; v < x.g->nvals; v++) sg += x.g->vals[v].op == PC_OP_stop_gradient;
    CU_ASSERT_EQUAL(sg, NMOD);
    check_forward_backward(&x, PC_BACKEND_REF);
    check_forward_backward(&x, PC_BACKEND_JIT);
    fx_close(&x);
}

/* 2. merge vs merge_and_unload (layers 0 and 4), merged logits = PEFT's = unmerged */
static void test_merge(void) {
    char err[2048];
    fixture m, u;
    if (fx_open(&m, DORA_DIR, PC_ADAPT_EVAL, false, false)) { CU_FAIL("setup"); fx_close(&m); return; }
    int nmod = 0;
    int rc = pc_session_merge(&m.s, &nmod, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(nmod, NMOD);
    int checked = 0;
    double worst = 0;
    for (int i = 0; i < pc_st_count(m.ex); i++) {
        const pc_st_tensor *t = pc_st_get(m.ex, i);
        if (strncmp(t->name, "merged.", 7) || !strcmp(t->name, "merged_logits")) continue;
        pc_shape ms;
        const float *w = pc_model_weight(&m.s.model, t->name + 7, &ms);
        CU_ASSERT_FATAL(w != NULL && pc_shape_eq(ms, t->shape));
        int64_t k = pc_shape_numel(t->shape);
        double e = max_abs_diff(w, t->data, k) / fmax(1.0, max_abs(t->data, k));
        if (e > worst) worst = e;
        const float *base = m.s.model.family->weight(&m.s.model, t->name + 7, NULL);
        CU_ASSERT(base && max_abs_diff(base, t->data, k) > 1e-3);
        checked++;
    }
    printf("\n    %d merged modules; %d merged weights (layers 0, 4) vs PEFT: max rel |diff| %.2e\n", nmod, checked, worst);
    CU_ASSERT_EQUAL(checked, 14);
    CU_ASSERT(worst <= 1e-6);
    CU_ASSERT_EQUAL_FATAL(fx_graph(&m, PC_ADAPT_EVAL, false), 0);
    CU_ASSERT_EQUAL(m.store.n, 0);
    pc_exec *rm = fx_run(&m, PC_BACKEND_REF), *ru = NULL;
    CU_ASSERT_FATAL(rm != NULL);
    double em = logits_vs(&m, rm, "merged_logits");
    if (fx_open(&u, DORA_DIR, PC_ADAPT_EVAL, false, true) == 0) ru = fx_run(&u, PC_BACKEND_JIT);
    CU_ASSERT(ru != NULL);
    if (ru) {
        double eu = logits_vs(&u, ru, "logits");
        const float *lm = logits_of(&m, rm), *lu = logits_of(&u, ru);
        double mu = lm && lu ? max_abs_diff(lm, lu, (int64_t)N * V) : INFINITY;
        printf("    logits max |diff|: merged vs PEFT merged %.2e, unmerged (eval, jit) vs PEFT %.2e, merged vs unmerged %.2e\n",
               em, eu, mu);
        CU_ASSERT(eu <= 1e-4);
        CU_ASSERT(mu <= 1e-4);
    }
    CU_ASSERT(em <= 1e-4);
    pc_exec_free(ru);
    pc_exec_free(rm);
    fx_close(&u);
    fx_close(&m);
}

/* 3. unmerge is refused with the reason (the merged weights keep only each row's direction) */
static void test_unmerge_refused(void) {
    char err[2048] = "";
    pc_session s;
    CU_ASSERT_EQUAL_FATAL(pc_session_open(&s, NULL, MODEL, NULL, DORA_DIR, err, sizeof err), 0);
    int n = -7;
    int rc = pc_session_unmerge(&s, &n, err, sizeof err);
    printf("\n    unmerge: rc %d, \"%.160s...\"\n", rc, err);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT(strstr(err, "cannot be unmerged") != NULL && strstr(err, "direction") != NULL);
    CU_ASSERT_EQUAL(s.model.nover, 0); /* nothing replaced */
    pc_session_close(&s);
}

/* m of a fresh config: ‖W + s·B A‖ per row from the model's W and the store's A, B */
static void check_magnitudes(fixture *x, double scale, double *worst, double *moved) {
    int n = 0;
    for (int i = 0; i < x->store.n; i++) {
        const pc_store_entry *e = &x->store.e[i];
        const char *tail = strstr(e->key, ".lora_magnitude_vector");
        if (!tail || tail[strlen(".lora_magnitude_vector")]) continue;
        char module[512], key[600];
        snprintf(module, sizeof module, "%.*s", (int)(tail - e->key - strlen("base_model.model.")),
                 e->key + strlen("base_model.model."));
        snprintf(key, sizeof key, "%s.weight", module);
        pc_shape ws;
        const float *w = pc_model_weight(&x->s.model, key, &ws);
        snprintf(key, sizeof key, "base_model.model.%s.lora_A.weight", module);
        const pc_store_entry *a = pc_store_find(&x->store, key);
        snprintf(key, sizeof key, "base_model.model.%s.lora_B.weight", module);
        const pc_store_entry *b = pc_store_find(&x->store, key);
        CU_ASSERT_FATAL(w && a && b && !e->loaded && ws.dim[0] == e->shape.dim[0]);
        int64_t out = ws.dim[0], in = ws.dim[1], r = a->shape.dim[0];
        for (int64_t row = 0; row < out; row++) {
            double ss = 0, s0 = 0;
            for (int64_t j = 0; j < in; j++) {
                double d = 0;
                for (int64_t k = 0; k < r; k++) d += (double)b->data[row * r + k] * a->data[k * in + j];
                double v = w[row * in + j] + scale * d;
                ss += v * v;
                s0 += (double)w[row * in + j] * w[row * in + j];
            }
            double err = fabs(e->data[row] - sqrt(ss)) / sqrt(ss), mv = fabs(sqrt(ss) - sqrt(s0));
            if (err > *worst) *worst = err;
            if (mv > *moved) *moved = mv;
        }
        n++;
    }
    CU_ASSERT_EQUAL(n, NMOD);
}

/* 4. a fresh DoRA (examples/configs/dora.json, r=8 alpha=16): m = the row norms of W (B = 0),
 * and the model is the base model: its logits equal the base model's (to float rounding) */
static void test_magnitude_init(void) {
    fixture x, base;
    if (fx_open(&x, DORA_CONFIG, PC_ADAPT_EVAL, true, true)) { CU_FAIL("setup"); fx_close(&x); return; }
    CU_ASSERT(x.s.adapter.cfg->lora.use_dora);
    double worst = 0, moved = 0;
    check_magnitudes(&x, 2.0, &worst, &moved);
    printf("\n    fresh DoRA: 35 magnitudes vs the row norms of W: max rel |diff| %.2e (B = 0: moved %.1e)\n", worst, moved);
    CU_ASSERT(worst <= 1e-6);
    CU_ASSERT(moved == 0);
    pc_exec *r = fx_run(&x, PC_BACKEND_JIT), *rb = NULL;
    CU_ASSERT_FATAL(r != NULL);
    if (fx_open(&base, NULL, PC_ADAPT_EVAL, false, true) == 0) rb = fx_run(&base, PC_BACKEND_JIT);
    CU_ASSERT_FATAL(rb != NULL);
    const float *l = logits_of(&x, r), *lb = logits_of(&base, rb);
    double d = l && lb ? max_abs_diff(l, lb, (int64_t)N * V) : INFINITY;
    printf("    fresh DoRA vs the base model: logits max |diff| %.2e\n", d);
    CU_ASSERT(d <= 1e-4); /* f = m / ||W|| is 1 up to float rounding */
    pc_exec_free(rb);
    pc_exec_free(r);
    fx_close(&base);
    fx_close(&x);
}

/* 5. init_lora_weights=false starts B non-zero: m = ‖W + s·B A‖ with the run's A and B */
static void test_magnitude_init_nonzero_b(void) {
    char path[] = "/tmp/peftc_dora_XXXXXX.json";
    int fd = mkstemps(path, 5);
    CU_ASSERT_FATAL(fd >= 0);
    static const char cfg[] = "{\"peft_type\": \"LORA\", \"task_type\": \"CAUSAL_LM\", \"use_dora\": true, \"r\": 4, "
                              "\"lora_alpha\": 8, \"init_lora_weights\": false, \"target_modules\": [\"q_proj\", "
                              "\"k_proj\", \"v_proj\", \"o_proj\", \"gate_proj\", \"up_proj\", \"down_proj\"]}";
    CU_ASSERT_FATAL(write(fd, cfg, sizeof cfg - 1) == (ssize_t)(sizeof cfg - 1));
    close(fd);
    fixture x;
    if (fx_open(&x, path, PC_ADAPT_TRAIN, true, true)) { CU_FAIL("setup"); fx_close(&x); unlink(path); return; }
    double worst = 0, moved = 0;
    check_magnitudes(&x, 2.0, &worst, &moved);
    printf("\n    init_lora_weights=false: magnitudes vs ||W + s BA||: max rel |diff| %.2e (BA moves them by up to %.3g)\n",
           worst, moved);
    CU_ASSERT(worst <= 1e-6);
    CU_ASSERT(moved > 1e-3);
    fx_close(&x);
    unlink(path);
}

/* 6. the magnitude follows the module's output rows (--hf-qk-rows permutes it with lora_B) */
static void test_output_rows(void) {
    char err[2048];
    pc_session s;
    CU_ASSERT_EQUAL_FATAL(pc_session_open(&s, NULL, MODEL, NULL, DORA_DIR, err, sizeof err), 0);
    CU_ASSERT_FATAL(s.method && s.method->output_rows);
    CU_ASSERT(s.method->output_rows("lora_magnitude_vector"));
    CU_ASSERT(s.method->output_rows("lora_B.weight"));
    CU_ASSERT_FALSE(s.method->output_rows("lora_A.weight"));
    pc_session_close(&s);
}

static CU_TestInfo tests[] = {
    {"loss_and_grads", test_loss_and_grads},
    {"merge", test_merge},
    {"unmerge_refused", test_unmerge_refused},
    {"magnitude_init", test_magnitude_init},
    {"magnitude_init_nonzero_b", test_magnitude_init_nonzero_b},
    {"output_rows", test_output_rows},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("peft_dora", tests)
