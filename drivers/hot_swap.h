/* Hot swap: new weights for a named adapter under a running compiled executor, without
 * recompiling it. The replacement must build the very same graph (same method, targets, ranks,
 * scales: only the tensors' values change); the executor's buffers are refilled in place and
 * re-bound (the compiled backend reorders bound weights again on a bind). */
#ifndef PEFTC_DRIVERS_HOT_SWAP_H
#define PEFTC_DRIVERS_HOT_SWAP_H

#include "drivers/fold_weights.h"
#include "drivers/session.h"

/* replaces adapter `name`'s files by the adapter at path; an error (nothing changed) when its
 * graph would differ ("... builds another graph than NAME's: ...") or it does not fit the model */
int pc_session_replace_adapter(pc_session *s, const char *name, const char *path, char *err, size_t errlen);

/* after pc_session_replace_adapter (or set_active between adapters that build the same graph):
 * recomputes the adapter tensors (st) and folded values (f) of an inference graph g that
 * pc_session_inference_graph(s, req, st, f) made and r runs, into the same buffers, and re-binds
 * them to r. An error when the session now builds a different graph. */
int pc_session_refresh_inference(const pc_session *s, const pc_build_req *req, const pc_graph *g, pc_store *st,
                                 pc_folded *f, pc_exec *r, char *err, size_t errlen);

#endif
