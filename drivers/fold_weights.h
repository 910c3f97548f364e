/* Folding the weights-only parts of an inference graph: values computed from frozen params and
 * constants alone (DoRA's row norms, LoHa's and LoKr's ΔW, prompt tuning's extended token table)
 * are the same for every token, so they are evaluated once, on the reference interpreter, and
 * the graph reads them as frozen params ("folded.<i>") instead of recomputing them per run.
 * Training graphs are not folded: there the adapter's params change every step. */
#ifndef PEFTC_DRIVERS_FOLD_WEIGHTS_H
#define PEFTC_DRIVERS_FOLD_WEIGHTS_H

#include "drivers/session.h"
#include "drivers/store.h"

typedef struct {
    int n;
    char **keys;  /* "folded.<i>" */
    float **data; /* owned */
} pc_folded;

/* Rebuilds *g with its weights-only values folded; base weights come from the session, adapter
 * tensors from `st` (by key). *g is unchanged when nothing folds or on error. */
int pc_fold_weights(pc_graph **g, const pc_session *s, const pc_store *st, pc_folded *out, char *err, size_t errlen);
/* An inference graph of the session's model and adapter, ready to run: built (req->mode EVAL or
 * DECODE, adapter params frozen), its adapter tensors in *st, its weights-only values folded into
 * *f. Bind with pc_session_bind_base(.., false), pc_store_bind_shared(st, ..) and pc_folded_bind. */
pc_graph *pc_session_inference_graph(const pc_session *s, const pc_build_req *req, pc_store *st, pc_folded *f,
                                     char *err, size_t errlen);
/* all three bindings of such a graph */
int pc_session_bind_inference(const pc_session *s, const pc_graph *g, const pc_store *st, const pc_folded *f,
                              pc_exec *r, char *err, size_t errlen);

/* binds the folded values to an executor of the rebuilt graph (they must outlive it) */
int pc_folded_bind(const pc_folded *f, const pc_graph *g, pc_exec *r);
void pc_folded_free(pc_folded *f);

#endif
