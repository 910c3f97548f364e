/* P-tuning against adapter directories written by Hugging Face PEFT (tests/golden/gen_peft_ptuning.py):
 *   tests/data/peft_ptuning_mlp_stories260k/   MLP encoder, H = 16
 *   tests/data/peft_ptuning_lstm_stories260k/  bidirectional LSTM encoder, H = 8, 2 layers
 * Each holds PEFT's saved prompt_embeddings [4,64] (the encoder's output) and, in
 * expected.safetensors, the encoder params with which PEFT computed the loss, logits and
 * gradients. Checked: the training graph (the encoder as graph ops) vs PEFT on the reference
 * interpreter and the JIT; the table the method saves vs PEFT's; the saved adapter applied without
 * the encoder (logits, greedy ids vs PEFT's generate); no merge; and finite differences of the
 * MLP and LSTM encoders (sigmoid, tanh, mul, slice, concat of the unrolled cells) on a tiny graph,
 * and the LSTM's inter-layer dropout (training only, gradient through the mask). */
#include "cu_main.h"
#include "compare.h"
#include "fd_check.h"
#include "peft_fixture.h"
#include "drivers/decode.h"
#include "drivers/merge.h"
#include "passes/pipeline.h"
#include "runtime/adapter_config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MLP_DIR PF_DATA("peft_ptuning_mlp_stories260k")
#define LSTM_DIR PF_DATA("peft_ptuning_lstm_stories260k")

enum { S = PF_S, V = PF_V, P = 4, D = 64 };

/* the training graph with the encoder params PEFT used (expected.safetensors holds them) */
static int open_train(pf_fixture *x, const char *dir) {
    char err[2048];
    /* PEFT's numbers are of its model in eval mode (LSTM dropout off): trainable params, EVAL sites */
    if (pf_open(x, dir, NULL, PC_ADAPT_EVAL, true, false)) return -1;
    pc_build_req req = {.task = PC_TASK_LM, .batch = PF_B, .seq = PF_S, .output_logits = true, .mode = PC_ADAPT_EVAL};
    if (!(x->g = pc_session_build(&x->s, &req, true, err, sizeof err)) ||
        pc_run_pipeline(&x->g, "autograd", NULL, err, sizeof err) ||
        pc_session_store(&x->s, x->g, &x->store, x->ex, 0, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

static void check_train(const char *dir, int nparams) {
    pf_fixture x;
    if (open_train(&x, dir)) { CU_FAIL("setup"); pf_close(&x); return; }
    CU_ASSERT_EQUAL(x.s.adapter.cfg->peft_type, PC_PEFT_P_TUNING);
    CU_ASSERT_EQUAL(pc_session_virtual_tokens(&x.s), P);
    int n = 0;
    for (int i = 0; i < x.store.n; i++) {
        const pc_store_entry *e = &x.store.e[i];
        CU_ASSERT(e->flags & PC_TRAINABLE);
        CU_ASSERT(e->loaded); /* from PEFT's values */
        CU_ASSERT(!strncmp(e->key, "prompt_encoder.default.", 23));
        n += (e->flags & PC_TRAINABLE) != 0;
    }
    CU_ASSERT_EQUAL(n, nparams);
    CU_ASSERT(pc_store_find(&x.store, "prompt_embeddings") == NULL); /* the encoder makes it */
    pf_check_loss_logits_grads(&x, PC_BACKEND_REF, nparams, NULL, NULL, 0);
    pf_check_loss_logits_grads(&x, PC_BACKEND_JIT, nparams, NULL, NULL, 0);
    pf_close(&x);
}

static void test_mlp_loss_and_grads(void) { check_train(MLP_DIR, 7); }
static void test_lstm_loss_and_grads(void) { check_train(LSTM_DIR, 21); }

/* ---- the table the method saves ---- */
typedef struct {
    char key[64];
    pc_shape shape;
    float data[P * D];
    int n;
} capture;

static int cap_put(void *ctx, const char *key, pc_shape shape, const float *data) {
    capture *c = ctx;
    if (c->n++ || pc_shape_numel(shape) != P * D) return -1;
    snprintf(c->key, sizeof c->key, "%s", key);
    c->shape = shape;
    memcpy(c->data, data, sizeof c->data);
    return 0;
}

static void check_saved_table(const char *dir) {
    pf_fixture x;
    char err[2048] = "";
    if (open_train(&x, dir)) { CU_FAIL("setup"); pf_close(&x); return; }
    pc_adapt_ctx *cx = pc_session_adapter(&x.s, PC_ADAPT_TRAIN, true, 0, err, sizeof err);
    CU_ASSERT_FATAL(cx != NULL);
    capture c = {0};
    pc_tensor_io io = {pc_store_tensor, cap_put, &x.store, &c, pc_store_param_key, NULL, NULL};
    int r = x.s.method->save_tensors(cx, pc_adapt_state(cx), &io, err, sizeof err);
    if (r < 0) fprintf(stderr, "save: %s\n", err);
    CU_ASSERT_EQUAL(r, 1);
    CU_ASSERT_EQUAL(c.n, 1);
    CU_ASSERT_STRING_EQUAL(c.key, "prompt_embeddings");
    CU_ASSERT(pc_shape_eq(c.shape, PC_SHAPE(P, D)));
    const pc_st_tensor *f = pc_st_find(x.s.adapter.weights, "prompt_embeddings");
    CU_ASSERT_FATAL(f && pc_shape_eq(f->shape, PC_SHAPE(P, D)));
    double d = max_abs_diff(c.data, f->data, P * D), m = max_abs(f->data, P * D);
    printf("\n    saved prompt_embeddings vs PEFT's file: max |diff| %.2e (max |x| %.2f)\n", d, m);
    CU_ASSERT(d <= 1e-6 * fmax(1.0, m));
    pc_adapt_free(cx);
    pf_close(&x);
}

static void test_mlp_saved_table(void) { check_saved_table(MLP_DIR); }
static void test_lstm_saved_table(void) { check_saved_table(LSTM_DIR); }

/* ---- the saved adapter: a frozen table, no encoder; logits and greedy ids as PEFT ---- */
static void check_saved_adapter(const char *dir) {
    pf_fixture x;
    char err[2048] = "";
    if (pf_open(&x, dir, NULL, PC_ADAPT_EVAL, false, true)) { CU_FAIL("setup"); pf_close(&x); return; }
    CU_ASSERT_EQUAL_FATAL(x.store.n, 1);
    CU_ASSERT_STRING_EQUAL(x.store.e[0].key, "prompt_embeddings");
    CU_ASSERT(x.store.e[0].flags & PC_FROZEN);
    pc_exec *r = pf_run(&x, PC_BACKEND_REF);
    CU_ASSERT_FATAL(r != NULL);
    double e = pf_logits_diff(&x, r, NULL, "logits");
    const pc_st_tensor *gp = pc_st_find(x.ex, "gen_prompt"), *gi = pc_st_find(x.ex, "gen_ids");
    CU_ASSERT_FATAL(gp && gi && gp->dtype == PC_I32 && gi->dtype == PC_I32);
    int np = (int)pc_shape_numel(gp->shape), ng = (int)pc_shape_numel(gi->shape);
    int32_t out[64];
    CU_ASSERT_FATAL(ng <= 64 && np < ng);
    static const pc_backend_kind kinds[2] = {PC_BACKEND_REF, PC_BACKEND_JIT};
    for (int k = 0; k < 2; k++) {
        int ntok = 0, npos = 0;
        pc_exec_opts eo = {.kind = kinds[k]};
        pc_decode_opts o = {.steps = ng - 1, .prompt = (const int32_t *)gp->data, .n_prompt = np, .temperature = 0, .exec = &eo};
        int rc = pc_decode(&x.s, &o, out, &ntok, NULL, &npos, err, sizeof err);
        if (rc) fprintf(stderr, "decode: %s\n", err);
        CU_ASSERT_EQUAL_FATAL(rc, 0);
        CU_ASSERT_EQUAL(ntok, ng);
        CU_ASSERT(!memcmp(out, gi->data, sizeof(int32_t) * (size_t)ng));
        printf("%s    [%s] saved adapter: logits max |diff| vs PEFT %.2e; greedy ids %s PEFT's generate (%d ids)\n",
               k ? "" : "\n", pc_backend_name(kinds[k]), e, ntok == ng && !memcmp(out, gi->data, sizeof(int32_t) * (size_t)ng) ? "=" : "!=", ng);
    }
    CU_ASSERT(e <= 1e-4);
    pc_exec_free(r);
    /* no merge rule */
    int nmod = -7;
    CU_ASSERT_EQUAL(pc_session_merge(&x.s, &nmod, err, sizeof err), -1);
    CU_ASSERT(strstr(err, "cannot be merged") != NULL);
    pf_close(&x);
}

static void test_mlp_saved_adapter(void) { check_saved_adapter(MLP_DIR); }
static void test_lstm_saved_adapter(void) { check_saved_adapter(LSTM_DIR); }

/* ---- finite differences of the encoders on a tiny graph: width 4, 3 virtual tokens ---- */
enum { FD_D = 4, FD_V = 8, FD_S = 2, FD_P = 3, MAXP = 32 };

/* the worst relative |autograd - fd| over every encoder param; *loss0 the loss at the drawn
 * values. `masked`: the graph has dropout masks (their %seed is bound). */
static double fd_encoder(const char *json, pc_adapt_mode mode, int want_params, bool masked, double *loss0) {
    char err[1024] = "";
    pc_adapter_config *cfg = pc_adapter_config_parse(json, strlen(json), "fd.json", err, sizeof err);
    CU_ASSERT_FATAL(cfg != NULL);
    pc_registry *reg = pc_registry_new();
    const pc_adapter_method *m = pc_registry_find(reg, "p_tuning");
    CU_ASSERT_FATAL(m != NULL);
    pc_model_info info = {.model_type = "llama", .dim = FD_D, .vocab = FD_V, .context = 16};
    pc_adapt_ctx *cx = pc_adapt_new(m, cfg, "fd.json", mode, true, &info, err, sizeof err);
    CU_ASSERT_FATAL(cx != NULL);
    pc_graph *g = pc_graph_new("fd");
    int rc;
    pc_val emb = pc_param_at(g, PC_HERE, "x", NULL, PC_F32, PC_SHAPE(1, FD_S, FD_D), PC_FROZEN, (pc_init){PC_INIT_NONE, 0, 0});
    pc_site s = {.kind = PC_SITE_EMBED, .module = "model.embed_tokens", .layer = -1, .g = g, .loc = PC_HERE,
                 .value = emb, .value2 = PC_NONE, .x = PC_NONE, .weight = PC_NONE, .bias = PC_NONE, .ids = PC_NONE};
    rc = pc_adapt_site(cx, &s, err, sizeof err);
    if (rc) printf("\n    rewrite: %s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL_FATAL(pc_adapt_nrewritten(cx), 1);
    CU_ASSERT_FATAL(pc_shape_eq(pc_val_shape(g, s.value), PC_SHAPE(1, FD_P + FD_S, FD_D)));
    /* a loss that weighs every output differently */
    pc_val wts = pc_param_at(g, PC_HERE, "w", NULL, PC_F32, PC_SHAPE(1, FD_P + FD_S, FD_D), PC_FROZEN, (pc_init){PC_INIT_NONE, 0, 0});
    pc_val loss = pc_sum_at(g, PC_HERE, pc_mul_at(g, PC_HERE, s.value, wts), 0, NULL, 0);
    CU_ASSERT_EQUAL_FATAL(pc_mark_loss(g, loss), 0);
    rc = pc_run_pipeline(&g, "autograd", NULL, err, sizeof err);
    if (rc) printf("\n    autograd: %s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    loss = g->outputs[0];
    pc_ref *ref = pc_ref_new(g, err, sizeof err);
    CU_ASSERT_FATAL(ref != NULL);
    rng r = {77};
    float *data[MAXP];
    pc_val pv[MAXP];
    int np = 0, ntrain = 0;
    for (pc_val v = 0; v < g->nvals && np < MAXP; v++) {
        const pc_value *p = pc_v(g, v);
        if (p->op != PC_OP_param) continue;
        int64_t n = pc_shape_numel(p->shape);
        data[np] = malloc((size_t)n * sizeof(float));
        for (int64_t i = 0; i < n; i++) data[np][i] = (float)(2 * urand(&r) - 1) * 0.8f;
        pc_ref_bind(ref, v, data[np]);
        pv[np++] = v;
        ntrain += (p->flags & PC_TRAINABLE) != 0;
    }
    CU_ASSERT_EQUAL(ntrain, want_params);
    int32_t seed = 5;
    pc_val sv = pc_lookup(g, "seed");
    CU_ASSERT_EQUAL(sv != PC_NONE, masked);
    if (sv != PC_NONE) pc_ref_bind(ref, sv, &seed);
    int bad = 0;
    double worst = 0;
    *loss0 = fd_run_loss(ref, loss, &bad);
    for (int k = 0; k < np && !bad; k++) {
        const pc_value *p = pc_v(g, pv[k]);
        if (!(p->flags & PC_TRAINABLE)) continue;
        char name[300];
        snprintf(name, sizeof name, "grad.%s", p->name);
        pc_val gv = pc_lookup(g, name);
        CU_ASSERT_FATAL(gv != PC_NONE);
        int64_t n = pc_shape_numel(p->shape);
        float *ana = malloc((size_t)n * sizeof *ana);
        fd_run_loss(ref, loss, &bad);
        memcpy(ana, pc_ref_data(ref, gv), (size_t)n * sizeof *ana);
        for (int64_t i = 0; i < n && !bad; i++) {
            double fd = fd_richardson(ref, loss, &data[k][i], 1e-2, &bad);
            worst = fmax(worst, fabs(ana[i] - fd) / fmax(1.0, fabs(fd)));
        }
        free(ana);
    }
    CU_ASSERT_FALSE(bad);
    for (int k = 0; k < np; k++) free(data[k]);
    pc_ref_free(ref);
    pc_graph_free(g);
    pc_adapt_free(cx);
    pc_registry_free(reg);
    pc_adapter_config_free(cfg);
    return bad ? INFINITY : worst;
}

static void test_fd_mlp(void) {
    double l;
    double w = fd_encoder("{\"peft_type\": \"P_TUNING\", \"num_virtual_tokens\": 3, \"encoder_hidden_size\": 3}",
                          PC_ADAPT_EVAL, 7, false, &l);
    printf("\n    MLP encoder: autograd vs finite differences, worst rel %.2e\n", w);
    CU_ASSERT(w <= 2e-3);
}

#define FD_LSTM "{\"peft_type\": \"P_TUNING\", \"num_virtual_tokens\": 3, \"encoder_hidden_size\": 2, " \
                "\"encoder_reparameterization_type\": \"LSTM\", \"encoder_num_layers\": 2"

static void test_fd_lstm(void) {
    double l;
    double w = fd_encoder(FD_LSTM "}", PC_ADAPT_EVAL, 1 + 16 + 4, false, &l);
    printf("\n    LSTM encoder (2 layers, both directions): autograd vs finite differences, worst rel %.2e\n", w);
    CU_ASSERT(w <= 2e-3);
}

/* nn.LSTM's dropout: between the layers, training only; the gradient flows through the mask */
static void test_lstm_dropout(void) {
    double le, lt, lt0, l1;
    double we = fd_encoder(FD_LSTM ", \"encoder_dropout\": 0.5}", PC_ADAPT_EVAL, 21, false, &le);
    double wt = fd_encoder(FD_LSTM ", \"encoder_dropout\": 0.5}", PC_ADAPT_TRAIN, 21, true, &lt);
    double w0 = fd_encoder(FD_LSTM ", \"encoder_dropout\": 0}", PC_ADAPT_TRAIN, 21, false, &lt0);
    double w1 = fd_encoder(FD_LSTM ", \"encoder_num_layers\": 1, \"encoder_dropout\": 0.5}", PC_ADAPT_TRAIN, 13, false, &l1); /* one layer: nothing between */
    printf("\n    LSTM dropout 0.5: loss eval %.6f, train %.6f (dropout 0: %.6f); fd worst rel eval %.2e, train %.2e, "
           "p 0 %.2e, 1 layer %.2e\n", le, lt, lt0, we, wt, w0, w1);
    CU_ASSERT(fabs(lt - le) > 1e-3); /* masked in training */
    CU_ASSERT(fabs(lt0 - le) < 1e-6); /* p = 0: no mask */
    CU_ASSERT(we <= 2e-3 && wt <= 2e-3 && w0 <= 2e-3 && w1 <= 2e-3);
}

static CU_TestInfo tests[] = {
    {"mlp_loss_and_grads", test_mlp_loss_and_grads},
    {"lstm_loss_and_grads", test_lstm_loss_and_grads},
    {"mlp_saved_table", test_mlp_saved_table},
    {"lstm_saved_table", test_lstm_saved_table},
    {"mlp_saved_adapter", test_mlp_saved_adapter},
    {"lstm_saved_adapter", test_lstm_saved_adapter},
    {"fd_mlp", test_fd_mlp},
    {"fd_lstm", test_fd_lstm},
    {"lstm_dropout", test_lstm_dropout},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("peft_ptuning", tests)
