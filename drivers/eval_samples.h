/* `peftc eval` on a causal LM with JSONL data: one sample per line,
 *     {"text": "...", "adapter": "name"}   ("adapter" optional: the active adapter; "__base__": none)
 * (a file whose first line has the "adapter" field: pc_samples_detect), each sample's tokens =
 * [BOS] + encode(text) cut to seq+1, its next-token cross-entropy over
 * them; the samples of a batch may name different adapters and run in one pass (a mixed session:
 * %adapter_ids). The loss is the mean over all targets, and per adapter. (The smallest loader
 * this needs; the task-data loader of issue 10 may replace it.) */
#ifndef PEFTC_DRIVERS_EVAL_SAMPLES_H
#define PEFTC_DRIVERS_EVAL_SAMPLES_H

#include "drivers/session.h"

#include <stdbool.h>

typedef struct {
    double loss;          /* mean over every target of every sample */
    size_t tokens, samples;
    int ngroups;          /* s->nnamed + 1: per adapter index, the last the base model */
    double *group_loss;   /* mean per adapter (NaN: no sample named it), owned */
    size_t *group_tokens, *group_samples;
} pc_eval_samples_result;

/* one sample of a JSONL file */
typedef struct {
    int32_t *ids; /* [BOS] + encode(text), at most seq+1, owned */
    size_t n;
    int adapter;  /* index in s->named, s->nnamed = the base model */
} pc_sample;

/* whether path holds such samples: its first line is a JSON object with an "adapter" field
 * (null: the active adapter). Other JSONL is not read here. */
int pc_samples_detect(const char *path, bool *per_sample, char *err, size_t errlen);
/* reads the samples (errors: "FILE:LINE: field ...: reason") */
int pc_samples_load(const pc_session *s, const char *path, int seq, pc_sample **out, size_t *n, char *err, size_t errlen);
void pc_samples_free(pc_sample *v, size_t n);

/* sets s->mixed when s has named adapters */
int pc_eval_samples(pc_session *s, const char *path, int seq, int batch, const pc_exec_opts *exec,
                    pc_eval_samples_result *res, char *err, size_t errlen);
void pc_eval_samples_free(pc_eval_samples_result *r);

#endif
