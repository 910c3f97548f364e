/* `peftc eval` on JSONL task data (runtime/task_data.h).
 *
 * {"text"} and {"input","target"} data: the mean cross-entropy over all target tokens (a text
 * longer than a row is cut into windows as drivers/task_batch.h says). Multiple-choice data:
 * per example the T-Few terms (frontend/lm_objective.h, each on that example alone) and rank
 * classification (the choice of the highest mean log-likelihood per token wins), averaged over
 * the examples. */
#ifndef PEFTC_DRIVERS_EVALUATE_TASKS_H
#define PEFTC_DRIVERS_EVALUATE_TASKS_H

#include "drivers/evaluate.h"
#include <stdbool.h>

typedef struct {
    bool choice;           /* multiple-choice data */
    double loss;           /* not multiple choice: mean cross-entropy over the target tokens */
    size_t tokens, rows;   /* not multiple choice: target tokens and rows evaluated */
    double accuracy, loss_lm, loss_ul, loss_ln; /* multiple choice, means over examples */
    size_t n_examples;
} pc_task_eval_result;

int pc_eval_tasks(pc_session *s, const char *data_path, const pc_eval_opts *o, pc_task_eval_result *res, char *err,
                  size_t errlen);

#endif
