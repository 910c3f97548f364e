/* The Hugging Face GPT-2 family against transformers and PEFT (tests/golden/gen_hf_gpt2.py): a
 * small GPT2LMHeadModel (learned positions, LayerNorm, tanh gelu, fused c_attn, Conv1D weights
 * stored [in, out], biases everywhere, tied head) with a PEFT LoRA adapter (c_attn, c_proj, c_fc;
 * PEFT's fan_in_fan_out = true) and a PEFT IA3 adapter: logits, loss and adapter gradients on the
 * interpreter and the compiled backend, merge = merge_and_unload (in the Conv1D layout), the
 * merged model written as a Hugging Face directory and read back, greedy decoding through the KV
 * cache = transformers' generate, PEFT's fan_in_fan_out rule, and an adapter saved by peftc =
 * PEFT's file. The fixture's vocabulary is 256, so the comparisons are written here (the shared
 * harness checks [2,16,512] logits). */
#include "compare.h"
#include "cu_main.h"
#include "temp_dir.h"
#include "drivers/decode.h"
#include "drivers/merge.h"
#include "frontend/gpt2.h"
#include "peft_fixture.h"
#include "runtime/adapter_config.h"
#include "runtime/atomic_dir.h"
#include "runtime/fileio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GPT2_DIR PEFTC_SOURCE_DIR "/tests/data/hf_gpt2"
#define EXPECTED GPT2_DIR "/expected.safetensors"
#define LORA_DIR GPT2_DIR "/lora"
#define IA3_DIR GPT2_DIR "/ia3"
#define LLAMA_DIR PEFTC_SOURCE_DIR "/tests/data/hf_llama/tied_f16"

enum { V = 256, NMOD = 8 /* c_attn, attn.c_proj, c_fc, mlp.c_proj in 2 layers */ };

/* max |a - b| relative to max |b| */
static double rel_diff(const float *a, const float *b, int64_t n) {
    double m = max_abs(b, n);
    double d = max_abs_diff(a, b, n);
    return m > 0 ? d / m : d;
}

static const pc_st_tensor *expected(const pc_st_file *f, const char *key) {
    const pc_st_tensor *t = pc_st_find(f, key);
    if (!t) fprintf(stderr, "expected.safetensors: no '%s'\n", key);
    return t;
}

/* logits [2,16,V] of a run vs `key` (relative), NAN when misshapen */
static double logits_rel(const pf_fixture *x, const pc_exec *r, const pc_st_file *f, const char *key) {
    pc_val lv = pf_output(x->g, false);
    const pc_st_tensor *w = expected(f, key);
    if (lv == PC_NONE || !w || !pc_shape_eq(pc_val_shape(x->g, lv), PC_SHAPE(PF_B, PF_S, V)) ||
        pc_shape_numel(w->shape) != (int64_t)PF_N * V)
        return NAN;
    return rel_diff(pc_exec_data(r, lv), w->data, (int64_t)PF_N * V);
}

/* logits, loss (and the gradient of every adapter tensor) vs transformers/PEFT, both backends */
static void check_model(const char *adapter, const char *suffix, int want_grads) {
    pf_fixture x;
    bool train = want_grads > 0;
    if (pf_open_model(&x, GPT2_DIR, adapter, EXPECTED, train ? PC_ADAPT_TRAIN : PC_ADAPT_EVAL, train, true)) {
        CU_FAIL("setup");
        pf_close(&x);
        return;
    }
    CU_ASSERT_EQUAL(x.s.model.info.conv1d, true);
    char lkey[64], losskey[64];
    snprintf(lkey, sizeof lkey, "logits%s", suffix);
    snprintf(losskey, sizeof losskey, "loss%s", suffix);
    const pc_st_tensor *wl = expected(x.ex, losskey);
    CU_ASSERT_FATAL(wl != NULL);
    const double want = *(const float *)wl->data;
    for (int kind = PC_BACKEND_REF; kind <= PC_BACKEND_JIT; kind++) {
        pc_exec *r = pf_run(&x, (pc_backend_kind)kind);
        CU_ASSERT_FATAL(r != NULL);
        pc_val lv = pf_output(x.g, true);
        CU_ASSERT_FATAL(lv != PC_NONE);
        double loss = *(const float *)pc_exec_data(r, lv), dl = fabs(loss - want) / fabs(want);
        double d = logits_rel(&x, r, x.ex, lkey);
        printf("\n    [%s] %s: loss %.7f vs %.7f (rel %.2e), logits rel diff %.2e", pc_backend_name((pc_backend_kind)kind),
               adapter ? strrchr(adapter, '/') + 1 : "base", loss, want, dl, d);
        CU_ASSERT(dl <= 1e-5);
        CU_ASSERT(d <= 1e-4);
        int checked = 0;
        double worst = 0;
        for (int i = 0; i < x.store.n; i++) {
            const pc_store_entry *e = &x.store.e[i];
            if (!(e->flags & PC_TRAINABLE)) continue;
            char gname[700], gkey[700];
            snprintf(gname, sizeof gname, "grad.%s", pc_val_name(x.g, e->v));
            snprintf(gkey, sizeof gkey, "grad.%s", e->key);
            pc_val gv = pc_lookup(x.g, gname);
            const pc_st_tensor *wg = expected(x.ex, gkey);
            CU_ASSERT_FATAL(gv != PC_NONE && wg != NULL && pc_shape_eq(wg->shape, e->shape));
            double rel = max_abs_diff(pc_exec_data(r, gv), wg->data, e->n) / fmax(1.0, max_abs(wg->data, e->n));
            worst = rel > worst || rel != rel ? rel : worst;
            checked++;
        }
        if (train) printf(", %d gradients: worst rel (to max(1, max|g|)) %.2e", checked, worst);
        CU_ASSERT_EQUAL(checked, want_grads);
        CU_ASSERT(worst <= 1e-4);
        pc_exec_free(r);
    }
    printf("\n");
    pf_close(&x);
}

static void test_base(void) { check_model(NULL, "", 0); }
static void test_lora(void) { check_model(LORA_DIR, "_lora", 2 * NMOD); }
static void test_ia3(void) { check_model(IA3_DIR, "_ia3", 6); }

/* a checkpoint tensor in the graph's layout vs PEFT's (Conv1D [in, out]): max |diff| */
static double vs_peft_layout(const char *key, const float *w, pc_shape ws, const pc_st_tensor *p) {
    int64_t n = pc_shape_numel(p->shape);
    if (pc_shape_numel(ws) != n) return INFINITY;
    if (!pc_gpt2_is_conv1d_key(key)) return pc_shape_eq(ws, p->shape) ? max_abs_diff(w, p->data, n) : INFINITY;
    const int64_t in = p->shape.dim[0], out = p->shape.dim[1];
    if (!pc_shape_eq(ws, PC_SHAPE(out, in))) return INFINITY;
    const float *pd = p->data;
    double d = 0;
    for (int64_t r = 0; r < in; r++)
        for (int64_t c = 0; c < out; c++) d = fmax(d, fabs((double)w[c * in + r] - pd[r * out + c]));
    return d;
}

/* the eval graph's logits of a session (no adapter params when merged) vs key */
static double session_logits(pf_fixture *x, const char *key, pc_backend_kind kind) {
    pc_store_free(&x->store);
    pc_graph_free(x->g);
    x->store = (pc_store){0}, x->g = NULL;
    if (pf_graph(x, PC_ADAPT_EVAL, false)) return NAN;
    pc_exec *r = pf_run(x, kind);
    double d = r ? logits_rel(x, r, x->ex, key) : NAN;
    pc_exec_free(r);
    return d;
}

/* merge = merge_and_unload (weights and biases, Conv1D layout), merged logits, the merged model
 * written as a Hugging Face directory (its tensors = PEFT's merged state dict) and read back,
 * then unmerged to the base */
static void check_merge(const char *adapter, const char *tag, int nmodules, int nmoved) {
    char err[2048], prefix[64], lkey[64];
    snprintf(prefix, sizeof prefix, "merged_%s.", tag);
    pf_fixture m;
    if (pf_open_model(&m, GPT2_DIR, adapter, EXPECTED, PC_ADAPT_EVAL, false, false)) { CU_FAIL("setup"); pf_close(&m); return; }
    int nmod = 0, rc = pc_session_merge(&m.s, &nmod, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(nmod, nmodules);
    int checked = 0, moved = 0;
    double worst = 0;
    for (int i = 0; i < pc_st_count(m.ex); i++) {
        const pc_st_tensor *t = pc_st_get(m.ex, i);
        if (strncmp(t->name, prefix, strlen(prefix))) continue;
        const char *key = t->name + strlen(prefix);
        pc_shape ws, bs;
        const float *w = pc_model_weight(&m.s.model, key, &ws), *base = m.s.model.family->weight(&m.s.model, key, &bs);
        CU_ASSERT_FATAL(w && base);
        double d = vs_peft_layout(key, w, ws, t);
        worst = d > worst || d != d ? d : worst;
        if (max_abs_diff(w, base, pc_shape_numel(ws)) > 1e-3) moved++;
        checked++;
    }
    printf("\n    %s: %d merged modules; %d tensors of merge_and_unload (Conv1D [in, out]) max |diff| %.2e, %d moved",
           tag, nmod, checked, worst, moved);
    CU_ASSERT_EQUAL(checked, 2 * NMOD); /* weight and bias of each projection */
    CU_ASSERT(worst <= 1e-6);
    CU_ASSERT_EQUAL(moved, nmoved);
    snprintf(lkey, sizeof lkey, "merged_logits_%s", tag);
    double dm = session_logits(&m, lkey, PC_BACKEND_REF);
    CU_ASSERT_EQUAL(m.store.n, 0); /* no adapter params left */
    snprintf(lkey, sizeof lkey, "logits_%s", tag);
    double du = session_logits(&m, lkey, PC_BACKEND_JIT);
    printf("\n    merged logits vs PEFT's merged model %.2e, vs PEFT unmerged %.2e (jit)", dm, du);
    CU_ASSERT(dm <= 1e-4);
    CU_ASSERT(du <= 1e-4);

    /* written: a Hugging Face directory with PEFT's merged tensors under the file's keys */
    char *dir = pc_test_temp_dir("gpt2"), out[600], file[800];
    snprintf(out, sizeof out, "%s/merged", dir);
    rc = pc_session_write_model(&m.s, out, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    snprintf(file, sizeof file, "%s/model.safetensors", out);
    pc_st_file *f = pc_st_open(file, err, sizeof err);
    CU_ASSERT_FATAL(f != NULL);
    double wd = 0;
    int nw = 0;
    for (int i = 0; i < pc_st_count(m.ex); i++) {
        const pc_st_tensor *t = pc_st_get(m.ex, i), *w;
        if (strncmp(t->name, prefix, strlen(prefix))) continue;
        CU_ASSERT_FATAL((w = pc_st_find(f, t->name + strlen(prefix))) != NULL);
        CU_ASSERT_FATAL(w->dtype == PC_F32 && pc_shape_eq(w->shape, t->shape));
        wd = fmax(wd, max_abs_diff(w->data, t->data, pc_shape_numel(t->shape)));
        nw++;
    }
    CU_ASSERT_EQUAL(pc_st_count(f), 28); /* every tensor of the checkpoint */
    pc_st_close(f);
    snprintf(file, sizeof file, "%s/config.json", out);
    CU_ASSERT_EQUAL(access(file, R_OK), 0);
    pf_fixture w;
    CU_ASSERT_EQUAL_FATAL(pf_open_model(&w, out, NULL, EXPECTED, PC_ADAPT_EVAL, false, false), 0);
    snprintf(lkey, sizeof lkey, "merged_logits_%s", tag);
    double dw = session_logits(&w, lkey, PC_BACKEND_REF);
    pf_close(&w);
    /* unmerged from the written directory: the base again */
    pc_session b;
    CU_ASSERT_EQUAL_FATAL(pc_session_open(&b, NULL, out, NULL, adapter, err, sizeof err), 0);
    int nun = 0;
    CU_ASSERT_EQUAL_FATAL(pc_session_unmerge(&b, &nun, err, sizeof err), 0);
    double restored = 0;
    for (int i = 0; i < b.model.nover; i++) {
        pc_shape s;
        const float *base = m.s.model.family->weight(&m.s.model, b.model.over[i].key, &s);
        CU_ASSERT_FATAL(base && pc_shape_eq(s, b.model.over[i].shape));
        int64_t k = pc_shape_numel(s);
        restored = fmax(restored, max_abs_diff(b.model.over[i].data, base, k) / fmax(1.0, max_abs(base, k)));
    }
    printf("\n    written: %d tensors = PEFT's merged (max |diff| %.2e), read back: logits %.2e; unmerged %d modules "
           "restore the base within %.2e\n", nw, wd, dw, nun, restored);
    CU_ASSERT(wd <= 1e-6);
    CU_ASSERT(dw <= 1e-4);
    CU_ASSERT_EQUAL(nun, nmod);
    CU_ASSERT(restored <= 1e-5);
    pc_session_close(&b);
    pf_close(&m);
    pc_remove_tree(dir);
    free(dir);
}

/* LoRA moves the 8 weights, not the biases; IA3 (c_attn, c_fc, mlp.c_proj feedforward) moves 6
 * weights and the biases of its output-scaled modules (c_attn, c_fc) */
static void test_lora_merge(void) { check_merge(LORA_DIR, "lora", NMOD, NMOD); }
static void test_ia3_merge(void) { check_merge(IA3_DIR, "ia3", 6, 10); }

/* greedy decoding through the decode graph and the KV cache = transformers' generate, and its
 * logits at every position run */
static void check_greedy(const char *adapter, bool merge, const char *ids_key, const char *logits_key) {
    char err[2048];
    pc_st_file *ex = pc_st_open(EXPECTED, err, sizeof err);
    CU_ASSERT_FATAL(ex != NULL);
    const pc_st_tensor *prompt = expected(ex, "prompt"), *want = expected(ex, ids_key), *wl = expected(ex, logits_key);
    CU_ASSERT_FATAL(prompt && want && wl);
    const int np = (int)pc_shape_numel(prompt->shape), nt = (int)pc_shape_numel(want->shape), steps = nt - 1;
    pc_session s;
    CU_ASSERT_EQUAL_FATAL(pc_session_open(&s, NULL, GPT2_DIR, NULL, adapter, err, sizeof err), 0);
    if (merge) CU_ASSERT_EQUAL_FATAL(pc_session_merge(&s, NULL, err, sizeof err), 0);
    int32_t tokens[64];
    float *logits = malloc((size_t)steps * V * sizeof *logits);
    CU_ASSERT_FATAL(logits && nt <= 64 && pc_shape_numel(wl->shape) == (int64_t)steps * V);
    for (int kind = PC_BACKEND_REF; kind <= PC_BACKEND_JIT; kind++) {
        pc_exec_opts eo = {.kind = (pc_backend_kind)kind};
        pc_decode_opts o = {.steps = steps, .temperature = 0, .prompt = prompt->data, .n_prompt = np, .exec = &eo};
        int ntok = 0, npos = 0;
        int rc = pc_decode(&s, &o, tokens, &ntok, logits, &npos, err, sizeof err);
        if (rc) fprintf(stderr, "%s\n", err);
        CU_ASSERT_EQUAL_FATAL(rc, 0);
        CU_ASSERT_EQUAL(ntok, nt);
        CU_ASSERT_EQUAL(npos, steps);
        int same = ntok == nt && memcmp(tokens, want->data, (size_t)nt * sizeof *tokens) == 0;
        double d = rel_diff(logits, wl->data, (int64_t)steps * V);
        printf("\n    [%s] %s%s: %d ids %s transformers' greedy (", pc_backend_name((pc_backend_kind)kind),
               adapter ? "LoRA" : "base", merge ? " merged" : "", ntok, same ? "=" : "!=");
        for (int i = 0; i < ntok; i++) printf("%s%d", i ? " " : "", tokens[i]);
        printf("), logits of %d positions rel diff %.2e", npos, d);
        CU_ASSERT(same);
        CU_ASSERT(d <= 1e-4);
    }
    printf("\n");
    free(logits);
    pc_session_close(&s);
    pc_st_close(ex);
}

static void test_greedy(void) { check_greedy(NULL, false, "greedy", "greedy_logits"); }
static void test_greedy_lora(void) { check_greedy(LORA_DIR, false, "greedy_lora", "greedy_logits_lora"); }
static void test_greedy_lora_merged(void) { check_greedy(LORA_DIR, true, "greedy_lora", "greedy_logits_lora"); }

/* a copy of `src` (an adapter_config.json) with "fan_in_fan_out" set to `v`, in dir */
static void config_with(const char *src, const char *dir, bool v, char *out, size_t len) {
    char err[512], *text = NULL;
    size_t n = 0;
    CU_ASSERT_EQUAL_FATAL(pc_read_file(src, &text, &n, err, sizeof err), 0);
    const char *from = "\"fan_in_fan_out\": false";
    char *p = strstr(text, from);
    if (!p) p = strstr(text, from = "\"fan_in_fan_out\": true");
    CU_ASSERT_FATAL(p != NULL);
    char *buf = malloc(n + 8);
    CU_ASSERT_FATAL(buf != NULL);
    int k = snprintf(buf, n + 8, "%.*s\"fan_in_fan_out\": %s%s", (int)(p - text), text, v ? "true" : "false",
                     p + strlen(from));
    snprintf(out, len, "%s/adapter_config_%s.json", dir, v ? "true" : "false");
    CU_ASSERT_EQUAL_FATAL(pc_write_file_atomic(out, buf, (size_t)k, err, sizeof err), 0);
    free(buf);
    free(text);
}

/* PEFT sets fan_in_fan_out true on Conv1D and false on nn.Linear, warning; peftc does the same
 * (and IA3 with fan_in_fan_out = true builds) */
static void test_fan_in_fan_out(void) {
    char err[2048], cfg[700];
    char *dir = pc_test_temp_dir("gpt2");
    struct { const char *model, *src; bool given, want; } cases[] = {
        {GPT2_DIR, LORA_DIR "/adapter_config.json", false, true},
        {GPT2_DIR, LORA_DIR "/adapter_config.json", true, true},
        {GPT2_DIR, IA3_DIR "/adapter_config.json", false, true},
        {GPT2_DIR, IA3_DIR "/adapter_config.json", true, true},
        {LLAMA_DIR, LLAMA_DIR "/lora/adapter_config.json", true, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        config_with(cases[i].src, dir, cases[i].given, cfg, sizeof cfg);
        pc_session s;
        int rc = pc_session_open(&s, NULL, cases[i].model, NULL, cfg, err, sizeof err);
        if (rc) fprintf(stderr, "%s\n", err);
        CU_ASSERT_EQUAL_FATAL(rc, 0);
        CU_ASSERT_EQUAL(s.adapter.cfg->fan_in_fan_out, cases[i].want);
        pc_build_req req = {.task = PC_TASK_LM, .batch = 1, .seq = 4, .mode = PC_ADAPT_TRAIN};
        pc_graph *g = pc_session_build(&s, &req, true, err, sizeof err);
        if (!g) fprintf(stderr, "%s\n", err);
        CU_ASSERT_PTR_NOT_NULL(g);
        pc_graph_free(g);
        pc_session_close(&s);
    }
    /* the default adapter of a GPT-2: every projection, fan_in_fan_out as PEFT sets it */
    pc_session s;
    CU_ASSERT_EQUAL_FATAL(pc_session_open(&s, NULL, GPT2_DIR, NULL, NULL, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(pc_session_default_adapter(&s, err, sizeof err), 0);
    CU_ASSERT_TRUE(s.adapter.cfg->fan_in_fan_out);
    pc_build_req req = {.task = PC_TASK_LM, .batch = 1, .seq = 4, .mode = PC_ADAPT_TRAIN};
    pc_graph *g = pc_session_build(&s, &req, true, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    int lora_a = 0;
    for (int v = 0; v < g->nvals; v++) {
        const pc_value *x = pc_v(g, v);
        if (x->op == PC_OP_param && x->key && strstr(x->key, "lora_A")) lora_a++;
    }
    CU_ASSERT_EQUAL(lora_a, NMOD);
    pc_graph_free(g);
    pc_session_close(&s);
    pc_remove_tree(dir);
    free(dir);
}

/* an adapter peftc saves = PEFT's file (keys, shapes [r, in] / [out, r], values), its config
 * with fan_in_fan_out true */
static void test_saved_adapter(void) {
    char err[2048];
    pf_fixture x;
    if (pf_open_model(&x, GPT2_DIR, LORA_DIR, EXPECTED, PC_ADAPT_TRAIN, true, true)) { CU_FAIL("setup"); pf_close(&x); return; }
    char *dir = pc_test_temp_dir("gpt2");
    pc_st_writer *w = pc_st_writer_new();
    CU_ASSERT_FATAL(w != NULL);
    CU_ASSERT_EQUAL_FATAL(pc_store_write(&x.store, PC_TRAINABLE, w, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(pc_adapter_write_files(dir, x.s.adapter.cfg, w, err, sizeof err), 0);
    pc_st_writer_free(w);
    pc_adapter_files a = {0};
    CU_ASSERT_EQUAL_FATAL(pc_adapter_load(dir, &a, err, sizeof err), 0);
    CU_ASSERT_TRUE(a.cfg->fan_in_fan_out);
    const pc_st_file *peft = x.s.adapter.weights;
    CU_ASSERT_EQUAL(pc_st_count(a.weights), pc_st_count(peft));
    int same = 0;
    for (int i = 0; i < pc_st_count(peft); i++) {
        const pc_st_tensor *p = pc_st_get(peft, i), *o = pc_st_find(a.weights, p->name);
        if (o && pc_shape_eq(o->shape, p->shape) && o->nbytes == p->nbytes && !memcmp(o->data, p->data, p->nbytes)) same++;
    }
    printf("\n    %d of %d tensors identical to PEFT's file\n", same, pc_st_count(peft));
    CU_ASSERT_EQUAL(same, 2 * NMOD);
    pc_adapter_close(&a);
    pc_remove_tree(dir);
    free(dir);
    pf_close(&x);
}

/* the layout of the original openai-community/gpt2 file: keys without "transformer.", the
 * causal-mask buffers h.{i}.attn.bias; read under the prefixed keys, written back bare */
static void test_bare_keys(void) {
    char err[2048], path[900];
    char *dir = pc_test_temp_dir("gpt2");
    pc_st_file *src = pc_st_open(GPT2_DIR "/model.safetensors", err, sizeof err);
    CU_ASSERT_FATAL(src != NULL);
    pc_st_writer *w = pc_st_writer_new();
    float *mask = calloc(64 * 64, sizeof *mask);
    CU_ASSERT_FATAL(w && mask);
    for (int i = 0; i < 64; i++)
        for (int j = 0; j <= i; j++) mask[i * 64 + j] = 1;
    for (int i = 0; i < pc_st_count(src); i++) {
        const pc_st_tensor *t = pc_st_get(src, i);
        CU_ASSERT_FATAL(strncmp(t->name, "transformer.", 12) == 0);
        CU_ASSERT_EQUAL_FATAL(pc_st_writer_add(w, t->name + 12, t->dtype, t->shape, t->data, err, sizeof err), 0);
    }
    CU_ASSERT_EQUAL_FATAL(pc_st_writer_add(w, "h.0.attn.bias", PC_F32, PC_SHAPE(1, 1, 64, 64), mask, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(pc_st_writer_add(w, "h.1.attn.bias", PC_F32, PC_SHAPE(1, 1, 64, 64), mask, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CU_ASSERT_EQUAL_FATAL(pc_st_write(w, path, err, sizeof err), 0);
    pc_st_writer_free(w);
    free(mask);
    pc_st_close(src);
    char *text = NULL;
    size_t n = 0;
    CU_ASSERT_EQUAL_FATAL(pc_read_file(GPT2_DIR "/config.json", &text, &n, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/config.json", dir);
    CU_ASSERT_EQUAL_FATAL(pc_write_file_atomic(path, text, n, err, sizeof err), 0);
    free(text);

    pf_fixture x;
    CU_ASSERT_EQUAL_FATAL(pf_open_model(&x, dir, LORA_DIR, EXPECTED, PC_ADAPT_EVAL, false, true), 0);
    CU_ASSERT_STRING_EQUAL(x.s.model.family->name, "hf-gpt2");
    pc_exec *r = pf_run(&x, PC_BACKEND_REF);
    CU_ASSERT_FATAL(r != NULL);
    double d = logits_rel(&x, r, x.ex, "logits_lora");
    pc_exec_free(r);
    CU_ASSERT_EQUAL_FATAL(pc_session_merge(&x.s, NULL, err, sizeof err), 0);
    char out[800];
    snprintf(out, sizeof out, "%s/merged", dir);
    CU_ASSERT_EQUAL_FATAL(pc_session_write_model(&x.s, out, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    pc_st_file *f = pc_st_open(path, err, sizeof err);
    CU_ASSERT_FATAL(f != NULL);
    const pc_st_tensor *wq = pc_st_find(f, "h.0.attn.c_attn.weight"), *want = pc_st_find(x.ex, "merged_lora.transformer.h.0.attn.c_attn.weight");
    CU_ASSERT_FATAL(wq && want && pc_shape_eq(wq->shape, want->shape));
    double dm = max_abs_diff(wq->data, want->data, pc_shape_numel(want->shape));
    printf("\n    bare keys + mask buffers: LoRA logits rel diff %.2e; written back bare (%d tensors, no buffers), "
           "c_attn = PEFT's merged within %.2e\n", d, pc_st_count(f), dm);
    CU_ASSERT(d <= 1e-4);
    CU_ASSERT(dm <= 1e-6);
    CU_ASSERT_EQUAL(pc_st_count(f), 28);
    CU_ASSERT_PTR_NULL(pc_st_find(f, "h.0.attn.bias"));
    pc_st_close(f);
    pf_close(&x);
    pc_remove_tree(dir);
    free(dir);
}

/* what the family refuses, by field */
static void test_config_errors(void) {
    char err[2048];
    pc_gpt2_config c = pc_gpt2_config_default();
    c.dim = 32, c.hidden_dim = 64, c.n_layers = 1, c.n_heads = 5, c.vocab_size = 8, c.n_positions = 8;
    CU_ASSERT_EQUAL(pc_gpt2_config_check(&c, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "n_heads (5) does not divide dim (32)"));
    CU_ASSERT_TRUE(pc_gpt2_is_conv1d_key("transformer.h.11.mlp.c_proj.weight"));
    CU_ASSERT_FALSE(pc_gpt2_is_conv1d_key("transformer.h.1.mlp.c_proj.bias"));
    CU_ASSERT_FALSE(pc_gpt2_is_conv1d_key("transformer.wte.weight"));
    CU_ASSERT_FALSE(pc_gpt2_is_conv1d_key("lm_head.weight"));
    /* a directory whose config asks for cross-attention */
    char *dir = pc_test_temp_dir("gpt2"), path[900], *text = NULL;
    size_t n = 0;
    CU_ASSERT_EQUAL_FATAL(pc_read_file(GPT2_DIR "/config.json", &text, &n, err, sizeof err), 0);
    char *p = strstr(text, "\"add_cross_attention\": false");
    CU_ASSERT_FATAL(p != NULL);
    memcpy(p, "\"add_cross_attention\": true ", 28);
    snprintf(path, sizeof path, "%s/config.json", dir);
    CU_ASSERT_EQUAL_FATAL(pc_write_file_atomic(path, text, n, err, sizeof err), 0);
    free(text);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CU_ASSERT_EQUAL_FATAL(link(GPT2_DIR "/model.safetensors", path) == 0 || symlink(GPT2_DIR "/model.safetensors", path) == 0, 1);
    pc_model m;
    CU_ASSERT_EQUAL(pc_model_open(&m, dir, NULL, err, sizeof err), -1);
    printf("\n    %s\n", err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "field \"add_cross_attention\": true"));
    pc_remove_tree(dir);
    free(dir);
}

static CU_TestInfo tests[] = {
    {"base model = transformers (logits, loss; ref and jit)", test_base},
    {"PEFT's LoRA on Conv1D = PEFT (logits, loss, gradients)", test_lora},
    {"PEFT's IA3 on Conv1D = PEFT (logits, loss, gradients)", test_ia3},
    {"LoRA merge = merge_and_unload; written, read back, unmerged", test_lora_merge},
    {"IA3 merge = merge_and_unload; written, read back, unmerged", test_ia3_merge},
    {"greedy decoding (KV cache) = transformers' generate", test_greedy},
    {"greedy with LoRA unmerged = PEFT's generate", test_greedy_lora},
    {"greedy with LoRA merged = PEFT's generate", test_greedy_lora_merged},
    {"fan_in_fan_out follows the module as in PEFT", test_fan_in_fan_out},
    {"a saved adapter = PEFT's file", test_saved_adapter},
    {"bare GPT2Model keys and mask buffers", test_bare_keys},
    {"config errors", test_config_errors},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("hf_gpt2", tests)
