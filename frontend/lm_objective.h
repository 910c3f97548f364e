/* The loss an LM graph ends in (every causal-LM family builds it here from its logits).
 *
 * Plain rows (req NULL or req->choices == 0): the mean cross-entropy over %targets != ignore.
 *
 * Multiple-choice rows (req->choices = C > 0; drivers/task_batch.h lays them out): the batch is
 * E = batch / C examples; row e*C + c is example e's context followed by its choice c, right-
 * padded; %targets hold the choice's tokens at the positions that predict them and `ignore`
 * everywhere else (context, padding, and every position of a padding row: an example with fewer
 * than C choices, or a padding example). Input %labels i32[E]: the correct choice (ignore for a
 * padding example). With nll[r,t] the per-position cross-entropy (-log p of the target token),
 * T(r) the target positions of row r, correct(r) / wrong(r) the correct / the other real rows:
 *   %loss_lm = sum_{correct r, t in T(r)} nll / sum_{correct r} |T(r)|
 *       the cross-entropy of the correct choices' tokens, a mean over tokens (T-Few's lm_loss);
 *   %loss_ul = sum_{wrong r, t in T(r)} -log(1 - exp(-nll) + 0.01) / sum_{wrong r} |T(r)|
 *       the unlikelihood of the wrong choices' tokens. T-Few's code (EncoderDecoder.training_step,
 *       r-three/t-few) adds 1e-2 inside the log as here, and divides by the same count; its sum
 *       also runs over the ignored slots (padding and the correct choice), each adding the
 *       constant -log(1.01) with no gradient, a value that depends on its padding layout: that
 *       constant is left out, the gradient is the same;
 *   %loss_ln = mean over labelled examples of the cross-entropy over the choices of the scores
 *       %choice_scores[e,c] = -(sum_{t in T(r)} nll) / |T(r)| (the mean log-likelihood per token;
 *       a padding choice scores -1e9): T-Few's mc_loss with length_norm = 1.
 * Plain rows with req->distill_weight > 0 add MPT's prompt distillation term
 * (frontend/distill_objective.h) to the cross-entropy.
 * The loss is loss_lm (PC_OBJECTIVE_LM) or loss_lm + loss_ul + loss_ln (PC_OBJECTIVE_TFEW); all
 * are plain graph ops, which autograd differentiates. Rank classification picks the choice of
 * the highest score. */
#ifndef PEFTC_FRONTEND_LM_OBJECTIVE_H
#define PEFTC_FRONTEND_LM_OBJECTIVE_H

#include "frontend/family.h"

/* the loss value (named as above; %nll too); PC_NONE with the graph's error set on failure */
pc_val pc_lm_objective(pc_graph *g, const pc_build_req *req, pc_val logits, pc_val targets, int32_t ignore);

/* names %logits and %loss and marks the outputs: %loss (PC_LOSS), %logits when output_logits,
 * %nll when req->output_nll, %final_hidden when req->output_hidden */
void pc_lm_objective_outputs(pc_graph *g, const pc_build_req *req, pc_val logits, pc_val loss, int output_logits);

#endif
