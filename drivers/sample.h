/* The sampler of llama2.c's run.c: greedy, temperature, nucleus (top-p). */
#ifndef PEFTC_DRIVERS_SAMPLE_H
#define PEFTC_DRIVERS_SAMPLE_H

#include <stdint.h>

/* temperature 0 = argmax; else softmax(logits / temperature), one xorshift draw from *state,
 * then multinomial sampling, or nucleus sampling when 0 < topp < 1. Returns the token id, or -1
 * on bad arguments. logits (n) are overwritten; scratch (n entries) is needed only for top-p. */
typedef struct {
    float prob;
    int index;
} pc_prob_index;
int pc_sample(float *logits, int n, float temperature, float topp, uint64_t *state, pc_prob_index *scratch);

#endif
