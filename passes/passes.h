/* Training passes: reverse-mode autograd and the AdamW update, both graph -> graph in place
 * (append-only: no existing value changes or moves, so handles held by the caller stay valid).
 *
 * Both return 0 or -1 with a message in err. On success err holds "" or a warning
 * ("warning: ..."); callers may print it. */
#ifndef PEFTC_PASSES_PASSES_H
#define PEFTC_PASSES_PASSES_H

#include "peftc/peftc.h"

#include <stddef.h>

/* Differentiates the loss (the output flagged PC_LOSS, a scalar f32) with respect to every
 * trainable param P, appending the backward nodes, and marks the gradient of each one an output
 * named `grad.<P's SSA name>` (outputs in the order of the params). Only values on a path from a
 * trainable param to the loss get adjoints: frozen params, inputs, consts and states never do,
 * and a frozen weight passes the gradient to its input without a gradient of its own.
 * A trainable param the loss does not depend on gets a zero gradient (broadcast of 0) and a
 * warning in err. Errors: no loss or several, a loss that is not a scalar f32, a graph that
 * already has grad.* outputs (autograd ran), a gradient flowing through a non-differentiable op. */
int pc_pass_autograd(pc_graph *g, char *err, size_t errlen);

typedef struct {
    int clip; /* clip gradients by their global norm (max norm hp[6]; <= 0 at run time: none) */
} pc_adamw_opts;

/* Appends one AdamW step for every trainable param P that has a `grad.<P>` output (autograd ran):
 * an input %hp: f32[8] (pc_adamw_hp, include/peftc/peftc.h), states %adam_m.<P> / %adam_v.<P> (keys
 * `<P's key>.adam_m` / `.adam_v`, zero-initialised), and the updates P <- p', m <- m', v <- v'.
 * With opts->clip the gradient scale is clip_coef(sum of squares of every gradient, hp), else 1.
 * opts NULL = no clipping. Errors: no gradients, a trainable param without one, a graph that
 * already has an %hp value or updates of the params (adamw ran). */
int pc_pass_adamw(pc_graph *g, const pc_adamw_opts *opts, char *err, size_t errlen);

#endif
