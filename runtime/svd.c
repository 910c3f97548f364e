/* One-sided Jacobi SVD (Hestenes 1958; Demmel & Veselić 1992 for the stopping rule): rotate pairs
 * of columns until every pair is orthogonal to working precision. Simple, accurate to a few ulps
 * of ||a|| and quick enough for the matrices of one module's ΔW. */
#include "runtime/svd.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_SWEEPS = 80 };

/* column-major scratch: the columns of W and V are contiguous, so a rotation streams two arrays */
int pc_svd_jacobi(const double *a, int m, int n, double *w, double *s, double *v, char *err, size_t errlen) {
    if (m < 1 || n < 1) return snprintf(err, errlen, "svd: empty matrix %dx%d", m, n), -1;
    size_t M = (size_t)m, N = (size_t)n;
    for (size_t i = 0; i < M * N; i++)
        if (!isfinite(a[i]))
            return snprintf(err, errlen, "svd: the matrix holds a non-finite value at entry %zu", i), -1;
    double *wc = malloc(M * N * sizeof *wc), *vc = calloc(N * N, sizeof *vc), *norm2 = malloc(N * sizeof *norm2);
    int *order = malloc(N * sizeof *order);
    if (!wc || !vc || !norm2 || !order) {
        free(wc), free(vc), free(norm2), free(order);
        return snprintf(err, errlen, "svd: out of memory for a %dx%d matrix", m, n), -1;
    }
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) wc[j * M + i] = a[i * N + j];
    for (size_t j = 0; j < N; j++) vc[j * N + j] = 1.0;

    const double eps = 1e-15;
    /* a column whose norm is below 1e-14·||a||_F is rounding noise (the null space of a wide or
     * rank-deficient a): rotating two such columns against each other never converges, and
     * nothing below that level is resolvable in double anyway, so they are left alone */
    double fro2 = 0;
    for (size_t i = 0; i < M * N; i++) fro2 += wc[i] * wc[i];
    const double negligible = 1e-28 * fro2;
    int sweep = 0;
    for (bool rotated = true; rotated; sweep++) {
        if (sweep == MAX_SWEEPS) {
            free(wc), free(vc), free(norm2), free(order);
            return snprintf(err, errlen, "svd: no convergence after %d sweeps (%dx%d)", MAX_SWEEPS, m, n), -1;
        }
        rotated = false;
        for (size_t p = 0; p + 1 < N; p++)
            for (size_t q = p + 1; q < N; q++) {
                double *cp = wc + p * M, *cq = wc + q * M;
                double alpha = 0, beta = 0, gamma = 0;
                for (size_t i = 0; i < M; i++) alpha += cp[i] * cp[i], beta += cq[i] * cq[i], gamma += cp[i] * cq[i];
                /* orthogonal enough (or a zero column): no rotation */
                if (gamma == 0 || alpha <= negligible || beta <= negligible || fabs(gamma) <= eps * sqrt(alpha * beta))
                    continue;
                rotated = true;
                double zeta = (beta - alpha) / (2 * gamma);
                double t = (zeta >= 0 ? 1.0 : -1.0) / (fabs(zeta) + sqrt(1 + zeta * zeta));
                double c = 1 / sqrt(1 + t * t), sn = c * t;
                for (size_t i = 0; i < M; i++) {
                    double x = cp[i], y = cq[i];
                    cp[i] = c * x - sn * y, cq[i] = sn * x + c * y;
                }
                double *vp = vc + p * N, *vq = vc + q * N;
                for (size_t i = 0; i < N; i++) {
                    double x = vp[i], y = vq[i];
                    vp[i] = c * x - sn * y, vq[i] = sn * x + c * y;
                }
            }
    }
    for (size_t j = 0; j < N; j++) {
        double z = 0;
        for (size_t i = 0; i < M; i++) z += wc[j * M + i] * wc[j * M + i];
        norm2[j] = z;
        order[j] = (int)j;
    }
    /* sort by σ descending, stable (insertion sort: n is small next to the sweeps' cost) */
    for (size_t j = 1; j < N; j++) {
        int o = order[j];
        size_t k = j;
        for (; k > 0 && norm2[order[k - 1]] < norm2[o]; k--) order[k] = order[k - 1];
        order[k] = o;
    }
    for (size_t j = 0; j < N; j++) {
        size_t o = (size_t)order[j];
        s[j] = sqrt(norm2[o]);
        for (size_t i = 0; i < M; i++) w[i * N + j] = wc[o * M + i];
        for (size_t i = 0; i < N; i++) v[i * N + j] = vc[o * N + i];
    }
    free(wc), free(vc), free(norm2), free(order);
    return 0;
}

void pc_svd_fix_signs(int m, int n, int k, double *w, double *v) {
    for (int j = 0; j < k; j++) {
        int best = 0;
        for (int i = 1; i < n; i++)
            if (fabs(v[(size_t)i * k + j]) > fabs(v[(size_t)best * k + j])) best = i;
        if (v[(size_t)best * k + j] >= 0) continue;
        for (int i = 0; i < n; i++) v[(size_t)i * k + j] = -v[(size_t)i * k + j];
        for (int i = 0; i < m; i++) w[(size_t)i * k + j] = -w[(size_t)i * k + j];
    }
}
