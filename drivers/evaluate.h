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

/* merge: fold the adapter into the weights first (else the adapter runs unmerged; see
 * pc_session_merge) */
int pc_eval_text(pc_session *s, const char *data_path, int seq, int batch, bool merge,
                 const pc_exec_opts *exec, pc_eval_result *res, char *err, size_t errlen);

#endif
