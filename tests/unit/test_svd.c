/* runtime/svd.c (one-sided Jacobi): known decompositions, reconstruction, orthogonality, sorting
 * and rank deficiency on shapes tall, wide and square. Signs are arbitrary, so the checks are on
 * products and on the singular values, never on the factors' signs. */
#include "cu_main.h"
#include "runtime/rng.h"
#include "runtime/svd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double *w, *s, *v;
} svd_out;

/* a deterministic normal stream (runtime/rng.h's counter-based draws) */
typedef struct {
    uint64_t seed, i;
} pc_rng;
static void pc_rng_seed(pc_rng *r, uint64_t seed) { *r = (pc_rng){seed, 0}; }
static double pc_rng_normal(pc_rng *r) { return pc_hash_normal(r->seed, 0, r->i++); }

static int run(const double *a, int m, int n, svd_out *o) {
    o->w = malloc(sizeof(double) * (size_t)m * n);
    o->s = malloc(sizeof(double) * (size_t)n);
    o->v = malloc(sizeof(double) * (size_t)n * n);
    char err[256] = "";
    int rc = pc_svd_jacobi(a, m, n, o->w, o->s, o->v, err, sizeof err);
    if (rc) printf("\n    %s", err);
    return rc;
}

static void done(svd_out *o) { free(o->w), free(o->s), free(o->v); }

/* max |a - W Vᵀ|, max |VᵀV - I|, max |WᵀW - diag(s²)| relative to s[0]² (0 for a zero matrix) */
static void check(const double *a, int m, int n, const svd_out *o, double tol) {
    double rec = 0, orth = 0, wo = 0, scale = 0;
    for (int i = 0; i < m * n; i++) scale = fmax(scale, fabs(a[i]));
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double x = 0;
            for (int k = 0; k < n; k++) x += o->w[i * n + k] * o->v[j * n + k];
            rec = fmax(rec, fabs(x - a[i * n + j]));
        }
    for (int p = 0; p < n; p++)
        for (int q = 0; q < n; q++) {
            double x = 0, y = 0;
            for (int k = 0; k < n; k++) x += o->v[k * n + p] * o->v[k * n + q];
            for (int k = 0; k < m; k++) y += o->w[k * n + p] * o->w[k * n + q];
            orth = fmax(orth, fabs(x - (p == q)));
            double want = p == q ? o->s[p] * o->s[p] : 0;
            if (o->s[0] > 0) wo = fmax(wo, fabs(y - want) / (o->s[0] * o->s[0]));
        }
    for (int j = 0; j + 1 < n; j++) CU_ASSERT(o->s[j] >= o->s[j + 1]);
    for (int j = 0; j < n; j++) CU_ASSERT(o->s[j] >= 0);
    printf("\n    %dx%d: |A - W Vt| %.2e (of %.2e), |VtV - I| %.2e, |WtW - S2|/s0^2 %.2e", m, n, rec, scale, orth, wo);
    CU_ASSERT(rec <= tol * fmax(scale, 1e-300) || (scale == 0 && rec == 0));
    CU_ASSERT(orth <= tol);
    CU_ASSERT(wo <= tol);
}

/* a random orthogonal k×k matrix (Gram-Schmidt, twice, on Gaussian columns), column-major q[j*k+i] */
static void random_orthogonal(pc_rng *r, int k, double *q) {
    for (int i = 0; i < k * k; i++) q[i] = pc_rng_normal(r);
    for (int j = 0; j < k; j++)
        for (int pass = 0; pass < 2; pass++) {
            for (int p = 0; p < j; p++) {
                double d = 0;
                for (int i = 0; i < k; i++) d += q[j * k + i] * q[p * k + i];
                for (int i = 0; i < k; i++) q[j * k + i] -= d * q[p * k + i];
            }
            double nn = 0;
            for (int i = 0; i < k; i++) nn += q[j * k + i] * q[j * k + i];
            for (int i = 0; i < k; i++) q[j * k + i] /= sqrt(nn);
        }
}

/* A = U diag(sv) Vᵀ with random orthogonal U (m×m), V (n×n) and the given singular values */
static void known(pc_rng *r, int m, int n, const double *sv, double *a) {
    double *u = malloc(sizeof(double) * m * m), *v = malloc(sizeof(double) * n * n);
    random_orthogonal(r, m, u);
    random_orthogonal(r, n, v);
    int k = m < n ? m : n;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double x = 0;
            for (int t = 0; t < k; t++) x += u[t * m + i] * sv[t] * v[t * n + j];
            a[i * n + j] = x;
        }
    free(u), free(v);
}

static void test_diagonal_and_permuted(void) {
    /* a 3x3 diagonal with entries out of order and a negative one: σ = 5, 3, 1 */
    const double a[9] = {1, 0, 0, 0, -5, 0, 0, 0, 3};
    svd_out o;
    CU_ASSERT_EQUAL_FATAL(run(a, 3, 3, &o), 0);
    CU_ASSERT_DOUBLE_EQUAL(o.s[0], 5, 1e-14);
    CU_ASSERT_DOUBLE_EQUAL(o.s[1], 3, 1e-14);
    CU_ASSERT_DOUBLE_EQUAL(o.s[2], 1, 1e-14);
    check(a, 3, 3, &o, 1e-14);
    done(&o);
}

static void test_two_by_two(void) {
    /* [[3, 0], [4, 5]]: σ = 3√5 and √5 (AᵀA has eigenvalues 45 and 5) */
    const double a[4] = {3, 0, 4, 5};
    svd_out o;
    CU_ASSERT_EQUAL_FATAL(run(a, 2, 2, &o), 0);
    CU_ASSERT_DOUBLE_EQUAL(o.s[0], 3 * sqrt(5.0), 1e-13);
    CU_ASSERT_DOUBLE_EQUAL(o.s[1], sqrt(5.0), 1e-13);
    check(a, 2, 2, &o, 1e-14);
    done(&o);
}

static void test_rank_one(void) {
    /* u vᵀ with |u| = 3 (2,1,2), |v| = 5 (3,4,0,0): one σ = 15, the rest 0 */
    const double u[3] = {2, 1, 2}, v[4] = {3, 4, 0, 0};
    double a[12];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++) a[i * 4 + j] = u[i] * v[j];
    svd_out o;
    CU_ASSERT_EQUAL_FATAL(run(a, 3, 4, &o), 0);
    CU_ASSERT_DOUBLE_EQUAL(o.s[0], 15, 1e-13);
    for (int j = 1; j < 4; j++) CU_ASSERT(o.s[j] <= 1e-13);
    /* the first right singular vector is ±v/5 */
    CU_ASSERT_DOUBLE_EQUAL(fabs(o.v[0 * 4]), 0.6, 1e-14);
    CU_ASSERT_DOUBLE_EQUAL(fabs(o.v[1 * 4]), 0.8, 1e-14);
    check(a, 3, 4, &o, 1e-13);
    done(&o);
}

static void test_zero_matrix(void) {
    double a[6] = {0};
    svd_out o;
    CU_ASSERT_EQUAL_FATAL(run(a, 2, 3, &o), 0);
    for (int j = 0; j < 3; j++) CU_ASSERT_EQUAL(o.s[j], 0);
    check(a, 2, 3, &o, 1e-15);
    done(&o);
}

/* random matrices built from known singular values, tall, wide and square, some rank-deficient */
static void test_known_random(void) {
    static const int shapes[][3] = {{8, 5, 5}, {5, 8, 5}, {20, 20, 20}, {64, 16, 16}, {16, 64, 16}, {40, 30, 7},
                                    {30, 40, 3}, {64, 172, 64}};
    pc_rng r;
    pc_rng_seed(&r, 11);
    for (size_t c = 0; c < sizeof shapes / sizeof *shapes; c++) {
        int m = shapes[c][0], n = shapes[c][1], rank = shapes[c][2], k = m < n ? m : n;
        double *sv = calloc((size_t)k, sizeof *sv), *a = malloc(sizeof(double) * m * n);
        for (int t = 0; t < rank; t++) sv[t] = 10.0 * pow(0.7, t) * (1 + 0.01 * t); /* distinct, descending */
        known(&r, m, n, sv, a);
        svd_out o;
        CU_ASSERT_EQUAL_FATAL(run(a, m, n, &o), 0);
        double ds = 0;
        for (int t = 0; t < n; t++) ds = fmax(ds, fabs(o.s[t] - (t < k ? sv[t] : 0)));
        printf("\n    rank %d: max |s - s_known| %.2e", rank, ds);
        CU_ASSERT(ds <= 1e-12);
        check(a, m, n, &o, 1e-12);
        /* truncation: the best rank-t approximation's error in the Frobenius norm is
         * sqrt(Σ_{j≥t} σ_j²) (Eckart-Young); checks that the leading columns are the right ones */
        int t = rank > 2 ? 2 : 1;
        double err2 = 0, want2 = 0;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double x = 0;
                for (int q = 0; q < t; q++) x += o.w[i * n + q] * o.v[j * n + q];
                err2 += (a[i * n + j] - x) * (a[i * n + j] - x);
            }
        for (int q = t; q < k; q++) want2 += sv[q] * sv[q];
        CU_ASSERT(fabs(sqrt(err2) - sqrt(want2)) <= 1e-11);
        done(&o);
        free(sv), free(a);
    }
}

static void test_fix_signs(void) {
    pc_rng r;
    pc_rng_seed(&r, 5);
    double a[6 * 4];
    for (int i = 0; i < 24; i++) a[i] = pc_rng_normal(&r);
    svd_out o;
    CU_ASSERT_EQUAL_FATAL(run(a, 6, 4, &o), 0);
    pc_svd_fix_signs(6, 4, 4, o.w, o.v);
    for (int j = 0; j < 4; j++) {
        int best = 0;
        for (int i = 1; i < 4; i++)
            if (fabs(o.v[i * 4 + j]) > fabs(o.v[best * 4 + j])) best = i;
        CU_ASSERT(o.v[best * 4 + j] > 0);
    }
    check(a, 6, 4, &o, 1e-13); /* still a decomposition of a */
    done(&o);
}

static void test_refusals(void) {
    double a[2] = {1, NAN}, w[2], s[2], v[4];
    char err[256] = "";
    CU_ASSERT_EQUAL(pc_svd_jacobi(a, 1, 2, w, s, v, err, sizeof err), -1);
    CU_ASSERT(strstr(err, "non-finite") != NULL);
    CU_ASSERT_EQUAL(pc_svd_jacobi(a, 0, 2, w, s, v, err, sizeof err), -1);
}

static CU_TestInfo tests[] = {
    {"diagonal, permuted and signed", test_diagonal_and_permuted},
    {"2x2 closed form", test_two_by_two},
    {"rank one, wide", test_rank_one},
    {"zero matrix", test_zero_matrix},
    {"known random decompositions", test_known_random},
    {"fixed signs", test_fix_signs},
    {"refusals", test_refusals},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("svd", tests)
