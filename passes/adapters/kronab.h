/* The two pieces of KronA^B (passes/adapters/kronab.c) that stand on their own: PEFT LoKr's
 * factorization rule and the Kronecker-factored linear x (A ⊗ B)ᵀ computed without forming
 * A ⊗ B.
 *
 *   int64_t a1, b1, a2, b2;
 *   pc_lokr_factorization(dout, -1, &a1, &b1);    // 64 -> (8, 8); A is [a1, a2], B [b1, b2]
 *   pc_lokr_factorization(din, -1, &a2, &b2);
 *   pc_val y = pc_kron_linear_at(g, loc, x, A, B); // [..., a2·b2] -> [..., a1·b1]
 */
#ifndef PEFTC_PASSES_ADAPTERS_KRONAB_H
#define PEFTC_PASSES_ADAPTERS_KRONAB_H

#include "peftc/peftc.h"

#include <stdint.h>

/* PEFT's factorization(dimension, factor) (peft/tuners/lokr/layer.py, PEFT 0.21.2), ported
 * as it runs: factor > 0 dividing dim gives (factor, dim/factor); otherwise (factor -1: no cap)
 * it walks the divisors m of dim upward from 1 while m < dim/m and m <= factor, and returns
 * (m, n) ordered m <= n. 64 -> (8, 8), 128 -> (8, 16), 127 -> (1, 127), (128, 4) -> (4, 32).
 * dim must be >= 1. */
void pc_lokr_factorization(int64_t dim, int64_t factor, int64_t *m, int64_t *n);

/* y = x (A ⊗ B)ᵀ for x [..., a2·b2], A [a1, a2], B [b1, b2]: y [..., a1·b1] with
 *   y[n, i·b1 + j] = Σ_k Σ_l A[i, k] B[j, l] x[n, k·b2 + l],
 * as two matmuls on x viewed as [N, a2, b2]: T = x B ᵀ over l ([N·a2, b2] @ Bᵀ, one GEMM), then
 * Y[n] = A T[n] (A broadcast over N), viewed back. A ⊗ B ([a1·b1, a2·b2]) is never formed.
 * Shape mismatches are the graph's sticky error. */
pc_val pc_kron_linear_at(pc_graph *g, pc_loc at, pc_val x, pc_val a, pc_val b);

#endif
