/* LoKr against adapter directories written by Hugging Face PEFT (tests/golden/gen_peft_lokr.py,
 * tests/golden/lokr.md):
 *   tests/data/peft_lokr_stories260k/     35 modules, 95 tensors, every factor layout (w1 / w1_a+w1_b, w2 /
 *                                         w2_a+w2_b), q/k w2 rows in llama2.c order
 *   tests/data/peft_lokr_stories260k_hf/  the same adapter as PEFT saved it (HF q/k rows)
 * PEFT's factorization; forward (logits, loss) and every factor's gradient on the reference
 * interpreter and the JIT, through the fused graph (no kron left); merge vs merge_and_unload;
 * unmerge; --hf-qk-rows (w2 rows permuted, and refused when a head spans two w2 blocks). */
#include "cu_main.h"
#include "peft_fixture.h"
#include "drivers/merge.h"
#include "passes/kron.h"

#include <string.h>

#define LOKR_DIR PF_DATA("peft_lokr_stories260k")
#define LOKR_HF_DIR PF_DATA("peft_lokr_stories260k_hf")
#define LOKR_EXPECTED LOKR_DIR "/expected.safetensors"

enum { NTENSORS = 5 * 19 };

static int count_op(const pc_graph *g, pc_opcode op) {
    int n = 0;
    for (pc_val v = 0; v < g->nvals; v++) n += pc_v(g, v)->op == op;
    return n;
}


/* 2. loss, logits and the 95 factor gradients (ref and jit), on the fused graph */
static void test_loss_and_grads(void) {
    pf_fixture x;
    if (pf_open(&x, LOKR_DIR, NULL, PC_ADAPT_TRAIN, true, true)) { CU_FAIL("setup"); pf_close(&x); return; }
    CU_ASSERT_EQUAL(x.s.adapter.cfg->peft_type, PC_PEFT_LOKR);
    int loaded, n = pf_trainable_from_file(&x, NULL, &loaded);
    CU_ASSERT_EQUAL(n, NTENSORS);
    CU_ASSERT_EQUAL(loaded, NTENSORS);
    /* fuse-kron ran: neither the forward nor the backward forms a Kronecker product */
    printf("\n    train graph: %d kron ops, %d matmuls", count_op(x.g, PC_OP_kron), count_op(x.g, PC_OP_matmul));
    CU_ASSERT_EQUAL(count_op(x.g, PC_OP_kron), 0);
    pf_check_loss_logits_grads(&x, PC_BACKEND_REF, NTENSORS, NULL, NULL, 0);
    pf_check_loss_logits_grads(&x, PC_BACKEND_JIT, NTENSORS, NULL, NULL, 0);
    pf_close(&x);
}

/* 3. merge vs merge_and_unload (layers 0 and 4, all seven projections), merged = unmerged logits */
static void test_merge(void) {
    pf_fixture m;
    pf_check_merge(&m, PF_MODEL, &(pf_merge_spec){.adapter = LOKR_DIR, .modules = 35, .weights = 14,
                                                  .weights_label = "max |diff| vs PEFT", .unmerged_kind = PC_BACKEND_JIT});
    pf_close(&m);
}

/* 4. merge into a checkpoint, unmerge it: W - kron(w1, w2) s gives the base back */
static void test_unmerge(void) { pf_check_unmerge(PF_MODEL, LOKR_DIR, NULL, 35, 1e-6); }

/* 5. --hf-qk-rows: PEFT's own file (HF q/k rows) loads as the llama2.c-order file (the w2 / w2_a
 * rows of q and k permuted per head), and gives PEFT's logits */
static void test_hf_qk_rows(void) {
    pf_fixture h, l;
    char err[2048];
    if (pf_open(&h, LOKR_HF_DIR, LOKR_EXPECTED, PC_ADAPT_EVAL, false, false) ||
        pf_open(&l, LOKR_DIR, NULL, PC_ADAPT_EVAL, false, true)) {
        CU_FAIL("setup");
        pf_close(&h);
        pf_close(&l);
        return;
    }
    h.s.hf_qk_rows = true;
    CU_ASSERT_EQUAL_FATAL(pf_graph(&h, PC_ADAPT_EVAL, false), 0);
    int same = 0, permuted = 0;
    for (int i = 0; i < l.store.n; i++) {
        const pc_store_entry *e = &l.store.e[i], *f = pc_store_find(&h.store, e->key);
        CU_ASSERT_FATAL(f != NULL && f->n == e->n);
        same += !memcmp(e->data, f->data, (size_t)e->n * sizeof(float));
        const pc_st_tensor *raw = pc_st_find(h.s.adapter.weights, e->key);
        permuted += raw && memcmp(raw->data, f->data, (size_t)e->n * sizeof(float)) != 0;
    }
    printf("\n    %d of %d tensors equal the llama2.c-order file after --hf-qk-rows; %d were permuted\n", same,
           l.store.n, permuted);
    CU_ASSERT_EQUAL(same, NTENSORS);
    CU_ASSERT_EQUAL(permuted, 2 * 5); /* q's w2_a and k's w2 in each layer */
    pc_exec *r = pf_run(&h, PC_BACKEND_REF);
    CU_ASSERT_FATAL(r != NULL);
    double e = pf_logits_diff(&h, r, NULL, "logits");
    printf("    logits (HF file, --hf-qk-rows) vs PEFT max |diff| %.2e\n", e);
    CU_ASSERT(e <= 1e-4);
    pc_exec_free(r);

    /* decompose_factor 16: q's 64 rows are (16, 4), a head of 8 rows spans two w2 blocks: refused */
    pc_adapter_config *c = pc_adapter_config_new(PC_PEFT_LOKR);
    static const char *const q[] = {"q_proj"};
    CU_ASSERT_FATAL(c && pc_spec_set_list(&c->target_modules, q, 1) == 0);
    c->lycoris.decompose_factor = 16;
    CU_ASSERT_EQUAL_FATAL(pc_session_set_adapter(&h.s, c, "factor16.json", err, sizeof err), 0);
    pc_store_free(&h.store);
    pc_graph_free(h.g);
    pc_build_req req = {.task = PC_TASK_LM, .batch = PF_B, .seq = PF_S, .mode = PC_ADAPT_EVAL};
    h.g = pc_session_build(&h.s, &req, true, err, sizeof err);
    CU_ASSERT_FATAL(h.g != NULL);
    int rc = pc_session_store(&h.s, h.g, &h.store, NULL, 0, err, sizeof err);
    printf("    decompose_factor 16 with --hf-qk-rows: rc %d, \"%s\"\n", rc, err);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT(strstr(err, "factor16.json: --hf-qk-rows:") != NULL && strstr(err, "lokr_w2") != NULL);
    h.s.hf_qk_rows = false; /* without it the same adapter is fine */
    CU_ASSERT_EQUAL(pc_session_store(&h.s, h.g, &h.store, NULL, 0, err, sizeof err), 0);
    pf_close(&h);
    pf_close(&l);
}

/* 6. the config checks of the method */
static void test_refusals(void) {
    char err[2048] = "";
    pc_session s;
    CU_ASSERT_EQUAL_FATAL(pc_session_open(&s, NULL, PF_MODEL, NULL, NULL, err, sizeof err), 0);
    pc_adapter_config *c = pc_adapter_config_new(PC_PEFT_LOKR);
    static const char *const q[] = {"q_proj"};
    CU_ASSERT_FATAL(c && pc_spec_set_list(&c->target_modules, q, 1) == 0);
    c->lycoris.use_effective_conv2d = true;
    CU_ASSERT_EQUAL_FATAL(pc_session_set_adapter(&s, c, "conv.json", err, sizeof err), 0);
    pc_build_req req = {.task = PC_TASK_LM, .batch = 1, .seq = 4, .mode = PC_ADAPT_TRAIN};
    pc_graph *g = pc_session_build(&s, &req, true, err, sizeof err);
    printf("\n    use_effective_conv2d: \"%s\"\n", err);
    CU_ASSERT(g == NULL && strstr(err, "conv.json: field \"use_effective_conv2d\"") != NULL);
    pc_graph_free(g);
    pc_session_close(&s);
}

static CU_TestInfo tests[] = {
    {"loss_and_grads", test_loss_and_grads},
    {"merge", test_merge},
    {"unmerge", test_unmerge},
    {"hf_qk_rows", test_hf_qk_rows},
    {"refusals", test_refusals},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("peft_lokr", tests)
