/* `peftc eval` on task data (see evaluate_tasks.h). */
#include "drivers/evaluate_tasks.h"
#include "drivers/classify.h"
#include "drivers/fold_weights.h"
#include "drivers/merge.h"
#include "drivers/store.h"
#include "drivers/task_batch.h"
#include "ir/ir.h"
#include "runtime/fileio.h"

#include <stdio.h>
#include <stdlib.h>

int pc_eval_tasks(pc_session *s, const char *data_path, const pc_eval_opts *o, pc_task_eval_result *res, char *err,
                  size_t errlen) {
    *res = (pc_task_eval_result){0};
    if (errlen) err[0] = 0;
    int room = s->model.info.context - (o->merge ? 0 : pc_session_virtual_tokens(s));
    if (o->seq < 0 || o->seq > room)
        return pc_errf(err, errlen, "--seq must be in [1, %d] (the model's context%s)", room,
                       room < s->model.info.context ? " less the adapter's virtual tokens" : "");
    if (o->batch <= 0) return pc_errf(err, errlen, "--batch must be positive");
    if (pc_session_need_tokenizer(s, "evaluating task data", err, errlen)) return -1;
    pc_task_data d = {0};
    pc_td_item *items = NULL;
    size_t nitems = 0;
    pc_graph *g = NULL;
    pc_exec *r = NULL;
    pc_store store = {0};
    pc_folded folded = {0};
    pc_task_batch b = {0};
    int rc = -1;
    size_t cap = (size_t)(o->seq > 0 ? o->seq : room);
    if (pc_task_data_load(&d, data_path, s->tok, err, errlen) ||
        pc_td_items(&d, NULL, d.n, cap, &items, &nitems, err, errlen))
        goto done;
    int longest = 0;
    for (size_t i = 0; i < nitems; i++) longest = items[i].len > longest ? items[i].len : longest;
    const bool mc = d.shape == PC_TD_CHOICE;
    size_t S = (size_t)pc_cls_graph_seq(longest - 1, (int)cap), E = (size_t)o->batch, C = mc ? (size_t)d.max_choices : 1;
    if (E > nitems) E = nitems;
    if (o->merge && s->adapter.cfg && pc_session_merge(s, NULL, err, errlen)) goto done;
    pc_build_req req = {.task = PC_TASK_LM, .batch = (int64_t)(E * C), .seq = (int64_t)S, .mode = PC_ADAPT_EVAL,
                        .choices = mc ? (int64_t)C : 0, .objective = PC_OBJECTIVE_TFEW, .output_nll = mc};
    if (!(g = pc_session_inference_graph(s, &req, &store, &folded, err, errlen))) goto done;
    if (pc_task_batch_init(&b, E, C, S, d.max_row, o->task_id, err, errlen)) goto done;
    if (!(r = pc_exec_new(g, &o->exec, err, errlen))) goto done;
    const char *names[4];
    void *ptrs[4];
    int nin = pc_task_batch_inputs(&b, &d, names, ptrs);
    if (pc_session_bind_inference(s, g, &store, &folded, r, err, errlen)) goto done;
    for (int i = 0; i < nin; i++) {
        pc_val v = pc_lookup(g, names[i]);
        if (v != PC_NONE && pc_exec_bind(r, v, ptrs[i])) { pc_errf(err, errlen, "binding %%%s failed", names[i]); goto done; }
    }
    pc_val nll_v = mc ? pc_lookup(g, "nll") : PC_NONE;
    pc_mc_tally t = {0};
    double sum = 0;
    for (size_t first = 0; first < nitems; first += E) {
        size_t n = nitems - first < E ? nitems - first : E;
        size_t targets = pc_task_batch_fill(&b, &d, items + first, n);
        if (pc_exec_run(r, err, errlen)) { /* which batch: a numerical fault names it */
            char msg[4096];
            snprintf(msg, sizeof msg, "%s", err);
            pc_errf(err, errlen, "%s: batch %zu (from line %d): %s", data_path, first / E, d.ex[items[first].ex].line, msg);
            goto done;
        }
        if (mc) {
            pc_mc_tally_add(&t, &b, &d, items + first, n, pc_exec_data(r, nll_v));
        } else {
            sum += (double)*(const float *)pc_exec_data(r, g->outputs[0]) * (double)targets;
            res->tokens += targets;
            res->rows += n;
        }
    }
    res->choice = mc;
    if (mc) {
        res->n_examples = t.n;
        res->accuracy = (double)t.correct / (double)t.n;
        res->loss_lm = t.sum_lm / (double)t.n, res->loss_ul = t.sum_ul / (double)t.n, res->loss_ln = t.sum_ln / (double)t.n;
    } else {
        res->loss = res->tokens ? sum / (double)res->tokens : 0;
    }
    rc = 0;
done:
    pc_exec_free(r);
    pc_store_free(&store);
    pc_folded_free(&folded);
    pc_graph_free(g);
    pc_task_batch_free(&b);
    free(items);
    pc_task_data_free(&d);
    return rc;
}
