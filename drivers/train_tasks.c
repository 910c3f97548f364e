/* Training and held-out evaluation on JSONL task data (see train_tasks.h). */
#include "drivers/train_tasks.h"
#include "drivers/task_batch.h"
#include "runtime/fileio.h"
#include "runtime/rng.h"

#include <stdlib.h>
#include <string.h>

struct pc_train_tasks {
    pc_task_data td, td_val;  /* the examples, and --val-data's (else empty) */
    const pc_task_data *vsrc; /* where the held-out items' examples are */
    pc_td_item *train, *val;  /* items (val: the evaluated ones sorted shortest first, see eval_fill) */
    size_t ntrain, nval, eval_sorted;
    pc_td_item *perm, *rows;  /* the epoch's permutation of train; a batch's items */
    int64_t perm_epoch;
    size_t C;
    pc_objective objective;
    pc_task_batch batch[PC_TRAIN_MAX_BUCKETS];
    const pc_td_item *eval_items; /* the last filled held-out batch */
    size_t eval_targets;          /* its target tokens */
};

void pc_train_tasks_free(struct pc_train_tasks *t) {
    if (!t) return;
    pc_task_data_free(&t->td);
    pc_task_data_free(&t->td_val);
    free(t->train);
    free(t->val);
    free(t->perm);
    free(t->rows);
    for (int b = 0; b < PC_TRAIN_MAX_BUCKETS; b++) pc_task_batch_free(&t->batch[b]);
    free(t);
}

static int cmp_item_file(const void *a, const void *b) {
    const pc_td_item *x = a, *y = b;
    if (x->ex != y->ex) return (x->ex > y->ex) - (x->ex < y->ex);
    return (x->start > y->start) - (x->start < y->start);
}

static int cmp_item_len(const void *a, const void *b) {
    const pc_td_item *x = a, *y = b;
    if (x->len != y->len) return (x->len > y->len) - (x->len < y->len);
    return cmp_item_file(a, b);
}

static int split(struct pc_train_tasks *t, const pc_train_opts *o, size_t S, char *err, size_t errlen) {
    size_t n = t->td.n, nval = 0;
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    if (!idx) return pc_errf(err, errlen, "out of memory");
    for (size_t i = 0; i < n; i++) idx[i] = i;
    int rc = 0;
    if (!o->val_data) {
        /* the held-out examples: the last val_fraction of a seeded shuffle */
        pc_train_shuffle(idx, n, pc_mix64(o->seed ^ 0x5eedc1a55ULL));
        nval = o->val_fraction > 0 ? (size_t)((double)n * o->val_fraction) : 0;
        if (o->val_fraction > 0 && nval == 0)
            rc = pc_errf(err, errlen, "%s: %zu example%s: --val-fraction %g holds out none (give --val-data FILE, or "
                         "--val-fraction 0)", o->data, n, n == 1 ? "" : "s", o->val_fraction);
    }
    if (!rc && n - nval == 0) rc = pc_errf(err, errlen, "%s: no training examples left after the held-out split", o->data);
    if (!rc) rc = pc_td_items(&t->td, idx, n - nval, S, &t->train, &t->ntrain, err, errlen);
    if (!rc && o->val_data) rc = pc_td_items(&t->td_val, NULL, t->td_val.n, S, &t->val, &t->nval, err, errlen);
    else if (!rc) rc = pc_td_items(&t->td, idx + n - nval, nval, S, &t->val, &t->nval, err, errlen);
    free(idx);
    if (!rc) qsort(t->val, t->nval, sizeof *t->val, cmp_item_file);
    return rc;
}

int pc_train_tasks_open(pc_train_data *d, const pc_session *s, const pc_train_opts *o, char *err, size_t errlen) {
    struct pc_train_tasks *t = d->tasks = calloc(1, sizeof *t);
    if (!t) return pc_errf(err, errlen, "out of memory");
    d->task = PC_TASK_LM;
    t->objective = o->objective;
    if (o->entries) /* its graphs have one shape, compiled in; task data needs buckets (and choices) */
        return pc_errf(err, errlen, "%s: task data (JSONL) trains with peftc train; this standalone trainer reads "
                       "plain text", o->data);
    int room = s->model.info.context - pc_session_virtual_tokens(s);
    size_t cap = (size_t)(o->seq > 0 ? o->seq : room);
    if (pc_session_need_tokenizer(s, "training on task data", err, errlen) ||
        pc_task_data_load(&t->td, o->data, s->tok, err, errlen) ||
        (o->val_data && pc_task_data_load(&t->td_val, o->val_data, s->tok, err, errlen)))
        return -1;
    if (o->val_data && t->td_val.shape != t->td.shape)
        return pc_errf(err, errlen, "--val-data %s holds %s examples, and --data %s %s examples: give one shape",
                       o->val_data, pc_td_shape_name(t->td_val.shape), o->data, pc_td_shape_name(t->td.shape));
    const bool mc = t->td.shape == PC_TD_CHOICE;
    if (o->objective == PC_OBJECTIVE_TFEW && !mc)
        return pc_errf(err, errlen, "--objective tfew: %s holds %s examples; T-Few's objective is for multiple-choice "
                       "data ({\"input\", \"answer_choices\", \"label\"})", o->data, pc_td_shape_name(t->td.shape));
    if (split(t, o, cap, err, errlen)) return -1;
    t->vsrc = o->val_data ? &t->td_val : &t->td;
    t->C = mc ? (size_t)(t->td.max_choices > t->td_val.max_choices ? t->td.max_choices : t->td_val.max_choices) : 1;
    int longest = 0;
    for (size_t i = 0; i < t->ntrain; i++) longest = t->train[i].len > longest ? t->train[i].len : longest;
    for (size_t i = 0; i < t->nval; i++) longest = t->val[i].len > longest ? t->val[i].len : longest;
    d->B = (size_t)o->batch;
    d->S = (size_t)pc_cls_graph_seq(longest - 1, (int)cap);
    d->ntrain = t->ntrain, d->nval = t->nval;
    t->perm_epoch = -1;
    if (!(t->perm = malloc(t->ntrain * sizeof *t->perm)) || !(t->rows = malloc(d->B * sizeof *t->rows)))
        return pc_errf(err, errlen, "out of memory");
    /* the buckets of classification (train_data.c): a batch pads at most 1.5x its longest row */
    for (size_t b = 16; b < d->S && d->nbuckets < PC_TRAIN_MAX_BUCKETS - 1; b = b % 3 ? b * 3 / 2 : b * 4 / 3)
        d->bucket_S[d->nbuckets++] = b;
    d->bucket_S[d->nbuckets++] = d->S;
    int max_row = t->td.max_row > t->td_val.max_row ? t->td.max_row : t->td_val.max_row;
    for (int b = 0; b < d->nbuckets; b++)
        if (pc_task_batch_init(&t->batch[b], d->B, t->C, d->bucket_S[b], max_row, o->task_id, err, errlen)) return -1;
    return 0;
}

int pc_train_tasks_choices(const pc_train_data *d) {
    return d->tasks && d->tasks->td.shape == PC_TD_CHOICE ? (int)d->tasks->C : 0;
}

int pc_train_tasks_inputs(const pc_train_data *d, int b, const char **names, void **ptrs) {
    return pc_task_batch_inputs(&d->tasks->batch[b], &d->tasks->td, names, ptrs);
}

size_t pc_train_tasks_size(const pc_train_data *d) { return d->tasks->ntrain; }

/* the shortest bucket that holds rows of n ids (n - 1 positions) */
static int bucket_of(const pc_train_data *d, int n) {
    for (int b = 0; b < d->nbuckets; b++)
        if ((size_t)n - 1 <= d->bucket_S[b]) return b;
    return d->nbuckets - 1;
}

int pc_train_tasks_sample(pc_train_data *d, uint64_t seed, int t, int k, int grad_accum) {
    struct pc_train_tasks *x = d->tasks;
    const size_t per_step = d->B * (size_t)grad_accum, n = x->ntrain;
    const size_t steps_per_epoch = (n + per_step - 1) / per_step;
    const int64_t epoch = (int64_t)((size_t)(t - 1) / steps_per_epoch);
    if (epoch != x->perm_epoch) {
        /* the items in a seeded order, through the index shuffle of train_data.c */
        size_t *idx = malloc(n * sizeof *idx);
        if (idx) {
            for (size_t i = 0; i < n; i++) idx[i] = i;
            pc_train_shuffle(idx, n, pc_mix64(pc_mix64(seed) ^ (uint64_t)epoch));
            for (size_t i = 0; i < n; i++) x->perm[i] = x->train[idx[i]];
            free(idx);
        } else {
            memcpy(x->perm, x->train, n * sizeof *x->perm); /* out of memory: file order */
        }
        x->perm_epoch = epoch;
    }
    size_t pos = ((size_t)(t - 1) % steps_per_epoch) * per_step + (size_t)k * d->B;
    int longest = 0;
    for (size_t r = 0; r < d->B; r++) {
        x->rows[r] = x->perm[(pos + r) % n];
        if (x->rows[r].len > longest) longest = x->rows[r].len;
    }
    int b = bucket_of(d, longest);
    pc_task_batch_fill(&x->batch[b], &x->td, x->rows, d->B);
    return b;
}

size_t pc_train_tasks_eval_items(const pc_train_data *d, int eval_batches) {
    size_t n = d->tasks->nval;
    if (eval_batches > 0 && n > (size_t)eval_batches * d->B) n = (size_t)eval_batches * d->B;
    return n;
}

size_t pc_train_tasks_eval_fill(pc_train_data *d, size_t first, size_t nitems, int *b) {
    struct pc_train_tasks *x = d->tasks;
    if (x->eval_sorted != nitems) {
        /* the first nitems held-out items (file order) shortest first, so batches fall into the
         * short buckets; the tallies are sums, so the order changes nothing beyond rounding */
        qsort(x->val, x->nval, sizeof *x->val, cmp_item_file);
        qsort(x->val, nitems, sizeof *x->val, cmp_item_len);
        x->eval_sorted = nitems;
    }
    size_t take = nitems - first < d->B ? nitems - first : d->B;
    int longest = 0;
    for (size_t i = 0; i < take; i++)
        if (x->val[first + i].len > longest) longest = x->val[first + i].len;
    *b = bucket_of(d, longest);
    x->eval_items = x->val + first;
    x->eval_targets = pc_task_batch_fill(&x->batch[*b], x->vsrc, x->eval_items, take);
    return take;
}

void pc_train_tasks_eval_tally(const pc_train_data *d, int b, pc_cls_result *acc, size_t real, float loss,
                               const float *nll) {
    const struct pc_train_tasks *x = d->tasks;
    if (x->td.shape != PC_TD_CHOICE) { /* the mean over target tokens */
        acc->sum_loss += (double)loss * (double)x->eval_targets;
        acc->n += x->eval_targets;
        return;
    }
    pc_mc_tally m = {0};
    pc_mc_tally_add(&m, &x->batch[b], x->vsrc, x->eval_items, real, nll);
    acc->sum_loss += x->objective == PC_OBJECTIVE_TFEW ? m.sum_lm + m.sum_ul + m.sum_ln : m.sum_lm;
    acc->n += m.n;
    acc->correct += m.correct;
}

const char *pc_objective_name(pc_objective k) { return k == PC_OBJECTIVE_TFEW ? "tfew" : "lm"; }

int pc_objective_parse(const char *name) {
    for (int k = PC_OBJECTIVE_LM; k <= PC_OBJECTIVE_TFEW; k++)
        if (name && strcmp(name, pc_objective_name((pc_objective)k)) == 0) return k;
    return -1;
}
