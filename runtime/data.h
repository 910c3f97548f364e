/* Text datasets for causal-LM training and evaluation: a tokenized text split into a training
 * part and a held-out part, seeded random windows for training, and the fixed window protocol
 * of `peftc eval`. */
#ifndef PEFTC_RUNTIME_DATA_H
#define PEFTC_RUNTIME_DATA_H

#include "runtime/text_tokenizer.h"
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int32_t *ids; /* [BOS] + encode(text), owned */
    size_t n;
} pc_token_seq;

/* reads and tokenizes a whole text file: [BOS] + encode(text) */
int pc_data_load(pc_token_seq *out, const char *path, const pc_text_tokenizer *tok, char *err, size_t errlen);
void pc_data_free(pc_token_seq *s);

/* A view [begin, end) of a sequence. */
typedef struct {
    const int32_t *ids;
    size_t n;
} pc_token_span;

/* splits off the last `val_fraction` of the tokens as the held-out part (at least one window of
 * seq+1 tokens in each part, else an error naming the file) */
int pc_data_split(const pc_token_seq *s, double val_fraction, size_t seq, pc_token_span *train,
                  pc_token_span *val, const char *name, char *err, size_t errlen);

/* Fills inputs/targets [B, S] with rows first_row .. first_row+B-1 of step `step`'s batch: row r
 * is a random window of S+1 tokens of `span`, a pure function of (seed, step, r). So a resumed
 * run draws the same batches, and k micro-batches of B rows are exactly one batch of k*B rows. */
void pc_data_sample(const pc_token_span *span, size_t B, size_t S, uint64_t seed, uint64_t step,
                    uint64_t first_row, int32_t *inputs, int32_t *targets);

/* The eval protocol: window i = ids[i*S .. i*S+S+1), kept only if it has S+1 tokens. */
static inline size_t pc_data_eval_windows(const pc_token_span *span, size_t S) {
    return span->n >= S + 1 ? (span->n - 1) / S : 0;
}
/* Fills rows [0, B) with windows first, first+1, ...; rows past the last window get targets =
 * ignore (and inputs 0). Returns the number of real windows written. */
size_t pc_data_eval_batch(const pc_token_span *span, size_t S, size_t first, size_t B, int32_t ignore,
                          int32_t *inputs, int32_t *targets);

#endif
