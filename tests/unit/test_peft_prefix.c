/* Prefix tuning against adapter directories written by Hugging Face PEFT
 * (tests/golden/gen_peft_prefix.py), 4 prefix rows on stories260K (GQA: 4 kv heads of 8):
 *   tests/data/peft_prefix_stories260k/       prompt_embeddings [4, 2*5*32]
 *   tests/data/peft_prefix_proj_stories260k/  prefix_projection: the saved table, and the
 *                                             encoder's params (prefix_encoder.safetensors)
 *   tests/data/peft_prefix_gpt2/              the tiny GPT-2 of tests/data/hf_gpt2
 *   tests/data/peft_prefix_hf_llama/          the HF Llama of tests/data/hf_llama/gqa_bf16
 * Loss, logits and gradients vs PEFT on the reference interpreter and the JIT; the projection's
 * saved table (save_tensors) vs PEFT's save; a trained projection adapter runs from its table
 * alone; greedy generation (the prefix in KV-cache rows 0..3, tokens from position 4) equals
 * greedy decoding over PEFT's forward; merge is refused; bad tables and sizes are clear errors.
 * peftc's ablations (peftc_prefix_placement): embedding-only = PEFT's prompt tuning with the same
 * table; infix = the fixture's hand model. */
#include "cu_main.h"
#include "compare.h"
#include "peft_fixture.h"
#include "temp_dir.h"
#include "drivers/decode.h"
#include "drivers/merge.h"
#include "passes/pipeline.h"
#include "runtime/safetensors.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PLAIN_DIR PF_DATA("peft_prefix_stories260k")
#define PROJ_DIR PF_DATA("peft_prefix_proj_stories260k")

enum { S = PF_S, V = PF_V, P = 4, WIDTH = 2 * 5 * 32 };

/* 1. no projection: the table is the one trainable tensor */
static void test_plain_loss_and_grad(void) {
    pf_fixture x;
    if (pf_open(&x, PLAIN_DIR, NULL, PC_ADAPT_TRAIN, true, true)) { CU_FAIL("setup"); pf_close(&x); return; }
    CU_ASSERT_EQUAL(x.s.adapter.cfg->peft_type, PC_PEFT_PREFIX_TUNING);
    CU_ASSERT_EQUAL(pc_session_virtual_tokens(&x.s), P);
    CU_ASSERT_EQUAL(pc_session_prefix_positions(&x.s), P);
    const pc_store_entry *e = pc_store_find(&x.store, "prompt_embeddings");
    CU_ASSERT_FATAL(e != NULL);
    CU_ASSERT((e->flags & PC_TRAINABLE) && e->loaded && pc_shape_eq(e->shape, PC_SHAPE(P, WIDTH)));
    pf_check_loss_logits_grads(&x, PC_BACKEND_REF, 1, NULL, NULL, 0);
    pf_check_loss_logits_grads(&x, PC_BACKEND_JIT, 1, NULL, NULL, 0);
    pf_close(&x);
}

/* the projection fixture as a training run: the encoder's params from prefix_encoder.safetensors */
static int open_projection(pf_fixture *x, pc_st_file **enc) {
    char err[2048];
    *enc = NULL;
    /* the config alone: a training run (a directory's saved table would run without the MLP) */
    if (pf_open(x, PROJ_DIR "/adapter_config.json", PROJ_DIR "/expected.safetensors", PC_ADAPT_TRAIN, true, false))
        return -1;
    if (!(*enc = pc_st_open(PROJ_DIR "/prefix_encoder.safetensors", err, sizeof err))) return fprintf(stderr, "%s\n", err), -1;
    pc_build_req req = {.task = PC_TASK_LM, .batch = PF_B, .seq = PF_S, .output_logits = true, .mode = PC_ADAPT_TRAIN};
    if (!(x->g = pc_session_build(&x->s, &req, true, err, sizeof err)) ||
        pc_run_pipeline(&x->g, "autograd", NULL, err, sizeof err) ||
        pc_session_store(&x->s, x->g, &x->store, *enc, 0, err, sizeof err))
        return fprintf(stderr, "projection: %s\n", err), -1;
    return 0;
}

typedef struct {
    float *data;
    pc_shape shape;
    int puts;
} captured;

static int capture_put(void *ctx, const char *key, pc_shape shape, const float *data) {
    captured *c = ctx;
    if (strcmp(key, "prompt_embeddings")) return -1;
    c->puts++;
    c->shape = shape;
    free(c->data);
    c->data = malloc((size_t)pc_shape_numel(shape) * sizeof *c->data);
    if (!c->data) return -1;
    memcpy(c->data, data, (size_t)pc_shape_numel(shape) * sizeof *c->data);
    return 0;
}

/* 2. projection: embedding -> Linear -> Tanh -> Linear, 5 trainable tensors keyed as PEFT's
 * prompt encoder; what is saved is its output, = PEFT's saved prompt_embeddings */
static void test_projection_loss_grads_and_save(void) {
    pf_fixture x;
    pc_st_file *enc = NULL;
    if (open_projection(&x, &enc)) { CU_FAIL("setup"); pf_close(&x); pc_st_close(enc); return; }
    int ntrain = 0;
    for (int i = 0; i < x.store.n; i++)
        if (x.store.e[i].flags & PC_TRAINABLE) {
            const pc_st_tensor *t = pc_st_find(enc, x.store.e[i].key);
            CU_ASSERT(t && !memcmp(t->data, x.store.e[i].data, t->nbytes));
            ntrain++;
        }
    CU_ASSERT_EQUAL(ntrain, 5);
    CU_ASSERT(pc_store_find(&x.store, "prompt_embeddings") == NULL);
    CU_ASSERT(pc_store_find(&x.store, "prompt_encoder.transform.2.weight") != NULL);
    pf_check_loss_logits_grads(&x, PC_BACKEND_REF, 5, NULL, NULL, 0);
    pf_check_loss_logits_grads(&x, PC_BACKEND_JIT, 5, NULL, NULL, 0);

    char err[1024] = "";
    pc_adapt_ctx *cx = pc_session_adapter(&x.s, PC_ADAPT_TRAIN, true, 0, err, sizeof err);
    CU_ASSERT_FATAL(cx != NULL);
    captured c = {0};
    pc_tensor_io io = {pc_store_tensor, capture_put, &x.store, &c, pc_store_param_key, NULL, NULL};
    int r = x.s.method->save_tensors(cx, pc_adapt_state(cx), &io, err, sizeof err);
    CU_ASSERT_EQUAL(r, 1);
    pc_st_file *saved = pc_st_open(PROJ_DIR "/adapter_model.safetensors", err, sizeof err);
    const pc_st_tensor *want = saved ? pc_st_find(saved, "prompt_embeddings") : NULL;
    CU_ASSERT_FATAL(want != NULL && c.puts == 1 && c.data != NULL);
    CU_ASSERT(pc_shape_eq(c.shape, PC_SHAPE(P, WIDTH)));
    double d = max_abs_diff(c.data, want->data, (int64_t)P * WIDTH);
    printf("    saved table (encoder output) vs PEFT's saved prompt_embeddings: max |diff| %.2e\n", d);
    CU_ASSERT(d <= 1e-5);
    free(c.data);
    pc_st_close(saved);
    pc_adapt_free(cx);
    pc_st_close(enc);
    pf_close(&x);
}

/* 3. the trained projection adapter runs from its table (no encoder params at all) */
static void test_projection_trained_runs_from_table(void) {
    pf_fixture x;
    if (pf_open(&x, PROJ_DIR, NULL, PC_ADAPT_EVAL, false, true)) { CU_FAIL("setup"); pf_close(&x); return; }
    CU_ASSERT(pc_store_find(&x.store, "prompt_encoder.embedding.weight") == NULL);
    CU_ASSERT(pc_store_find(&x.store, "prompt_embeddings") != NULL);
    pc_exec *r = pf_run(&x, PC_BACKEND_REF);
    CU_ASSERT_FATAL(r != NULL);
    double d = pf_logits_diff(&x, r, NULL, "logits");
    printf("\n    trained projection adapter (table only): logits max |diff| vs PEFT %.2e\n", d);
    CU_ASSERT(d <= 1e-4);
    pc_exec_free(r);
    pf_close(&x);
}

/* 4. greedy generation = greedy over PEFT's forward (gen_ids), on both backends; for the plain
 * fixture the decode logits of the batch's row 0 also equal the LM graph's */
static void check_generate(const char *dir) {
    char err[2048] = "";
    pf_fixture x;
    if (pf_open(&x, dir, NULL, PC_ADAPT_EVAL, false, true)) { CU_FAIL("setup"); pf_close(&x); return; }
    const pc_st_tensor *gp = pc_st_find(x.ex, "gen_prompt"), *gi = pc_st_find(x.ex, "gen_ids");
    CU_ASSERT_FATAL(gp && gi && gp->dtype == PC_I32 && gi->dtype == PC_I32);
    int np = (int)pc_shape_numel(gp->shape), nwant = (int)pc_shape_numel(gi->shape);
    const int32_t *want = gi->data;
    static const pc_backend_kind kinds[2] = {PC_BACKEND_REF, PC_BACKEND_JIT};
    pc_exec *r = pf_run(&x, PC_BACKEND_REF);
    CU_ASSERT_FATAL(r != NULL);
    const float *lm = pf_logits(&x, r);
    float *logits = calloc((size_t)S * V, sizeof *logits);
    CU_ASSERT_FATAL(lm != NULL && logits != NULL);
    printf("\n");
    for (int k = 0; k < 2; k++) {
        pc_exec_opts eo = {.kind = kinds[k]};
        int32_t out[64];
        CU_ASSERT_FATAL(nwant < 64);
        int ntok = 0, npos = 0;
        /* steps positions predict steps + 1 - np new ids */
        pc_decode_opts o = {.steps = nwant - 1, .prompt = gp->data, .n_prompt = np, .temperature = 0, .exec = &eo};
        int rc = pc_decode(&x.s, &o, out, &ntok, NULL, &npos, err, sizeof err);
        if (rc) fprintf(stderr, "decode: %s\n", err);
        CU_ASSERT_EQUAL_FATAL(rc, 0);
        int same = ntok == nwant && !memcmp(out, want, sizeof(int32_t) * (size_t)nwant);
        printf("    [%s] greedy: %d ids, %s PEFT's forward greedy\n", pc_backend_name(kinds[k]), ntok, same ? "equal to" : "NOT equal to");
        if (!same)
            for (int i = 0; i < ntok; i++) printf("%d%s", (int)out[i], i + 1 < ntok ? "," : "\n");
        CU_ASSERT(same);
        /* the batch's row 0 forced through the decode loop */
        pc_decode_opts f = {.steps = S, .prompt = x.tokens, .n_prompt = S, .temperature = 0, .exec = &eo};
        int32_t ftok[S + 1];
        for (int i = 0; i < S * V; i++) logits[i] = NAN;
        rc = pc_decode(&x.s, &f, ftok, &ntok, logits, &npos, err, sizeof err);
        CU_ASSERT_EQUAL_FATAL(rc, 0);
        CU_ASSERT_EQUAL(npos, S);
        double e = max_abs_diff(logits, lm, (int64_t)S * V);
        printf("    [%s] decode row 0, %d positions after %d prefix rows: max |diff| vs LM graph %.2e\n",
               pc_backend_name(kinds[k]), npos, P, e);
        CU_ASSERT(e <= 1e-4);
    }
    free(logits);
    pc_exec_free(r);
    pf_close(&x);
}

static void test_generate_plain(void) { check_generate(PLAIN_DIR); }
static void test_generate_projection(void) { check_generate(PROJ_DIR); }

/* 5. Hugging Face models as transformers runs them (vocab 256): GPT-2 (no GQA: token_dim =
 * n_embd; learned positions shifted by P) and the GQA Llama of hf_llama/gqa_bf16 (HF row order,
 * llama3 RoPE scaling): loss, logits and the table's gradient vs PEFT on both backends, and
 * greedy generation */
#define HF_MODEL(m) PEFTC_SOURCE_DIR "/tests/data/" m
enum { GV = 256 };

static void check_hf(const char *model, const char *adapter, int64_t width) {
    pf_fixture x;
    if (pf_open_model(&x, model, adapter, NULL, PC_ADAPT_TRAIN, true, true)) { CU_FAIL("setup"); pf_close(&x); return; }
    const char *name = strrchr(model, '/') + 1;
    CU_ASSERT_EQUAL(pc_session_prefix_positions(&x.s), P);
    const pc_store_entry *e = pc_store_find(&x.store, "prompt_embeddings");
    CU_ASSERT_FATAL(e != NULL);
    CU_ASSERT(e->loaded && pc_shape_eq(e->shape, PC_SHAPE(P, width)));
    const pc_st_tensor *wl = pc_st_find(x.ex, "loss"), *wlog = pc_st_find(x.ex, "logits"),
                       *wg = pc_st_find(x.ex, "grad.prompt_embeddings");
    CU_ASSERT_FATAL(wl && wlog && wg && pc_shape_numel(wlog->shape) == (int64_t)PF_N * GV);
    static const pc_backend_kind kinds[2] = {PC_BACKEND_REF, PC_BACKEND_JIT};
    printf("\n");
    for (int k = 0; k < 2; k++) {
        pc_exec *r = pf_run(&x, kinds[k]);
        CU_ASSERT_FATAL(r != NULL);
        pc_val lv = pf_output(x.g, true), gv = pc_lookup(x.g, "grad.prompt_embeddings");
        pc_val logv = pf_output(x.g, false);
        CU_ASSERT_FATAL(lv != PC_NONE && gv != PC_NONE && logv != PC_NONE);
        CU_ASSERT_FATAL(pc_shape_numel(pc_val_shape(x.g, logv)) == (int64_t)PF_N * GV);
        float loss = *(const float *)pc_exec_data(r, lv), want = *(const float *)wl->data;
        double dl = max_abs_diff(pc_exec_data(r, logv), wlog->data, (int64_t)PF_N * GV);
        double dg = max_abs_diff(pc_exec_data(r, gv), wg->data, e->n), gmax = max_abs(wg->data, e->n);
        printf("    [%s] %s: loss %.7f (PEFT %.7f, rel %.2e), logits max |diff| %.2e, grad max |diff| %.2e (max |g| %.2e)\n",
               pc_backend_name(kinds[k]), name, loss, want, fabs(loss - want) / fabs(want), dl, dg, gmax);
        CU_ASSERT(fabs(loss - want) <= 1e-5 * fabs(want));
        CU_ASSERT(dl <= 1e-4);
        CU_ASSERT(dg <= 1e-4 * (gmax > 1 ? gmax : 1));
        pc_exec_free(r);
    }
    const pc_st_tensor *gp = pc_st_find(x.ex, "gen_prompt"), *gi = pc_st_find(x.ex, "gen_ids");
    CU_ASSERT_FATAL(gp && gi);
    int np = (int)pc_shape_numel(gp->shape), nwant = (int)pc_shape_numel(gi->shape);
    CU_ASSERT_FATAL(nwant < 64);
    for (int k = 0; k < 2; k++) {
        char err[2048] = "";
        pc_exec_opts eo = {.kind = kinds[k]};
        int32_t out[64];
        int ntok = 0;
        pc_decode_opts o = {.steps = nwant - 1, .prompt = gp->data, .n_prompt = np, .temperature = 0, .exec = &eo};
        int rc = pc_decode(&x.s, &o, out, &ntok, NULL, NULL, err, sizeof err);
        if (rc) fprintf(stderr, "decode: %s\n", err);
        CU_ASSERT_EQUAL_FATAL(rc, 0);
        int same = ntok == nwant && !memcmp(out, gi->data, sizeof(int32_t) * (size_t)nwant);
        printf("    [%s] %s greedy: %d ids, %s PEFT's forward greedy\n", pc_backend_name(kinds[k]), name, ntok,
               same ? "equal to" : "NOT equal to");
        CU_ASSERT(same);
    }
    pf_close(&x);
}

static void test_gpt2(void) { check_hf(HF_MODEL("hf_gpt2"), PF_DATA("peft_prefix_gpt2"), 2 * 2 * 32); }
static void test_hf_llama(void) { check_hf(HF_MODEL("hf_llama/gqa_bf16"), PF_DATA("peft_prefix_hf_llama"), 2 * 2 * 16); }

/* 6. nothing to merge into */
static void test_not_mergeable(void) {
    char err[2048] = "";
    pc_session s;
    CU_ASSERT_EQUAL_FATAL(pc_session_open(&s, NULL, PF_MODEL, NULL, PLAIN_DIR, err, sizeof err), 0);
    int rc = pc_session_merge(&s, NULL, err, sizeof err);
    printf("\n    merge: rc %d, \"%s\"\n", rc, err);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT(strstr(err, "cannot be merged") != NULL);
    CU_ASSERT_FALSE(s.merged);
    pc_session_close(&s);
}

/* an adapter directory with `config` and a prompt_embeddings of rows x cols (data, or zeros) */
static char *write_adapter_data(const char *config, int64_t rows, int64_t cols, const float *data) {
    char *d = pc_test_temp_dir("prefix");
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/adapter_config.json", d);
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs(config, f);
    fclose(f);
    float *z = calloc((size_t)(rows * cols), sizeof *z);
    pc_st_writer *w = pc_st_writer_new();
    CU_ASSERT_FATAL(z && w);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", d);
    CU_ASSERT_EQUAL(pc_st_writer_add(w, "prompt_embeddings", PC_F32, PC_SHAPE(rows, cols), data ? data : z, err, sizeof err), 0);
    CU_ASSERT_EQUAL(pc_st_write(w, path, err, sizeof err), 0);
    pc_st_writer_free(w);
    free(z);
    return d;
}

static char *write_adapter(const char *config, int64_t rows, int64_t cols) {
    return write_adapter_data(config, rows, cols, NULL);
}

static void remove_adapter(char *d) {
    char path[512];
    snprintf(path, sizeof path, "%s/adapter_config.json", d), unlink(path);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", d), unlink(path);
    rmdir(d);
    free(d);
}

/* 7. peftc's embedding-only ablation is prompt tuning with the prefix's params: with PEFT's
 * prompt-tuning table [4, 64] it gives PEFT's prompt-tuning loss, logits and gradient, and its
 * decode loop (the rows fed as ids 512..515) the LM graph's logits */
static void test_ablation_embedding(void) {
    static const char cfg[] = "{\"peft_type\": \"PREFIX_TUNING\", \"task_type\": \"CAUSAL_LM\", \"num_virtual_tokens\": 4, "
                              "\"peftc_prefix_placement\": \"embedding\"}";
    char err[2048];
    pc_st_file *pt = pc_st_open(PF_DATA("peft_prompt_stories260k") "/adapter_model.safetensors", err, sizeof err);
    const pc_st_tensor *t = pt ? pc_st_find(pt, "prompt_embeddings") : NULL;
    CU_ASSERT_FATAL(t && pc_shape_eq(t->shape, PC_SHAPE(P, 64)));
    char *d = write_adapter_data(cfg, P, 64, t->data);
    pf_fixture x;
    if (pf_open(&x, d, PF_DATA("peft_prompt_stories260k") "/expected.safetensors", PC_ADAPT_TRAIN, true, true)) {
        CU_FAIL("setup");
    } else {
        CU_ASSERT_EQUAL(pc_session_virtual_tokens(&x.s), P);
        CU_ASSERT_EQUAL(pc_session_prefix_positions(&x.s), 0);
        pf_check_loss_logits_grads(&x, PC_BACKEND_REF, 1, "(PEFT's prompt tuning)", NULL, 0);
        pf_check_loss_logits_grads(&x, PC_BACKEND_JIT, 1, "(PEFT's prompt tuning)", NULL, 0);
        pc_exec *r = pf_run(&x, PC_BACKEND_REF);
        const float *lm = r ? pf_logits(&x, r) : NULL;
        float *logits = calloc((size_t)S * V, sizeof *logits);
        CU_ASSERT_FATAL(lm && logits);
        pc_exec_opts eo = {.kind = PC_BACKEND_REF};
        pc_decode_opts o = {.steps = S, .prompt = x.tokens, .n_prompt = S, .temperature = 0, .exec = &eo};
        int32_t out[S + 1];
        int ntok = 0, npos = 0;
        CU_ASSERT_EQUAL(pc_decode(&x.s, &o, out, &ntok, logits, &npos, err, sizeof err), 0);
        double e = max_abs_diff(logits, lm, (int64_t)S * V);
        printf("    embedding-only decode row 0: max |diff| vs LM graph %.2e\n", e);
        CU_ASSERT(npos == S && e <= 1e-4);
        free(logits);
        pc_exec_free(r);
    }
    pf_close(&x);
    pc_st_close(pt);
    remove_adapter(d);
}

/* 8. peftc's infix ablation (the rows after the first 5 tokens) vs the fixture's hand model:
 * loss, logits and gradient; generation is refused */
static void test_ablation_infix(void) {
    static const char cfg[] = "{\"peft_type\": \"PREFIX_TUNING\", \"task_type\": \"CAUSAL_LM\", \"num_virtual_tokens\": 4, "
                              "\"peftc_prefix_placement\": \"infix\", \"peftc_infix_position\": 5}";
    char err[2048];
    pc_st_file *f = pc_st_open(PLAIN_DIR "/adapter_model.safetensors", err, sizeof err);
    const pc_st_tensor *t = f ? pc_st_find(f, "prompt_embeddings") : NULL;
    CU_ASSERT_FATAL(t != NULL);
    char *d = write_adapter_data(cfg, P, WIDTH, t->data);
    pf_fixture x;
    if (pf_open(&x, d, PLAIN_DIR "/expected.safetensors", PC_ADAPT_TRAIN, true, true)) {
        CU_FAIL("setup");
    } else {
        const pc_st_tensor *wl = pc_st_find(x.ex, "infix_loss"), *wg = pc_st_find(x.ex, "grad_infix.prompt_embeddings");
        CU_ASSERT_FATAL(wl && wg);
        static const pc_backend_kind kinds[2] = {PC_BACKEND_REF, PC_BACKEND_JIT};
        printf("\n");
        for (int k = 0; k < 2; k++) {
            pc_exec *r = pf_run(&x, kinds[k]);
            CU_ASSERT_FATAL(r != NULL);
            float loss = *(const float *)pc_exec_data(r, pf_output(x.g, true)), want = *(const float *)wl->data;
            double dl = pf_logits_diff(&x, r, NULL, "infix_logits");
            pc_val gv = pc_lookup(x.g, "grad.prompt_embeddings");
            CU_ASSERT_FATAL(gv != PC_NONE);
            double dg = max_abs_diff(pc_exec_data(r, gv), wg->data, (int64_t)P * WIDTH);
            printf("    [%s] infix: loss %.7f (hand %.7f, rel %.2e), logits max |diff| %.2e, grad max |diff| %.2e\n",
                   pc_backend_name(kinds[k]), loss, want, fabs(loss - want) / fabs(want), dl, dg);
            CU_ASSERT(fabs(loss - want) <= 1e-5 * fabs(want) && dl <= 1e-4 && dg <= 1e-4);
            pc_exec_free(r);
        }
        int32_t out[8];
        int ntok = 0;
        pc_decode_opts o = {.steps = 4, .temperature = 0};
        CU_ASSERT_EQUAL(pc_decode(&x.s, &o, out, &ntok, NULL, NULL, err, sizeof err), -1);
        printf("    infix generate: \"%s\"\n", err);
        CU_ASSERT(strstr(err, "peftc_prefix_placement") && strstr(err, "cannot generate"));
    }
    pf_close(&x);
    pc_st_close(f);
    remove_adapter(d);
}

/* 9. a table of the wrong width names the file and the key; P >= context and a config for
 * another model are refused naming the adapter and the field */
static void test_bad_inputs(void) {
    static const char cfg4[] = "{\"peft_type\": \"PREFIX_TUNING\", \"task_type\": \"CAUSAL_LM\", \"num_virtual_tokens\": 4}";
    static const char cfg512[] = "{\"peft_type\": \"PREFIX_TUNING\", \"task_type\": \"CAUSAL_LM\", \"num_virtual_tokens\": 512}";
    static const char cfgdim[] = "{\"peft_type\": \"PREFIX_TUNING\", \"task_type\": \"CAUSAL_LM\", \"num_virtual_tokens\": 4, \"num_layers\": 6}";
    static const char cfgplace[] = "{\"peft_type\": \"PREFIX_TUNING\", \"num_virtual_tokens\": 4, \"peftc_prefix_placement\": \"middle\"}";
    static const char cfgnok[] = "{\"peft_type\": \"PREFIX_TUNING\", \"num_virtual_tokens\": 4, \"peftc_prefix_placement\": \"infix\"}";
    static const char cfgk[] = "{\"peft_type\": \"PREFIX_TUNING\", \"num_virtual_tokens\": 4, \"peftc_infix_position\": 3}";
    static const char cfgbigk[] = "{\"peft_type\": \"PREFIX_TUNING\", \"num_virtual_tokens\": 4, \"peftc_prefix_placement\": "
                                  "\"infix\", \"peftc_infix_position\": 8}";
    struct { const char *cfg; int64_t cols; const char *want[3]; } cases[] = {
        {cfgplace, WIDTH, {"peftc_prefix_", "peftc_prefix_placement", "got \"middle\""}},
        {cfgnok, WIDTH, {"peftc_prefix_", "peftc_infix_position", "\"infix\" needs it"}},
        {cfgk, WIDTH, {"peftc_prefix_", "peftc_infix_position", "only peftc_prefix_placement \"infix\" uses it"}},
        {cfgbigk, WIDTH, {"field \"peftc_infix_position\"", "8 tokens leave none", "in a sequence of 8"}},
        {cfg4, WIDTH + 32, {"adapter_model.safetensors", "prompt_embeddings", "[4,352]"}},
        {cfg512, WIDTH, {"peftc_prefix_", "num_virtual_tokens", "context of 512"}},
        {cfgdim, WIDTH, {"peftc_prefix_", "num_layers", "model's number of layers is 5"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *d = write_adapter(cases[i].cfg, 4, cases[i].cols);
        pf_fixture x;
        char err[2048] = "";
        int rc = pc_session_open(&x.s, NULL, PF_MODEL, NULL, d, err, sizeof err);
        if (rc == 0) {
            pc_build_req req = {.task = PC_TASK_LM, .batch = 1, .seq = 8, .output_logits = true, .mode = PC_ADAPT_EVAL};
            pc_graph *g = pc_session_build(&x.s, &req, false, err, sizeof err);
            pc_store st = {0};
            rc = g ? pc_session_store(&x.s, g, &st, NULL, 0, err, sizeof err) : -1;
            pc_store_free(&st);
            pc_graph_free(g);
            pc_session_close(&x.s);
        }
        printf("\n    bad input %zu: \"%s\"", i, err);
        CU_ASSERT(rc != 0);
        for (int k = 0; k < 3; k++) CU_ASSERT(strstr(err, cases[i].want[k]) != NULL);
        remove_adapter(d);
    }
    printf("\n");
}

/* 10. a PEFT type's peftc_* keys survive read -> write -> read (and count in equality); a
 * config without them has no custom_json */
static void test_peftc_fields_roundtrip(void) {
    char *d = write_adapter("{\"peft_type\": \"PREFIX_TUNING\", \"num_virtual_tokens\": 4, \"peftc_prefix_placement\": \"infix\", "
                            "\"peftc_infix_position\": 3}", 1, 1);
    char err[1024], out[600];
    pc_adapter_config *a = pc_adapter_config_load(d, err, sizeof err);
    CU_ASSERT_FATAL(a != NULL);
    CU_ASSERT_STRING_EQUAL(pc_adapter_config_custom_string(a, "peftc_prefix_placement"), "infix");
    snprintf(out, sizeof out, "%s/written.json", d);
    CU_ASSERT_EQUAL_FATAL(pc_adapter_config_write(a, out, err, sizeof err), 0);
    pc_adapter_config *b = pc_adapter_config_load(out, err, sizeof err);
    CU_ASSERT_FATAL(b != NULL);
    double k = 0;
    CU_ASSERT_EQUAL(pc_adapter_config_custom_number(b, "peftc_infix_position", &k), 0);
    CU_ASSERT_EQUAL(k, 3);
    CU_ASSERT(pc_adapter_config_equal(a, b));
    char *d2 = write_adapter("{\"peft_type\": \"PREFIX_TUNING\", \"num_virtual_tokens\": 4}", 1, 1);
    pc_adapter_config *c = pc_adapter_config_load(d2, err, sizeof err);
    CU_ASSERT_FATAL(c != NULL);
    CU_ASSERT(c->custom_json == NULL);
    CU_ASSERT_FALSE(pc_adapter_config_equal(a, c)); /* only the peftc fields differ */
    remove_adapter(d2);
    pc_adapter_config_free(a);
    pc_adapter_config_free(b);
    pc_adapter_config_free(c);
    unlink(out);
    remove_adapter(d);
}

static CU_TestInfo tests[] = {
    {"plain_loss_and_grad", test_plain_loss_and_grad},
    {"projection_loss_grads_and_save", test_projection_loss_grads_and_save},
    {"projection_trained_runs_from_table", test_projection_trained_runs_from_table},
    {"generate_plain", test_generate_plain},
    {"generate_projection", test_generate_projection},
    {"gpt2", test_gpt2},
    {"hf_llama", test_hf_llama},
    {"not_mergeable", test_not_mergeable},
    {"bad_inputs", test_bad_inputs},
    {"ablation_embedding", test_ablation_embedding},
    {"ablation_infix", test_ablation_infix},
    {"peftc_fields_roundtrip", test_peftc_fields_roundtrip},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("peft_prefix", tests)
