/* Weight folding of inference graphs (drivers/fold_weights.c) on adapters written by PEFT: the
 * weights-only values (DoRA's row norms, LoHa's ΔW, prompt tuning's extended token table) become
 * folded params, the graph gets smaller, and its logits equal the unfolded graph's and PEFT's. */
#include "cu_main.h"
#include "compare.h"
#include "drivers/fold_weights.h"
#include "peft_fixture.h"

#include <stdio.h>
#include <string.h>

static int count_op(const pc_graph *g, pc_opcode op) {
    int n = 0;
    for (pc_val v = 0; v < g->nvals; v++) n += pc_v(g, v)->op == op;
    return n;
}

/* the EVAL LM graph of `dir` unfolded (the harness) and folded: same logits, fewer values */
static void fold_matches(const char *dir, int want_folded, pc_opcode op, int op_fewer) {
    pf_fixture x;
    CU_ASSERT_EQUAL_FATAL(pf_open(&x, dir, NULL, PC_ADAPT_EVAL, false, true), 0);
    pc_exec *plain = pf_run(&x, PC_BACKEND_REF);
    CU_ASSERT_PTR_NOT_NULL_FATAL(plain);
    const float *want = pf_logits(&x, plain);
    CU_ASSERT_PTR_NOT_NULL_FATAL(want);

    char err[1024];
    pc_build_req req = {.task = PC_TASK_LM, .batch = PF_B, .seq = PF_S, .output_logits = true, .mode = PC_ADAPT_EVAL};
    pc_store st = {0};
    pc_folded f = {0};
    pc_graph *g = pc_session_inference_graph(&x.s, &req, &st, &f, err, sizeof err);
    if (!g) fprintf(stderr, "%s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    CU_ASSERT_EQUAL(f.n, want_folded);
    CU_ASSERT(pc_graph_size(g) < pc_graph_size(x.g));
    CU_ASSERT_EQUAL(count_op(x.g, op) - count_op(g, op), op_fewer);
    pc_exec *r = pc_exec_new(g, &(pc_exec_opts){.kind = PC_BACKEND_JIT, .threads = 1}, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL_FATAL(pc_session_bind_inference(&x.s, g, &st, &f, r, err, sizeof err), 0);
    pc_exec_bind(r, pc_lookup(g, "tokens"), x.tokens);
    pc_exec_bind(r, pc_lookup(g, "targets"), x.targets);
    CU_ASSERT_EQUAL_FATAL(pc_exec_run(r, err, sizeof err), 0);
    const float *got = pc_exec_data(r, pf_output(g, false));
    double d = max_abs_diff(got, want, PF_N * PF_V);
    const pc_st_tensor *peft = pc_st_find(x.ex, "logits");
    CU_ASSERT_FATAL(peft && pc_shape_numel(peft->shape) == PF_N * PF_V);
    double e = max_abs_diff(got, peft->data, PF_N * PF_V);
    printf("\n    %s: %d values folded, %d -> %d graph values, folded vs unfolded logits %.2e, vs PEFT %.2e", dir,
           f.n, pc_graph_size(x.g), pc_graph_size(g), d, e);
    CU_ASSERT(d <= 1e-4);
    CU_ASSERT(e <= 1e-4);
    pc_exec_free(r);
    pc_exec_free(plain);
    pc_graph_free(g);
    pc_store_free(&st);
    pc_folded_free(&f);
    pf_close(&x);
}

/* DoRA: f = m / ‖W + s·BA‖ and f − 1 of 35 modules (no detached norm is left to compute);
 * LoHa (r 4 at dim 64 takes the rank-r² path): the 35 pairs of factors U, V (their Hadamard
 * products gone from the graph) */
static void test_dora(void) { fold_matches(PF_DATA("peft_dora_stories260k"), 70, PC_OP_stop_gradient, 35); }
static void test_loha(void) { fold_matches(PF_DATA("peft_loha_stories260k"), 70, PC_OP_mul, 70); }

/* a plain model and LoRA have nothing weights-only to fold: the graph stays as built */
static void test_nothing_to_fold(void) {
    pc_session ss;
    char err[1024];
    CU_ASSERT_EQUAL_FATAL(pc_session_open(&ss, NULL, PF_MODEL, NULL, PF_DATA("peft_lora_stories260k_l2c"), err, sizeof err), 0);
    pc_build_req req = {.task = PC_TASK_LM, .batch = 1, .seq = 8, .mode = PC_ADAPT_EVAL};
    pc_store st = {0};
    pc_folded f = {0};
    pc_graph *g = pc_session_inference_graph(&ss, &req, &st, &f, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    CU_ASSERT_EQUAL(f.n, 0);
    pc_graph_free(g);
    pc_store_free(&st);
    pc_session_close(&ss);
}

static CU_TestInfo tests[] = {
    {"dora_norms", test_dora},
    {"loha_delta", test_loha},
    {"nothing_to_fold", test_nothing_to_fold},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("fold_weights", tests)
