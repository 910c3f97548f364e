/* trainer_state.json: the options a resumable checkpoint was made with, so that --resume
 * continues the same run (same schedule, batches and data) or refuses with the option that
 * differs. */
#ifndef PEFTC_DRIVERS_TRAIN_STATE_H
#define PEFTC_DRIVERS_TRAIN_STATE_H

#include "drivers/train.h"

#include <stddef.h>

/* writes dir/trainer_state.json for a checkpoint at `step` */
int pc_train_state_write(const char *dir, int step, const pc_train_opts *o, char *err, size_t errlen);
/* checks that dir is a checkpoint directory, reads its trainer_state.json into o (the schedule's
 * options) and *step; an option that decides the batches and differs from o is an error */
int pc_train_state_read(const char *dir, pc_train_opts *o, int *step, char *err, size_t errlen);

#endif
