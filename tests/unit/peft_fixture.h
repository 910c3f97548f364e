/* The harness of the tests against adapter directories written by Hugging Face PEFT
 * (tests/golden/gen_peft_*.py): a session on stories260K + an adapter, the fixture's batch [2,16]
 * from expected.safetensors, an LM graph with logits (and gradients when trainable), runs on a
 * backend, and the checks every method shares with the same tolerances:
 *   pf_check_loss_logits_grads  loss (rel 1e-5), logits (1e-4), every trainable gradient
 *                               (1e-4 x max(1, max|g|)) vs PEFT
 *   pf_check_merge              merge vs merge_and_unload (merged.* weights 1e-6, each moved
 *                               > 1e-3 from the base), merged logits vs PEFT's merged and vs
 *                               the unmerged EVAL graph (1e-4)
 *   pf_check_unmerge            merge -> checkpoint file -> unmerge restores the base
 * Each prints the measured numbers. Method-specific checks stay in each test. */
#ifndef PEFTC_TESTS_PEFT_FIXTURE_H
#define PEFTC_TESTS_PEFT_FIXTURE_H

#include "backend/exec.h"
#include "drivers/session.h"
#include "drivers/store.h"
#include "ir/ir.h"

#include <stdbool.h>

#ifdef PEFTC_SOURCE_DIR
#define PF_MODEL PEFTC_SOURCE_DIR "/data/stories260K/stories260K.bin"
#define PF_DATA(dir) PEFTC_SOURCE_DIR "/tests/data/" dir
#endif

enum { PF_B = 2, PF_S = 16, PF_V = 512, PF_N = PF_B * PF_S };

/* a session, the expected tensors, one LM graph [2,16] with logits and its store, the batch
 * (and, when the expected file has "task_ids", each row's task for a multitask adapter) */
typedef struct {
    pc_session s;
    pc_st_file *ex;
    pc_graph *g;
    pc_store store;
    int32_t tokens[PF_N], targets[PF_N];
    int32_t task_ids[PF_B];
} pf_fixture;

/* opens `model` with `adapter` (a directory, a config file or NULL) and the batch of `expected`
 * (NULL: <adapter>/expected.safetensors); builds the graph when `build`. -1 with a message on
 * stderr; pf_close is safe either way. */
int pf_open_model(pf_fixture *x, const char *model, const char *adapter, const char *expected, pc_adapt_mode mode,
                  bool trainable, bool build);
#ifdef PF_MODEL
static inline int pf_open(pf_fixture *x, const char *adapter, const char *expected, pc_adapt_mode mode,
                          bool trainable, bool build) {
    return pf_open_model(x, PF_MODEL, adapter, expected, mode, trainable, build);
}
#endif
/* the LM graph (autograd when trainable) and its store, for the session as it is now */
int pf_graph(pf_fixture *x, pc_adapt_mode mode, bool trainable);
void pf_close(pf_fixture *x);

/* an executor of x->g on `kind`, base, store, tokens, targets (and %task_ids if the graph has
 * it) bound, run once (NULL on error) */
pc_exec *pf_run(pf_fixture *x, pc_backend_kind kind);
/* the loss output, or the logits output (rank 3) */
pc_val pf_output(const pc_graph *g, bool loss);
/* the logits of a run, checked to be [2,16,512] (NULL if not) */
const float *pf_logits(const pf_fixture *x, const pc_exec *r);
/* max |logits - f[key]| (f NULL: x->ex); INFINITY when either is missing or misshapen */
double pf_logits_diff(const pf_fixture *x, const pc_exec *r, const pc_st_file *f, const char *key);

/* the trainable store entries: their number, and in *loaded how many hold exactly the adapter
 * file's values; with key_part, asserts each is in the file and its key contains key_part */
int pf_trainable_from_file(const pf_fixture *x, const char *key_part, int *loaded);

/* gradients grouped for the printed worst relative error: keys containing key_part (NULL: the
 * rest); none: one group, printed as "worst rel (to max(1, max|g|))" */
typedef struct {
    const char *label, *key_part;
} pf_grad_group;

/* loss, logits and the gradient of every trainable tensor vs expected.safetensors ("loss",
 * "logits", "grad.<key>") on `kind`; want_grads gradients. loss_note (may be NULL) is printed
 * after PEFT's loss. */
void pf_check_loss_logits_grads(pf_fixture *x, pc_backend_kind kind, int want_grads, const char *loss_note,
                                const pf_grad_group *groups, int ngroups);

/* the merged.* weights of f vs the session's model: how many (each must exist with f's shape
 * and differ from the base by > 1e-3 when must_move), the worst |diff| in *worst (relative to
 * max(1, max|w|) when relative) */
int pf_merged_weights(const pc_session *s, const pc_st_file *f, bool relative, bool must_move, double *worst);

typedef struct {
    const char *adapter, *expected;    /* as pf_open */
    int modules, weights;              /* merged modules, merged.* weights in the file */
    bool relative;                     /* merged weights compared relative (DoRA) */
    const char *weights_label;         /* printed before the worst weight diff */
    pc_backend_kind unmerged_kind;     /* backend of the unmerged EVAL graph */
} pf_merge_spec;

/* merge vs merge_and_unload (weights <= 1e-6), the merged graph (no adapter params) vs PEFT's
 * merged logits and the unmerged EVAL graph vs PEFT's logits and the merged one (<= 1e-4).
 * m is left open and merged (the caller pf_closes it); -1 (a failure recorded) if it did not open. */
int pf_check_merge(pf_fixture *m, const char *model, const pf_merge_spec *spec);

/* merged (or, when NULL, `model` + `adapter` merged here) written to a temporary checkpoint,
 * reopened with `adapter` and unmerged; per weight the merge moved: */
typedef struct {
    int merged, unmerged, weights; /* modules merged / unmerged, weights compared */
    double moved;                  /* max |merged - base| */
    double restored;               /* max |unmerged - base| / max(1, max|base|) */
    double restored_abs;           /* max |unmerged - base| */
} pf_roundtrip;
void pf_unmerge_roundtrip(pc_session *merged, const char *model, const char *adapter, pf_roundtrip *rt);

/* the round trip from a fresh session, checked: `modules` merged, unmerged and compared, moved
 * > 1e-3, restored within tol; printed after `label` (NULL: none) */
void pf_check_unmerge(const char *model, const char *adapter, const char *label, int modules, double tol);

#endif
