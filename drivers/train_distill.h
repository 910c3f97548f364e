/* `peftc train --distill-teachers 0=DIR0,1=DIR1,...`: multitask prompt tuning's prompt
 * distillation (Wang et al. 2023, §3.1; frontend/distill_objective.h has the loss). Each task's
 * teacher is a trained prompt-tuning adapter directory (PEFT's PROMPT_TUNING, as `peftc train`
 * writes it) with the student's number of virtual tokens. Every micro-batch, before the
 * student's step, one frozen teacher graph runs the whole mixed batch: the teachers' prompts
 * are stacked and each row's prompt gathered by %task_ids (built as multitask prompt tuning
 * with shared prompt 1, cols[t] = I and rows[t] = teacher t's prompt, which is exactly
 * teacher t's prompt). Its %logits and %final_hidden become the student's inputs
 * %teacher_logits and %teacher_hidden. Nothing new is saved: the teachers are inputs; the
 * option is recorded in trainer_state.json so a resume with other teachers is refused. */
#ifndef PEFTC_DRIVERS_TRAIN_DISTILL_H
#define PEFTC_DRIVERS_TRAIN_DISTILL_H

#include "drivers/train_data.h"

#include <jansson.h>

typedef struct pc_distill pc_distill;

/* Parses o->distill_teachers, loads and checks every teacher (prompt tuning, its P equal to the
 * student's virtual tokens, width the model's) and that every task id of o->data has one
 * (rows without "task" are task o->task_id). Errors name --distill-teachers, the directory or
 * the data line. NULL on error. */
pc_distill *pc_distill_open(const pc_session *student, const pc_train_opts *o, char *err, size_t errlen);
void pc_distill_free(pc_distill *d);

/* Builds the teacher graph for the student's step graph g (its batch and length; one per length
 * the student uses), binds it to
 * the data buffers (names/ptrs, as the student's) and binds the student's %teacher_logits and
 * %teacher_hidden to the teacher's outputs. */
int pc_distill_bind(pc_distill *d, pc_exec *r, const pc_graph *g, const char *const *names, void *const *ptrs, int nin,
                    char *err, size_t errlen);
/* runs the teacher on the buffers' current batch, for the student's step graph g (its shape
 * picks the teacher graph pc_distill_bind built) */
int pc_distill_run(pc_distill *d, const pc_graph *g, char *err, size_t errlen);

/* trainer_state.json: records the option (into j), and refuses a resume whose option differs
 * (path names the file) */
int pc_distill_state_put(json_t *j, const pc_train_opts *o);
int pc_distill_state_check(const json_t *j, const pc_train_opts *o, const char *path, char *err, size_t errlen);

#endif
