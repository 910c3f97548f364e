/* The Hugging Face Llama family against transformers (tests/golden/gen_hf_llama.py): logits and
 * loss of a bf16 sharded GQA model with llama3 RoPE scaling and of a tied f16 model, base and
 * with a PEFT LoRA adapter (q/k rows in HF order, no flag), on the interpreter and the compiled
 * backend. */
#include "cu_main.h"
#include "drivers/merge.h"
#include "peft_fixture.h"
#include "runtime/adapter_io.h"
#include "runtime/fileio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HF_DIR(v) PEFTC_SOURCE_DIR "/tests/data/hf_llama/" v

/* max |a - b| over the logits, relative to max |b| */
static double rel_diff(const float *a, const float *b, int64_t n) {
    double d = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return m > 0 ? d / m : d;
}

static void check_variant(const char *variant, bool with_adapter) {
    char model[512], adapter[600], expected[600];
    snprintf(model, sizeof model, "%s", variant);
    snprintf(adapter, sizeof adapter, "%s/lora", variant);
    snprintf(expected, sizeof expected, "%s/expected.safetensors", variant);
    pf_fixture x = {0};
    int rc = pf_open_model(&x, model, with_adapter ? adapter : NULL, expected, PC_ADAPT_EVAL, false, true);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    const pc_st_tensor *want = pc_st_find(x.ex, with_adapter ? "logits_lora" : "logits");
    const pc_st_tensor *want_loss = pc_st_find(x.ex, with_adapter ? "loss_lora" : "loss");
    CU_ASSERT_FATAL(want && want_loss);
    for (int kind = PC_BACKEND_REF; kind <= PC_BACKEND_JIT; kind++) {
        pc_exec *r = pf_run(&x, (pc_backend_kind)kind);
        CU_ASSERT_PTR_NOT_NULL_FATAL(r);
        pc_val lv = pf_output(x.g, false), loss_v = pf_output(x.g, true);
        CU_ASSERT_FATAL(lv != PC_NONE && loss_v != PC_NONE);
        int64_t n = pc_shape_numel(pc_val_shape(x.g, lv));
        CU_ASSERT_EQUAL_FATAL(n, pc_shape_numel(want->shape));
        double d = rel_diff(pc_exec_data(r, lv), want->data, n);
        double loss = *(const float *)pc_exec_data(r, loss_v), wl = *(const float *)want_loss->data;
        double dl = fabs(loss - wl) / fabs(wl);
        printf("\n  %s%s on %s: logits rel diff %.3g, loss %.6f vs transformers %.6f (rel %.3g)",
               strrchr(variant, '/') + 1, with_adapter ? " + LoRA" : "", kind ? "jit" : "ref", d, loss, wl, dl);
        CU_ASSERT(d <= 1e-4);
        CU_ASSERT(dl <= 1e-5);
        pc_exec_free(r);
    }
    pf_close(&x);
}

static void test_gqa_bf16(void) { check_variant(HF_DIR("gqa_bf16"), false); }
static void test_gqa_bf16_lora(void) { check_variant(HF_DIR("gqa_bf16"), true); }
static void test_tied_f16(void) { check_variant(HF_DIR("tied_f16"), false); }
static void test_tied_f16_lora(void) { check_variant(HF_DIR("tied_f16"), true); }

/* merge writes an HF directory (f32 safetensors + config): it loads back to PEFT's logits */
static void test_merge_writes_hf_dir(void) {
    char out[512], err[2048];
    snprintf(out, sizeof out, "%s/hf_llama_merged", PEFTC_BINARY_DIR);
    pc_session s;
    CU_ASSERT_EQUAL_FATAL(pc_session_open(&s, NULL, HF_DIR("gqa_bf16"), NULL, HF_DIR("gqa_bf16/lora"), err, sizeof err), 0);
    int n = 0;
    CU_ASSERT_EQUAL(pc_session_merge(&s, &n, err, sizeof err), 0);
    CU_ASSERT_EQUAL(n, 6);
    int rc = pc_session_write_model(&s, out, err, sizeof err);
    if (rc) printf("\n  %s", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    pc_session_close(&s);
    pf_fixture x = {0};
    CU_ASSERT_EQUAL_FATAL(pf_open_model(&x, out, NULL, HF_DIR("gqa_bf16/expected.safetensors"), PC_ADAPT_EVAL, false, true), 0);
    pc_exec *r = pf_run(&x, PC_BACKEND_JIT);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    pc_val lv = pf_output(x.g, false);
    const pc_st_tensor *want = pc_st_find(x.ex, "logits_lora");
    double d = rel_diff(pc_exec_data(r, lv), want->data, pc_shape_numel(want->shape));
    printf("\n  merged HF directory reopened: logits vs PEFT's unmerged rel diff %.3g", d);
    CU_ASSERT(d <= 1e-4);
    pc_exec_free(r);
    pf_close(&x);
}

/* PEFT saves an adapter in its model's dtype: a bf16 copy of the LoRA adapter loads (converted
 * to f32) and gives the logits of its f32 values */
static void test_bf16_adapter(void) {
    char dir[512], path[600], err[1024];
    snprintf(dir, sizeof dir, "%s/hf_llama_lora_bf16", PEFTC_BINARY_DIR);
    CU_ASSERT_EQUAL_FATAL(pc_mkdirs(dir, err, sizeof err), 0);
    pc_st_file *f = pc_st_open(HF_DIR("gqa_bf16/lora/adapter_model.safetensors"), err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    pc_st_writer *w = pc_st_writer_new();
    int n = pc_st_count(f);
    uint16_t *bufs[64] = {0};
    CU_ASSERT_FATAL(n <= 64);
    for (int i = 0; i < n; i++) {
        const pc_st_tensor *t = pc_st_get(f, i);
        int64_t k = pc_shape_numel(t->shape);
        bufs[i] = malloc((size_t)k * 2 + 2);
        const float *x = t->data;
        for (int64_t j = 0; j < k; j++) {
            uint32_t b;
            memcpy(&b, &x[j], 4);
            b += 0x7fff + ((b >> 16) & 1); /* round to nearest even */
            bufs[i][j] = (uint16_t)(b >> 16);
        }
        CU_ASSERT_EQUAL(pc_st_writer_add(w, t->name, PC_BF16, t->shape, bufs[i], err, sizeof err), 0);
    }
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    CU_ASSERT_EQUAL(pc_st_write(w, path, err, sizeof err), 0);
    pc_st_writer_free(w);
    for (int i = 0; i < n; i++) free(bufs[i]);
    pc_st_close(f);
    char *cfg = NULL;
    size_t len = 0;
    CU_ASSERT_EQUAL_FATAL(pc_read_file(HF_DIR("gqa_bf16/lora/adapter_config.json"), &cfg, &len, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    CU_ASSERT_EQUAL(pc_write_file_atomic(path, cfg, len, err, sizeof err), 0);
    free(cfg);
    pf_fixture x = {0};
    CU_ASSERT_EQUAL_FATAL(pf_open_model(&x, HF_DIR("gqa_bf16"), dir, HF_DIR("gqa_bf16/expected.safetensors"),
                                        PC_ADAPT_EVAL, false, true), 0);
    pc_exec *r = pf_run(&x, PC_BACKEND_JIT);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    const pc_st_tensor *want = pc_st_find(x.ex, "logits_lora");
    double d = rel_diff(pc_exec_data(r, pf_output(x.g, false)), want->data, pc_shape_numel(want->shape));
    printf("\n  bf16 adapter file: logits vs the f32 adapter's (PEFT) rel diff %.3g (bf16 rounding of the factors)", d);
    CU_ASSERT(d <= 2e-2 && d > 0);
    pc_exec_free(r);
    pf_close(&x);
}

static CU_TestInfo tests[] = {
    {"a bf16 adapter file loads, converted to f32", test_bf16_adapter},
    {"merge writes an HF directory that reloads to PEFT's logits", test_merge_writes_hf_dir},
    {"GQA, llama3 RoPE, bf16 shards = transformers", test_gqa_bf16},
    {"GQA bf16 with PEFT's LoRA = PEFT", test_gqa_bf16_lora},
    {"tied head, f16 = transformers", test_tied_f16},
    {"tied f16 with PEFT's LoRA = PEFT", test_tied_f16_lora},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("hf_llama", tests)
