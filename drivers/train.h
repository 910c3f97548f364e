/* Fine-tuning a frozen model with an adapter: the loop behind `peftc train`.
 *
 * One compiled step = forward + backward + AdamW update (a single graph); the hyper-parameters
 * (learning rate of the schedule, betas, weight decay, step, clip norm) are a small input
 * tensor, so the same graph serves every step. Batches come from drivers/train_data.h (seeded
 * random windows of a text, or shuffled epochs of labelled examples); evaluation follows the
 * `peftc eval` protocol on a held-out split. */
#ifndef PEFTC_DRIVERS_TRAIN_H
#define PEFTC_DRIVERS_TRAIN_H

#include "backend/exec.h"
#include "drivers/session.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* the learning rate after warmup: cosine or linear decay from lr to min_lr at the last step, or
 * constant lr */
typedef enum { PC_SCHEDULE_COSINE = 0, PC_SCHEDULE_LINEAR, PC_SCHEDULE_CONSTANT } pc_lr_schedule_kind;
/* "cosine", "linear", "constant"; parsing gives -1 for anything else */
const char *pc_schedule_name(pc_lr_schedule_kind k);
int pc_schedule_parse(const char *name);

typedef struct {
    const char *model, *tokenizer, *adapter, *data, *out, *resume;
    /* classification data (an encoder model): the held-out file (else --val-fraction of the
     * examples is held out) and the label names (a JSON list) for data that names categories */
    const char *val_data, *labels;
    /* eval_batches < 0: the task's default (text: 8 batches; classification: all examples);
     * seq <= 0: the task's default (text: 64; classification: 128, the longest example's length
     * when shorter) */
    int steps, batch, seq, warmup, eval_every, eval_batches, save_every, grad_accum;
    double epochs; /* > 0: steps = the optimizer steps of this many passes over the training part */
    pc_lr_schedule_kind schedule;
    double lr, min_lr, weight_decay, clip, val_fraction;
    uint64_t seed;
    bool json;     /* JSON lines on stdout */
    bool progress; /* a progress bar (stderr is a terminal) */
    bool quiet;
    bool hf_qk_rows; /* the adapter's q/k rows are in Hugging Face order (see session.h) */
    pc_dtype base_dtype; /* PC_F32 or PC_BF16: the frozen base weights (pc_session_set_base_dtype) */
    pc_exec_opts exec; /* backend and threads */
    /* when set (jit only, no --grad-accum), the step and evaluation graphs run through their
     * entry functions (backend/entry.h) from here: an AOT trainer's compiled-in table */
    const struct pc_entry_provider *entries;
    const pc_registry *registry; /* adapter methods (NULL = the built-ins) */
    const char *dump_after;      /* print the step's IR after this stage (adapt, autograd, adamw, all) */
    /* the loss on multiple-choice task data (frontend/lm_objective.h; LM: the correct choice's
     * cross-entropy); tfew needs such data */
    pc_objective objective;
    int task_id; /* the task id of rows whose example names none (%task_ids, when a graph has it) */
    /* MPT's prompt distillation (drivers/train_distill.h): "0=DIR,1=DIR,..." prompt-tuning teachers
     * per task (NULL: none), λ and the temperature of frontend/distill_objective.h */
    const char *distill_teachers;
    double distill_weight, distill_temperature;
    /* set by pc_train from the data: multiple-choice rows per example (0: none); the graphs of
     * pc_train_graphs then hold batch * choices rows */
    int choices;
} pc_train_opts;

pc_train_opts pc_train_defaults(void);

/* what a checkpoint directory (OUT/checkpoint-N) holds besides the adapter's two files; a final
 * adapter directory drops them */
#define PC_TRAIN_OPTIMIZER_FILE "optimizer.safetensors"
#define PC_TRAIN_STATE_FILE "trainer_state.json"
/* the config a resumable checkpoint continues from (its adapter_config.json is what the adapter
 * is: AdaLoRA records its pruned ranks there) */
#define PC_TRAIN_CONFIG_FILE "trainer_adapter_config.json"

/* per-eval record, also what the CLI prints */
typedef struct {
    int step;
    double train_loss, eval_loss, lr, tokens_per_s; /* classification: examples per second */
    double eval_accuracy; /* classification; NaN for text */
} pc_train_point;

typedef struct {
    double base_eval_loss;  /* before training */
    double final_eval_loss;
    double base_eval_accuracy, final_eval_accuracy; /* classification; NaN for text */
    int steps;              /* the steps run to (--epochs fixes them from the data) */
    pc_train_point *curve;  /* owned; one per eval */
    int ncurve;
} pc_train_result;

int pc_train(const pc_train_opts *o, pc_train_result *res, char *err, size_t errlen);
void pc_train_result_free(pc_train_result *r);

/* The graphs pc_train runs, for a session whose adapter config is set: the step (the adapted
 * forward, then the pipeline autograd[,adamw{clip}]: AdamW if `adamw`, clipping when
 * o->clip > 0) and the held-out evaluation (the adapted forward), for o->batch x o->seq tokens;
 * SEQ_CLASSIFY graphs for an encoder, LM graphs otherwise.
 * On error the graphs built so far are left in *step / *eval for the caller to free. (`peftc
 * compile`, `peftc dump` and the bench build them too.) */
int pc_train_graphs(const pc_session *s, const pc_train_opts *o, bool adamw, pc_graph **step, pc_graph **eval,
                    char *err, size_t errlen);

/* "lm", "tfew"; parsing gives -1 for anything else */
const char *pc_objective_name(pc_objective k);
int pc_objective_parse(const char *name);

/* the learning rate of step t (1-based): linear warmup, then o->schedule */
double pc_lr_schedule(const pc_train_opts *o, int t);

#endif
