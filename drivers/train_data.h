/* What `peftc train` feeds its graphs, by task: random windows of a tokenized text (causal LM),
 * or shuffled epochs of labelled examples (sequence classification with an encoder), and the
 * held-out split each is evaluated on. The training loop (drivers/train.c) sees one interface:
 * sample step t's micro-batch k into the bound buffers, fill held-out batches, tally them. */
#ifndef PEFTC_DRIVERS_TRAIN_DATA_H
#define PEFTC_DRIVERS_TRAIN_DATA_H

#include "drivers/classify.h"
#include "drivers/train.h"
#include "runtime/cls_data.h"
#include "runtime/data.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* shapes a run compiles graphs for, at most */
#define PC_TRAIN_MAX_BUCKETS 12

typedef struct {
    pc_graph_task task; /* PC_TASK_LM or PC_TASK_SEQ_CLASSIFY */
    size_t B, S;        /* rows per micro-batch, tokens per row of the longest graphs */
    /* a classifier's batches are padded to the shortest bucket that holds their longest
     * example (as dynamic padding does, with few graph shapes): S of bucket i, ascending, the
     * last = S; text has one bucket */
    int nbuckets;
    size_t bucket_S[PC_TRAIN_MAX_BUCKETS];
    /* LM: the text and its split; tokens/targets [B,S] */
    pc_token_seq text;
    pc_token_span train, val;
    int32_t *tokens, *targets;
    /* SEQ_CLASSIFY: the examples (the held-out ones from --val-data, or split off by the
     * seeded shuffle); the batch buffers; the permutation of the current epoch */
    pc_cls_labels labels;
    pc_cls_data cls, cls_val;
    size_t *train_idx, *val_idx, ntrain, nval;
    size_t *perm, *rows;
    int64_t perm_epoch;
    size_t eval_sorted; /* how many held-out examples val_idx holds sorted by length */
    pc_cls_batch batch[PC_TRAIN_MAX_BUCKETS]; /* one per bucket */
    /* JSONL task data (drivers/train_tasks.h) of a causal LM, else NULL (plain text) */
    struct pc_train_tasks *tasks;
    int32_t *task_ids; /* plain text: the rows' task ids (%task_ids, all o->task_id) */
} pc_train_data;

/* Reads and splits the data of o (o->data, o->val_data, o->labels) for the session's model:
 * classification when the model is an encoder, else task data (a .jsonl file, or one whose
 * content starts with '{': drivers/train_tasks.h) or text. Fixes B and S (S: o->seq for text,
 * default 64; the longest example rounded up to 8, at most o->seq (default: 128 for
 * classification, the model's room for task data)). */
int pc_train_data_open(pc_train_data *d, const pc_session *s, const pc_train_opts *o, char *err, size_t errlen);
/* a classifier with one bucket (every batch padded to S: an AOT trainer's fixed graphs) */
void pc_train_data_one_bucket(pc_train_data *d);
void pc_train_data_free(pc_train_data *d);

/* the data inputs of bucket b's graphs: names and buffers (n of them; at most 4) */
int pc_train_data_inputs(const pc_train_data *d, int b, const char **names, void **ptrs);
/* training examples (LM: tokens) and what one micro-batch of B rows holds of them */
size_t pc_train_data_size(const pc_train_data *d);
size_t pc_train_data_per_row(const pc_train_data *d);
/* optimizer steps for `epochs` passes over the training part with grad_accum micro-batches a step */
int pc_train_data_epoch_steps(const pc_train_data *d, double epochs, int grad_accum);

/* micro-batch k of step t (1-based) into the buffers of the bucket it returns: LM, seeded random
 * windows; classification, rows (t-1)*accum*B + k*B ... of epoch e's seeded permutation (an
 * epoch's last step wraps to its first examples, so every row is a real example). A pure
 * function of (seed, t, k). */
int pc_train_data_sample(pc_train_data *d, uint64_t seed, int t, int k, int grad_accum);

/* held-out items (LM: windows; classification: examples), the first eval_batches * B of them
 * (eval_batches <= 0: all) */
size_t pc_train_data_eval_items(const pc_train_data *d, int eval_batches);
/* held-out items first.. into the buffers of bucket *b (the rest padding; a classifier's
 * held-out examples are taken shortest first); returns how many are real */
size_t pc_train_data_eval_fill(pc_train_data *d, size_t first, size_t nitems, int *b);
/* adds an evaluated batch of `real` items in bucket b (its loss output and, for
 * classification, logits) */
void pc_train_data_eval_tally(const pc_train_data *d, int b, pc_cls_result *acc, size_t real, float loss,
                              const float *logits, int num_labels);

/* the evaluation graph's output the tally reads besides the loss: "logits" (classification),
 * "nll" (multiple choice), or NULL */
const char *pc_train_data_eval_output(const pc_train_data *d);
/* evaluations report an accuracy (classification, multiple choice); counts are of examples */
bool pc_train_data_by_example(const pc_train_data *d);
/* the run's first line on stderr: the data, the steps, the held-out numbers before training */
void pc_train_data_describe(const pc_train_data *d, const pc_train_opts *o, double loss, double accuracy);
/* the seeded Fisher-Yates shuffle of idx[0..n) */
void pc_train_shuffle(size_t *idx, size_t n, uint64_t seed);

#endif
