/* An LM graph's loss: plain cross-entropy, or the multiple-choice objectives (see lm_objective.h). */
#include "frontend/lm_objective.h"
#include "frontend/distill_objective.h"
#include "ir/ir.h"

#include <stdlib.h>

static pc_val named(pc_graph *g, pc_val v, const char *name) {
    if (!pc_graph_error(g)) pc_set_name(g, v, name);
    return v;
}

static pc_val sum_axis(pc_graph *g, pc_val x, int64_t axis) {
    int64_t ax[1] = {axis};
    return pc_sum(g, x, 1, ax, 0);
}

/* sum(x * w) / max(sum(count * w), 1) over rows: the token mean of the rows w selects */
static pc_val masked_mean(pc_graph *g, pc_val per_row_sum, pc_val count, pc_val w) {
    pc_val num = pc_sum(g, pc_mul(g, per_row_sum, w), 0, NULL, 0);
    pc_val den = pc_maximum(g, pc_sum(g, pc_mul(g, count, w), 0, NULL, 0), pc_scalar(g, 1.0f));
    return pc_div(g, num, den);
}

static pc_val choice_objective(pc_graph *g, const pc_build_req *req, pc_val logits, pc_val targets, int32_t ignore) {
    const int64_t R = req->batch, C = req->choices, E = R / C;
    if (C <= 0 || R % C) return pc_fail(g, PC_HERE, "multiple-choice graph: batch %lld is not a multiple of %lld choices",
                                        (long long)R, (long long)C);
    pc_val labels = pc_input(g, "labels", PC_I32, PC_SHAPE(E));
    pc_val nll = named(g, pc_cross_entropy(g, logits, targets, ignore, 2), "nll"); /* [R,S] */
    pc_val ign = pc_const(g, PC_I32, PC_SHAPE(1), &ignore);
    pc_val tok = pc_sub(g, pc_scalar(g, 1.0f), pc_eq(g, targets, ign)); /* 1 at target positions */
    pc_val len = sum_axis(g, tok, 1), row_nll = sum_axis(g, nll, 1);   /* [R] */
    int32_t *iota = malloc((size_t)C * sizeof *iota);
    if (!iota) return pc_fail(g, PC_HERE, "out of memory");
    for (int64_t c = 0; c < C; c++) iota[c] = (int32_t)c;
    pc_val cidx = pc_const(g, PC_I32, PC_SHAPE(1, C), iota);
    free(iota);
    /* correct(r): the row of the example's label; a padding example's label matches none */
    pc_val correct = pc_reshape(g, pc_eq(g, pc_reshape(g, labels, PC_SHAPE(E, 1)), cidx), PC_SHAPE(R));
    pc_val valid = pc_gt(g, len, pc_scalar(g, 0.0f));
    pc_val wrong = pc_sub(g, valid, pc_mul(g, valid, correct));
    pc_val loss_lm = named(g, masked_mean(g, row_nll, len, correct), "loss_lm");
    if (req->objective == PC_OBJECTIVE_LM) return loss_lm;
    /* length-normalized scores, padding choices out of the softmax */
    pc_val mean_ll = pc_div(g, pc_neg(g, row_nll), pc_maximum(g, len, pc_scalar(g, 1.0f)));
    pc_val scores = pc_where(g, valid, mean_ll, pc_scalar(g, -1e9f));
    scores = named(g, pc_reshape(g, scores, PC_SHAPE(E, C)), "choice_scores");
    pc_val loss_ln = named(g, pc_cross_entropy(g, scores, labels, ignore, 0), "loss_ln");
    /* -log(1 - p + 0.01) per position, p = exp(-nll); summed over each row's target positions */
    pc_val ul = pc_neg(g, pc_log(g, pc_scale(g, pc_exp(g, pc_neg(g, nll)), -1.0, 1.01)));
    pc_val row_ul = sum_axis(g, pc_mul(g, ul, tok), 1);
    pc_val loss_ul = named(g, masked_mean(g, row_ul, len, wrong), "loss_ul");
    return pc_add(g, pc_add(g, loss_lm, loss_ul), loss_ln);
}

pc_val pc_lm_objective(pc_graph *g, const pc_build_req *req, pc_val logits, pc_val targets, int32_t ignore) {
    if (req && req->choices > 0) return choice_objective(g, req, logits, targets, ignore);
    if (req && req->output_nll) named(g, pc_cross_entropy(g, logits, targets, ignore, 2), "nll");
    pc_val ce = pc_cross_entropy(g, logits, targets, ignore, 0);
    if (!req || req->distill_weight <= 0) return ce;
    /* MPT's prompt distillation: the task's loss (%loss_task) plus the teachers' term */
    pc_val term = pc_distill_term(g, req, logits, targets, ignore);
    return term == PC_NONE ? PC_NONE : pc_add(g, named(g, ce, "loss_task"), term);
}

void pc_lm_objective_outputs(pc_graph *g, const pc_build_req *req, pc_val logits, pc_val loss, int output_logits) {
    if (pc_graph_error(g)) return;
    pc_set_name(g, logits, "logits");
    pc_set_name(g, loss, "loss");
    pc_mark_loss(g, loss);
    if (output_logits) pc_mark_output(g, logits);
    if (req && req->output_nll) pc_mark_output(g, pc_lookup(g, "nll"));
    if (req && req->output_hidden) {
        pc_val h = pc_lookup(g, "final_hidden");
        if (h == PC_NONE) pc_fail(g, PC_HERE, "the model's graph names no %%final_hidden");
        else pc_mark_output(g, h);
    }
}
