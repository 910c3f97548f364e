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
#include "peft_fixture.h"
#include "drivers/merge.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DORA_DIR PF_DATA("peft_dora_stories260k")
#define DORA_EXPECTED DORA_DIR "/expected.safetensors"
#define DORA_CONFIG PEFTC_SOURCE_DIR "/examples/configs/dora.json"

enum { NMOD = 35 };

/* 1. loss, logits and the 105 gradients (A, B, magnitude of 35 modules) vs PEFT */
static void test_loss_and_grads(void) {
    static const pf_grad_group kinds[] = {{"lora_A", "lora_A"}, {"lora_B", "lora_B"}, {"magnitude", NULL}};
    pf_fixture x;
    if (pf_open(&x, DORA_DIR, NULL, PC_ADAPT_TRAIN, true, true)) { CU_FAIL("setup"); pf_close(&x); return; }
    CU_ASSERT_EQUAL(x.s.adapter.cfg->peft_type, PC_PEFT_LORA);
    CU_ASSERT(x.s.adapter.cfg->lora.use_dora);
    int loaded, mags = 0;
    CU_ASSERT_EQUAL(pf_trainable_from_file(&x, NULL, &loaded), 3 * NMOD);
    for (int i = 0; i < x.store.n; i++) {
        const pc_store_entry *e = &x.store.e[i];
        if ((e->flags & PC_TRAINABLE) && strstr(e->key, ".lora_magnitude_vector")) mags += e->shape.rank == 1;
    }
    CU_ASSERT_EQUAL(mags, NMOD);
    CU_ASSERT_EQUAL(loaded, 3 * NMOD); /* every tensor from the file, none from an init */
    /* the weight norm is detached: a stop_gradient per module in the step */
    int sg = 0;
    for (int v = 0; v < x.g->nvals; v++) sg += x.g->vals[v].op == PC_OP_stop_gradient;
    CU_ASSERT_EQUAL(sg, NMOD);
    pf_check_loss_logits_grads(&x, PC_BACKEND_REF, 3 * NMOD, NULL, kinds, 3);
    pf_check_loss_logits_grads(&x, PC_BACKEND_JIT, 3 * NMOD, NULL, kinds, 3);
    pf_close(&x);
}

/* 2. merge vs merge_and_unload (layers 0 and 4), merged logits = PEFT's = unmerged */
static void test_merge(void) {
    pf_fixture m;
    pf_check_merge(&m, PF_MODEL, &(pf_merge_spec){.adapter = DORA_DIR, .modules = NMOD, .weights = 14, .relative = true,
                                                  .weights_label = "vs PEFT: max rel |diff|", .unmerged_kind = PC_BACKEND_JIT});
    pf_close(&m);
}

/* 3. unmerge is refused with the reason (the merged weights keep only each row's direction) */
static void test_unmerge_refused(void) {
    char err[2048] = "";
    pc_session s;
    CU_ASSERT_EQUAL_FATAL(pc_session_open(&s, NULL, PF_MODEL, NULL, DORA_DIR, err, sizeof err), 0);
    int n = -7;
    int rc = pc_session_unmerge(&s, &n, err, sizeof err);
    printf("\n    unmerge: rc %d, \"%.160s...\"\n", rc, err);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT(strstr(err, "cannot be unmerged") != NULL && strstr(err, "direction") != NULL);
    CU_ASSERT_EQUAL(s.model.nover, 0); /* nothing replaced */
    pc_session_close(&s);
}

/* m of a fresh config: ‖W + s·B A‖ per row from the model's W and the store's A, B */
static void check_magnitudes(pf_fixture *x, double scale, double *worst, double *moved) {
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
    pf_fixture x, base;
    if (pf_open(&x, DORA_CONFIG, DORA_EXPECTED, PC_ADAPT_EVAL, true, true)) { CU_FAIL("setup"); pf_close(&x); return; }
    CU_ASSERT(x.s.adapter.cfg->lora.use_dora);
    double worst = 0, moved = 0;
    check_magnitudes(&x, 2.0, &worst, &moved);
    printf("\n    fresh DoRA: 35 magnitudes vs the row norms of W: max rel |diff| %.2e (B = 0: moved %.1e)\n", worst, moved);
    CU_ASSERT(worst <= 1e-6);
    CU_ASSERT(moved == 0);
    pc_exec *r = pf_run(&x, PC_BACKEND_JIT), *rb = NULL;
    CU_ASSERT_FATAL(r != NULL);
    if (pf_open(&base, NULL, DORA_EXPECTED, PC_ADAPT_EVAL, false, true) == 0) rb = pf_run(&base, PC_BACKEND_JIT);
    CU_ASSERT_FATAL(rb != NULL);
    const float *l = pf_logits(&x, r), *lb = pf_logits(&base, rb);
    double d = l && lb ? max_abs_diff(l, lb, (int64_t)PF_N * PF_V) : INFINITY;
    printf("    fresh DoRA vs the base model: logits max |diff| %.2e\n", d);
    CU_ASSERT(d <= 1e-4); /* f = m / ||W|| is 1 up to float rounding */
    pc_exec_free(rb);
    pc_exec_free(r);
    pf_close(&base);
    pf_close(&x);
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
    pf_fixture x;
    if (pf_open(&x, path, DORA_EXPECTED, PC_ADAPT_TRAIN, true, true)) { CU_FAIL("setup"); pf_close(&x); unlink(path); return; }
    double worst = 0, moved = 0;
    check_magnitudes(&x, 2.0, &worst, &moved);
    printf("\n    init_lora_weights=false: magnitudes vs ||W + s BA||: max rel |diff| %.2e (BA moves them by up to %.3g)\n",
           worst, moved);
    CU_ASSERT(worst <= 1e-6);
    CU_ASSERT(moved > 1e-3);
    pf_close(&x);
    unlink(path);
}

/* 6. the magnitude follows the module's output rows (--hf-qk-rows permutes it with lora_B) */
static void test_output_rows(void) {
    char err[2048];
    pc_session s;
    CU_ASSERT_EQUAL_FATAL(pc_session_open(&s, NULL, PF_MODEL, NULL, DORA_DIR, err, sizeof err), 0);
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
