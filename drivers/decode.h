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

/* ---- a decoder kept open across requests (peftc generate --prompts) ----
 * One decode graph of B rows and KV capacity T, built, compiled and bound once: every run of it
 * decodes up to B requests together, each row with its own prompt, length, sampling state and
 * (a mixed session) adapter through %adapter_ids. All rows start at position 0 and advance in
 * lockstep, so one %pos and one mask serve them; a row forces its own prompt while the others
 * sample, and a finished row (its steps, or the stop id) is fed a dummy token and emits nothing
 * more. Each row's result equals pc_decode of that request alone. */
typedef struct pc_decoder pc_decoder;

typedef struct {
    const int32_t *prompt; /* NULL/0 = the model's start_id */
    int n_prompt;
    int steps;             /* positions, as pc_decode_opts.steps (<= 0: all the context) */
    int32_t adapter;       /* a mixed graph's %adapter_ids entry (index in s->named, nnamed = the
                              base model); -1 = the session's active adapter */
    uint64_t seed;
    int32_t *tokens;       /* out: capacity steps + 1 (the prompt, then the sampled ids) */
    int ntokens;           /* out */
    float *logits;         /* optional out: one row of V floats per real position run */
    int npos;              /* out: the real positions run */
} pc_decode_row;

/* s must outlive the decoder (pc_decoder_refresh reads its adapters again). T: the KV capacity
 * (pc_decode_capacity); entries as pc_decode_opts.entries. */
pc_decoder *pc_decoder_open(const pc_session *s, int B, int64_t T, const pc_exec_opts *exec,
                            const struct pc_entry_provider *entries, char *err, size_t errlen);
/* rows[0..n), n <= B (the other rows idle); temperature / topp as pc_decode_opts */
int pc_decoder_run(pc_decoder *d, pc_decode_row *rows, int n, float temperature, float topp, char *err,
                   size_t errlen);
/* after pc_session_replace_adapter: the new tensors into the running graph (no recompilation) */
int pc_decoder_refresh(pc_decoder *d, char *err, size_t errlen);
void pc_decoder_free(pc_decoder *d);
/* the KV capacity for `positions` (virtual tokens included): the smallest of cache_sizes[0..n)
 * that holds them (an error when none does), or exactly `positions` when n = 0 */
int pc_decode_capacity(int positions, const int *cache_sizes, int n, int64_t *T, char *err, size_t errlen);

#endif
