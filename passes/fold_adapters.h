/* fold-adapters: merging as graph building. For every linear of a model graph (the linear
 * convention, frontend/linear.h) that the adapter's method merges, a weights-only graph computes
 * W' (and b') from the frozen W, b and the adapter's params by the method's own merge rule; a
 * driver evaluates it once and the merged model is the base model with those tensors replaced. */
#ifndef PEFTC_PASSES_FOLD_ADAPTERS_H
#define PEFTC_PASSES_FOLD_ADAPTERS_H

#include "passes/adapt.h"

#include <stdbool.h>

/* *out: graph @fold with outputs "merged.<key>" (key = the replaced tensor's checkpoint key);
 * *nmerged: modules merged. unmerge: the method's inverse rule (the model holds merged weights).
 * A method without the rule is an error giving its reason. */
int pc_fold_adapters(const pc_graph *model, pc_adapt_ctx *cx, bool unmerge, pc_graph **out, int *nmerged, char *err,
                     size_t errlen);

#endif
