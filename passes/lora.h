/* LoRA as a linear rewrite (PEFT's LoraConfig semantics; reference/peft.md §2):
 *   y = x Wᵀ (+ b) + s · (dropout(x) Aᵀ) Bᵀ (+ s · b_B),  A [r, in], B [out, r],
 *   s = alpha / r, or alpha / sqrt(r) with rsLoRA; r and alpha per module from the patterns.
 * Param keys are PEFT's file keys: "base_model.model.<module>.lora_A.weight" (for an adapter
 * named other than "default": "...lora_A.<name>.weight", PEFT's in-memory form). */
#ifndef PEFTC_PASSES_LORA_H
#define PEFTC_PASSES_LORA_H

#include "peftc/peftc.h"
#include "runtime/adapter_config.h"
#include <stdbool.h>

typedef struct {
    const pc_adapter_config *cfg; /* peft_type LORA */
    const char *adapter_name;     /* NULL = "default" */
    bool training;                /* dropout active (needs the %seed input) */
    bool trainable;               /* A and B trainable (else frozen: inference) */
} pc_lora_opts;

/* Applies LoRA to every targeted linear. A config that targets nothing is an error (as in PEFT).
 * Warnings (e.g. fan_in_fan_out ignored) are printed to `warn` when not NULL. */
int pc_apply_lora(pc_graph **g, const pc_lora_opts *opts, int *nmatched, char *err, size_t errlen);

/* the param key of a LoRA tensor: kind "lora_A.weight", "lora_B.weight" or "lora_B.bias" */
int pc_lora_key(char *buf, size_t len, const char *module, const char *adapter_name, const char *kind);

#endif
