/* Kronecker products without forming them, shared by LoKr (passes/adapters/lokr.c), KronA^B
 * (passes/adapters/kronab.c) and the fuse-kron pass:
 *
 *   int64_t a1, b1, a2, b2;
 *   pc_kron_factorization(dout, -1, &a1, &b1);    // 64 -> (8, 8); A is [a1, a2], B [b1, b2]
 *   pc_kron_factorization(din, -1, &a2, &b2);
 *   pc_val y = pc_kron_linear_at(g, loc, x, A, B); // [..., a2·b2] -> [..., a1·b1]
 */
#ifndef PEFTC_PASSES_KRON_H
#define PEFTC_PASSES_KRON_H

#include "peftc/peftc.h"

#include <stdint.h>

/* PEFT's (LyCORIS's) factorization(dimension, factor), exactly as PEFT 0.21 runs it:
 * dim = (*m) * (*n); (factor, dim/factor) when factor > 0 divides dim (unordered); otherwise the
 * divisor pair found by searching m upward from 1, stopping at the first m that makes the sum
 * grow or exceeds factor (factor -1: no cap), ordered m <= n. Its answers for factors that do not
 * divide dim (3072, 5 -> (4, 768)) and for factor < -1 (-> (1, dim)) included. dim >= 1. */
void pc_kron_factorization(int64_t dim, int64_t factor, int64_t *m, int64_t *n);

/* y = x (A ⊗ B)ᵀ for x [..., a2·b2], A [a1, a2], B [b1, b2]: y [..., a1·b1] with
 *   y[n, i·b1 + j] = Σ_k Σ_l A[i, k] B[j, l] x[n, k·b2 + l],
 * as two matmuls on x viewed as [N, a2, b2]: T = x Bᵀ over l ([N·a2, b2] @ Bᵀ, one GEMM), then
 * Y[n] = A T[n] (A broadcast over N), viewed back; or, when its intermediate is smaller
 * (a1·b2 < a2·b1: that is what a training step holds for the backward), S[n] = A X[n] first and
 * Y = S Bᵀ as one [N·a1, b2] GEMM. A ⊗ B ([a1·b1, a2·b2]) is never formed, nor,
 * through autograd, its gradient. Shape mismatches are the graph's sticky error. */
pc_val pc_kron_linear_at(pc_graph *g, pc_loc at, pc_val x, pc_val a, pc_val b);

/* The same product when B is low rank, B = Ba · Bb with Ba [b1, r], Bb [r, b2] (LoKr's w2 =
 * lokr_w2_a · lokr_w2_b): x [..., a2·b2], A [a1, a2] -> y [..., a1·b1]. The cheapest of three
 * orders in multiply-adds per row of x (N rows):
 *   B first   (form B, T = X Bᵀ, Y[n] = A T[n])        a2·b1·(b2 + a1)
 *   A first   (form B, S[n] = A X[n], Y = S Bᵀ)        a1·b2·(a2 + b1)
 *   rank r    U = X[N·a2, b2] @ Bbᵀ -> [N·a2, r];
 *             V[n] = A U[n] (A broadcast) -> [N, a1, r];
 *             Y = V[N·a1, r] @ Baᵀ -> [N·a1, b1]      r·(a2·b2 + a1·a2 + a1·b1)
 * The rank-r order is taken when it is strictly cheaper than both full-B orders; otherwise
 * pc_kron_linear_at picks between the two others by its own rule (the smaller intermediate) on
 * b, the caller's Ba · Bb when it has one (fuse-kron: the graph's own w2, so a graph that keeps
 * the full orders comes out as before), or, for b = PC_NONE, Ba · Bb formed here (b1·r·b2
 * multiply-adds per call, not counted per row). Through autograd the rank-r
 * order keeps only U and V (N·r·(a2 + a1) floats) for the backward, as LoRA keeps x Aᵀ, instead
 * of a full-width N·a2·b1 or N·a1·b2. Shape mismatches are the graph's sticky error. */
pc_val pc_kron_linear_lowrank_at(pc_graph *g, pc_loc at, pc_val x, pc_val a, pc_val b, pc_val ba, pc_val bb);

#endif
