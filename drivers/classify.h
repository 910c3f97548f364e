/* Sequence classification with an encoder (SEQ_CLASSIFY graphs, frontend/family.h): batches of
 * labelled examples (runtime/cls_data.h), and the loops of `peftc eval` and `peftc predict`.
 *
 * A batch is B rows of S tokens: example i's ids left-aligned, attention mask 1 on them and 0 on
 * the padding (which the graph never attends to, so padding changes no logit), its label, or
 * -100 where there is none; rows past the examples are padding with label -100. */
#ifndef PEFTC_DRIVERS_CLASSIFY_H
#define PEFTC_DRIVERS_CLASSIFY_H

#include "drivers/session.h"
#include "runtime/cls_data.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    double loss;     /* mean cross-entropy over the labelled examples */
    double accuracy; /* argmax of the logits = label, over the labelled examples */
    size_t n;        /* labelled examples */
    size_t correct;
    double sum_loss; /* loss * n while tallying */
} pc_cls_result;

/* a batch's buffers, bound to a SEQ_CLASSIFY graph's %tokens, %attention_mask (f32), %labels */
typedef struct {
    size_t B, S;
    int32_t *tokens, *labels;
    float *mask;
} pc_cls_batch;

int pc_cls_batch_init(pc_cls_batch *b, size_t B, size_t S, char *err, size_t errlen);
void pc_cls_batch_free(pc_cls_batch *b);
/* binds the buffers to the graph's inputs (those it has); -1 when one is refused */
int pc_cls_batch_bind(const pc_cls_batch *b, pc_exec *r, const pc_graph *g);
/* rows [0, n) from the examples idx[0..n) of d (idx NULL: first, first+1, ...); n <= B, and
 * every example at most S ids (pc_cls_data_load truncates to the graph's S) */
void pc_cls_batch_fill(pc_cls_batch *b, const pc_cls_data *d, const size_t *idx, size_t first, size_t n);
/* adds a run over a filled batch of n real rows: its loss output (mean over the labelled rows)
 * and its logits [B, L] */
void pc_cls_tally(pc_cls_result *r, const pc_cls_batch *b, size_t n, float loss, const float *logits, int L);
/* loss and accuracy from the tallied sums */
void pc_cls_finish(pc_cls_result *r);
/* the index of the largest of x[0..n) (the first of ties) */
int pc_argmax(const float *x, int n);

/* the S of a SEQ_CLASSIFY graph for examples of at most max_len ids under --seq seq: max_len
 * rounded up to a multiple of 8, at most seq */
int pc_cls_graph_seq(int max_len, int seq);

/* `peftc eval` on classification data: loss and accuracy of the session's model and adapter
 * (merged into the weights first with merge) over every example of data_path. labels: the
 * --labels file of names or NULL. */
int pc_eval_cls(pc_session *s, const char *data_path, const char *labels, int seq, int batch, bool merge,
                const pc_exec_opts *exec, pc_cls_result *res, char *err, size_t errlen);

/* `peftc predict`: the class probabilities (softmax of the logits) of every example of data_path,
 * in file order, handed to fn (a non-zero return stops with that code). */
typedef int (*pc_predict_fn)(void *ctx, const pc_cls_example *e, const float *probs, int num_labels);
int pc_predict_cls(pc_session *s, const char *data_path, const char *labels, int seq, int batch, bool merge,
                   const pc_exec_opts *exec, pc_predict_fn fn, void *ctx, char *err, size_t errlen);

#endif
