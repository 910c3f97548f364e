/* Merging an adapter into the base weights (PEFT's merge_and_unload): the method's merge rule
 * evaluated once per module (passes/fold_adapters.c), the results replacing the model's
 * tensors. Every verb then runs the merged model as the base model. */
#ifndef PEFTC_DRIVERS_MERGE_H
#define PEFTC_DRIVERS_MERGE_H

#include "drivers/session.h"

/* Folds the session's adapter into s->model (replaced weights) and sets s->merged. *nmodules
 * (may be NULL) gets the number of modules merged. Errors: no adapter or no weights, a method
 * that cannot merge (its reason), nothing targeted. */
int pc_session_merge(pc_session *s, int *nmodules, char *err, size_t errlen);

/* The inverse, for a model that holds the merged weights (s->model is such a checkpoint): the
 * method's unmerge rule replaces them by the base weights again (LoRA exactly up to rounding;
 * IA3 divides by l + 1e-8 like PEFT). s->merged stays false. */
int pc_session_unmerge(pc_session *s, int *nmodules, char *err, size_t errlen);

/* Writes the (merged) model in its family's format, atomically. */
int pc_session_write_model(const pc_session *s, const char *path, char *err, size_t errlen);

#endif
