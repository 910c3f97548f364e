/* MPT's prompt distillation term (see distill_objective.h). */
#include "frontend/distill_objective.h"
#include "ir/ir.h"

static pc_val named(pc_graph *g, pc_val v, const char *name) {
    if (!pc_graph_error(g)) pc_set_name(g, v, name);
    return v;
}

void pc_name_final_hidden(pc_graph *g, pc_val x) {
    const char *n = pc_val_name(g, x);
    if (!n || pc_graph_error(g)) return;
    for (const char *c = n; *c; c++)
        if (*c < '0' || *c > '9') return; /* named by someone: keep it */
    pc_set_name(g, x, "final_hidden");
}

/* sum over every axis */
static pc_val total(pc_graph *g, pc_val x) { return pc_sum(g, x, 0, NULL, 0); }

pc_val pc_distill_term(pc_graph *g, const pc_build_req *req, pc_val logits, pc_val targets, int32_t ignore) {
    if (pc_graph_error(g)) return PC_NONE;
    pc_shape ls = pc_val_shape(g, logits); /* [B, S, V] */
    pc_val hs = pc_lookup(g, "final_hidden");
    if (hs == PC_NONE) return pc_fail(g, PC_HERE, "prompt distillation: the model's graph names no %%final_hidden");
    pc_shape h = pc_val_shape(g, hs); /* [B, P+S, D] */
    if (ls.rank != 3 || h.rank != 3 || h.dim[0] != ls.dim[0] || h.dim[1] < ls.dim[1])
        return pc_fail(g, PC_HERE, "prompt distillation: logits and hidden states of different rows");
    const int64_t B = ls.dim[0], S = ls.dim[1], D = h.dim[2];
    const double T = req->distill_temperature > 0 ? req->distill_temperature : 1.0;
    pc_val tl = pc_input(g, "teacher_logits", PC_F32, ls);
    pc_val th = pc_input(g, "teacher_hidden", PC_F32, h);
    /* 1 at target positions [B, S, 1], and their count N (at least 1) */
    pc_val ign = pc_const(g, PC_I32, PC_SHAPE(1), &ignore);
    pc_val m = pc_reshape(g, pc_sub(g, pc_scalar(g, 1.0f), pc_eq(g, targets, ign)), PC_SHAPE(B, S, 1));
    pc_val n = pc_maximum(g, total(g, m), pc_scalar(g, 1.0f));
    /* KL(p_t ‖ p_s) per position: Σ_v p_t (log p_t − log p_s), at temperature T */
    pc_val lt = pc_log_softmax(g, pc_scale(g, tl, 1.0 / T, 0.0), 2);
    pc_val lsm = pc_log_softmax(g, pc_scale(g, logits, 1.0 / T, 0.0), 2);
    pc_val kl = pc_mul(g, pc_exp(g, lt), pc_sub(g, lt, lsm)); /* [B, S, V] */
    pc_val loss_kl = named(g, pc_div(g, total(g, pc_mul(g, kl, m)), n), "loss_kl");
    /* the real positions' hidden states: the last S of each row */
    pc_val d = pc_sub(g, pc_slice(g, hs, 1, h.dim[1] - S, h.dim[1]), pc_slice(g, th, 1, h.dim[1] - S, h.dim[1]));
    pc_val sq = pc_mul(g, pc_square(g, d), m); /* [B, S, D] */
    pc_val loss_hidden = named(g, pc_div(g, total(g, sq), pc_scale(g, n, (double)D, 0.0)), "loss_hidden");
    pc_val term = pc_scale(g, pc_add(g, loss_kl, loss_hidden), req->distill_weight, 0.0);
    return named(g, term, "loss_distill");
}
