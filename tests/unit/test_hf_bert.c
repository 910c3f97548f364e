/* The Hugging Face BERT / RoBERTa family against transformers and PEFT
 * (tests/golden/gen_hf_bert.py): sequence-classification logits and loss of a padded batch
 * (token types for BERT, RoBERTa's positions from padding_idx + 1, f16 weights), with a PEFT
 * LoRA adapter (query, value; modules_to_save classifier) and its gradients, on the interpreter
 * and the compiled backend; the last hidden state (feature extraction); padding never changes a
 * real token's outputs; a bare encoder (keys without "bert.", no head: the head made as
 * transformers initializes it); all-MiniLM-L6-v2 when PEFTC_MINILM_DIR is set; refused
 * configs and tensors; TRAIN graphs with dropout; writing the directory back.
 *
 * modules_to_save: the fixture's adapter holds a classifier copy that differs from the base
 * classifier; the session re-keys the head's params as that copy (passes/modules_to_save.h), so
 * the logits and the copy's gradients are PEFT's, and clearing modules_to_save loses them. */
#include "compare.h"
#include "cu_main.h"
#include "backend/exec.h"
#include "drivers/session.h"
#include "drivers/store.h"
#include "frontend/bert.h"
#include "ir/ir.h"
#include "passes/pipeline.h"
#include "runtime/adapter_config.h"
#include "runtime/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HF_DIR(v) PEFTC_SOURCE_DIR "/tests/data/hf_bert/" v

/* max |a - b| relative to max |b| */
static double rel_diff(const float *a, const float *b, int64_t n) {
    double m = max_abs(b, n);
    double d = max_abs_diff(a, b, n);
    return m > 0 ? d / m : d;
}

/* a session, a graph of one task and its store, the batch (copies: tests edit them) */
typedef struct {
    pc_session s;
    pc_st_file *ex;
    pc_graph *g;
    pc_store store;
    int64_t B, S;
    int32_t *tokens, *mask, *types, *labels;
    int32_t seed;
} bx;

static int32_t *copy_i32(const pc_st_file *f, const char *name, int64_t *n) {
    const pc_st_tensor *t = pc_st_find(f, name);
    if (!t || t->dtype != PC_I32) return NULL;
    *n = pc_shape_numel(t->shape);
    int32_t *d = malloc((size_t)*n * sizeof *d);
    if (d) memcpy(d, t->data, (size_t)*n * sizeof *d);
    return d;
}

/* opens model (+ adapter) and the batch of expected */
static int bx_open(bx *x, const char *model, const char *adapter, const char *expected) {
    char err[2048];
    memset(x, 0, sizeof *x);
    if (pc_session_open(&x->s, NULL, model, NULL, adapter, err, sizeof err)) { fprintf(stderr, "%s\n", err); return -1; }
    if (!expected) return 0;
    if (!(x->ex = pc_st_open(expected, err, sizeof err))) { fprintf(stderr, "%s\n", err); return -1; }
    int64_t n = 0, nl = 0;
    const pc_st_tensor *tk = pc_st_find(x->ex, "tokens");
    if (!tk || tk->shape.rank != 2) return -1;
    x->B = tk->shape.dim[0], x->S = tk->shape.dim[1];
    x->tokens = copy_i32(x->ex, "tokens", &n);
    x->mask = copy_i32(x->ex, "attention_mask", &n);
    x->types = copy_i32(x->ex, "token_type_ids", &n);
    x->labels = copy_i32(x->ex, "labels", &nl);
    return x->tokens && x->mask ? 0 : -1;
}

/* the graph of `task` (autograd when trainable) and its store */
static int bx_graph(bx *x, pc_graph_task task, pc_adapt_mode mode, bool trainable, int64_t B, int64_t S) {
    char err[2048];
    pc_store_free(&x->store);
    pc_graph_free(x->g);
    x->g = NULL;
    pc_build_req req = {.task = task, .batch = B, .seq = S, .mode = mode, .token_type_ids = x->types != NULL,
                        .mask_dtype = PC_I32};
    if (!(x->g = pc_session_build(&x->s, &req, trainable, err, sizeof err))) { fprintf(stderr, "build: %s\n", err); return -1; }
    if (trainable && pc_run_pipeline(&x->g, "autograd", NULL, err, sizeof err)) { fprintf(stderr, "autograd: %s\n", err); return -1; }
    if (pc_session_store(&x->s, x->g, &x->store, NULL, 0, err, sizeof err)) { fprintf(stderr, "store: %s\n", err); return -1; }
    return 0;
}

static void bx_close(bx *x) {
    pc_store_free(&x->store);
    pc_graph_free(x->g);
    pc_st_close(x->ex);
    pc_session_close(&x->s);
    free(x->tokens), free(x->mask), free(x->types), free(x->labels);
}

static int bind(pc_exec *r, const pc_graph *g, const char *name, void *data) {
    pc_val v = pc_lookup(g, name);
    return v == PC_NONE ? 0 : pc_exec_bind(r, v, data);
}

/* runs x->g on `kind` with the batch (rows from `row`, B x S of the fixture's S columns) */
static pc_exec *bx_run_rows(bx *x, pc_backend_kind kind, int64_t row, int64_t B, int64_t S) {
    char err[2048] = "";
    int32_t *tk = malloc((size_t)(B * S) * sizeof *tk), *mk = malloc((size_t)(B * S) * sizeof *mk);
    int32_t *ty = malloc((size_t)(B * S) * sizeof *ty);
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < S; j++) {
            tk[b * S + j] = x->tokens[(row + b) * x->S + j];
            mk[b * S + j] = x->mask[(row + b) * x->S + j];
            ty[b * S + j] = x->types ? x->types[(row + b) * x->S + j] : 0;
        }
    pc_exec *r = pc_exec_new(x->g, &(pc_exec_opts){.kind = kind}, err, sizeof err);
    if (r && (pc_session_bind_base(&x->s, r, x->g, false, err, sizeof err) || pc_store_bind(&x->store, r) ||
              bind(r, x->g, "tokens", tk) || bind(r, x->g, "attention_mask", mk) || bind(r, x->g, "token_type_ids", ty) ||
              bind(r, x->g, "labels", x->labels + row) || bind(r, x->g, "seed", &x->seed) || pc_exec_run(r, err, sizeof err))) {
        pc_exec_free(r);
        r = NULL;
    }
    if (!r) fprintf(stderr, "run: %s\n", err);
    /* the executor reads inputs during the run only */
    free(tk), free(mk), free(ty);
    return r;
}

static pc_exec *bx_run(bx *x, pc_backend_kind kind) { return bx_run_rows(x, kind, 0, x->B, x->S); }

static const float *out(const bx *x, const pc_exec *r, const char *name) {
    pc_val v = pc_lookup(x->g, name);
    return v == PC_NONE ? NULL : pc_exec_data(r, v);
}

static const float *want(const bx *x, const char *name, int64_t n) {
    const pc_st_tensor *t = pc_st_find(x->ex, name);
    CU_ASSERT_FATAL(t != NULL && t->dtype == PC_F32 && pc_shape_numel(t->shape) == n);
    return t->data;
}

/* SEQ_CLS logits and loss (and LoRA gradients with the adapter) vs transformers / PEFT */
static void check_seq_cls(const char *variant, bool lora) {
    char model[512], adapter[600], expected[600];
    snprintf(model, sizeof model, "%s", variant);
    snprintf(adapter, sizeof adapter, "%s/lora", variant);
    snprintf(expected, sizeof expected, "%s/expected.safetensors", variant);
    bx x;
    CU_ASSERT_EQUAL_FATAL(bx_open(&x, model, lora ? adapter : NULL, expected), 0);
    const char *name = strrchr(variant, '/') + 1;
    const int64_t L = x.s.model.info.num_labels;
    const float *wl = want(&x, lora ? "logits_lora" : "logits", x.B * L);
    float wloss = *want(&x, lora ? "loss_lora" : "loss", 1);
    if (lora) {
        /* the adapter's modules_to_save copy of the head (passes/modules_to_save.h) stands in for
         * the model's: without it (modules_to_save cleared) PEFT's logits are not reproduced */
        pc_spec saved = x.s.adapter.cfg->modules_to_save;
        x.s.adapter.cfg->modules_to_save = (pc_spec){0};
        CU_ASSERT_EQUAL_FATAL(bx_graph(&x, PC_TASK_SEQ_CLASSIFY, PC_ADAPT_EVAL, false, x.B, x.S), 0);
        x.s.adapter.cfg->modules_to_save = saved;
        pc_exec *r = bx_run(&x, PC_BACKEND_REF);
        CU_ASSERT_FATAL(r != NULL);
        double d = rel_diff(out(&x, r, "logits"), wl, x.B * L);
        printf("\n  %s + LoRA, the base classifier (modules_to_save cleared): logits rel diff %.3g", name, d);
        CU_ASSERT(d > 1e-3);
        pc_exec_free(r);
    }
    /* EVAL (no dropout, as PEFT's eval mode), trainable adapter: gradients too */
    CU_ASSERT_EQUAL_FATAL(bx_graph(&x, PC_TASK_SEQ_CLASSIFY, PC_ADAPT_EVAL, lora, x.B, x.S), 0);
    for (int kind = PC_BACKEND_REF; kind <= PC_BACKEND_JIT; kind++) {
        pc_exec *r = bx_run(&x, (pc_backend_kind)kind);
        CU_ASSERT_PTR_NOT_NULL_FATAL(r);
        double d = rel_diff(out(&x, r, "logits"), wl, x.B * L);
        double loss = *out(&x, r, "loss"), dl = fabs(loss - wloss) / fabs(wloss);
        printf("\n  %s%s on %s: logits rel diff %.3g, loss %.7f vs %s %.7f (rel %.3g)", name, lora ? " + LoRA" : "",
               kind ? "jit" : "ref", d, loss, lora ? "PEFT" : "transformers", wloss, dl);
        CU_ASSERT(d <= 1e-4);
        CU_ASSERT(dl <= 1e-5);
        if (lora) {
            double worst = 0;
            int checked = 0;
            for (int i = 0; i < x.store.n; i++) {
                const pc_store_entry *e = &x.store.e[i];
                if (!(e->flags & PC_TRAINABLE)) continue;
                char gname[700], gkey[700];
                snprintf(gname, sizeof gname, "grad.%s", pc_val_name(x.g, e->v));
                snprintf(gkey, sizeof gkey, "grad.%s", e->key);
                const float *gv = out(&x, r, gname), *wg = want(&x, gkey, e->n);
                CU_ASSERT_FATAL(gv != NULL);
                double s = max_abs(wg, e->n), rel = max_abs_diff(gv, wg, e->n) / (s > 1 ? s : 1);
                worst = rel > worst || rel != rel ? rel : worst;
                checked++;
            }
            /* 8 LoRA tensors and the head's copies: classifier.{weight,bias} (BERT),
             * classifier.{dense,out_proj}.{weight,bias} (RoBERTa) */
            printf("; %d gradients (LoRA, the head's copy): worst |diff| / max(1, max|g|) %.3g", checked, worst);
            CU_ASSERT_EQUAL(checked, strstr(name, "roberta") ? 12 : 10);
            CU_ASSERT(worst <= 1e-4);
        }
        pc_exec_free(r);
    }
    bx_close(&x);
}

static void test_bert(void) { check_seq_cls(HF_DIR("bert_f32"), false); }
static void test_bert_lora(void) { check_seq_cls(HF_DIR("bert_f32"), true); }
static void test_roberta(void) { check_seq_cls(HF_DIR("roberta_f16"), false); }
static void test_roberta_lora(void) { check_seq_cls(HF_DIR("roberta_f16"), true); }

/* the last hidden state (the bare encoder's names on a prefixed checkpoint) vs transformers,
 * at the real positions and everywhere */
static void check_features(const char *model, const char *expected_dir) {
    char expected[600];
    snprintf(expected, sizeof expected, "%s/expected.safetensors", expected_dir);
    bx x;
    CU_ASSERT_EQUAL_FATAL(bx_open(&x, model, NULL, expected), 0);
    CU_ASSERT_EQUAL_FATAL(bx_graph(&x, PC_TASK_FEATURE_EXTRACT, PC_ADAPT_EVAL, false, x.B, x.S), 0);
    CU_ASSERT(pc_lookup_key(x.g, "encoder.layer.0.attention.self.query.weight") != PC_NONE);
    const int64_t D = x.s.model.info.dim, n = x.B * x.S * D;
    const float *w = want(&x, "hidden", n);
    for (int kind = PC_BACKEND_REF; kind <= PC_BACKEND_JIT; kind++) {
        pc_exec *r = bx_run(&x, (pc_backend_kind)kind);
        CU_ASSERT_PTR_NOT_NULL_FATAL(r);
        const float *h = out(&x, r, "last_hidden_state");
        double real = 0, all = rel_diff(h, w, n), m = max_abs(w, n);
        for (int64_t t = 0; t < x.B * x.S; t++)
            if (x.mask[t]) real = fmax(real, max_abs_diff(h + t * D, w + t * D, D) / m);
        printf("\n  %s features on %s: rel diff %.3g at real positions, %.3g everywhere", strrchr(model, '/') + 1,
               kind ? "jit" : "ref", real, all);
        CU_ASSERT(real <= 1e-4);
        CU_ASSERT(all <= 1e-4);
        pc_exec_free(r);
    }
    bx_close(&x);
}

/* RoBERTa's positions come from the token ids: the batch padded on the left gives each real
 * token the hidden state transformers gives it padded on the right */
static void test_roberta_left_padding(void) {
    bx x;
    CU_ASSERT_EQUAL_FATAL(bx_open(&x, HF_DIR("roberta_f16"), NULL, HF_DIR("roberta_f16/expected.safetensors")), 0);
    const int64_t D = x.s.model.info.dim, S = x.S;
    int32_t *tk = malloc((size_t)(x.B * S) * sizeof *tk), *mk = malloc((size_t)(x.B * S) * sizeof *mk);
    int64_t *len = calloc((size_t)x.B, sizeof *len);
    for (int64_t b = 0; b < x.B; b++) {
        while (len[b] < S && x.mask[b * S + len[b]]) len[b]++;
        for (int64_t j = 0; j < S; j++) {
            int64_t k = j - (S - len[b]); /* real token k at column j */
            tk[b * S + j] = k < 0 ? 1 : x.tokens[b * S + k];
            mk[b * S + j] = k >= 0;
        }
    }
    memcpy(x.tokens, tk, (size_t)(x.B * S) * sizeof *tk);
    memcpy(x.mask, mk, (size_t)(x.B * S) * sizeof *mk);
    CU_ASSERT_EQUAL_FATAL(bx_graph(&x, PC_TASK_FEATURE_EXTRACT, PC_ADAPT_EVAL, false, x.B, S), 0);
    const float *w = want(&x, "hidden", x.B * S * D);
    double m = max_abs(w, x.B * S * D);
    for (int kind = PC_BACKEND_REF; kind <= PC_BACKEND_JIT; kind++) {
        pc_exec *r = bx_run(&x, (pc_backend_kind)kind);
        CU_ASSERT_FATAL(r != NULL);
        const float *h = out(&x, r, "last_hidden_state");
        double worst = 0;
        for (int64_t b = 0; b < x.B; b++)
            for (int64_t k = 0; k < len[b]; k++)
                worst = fmax(worst, max_abs_diff(h + (b * S + S - len[b] + k) * D, w + (b * S + k) * D, D) / m);
        printf("\n  roberta_f16 padded on the left, on %s: real tokens' hidden states rel diff %.3g vs transformers' "
               "right-padded", kind ? "jit" : "ref", worst);
        CU_ASSERT(worst <= 1e-4);
        pc_exec_free(r);
    }
    free(tk), free(mk), free(len);
    bx_close(&x);
}

static void test_features(void) {
    check_features(HF_DIR("bert_f32"), HF_DIR("bert_f32"));
    check_features(HF_DIR("roberta_f16"), HF_DIR("roberta_f16"));
    test_roberta_left_padding();
}

/* padding never changes a real token's outputs: other ids and types at the padding give the
 * same logits and real hidden states bit for bit; a row alone, unpadded, gives its logits */
static void check_padding(const char *variant) {
    char expected[600];
    snprintf(expected, sizeof expected, "%s/expected.safetensors", variant);
    bx x;
    CU_ASSERT_EQUAL_FATAL(bx_open(&x, variant, NULL, expected), 0);
    const int64_t L = x.s.model.info.num_labels, D = x.s.model.info.dim, V = x.s.model.info.vocab;
    for (int task = 0; task < 2; task++) {
        const char *o = task ? "last_hidden_state" : "logits";
        const int64_t per = task ? x.S * D : L, n = x.B * per;
        CU_ASSERT_EQUAL_FATAL(bx_graph(&x, task ? PC_TASK_FEATURE_EXTRACT : PC_TASK_SEQ_CLASSIFY, PC_ADAPT_EVAL, false,
                                       x.B, x.S), 0);
        for (int kind = PC_BACKEND_REF; kind <= PC_BACKEND_JIT; kind++) {
            int32_t *saved = malloc((size_t)(x.B * x.S) * sizeof *saved);
            memcpy(saved, x.tokens, (size_t)(x.B * x.S) * sizeof *saved);
            pc_exec *a = bx_run(&x, (pc_backend_kind)kind);
            float *base = malloc((size_t)n * sizeof *base);
            CU_ASSERT_FATAL(a && base);
            memcpy(base, out(&x, a, o), (size_t)n * sizeof *base);
            pc_exec_free(a);
            int changed = 0;
            for (int64_t t = 0; t < x.B * x.S; t++)
                if (!x.mask[t]) {
                    x.tokens[t] = (int32_t)((t * 37 + 11) % V), changed++;
                    if (x.types) x.types[t] = 1;
                }
            pc_exec *b = bx_run(&x, (pc_backend_kind)kind);
            CU_ASSERT_FATAL(b != NULL);
            const float *h = out(&x, b, o);
            double worst = 0;
            for (int64_t t = 0; t < (task ? x.B * x.S : x.B); t++)
                if (!task || x.mask[t]) {
                    int64_t k = task ? D : L;
                    worst = fmax(worst, max_abs_diff(h + t * k, base + t * k, k));
                }
            printf("\n  %s %s on %s: %d padding tokens changed, real outputs moved by %.3g",
                   strrchr(variant, '/') + 1, o, kind ? "jit" : "ref", changed, worst);
            CU_ASSERT(changed > 0);
            CU_ASSERT(worst == 0);
            pc_exec_free(b);
            memcpy(x.tokens, saved, (size_t)(x.B * x.S) * sizeof *saved);
            free(saved);
            free(base);
        }
    }
    /* the last row alone, cut to its length: its logits as in the padded batch */
    int64_t row = x.B - 1, len = 0;
    while (len < x.S && x.mask[row * x.S + len]) len++;
    CU_ASSERT_EQUAL_FATAL(bx_graph(&x, PC_TASK_SEQ_CLASSIFY, PC_ADAPT_EVAL, false, 1, len), 0);
    for (int kind = PC_BACKEND_REF; kind <= PC_BACKEND_JIT; kind++) {
        pc_exec *r = bx_run_rows(&x, (pc_backend_kind)kind, row, 1, len);
        CU_ASSERT_FATAL(r != NULL);
        double d = rel_diff(out(&x, r, "logits"), want(&x, "logits", x.B * L) + row * L, L);
        printf("\n  %s row %lld alone (%lld tokens, no padding) on %s: logits rel diff %.3g vs the padded batch's",
               strrchr(variant, '/') + 1, (long long)row, (long long)len, kind ? "jit" : "ref", d);
        CU_ASSERT(d <= 1e-5);
        pc_exec_free(r);
    }
    bx_close(&x);
}

static void test_padding(void) {
    check_padding(HF_DIR("bert_f32"));
    check_padding(HF_DIR("roberta_f16"));
}

/* logits = pooled · Wᵀ + b with the family's head (made here when the checkpoint lacks it) */
static double head_diff(const pc_session *s, const float *pooled, const float *logits, int64_t B) {
    pc_shape ws, bs;
    const float *W = pc_model_weight(&s->model, "classifier.weight", &ws);
    const float *b = pc_model_weight(&s->model, "classifier.bias", &bs);
    CU_ASSERT_FATAL(W && b && ws.rank == 2 && bs.rank == 1);
    const int64_t L = ws.dim[0], D = ws.dim[1];
    double worst = 0, m = 0;
    for (int64_t i = 0; i < B; i++)
        for (int64_t l = 0; l < L; l++) {
            double acc = b[l];
            for (int64_t d = 0; d < D; d++) acc += (double)pooled[i * D + d] * W[l * D + d];
            worst = fmax(worst, fabs(acc - logits[i * L + l]));
            m = fmax(m, fabs(acc));
        }
    return worst / m;
}

/* a bare BertModel (keys without "bert.", no classifier): the names the graphs use, the head
 * made as transformers initializes it, the encoder = the prefixed checkpoint's */
static void test_bare_encoder(void) {
    bx x;
    CU_ASSERT_EQUAL_FATAL(bx_open(&x, HF_DIR("bert_bare"), NULL, HF_DIR("bert_f32/expected.safetensors")), 0);
    const pc_model *m = &x.s.model;
    CU_ASSERT_STRING_EQUAL(m->family->name, "hf-bert");
    CU_ASSERT_STRING_EQUAL(m->info.model_type, "bert");
    CU_ASSERT_EQUAL(m->info.num_labels, 2); /* a bare config has no id2label */
    /* listed under the classifier model's names; both spellings resolve */
    int listed = 0;
    for (int i = 0; i < m->family->nweights(m); i++) {
        const char *k = m->family->weight_key(m, i);
        listed += !strcmp(k, "bert.encoder.layer.1.output.dense.weight") || !strcmp(k, "bert.pooler.dense.bias") ||
                  !strcmp(k, "classifier.weight") || !strcmp(k, "classifier.bias");
    }
    CU_ASSERT_EQUAL(listed, 4);
    CU_ASSERT(pc_model_weight(m, "encoder.layer.1.output.dense.weight", NULL) ==
              pc_model_weight(m, "bert.encoder.layer.1.output.dense.weight", NULL));
    pc_shape s;
    const float *W = pc_model_weight(m, "classifier.weight", &s), *b = pc_model_weight(m, "classifier.bias", NULL);
    CU_ASSERT_FATAL(W && b && pc_shape_eq(s, PC_SHAPE(2, 32)));
    double sum = 0, sq = 0;
    for (int i = 0; i < 64; i++) sum += W[i], sq += (double)W[i] * W[i];
    printf("\n  made classifier.weight: mean %.3f, std %.3f (initializer_range 0.2); bias %g %g", sum / 64,
           sqrt(sq / 64 - sum * sum / 4096), b[0], b[1]);
    CU_ASSERT(fabs(sqrt(sq / 64) - 0.2) < 0.07 && b[0] == 0 && b[1] == 0);
    /* the same values in a second open */
    pc_model m2;
    char err[1024];
    CU_ASSERT_EQUAL_FATAL(pc_model_open(&m2, HF_DIR("bert_bare"), NULL, err, sizeof err), 0);
    CU_ASSERT(memcmp(pc_model_weight(&m2, "classifier.weight", NULL), W, 64 * sizeof *W) == 0);
    pc_model_close(&m2);
    /* features = the prefixed checkpoint's (the same encoder weights) */
    CU_ASSERT_EQUAL_FATAL(bx_graph(&x, PC_TASK_FEATURE_EXTRACT, PC_ADAPT_EVAL, false, x.B, x.S), 0);
    const int64_t D = 32, n = x.B * x.S * D;
    pc_exec *r = bx_run(&x, PC_BACKEND_REF);
    CU_ASSERT_FATAL(r != NULL);
    double dh = rel_diff(out(&x, r, "last_hidden_state"), want(&x, "hidden", n), n);
    pc_exec_free(r);
    /* the classifier on transformers' pooled output */
    CU_ASSERT_EQUAL_FATAL(bx_graph(&x, PC_TASK_SEQ_CLASSIFY, PC_ADAPT_EVAL, false, x.B, x.S), 0);
    for (int kind = PC_BACKEND_REF; kind <= PC_BACKEND_JIT; kind++) {
        x.labels[0] = x.labels[0] % 2; /* 2 labels here */
        r = bx_run(&x, (pc_backend_kind)kind);
        CU_ASSERT_FATAL(r != NULL);
        double dl = head_diff(&x.s, want(&x, "pooled", x.B * D), out(&x, r, "logits"), x.B);
        printf("\n  bare encoder on %s: features rel diff %.3g; logits vs transformers' pooled output through the made "
               "head %.3g", kind ? "jit" : "ref", dh, dl);
        CU_ASSERT(dh <= 1e-4);
        CU_ASSERT(dl <= 1e-4);
        pc_exec_free(r);
    }
    bx_close(&x);
}

/* all-MiniLM-L6-v2 (a bare BertModel, 6 layers, 384 wide) on three banking77 lines */
static void test_minilm(void) {
    const char *dir = getenv("PEFTC_MINILM_DIR");
    if (!dir || !*dir) {
        printf("\n  skipped: set PEFTC_MINILM_DIR to all-MiniLM-L6-v2's directory (python3 scripts/fetch_models.py --env)");
        return;
    }
    bx x;
    CU_ASSERT_EQUAL_FATAL(bx_open(&x, dir, NULL, HF_DIR("minilm_expected.safetensors")), 0);
    CU_ASSERT_STRING_EQUAL(x.s.model.info.model_type, "bert");
    const int64_t D = x.s.model.info.dim, K = 64;
    CU_ASSERT_EQUAL_FATAL(D, 384);
    const float *w = want(&x, "hidden", x.B * x.S * K);
    CU_ASSERT_EQUAL_FATAL(bx_graph(&x, PC_TASK_FEATURE_EXTRACT, PC_ADAPT_EVAL, false, x.B, x.S), 0);
    for (int kind = PC_BACKEND_REF; kind <= PC_BACKEND_JIT; kind++) {
        pc_exec *r = bx_run(&x, (pc_backend_kind)kind);
        CU_ASSERT_FATAL(r != NULL);
        const float *h = out(&x, r, "last_hidden_state");
        double worst = 0, m = max_abs(w, x.B * x.S * K);
        for (int64_t t = 0; t < x.B * x.S; t++)
            if (x.mask[t]) worst = fmax(worst, max_abs_diff(h + t * D, w + t * K, K));
        printf("\n  all-MiniLM-L6-v2 features on %s (%lldx%lld tokens): rel diff %.3g at the real positions",
               kind ? "jit" : "ref", (long long)x.B, (long long)x.S, worst / m);
        CU_ASSERT(worst / m <= 1e-4);
        pc_exec_free(r);
    }
    int32_t labels[3] = {0, 1, 0};
    x.labels = realloc(x.labels, sizeof labels);
    memcpy(x.labels, labels, sizeof labels);
    CU_ASSERT_EQUAL_FATAL(bx_graph(&x, PC_TASK_SEQ_CLASSIFY, PC_ADAPT_EVAL, false, x.B, x.S), 0);
    pc_exec *r = bx_run(&x, PC_BACKEND_JIT);
    CU_ASSERT_FATAL(r != NULL);
    double dl = head_diff(&x.s, want(&x, "pooled", x.B * D), out(&x, r, "logits"), x.B);
    printf("\n  all-MiniLM-L6-v2 logits (made head) vs transformers' pooled output through it: %.3g", dl);
    CU_ASSERT(dl <= 1e-4);
    pc_exec_free(r);
    bx_close(&x);
}

/* Prompt tuning (PEFT, SEQ_CLS): virtual tokens before the sequence, the mask and the token
 * types extended in front, the pooler on the first virtual token. The EMBED and POSITIONS
 * rewrites of passes/adapters/prompt_tuning.c done here by a hook of the test; its HEAD rewrite
 * (LM logits [B,S,V] cut to the sequence) does not apply to [B, num_labels] logits, which the
 * builder refuses with a message */
typedef struct {
    int64_t P, D;
} prompt_emu;

static int prompt_hook(void *ctx, pc_site *s, char *err, size_t errlen) {
    (void)err, (void)errlen;
    const prompt_emu *p = ctx;
    pc_graph *g = s->g;
    if (s->kind == PC_SITE_EMBED) {
        pc_val t = pc_param(g, "prompt_embeddings", "prompt_embeddings", PC_F32, PC_SHAPE(p->P, p->D), PC_FROZEN,
                            (pc_init){0});
        int64_t B = pc_val_shape(g, s->value).dim[0];
        t = pc_broadcast(g, pc_reshape(g, t, PC_SHAPE(1, p->P, p->D)), PC_SHAPE(B, p->P, p->D));
        s->value = pc_concat(g, 2, ((pc_val[]){t, s->value}), 1);
    } else if (s->kind == PC_SITE_POSITIONS) {
        const pc_value *v = pc_v(g, s->value);
        int64_t S = v->shape.dim[0];
        int32_t pos[64];
        for (int64_t i = 0; i < p->P + S; i++) pos[i] = i < p->P ? (int32_t)i : ((const int32_t *)v->data)[i - p->P] + (int32_t)p->P;
        s->value = pc_const(g, PC_I32, PC_SHAPE(p->P + S), pos);
    }
    return 0;
}

static void test_prompt_tuning(void) {
    bx x;
    char err[2048];
    CU_ASSERT_EQUAL_FATAL(bx_open(&x, HF_DIR("bert_f32"), HF_DIR("bert_f32/prompt"), HF_DIR("bert_f32/expected.safetensors")), 0);
    const int64_t L = 3, D = 32;
    pc_build_req req = {.task = PC_TASK_SEQ_CLASSIFY, .batch = x.B, .seq = x.S, .mode = PC_ADAPT_EVAL,
                        .token_type_ids = true, .mask_dtype = PC_I32};
    pc_graph *g = pc_session_build(&x.s, &req, false, err, sizeof err);
    printf("\n  PEFT's prompt tuning through the session: %s", g ? "built" : err);
    CU_ASSERT(g == NULL && strstr(err, "changed the logits' shape"));
    pc_graph_free(g);
    const pc_st_tensor *pe = pc_st_find(x.s.adapter.weights, "prompt_embeddings");
    CU_ASSERT_FATAL(pe && pe->dtype == PC_F32 && pe->shape.dim[1] == D);
    prompt_emu pm = {pe->shape.dim[0], D};
    pc_site_hook hook = {prompt_hook, &pm};
    CU_ASSERT_FATAL((x.g = pc_model_build(&x.s.model, &req, &hook, err, sizeof err)) != NULL);
    CU_ASSERT(pc_val_shape(x.g, pc_lookup(x.g, "prompt_embeddings")).dim[0] == 3);
    for (int kind = PC_BACKEND_REF; kind <= PC_BACKEND_JIT; kind++) {
        pc_exec *r = pc_exec_new(x.g, &(pc_exec_opts){.kind = (pc_backend_kind)kind}, err, sizeof err);
        CU_ASSERT_FATAL(r != NULL);
        int rc = pc_session_bind_base(&x.s, r, x.g, false, err, sizeof err) ||
                 pc_exec_bind(r, pc_lookup(x.g, "prompt_embeddings"), (void *)pe->data) ||
                 bind(r, x.g, "tokens", x.tokens) || bind(r, x.g, "attention_mask", x.mask) ||
                 bind(r, x.g, "token_type_ids", x.types) || bind(r, x.g, "labels", x.labels) ||
                 pc_exec_run(r, err, sizeof err);
        CU_ASSERT_FATAL(rc == 0);
        double d = rel_diff(out(&x, r, "logits"), want(&x, "logits_prompt", x.B * L), x.B * L);
        printf("\n  prompt tuning (3 virtual tokens; EMBED and POSITIONS as prompt_tuning.c) on %s: logits rel diff %.3g "
               "vs PEFT", kind ? "jit" : "ref", d);
        CU_ASSERT(d <= 1e-4);
        pc_exec_free(r);
    }
    bx_close(&x);
}

/* %attention_mask as f32 (req.mask_dtype): the same logits */
static void test_f32_mask(void) {
    bx x;
    char err[1024];
    CU_ASSERT_EQUAL_FATAL(bx_open(&x, HF_DIR("bert_f32"), NULL, HF_DIR("bert_f32/expected.safetensors")), 0);
    pc_build_req req = {.task = PC_TASK_SEQ_CLASSIFY, .batch = x.B, .seq = x.S, .mode = PC_ADAPT_EVAL,
                        .token_type_ids = true, .mask_dtype = PC_F32};
    CU_ASSERT_FATAL((x.g = pc_session_build(&x.s, &req, false, err, sizeof err)) != NULL);
    CU_ASSERT(pc_val_dtype(x.g, pc_lookup(x.g, "attention_mask")) == PC_F32);
    float *fm = malloc((size_t)(x.B * x.S) * sizeof *fm);
    for (int64_t i = 0; i < x.B * x.S; i++) fm[i] = (float)x.mask[i];
    for (int kind = PC_BACKEND_REF; kind <= PC_BACKEND_JIT; kind++) {
        pc_exec *r = pc_exec_new(x.g, &(pc_exec_opts){.kind = (pc_backend_kind)kind}, err, sizeof err);
        CU_ASSERT_FATAL(r != NULL);
        int rc = pc_session_bind_base(&x.s, r, x.g, true, err, sizeof err) || bind(r, x.g, "tokens", x.tokens) ||
                 bind(r, x.g, "attention_mask", fm) || bind(r, x.g, "token_type_ids", x.types) ||
                 bind(r, x.g, "labels", x.labels) || pc_exec_run(r, err, sizeof err);
        CU_ASSERT_FATAL(rc == 0);
        double d = rel_diff(out(&x, r, "logits"), want(&x, "logits", x.B * 3), x.B * 3);
        printf("\n  f32 attention mask on %s: logits rel diff %.3g", kind ? "jit" : "ref", d);
        CU_ASSERT(d <= 1e-4);
        pc_exec_free(r);
    }
    free(fm);
    bx_close(&x);
}

/* PEFT's default targets for the model type: bert -> query, value */
static void test_default_targets(void) {
    static const char *variants[] = {HF_DIR("bert_f32"), HF_DIR("roberta_f16")};
    for (int v = 0; v < 2; v++) {
        bx x;
        char err[1024];
        CU_ASSERT_EQUAL_FATAL(bx_open(&x, variants[v], NULL, NULL), 0);
        pc_adapter_config *c = pc_adapter_config_new(PC_PEFT_LORA);
        c->r = 4;
        CU_ASSERT_EQUAL_FATAL(pc_session_set_adapter(&x.s, c, "test", err, sizeof err), 0);
        CU_ASSERT_EQUAL_FATAL(bx_graph(&x, PC_TASK_SEQ_CLASSIFY, PC_ADAPT_TRAIN, true, 2, 8), 0);
        int a = 0, q = 0, val = 0, head = 0;
        for (int i = 0; i < x.store.n; i++)
            if (x.store.e[i].flags & PC_TRAINABLE) {
                a++;
                q += strstr(x.store.e[i].key, "attention.self.query.lora_") != NULL;
                val += strstr(x.store.e[i].key, "attention.self.value.lora_") != NULL;
                head += strncmp(x.store.e[i].key, "base_model.model.classifier.", 28) == 0;
            }
        /* task_type null on an encoder is taken as SEQ_CLS: the head trains too */
        printf("\n  %s, target_modules null: %d LoRA tensors (%d query, %d value), %d of the head",
               x.s.model.info.model_type, a - head, q, val, head);
        CU_ASSERT(a - head == 8 && q == 4 && val == 4 && head == (v ? 4 : 2));
        bx_close(&x);
    }
}

/* TRAIN graphs draw dropout from %seed (transformers' places); other tasks are refused */
static void test_train_dropout(void) {
    bx x;
    char err[1024];
    CU_ASSERT_EQUAL_FATAL(bx_open(&x, HF_DIR("roberta_f16"), NULL, HF_DIR("roberta_f16/expected.safetensors")), 0);
    CU_ASSERT_EQUAL_FATAL(bx_graph(&x, PC_TASK_SEQ_CLASSIFY, PC_ADAPT_TRAIN, false, x.B, x.S), 0);
    int nd = 0;
    for (pc_val v = 0; v < x.g->nvals; v++) nd += pc_v(x.g, v)->op == PC_OP_dropout;
    CU_ASSERT(pc_lookup(x.g, "seed") != PC_NONE);
    /* embeddings, per layer attention probs + 2 hidden, 2 in the head */
    CU_ASSERT_EQUAL(nd, 1 + 3 * 2 + 2);
    float l[3];
    for (int i = 0; i < 3; i++) {
        x.seed = i < 2 ? 7 : 8;
        pc_exec *r = bx_run(&x, PC_BACKEND_JIT);
        CU_ASSERT_FATAL(r != NULL);
        l[i] = *out(&x, r, "loss");
        pc_exec_free(r);
    }
    float ev = *want(&x, "loss", 1);
    printf("\n  TRAIN loss with dropout: %.5f, %.5f (seed 7 twice), %.5f (seed 8); eval %.5f; %d dropout ops", l[0],
           l[1], l[2], ev, nd);
    CU_ASSERT(l[0] == l[1] && l[0] != l[2] && l[0] != ev && isfinite(l[2]));
    static const pc_graph_task refused[] = {PC_TASK_LM, PC_TASK_FORWARD, PC_TASK_DECODE};
    for (int i = 0; i < 3; i++) {
        pc_build_req req = {.task = refused[i], .batch = 1, .seq = 4};
        pc_graph *g = pc_model_build(&x.s.model, &req, NULL, err, sizeof err);
        CU_ASSERT(g == NULL && strstr(err, "encoder builds sequence-classification"));
        pc_graph_free(g);
    }
    pc_build_req req = {.task = PC_TASK_SEQ_CLASSIFY, .batch = 1, .seq = 9}; /* 20 positions - pad 1 - 1 = 18 */
    req.seq = 19;
    CU_ASSERT(pc_model_build(&x.s.model, &req, NULL, err, sizeof err) == NULL && strstr(err, "18 positions"));
    printf("\n  refused: %s", err);
    bx_close(&x);
}

/* ---- bad inputs ---- */
static char tmpdir[256];

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs(text, f);
    fclose(f);
}

/* tmpdir/<name>: bert_f32's config.json with `edit` applied (sed-like: old -> new) and its
 * weights, with `drop` left out and `reshape` cut to its first row */
static void make_dir(const char *name, const char *old, const char *new_, const char *drop, const char *reshape, char *out,
                     size_t len) {
    char err[1024], path[600];
    snprintf(out, len, "%s/%s", tmpdir, name);
    CU_ASSERT_FATAL(mkdir(out, 0755) == 0);
    FILE *f = fopen(HF_DIR("bert_f32/config.json"), "r");
    char cfg[8192];
    size_t n = fread(cfg, 1, sizeof cfg - 1, f);
    fclose(f);
    cfg[n] = 0;
    if (old) {
        char *p = strstr(cfg, old), buf[8192];
        CU_ASSERT_FATAL(p != NULL);
        snprintf(buf, sizeof buf, "%.*s%s%s", (int)(p - cfg), cfg, new_, p + strlen(old));
        snprintf(cfg, sizeof cfg, "%s", buf);
    }
    snprintf(path, sizeof path, "%s/config.json", out);
    write_text(path, cfg);
    pc_st_file *src = pc_st_open(HF_DIR("bert_f32/model.safetensors"), err, sizeof err);
    pc_st_writer *w = pc_st_writer_new();
    for (int i = 0; i < pc_st_count(src); i++) {
        const pc_st_tensor *t = pc_st_get(src, i);
        if (drop && !strcmp(t->name, drop)) continue;
        pc_shape s = t->shape;
        if (reshape && !strcmp(t->name, reshape)) s.dim[0] = 1;
        CU_ASSERT_FATAL(pc_st_writer_add(w, t->name, t->dtype, s, t->data, err, sizeof err) == 0);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    CU_ASSERT_FATAL(pc_st_write(w, path, err, sizeof err) == 0);
    pc_st_writer_free(w);
    pc_st_close(src);
}

static void expect_refused(const char *dir, const char *family, const char *a, const char *b) {
    pc_model m;
    char err[2048] = "";
    int rc = pc_model_open(&m, dir, family, err, sizeof err);
    printf("\n  %s", err);
    CU_ASSERT(rc == -1);
    CU_ASSERT(strstr(err, a) != NULL);
    CU_ASSERT(!b || strstr(err, b) != NULL);
    if (rc == 0) pc_model_close(&m);
}

static void test_bad_inputs(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/peftc_test_hf_bert_XXXXXX");
    CU_ASSERT_FATAL(mkdtemp(tmpdir) != NULL);
    char d[512];
    make_dir("gpt2", "\"model_type\": \"bert\"", "\"model_type\": \"gpt2\"", NULL, NULL, d, sizeof d);
    expect_refused(d, "hf-bert", "config.json: field \"model_type\": \"gpt2\"", "BERT or RoBERTa");
    make_dir("no_hidden", "\"hidden_size\": 32,", "", NULL, NULL, d, sizeof d);
    expect_refused(d, NULL, "config.json: field \"hidden_size\": missing", NULL);
    make_dir("heads", "\"num_attention_heads\": 4", "\"num_attention_heads\": 5", NULL, NULL, d, sizeof d);
    expect_refused(d, NULL, "config.json", "num_attention_heads (5) does not divide hidden_size (32)");
    make_dir("act", "\"hidden_act\": \"gelu\"", "\"hidden_act\": \"quick_gelu\"", NULL, NULL, d, sizeof d);
    expect_refused(d, NULL, "field \"hidden_act\": \"quick_gelu\"", NULL);
    make_dir("relpos", "\"is_decoder\": false", "\"position_embedding_type\": \"relative_key\", \"is_decoder\": false",
             NULL, NULL, d, sizeof d);
    expect_refused(d, NULL, "field \"position_embedding_type\"", NULL);
    make_dir("regression", "\"2\": \"LABEL_2\"", "\"2\": \"LABEL_2\"}, \"num_labels\": 1, \"x\": {\"a\": 1", NULL, NULL,
             d, sizeof d);
    expect_refused(d, NULL, "field \"num_labels\": 1, but id2label has 3", NULL);
    make_dir("type", "\"num_hidden_layers\": 2", "\"num_hidden_layers\": \"2\"", NULL, NULL, d, sizeof d);
    expect_refused(d, NULL, "field \"num_hidden_layers\": not an integer", NULL);
    make_dir("missing", NULL, NULL, "bert.encoder.layer.1.attention.self.value.weight", NULL, d, sizeof d);
    expect_refused(d, NULL, "no tensor \"bert.encoder.layer.1.attention.self.value.weight\"",
                   "(nor \"encoder.layer.1.attention.self.value.weight\")");
    make_dir("misshapen", NULL, NULL, NULL, "bert.encoder.layer.0.intermediate.dense.weight", d, sizeof d);
    expect_refused(d, NULL, "tensor \"bert.encoder.layer.0.intermediate.dense.weight\" is [1,32]", "want [64,32]");
    /* a missing classifier is made, not refused */
    make_dir("no_head", NULL, NULL, "classifier.weight", NULL, d, sizeof d);
    pc_model m;
    char err[1024];
    CU_ASSERT_EQUAL(pc_model_open(&m, d, NULL, err, sizeof err), 0);
    pc_model_close(&m);
    CU_ASSERT(cu_rm_tree(tmpdir) == 0);
}

/* the directory written back (what merge writes): the SEQ_CLASSIFY layout, replaced tensors,
 * a made head included; it reopens to the same model */
static void test_write(void) {
    pc_model m, m2;
    char err[1024], dir[256];
    snprintf(dir, sizeof dir, "/tmp/peftc_test_hf_bert_w_XXXXXX");
    CU_ASSERT_FATAL(mkdtemp(dir) != NULL);
    CU_ASSERT_EQUAL_FATAL(pc_model_open(&m, HF_DIR("bert_bare"), NULL, err, sizeof err), 0);
    pc_shape s;
    const float *q = pc_model_weight(&m, "bert.encoder.layer.0.attention.self.query.weight", &s);
    float *nq = malloc((size_t)pc_shape_numel(s) * sizeof *nq);
    for (int64_t i = 0; i < pc_shape_numel(s); i++) nq[i] = q[i] + 1.0f;
    pc_weight rep = {.key = "bert.encoder.layer.0.attention.self.query.weight", .shape = s, .data = nq};
    char out[300];
    snprintf(out, sizeof out, "%s/model", dir);
    int rc = m.family->write(&m, out, &rep, 1, err, sizeof err);
    if (rc) printf("\n  %s", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL_FATAL(pc_model_open(&m2, out, NULL, err, sizeof err), 0);
    int same = 0, n = 0;
    for (int i = 0; i < m.family->nweights(&m); i++) {
        const char *k = m.family->weight_key(&m, i);
        pc_shape a, b;
        const float *x = pc_model_weight(&m, k, &a), *y = pc_model_weight(&m2, k, &b);
        if (!x) continue; /* position_ids (I64) */
        n++;
        CU_ASSERT_FATAL(y != NULL && pc_shape_eq(a, b));
        same += memcmp(strcmp(k, rep.key) ? x : nq, y, (size_t)pc_shape_numel(a) * sizeof *x) == 0;
    }
    printf("\n  written and reopened: %d of %d tensors identical (one replaced, the made head kept)", same, n);
    CU_ASSERT(same == n && n > 0);
    pc_model_close(&m2);
    pc_model_close(&m);
    free(nq);
    CU_ASSERT(cu_rm_tree(dir) == 0);
}

static CU_TestInfo tests[] = {
    {"BERT, f32, token types, padded batch = transformers", test_bert},
    {"BERT with PEFT's LoRA (classifier copy) = PEFT, gradients", test_bert_lora},
    {"RoBERTa, f16, positions from padding_idx + 1 = transformers", test_roberta},
    {"RoBERTa with PEFT's LoRA (classifier copy) = PEFT, gradients", test_roberta_lora},
    {"last hidden state (bare encoder names) = transformers", test_features},
    {"padding never changes real tokens' outputs", test_padding},
    {"bare BertModel checkpoint: names, made head", test_bare_encoder},
    {"all-MiniLM-L6-v2 = transformers (PEFTC_MINILM_DIR)", test_minilm},
    {"prompt tuning's longer sequence = PEFT (mask, token types, pooler)", test_prompt_tuning},
    {"an f32 attention mask", test_f32_mask},
    {"PEFT's default targets for bert and roberta", test_default_targets},
    {"TRAIN graphs: dropout from %seed; refused tasks", test_train_dropout},
    {"bad config.json fields and tensors are named", test_bad_inputs},
    {"writing the directory back", test_write},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("hf_bert", tests)
