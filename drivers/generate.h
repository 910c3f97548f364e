/* `peftc generate`: prompt in, text out, with or without an adapter (merged or unmerged). */
#ifndef PEFTC_DRIVERS_GENERATE_H
#define PEFTC_DRIVERS_GENERATE_H

#include "drivers/session.h"
#include <stdbool.h>

typedef struct {
    const char *prompt; /* encoded after BOS */
    int tokens;         /* new tokens to generate (stops early at BOS or the context end) */
    float temperature;  /* 0 = greedy */
    float topp;
    uint64_t seed;
    bool merge;         /* fold the adapter into the weights (else it runs unmerged) */
    const pc_exec_opts *exec; /* backend (NULL = default) */
    const int *cache_sizes; /* KV capacities of the decode graph (see pc_decode_opts) */
    int ncache_sizes;
    const struct pc_entry_provider *entries; /* see pc_decode_opts */
} pc_gen_request;

typedef struct {
    int32_t *ids; /* BOS, the prompt, then the generated ids */
    int nids;
    int nprompt;  /* BOS + prompt ids */
    char *text;   /* decoded ids after BOS */
} pc_gen_output;

/* merges the adapter into s->model first when q->merge */
int pc_generate_text(pc_session *s, const pc_gen_request *q, pc_gen_output *out, char *err, size_t errlen);
void pc_gen_output_free(pc_gen_output *o);

#endif
