/* Singular value decomposition of a small dense matrix (one-sided Jacobi, Hestenes' method), in
 * double precision. Used to truncate a combined LoRA update ΔW to a rank (PEFT's "svd"
 * combination), where ΔW is at most a few thousand columns wide.
 *
 * For a row-major m×n matrix a it finds an orthogonal V (n×n) such that the columns of
 * W = a·V are mutually orthogonal; then a = W·Vᵀ, the singular values are the column norms of W
 * (σ_j = ||W[:,j]||) and u_j = W[:,j] / σ_j wherever σ_j > 0. The columns come sorted by σ
 * descending. V is always complete, even for a rank-deficient a (n > m included): its columns for
 * σ = 0 span a's null space. Signs of (u_j, v_j) pairs are arbitrary, as in every SVD; callers
 * that need a fixed choice use pc_svd_fix_signs. */
#ifndef PEFTC_RUNTIME_SVD_H
#define PEFTC_RUNTIME_SVD_H

#include <stddef.h>

/* a: m×n row-major (m, n ≥ 1). Outputs (caller-allocated, row-major): w m×n (= a·V), s[n]
 * (σ, descending), v n×n (column j is the right singular vector of σ_j). 0, or -1 with a message
 * when the sweeps do not converge (not seen for finite input) or an input is not finite. */
int pc_svd_jacobi(const double *a, int m, int n, double *w, double *s, double *v, char *err, size_t errlen);

/* one fixed sign per singular pair: flips column j of w (m×k) and of v (n×k) (the product w·vᵀ
 * is unchanged) so that the entry of v's column j with the largest magnitude (the first one on
 * ties) is positive. For pc_svd_jacobi's output k = n. */
void pc_svd_fix_signs(int m, int n, int k, double *w, double *v);

#endif
