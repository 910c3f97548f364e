/* AdaLoRA's state and rank allocator (passes/adapters/adalora.c, adalora_alloc.c): internal to
 * the method, declared here so the allocator can be replayed against PEFT's step by step
 * (tests/unit/test_peft_adalora.c). */
#ifndef PEFTC_PASSES_ADAPTERS_ADALORA_H
#define PEFTC_PASSES_ADAPTERS_ADALORA_H

#include "peftc/adapter.h"
#include "runtime/adapter_config.h"

#include <stdbool.h>
#include <stdint.h>

/* one adapted module as the allocator sees it (keys "base_model.model.<module>.lora_{A,E,B}") */
typedef struct {
    char *module;       /* "model.layers.0.self_attn.q_proj" */
    char *key[3];       /* lora_A, lora_E, lora_B */
    int64_t r, in, out; /* A [r, in], E [r, 1], B [out, r] */
    float *ipt_ema[3];  /* PEFT's exp_avg_ipt per element of A, E, B */
    float *unc_ema[3];  /* PEFT's exp_avg_unc */
    float *score;       /* the last triplet score per rank [r] */
    bool *keep;         /* the rank mask of the last allocation [r] */
} pc_adalora_module;

typedef struct {
    /* one graph's build: A and B of each adapted module, for the orthogonal regularizer */
    pc_val *orth;
    int north, corth;
    int nadapted; /* targeted modules, rank 0 included */
    /* the rank allocator (the training application's state, driven by step_hook) */
    pc_adalora_module *mods;
    int nmods;
    bool scanned;
    int64_t init_bgt, target_bgt;
    int64_t last_budget;  /* the budget of the last step seen (-1 before the first) */
    bool last_masked;     /* the last step allocated (mask_to_budget ran) */
    bool have_pattern;    /* a rank pattern exists: saving prunes and records it */
    bool ema_live;        /* the EMAs hold data (PEFT's reset_ipt empties them) */
} pc_adalora_state;

/* PEFT's RankAllocator.budget_schedule(step): the budget and whether this step masks */
int64_t pc_adalora_budget(const pc_adapter_config *cfg, int64_t init_bgt, int64_t target_bgt, int64_t step,
                          bool *mask_ind);

/* AdaLoraModel.update_and_allocate(step) on the adapter's tensors (io: get, key_at, grad):
 * importance EMAs, the budget, masking E to it; after total_step - tfinal the final mask again.
 * 0 or -1 with a message. */
int pc_adalora_step(pc_adalora_state *st, const pc_adapter_config *cfg, int64_t step, const pc_tensor_io *io,
                    char *err, size_t errlen);
/* the allocator's state into a checkpoint (io->put; nothing before its first step) and back from
 * one (io->get: the run's params, then the checkpoint's tensors; nothing there = a fresh
 * allocator), so a resumed run allocates as the uninterrupted one. 0 or -1. */
int pc_adalora_save_state(const pc_adalora_state *st, const pc_tensor_io *io, char *err, size_t errlen);
int pc_adalora_load_state(pc_adalora_state *st, const pc_adapter_config *cfg, const pc_tensor_io *io, char *err,
                          size_t errlen);
/* frees the allocator's part of the state */
void pc_adalora_alloc_free(pc_adalora_state *st);

#endif
