/* The evaluation protocol of `peftc eval`. */
#include "drivers/evaluate.h"
#include "drivers/fold_weights.h"
#include "drivers/merge.h"
#include "drivers/store.h"
#include "ir/ir.h"
#include "runtime/data.h"
#include "runtime/fileio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int pc_eval_text(pc_session *s, const char *data_path, int seq, int batch, bool merge,
                 const pc_exec_opts *o_exec, pc_eval_result *res, char *err, size_t errlen) {
    *res = (pc_eval_result){0};
    if (errlen) err[0] = 0;
    int room = s->model.info.context - (merge ? 0 : pc_session_virtual_tokens(s));
    if (seq <= 0 || seq > room)
        return pc_errf(err, errlen, "--seq must be in [1, %d] (the model's context%s)", room,
                       room < s->model.info.context ? " less the adapter's virtual tokens" : "");
    if (batch <= 0) return pc_errf(err, errlen, "--batch must be positive");
    pc_token_seq data = {0};
    pc_graph *g = NULL;
    pc_exec *r = NULL;
    pc_store store = {0};
    pc_folded folded = {0};
    int32_t *tokens = NULL, *targets = NULL;
    int32_t *task_rows = NULL; /* MPT: every window's task is --task-id (s->task_id) */
    int rc = -1;
    if (pc_session_need_tokenizer(s, "evaluating on text", err, errlen) ||
        pc_data_load(&data, data_path, s->tok, err, errlen))
        goto done;
    pc_token_span span = {data.ids, data.n};
    size_t S = (size_t)seq, B = (size_t)batch, nw = pc_data_eval_windows(&span, S);
    if (nw == 0) { pc_errf(err, errlen, "%s: %zu tokens, fewer than one window of %zu", data_path, data.n, S + 1); goto done; }
    if (nw < B) B = nw;
    if (merge && s->adapter.cfg && pc_session_merge(s, NULL, err, errlen)) goto done;
    pc_build_req req = {.task = PC_TASK_LM, .batch = (int64_t)B, .seq = (int64_t)S, .mode = PC_ADAPT_EVAL};
    if (!(g = pc_session_inference_graph(s, &req, &store, &folded, err, errlen))) goto done;
    tokens = malloc(B * S * sizeof *tokens);
    targets = malloc(B * S * sizeof *targets);
    if (!tokens || !targets) {
        pc_errf(err, errlen, "out of memory allocating %zu bytes of token windows", 2 * B * S * sizeof *tokens);
        goto done;
    }
    if (!(r = pc_exec_new(g, o_exec, err, errlen))) goto done;
    if (pc_session_bind_inference(s, g, &store, &folded, r, err, errlen) ||
        pc_exec_bind(r, pc_lookup(g, "tokens"), tokens) || pc_exec_bind(r, pc_lookup(g, "targets"), targets)) {
        if (!err[0]) pc_errf(err, errlen, "binding failed");
        goto done;
    }
    if (pc_session_bind_task_ids(s, g, r, &task_rows, err, errlen)) goto done;
    double sum = 0;
    for (size_t first = 0; first < nw; first += B) {
        size_t real = pc_data_eval_batch(&span, S, first, B, -100, tokens, targets);
        if (pc_exec_run(r, err, errlen)) { /* which batch: a numerical fault names it */
            char msg[4096];
            snprintf(msg, sizeof msg, "%s", err);
            pc_errf(err, errlen, "batch %zu (windows %zu..%zu): %s", first / B, first, first + real - 1, msg);
            goto done;
        }
        sum += (double)*(const float *)pc_exec_data(r, g->outputs[0]) * (double)(real * S);
        res->windows += real;
    }
    res->tokens = res->windows * S;
    res->loss = sum / (double)res->tokens;
    res->ppl = exp(res->loss);
    rc = 0;
done:
    pc_exec_free(r);
    pc_store_free(&store);
    pc_folded_free(&folded);
    pc_graph_free(g);
    pc_data_free(&data);
    free(tokens);
    free(targets);
    free(task_rows);
    return rc;
}
