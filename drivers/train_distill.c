/* MPT's prompt distillation in the trainer (see train_distill.h). */
#include "drivers/train_distill.h"
#include "drivers/store.h"
#include "ir/ir.h"
#include "runtime/adapter_io.h"
#include "runtime/fileio.h"
#include "runtime/task_data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FLAG "--distill-teachers"

/* the teachers' graph for one batch shape, and its outputs as the student reads them */
typedef struct {
    int64_t S;
    pc_graph *g;
    pc_exec *r;
    pc_store store;
    pc_val logits_v, hidden_v;
    float *logits, *hidden; /* the student's %teacher_logits, %teacher_hidden */
    size_t nlogits, nhidden;
} tgraph;

struct pc_distill {
    pc_session ts;           /* the student's session with the stacked teachers as its adapter */
    pc_adapter_config *tcfg; /* owned (ts.adapter.cfg borrows it) */
    int ntasks;              /* teacher slots: the largest teacher id + 1 */
    int64_t P, D;
    float *prompts;          /* [ntasks, P, D]; a task without a teacher stays 0 (never used) */
    bool *has;               /* [ntasks] */
    uint64_t seed;
    pc_exec_opts exec;
    tgraph slot[PC_TRAIN_MAX_BUCKETS]; /* one per row length the student's steps use */
    int nslot;
};

void pc_distill_free(pc_distill *d) {
    if (!d) return;
    for (int i = 0; i < d->nslot; i++) {
        tgraph *t = &d->slot[i];
        pc_exec_free(t->r);
        pc_store_free(&t->store);
        pc_graph_free(t->g);
        free(t->logits);
        free(t->hidden);
    }
    pc_adapter_config_free(d->tcfg);
    free(d->prompts);
    free(d->has);
    free(d);
}

/* teacher t's prompt_embeddings [P, D] from its adapter directory into d->prompts */
static int load_teacher(pc_distill *d, int t, const char *dir, char *err, size_t errlen) {
    pc_adapter_files a = {0};
    char msg[2048];
    if (pc_adapter_load(dir, &a, msg, sizeof msg)) return pc_errf(err, errlen, FLAG " %d=%s: %s", t, dir, msg);
    int rc = -1;
    const pc_st_tensor *pe = a.weights ? pc_st_find(a.weights, "prompt_embeddings") : NULL;
    if (a.cfg->peft_type != PC_PEFT_PROMPT_TUNING)
        pc_errf(err, errlen, FLAG " %d=%s: peft_type is %s; a teacher is a prompt-tuning adapter (PROMPT_TUNING) trained "
                "on task %d alone", t, dir, pc_peft_type_name(a.cfg->peft_type), t);
    else if (!a.weights)
        pc_errf(err, errlen, FLAG " %d=%s: no %s (a teacher is a trained adapter directory)", t, dir, PC_ADAPTER_WEIGHTS_NAME);
    else if (!pe)
        pc_errf(err, errlen, FLAG " %d=%s: %s has no tensor \"prompt_embeddings\"", t, dir, PC_ADAPTER_WEIGHTS_NAME);
    else if (pe->shape.rank != 2 || pe->shape.dim[1] != d->D)
        pc_errf(err, errlen, FLAG " %d=%s: prompt_embeddings is %lld wide, but the model's hidden size is %lld", t, dir,
                pe->shape.rank == 2 ? (long long)pe->shape.dim[1] : -1LL, (long long)d->D);
    else if (pe->shape.dim[0] != d->P)
        pc_errf(err, errlen, FLAG " %d=%s: the teacher has %lld virtual tokens, the student %lld (distillation compares "
                "their hidden states position by position: train the teachers with the student's num_virtual_tokens)",
                t, dir, (long long)pe->shape.dim[0], (long long)d->P);
    else if (pc_st_to_f32(a.weights, pe, d->prompts + (size_t)t * (size_t)(d->P * d->D), msg, sizeof msg))
        pc_errf(err, errlen, FLAG " %d=%s: %s", t, dir, msg);
    else
        rc = 0;
    pc_adapter_close(&a);
    return rc;
}

/* "ID=DIR,ID=DIR,..." into ids/dirs (dirs point into buf, which is modified); count or -1 */
static int parse_spec(char *buf, int *ids, char **dirs, int cap, char *err, size_t errlen) {
    int n = 0;
    for (char *save = NULL, *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '='), *end = NULL;
        if (!eq || eq == item || !eq[1])
            return pc_errf(err, errlen, FLAG ": '%s' is not TASK=DIR (e.g. " FLAG " 0=out/pt0,1=out/pt1)", item);
        *eq = 0;
        errno = 0;
        long t = strtol(item, &end, 10);
        if (errno || *end || t < 0 || t > 65535) return pc_errf(err, errlen, FLAG ": '%s' is not a task id (0..65535)", item);
        for (int i = 0; i < n; i++)
            if (ids[i] == t) return pc_errf(err, errlen, FLAG ": task %ld is given two teachers", t);
        if (n == cap) return pc_errf(err, errlen, FLAG ": more than %d teachers", cap);
        ids[n] = (int)t, dirs[n++] = eq + 1;
    }
    return n ? n : pc_errf(err, errlen, FLAG ": no teachers given");
}

/* every task id the data's rows carry has a teacher */
static int check_data_tasks(const pc_distill *d, const pc_session *s, const pc_train_opts *o, char *err, size_t errlen) {
    bool jsonl = false;
    if (o->data && pc_task_data_detect(o->data, &jsonl, err, errlen)) return -1;
    if (!jsonl) {
        if (o->task_id < d->ntasks && d->has[o->task_id]) return 0;
        return pc_errf(err, errlen, FLAG ": the data's rows are task %d (--task-id), which has no teacher", o->task_id);
    }
    pc_task_data td = {0};
    if (pc_task_data_load(&td, o->data, s->tok, err, errlen)) return -1;
    int rc = 0;
    for (size_t i = 0; i < td.n && !rc; i++) {
        int t = td.ex[i].task >= 0 ? td.ex[i].task : o->task_id;
        if (t >= d->ntasks || !d->has[t])
            rc = pc_errf(err, errlen, "%s:%d: field \"task\": task %d has no teacher in " FLAG "%s", o->data, td.ex[i].line,
                         t, td.ex[i].task < 0 ? " (the line names no task: --task-id)" : "");
    }
    pc_task_data_free(&td);
    return rc;
}

pc_distill *pc_distill_open(const pc_session *student, const pc_train_opts *o, char *err, size_t errlen) {
    enum { CAP = 256 };
    int ids[CAP];
    char *dirs[CAP], *buf = strdup(o->distill_teachers ? o->distill_teachers : "");
    pc_distill *d = calloc(1, sizeof *d);
    if (!buf || !d) { free(buf); free(d); pc_errf(err, errlen, "out of memory"); return NULL; }
    int n = parse_spec(buf, ids, dirs, CAP, err, errlen);
    if (n < 0) goto fail;
    d->P = pc_session_virtual_tokens(student), d->D = student->model.info.dim;
    if (d->P <= 0 || pc_session_prefix_positions(student) > 0) {
        pc_errf(err, errlen, FLAG ": the adapter being trained has no virtual tokens; prompt distillation trains a "
                "prompt (multitask prompt tuning) from prompt-tuning teachers");
        goto fail;
    }
    if (!(o->distill_weight > 0) || !(o->distill_temperature > 0)) {
        pc_errf(err, errlen, "--distill-weight and --distill-temperature must be positive");
        goto fail;
    }
    for (int i = 0; i < n; i++) d->ntasks = ids[i] + 1 > d->ntasks ? ids[i] + 1 : d->ntasks;
    if (!(d->prompts = calloc((size_t)d->ntasks * (size_t)(d->P * d->D), sizeof *d->prompts)) ||
        !(d->has = calloc((size_t)d->ntasks, sizeof *d->has))) {
        pc_errf(err, errlen, "out of memory");
        goto fail;
    }
    for (int i = 0; i < n; i++) {
        if (load_teacher(d, ids[i], dirs[i], err, errlen)) goto fail;
        d->has[ids[i]] = true;
    }
    if (check_data_tasks(d, student, o, err, errlen)) goto fail;
    /* the stacked teachers as a frozen multitask prompt: prompt_t = 1 ⊙ (I @ teacher_t) */
    if (!(d->tcfg = pc_adapter_config_new(PC_PEFT_MULTITASK_PROMPT_TUNING))) { pc_errf(err, errlen, "out of memory"); goto fail; }
    d->tcfg->task_type = PC_TASK_CAUSAL_LM;
    d->tcfg->prompt.num_virtual_tokens = d->P, d->tcfg->prompt.num_tasks = d->ntasks, d->tcfg->prompt.num_ranks = d->P;
    d->tcfg->prompt.prompt_tuning_init = PC_PROMPT_INIT_RANDOM;
    d->ts = *student; /* borrows the model, tokenizer and registry; never closed */
    d->ts.adapter = (pc_adapter_files){.cfg = d->tcfg};
    d->ts.adapter_source = FLAG;
    d->ts.method = pc_registry_find(student->reg, pc_peft_type_name(PC_PEFT_MULTITASK_PROMPT_TUNING));
    d->ts.training_run = false, d->ts.merged = false, d->ts.dump_after = NULL;
    if (!d->ts.method) { pc_errf(err, errlen, FLAG ": no multitask prompt tuning method"); goto fail; }
    d->seed = o->seed;
    d->exec = o->exec; /* its own arena: the teacher's outputs are copied out after each run */
    d->exec.arena = NULL;
    free(buf);
    return d;
fail:
    free(buf);
    pc_distill_free(d);
    return NULL;
}

/* the teacher store's tensors: shared prompt 1, cols[t] = I, rows[t] = teacher t */
static int fill_teacher(pc_distill *d, pc_store *st, char *err, size_t errlen) {
    pc_shape sp, sc, sr;
    float *p = pc_store_tensor(st, "prompt_embeddings", &sp);
    float *c = pc_store_tensor(st, "prefix_task_cols", &sc);
    float *r = pc_store_tensor(st, "prefix_task_rows", &sr);
    if (!p || !c || !r) return pc_errf(err, errlen, FLAG ": the teacher graph lacks its prompt tensors");
    const int64_t P = d->P, D = d->D, N = d->ntasks;
    for (int64_t i = 0; i < P * D; i++) p[i] = 1.0f;
    memset(c, 0, (size_t)(N * P * P) * sizeof *c);
    for (int64_t t = 0; t < N; t++)
        for (int64_t i = 0; i < P; i++) c[(t * P + i) * P + i] = 1.0f;
    memcpy(r, d->prompts, (size_t)(N * P * D) * sizeof *r);
    return 0;
}

/* the slot of batch length S, NULL when none was built */
static tgraph *slot_of(pc_distill *d, int64_t S) {
    for (int i = 0; i < d->nslot; i++)
        if (d->slot[i].S == S) return &d->slot[i];
    return NULL;
}

static int64_t rows_len(const pc_graph *g) {
    pc_val tok = pc_lookup(g, "tokens");
    return tok == PC_NONE ? -1 : pc_val_shape(g, tok).dim[1];
}

int pc_distill_bind(pc_distill *d, pc_exec *r, const pc_graph *g, const char *const *names, void *const *ptrs, int nin,
                    char *err, size_t errlen) {
    pc_val sl = pc_lookup(g, "teacher_logits"), sh = pc_lookup(g, "teacher_hidden"), tok = pc_lookup(g, "tokens");
    if (sl == PC_NONE || sh == PC_NONE || tok == PC_NONE)
        return pc_errf(err, errlen, FLAG ": the training graph has no %%teacher_logits / %%teacher_hidden inputs");
    pc_shape ts = pc_val_shape(g, tok);
    tgraph *t = slot_of(d, ts.dim[1]);
    if (!t) {
        if (d->nslot == PC_TRAIN_MAX_BUCKETS) return pc_errf(err, errlen, FLAG ": too many batch shapes");
        t = &d->slot[d->nslot++];
        t->S = ts.dim[1];
        pc_build_req req = {.task = PC_TASK_LM, .batch = ts.dim[0], .seq = ts.dim[1], .mode = PC_ADAPT_EVAL,
                            .output_logits = true, .output_hidden = true};
        if (!(t->g = pc_session_build(&d->ts, &req, true, err, errlen))) return -1;
        if (pc_session_store(&d->ts, t->g, &t->store, NULL, d->seed, err, errlen) || fill_teacher(d, &t->store, err, errlen))
            return -1;
        if (!(t->r = pc_exec_new(t->g, &d->exec, err, errlen))) return -1;
        if (pc_session_bind_base(&d->ts, t->r, t->g, false, err, errlen)) return -1;
        if (pc_store_bind(&t->store, t->r)) return pc_errf(err, errlen, FLAG ": binding the teacher graph failed");
        for (int i = 0; i < nin; i++) {
            pc_val v = pc_lookup(t->g, names[i]);
            if (v != PC_NONE && pc_exec_bind(t->r, v, ptrs[i]))
                return pc_errf(err, errlen, FLAG ": binding the teacher's %%%s failed", names[i]);
        }
        t->logits_v = pc_lookup(t->g, "logits"), t->hidden_v = pc_lookup(t->g, "final_hidden");
        if (t->logits_v == PC_NONE || t->hidden_v == PC_NONE) return pc_errf(err, errlen, FLAG ": the teacher graph has no outputs");
        t->nlogits = (size_t)pc_shape_numel(pc_val_shape(t->g, t->logits_v));
        t->nhidden = (size_t)pc_shape_numel(pc_val_shape(t->g, t->hidden_v));
        if (!(t->logits = calloc(t->nlogits, sizeof *t->logits)) || !(t->hidden = calloc(t->nhidden, sizeof *t->hidden)))
            return pc_errf(err, errlen, "out of memory");
    }
    if (!pc_shape_eq(pc_val_shape(g, sl), pc_val_shape(t->g, t->logits_v)) ||
        !pc_shape_eq(pc_val_shape(g, sh), pc_val_shape(t->g, t->hidden_v)))
        return pc_errf(err, errlen, FLAG ": the teacher's logits or hidden states differ in shape from the student's");
    if (pc_exec_bind(r, sl, t->logits) || pc_exec_bind(r, sh, t->hidden))
        return pc_errf(err, errlen, FLAG ": binding %%teacher_logits failed");
    return 0;
}

int pc_distill_run(pc_distill *d, const pc_graph *g, char *err, size_t errlen) {
    tgraph *t = slot_of(d, rows_len(g));
    if (!t) return pc_errf(err, errlen, FLAG ": no teacher graph for this batch");
    char msg[2048];
    if (pc_exec_run(t->r, msg, sizeof msg)) return pc_errf(err, errlen, "the teachers' forward: %s", msg);
    memcpy(t->logits, pc_exec_data(t->r, t->logits_v), t->nlogits * sizeof *t->logits);
    memcpy(t->hidden, pc_exec_data(t->r, t->hidden_v), t->nhidden * sizeof *t->hidden);
    return 0;
}

int pc_distill_state_put(json_t *j, const pc_train_opts *o) {
    if (!o->distill_teachers) return 0;
    return json_object_set_new(j, "distill_teachers", json_string(o->distill_teachers)) ||
           json_object_set_new(j, "distill_weight", json_real(o->distill_weight)) ||
           json_object_set_new(j, "distill_temperature", json_real(o->distill_temperature)) ? -1 : 0;
}

int pc_distill_state_check(const json_t *j, const pc_train_opts *o, const char *path, char *err, size_t errlen) {
    json_t *t = json_object_get(j, "distill_teachers");
    const char *ck = json_is_string(t) ? json_string_value(t) : NULL;
    if ((ck == NULL) != (o->distill_teachers == NULL) || (ck && strcmp(ck, o->distill_teachers)))
        return pc_errf(err, errlen, "%s: the checkpoint was made with " FLAG " %s, not %s", path, ck ? ck : "(none)",
                       o->distill_teachers ? o->distill_teachers : "(none)");
    if (!ck) return 0;
    double w = json_number_value(json_object_get(j, "distill_weight"));
    double T = json_number_value(json_object_get(j, "distill_temperature"));
    if (w != o->distill_weight || T != o->distill_temperature)
        return pc_errf(err, errlen, "%s: the checkpoint was made with --distill-weight %g --distill-temperature %g, not %g, %g",
                       path, w, T, o->distill_weight, o->distill_temperature);
    return 0;
}
