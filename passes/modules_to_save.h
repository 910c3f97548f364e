/* PEFT's modules_to_save: whole modules the adapter trains as its own copies (a classifier
 * head, typically), saved beside the adapter tensors.
 *
 * PEFT wraps every module whose name ends with an entry (`key.endswith(entry)` over
 * named_modules, no "." rule) in a ModulesToSaveWrapper whose copy trains; its tensors are
 * saved under "base_model.model.<module>.<tensor>" (the adapter name stripped), the key the
 * base tensor has with PEFT's prefix. Here a param belongs to such a module when its key's
 * module path, or a parent of it, ends with an entry. */
#ifndef PEFTC_PASSES_MODULES_TO_SAVE_H
#define PEFTC_PASSES_MODULES_TO_SAVE_H

#include "peftc/peftc.h"
#include "runtime/adapter_config.h"

#include <stdbool.h>
#include <stddef.h>

/* the prefix of every PEFT state-dict key */
#define PC_PEFT_KEY_PREFIX "base_model.model."

/* 1 when the module of the tensor `key` ("classifier.weight": module "classifier") or one of
 * its parents ends with an entry of the list `mts` (NULL or a null spec: 0) */
int pc_modules_to_save_match(const pc_spec *mts, const char *key);

/* Re-keys every frozen param of g that the base model holds (`is_base`) and that
 * pc_modules_to_save_match selects: key "base_model.model.<key>", trainable when `trainable`
 * (init zeros: drivers copy the base tensor in), else frozen (loaded from the adapter file).
 * *n (may be NULL) gets how many. 0, or -1 with a message. */
int pc_modules_to_save_apply(pc_graph *g, const pc_spec *mts, bool trainable, int (*is_base)(void *ctx, const char *key),
                             void *ctx, int *n, char *err, size_t errlen);

#endif
