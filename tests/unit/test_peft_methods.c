/* IA3 and prompt tuning against adapter directories written by Hugging Face PEFT
 * (tests/golden/gen_peft_ia3_prompt.py):
 *   tests/data/peft_ia3_stories260k/     15 ia3_l vectors (k/v scale outputs, down scales inputs)
 *   tests/data/peft_prompt_stories260k/  prompt_embeddings [4,64]
 * Forward (logits, loss) and every adapter gradient on the reference interpreter and the JIT,
 * IA3's merge vs PEFT's merge_and_unload, prompt tuning refusing to merge, and generation
 * feeding the virtual tokens first (decode logits = the LM graph's). */
#include "cu_main.h"
#include "compare.h"
#include "peft_fixture.h"
#include "drivers/decode.h"
#include "drivers/merge.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define IA3_DIR PF_DATA("peft_ia3_stories260k")
#define PROMPT_DIR PF_DATA("peft_prompt_stories260k")

enum { S = PF_S, V = PF_V, P = 4, D = 64 };

/* 1. IA3: loss, logits and the 15 ia3_l gradients (ref and jit) */
static void test_ia3_loss_and_grads(void) {
    pf_fixture x;
    if (pf_open(&x, IA3_DIR, NULL, PC_ADAPT_TRAIN, true, true)) { CU_FAIL("setup"); pf_close(&x); return; }
    CU_ASSERT_EQUAL(x.s.adapter.cfg->peft_type, PC_PEFT_IA3);
    int loaded, n = pf_trainable_from_file(&x, ".ia3_l", &loaded);
    CU_ASSERT_EQUAL(n, 15);
    CU_ASSERT_EQUAL(loaded, 15); /* the trainable vectors start from the file's values */
    pf_check_loss_logits_grads(&x, PC_BACKEND_REF, 15, NULL, NULL, 0);
    pf_check_loss_logits_grads(&x, PC_BACKEND_JIT, 15, NULL, NULL, 0);
    pf_close(&x);
}

/* 2. IA3 merge vs merge_and_unload, and merged logits = unmerged logits */
static void test_ia3_merge(void) {
    pf_fixture m;
    pf_check_merge(&m, PF_MODEL, &(pf_merge_spec){.adapter = IA3_DIR, .modules = 15, .weights = 6,
                                                  .weights_label = "max |diff|", .unmerged_kind = PC_BACKEND_REF});
    pf_close(&m);
}

/* 3. prompt tuning: loss, logits at the 16 real positions and the table's gradient */
static void test_prompt_loss_and_grad(void) {
    pf_fixture x;
    if (pf_open(&x, PROMPT_DIR, NULL, PC_ADAPT_TRAIN, true, true)) { CU_FAIL("setup"); pf_close(&x); return; }
    CU_ASSERT_EQUAL(x.s.adapter.cfg->peft_type, PC_PEFT_PROMPT_TUNING);
    CU_ASSERT_EQUAL(pc_session_virtual_tokens(&x.s), P);
    const pc_store_entry *e = pc_store_find(&x.store, "prompt_embeddings");
    CU_ASSERT_FATAL(e != NULL);
    CU_ASSERT(e->flags & PC_TRAINABLE);
    CU_ASSERT(e->loaded);
    CU_ASSERT(pc_shape_eq(e->shape, PC_SHAPE(P, D)));
    const pc_st_tensor *f = pc_st_find(x.s.adapter.weights, "prompt_embeddings");
    CU_ASSERT(f && f->nbytes == sizeof(float) * P * D && !memcmp(f->data, e->data, f->nbytes));
    pc_val lv = pf_output(x.g, false);
    CU_ASSERT(lv != PC_NONE && pc_shape_eq(pc_val_shape(x.g, lv), PC_SHAPE(PF_B, S, V)));
    pf_check_loss_logits_grads(&x, PC_BACKEND_REF, 1, NULL, NULL, 0);
    pf_check_loss_logits_grads(&x, PC_BACKEND_JIT, 1, NULL, NULL, 0);
    pf_close(&x);
}

/* 4. prompt tuning has no merge rule */
static void test_prompt_not_mergeable(void) {
    char err[2048] = "";
    pc_session s;
    int rc = pc_session_open(&s, NULL, PF_MODEL, NULL, PROMPT_DIR, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    int nmod = -7;
    rc = pc_session_merge(&s, &nmod, err, sizeof err);
    printf("\n    merge: rc %d, \"%s\"\n", rc, err);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT(strstr(err, "cannot be merged") != NULL);
    CU_ASSERT_FALSE(s.merged);
    pc_session_close(&s);
}

/* 5. generation feeds the 4 virtual tokens first (ids 512..515 at positions 0..3): its logits
 * for row 0 equal the LM graph's */
static void test_prompt_decode_matches_lm(void) {
    char err[2048] = "";
    pf_fixture x;
    if (pf_open(&x, PROMPT_DIR, NULL, PC_ADAPT_EVAL, false, true)) { CU_FAIL("setup"); pf_close(&x); return; }
    pc_exec *r = pf_run(&x, PC_BACKEND_REF);
    CU_ASSERT_FATAL(r != NULL);
    const float *lm = pf_logits(&x, r);
    CU_ASSERT_FATAL(lm != NULL);
    const pc_st_tensor *want = pc_st_find(x.ex, "logits");
    CU_ASSERT_FATAL(want != NULL);
    static const pc_backend_kind kinds[2] = {PC_BACKEND_REF, PC_BACKEND_JIT};
    float *logits = calloc((size_t)S * V, sizeof *logits);
    CU_ASSERT_FATAL(logits != NULL);
    printf("\n");
    for (int k = 0; k < 2; k++) {
        int32_t out[S + 1];
        int ntok = 0, npos = 0;
        pc_exec_opts eo = {.kind = kinds[k]};
        pc_decode_opts o = {.steps = S, .prompt = x.tokens, .n_prompt = S, .temperature = 0, .exec = &eo};
        for (int i = 0; i < S * V; i++) logits[i] = NAN;
        int rc = pc_decode(&x.s, &o, out, &ntok, logits, &npos, err, sizeof err);
        if (rc) fprintf(stderr, "decode: %s\n", err);
        CU_ASSERT_EQUAL_FATAL(rc, 0);
        CU_ASSERT_EQUAL(npos, S);
        CU_ASSERT(ntok >= S && !memcmp(out, x.tokens, sizeof(int32_t) * S));
        double e = max_abs_diff(logits, lm, (int64_t)S * V), ew = max_abs_diff(logits, want->data, (int64_t)S * V);
        printf("    [%s] decode row 0, %d positions: max |diff| vs LM graph %.2e, vs PEFT %.2e\n",
               pc_backend_name(kinds[k]), npos, e, ew);
        CU_ASSERT(e <= 1e-4);
        CU_ASSERT(ew <= 1e-4);
    }
    free(logits);
    pc_exec_free(r);
    pf_close(&x);
}

/* merge into a checkpoint file, then unmerge it again: the base weights come back (PEFT's
 * unmerge; IA3 divides by l + 1e-8) */
static void test_unmerge_restores_base(void) {
    pf_check_unmerge(PF_MODEL, IA3_DIR, "tests/data/peft_ia3_stories260k", 15, 1e-5);
    pf_check_unmerge(PF_MODEL, PF_DATA("peft_lora_stories260k_l2c"), "tests/data/peft_lora_stories260k_l2c", 35, 1e-6);
}

static CU_TestInfo tests[] = {
    {"unmerge_restores_base", test_unmerge_restores_base},
    {"ia3_loss_and_grads", test_ia3_loss_and_grads},
    {"ia3_merge", test_ia3_merge},
    {"prompt_loss_and_grad", test_prompt_loss_and_grad},
    {"prompt_not_mergeable", test_prompt_not_mergeable},
    {"prompt_decode_matches_lm", test_prompt_decode_matches_lm},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("peft_methods", tests)
