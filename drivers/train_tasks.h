/* `peftc train` on JSONL task data (runtime/task_data.h): the examples split into training and
 * held-out parts, seeded epochs of training items in length buckets, and the held-out
 * evaluation (loss over target tokens; for multiple choice, the objective's loss averaged over
 * examples and rank-classification accuracy). drivers/train_data.c dispatches here. */
#ifndef PEFTC_DRIVERS_TRAIN_TASKS_H
#define PEFTC_DRIVERS_TRAIN_TASKS_H

#include "drivers/train_data.h"

/* d->B, d->S, buckets; seq: the row cap (0 = the model's context less virtual tokens) */
int pc_train_tasks_open(pc_train_data *d, const pc_session *s, const pc_train_opts *o, char *err, size_t errlen);
void pc_train_tasks_free(struct pc_train_tasks *t);

int pc_train_tasks_inputs(const pc_train_data *d, int b, const char **names, void **ptrs);
size_t pc_train_tasks_size(const pc_train_data *d);
int pc_train_tasks_sample(pc_train_data *d, uint64_t seed, int t, int k, int grad_accum);
size_t pc_train_tasks_eval_items(const pc_train_data *d, int eval_batches);
size_t pc_train_tasks_eval_fill(pc_train_data *d, size_t first, size_t nitems, int *b);
/* an evaluated batch: its loss output and (multiple choice) its %nll output */
void pc_train_tasks_eval_tally(const pc_train_data *d, int b, pc_cls_result *acc, size_t real, float loss,
                               const float *nll);
/* multiple-choice data: the choices per example (rows per item); else 0 */
int pc_train_tasks_choices(const pc_train_data *d);

#endif
