/* Tokenized text datasets. */
#include "runtime/data.h"
#include "runtime/fileio.h"
#include "runtime/rng.h"

#include <stdlib.h>
#include <string.h>

int pc_data_load(pc_token_seq *out, const char *path, const pc_text_tokenizer *tok, char *err, size_t errlen) {
    char *text;
    size_t len, n;
    int32_t *ids;
    *out = (pc_token_seq){0};
    if (pc_read_file(path, &text, &len, err, errlen)) return -1;
    char msg[512];
    if (pc_text_encode(tok, text, len, true, &ids, &n, msg, sizeof msg)) {
        free(text);
        return pc_errf(err, errlen, "%s: %s", path, msg);
    }
    free(text);
    out->ids = ids;
    out->n = n;
    return 0;
}

void pc_data_free(pc_token_seq *s) {
    free(s->ids);
    *s = (pc_token_seq){0};
}

int pc_data_split(const pc_token_seq *s, double val_fraction, size_t seq, pc_token_span *train,
                  pc_token_span *val, const char *name, char *err, size_t errlen) {
    size_t nval = (size_t)((double)s->n * val_fraction);
    if (val_fraction <= 0) nval = 0;
    size_t ntrain = s->n - nval;
    if (ntrain < seq + 1)
        return pc_errf(err, errlen, "%s: %zu training tokens, fewer than one window of %zu", name, ntrain, seq + 1);
    if (val_fraction > 0 && nval < seq + 1)
        return pc_errf(err, errlen, "%s: %zu held-out tokens, fewer than one window of %zu", name, nval, seq + 1);
    *train = (pc_token_span){s->ids, ntrain};
    *val = (pc_token_span){s->ids + ntrain, nval};
    return 0;
}

void pc_data_sample(const pc_token_span *span, size_t B, size_t S, uint64_t seed, uint64_t step,
                    uint64_t first_row, int32_t *inputs, int32_t *targets) {
    uint64_t starts = span->n - S; /* window start in [0, n - S - 1] */
    for (size_t b = 0; b < B; b++) {
        uint64_t h = pc_mix64(pc_mix64(pc_mix64(seed) ^ step) ^ (first_row + b));
        size_t st = (size_t)(h % starts);
        memcpy(inputs + b * S, span->ids + st, S * sizeof *inputs);
        memcpy(targets + b * S, span->ids + st + 1, S * sizeof *targets);
    }
}

size_t pc_data_eval_batch(const pc_token_span *span, size_t S, size_t first, size_t B, int32_t ignore,
                          int32_t *inputs, int32_t *targets) {
    size_t nw = pc_data_eval_windows(span, S), real = 0;
    for (size_t b = 0; b < B; b++) {
        size_t w = first + b;
        if (w < nw) {
            memcpy(inputs + b * S, span->ids + w * S, S * sizeof *inputs);
            memcpy(targets + b * S, span->ids + w * S + 1, S * sizeof *targets);
            real++;
        } else {
            for (size_t i = 0; i < S; i++) {
                inputs[b * S + i] = 0;
                targets[b * S + i] = ignore;
            }
        }
    }
    return real;
}
