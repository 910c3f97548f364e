/* The generation loop, written once for every model family: a decode graph (frontend/family.h's
 * contract) run position by position against a KV cache, like llama2.c's run.c. */
#ifndef PEFTC_DRIVERS_DECODE_H
#define PEFTC_DRIVERS_DECODE_H

#include "drivers/session.h"

#include <stdint.h>

typedef struct {
    int steps;            /* positions to run (run.c -n), virtual tokens not counted; clamped to
                             what the context leaves; <= 0 = all of it */
    float temperature;    /* 0 = greedy (argmax) */
    float topp;           /* nucleus mass in (0,1); <= 0 or >= 1 samples the full distribution */
    uint64_t seed;        /* sampling RNG seed (run.c's xorshift; 0 is replaced by a constant) */
    const int32_t *prompt; /* prompt ids (BOS included if wanted); NULL/0 = the model's start_id */
    int n_prompt;
    const pc_exec_opts *exec; /* backend (NULL = the default) */
    /* the KV capacities a decode graph may have, ascending: the smallest that holds virtual +
     * steps positions is used; a fixed set lets precompiled graphs serve every request (AOT
     * executables: attention runs over the whole capacity, so one graph of the model's full
     * context would make short generations slow). NULL/0: exactly virtual + steps */
    const int *cache_sizes;
    int ncache_sizes;
    /* when set (jit), each position runs through the decode graph's entry function from here
     * (backend/entry.h): an AOT generator's compiled-in table */
    const struct pc_entry_provider *entries;
} pc_decode_opts;

/* Runs the session's model (with its adapter, unmerged, unless merged into the model): the
 * adapter's virtual tokens first (ids V..V+P-1 at positions 0..P-1), then position p feeds
 * seq[p] and yields logits[p]; seq[p+1] is the next prompt id or, after the prompt, the sampled
 * token. Stops after `steps` positions or when the model's stop_id is sampled (not appended). tokens
 * (capacity steps+1) receives the prompt followed by the sampled ids; *ntokens their count.
 * logits (optional) receives one row of V floats per real position run; *npos (optional) the
 * number of real positions run. */
int pc_decode(const pc_session *s, const pc_decode_opts *o, int32_t *tokens, int *ntokens, float *logits, int *npos,
              char *err, size_t errlen);

#endif
