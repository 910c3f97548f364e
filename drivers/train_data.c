/* Training data by task (see train_data.h). */
#include "drivers/train_data.h"
#include "runtime/fileio.h"
#include "runtime/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* the seeded Fisher-Yates shuffle of idx[0..n) */
static void shuffle(size_t *idx, size_t n, uint64_t seed) {
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(pc_mix64(seed ^ pc_mix64(i)) % i);
        size_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}

static int cmp_size(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

static int open_text(pc_train_data *d, const pc_session *s, const pc_train_opts *o, char *err, size_t errlen) {
    d->task = PC_TASK_LM;
    d->B = (size_t)o->batch, d->S = (size_t)o->seq;
    if (o->labels || o->val_data)
        return pc_errf(err, errlen, "%s: %s is for classification data, and %s is a causal LM (text data)",
                       o->labels ? "--labels" : "--val-data", o->labels ? o->labels : o->val_data, s->model.path);
    if (pc_session_need_tokenizer(s, "training on text", err, errlen) ||
        pc_data_load(&d->text, o->data, s->tok, err, errlen) ||
        pc_data_split(&d->text, o->val_fraction, d->S, &d->train, &d->val, o->data, err, errlen))
        return -1;
    d->tokens = malloc(d->B * d->S * sizeof *d->tokens);
    d->targets = malloc(d->B * d->S * sizeof *d->targets);
    if (!d->tokens || !d->targets)
        return pc_errf(err, errlen, "out of memory allocating %zu bytes of batches", 2 * d->B * d->S * sizeof *d->tokens);
    return 0;
}

static int open_cls(pc_train_data *d, const pc_session *s, const pc_train_opts *o, char *err, size_t errlen) {
    d->task = PC_TASK_SEQ_CLASSIFY;
    const int L = s->model.info.num_labels;
    if (L <= 0) return pc_errf(err, errlen, "%s has no classification head", s->model.path);
    if (pc_session_need_tokenizer(s, "training a classifier", err, errlen)) return -1;
    if (o->labels) {
        if (pc_cls_labels_load(&d->labels, o->labels, err, errlen)) return -1;
        if (d->labels.n != L)
            return pc_errf(err, errlen, "%s: %d labels, but the model's classifier has %d (num_labels in its "
                           "config.json)", o->labels, d->labels.n, L);
    }
    const pc_cls_labels *lb = o->labels ? &d->labels : NULL;
    if (pc_cls_data_load(&d->cls, o->data, s->tok, o->seq, L, lb, true, err, errlen)) return -1;
    if (o->val_data && pc_cls_data_load(&d->cls_val, o->val_data, s->tok, o->seq, L, lb, true, err, errlen)) return -1;
    size_t n = d->cls.n;
    d->train_idx = malloc((n ? n : 1) * sizeof *d->train_idx);
    d->perm = malloc((n ? n : 1) * sizeof *d->perm);
    d->rows = malloc((size_t)o->batch * sizeof *d->rows);
    if (!d->train_idx || !d->perm || !d->rows) return pc_errf(err, errlen, "out of memory");
    for (size_t i = 0; i < n; i++) d->train_idx[i] = i;
    if (o->val_data) {
        d->ntrain = n;
        d->nval = d->cls_val.n;
        if (!(d->val_idx = malloc((d->nval ? d->nval : 1) * sizeof *d->val_idx))) return pc_errf(err, errlen, "out of memory");
        for (size_t i = 0; i < d->nval; i++) d->val_idx[i] = i;
    } else {
        /* the held-out part: the last val_fraction of a seeded shuffle, in file order */
        shuffle(d->train_idx, n, pc_mix64(o->seed ^ 0x5eedc1a55ULL));
        d->nval = o->val_fraction > 0 ? (size_t)((double)n * o->val_fraction) : 0;
        d->ntrain = n - d->nval;
        if (o->val_fraction > 0 && d->nval == 0)
            return pc_errf(err, errlen, "%s: %zu example%s: --val-fraction %g holds out none (give --val-data FILE, "
                           "or --val-fraction 0)", o->data, n, n == 1 ? "" : "s", o->val_fraction);
        if (!(d->val_idx = malloc((d->nval ? d->nval : 1) * sizeof *d->val_idx))) return pc_errf(err, errlen, "out of memory");
        memcpy(d->val_idx, d->train_idx + d->ntrain, d->nval * sizeof *d->val_idx);
        qsort(d->val_idx, d->nval, sizeof *d->val_idx, cmp_size); /* file order */
    }
    if (d->ntrain == 0) return pc_errf(err, errlen, "%s: no training examples left after the held-out split", o->data);
    int max_len = d->cls.max_len > d->cls_val.max_len ? d->cls.max_len : d->cls_val.max_len;
    d->B = (size_t)o->batch;
    d->S = (size_t)pc_cls_graph_seq(max_len, o->seq);
    d->perm_epoch = -1;
    return pc_cls_batch_init(&d->batch, d->B, d->S, err, errlen);
}

int pc_train_data_open(pc_train_data *d, const pc_session *s, const pc_train_opts *o, char *err, size_t errlen) {
    *d = (pc_train_data){0};
    int rc = s->model.info.encoder ? open_cls(d, s, o, err, errlen) : open_text(d, s, o, err, errlen);
    if (rc) pc_train_data_free(d);
    return rc;
}

void pc_train_data_free(pc_train_data *d) {
    pc_data_free(&d->text);
    free(d->tokens);
    free(d->targets);
    pc_cls_labels_free(&d->labels);
    pc_cls_data_free(&d->cls);
    pc_cls_data_free(&d->cls_val);
    free(d->train_idx);
    free(d->val_idx);
    free(d->perm);
    free(d->rows);
    pc_cls_batch_free(&d->batch);
    *d = (pc_train_data){0};
}

int pc_train_data_inputs(const pc_train_data *d, const char **names, void **ptrs) {
    if (d->task == PC_TASK_LM) {
        names[0] = "tokens", ptrs[0] = d->tokens;
        names[1] = "targets", ptrs[1] = d->targets;
        return 2;
    }
    names[0] = "tokens", ptrs[0] = d->batch.tokens;
    names[1] = "attention_mask", ptrs[1] = d->batch.mask;
    names[2] = "labels", ptrs[2] = d->batch.labels;
    return 3;
}

size_t pc_train_data_size(const pc_train_data *d) { return d->task == PC_TASK_LM ? d->train.n : d->ntrain; }
size_t pc_train_data_per_row(const pc_train_data *d) { return d->task == PC_TASK_LM ? d->S : 1; }

int pc_train_data_epoch_steps(const pc_train_data *d, double epochs, int grad_accum) {
    double per_step = (double)d->B * (double)pc_train_data_per_row(d) * (grad_accum > 0 ? grad_accum : 1);
    double steps = ceil(epochs * (double)pc_train_data_size(d) / per_step);
    return steps < 1 ? 1 : steps > 1e9 ? 1000000000 : (int)steps;
}

void pc_train_data_sample(pc_train_data *d, uint64_t seed, int t, int k, int grad_accum) {
    if (d->task == PC_TASK_LM) {
        pc_data_sample(&d->train, d->B, d->S, seed, (uint64_t)t, (uint64_t)k * d->B, d->tokens, d->targets);
        return;
    }
    const size_t per_step = d->B * (size_t)grad_accum, n = d->ntrain;
    const size_t steps_per_epoch = (n + per_step - 1) / per_step;
    const int64_t epoch = (int64_t)((size_t)(t - 1) / steps_per_epoch);
    if (epoch != d->perm_epoch) {
        memcpy(d->perm, d->train_idx, n * sizeof *d->perm);
        shuffle(d->perm, n, pc_mix64(pc_mix64(seed) ^ (uint64_t)epoch));
        d->perm_epoch = epoch;
    }
    size_t pos = ((size_t)(t - 1) % steps_per_epoch) * per_step + (size_t)k * d->B;
    for (size_t r = 0; r < d->B; r++) d->rows[r] = d->perm[(pos + r) % n];
    pc_cls_batch_fill(&d->batch, &d->cls, d->rows, 0, d->B);
}

size_t pc_train_data_eval_items(const pc_train_data *d, int eval_batches) {
    size_t n = d->task == PC_TASK_LM ? pc_data_eval_windows(&d->val, d->S) : d->nval;
    if (eval_batches > 0 && n > (size_t)eval_batches * d->B) n = (size_t)eval_batches * d->B;
    return n;
}

size_t pc_train_data_eval_fill(pc_train_data *d, size_t first, size_t nitems) {
    size_t B = d->B, S = d->S, take = nitems - first < B ? nitems - first : B;
    if (d->task == PC_TASK_LM) {
        size_t real = pc_data_eval_batch(&d->val, S, first, take, -100, d->tokens, d->targets);
        for (size_t b = real; b < B; b++)
            for (size_t i = 0; i < S; i++) d->tokens[b * S + i] = 0, d->targets[b * S + i] = -100;
        return real;
    }
    const pc_cls_data *src = d->cls_val.n ? &d->cls_val : &d->cls;
    pc_cls_batch_fill(&d->batch, src, d->val_idx + first, 0, take);
    return take;
}

void pc_train_data_eval_tally(const pc_train_data *d, pc_cls_result *acc, size_t real, float loss,
                              const float *logits, int num_labels) {
    if (d->task == PC_TASK_LM) {
        acc->sum_loss += (double)loss * (double)(real * d->S);
        acc->n += real * d->S;
        return;
    }
    pc_cls_tally(acc, &d->batch, real, loss, logits, num_labels);
}
