/* DoRA: LoRA with use_dora=true (reference/peft.md §2.5, PEFT's DoraLinearVariant). One peft_type
 * is one method, so the LoRA method (lora.c) stays the registry entry and calls these when its
 * config sets use_dora; the DoRA math lives in dora.c. A [r, in], B [out, r] and the scale s come
 * from LoRA; DoRA adds the magnitude m [out] ("<module>.lora_magnitude_vector", PEFT's saved key,
 * no ".weight"). */
#ifndef PEFTC_PASSES_ADAPTERS_DORA_H
#define PEFTC_PASSES_ADAPTERS_DORA_H

#include "passes/adapt.h"

/* the config checks DoRA adds to LoRA's (lora_bias is refused, as PEFT does). 0 or -1 */
int pc_dora_begin(pc_adapt_ctx *cx, char *err, size_t errlen);

/* y = x Wᵀ + b + (f - 1) ⊙ x_d Wᵀ + f ⊙ s · x_d Aᵀ Bᵀ with f = m / ‖W + s·B A‖_row, the norm
 * detached (stop_gradient) and x_d = dropout(x) (training with lora_dropout > 0; else x_d = x and
 * x Wᵀ is the site's value less b). Sets s->value. 1, or -1 (the graph's sticky error). */
int pc_dora_rewrite(pc_adapt_ctx *cx, pc_site *s, double scale, pc_val A, pc_val B);

/* W' = (m / ‖W + ΔW‖_row) ⊙ (W + ΔW), ΔW = s·B A; the bias is unchanged. 1 or -1. */
int pc_dora_merge(pc_adapt_ctx *cx, const pc_site *s, double scale, pc_val A, pc_val B, pc_val *weight);

/* There is no inverse from merged weights: an error naming why. -1. */
int pc_dora_unmerge(char *err, size_t errlen);

/* the module of a magnitude key "base_model.model.<module>.lora_magnitude_vector" into module;
 * 0 when key is not one */
int pc_dora_magnitude_module(const char *key, char *module, size_t len);

/* The magnitude's init: m = ‖W + s·B A‖_row from the frozen W ("<module>.weight") and the run's
 * A and B as filled so far (B = 0 unless init_lora_weights=false: then m = ‖W‖_row). 1 or -1. */
int pc_dora_init_magnitude(const char *module, double scale, float *m, pc_shape shape, pc_base_lookup base,
                           void *base_ctx, char *err, size_t errlen);

/* 1 for the DoRA tensors that follow a module's output rows (the magnitude) */
int pc_dora_output_rows(const char *tensor);

#endif
