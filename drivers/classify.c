/* Classification batches, evaluation and prediction. */
#include "drivers/classify.h"
#include "drivers/fold_weights.h"
#include "drivers/merge.h"
#include "drivers/store.h"
#include "ir/ir.h"
#include "runtime/fileio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pc_cls_batch_init(pc_cls_batch *b, size_t B, size_t S, char *err, size_t errlen) {
    *b = (pc_cls_batch){.B = B, .S = S};
    b->tokens = calloc(B * S, sizeof *b->tokens);
    b->mask = calloc(B * S, sizeof *b->mask);
    b->labels = calloc(B, sizeof *b->labels);
    if (b->tokens && b->mask && b->labels) return 0;
    pc_cls_batch_free(b);
    return pc_errf(err, errlen, "out of memory allocating a batch of %zu x %zu tokens", B, S);
}

void pc_cls_batch_free(pc_cls_batch *b) {
    free(b->tokens);
    free(b->mask);
    free(b->labels);
    *b = (pc_cls_batch){0};
}

static int bind_if(pc_exec *r, const pc_graph *g, const char *name, void *data) {
    pc_val v = pc_lookup(g, name);
    return v == PC_NONE ? 0 : pc_exec_bind(r, v, data);
}

int pc_cls_batch_bind(const pc_cls_batch *b, pc_exec *r, const pc_graph *g) {
    return bind_if(r, g, "tokens", b->tokens) || bind_if(r, g, "attention_mask", b->mask) ||
           bind_if(r, g, "labels", b->labels);
}

void pc_cls_batch_fill(pc_cls_batch *b, const pc_cls_data *d, const size_t *idx, size_t first, size_t n) {
    const size_t S = b->S;
    for (size_t r = 0; r < b->B; r++) {
        int32_t *t = b->tokens + r * S;
        float *m = b->mask + r * S;
        if (r >= n) { /* padding: one attended token, so no row is wholly masked */
            memset(t, 0, S * sizeof *t);
            memset(m, 0, S * sizeof *m);
            m[0] = 1;
            b->labels[r] = -100;
            continue;
        }
        const pc_cls_example *e = &d->ex[idx ? idx[r] : first + r];
        size_t k = (size_t)e->n < S ? (size_t)e->n : S;
        memcpy(t, e->ids, k * sizeof *t);
        memset(t + k, 0, (S - k) * sizeof *t);
        for (size_t j = 0; j < S; j++) m[j] = j < k ? 1.0f : 0.0f;
        b->labels[r] = e->label >= 0 ? e->label : -100;
    }
}

int pc_argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

void pc_cls_tally(pc_cls_result *r, const pc_cls_batch *b, size_t n, float loss, const float *logits, int L) {
    size_t labelled = 0;
    for (size_t i = 0; i < n; i++) {
        if (b->labels[i] < 0) continue;
        labelled++;
        r->correct += pc_argmax(logits + i * (size_t)L, L) == b->labels[i];
    }
    r->n += labelled;
    if (labelled) r->sum_loss += (double)loss * (double)labelled;
}

void pc_cls_finish(pc_cls_result *r) {
    r->loss = r->n ? r->sum_loss / (double)r->n : NAN;
    r->accuracy = r->n ? (double)r->correct / (double)r->n : NAN;
}

int pc_cls_graph_seq(int max_len, int seq) {
    int s = (max_len + 7) / 8 * 8;
    if (s < 8) s = 8;
    return s < seq ? s : seq;
}

/* every batch of the examples through the inference graph: on_batch(ctx, batch, first, n, loss, logits) */
typedef int (*batch_fn)(void *ctx, const pc_cls_batch *b, const pc_cls_data *d, size_t first, size_t n, float loss,
                        const float *logits, int L, char *err, size_t errlen);

static int run_batches(pc_session *s, const char *data_path, const char *labels_path, int seq, int batch, bool merge,
                       bool need_labels, const pc_exec_opts *exec, batch_fn fn, void *ctx, char *err, size_t errlen) {
    if (!s->model.info.encoder || s->model.info.num_labels <= 0)
        return pc_errf(err, errlen, "%s is not a sequence classifier (a %s model): classification data needs an "
                       "encoder with a classification head (BERT, RoBERTa)", s->model.path,
                       s->model.info.model_type ? s->model.info.model_type : s->model.family->name);
    if (seq <= 0 || seq > s->model.info.context)
        return pc_errf(err, errlen, "--seq must be in [1, %d] (the model's positions)", s->model.info.context);
    if (batch <= 0) return pc_errf(err, errlen, "--batch must be positive");
    if (pc_session_need_tokenizer(s, "classifying text", err, errlen)) return -1;
    pc_cls_labels labels = {0};
    pc_cls_data d = {0};
    pc_cls_batch b = {0};
    pc_graph *g = NULL;
    pc_exec *r = NULL;
    pc_store store = {0};
    pc_folded folded = {0};
    int rc = -1;
    const int L = s->model.info.num_labels;
    if (labels_path && pc_cls_labels_load(&labels, labels_path, err, errlen)) goto done;
    if (labels_path && labels.n != L) {
        pc_errf(err, errlen, "%s: %d labels, but the model's classifier has %d (num_labels in its config.json)",
                labels_path, labels.n, L);
        goto done;
    }
    if (pc_cls_data_load(&d, data_path, s->tok, seq, L, labels_path ? &labels : NULL, need_labels, err, errlen))
        goto done;
    size_t B = (size_t)batch < d.n ? (size_t)batch : d.n;
    size_t S = (size_t)pc_cls_graph_seq(d.max_len, seq);
    if (merge && s->adapter.cfg && pc_session_merge(s, NULL, err, errlen)) goto done;
    pc_build_req req = {.task = PC_TASK_SEQ_CLASSIFY, .batch = (int64_t)B, .seq = (int64_t)S, .mode = PC_ADAPT_EVAL};
    if (!(g = pc_session_inference_graph(s, &req, &store, &folded, err, errlen))) goto done;
    if (pc_cls_batch_init(&b, B, S, err, errlen) || !(r = pc_exec_new(g, exec, err, errlen))) goto done;
    if (pc_session_bind_inference(s, g, &store, &folded, r, err, errlen) || pc_cls_batch_bind(&b, r, g)) {
        if (!err[0]) pc_errf(err, errlen, "binding failed");
        goto done;
    }
    pc_val loss_v = pc_lookup(g, "loss"), logits_v = pc_lookup(g, "logits");
    if (logits_v == PC_NONE) { pc_errf(err, errlen, "the classifier graph has no %%logits"); goto done; }
    for (size_t first = 0; first < d.n; first += B) {
        size_t n = d.n - first < B ? d.n - first : B;
        pc_cls_batch_fill(&b, &d, NULL, first, n);
        if (pc_exec_run(r, err, errlen)) {
            char msg[4096];
            snprintf(msg, sizeof msg, "%s", err);
            pc_errf(err, errlen, "%s: examples %zu..%zu (lines %d..%d): %s", data_path, first, first + n - 1,
                    d.ex[first].line, d.ex[first + n - 1].line, msg);
            goto done;
        }
        float loss = loss_v == PC_NONE ? NAN : *(const float *)pc_exec_data(r, loss_v);
        if (fn(ctx, &b, &d, first, n, loss, pc_exec_data(r, logits_v), L, err, errlen)) goto done;
    }
    rc = 0;
done:
    pc_exec_free(r);
    pc_store_free(&store);
    pc_folded_free(&folded);
    pc_graph_free(g);
    pc_cls_batch_free(&b);
    pc_cls_data_free(&d);
    pc_cls_labels_free(&labels);
    return rc;
}

static int tally_batch(void *ctx, const pc_cls_batch *b, const pc_cls_data *d, size_t first, size_t n, float loss,
                       const float *logits, int L, char *err, size_t errlen) {
    (void)d, (void)first, (void)err, (void)errlen;
    pc_cls_tally(ctx, b, n, loss, logits, L);
    return 0;
}

int pc_eval_cls(pc_session *s, const char *data_path, const char *labels, int seq, int batch, bool merge,
                const pc_exec_opts *exec, pc_cls_result *res, char *err, size_t errlen) {
    *res = (pc_cls_result){0};
    if (errlen) err[0] = 0;
    if (run_batches(s, data_path, labels, seq, batch, merge, true, exec, tally_batch, res, err, errlen)) return -1;
    pc_cls_finish(res);
    return 0;
}

typedef struct {
    pc_predict_fn fn;
    void *ctx;
    float *probs;
} predict_ctx;

static int predict_batch(void *ctx, const pc_cls_batch *b, const pc_cls_data *d, size_t first, size_t n, float loss,
                         const float *logits, int L, char *err, size_t errlen) {
    (void)b, (void)loss;
    predict_ctx *p = ctx;
    if (!p->probs && !(p->probs = malloc((size_t)L * sizeof *p->probs))) return pc_errf(err, errlen, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const float *z = logits + i * (size_t)L;
        double mx = z[pc_argmax(z, L)], sum = 0;
        for (int j = 0; j < L; j++) sum += exp((double)z[j] - mx);
        for (int j = 0; j < L; j++) p->probs[j] = (float)(exp((double)z[j] - mx) / sum);
        if (p->fn(p->ctx, &d->ex[first + i], p->probs, L)) return pc_errf(err, errlen, "writing the predictions failed");
    }
    return 0;
}

int pc_predict_cls(pc_session *s, const char *data_path, const char *labels, int seq, int batch, bool merge,
                   const pc_exec_opts *exec, pc_predict_fn fn, void *ctx, char *err, size_t errlen) {
    if (errlen) err[0] = 0;
    predict_ctx p = {fn, ctx, NULL};
    int rc = run_batches(s, data_path, labels, seq, batch, merge, false, exec, predict_batch, &p, err, errlen);
    free(p.probs);
    return rc;
}
