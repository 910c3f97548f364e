/* `peftc eval`: the mean next-token cross-entropy of a text, by the fixed window protocol
 * tokens = [BOS] + encode(text); window i = tokens[i*S : i*S+S+1] (kept if it has S+1 tokens);
 * inputs = window[:-1], targets = window[1:]; loss = mean over all targets of all windows. */
#ifndef PEFTC_DRIVERS_EVALUATE_H
#define PEFTC_DRIVERS_EVALUATE_H

#include "drivers/session.h"
#include <stdbool.h>

typedef struct {
    double loss, ppl;
    size_t tokens, windows;
} pc_eval_result;

typedef struct {
    int seq;     /* tokens per row (text: required; task data: 0 = the model's room) */
    int batch;   /* items per batch (a multiple-choice item: one example, all its choices) */
    bool merge;  /* fold the adapter into the weights first (else it runs unmerged; pc_session_merge) */
    pc_exec_opts exec;
    int task_id; /* the task id of rows whose example names none (%task_ids, when a graph has it) */
} pc_eval_opts;

int pc_eval_text(pc_session *s, const char *data_path, const pc_eval_opts *o, pc_eval_result *res, char *err,
                 size_t errlen);

#endif
