/* Golden test (llm.c style): stories260K + LoRA on all seven projection kinds against
 * PyTorch values written by tests/golden/gen_llama_lora.py: logits, loss, every LoRA gradient,
 * and the losses and final weights of 10 AdamW steps; and a bf16 base against the same values
 * within its error budget. */
#include "cu_main.h"
#include "backend/exec.h"
#include "backend/ref.h"
#include "drivers/session.h"
#include "drivers/store.h"
#include "ir/ir.h"
#include "passes/pipeline.h"
#include "passes/passes.h"
#include "runtime/bf16.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MODEL PEFTC_SOURCE_DIR "/data/stories260K/stories260K.bin"
#define FIXTURE PEFTC_SOURCE_DIR "/tests/data/golden_llama_lora.safetensors"

typedef struct {
    pc_session s;
    pc_st_file *fx;
    pc_graph *g;
    pc_exec *r;
    pc_store store;
    int32_t tokens[32], targets[32];
    float hp[8];
} golden;

static const char *meta_or(const pc_st_file *f, const char *k, const char *d) {
    const char *v = pc_st_meta(f, k);
    return v ? v : d;
}

/* builds the train graph (logits output, LoRA r=4 alpha=8), optionally with AdamW */
static int golden_open_dtype(golden *x, int with_adamw, pc_dtype base) {
    char err[2048];
    memset(x, 0, sizeof *x);
    if (pc_session_open(&x->s, NULL, MODEL, NULL, NULL, err, sizeof err) ||
        pc_session_set_base_dtype(&x->s, base, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    if (!(x->fx = pc_st_open(FIXTURE, err, sizeof err))) { fprintf(stderr, "%s\n", err); return -1; }
    pc_adapter_config *cfg = pc_adapter_config_new(PC_PEFT_LORA);
    static const char *const t[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
    cfg->r = atoi(meta_or(x->fx, "r", "4"));
    cfg->lora.lora_alpha = (pc_num){.v = atof(meta_or(x->fx, "lora_alpha", "8")), .is_int = true};
    pc_spec_set_list(&cfg->target_modules, t, 7);
    if (pc_session_set_adapter(&x->s, cfg, "golden", err, sizeof err)) { fprintf(stderr, "%s\n", err); return -1; }
    /* the graphs peftc train builds: the adapted forward, then the pipeline */
    pc_build_req req = {.task = PC_TASK_LM, .batch = 2, .seq = 16, .output_logits = true, .mode = PC_ADAPT_TRAIN};
    if (!(x->g = pc_session_build(&x->s, &req, true, err, sizeof err))) { fprintf(stderr, "%s\n", err); return -1; }
    int n = 0;
    for (pc_val v = 0; v < x->g->nvals; v++) n += x->g->vals[v].op == PC_OP_param && (x->g->vals[v].flags & PC_TRAINABLE);
    CU_ASSERT_EQUAL(n, 70); /* A and B of 35 modules */
    if (pc_run_pipeline(&x->g, with_adamw ? PC_TRAIN_PASSES : "autograd", NULL, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    if (pc_session_store(&x->s, x->g, &x->store, x->fx, 0, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    memcpy(x->tokens, pc_st_find(x->fx, "tokens")->data, sizeof x->tokens);
    memcpy(x->targets, pc_st_find(x->fx, "targets")->data, sizeof x->targets);
    x->hp[0] = (float)atof(meta_or(x->fx, "lr", "0.01"));
    x->hp[1] = (float)atof(meta_or(x->fx, "beta1", "0.9"));
    x->hp[2] = (float)atof(meta_or(x->fx, "beta2", "0.999"));
    x->hp[3] = (float)atof(meta_or(x->fx, "eps", "1e-8"));
    x->hp[4] = (float)atof(meta_or(x->fx, "weight_decay", "0.01"));
    if (!(x->r = pc_exec_new(x->g, &(pc_exec_opts){.kind = PC_BACKEND_REF}, err, sizeof err))) { fprintf(stderr, "%s\n", err); return -1; }
    if (pc_session_bind_base(&x->s, x->r, x->g, false, err, sizeof err) || pc_store_bind(&x->store, x->r) ||
        pc_exec_bind(x->r, pc_lookup(x->g, "tokens"), x->tokens) || pc_exec_bind(x->r, pc_lookup(x->g, "targets"), x->targets)) {
        fprintf(stderr, "bind: %s\n", err);
        return -1;
    }
    if (with_adamw && pc_exec_bind(x->r, pc_lookup(x->g, "hp"), x->hp)) return -1;
    return 0;
}

static int golden_open(golden *x, int with_adamw) { return golden_open_dtype(x, with_adamw, PC_F32); }

static void golden_close(golden *x) {
    pc_exec_free(x->r);
    pc_store_free(&x->store);
    pc_graph_free(x->g);
    pc_st_close(x->fx);
    pc_session_close(&x->s);
}

/* max |a-b| / max(1, max|b|) over n */
static double rel_err(const float *a, const float *b, int64_t n) {
    double m = 0, scale = 1;
    for (int64_t i = 0; i < n; i++) if (fabs(b[i]) > scale) scale = fabs(b[i]);
    for (int64_t i = 0; i < n; i++) if (fabs((double)a[i] - b[i]) > m) m = fabs((double)a[i] - b[i]);
    return m / scale;
}

static pc_val output_named(const pc_graph *g, const char *name) {
    pc_val v = pc_lookup(g, name);
    return v != PC_NONE && (pc_v(g, v)->flags & PC_OUTPUT) ? v : PC_NONE;
}

static void test_forward_and_gradients(void) {
    golden x;
    if (golden_open(&x, 0)) { CU_FAIL("setup"); golden_close(&x); return; }
    char err[2048];
    CU_ASSERT_EQUAL_FATAL(pc_exec_run(x.r, err, sizeof err), 0);
    pc_val lv = PC_NONE, logits = PC_NONE;
    for (int i = 0; i < x.g->noutputs; i++) {
        const pc_value *o = pc_v(x.g, x.g->outputs[i]);
        if (o->flags & PC_LOSS) lv = x.g->outputs[i];
        else if (o->shape.rank == 3) logits = x.g->outputs[i];
    }
    CU_ASSERT_FATAL(lv != PC_NONE && logits != PC_NONE);
    float loss = *(const float *)pc_exec_data(x.r, lv), want = *(const float *)pc_st_find(x.fx, "loss")->data;
    printf("\n    loss %.7f (PyTorch %.7f)\n", loss, want);
    CU_ASSERT(fabs(loss - want) <= 1e-5 * fabs(want));
    const pc_st_tensor *wl = pc_st_find(x.fx, "logits");
    double le = rel_err(pc_exec_data(x.r, logits), wl->data, pc_shape_numel(wl->shape));
    printf("    logits max rel err %.2e\n", le);
    CU_ASSERT(le <= 1e-5);
    /* every A and B gradient */
    double worst = 0;
    int checked = 0;
    for (int i = 0; i < x.store.n; i++) {
        char gname[700], gkey[700];
        pc_val p = x.store.e[i].v;
        snprintf(gname, sizeof gname, "grad.%s", pc_v(x.g, p)->name);
        snprintf(gkey, sizeof gkey, "grad.%s", x.store.e[i].key);
        pc_val gv = output_named(x.g, gname);
        const pc_st_tensor *wg = pc_st_find(x.fx, gkey);
        CU_ASSERT_FATAL(gv != PC_NONE && wg != NULL);
        double e = rel_err(pc_exec_data(x.r, gv), wg->data, x.store.e[i].n);
        if (e > worst) worst = e;
        checked++;
    }
    printf("    %d gradients, worst rel err %.2e\n", checked, worst);
    CU_ASSERT_EQUAL(checked, 70);
    CU_ASSERT(worst <= 1e-4);
    golden_close(&x);
}

/* the worst relative error of the trained A and B against PyTorch's after the 10 steps */
static double final_weights_err(const golden *x) {
    double worst = 0;
    for (int i = 0; i < x->store.n; i++) {
        if (!(x->store.e[i].flags & PC_TRAINABLE)) continue;
        char key[700];
        snprintf(key, sizeof key, "final.%s", x->store.e[i].key);
        const pc_st_tensor *wf = pc_st_find(x->fx, key);
        CU_ASSERT(wf != NULL);
        if (!wf) return INFINITY;
        double e = rel_err(x->store.e[i].data, wf->data, x->store.e[i].n);
        if (e > worst) worst = e;
    }
    return worst;
}

static void test_adamw_trajectory(void) {
    golden x;
    if (golden_open(&x, 1)) { CU_FAIL("setup"); golden_close(&x); return; }
    char err[2048];
    const float *want = pc_st_find(x.fx, "losses")->data;
    pc_val lv = PC_NONE;
    for (int i = 0; i < x.g->noutputs; i++)
        if (pc_v(x.g, x.g->outputs[i])->flags & PC_LOSS) lv = x.g->outputs[i];
    double worst = 0;
    for (int t = 1; t <= 10; t++) {
        x.hp[5] = (float)t;
        CU_ASSERT_EQUAL_FATAL(pc_exec_run(x.r, err, sizeof err), 0);
        float loss = *(const float *)pc_exec_data(x.r, lv);
        double e = fabs(loss - want[t - 1]) / fabs(want[t - 1]);
        if (e > worst) worst = e;
        CU_ASSERT_EQUAL_FATAL(pc_exec_apply_updates(x.r), 0);
    }
    printf("\n    10-step loss trajectory worst rel err %.2e\n", worst);
    CU_ASSERT(worst <= 1e-4);
    double wworst = final_weights_err(&x);
    printf("    final A/B worst rel err %.2e\n", wworst);
    CU_ASSERT(wworst <= 1e-4);
    golden_close(&x);
}

/* the bf16 base (--base-dtype bf16) against the same f32 PyTorch values, within its error budget:
 * activations rounded to bf16 where frozen products read them, the weights stored in bf16 */
static void test_bf16_base(void) {
    if (!pc_cpu_has_bf16()) { printf("\n    skipped: this CPU has no bf16 instructions (the base would stay f32)\n"); return; }
    golden x;
    if (golden_open_dtype(&x, 1, PC_BF16)) { CU_FAIL("setup"); golden_close(&x); return; }
    int nbf16 = 0;
    for (pc_val v = 0; v < x.g->nvals; v++) nbf16 += x.g->vals[v].op == PC_OP_param && x.g->vals[v].dtype == PC_BF16;
    CU_ASSERT_EQUAL(nbf16, 36); /* 7 projections x 5 layers and the (tied) embedding */
    char err[2048];
    const float *want = pc_st_find(x.fx, "losses")->data;
    pc_val lv = PC_NONE;
    for (int i = 0; i < x.g->noutputs; i++)
        if (pc_v(x.g, x.g->outputs[i])->flags & PC_LOSS) lv = x.g->outputs[i];
    double worst = 0, first = 0;
    for (int t = 1; t <= 10; t++) {
        x.hp[5] = (float)t;
        CU_ASSERT_EQUAL_FATAL(pc_exec_run(x.r, err, sizeof err), 0);
        float loss = *(const float *)pc_exec_data(x.r, lv);
        double e = fabs(loss - want[t - 1]) / fabs(want[t - 1]);
        if (t == 1) first = e;
        if (e > worst) worst = e;
        CU_ASSERT_EQUAL_FATAL(pc_exec_apply_updates(x.r), 0);
    }
    /* the first loss is the forward's error alone (budget 2e-3; measured 1.4e-4); this fixture's
     * AdamW (lr 1e-2 from a loss of 17) then amplifies the rounded gradients step by step
     * (measured 6.1e-3 at step 7); on real text the curves stay within 3.3e-4 (README) */
    printf("\n    bf16 base: first loss rel err %.2e, 10-step trajectory worst %.2e\n", first, worst);
    CU_ASSERT(first <= 2e-3);
    CU_ASSERT(first > 0); /* the weights really are rounded */
    CU_ASSERT(worst <= 1.5e-2);
    double wworst = final_weights_err(&x);
    printf("    bf16 base: final A/B worst rel err %.2e\n", wworst);
    CU_ASSERT(wworst <= 1e-1); /* measured 4.4e-2 */
    golden_close(&x);
}

static CU_TestInfo tests[] = {
    {"forward_and_gradients_match_pytorch", test_forward_and_gradients},
    {"adamw_10_steps_match_pytorch", test_adamw_trajectory},
    {"bf16_base_within_budget", test_bf16_base},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("golden_lora", tests)
