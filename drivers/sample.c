/* llama2.c run.c's sampler (see sample.h). */
#include "drivers/sample.h"

#include <math.h>
#include <stdlib.h>

static uint32_t random_u32(uint64_t *state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (uint32_t)((*state * 0x2545F4914F6CDD1Dull) >> 32);
}
static float random_f32(uint64_t *state) { return (float)(random_u32(state) >> 8) / 16777216.0f; }

static int cmp_prob_desc(const void *a, const void *b) {
    const pc_prob_index *x = a, *y = b;
    if (x->prob > y->prob) return -1;
    if (x->prob < y->prob) return 1;
    return 0;
}

int pc_sample(float *logits, int n, float temperature, float topp, uint64_t *state, pc_prob_index *scratch) {
    if (!logits || n <= 0) return -1;
    if (temperature == 0.0f) {
        int best = 0;
        for (int i = 1; i < n; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }
    if (!state) return -1;
    int nucleus = topp > 0 && topp < 1;
    if (nucleus && !scratch) return -1;
    for (int i = 0; i < n; i++) logits[i] /= temperature;
    float mx = logits[0];
    for (int i = 1; i < n; i++)
        if (logits[i] > mx) mx = logits[i];
    float sum = 0;
    for (int i = 0; i < n; i++) {
        logits[i] = expf(logits[i] - mx);
        sum += logits[i];
    }
    for (int i = 0; i < n; i++) logits[i] /= sum;
    float coin = random_f32(state);
    if (!nucleus) {
        float cdf = 0;
        for (int i = 0; i < n; i++) {
            cdf += logits[i];
            if (coin < cdf) return i;
        }
        return n - 1;
    }
    int n0 = 0;
    const float cutoff = n > 1 ? (1.0f - topp) / (float)(n - 1) : 0.0f;
    for (int i = 0; i < n; i++)
        if (logits[i] >= cutoff) scratch[n0++] = (pc_prob_index){logits[i], i};
    if (n0 == 0) return 0;
    qsort(scratch, (size_t)n0, sizeof *scratch, cmp_prob_desc);
    float cum = 0;
    int last = n0 - 1;
    for (int i = 0; i < n0; i++) {
        cum += scratch[i].prob;
        if (cum > topp) { last = i; break; }
    }
    float r = coin * cum, cdf = 0;
    for (int i = 0; i <= last; i++) {
        cdf += scratch[i].prob;
        if (r < cdf) return scratch[i].index;
    }
    return scratch[last].index;
}

