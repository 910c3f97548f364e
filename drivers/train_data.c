/* Training data by task (see train_data.h). */
#include "drivers/train_data.h"
#include "drivers/train_tasks.h"
#include "runtime/task_data.h"
#include "runtime/fileio.h"
#include "runtime/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pc_train_shuffle(size_t *idx, size_t n, uint64_t seed) {
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
    d->nbuckets = 1;
    d->bucket_S[0] = d->S;
    d->tokens = malloc(d->B * d->S * sizeof *d->tokens);
    d->targets = malloc(d->B * d->S * sizeof *d->targets);
    d->task_ids = malloc(d->B * sizeof *d->task_ids);
    for (size_t r = 0; d->task_ids && r < d->B; r++) d->task_ids[r] = o->task_id;
    if (!d->tokens || !d->targets || !d->task_ids)
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
        pc_train_shuffle(d->train_idx, n, pc_mix64(o->seed ^ 0x5eedc1a55ULL));
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
    /* buckets 16, 24, 32, 48, 64, 96, ... below S, then S: a batch pads at most 1.5x its
     * longest example (past 16 tokens) */
    for (size_t b = 16; b < d->S && d->nbuckets < PC_TRAIN_MAX_BUCKETS - 1; b = b % 3 ? b * 3 / 2 : b * 4 / 3)
        d->bucket_S[d->nbuckets++] = b;
    d->bucket_S[d->nbuckets++] = d->S;
    for (int b = 0; b < d->nbuckets; b++)
        if (pc_cls_batch_init(&d->batch[b], d->B, d->bucket_S[b], err, errlen)) return -1;
    return 0;
}

void pc_train_data_one_bucket(pc_train_data *d) {
    if (d->task != PC_TASK_SEQ_CLASSIFY || d->nbuckets <= 1) return;
    pc_cls_batch last = d->batch[d->nbuckets - 1];
    for (int b = 0; b < d->nbuckets - 1; b++) pc_cls_batch_free(&d->batch[b]);
    d->batch[0] = last;
    d->batch[d->nbuckets - 1] = (pc_cls_batch){0};
    d->bucket_S[0] = d->S;
    d->nbuckets = 1;
}

/* the shortest bucket that holds examples of n ids */
static int bucket_of(const pc_train_data *d, int n) {
    for (int b = 0; b < d->nbuckets; b++)
        if ((size_t)n <= d->bucket_S[b]) return b;
    return d->nbuckets - 1;
}

int pc_train_data_open(pc_train_data *d, const pc_session *s, const pc_train_opts *oin, char *err, size_t errlen) {
    *d = (pc_train_data){0};
    pc_train_opts o = *oin;
    bool jsonl = false;
    if (!s->model.info.encoder && pc_task_data_detect(o.data, &jsonl, err, errlen)) return -1;
    if (o.seq <= 0) o.seq = s->model.info.encoder ? 128 : jsonl ? 0 : 64; /* the task's default (0: the room) */
    if (o.objective != PC_OBJECTIVE_LM && !jsonl)
        return pc_errf(err, errlen, "--objective tfew: %s is not multiple-choice task data (a .jsonl file of "
                       "{\"input\", \"answer_choices\", \"label\"} lines)", o.data);
    int rc = s->model.info.encoder ? open_cls(d, s, &o, err, errlen)
             : jsonl               ? pc_train_tasks_open(d, s, &o, err, errlen)
                                   : open_text(d, s, &o, err, errlen);
    if (rc) pc_train_data_free(d);
    return rc;
}

void pc_train_data_free(pc_train_data *d) {
    pc_train_tasks_free(d->tasks);
    free(d->task_ids);
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
    for (int b = 0; b < PC_TRAIN_MAX_BUCKETS; b++) pc_cls_batch_free(&d->batch[b]);
    *d = (pc_train_data){0};
}

int pc_train_data_inputs(const pc_train_data *d, int b, const char **names, void **ptrs) {
    if (d->tasks) return pc_train_tasks_inputs(d, b, names, ptrs);
    if (d->task == PC_TASK_LM) {
        names[0] = "tokens", ptrs[0] = d->tokens;
        names[1] = "targets", ptrs[1] = d->targets;
        names[2] = "task_ids", ptrs[2] = d->task_ids;
        return 3;
    }
    names[0] = "tokens", ptrs[0] = d->batch[b].tokens;
    names[1] = "attention_mask", ptrs[1] = d->batch[b].mask;
    names[2] = "labels", ptrs[2] = d->batch[b].labels;
    return 3;
}

size_t pc_train_data_size(const pc_train_data *d) {
    return d->tasks ? pc_train_tasks_size(d) : d->task == PC_TASK_LM ? d->train.n : d->ntrain;
}
size_t pc_train_data_per_row(const pc_train_data *d) { return d->task == PC_TASK_LM && !d->tasks ? d->S : 1; }
bool pc_train_data_by_example(const pc_train_data *d) {
    return d->task == PC_TASK_SEQ_CLASSIFY || pc_train_tasks_choices(d) > 0;
}
const char *pc_train_data_eval_output(const pc_train_data *d) {
    return d->task == PC_TASK_SEQ_CLASSIFY ? "logits" : pc_train_tasks_choices(d) > 0 ? "nll" : NULL;
}

int pc_train_data_epoch_steps(const pc_train_data *d, double epochs, int grad_accum) {
    double per_step = (double)d->B * (double)pc_train_data_per_row(d) * (grad_accum > 0 ? grad_accum : 1);
    double steps = ceil(epochs * (double)pc_train_data_size(d) / per_step);
    return steps < 1 ? 1 : steps > 1e9 ? 1000000000 : (int)steps;
}

int pc_train_data_sample(pc_train_data *d, uint64_t seed, int t, int k, int grad_accum) {
    if (d->tasks) return pc_train_tasks_sample(d, seed, t, k, grad_accum);
    if (d->task == PC_TASK_LM) {
        pc_data_sample(&d->train, d->B, d->S, seed, (uint64_t)t, (uint64_t)k * d->B, d->tokens, d->targets);
        return 0;
    }
    const size_t per_step = d->B * (size_t)grad_accum, n = d->ntrain;
    const size_t steps_per_epoch = (n + per_step - 1) / per_step;
    const int64_t epoch = (int64_t)((size_t)(t - 1) / steps_per_epoch);
    if (epoch != d->perm_epoch) {
        memcpy(d->perm, d->train_idx, n * sizeof *d->perm);
        pc_train_shuffle(d->perm, n, pc_mix64(pc_mix64(seed) ^ (uint64_t)epoch));
        d->perm_epoch = epoch;
    }
    size_t pos = ((size_t)(t - 1) % steps_per_epoch) * per_step + (size_t)k * d->B;
    int longest = 0;
    for (size_t r = 0; r < d->B; r++) {
        d->rows[r] = d->perm[(pos + r) % n];
        if (d->cls.ex[d->rows[r]].n > longest) longest = d->cls.ex[d->rows[r]].n;
    }
    int b = bucket_of(d, longest);
    pc_cls_batch_fill(&d->batch[b], &d->cls, d->rows, 0, d->B);
    return b;
}

size_t pc_train_data_eval_items(const pc_train_data *d, int eval_batches) {
    if (d->tasks) return pc_train_tasks_eval_items(d, eval_batches);
    size_t n = d->task == PC_TASK_LM ? pc_data_eval_windows(&d->val, d->S) : d->nval;
    if (eval_batches > 0 && n > (size_t)eval_batches * d->B) n = (size_t)eval_batches * d->B;
    return n;
}

/* (length, index) pairs: the evaluated held-out examples sorted shortest first */
typedef struct {
    int n;
    size_t i;
} len_idx;

static int cmp_len_idx(const void *a, const void *b) {
    const len_idx *x = a, *y = b;
    if (x->n != y->n) return (x->n > y->n) - (x->n < y->n);
    return (x->i > y->i) - (x->i < y->i);
}

/* the first nitems held-out examples (the evaluated ones, in file order) shortest first, so
 * their batches fall into the short buckets; once per count (the loss and accuracy are sums,
 * the order changes neither beyond rounding) */
static void sort_eval(pc_train_data *d, size_t nitems) {
    if (d->eval_sorted == nitems) return;
    const pc_cls_data *src = d->cls_val.n ? &d->cls_val : &d->cls;
    len_idx *p = malloc((nitems ? nitems : 1) * sizeof *p);
    if (!p) return; /* unsorted still evaluates, in the longer buckets */
    qsort(d->val_idx, d->nval, sizeof *d->val_idx, cmp_size); /* file order, then the first nitems */
    for (size_t k = 0; k < nitems; k++) p[k] = (len_idx){src->ex[d->val_idx[k]].n, d->val_idx[k]};
    qsort(p, nitems, sizeof *p, cmp_len_idx);
    for (size_t k = 0; k < nitems; k++) d->val_idx[k] = p[k].i;
    free(p);
    d->eval_sorted = nitems;
}

size_t pc_train_data_eval_fill(pc_train_data *d, size_t first, size_t nitems, int *b) {
    if (d->tasks) return pc_train_tasks_eval_fill(d, first, nitems, b);
    size_t B = d->B, S = d->S, take = nitems - first < B ? nitems - first : B;
    *b = 0;
    if (d->task == PC_TASK_SEQ_CLASSIFY) sort_eval(d, nitems);
    if (d->task == PC_TASK_LM) {
        size_t real = pc_data_eval_batch(&d->val, S, first, take, -100, d->tokens, d->targets);
        for (size_t row = real; row < B; row++)
            for (size_t i = 0; i < S; i++) d->tokens[row * S + i] = 0, d->targets[row * S + i] = -100;
        return real;
    }
    const pc_cls_data *src = d->cls_val.n ? &d->cls_val : &d->cls;
    int longest = 0;
    for (size_t i = 0; i < take; i++)
        if (src->ex[d->val_idx[first + i]].n > longest) longest = src->ex[d->val_idx[first + i]].n;
    *b = bucket_of(d, longest);
    pc_cls_batch_fill(&d->batch[*b], src, d->val_idx + first, 0, take);
    return take;
}

void pc_train_data_eval_tally(const pc_train_data *d, int b, pc_cls_result *acc, size_t real, float loss,
                              const float *logits, int num_labels) {
    if (d->tasks) {
        pc_train_tasks_eval_tally(d, b, acc, real, loss, logits);
        return;
    }
    if (d->task == PC_TASK_LM) {
        acc->sum_loss += (double)loss * (double)(real * d->S);
        acc->n += real * d->S;
        return;
    }
    pc_cls_tally(acc, &d->batch[b], real, loss, logits, num_labels);
}

void pc_train_data_describe(const pc_train_data *d, const pc_train_opts *o, double loss, double accuracy) {
    if (pc_train_data_by_example(d))
        fprintf(stderr, "peftc train: %zu training examples, %zu held-out, %d steps of %d (%d tokens a row); "
                "held-out loss before training %.4f, accuracy %.2f%%\n", d->ntrain, d->nval, o->steps,
                o->batch * o->grad_accum, o->seq, loss, 100 * accuracy);
    else if (d->tasks)
        fprintf(stderr, "peftc train: %zu training rows, %zu held-out, %d steps of %d (%d tokens a row); "
                "held-out loss before training %.4f\n", d->ntrain, d->nval, o->steps, o->batch * o->grad_accum,
                o->seq, loss);
    else
        fprintf(stderr, "peftc train: %zu training tokens, %zu held-out; held-out loss before training %.4f\n",
                d->train.n, d->val.n, loss);
}
