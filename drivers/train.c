/* The fine-tuning loop. */
#include "drivers/train.h"
#include "backend/entry.h"
#include "drivers/bf16_weights.h"
#include "drivers/method_state.h"
#include "drivers/session.h"
#include "drivers/store.h"
#include "drivers/train_data.h"
#include "drivers/train_state.h"
#include "drivers/train_distill.h"
#include "drivers/train_tasks.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "passes/pipeline.h"
#include "runtime/adapter_io.h"
#include "runtime/atomic_dir.h"
#include "runtime/data.h"
#include "runtime/fileio.h"
#include "runtime/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define OPTIMIZER_FILE PC_TRAIN_OPTIMIZER_FILE
#define STATE_FILE PC_TRAIN_STATE_FILE
#define TRAIN_CONFIG_FILE PC_TRAIN_CONFIG_FILE

pc_train_opts pc_train_defaults(void) {
    return (pc_train_opts){
        .steps = 200, .batch = 8, .seq = 64, .warmup = 20, .eval_every = 50, .eval_batches = -1,
        .save_every = 0, .grad_accum = 1, .lr = 3e-3, .min_lr = 3e-4, .weight_decay = 0.0,
        .clip = 1.0, .val_fraction = 0.1, .seed = 1337, .exec = {.kind = PC_BACKEND_JIT, .threads = 1},
        .distill_weight = 1.0, .distill_temperature = 1.0,
    };
}

const char *pc_schedule_name(pc_lr_schedule_kind k) {
    return k == PC_SCHEDULE_LINEAR ? "linear" : k == PC_SCHEDULE_CONSTANT ? "constant" : "cosine";
}

int pc_schedule_parse(const char *name) {
    for (int k = PC_SCHEDULE_COSINE; k <= PC_SCHEDULE_CONSTANT; k++)
        if (name && strcmp(name, pc_schedule_name((pc_lr_schedule_kind)k)) == 0) return k;
    return -1;
}

double pc_lr_schedule(const pc_train_opts *o, int t) {
    if (o->warmup > 0 && t <= o->warmup) return o->lr * t / o->warmup;
    if (o->schedule == PC_SCHEDULE_CONSTANT) return o->lr;
    double span = o->steps - o->warmup;
    double progress = span > 0 ? (t - o->warmup) / span : 1.0;
    if (progress > 1) progress = 1;
    if (o->schedule == PC_SCHEDULE_LINEAR) return o->lr + (o->min_lr - o->lr) * progress;
    return o->min_lr + 0.5 * (o->lr - o->min_lr) * (1.0 + cos(M_PI * progress));
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* a trainable param's gradient as the step hook sees it (pc_tensor_io.grad) */
typedef struct {
    const char *key;
    pc_val gv;         /* "grad.<param>" in the step graph */
    const float *src;  /* this step's gradient (the step's output, or the accumulated mean) */
    float *scaled;     /* src times the clip coefficient, made on demand */
    bool scaled_ok;
    pc_shape shape;
    int64_t n;
} step_grad;

/* the graphs of one data bucket (drivers/train_data.h): the step and the evaluation for its
 * row length, compiled when a batch first needs them; all share the store and one arena */
typedef struct {
    pc_graph *g, *eval_g;
    pc_exec *r, *eval_r;
    pc_val *gout;      /* with upd_g: per trainable param (upd_g's order), its grad output in g */
    pc_val loss_v;
    pc_val eval_logits; /* a classifier's %logits in eval_g (PC_NONE for text) */
    bool eval_rebound; /* the adapter rebound to eval_r in this evaluation */
} variant;

/* everything one run holds, freed in one place */
typedef struct {
    pc_session s;
    pc_train_data data;
    variant var[PC_TRAIN_MAX_BUCKETS];
    int cur;                       /* the bucket whose graphs g, r, eval_g, eval_r, gout are */
    pc_arena arena;                /* the compiled graphs' shared intermediate memory */
    pc_graph *g, *eval_g, *upd_g; /* upd_g: the AdamW graph when gradients accumulate */
    pc_exec *r, *eval_r, *upd_r;
    float **gsum;                  /* per trainable param: accumulated gradient (upd_g's input) */
    pc_val *gout;                  /* per trainable param: its grad output in g */
    int ngrad;
    int sg_var;                    /* the bucket sg's gradient values were found in */
    pc_exec_opts exec;             /* the run's, with the shared arena */
    bool store_made;
    const pc_graph *store_g;       /* the graph the store was made for (its entries' values) */
    pc_store store;
    pc_st_file *resume_opt; /* optimizer state of the checkpoint resumed from */
    pc_adapt_ctx *cx;       /* the adapter in training (its per-step hook) */
    pc_distill *distill;    /* --distill-teachers: the teachers' forward before each step */
    step_grad *sg;          /* with a step hook: each trainable param's gradient of the step */
    int nsg;
    double clip_coef;       /* the step's clip coefficient (1 without clipping) */
    int32_t seed_in;
    int32_t *task_rows; /* MPT: %task_ids [B], every row opts.task_id (when the data has no tasks) */
    pc_adamw_hp hp;
    /* with pc_train_opts.entries: the step's and the evaluation's entry functions */
    const pc_entry_provider *ep;
    void *step_en, *eval_en;
    pc_entry_args step_args, eval_args;
} run;

static void run_free(run *x) {
    if (x->step_en) x->ep->close(x->step_en);
    if (x->eval_en) x->ep->close(x->eval_en);
    pc_entry_args_free(&x->step_args);
    pc_entry_args_free(&x->eval_args);
    for (int b = 0; b < PC_TRAIN_MAX_BUCKETS; b++) {
        variant *v = &x->var[b];
        pc_exec_free(v->r);
        pc_exec_free(v->eval_r);
        pc_graph_free(v->g);
        pc_graph_free(v->eval_g);
        free(v->gout);
    }
    pc_exec_free(x->upd_r);
    pc_graph_free(x->upd_g);
    pc_arena_free(&x->arena);
    free(x->task_rows);
    for (int i = 0; i < x->ngrad; i++) free(x->gsum[i]);
    free(x->gsum);
    pc_store_free(&x->store);
    pc_st_close(x->resume_opt);
    pc_train_data_free(&x->data);
    pc_adapt_free(x->cx);
    pc_distill_free(x->distill);
    for (int i = 0; i < x->nsg; i++) free(x->sg[i].scaled);
    free(x->sg);
    pc_session_close(&x->s);
}

static int bind_input(pc_exec *r, const pc_graph *g, const char *name, void *data) {
    pc_val v = pc_lookup(g, name);
    return v == PC_NONE ? 0 : pc_exec_bind(r, v, data);
}

static int use_variant(run *x, const pc_train_opts *o, int b, char *err, size_t errlen);

/* mean loss (and, for classification, accuracy) over the first eval_batches batches of the
 * held-out part (0 = all) */
static int evaluate(run *x, const pc_train_opts *o, double *loss, double *accuracy, char *err, size_t errlen) {
    pc_train_data *d = &x->data;
    size_t nitems = pc_train_data_eval_items(d, o->eval_batches);
    pc_cls_result acc = {0};
    const int L = x->s.model.info.num_labels;
    for (int b = 0; b < d->nbuckets; b++) x->var[b].eval_rebound = false;
    for (size_t first = 0; first < nitems; first += d->B) {
        int b;
        size_t real = pc_train_data_eval_fill(d, first, nitems, &b);
        if (use_variant(x, o, b, err, errlen)) return -1;
        /* the eval graph holds the adapter as frozen params, which a compiled backend may
         * prepare (reorder) once per binding: rebind so it sees the values the last steps wrote */
        if (!x->var[b].eval_rebound && pc_store_bind_shared(&x->store, x->eval_g, x->eval_r))
            return pc_errf(err, errlen, "rebinding the adapter failed");
        x->var[b].eval_rebound = true;
        pc_val lv = x->eval_g->outputs[0], logits_v = x->var[b].eval_logits;
        if (x->eval_en ? x->ep->call(x->eval_en, x->eval_args.args, err, errlen) : pc_exec_run(x->eval_r, err, errlen))
            return -1;
        const float *l = x->eval_en ? pc_entry_args_output(&x->eval_args, lv) : pc_exec_data(x->eval_r, lv);
        const float *logits = logits_v == PC_NONE ? NULL
                              : x->eval_en ? pc_entry_args_output(&x->eval_args, logits_v)
                                           : pc_exec_data(x->eval_r, logits_v);
        pc_train_data_eval_tally(d, b, &acc, real, *l, logits, L);
    }
    pc_cls_finish(&acc);
    *loss = acc.loss;
    *accuracy = pc_train_data_by_example(d) ? acc.accuracy : NAN;
    return 0;
}

/* the adapter file's tensors: the method's own choice, or every trainable param under its key;
 * *own says which */
static int save_adapter_tensors(run *x, pc_st_put *pt, bool *own, char *err, size_t errlen) {
    const pc_adapter_method *m = pc_adapt_method(x->cx);
    pc_tensor_io io = {pc_store_tensor, pc_st_put_tensor, &x->store, pt, pc_store_param_key, NULL, NULL};
    char msg[1024] = "";
    int r = m->save_tensors ? m->save_tensors(x->cx, pc_adapt_state(x->cx), &io, msg, sizeof msg) : 0;
    if (r < 0) return pc_errf(err, errlen, "saving the %s adapter: %s", m->name, msg[0] ? msg : "failed");
    *own = r > 0;
    return r ? 0 : pc_store_write(&x->store, PC_TRAINABLE, pt->w, err, errlen);
}

/* the config to write: the run's, or a copy the method edits (AdaLoRA's rank_pattern) */
static int saved_config(run *x, pc_adapter_config **out, char *err, size_t errlen) {
    const pc_adapter_method *m = pc_adapt_method(x->cx);
    *out = NULL;
    if (!m->save_config) return 0;
    if (!(*out = pc_adapter_config_clone(x->s.adapter.cfg))) return pc_errf(err, errlen, "out of memory");
    char msg[1024] = "";
    if (m->save_config(x->cx, pc_adapt_state(x->cx), *out, msg, sizeof msg) == 0) return 0;
    pc_adapter_config_free(*out);
    *out = NULL;
    return pc_errf(err, errlen, "saving the %s adapter's config: %s", m->name, msg[0] ? msg : "failed");
}

/* the adapter files (and, for a resumable checkpoint, the optimizer state and trainer state)
 * into the staging directory `stage` */
static int write_checkpoint_files(run *x, const char *stage, int step, const pc_train_opts *o, bool with_state,
                                  char *err, size_t errlen) {
    pc_st_writer *w = pc_st_writer_new(), *ow = with_state ? pc_st_writer_new() : NULL;
    if (!w || (with_state && !ow)) {
        pc_st_writer_free(w);
        return pc_errf(err, errlen, "out of memory");
    }
    pc_session_fix_qk_rows(&x->s, &x->store, 1); /* to the file's row order, and back below */
    pc_st_put pt = {w, NULL, 0}, opt = {ow, NULL, 0};
    pc_adapter_config *cfg = NULL;
    bool own = false;
    int rc = save_adapter_tensors(x, &pt, &own, err, errlen);
    if (!rc) rc = pc_st_writer_meta(w, "format", "pt", err, errlen);
    if (!rc) rc = saved_config(x, &cfg, err, errlen);
    if (!rc) rc = pc_adapter_write_files(stage, cfg ? cfg : x->s.adapter.cfg, w, err, errlen);
    /* a resumable checkpoint: the adapter file is what the adapter is (AdaLoRA's pruned ranks,
     * P-tuning's table), so the run resumes from its own files: the config it trains, and beside
     * the optimizer moments the params (rows in the file's order, as in an adapter file) and the
     * method's state */
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", stage, OPTIMIZER_FILE);
    if (!rc && with_state) rc = pc_store_write(&x->store, PC_STATE | PC_TRAINABLE, ow, err, errlen);
    pc_session_fix_qk_rows(&x->s, &x->store, 0);
    if (!rc && with_state) rc = pc_method_state_save(x->cx, &x->store, &opt, err, errlen);
    if (!rc && with_state) rc = pc_st_write(ow, path, err, errlen);
    snprintf(path, sizeof path, "%s/%s", stage, TRAIN_CONFIG_FILE);
    if (!rc && with_state) rc = pc_adapter_config_write(x->s.adapter.cfg, path, err, errlen);
    if (!rc && with_state) rc = pc_train_state_write(stage, step, o, err, errlen);
    pc_adapter_config_free(cfg);
    pc_st_writer_free(w);
    pc_st_writer_free(ow);
    pc_st_put_free(&pt);
    pc_st_put_free(&opt);
    return rc;
}

/* a checkpoint or the final adapter, written as a whole directory (runtime/atomic_dir.h): a
 * crash leaves the previous one or this one, and every surviving checkpoint resumes */
static int save_checkpoint(run *x, const char *dir, int step, const pc_train_opts *o, bool with_state,
                           char *err, size_t errlen) {
    pc_dir_txn t;
    if (pc_dir_begin(&t, dir, err, errlen)) return -1;
    if (write_checkpoint_files(x, t.stage, step, o, with_state, err, errlen)) {
        pc_dir_abort(&t);
        return -1;
    }
    /* a final adapter is not a resumable checkpoint: state an earlier checkpoint left here goes */
    static const char *const resumable[] = {STATE_FILE, OPTIMIZER_FILE, TRAIN_CONFIG_FILE, NULL};
    return pc_dir_commit(&t, with_state ? NULL : resumable, err, errlen);
}

/* With gradient accumulation the step is two graphs: g (forward + backward, gradients out) runs
 * once per micro-batch, and upd_g (AdamW over inputs "grad.<param>") once per step with the
 * averaged gradients. upd_g holds the same params and optimizer states (same names and keys)
 * as the fused step graph would, so checkpoints are interchangeable. */
static int build_update_graph(run *x, int clip, char *err, size_t errlen) {
    const pc_graph *g = x->g;
    if (!(x->upd_g = pc_graph_new("update"))) return pc_errf(err, errlen, "out of memory");
    if (!(x->gout = x->var[x->cur].gout = malloc((size_t)g->nvals * sizeof *x->gout)) ||
        !(x->gsum = calloc((size_t)g->nvals, sizeof *x->gsum)))
        return pc_errf(err, errlen, "out of memory");
    for (pc_val v = 0; v < g->nvals; v++) {
        const pc_value *p = pc_v(g, v);
        if (p->op != PC_OP_param || !(p->flags & PC_TRAINABLE)) continue;
        char name[600];
        snprintf(name, sizeof name, "grad.%s", p->name);
        pc_val gv = pc_lookup(g, name);
        if (gv == PC_NONE) return pc_errf(err, errlen, "no gradient for %%%s", p->name);
        pc_param_at(x->upd_g, p->loc, p->name, p->key, p->dtype, p->shape, PC_TRAINABLE, p->init);
        pc_val in = pc_input_at(x->upd_g, p->loc, name, PC_F32, p->shape);
        pc_mark_output(x->upd_g, in);
        int64_t n = pc_shape_numel(p->shape);
        if (!(x->gsum[x->ngrad] = malloc((size_t)(n ? n : 1) * sizeof(float))))
            return pc_errf(err, errlen, "out of memory allocating the accumulated gradient of %s (%zu bytes)", p->key ? p->key : p->name,
                           (size_t)(n ? n : 1) * sizeof(float));
        x->gout[x->ngrad++] = gv;
    }
    if (x->upd_g->error) return pc_errf(err, errlen, "%s", x->upd_g->error);
    pc_adamw_opts ao = {.clip = clip};
    return pc_pass_adamw(x->upd_g, &ao, err, errlen);
}

/* a failed run's message, prefixed with where in training it happened ("step 17: "); -1 */
static int run_failed(char *err, size_t errlen, const char *where, int t) {
    char msg[4096];
    snprintf(msg, sizeof msg, "%s", err);
    return pc_errf(err, errlen, "%s %d: %s", where, t, msg);
}

/* the dropout seed of micro-batch k of step t: distinct for every (t, k) */
static int32_t step_seed(uint64_t seed, int t, int k) {
    return (int32_t)(pc_mix64(pc_mix64(pc_mix64(seed) ^ (uint64_t)t) ^ (uint64_t)k) & 0x7fffffff);
}

/* one optimizer step over grad_accum micro-batches; *loss = their mean loss */
static int accumulated_step(run *x, const pc_train_opts *o, int t, double *loss, char *err, size_t errlen) {
    *loss = 0;
    for (int k = 0; k < o->grad_accum; k++) {
        int b = pc_train_data_sample(&x->data, o->seed, t, k, o->grad_accum);
        if (use_variant(x, o, b, err, errlen)) return run_failed(err, errlen, "step", t);
        pc_val loss_v = x->var[b].loss_v;
        x->seed_in = step_seed(o->seed, t, k);
        if ((x->distill && pc_distill_run(x->distill, x->g, err, errlen)) || pc_exec_run(x->r, err, errlen))
            return run_failed(err, errlen, "step", t);
        *loss += *(const float *)pc_exec_data(x->r, loss_v) / o->grad_accum;
        for (int i = 0; i < x->ngrad; i++) {
            const float *gr = pc_exec_data(x->r, x->gout[i]);
            int64_t n = pc_shape_numel(pc_val_shape(x->g, x->gout[i]));
            float *acc = x->gsum[i];
            if (k == 0) for (int64_t j = 0; j < n; j++) acc[j] = gr[j] / (float)o->grad_accum;
            else for (int64_t j = 0; j < n; j++) acc[j] += gr[j] / (float)o->grad_accum;
        }
    }
    if (!isfinite(*loss)) return 0; /* the caller reports it; nothing is updated */
    if (pc_exec_run(x->upd_r, err, errlen)) return run_failed(err, errlen, "step", t);
    if (pc_exec_apply_updates(x->upd_r)) return pc_errf(err, errlen, "step %d: applying updates failed", t);
    return 0;
}

/* the step hook's gradients: one entry per trainable param of the store, by its key */
static int step_grads_init(run *x, char *err, size_t errlen) {
    const pc_graph *sg = x->store_g; /* the graph the store was made for */
    if (!(x->sg = calloc((size_t)x->store.n + 1, sizeof *x->sg))) return pc_errf(err, errlen, "out of memory");
    for (int i = 0; i < x->store.n; i++) {
        const pc_store_entry *e = &x->store.e[i];
        if (!(e->flags & PC_TRAINABLE)) continue;
        char name[600];
        snprintf(name, sizeof name, "grad.%s", pc_val_name(sg, e->v));
        step_grad *d = &x->sg[x->nsg];
        *d = (step_grad){.key = e->key, .gv = pc_lookup(x->g, name), .shape = e->shape, .n = e->n};
        if (d->gv == PC_NONE) return pc_errf(err, errlen, "no gradient %s for the step hook", name);
        for (int k = 0; k < x->ngrad; k++)
            if (x->gout[k] == d->gv) d->src = x->gsum[k];
        x->nsg++;
    }
    return 0;
}

/* points the entries at this step's gradients and finds the clip coefficient, as adamw{clip} */
static void step_grads_update(run *x, const pc_train_opts *o) {
    double sumsq = 0;
    for (int i = 0; i < x->nsg; i++) {
        step_grad *d = &x->sg[i];
        if (!x->upd_g)
            d->src = x->step_en ? pc_entry_args_output(&x->step_args, d->gv) : pc_exec_data(x->r, d->gv);
        d->scaled_ok = false;
        for (int64_t j = 0; j < d->n; j++) sumsq += (double)d->src[j] * d->src[j];
    }
    x->clip_coef = 1.0;
    if (o->clip > 0 && o->clip / (sqrt(sumsq) + 1e-6) < 1.0) x->clip_coef = o->clip / (sqrt(sumsq) + 1e-6);
}

static const float *step_grad_get(void *ctx, const char *key, pc_shape *shape) {
    run *x = ctx;
    for (int i = 0; i < x->nsg; i++) {
        step_grad *d = &x->sg[i];
        if (strcmp(d->key, key)) continue;
        if (shape) *shape = d->shape;
        if (x->clip_coef == 1.0) return d->src;
        if (!d->scaled && !(d->scaled = malloc((size_t)(d->n ? d->n : 1) * sizeof *d->scaled))) return NULL;
        if (!d->scaled_ok)
            for (int64_t j = 0; j < d->n; j++) d->scaled[j] = (float)(d->src[j] * x->clip_coef);
        d->scaled_ok = true;
        return d->scaled;
    }
    return NULL;
}

/* the method's per-step hook (AdaLoRA's rank allocator) sees the adapter's tensors and the
 * step's gradients by key */
static int step_hook(run *x, const pc_train_opts *o, int t, char *err, size_t errlen) {
    const pc_adapter_method *m = pc_adapt_method(x->cx);
    if (!m->step_hook) return 0;
    if (x->sg && x->sg_var != x->cur) { /* another bucket's graph: its gradient values */
        for (int i = 0; i < x->nsg; i++) free(x->sg[i].scaled);
        free(x->sg);
        x->sg = NULL, x->nsg = 0;
    }
    if (!x->sg && step_grads_init(x, err, errlen)) return -1;
    x->sg_var = x->cur;
    step_grads_update(x, o);
    pc_tensor_io io = {pc_store_tensor, NULL, &x->store, NULL, pc_store_param_key, step_grad_get, x};
    char msg[1024] = "";
    if (!m->step_hook(x->cx, pc_adapt_state(x->cx), t, &io, msg, sizeof msg)) return 0;
    return pc_errf(err, errlen, "step %d: %s: %s", t, m->name, msg);
}

/* a JSON number, or null for NaN/inf (which JSON cannot spell) */
static const char *jnum(char *buf, size_t len, double x) {
    if (isfinite(x)) snprintf(buf, len, "%.6f", x);
    else snprintf(buf, len, "null");
    return buf;
}

static void report(const pc_train_opts *o, const pc_train_point *p, double eta) {
    const bool cls = !isnan(p->eval_accuracy);
    if (o->json) {
        char a[64], b[64], c[64];
        if (cls)
            printf("{\"step\":%d,\"train_loss\":%s,\"eval_loss\":%s,\"eval_accuracy\":%s,\"lr\":%.6g,"
                   "\"examples_per_s\":%.1f}\n", p->step, jnum(a, sizeof a, p->train_loss),
                   jnum(b, sizeof b, p->eval_loss), jnum(c, sizeof c, p->eval_accuracy), p->lr, p->tokens_per_s);
        else
            printf("{\"step\":%d,\"train_loss\":%s,\"eval_loss\":%s,\"lr\":%.6g,\"tokens_per_s\":%.1f}\n", p->step,
                   jnum(a, sizeof a, p->train_loss), jnum(b, sizeof b, p->eval_loss), p->lr, p->tokens_per_s);
        fflush(stdout);
    } else if (!o->quiet && !o->progress) {
        if (cls)
            fprintf(stderr, "step %5d/%d  train loss %.4f  eval loss %.4f  accuracy %.2f%%  lr %.3g  %.1f ex/s\n",
                    p->step, o->steps, p->train_loss, p->eval_loss, 100 * p->eval_accuracy, p->lr, p->tokens_per_s);
        else
            fprintf(stderr, "step %5d/%d  train loss %.4f  eval loss %.4f  lr %.3g  %.0f tok/s\n", p->step, o->steps,
                    p->train_loss, p->eval_loss, p->lr, p->tokens_per_s);
    }
    (void)eta;
}

static void progress_bar(const pc_train_opts *o, int t, double loss, double eval_loss, double tps, bool cls, double eta) {
    if (!o->progress || o->quiet) return;
    int width = 24, done = (int)((double)t / o->steps * width);
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < done ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\r[%s] step %d/%d  loss %.4f  eval %.4f  %.0f %s  ETA %d:%02d ", bar, t, o->steps, loss,
            eval_loss, tps, cls ? "ex/s" : "tok/s", (int)eta / 60, (int)eta % 60);
    if (t == o->steps) fputc('\n', stderr);
}

int pc_train_graphs(const pc_session *s, const pc_train_opts *o, bool adamw, pc_graph **step, pc_graph **eval,
                    char *err, size_t errlen) {
    *step = *eval = NULL;
    pc_pipeline_opts po = {.dump_after = o->dump_after, .print = {.elide_consts_over = 16, .show_locations = 1},
                           .reg = s->reg};
    /* the step graph: the adapted forward, then backward (+ AdamW) */
    pc_build_req req = {.task = s->model.info.encoder ? PC_TASK_SEQ_CLASSIFY : PC_TASK_LM, .seq = o->seq,
                        .batch = (int64_t)o->batch * (o->choices > 0 ? o->choices : 1), .mode = PC_ADAPT_TRAIN,
                        .choices = o->choices, .objective = o->objective,
                        .distill_weight = o->distill_teachers ? o->distill_weight : 0, .distill_temperature = o->distill_temperature};
    if (!(*step = pc_session_build_dump(s, &req, true, o->dump_after, err, errlen))) return -1;
    const char *passes = !adamw ? "autograd" : o->clip > 0 ? PC_TRAIN_PASSES_CLIP : PC_TRAIN_PASSES;
    if (pc_run_pipeline(step, passes, &po, err, errlen)) return -1;
    /* the eval graph: the adapted forward, no dropout, the run's params frozen (a view of the
     * session marked as training, for every caller: the trainer, compile --mode train, dump) */
    req.mode = PC_ADAPT_EVAL, req.output_nll = o->choices > 0; /* per-example scores (drivers/task_batch.h) */
    req.distill_weight = 0; /* held out: the task's loss alone */
    pc_session run = *s;
    run.training_run = true;
    return (*eval = pc_session_build_dump(&run, &req, false, NULL, err, errlen)) ? 0 : -1;
}

/* compiles bucket b's step and evaluation graphs and binds them to the run's store, base model
 * and data buffers; the first one opened also makes the store (and the update graph) */
static int variant_open(run *x, const pc_train_opts *o, int b, char *err, size_t errlen) {
    variant *v = &x->var[b];
    pc_train_opts ob = *o;
    ob.seq = (int)x->data.bucket_S[b];
    const bool first = !x->store_made;
    const int fb = x->cur; /* with !first: a bucket already open (its gout names the gradients) */
    if (pc_train_graphs(&x->s, &ob, o->grad_accum <= 1, &v->g, &v->eval_g, err, errlen)) return -1;
    x->cur = b, x->g = v->g, x->eval_g = v->eval_g;
    if (first) {
        if (o->grad_accum > 1 && build_update_graph(x, o->clip > 0, err, errlen)) return -1;
        x->store_g = x->upd_g ? x->upd_g : x->g;
        if (pc_session_store(&x->s, x->store_g, &x->store, x->resume_opt, o->seed, err, errlen)) return -1;
        x->store_made = true;
    } else if (x->upd_g) {
        /* the same gradients in this bucket's graph, by name */
        if (!(v->gout = malloc((size_t)(x->ngrad ? x->ngrad : 1) * sizeof *v->gout))) return pc_errf(err, errlen, "out of memory");
        for (int i = 0; i < x->ngrad; i++)
            if ((v->gout[i] = pc_lookup(v->g, pc_val_name(x->var[fb].g, x->var[fb].gout[i]))) == PC_NONE)
                return pc_errf(err, errlen, "bucket %d: no %s", b, pc_val_name(x->var[fb].g, x->var[fb].gout[i]));
    }
    x->gout = v->gout;
    if (!(v->r = pc_exec_new(v->g, &x->exec, err, errlen)) || !(v->eval_r = pc_exec_new(v->eval_g, &x->exec, err, errlen)))
        return -1;
    x->r = v->r, x->eval_r = v->eval_r;
    if (pc_session_bind_base(&x->s, v->r, v->g, false, err, errlen) ||
        pc_session_bind_base(&x->s, v->eval_r, v->eval_g, false, err, errlen))
        return -1;
    if (x->upd_g) {
        if (first) {
            if (!(x->upd_r = pc_exec_new(x->upd_g, &x->exec, err, errlen))) return -1;
            if (pc_store_bind(&x->store, x->upd_r) || bind_input(x->upd_r, x->upd_g, "hp", &x->hp))
                return pc_errf(err, errlen, "binding failed");
            for (int i = 0; i < x->ngrad; i++) {
                char name[600];
                snprintf(name, sizeof name, "%s", pc_val_name(v->g, v->gout[i]));
                if (bind_input(x->upd_r, x->upd_g, name, x->gsum[i])) return pc_errf(err, errlen, "binding %s failed", name);
            }
        }
        if (pc_store_bind_shared(&x->store, v->g, v->r)) return pc_errf(err, errlen, "binding failed");
    } else if (first ? pc_store_bind(&x->store, v->r) : pc_store_bind_shared(&x->store, v->g, v->r)) {
        return pc_errf(err, errlen, "binding failed");
    }
    if (pc_store_bind_shared(&x->store, v->eval_g, v->eval_r)) return pc_errf(err, errlen, "binding failed");
    /* a bf16 base: the run reads the f32 originals of the converted weights no more (the store
     * took what it copies from the base before; other buckets find the copies by key) */
    if (first && x->s.bf16) pc_bf16_weights_drop_sources(x->s.bf16);
    const char *names[8];
    void *ptrs[8];
    int nin = pc_train_data_inputs(&x->data, b, names, ptrs);
    names[nin] = "hp", ptrs[nin++] = &x->hp;
    names[nin] = "seed", ptrs[nin++] = &x->seed_in;
    /* MPT's %task_ids: every row is task --task-id unless the data inputs hold per-row tasks */
    bool tasks_bound = false;
    for (int i = 0; i < nin; i++) tasks_bound |= strcmp(names[i], "task_ids") == 0;
    if (!tasks_bound && pc_lookup(v->g, "task_ids") != PC_NONE) {
        if (!x->task_rows && !(x->task_rows = malloc(x->data.B * sizeof *x->task_rows)))
            return pc_errf(err, errlen, "out of memory");
        for (size_t i = 0; i < x->data.B; i++) x->task_rows[i] = x->s.task_id;
        names[nin] = "task_ids", ptrs[nin++] = x->task_rows;
    }
    for (int i = 0; i < nin; i++)
        if (bind_input(v->r, v->g, names[i], ptrs[i]) || bind_input(v->eval_r, v->eval_g, names[i], ptrs[i]))
            return pc_errf(err, errlen, "binding the input %%%s failed", names[i]);
    if (x->distill && pc_distill_bind(x->distill, v->r, v->g, names, ptrs, nin, err, errlen)) return -1;
    const char *eval_out = pc_train_data_eval_output(&x->data);
    v->eval_logits = eval_out ? pc_lookup(v->eval_g, eval_out) : PC_NONE;
    v->loss_v = PC_NONE;
    for (int i = 0; i < v->g->noutputs; i++)
        if (pc_v(v->g, v->g->outputs[i])->flags & PC_LOSS) v->loss_v = v->g->outputs[i];
    if (o->entries && !x->upd_g && x->exec.kind == PC_BACKEND_JIT && x->data.nbuckets == 1) {
        /* the step and the evaluation through their entry functions, inputs by name */
        x->ep = o->entries;
        if (pc_entry_args_init(&x->step_args, v->g, names, (void *const *)ptrs, nin, err, errlen) ||
            pc_entry_args_init(&x->eval_args, v->eval_g, names, (void *const *)ptrs, nin, err, errlen) ||
            !(x->step_en = x->ep->open(x->ep, v->r, v->g, err, errlen)) ||
            !(x->eval_en = x->ep->open(x->ep, v->eval_r, v->eval_g, err, errlen)))
            return -1;
    }
    return 0;
}

static int use_variant(run *x, const pc_train_opts *o, int b, char *err, size_t errlen) {
    variant *v = &x->var[b];
    if (!v->g && variant_open(x, o, b, err, errlen)) return -1;
    x->cur = b, x->g = v->g, x->r = v->r, x->eval_g = v->eval_g, x->eval_r = v->eval_r, x->gout = v->gout;
    return 0;
}

int pc_train(const pc_train_opts *oin, pc_train_result *res, char *err, size_t errlen) {
    pc_train_opts o = *oin;
    run x = {0};
    int start = 0, rc = -1;
    *res = (pc_train_result){0};
    char msg[2048];
    /* a crashed run's temporaries go first (a checkpoint may sit in one, to be carried back) */
    if (o.out && pc_dir_recover(o.out, err, errlen)) return -1;
    if (o.resume && pc_train_state_read(o.resume, &o, &start, err, errlen)) return -1;
    /* a checkpoint resumes from the config the run trains (older ones: from their adapter) */
    char resume_cfg[4096];
    struct stat rst;
    if (o.resume) snprintf(resume_cfg, sizeof resume_cfg, "%s/%s", o.resume, TRAIN_CONFIG_FILE);
    const char *adapter = !o.resume ? o.adapter : stat(resume_cfg, &rst) == 0 ? resume_cfg : o.resume;
    int nlabels = 0; /* --labels sizes a classifier's head */
    if (o.labels) {
        pc_cls_labels lb;
        if (pc_cls_labels_load(&lb, o.labels, err, errlen)) return -1;
        nlabels = lb.n;
        pc_cls_labels_free(&lb);
    }
    if (pc_session_open_labels(&x.s, o.registry, o.model, o.tokenizer, adapter, nlabels, err, errlen)) return -1;
    x.s.hf_qk_rows = o.hf_qk_rows;
    if (pc_session_set_base_dtype(&x.s, o.base_dtype, err, errlen)) goto done;
    x.s.task_id = o.task_id; /* MPT: the graphs' task (checked against num_tasks when built) */
    x.s.training_run = true;
    if (pc_session_default_adapter(&x.s, err, errlen)) goto done;
    int room = x.s.model.info.context - pc_session_virtual_tokens(&x.s);
    if (o.seq > room) {
        pc_errf(err, errlen, "--seq %d exceeds the model's context of %d tokens%s", o.seq, room,
                room < x.s.model.info.context ? " (less the adapter's virtual tokens)" : "");
        goto done;
    }
    if (!(x.cx = pc_session_adapter(&x.s, PC_ADAPT_TRAIN, true, o.seed, err, errlen))) goto done;
    if (pc_train_data_open(&x.data, &x.s, &o, err, errlen)) goto done;
    const bool cls = pc_train_data_by_example(&x.data);
    o.seq = (int)x.data.S, o.choices = pc_train_tasks_choices(&x.data); /* graphs as long as the longest example */
    if (o.eval_batches < 0) o.eval_batches = cls ? 0 : 8;
    if (oin->epochs > 0) {
        int steps = pc_train_data_epoch_steps(&x.data, oin->epochs, o.grad_accum);
        if (o.resume && steps != o.steps) {
            pc_errf(err, errlen, "--resume %s: the checkpoint was made for %d steps, and --epochs %g is %d steps "
                    "of this data", o.resume, o.steps, oin->epochs, steps);
            goto done;
        }
        o.steps = steps;
    }
    res->steps = o.steps;

    if (o.resume) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", o.resume, OPTIMIZER_FILE);
        if (!(x.resume_opt = pc_st_open(path, err, errlen))) goto done;
    }
    if (o.distill_teachers) {
        if (o.entries || o.choices > 0) {
            pc_errf(err, errlen, "--distill-teachers: %s", o.entries ? "not in a compiled trainer" : "not on multiple-choice data");
            goto done;
        }
        if (!(x.distill = pc_distill_open(&x.s, &o, err, errlen))) goto done;
    }
    if (o.entries) pc_train_data_one_bucket(&x.data); /* an AOT trainer's graphs have one shape */
    x.exec = o.exec;
    if (x.exec.kind == PC_BACKEND_JIT) x.exec.arena = &x.arena;
    /* the longest bucket first: the store is made for its graphs, the shared arena sized once */
    if (use_variant(&x, &o, x.data.nbuckets - 1, err, errlen)) goto done;
    if (x.resume_opt && pc_method_state_load(x.cx, &x.store, x.resume_opt, err, errlen)) goto done;
    /* what one micro-batch holds: tokens of text, or examples */
    size_t BS = (size_t)o.batch * pc_train_data_per_row(&x.data);

    if (evaluate(&x, &o, &res->base_eval_loss, &res->base_eval_accuracy, err, errlen)) {
        run_failed(err, errlen, "held-out evaluation at step", start);
        goto done;
    }
    if (o.json) { /* the curve's start: the held-out numbers before training */
        char a[64], b[64];
        if (cls)
            printf("{\"step\":%d,\"eval_loss\":%s,\"eval_accuracy\":%s}\n", start,
                   jnum(a, sizeof a, res->base_eval_loss), jnum(b, sizeof b, res->base_eval_accuracy));
        else
            printf("{\"step\":%d,\"eval_loss\":%s}\n", start, jnum(a, sizeof a, res->base_eval_loss));
        fflush(stdout);
    }
    if (!o.quiet && !o.json) pc_train_data_describe(&x.data, &o, res->base_eval_loss, res->base_eval_accuracy);
    int cap = o.steps / (o.eval_every > 0 ? o.eval_every : o.steps) + 2;
    if (!(res->curve = calloc((size_t)cap, sizeof *res->curve))) { pc_errf(err, errlen, "out of memory"); goto done; }
    double t0 = now_s(), loss_acc = 0, last_eval = res->base_eval_loss, last_acc = res->base_eval_accuracy;
    int loss_n = 0, t_first = start + 1;
    for (int t = start + 1; t <= o.steps; t++) {
        x.hp = (pc_adamw_hp){.lr = (float)pc_lr_schedule(&o, t), .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                             .weight_decay = (float)o.weight_decay, .step = (float)t, .max_grad_norm = (float)o.clip};
        double loss;
        if (x.upd_g) {
            if (accumulated_step(&x, &o, t, &loss, err, errlen)) goto done;
        } else {
            int b = pc_train_data_sample(&x.data, o.seed, t, 0, o.grad_accum);
            if (use_variant(&x, &o, b, err, errlen)) { run_failed(err, errlen, "step", t); goto done; }
            pc_val loss_v = x.var[b].loss_v;
            x.seed_in = step_seed(o.seed, t, 0);
            if (x.distill && pc_distill_run(x.distill, x.g, err, errlen)) { run_failed(err, errlen, "step", t); goto done; }
            if (x.step_en ? x.ep->call(x.step_en, x.step_args.args, err, errlen) : pc_exec_run(x.r, err, errlen)) {
                run_failed(err, errlen, "step", t);
                goto done;
            }
            loss = *(const float *)(x.step_en ? pc_entry_args_output(&x.step_args, loss_v) : pc_exec_data(x.r, loss_v));
            if (isfinite(loss) && pc_exec_apply_updates(x.r)) { pc_errf(err, errlen, "step %d: applying updates failed", t); goto done; }
        }
        if (isfinite(loss) && step_hook(&x, &o, t, err, errlen)) goto done;
        if (!isfinite(loss)) { pc_errf(err, errlen, "step %d: the loss is %g (lower --lr?)", t, loss); goto done; }
        loss_acc += loss;
        loss_n++;
        double el = now_s() - t0, tps = (double)BS * o.grad_accum * (t - t_first + 1) / (el > 0 ? el : 1e-9);
        double eta = el / (t - t_first + 1) * (o.steps - t);
        bool do_eval = (o.eval_every > 0 && t % o.eval_every == 0) || t == o.steps;
        if (do_eval) {
            if (evaluate(&x, &o, &last_eval, &last_acc, err, errlen)) { run_failed(err, errlen, "held-out evaluation at step", t); goto done; }
            pc_train_point p = {t, loss_acc / loss_n, last_eval, x.hp.lr, tps, last_acc};
            if (res->ncurve < cap) res->curve[res->ncurve++] = p;
            report(&o, &p, eta);
            loss_acc = 0, loss_n = 0;
        }
        progress_bar(&o, t, loss, last_eval, tps, cls, eta);
        if (o.save_every > 0 && t % o.save_every == 0 && o.out) {
            snprintf(msg, sizeof msg, "%s/checkpoint-%d", o.out, t);
            if (save_checkpoint(&x, msg, t, &o, true, err, errlen)) goto done;
        }
    }
    res->final_eval_loss = last_eval;
    res->final_eval_accuracy = last_acc;
    if (o.out && save_checkpoint(&x, o.out, o.steps, &o, false, err, errlen)) goto done;
    rc = 0;
done:
    run_free(&x);
    if (rc) pc_train_result_free(res);
    return rc;
}

void pc_train_result_free(pc_train_result *r) {
    free(r->curve);
    r->curve = NULL;
    r->ncurve = 0;
}
