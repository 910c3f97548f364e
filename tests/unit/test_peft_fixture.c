/* Adapter directories written by Hugging Face PEFT itself (tests/golden/gen_peft_adapter.py):
 *   tests/data/peft_lora_stories260k/      PEFT's exact bytes, q/k lora_B rows in HF order
 *   tests/data/peft_lora_stories260k_l2c/  the same adapter, q/k lora_B rows in llama2.c order
 * (a) the PEFT directory opens, its config and all 70 tensors are understood;
 * (b) unmerged logits on the l2c directory match PyTorch (llama2.c-convention model + LoRA);
 * (c) peftc's merge on the l2c directory matches PEFT's merge_and_unload (rows un-permuted). */
#include "cu_main.h"
#include "compare.h"
#include "peft_fixture.h"
#include "backend/exec.h"
#include "backend/ref.h"
#include "drivers/merge.h"
#include "drivers/session.h"
#include "frontend/llama.h"
#include "drivers/store.h"
#include "ir/ir.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MODEL PF_MODEL
#define PEFT_DIR PF_DATA("peft_lora_stories260k")
#define L2C_DIR PF_DATA("peft_lora_stories260k_l2c")

enum { SEQ = 16, VOCAB = 512, DIM = 64, HIDDEN = 172, KV_DIM = 32, LAYERS = 5, R = 4 };

static const char *const TARGETS[7] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

/* out/in features of each target (stories260K) */
static void module_dims(const char *name, int64_t *out, int64_t *in) {
    *in = DIM;
    *out = DIM;
    if (!strcmp(name, "k_proj") || !strcmp(name, "v_proj")) *out = KV_DIM;
    else if (!strcmp(name, "gate_proj") || !strcmp(name, "up_proj")) *out = HIDDEN;
    else if (!strcmp(name, "down_proj")) *in = HIDDEN;
}

static const char *parent_of(const char *name) {
    return name[1] == '_' ? "self_attn" : "mlp"; /* q_, k_, v_, o_proj */
}


/* an adapted inference graph (B=1, S=16, logits output) with its base and adapter bound */
typedef struct {
    pc_session s;
    pc_st_file *ex;
    pc_graph *g;
    pc_exec *r;
    pc_store store;
    int32_t tokens[SEQ], targets[SEQ];
    int nstore;
} adapted;

static int adapted_open(adapted *x, const char *dir, int bind) {
    char err[2048];
    memset(x, 0, sizeof *x);
    if (pc_session_open(&x->s, NULL, MODEL, NULL, dir, err, sizeof err)) { fprintf(stderr, "%s\n", err); return -1; }
    char path[1024];
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    if (!(x->ex = pc_st_open(path, err, sizeof err))) { fprintf(stderr, "%s\n", err); return -1; }
    pc_build_req req = {.task = PC_TASK_LM, .batch = 1, .seq = SEQ, .output_logits = true, .mode = PC_ADAPT_EVAL};
    if (!(x->g = pc_session_build(&x->s, &req, false, err, sizeof err))) { fprintf(stderr, "%s\n", err); return -1; }
    if (pc_session_store(&x->s, x->g, &x->store, NULL, 0, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    if (!bind) return 0;
    const pc_st_tensor *tk = pc_st_find(x->ex, "tokens");
    if (!tk || tk->dtype != PC_I32 || pc_shape_numel(tk->shape) != SEQ) { fprintf(stderr, "expected: bad tokens\n"); return -1; }
    memcpy(x->tokens, tk->data, sizeof x->tokens);
    for (int i = 0; i < SEQ; i++) x->targets[i] = i + 1 < SEQ ? x->tokens[i + 1] : PC_LLAMA_IGNORE;
    if (!(x->r = pc_exec_new(x->g, &(pc_exec_opts){.kind = PC_BACKEND_REF}, err, sizeof err))) { fprintf(stderr, "%s\n", err); return -1; }
    if (pc_session_bind_base(&x->s, x->r, x->g, false, err, sizeof err) || pc_store_bind(&x->store, x->r) ||
        pc_exec_bind(x->r, pc_lookup(x->g, "tokens"), x->tokens) || pc_exec_bind(x->r, pc_lookup(x->g, "targets"), x->targets)) {
        fprintf(stderr, "bind: %s\n", err);
        return -1;
    }
    return 0;
}

static void adapted_close(adapted *x) {
    pc_exec_free(x->r);
    pc_store_free(&x->store);
    pc_graph_free(x->g);
    pc_st_close(x->ex);
    pc_session_close(&x->s);
}

static pc_val logits_output(const pc_graph *g) {
    for (int i = 0; i < g->noutputs; i++) {
        const pc_value *o = pc_v(g, g->outputs[i]);
        if (!(o->flags & PC_LOSS) && o->shape.rank == 3) return g->outputs[i];
    }
    return PC_NONE;
}

/* runs the graph; the max |logits - expected logits| (or -1) */
static double logits_error(adapted *x) {
    char err[2048];
    if (pc_exec_run(x->r, err, sizeof err)) { fprintf(stderr, "run: %s\n", err); return -1; }
    pc_val lv = logits_output(x->g);
    const pc_st_tensor *want = pc_st_find(x->ex, "logits");
    if (lv == PC_NONE || !want || pc_shape_numel(want->shape) != (int64_t)SEQ * VOCAB) return -1;
    return max_abs_diff(pc_exec_data(x->r, lv), want->data, (int64_t)SEQ * VOCAB);
}

/* (a) the exact PEFT directory: config and every tensor */
static void test_peft_dir_loads(void) {
    adapted x;
    int rc = adapted_open(&x, PEFT_DIR, 0);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    const pc_adapter_config *c = x.s.adapter.cfg;
    CU_ASSERT_FATAL(c != NULL && x.s.adapter.weights != NULL);
    CU_ASSERT_EQUAL(c->peft_type, PC_PEFT_LORA);
    CU_ASSERT_EQUAL(c->task_type, PC_TASK_CAUSAL_LM);
    CU_ASSERT_EQUAL(c->r, R);
    CU_ASSERT_DOUBLE_EQUAL(c->lora.lora_alpha.v, 8.0, 0);
    CU_ASSERT_DOUBLE_EQUAL(c->lora.lora_dropout.v, 0.0, 0);
    CU_ASSERT_FALSE(c->lora.use_dora);
    CU_ASSERT_FALSE(c->lora.use_rslora);
    CU_ASSERT_FALSE(c->fan_in_fan_out);
    CU_ASSERT_EQUAL(c->lora.bias, PC_BIAS_NONE);
    CU_ASSERT_EQUAL_FATAL(c->target_modules.kind, PC_SPEC_LIST);
    CU_ASSERT_EQUAL(c->target_modules.n, 7);
    for (int t = 0; t < 7; t++) {
        int found = 0;
        for (size_t i = 0; i < c->target_modules.n; i++) found += !strcmp(c->target_modules.items[i], TARGETS[t]);
        CU_ASSERT_EQUAL(found, 1);
    }
    CU_ASSERT_EQUAL(pc_st_count(x.s.adapter.weights), 70);
    CU_ASSERT_STRING_EQUAL(pc_st_meta(x.s.adapter.weights, "format"), "pt");
    /* the adapted graph asks for exactly the 70 tensors of the file, with PEFT's shapes */
    CU_ASSERT_EQUAL(x.store.n, 70);
    int checked = 0;
    for (int l = 0; l < LAYERS; l++)
        for (int t = 0; t < 7; t++) {
            int64_t O, I;
            module_dims(TARGETS[t], &O, &I);
            char module[256], ka[512], kb[512];
            snprintf(module, sizeof module, "model.layers.%d.%s.%s", l, parent_of(TARGETS[t]), TARGETS[t]);
            pc_adapter_key(ka, sizeof ka, module, NULL, "lora_A.weight");
            pc_adapter_key(kb, sizeof kb, module, NULL, "lora_B.weight");
            const pc_store_entry *a = pc_store_find(&x.store, ka), *b = pc_store_find(&x.store, kb);
            const pc_st_tensor *fa = pc_st_find(x.s.adapter.weights, ka), *fb = pc_st_find(x.s.adapter.weights, kb);
            CU_ASSERT_FATAL(a && b && fa && fb);
            pc_shape sa = pc_shape_make(2, (int64_t[]){R, I}), sb = pc_shape_make(2, (int64_t[]){O, R});
            CU_ASSERT(pc_shape_eq(a->shape, sa) && pc_shape_eq(fa->shape, sa));
            CU_ASSERT(pc_shape_eq(b->shape, sb) && pc_shape_eq(fb->shape, sb));
            CU_ASSERT(a->flags & PC_FROZEN);
            /* the store holds the file's values */
            CU_ASSERT(memcmp(a->data, fa->data, fa->nbytes) == 0);
            CU_ASSERT(memcmp(b->data, fb->data, fb->nbytes) == 0);
            checked++;
        }
    CU_ASSERT_EQUAL(checked, 35);
    adapted_close(&x);
}

/* (b) unmerged forward with the llama2.c-order adapter matches PyTorch */
static void test_l2c_logits(void) {
    adapted x;
    int rc = adapted_open(&x, L2C_DIR, 1);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    double e = logits_error(&x);
    printf("\n    %s: logits max |diff| %.3e\n", "peft_lora_stories260k_l2c", e);
    CU_ASSERT(e >= 0 && e <= 1e-4);
    adapted_close(&x);
    /* the HF-order directory: peftc applies its q/k lora_B rows as stored, in llama2.c row
     * order, so it computes another function (documented limitation; printed, not asserted) */
    if (adapted_open(&x, PEFT_DIR, 1) == 0) {
        e = logits_error(&x);
        printf("    %s (HF q/k row order, not un-permuted by peftc): logits max |diff| %.3e\n",
               "peft_lora_stories260k", e);
    }
    adapted_close(&x);
}

/* (c) pc_session_merge matches PEFT's merge_and_unload for layers 0 and 4 */
static void test_l2c_merge(void) {
    char err[2048];
    pc_session s;
    int rc = pc_session_open(&s, NULL, MODEL, NULL, L2C_DIR, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    pc_st_file *ex = pc_st_open(L2C_DIR "/expected.safetensors", err, sizeof err);
    CU_ASSERT_FATAL(ex != NULL);
    int merged = 0;
    rc = pc_session_merge(&s, &merged, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(merged, 35);
    double worst; /* each merged weight also really differs from the checkpoint's */
    int checked = pf_merged_weights(&s, ex, false, true, &worst);
    printf("\n    %d merged weights (layers 0, 4), max |diff| %.3e\n", checked, worst);
    CU_ASSERT_EQUAL(checked, 14);
    CU_ASSERT(worst <= 1e-5);
    pc_st_close(ex);
    pc_session_close(&s);
}

static CU_TestInfo tests[] = {
    {"peft_written_dir_loads", test_peft_dir_loads},
    {"l2c_unmerged_logits_match_pytorch", test_l2c_logits},
    {"l2c_merge_matches_peft_merge_and_unload", test_l2c_merge},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("peft_fixture", tests)
