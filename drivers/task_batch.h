/* Batches of task data (runtime/task_data.h) for causal-LM graphs, and the multiple-choice
 * scores of an evaluated batch.
 *
 * An item is what one example contributes to a batch: a window of a {"text"} example (a text
 * longer than a row is cut into windows of S+1 ids, S apart, as text data is), a whole
 * {"input","target"} example, or a whole multiple-choice example (C rows: its context followed
 * by each choice, in order; C = the file's most choices, rows past an example's own choices are
 * padding). A row holds ids[0..n-1) as %tokens and ids[1..n) as %targets, the targets before
 * the first target id (the context) set to IGNORE.
 *
 * Padding: rows are right-padded (token 0, target IGNORE), and whole padding rows fill a batch
 * that has fewer items. IGNORE targets take padding out of every loss; and no real token attends
 * to padding because the attention is causal and the padding comes after every real token of
 * its row, so right padding needs no attention mask in a causal LM. */
#ifndef PEFTC_DRIVERS_TASK_BATCH_H
#define PEFTC_DRIVERS_TASK_BATCH_H

#include "runtime/task_data.h"

#include <stddef.h>
#include <stdint.h>

#define PC_TASK_IGNORE (-100)

typedef struct {
    uint32_t ex; /* the example */
    int start;   /* first id of the window (0 but for a long text) */
    int len;     /* ids the item's longest row holds: its graph row needs len - 1 positions */
} pc_td_item;

/* The items of examples idx[0..n) (idx NULL: all) appended to *items (owned, realloc'd): a text
 * cut into windows of at most S+1 ids; an {"input","target"} or multiple-choice example longer
 * than S+1 ids is an error naming its line (give a larger --seq). */
int pc_td_items(const pc_task_data *d, const size_t *idx, size_t n, size_t S, pc_td_item **items, size_t *nitems,
                char *err, size_t errlen);

typedef struct {
    size_t E, C, S;            /* items per batch, rows per item (1, or the choices), tokens per row */
    int32_t *tokens, *targets; /* [E*C, S] */
    int32_t *labels;           /* [E]: the correct choice (IGNORE for padding); C > 1 or MC only */
    int32_t *task_ids;         /* [E*C]: each row's example's task id (the default when it has none) */
    int32_t default_task;
    int32_t *row;              /* one row's ids (scratch) */
} pc_task_batch;

/* max_row: the data's longest row (pc_task_data.max_row) */
int pc_task_batch_init(pc_task_batch *b, size_t E, size_t C, size_t S, int max_row, int default_task, char *err,
                       size_t errlen);
void pc_task_batch_free(pc_task_batch *b); /* safe on a zeroed or freed one */

/* items[0..n) (n <= E, each len - 1 <= S) into the batch, the rest padding; returns the target
 * tokens it holds */
size_t pc_task_batch_fill(pc_task_batch *b, const pc_task_data *d, const pc_td_item *items, size_t n);

/* the graph inputs the batch feeds: names and buffers (tokens, targets, task_ids, and labels for
 * multiple choice); returns how many (at most 4) */
int pc_task_batch_inputs(const pc_task_batch *b, const pc_task_data *d, const char **names, void **ptrs);

/* Multiple-choice results summed over examples: per example the T-Few terms of
 * frontend/lm_objective.h on that example alone, and rank classification (the choice with the
 * highest mean log-likelihood per token; the first of equal ones) */
typedef struct {
    double sum_lm, sum_ul, sum_ln;
    size_t correct, n;
} pc_mc_tally;

/* adds the first n items of an evaluated batch from its %nll output [E*C, S] */
void pc_mc_tally_add(pc_mc_tally *t, const pc_task_batch *b, const pc_task_data *d, const pc_td_item *items, size_t n,
                     const float *nll);

#endif
