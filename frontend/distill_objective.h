/* MPT's prompt distillation loss (Wang et al. 2023, "Multitask Prompt Tuning Enables
 * Parameter-Efficient Transfer Learning", §3.1): the student (the shared prompt times each
 * task's rank-r factor) learns from per-task teacher prompts trained by single-task prompt
 * tuning, with
 *     L_total = L_task + λ·(L_logits + L_hidden),
 *     L_logits = KL(p_teacher ‖ p_student), p = softmax(z / T) over the vocabulary,
 *     L_hidden = the squared distance of the student's and the teacher's hidden states.
 * Here, over the N target positions of the batch (targets != ignore; M = those positions):
 *     L_logits = (1/N) Σ_{(r,t)∈M} Σ_v p_t(v) (log p_t(v) − log p_s(v)),
 *     L_hidden = (1/(N·D)) Σ_{(r,t)∈M} ‖h_s[r,t] − h_t[r,t]‖²,
 * h the final hidden state after the last norm (%final_hidden) at the real positions (the
 * last S of its rows: a prompt method's virtual positions come first). The paper writes sums
 * over examples; the means keep λ independent of batch, length and width. No T² factor (the
 * paper's KL has none). Inputs: %teacher_logits f32[B,S,V] (the teacher's logits, already at
 * the same positions) and %teacher_hidden f32[B,P+S,D] (its %final_hidden, P = virtual
 * tokens); both are constants to autograd (inputs). Plain graph ops, so autograd
 * differentiates the student's side. */
#ifndef PEFTC_FRONTEND_DISTILL_OBJECTIVE_H
#define PEFTC_FRONTEND_DISTILL_OBJECTIVE_H

#include "frontend/family.h"

/* λ·(L_logits + L_hidden) as above (named %loss_kl, %loss_hidden, %loss_distill); PC_NONE with
 * the graph's error set when the graph has no %final_hidden or the shapes disagree */
pc_val pc_distill_term(pc_graph *g, const pc_build_req *req, pc_val logits, pc_val targets, int32_t ignore);

/* a family names its final hidden state %final_hidden with this (unless something named it) */
void pc_name_final_hidden(pc_graph *g, pc_val x);

#endif
