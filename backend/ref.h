/* The reference interpreter: plain, obviously correct C that executes any verified graph.
 * It is the oracle every compiled backend and every pass is tested against.
 *
 *   pc_ref *r = pc_ref_new(g, err, sizeof err);
 *   pc_ref_bind(r, x, x_data);            // every input, param and state (or let init fill it)
 *   if (pc_ref_run(r, err, sizeof err)) ...
 *   const float *loss = pc_ref_data(r, loss_val);
 *   pc_ref_apply_updates(r);              // copy each update's new value into its bound target
 */
#ifndef PEFTC_BACKEND_REF_H
#define PEFTC_BACKEND_REF_H

#include "peftc/peftc.h"
#include <stddef.h>
#include <stdint.h>

typedef struct pc_ref pc_ref;

pc_ref *pc_ref_new(const pc_graph *g, char *err, size_t errlen);
void pc_ref_free(pc_ref *r);

/* Binds caller memory (numel * dtype size bytes) to an input, param or state value. The memory
 * is borrowed; it must outlive pc_ref_run and pc_ref_apply_updates, which writes into it. */
int pc_ref_bind(pc_ref *r, pc_val v, void *data);
/* Params/states left unbound are initialised from their init spec with this seed (default 0);
 * unbound inputs, and unbound params without an init, are an error at run time. */
void pc_ref_set_seed(pc_ref *r, uint64_t seed);
/* Keep every intermediate value after the run (for tests/debugging); by default only outputs,
 * update values and bound leaves survive. */
void pc_ref_keep_all(pc_ref *r, int keep);

/* Whether a run stops at the first NaN or infinity an op produces, naming the op, its result and
 * its origin (the rule and the message: backend/finite.h). On by default: the oracle should not
 * compute on through a numerical fault; tests of NaN/inf semantics switch it off. */
void pc_ref_check_finite(pc_ref *r, int on);

/* Executes the graph. Errors (unbound input, embedding id out of range, ...) name the value and
 * its location. */
int pc_ref_run(pc_ref *r, char *err, size_t errlen);
/* The data of a value after a run (outputs, update values, leaves; everything with keep_all). */
const void *pc_ref_data(const pc_ref *r, pc_val v);
/* Writes each update's new value into its target's memory (bound or internally initialised). */
int pc_ref_apply_updates(pc_ref *r);

/* Initialises n elements per the init spec (shared with the runtime's weight store):
 * fan_in is the last dimension of the shape for kaiming_uniform. */
void pc_init_fill(float *dst, int64_t n, pc_init init, int64_t fan_in, uint64_t seed, uint64_t stream);

#endif
