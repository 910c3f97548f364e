/* The compiled backend's C products against a double reference, through pc_ck_gemm_small:
 * - batched tiny products (backend/compiled_gemm_batched.c): c[t] = alpha a[t] b[t] (+ c[t])
 *   with a shared by the batch (pairs of batches in one vector: odd batch counts, row counts
 *   around the 8- and 4-row tiles, a transposed a, padded rows of b), and sums over the batch
 *   (reduce_batch: c = alpha Σ_t a[t] b[t] (+ c)) with b transposed (the fast layout), b plain,
 *   widths the vector loops do not take (the element loop), a or b broadcast;
 * - weight gradients c = alpha aᵀ b (backend/compiled_gemm_at.c): row counts around the 6-, 4-
 *   and 2-row tiles, widths with a partial last vector (whose last row is read padded), padded
 *   rows, accumulate;
 * - 8-column products with A's rows contiguous (backend/compiled_gemm_pairs.c): a rank-8 LoRA's
 *   x Aᵀ and d y B, 8-row blocks with a tail, padded rows of b, accumulate; odd K declined.
 * Each case also states whether the fast kernel takes it, so a condition that stops matching
 * fails here. */
#include "backend/compiled_internal.h"
#include "cu_main.h"
#include "test_rng.h"

#include <math.h>
#include <stdlib.h>

static double rnd(uint64_t *s) { return test_rng_unit(s) * 2.0 - 1.0; } /* [-1, 1) */

typedef struct {
    int64_t nb, M, K, N;
    bool a_shared, b_shared; /* broadcast over the batch */
    bool a_t, b_t;           /* stored transposed */
    int64_t b_pad;           /* extra floats per stored row of b */
    bool reduce, acc;
    float alpha;
    bool fast;  /* pc_ck_gemm_batched (rank 3), pc_ck_gemm_at or pc_ck_gemm_pairs (rank 2) takes it */
    bool rank2; /* one product (nb 1), not batched */
} gcase;

static void run_case(const gcase *k) {
    uint64_t seed = 0x9e3779b97f4a7c15ull ^ (uint64_t)(k->nb * 131 + k->M * 17 + k->K * 7 + k->N);
    int64_t nba = k->a_shared ? 1 : k->nb, nbb = k->b_shared ? 1 : k->nb;
    /* a[t] is [M, K]: stored [M, K] or, transposed, [K, M]; b[t] [K, N]: [K, N + pad] or [N, K + pad] */
    int64_t a_size = k->M * k->K, b_row = (k->b_t ? k->K : k->N) + k->b_pad;
    int64_t b_size = (k->b_t ? k->N : k->K) * b_row;
    int64_t c_size = (k->reduce ? 1 : k->nb) * k->M * k->N;
    float *a = malloc((size_t)(nba * a_size) * sizeof *a), *b = malloc((size_t)(nbb * b_size) * sizeof *b);
    float *c = malloc((size_t)c_size * sizeof *c), *c0 = malloc((size_t)c_size * sizeof *c0);
    double *ref = calloc((size_t)c_size, sizeof *ref);
    CU_ASSERT_FATAL(a && b && c && c0 && ref);
    for (int64_t i = 0; i < nba * a_size; i++) a[i] = (float)rnd(&seed);
    for (int64_t i = 0; i < nbb * b_size; i++) b[i] = (float)rnd(&seed);
    for (int64_t i = 0; i < c_size; i++) c[i] = c0[i] = (float)rnd(&seed);

    pc_matmul_desc d = {.rank = 3, .alpha = k->alpha, .accumulate = k->acc, .reduce_batch = k->reduce};
    d.a_dims[0] = nba, d.a_dims[1] = k->M, d.a_dims[2] = k->K;
    d.a_strides[0] = a_size, d.a_strides[1] = k->a_t ? 1 : k->K, d.a_strides[2] = k->a_t ? k->M : 1;
    d.b_dims[0] = nbb, d.b_dims[1] = k->K, d.b_dims[2] = k->N;
    d.b_strides[0] = b_size, d.b_strides[1] = k->b_t ? 1 : b_row, d.b_strides[2] = k->b_t ? b_row : 1;
    d.c_dims[0] = k->nb, d.c_dims[1] = k->M, d.c_dims[2] = k->N;
    if (k->rank2) { /* drop the batch axis */
        d.rank = 2;
        memmove(d.a_dims, d.a_dims + 1, 2 * sizeof d.a_dims[0]), memmove(d.a_strides, d.a_strides + 1, 2 * sizeof d.a_strides[0]);
        memmove(d.b_dims, d.b_dims + 1, 2 * sizeof d.b_dims[0]), memmove(d.b_strides, d.b_strides + 1, 2 * sizeof d.b_strides[0]);
        memmove(d.c_dims, d.c_dims + 1, 2 * sizeof d.c_dims[0]);
    }

    for (int64_t t = 0; t < k->nb; t++) {
        const float *at = a + (k->a_shared ? 0 : t) * a_size, *bt = b + (k->b_shared ? 0 : t) * b_size;
        double *rt = ref + (k->reduce ? 0 : t) * k->M * k->N;
        int R = d.rank;
        for (int64_t i = 0; i < k->M; i++)
            for (int64_t j = 0; j < k->N; j++) {
                double s = 0;
                for (int64_t l = 0; l < k->K; l++)
                    s += (double)at[i * d.a_strides[R - 2] + l * d.a_strides[R - 1]] * bt[l * d.b_strides[R - 2] + j * d.b_strides[R - 1]];
                rt[i * k->N + j] += k->alpha * s;
            }
    }
    double scale = 0;
    for (int64_t i = 0; i < c_size; i++) {
        if (k->acc) ref[i] += c0[i];
        scale = fmax(scale, fabs(ref[i]));
    }
    /* widths of 4, 8, 16 always run in C; other rank-2 products only in a fast layout, else oneDNN */
    CU_ASSERT_EQUAL(pc_ck_gemm_small_ok(&d), !k->rank2 || k->fast || k->N == 4 || k->N == 8 || k->N == 16);
    pc_ck_gemm_small(&d, a, b, c);
    double err = 0;
    for (int64_t i = 0; i < c_size; i++) err = fmax(err, fabs(c[i] - ref[i]));
    double tol = 4e-7 * (double)(k->K * (k->reduce ? k->nb : 1)) * fmax(1.0, scale);
    if (!(err <= tol))
        fprintf(stderr, "\n  nb %lld M %lld K %lld N %lld reduce %d: max error %.3g (tolerance %.3g)\n",
                (long long)k->nb, (long long)k->M, (long long)k->K, (long long)k->N, k->reduce, err, tol);
    CU_ASSERT_TRUE(err <= tol);
    /* the fast layout's verdict, on a scratch copy (it writes nothing when it declines) */
    for (int64_t i = 0; i < c_size; i++) c[i] = c0[i];
    bool fast;
    if (k->rank2) {
        fast = pc_ck_gemm_at_ok(&d) || pc_ck_gemm_pairs(&d, a, b, c);
        CU_ASSERT_FALSE(pc_ck_gemm_batched(&d, a, b, c));
    } else
        fast = pc_ck_gemm_batched(&d, a, b, c);
    if (fast != k->fast)
        fprintf(stderr, "\n  nb %lld M %lld K %lld N %lld reduce %d: fast layout %d, expected %d\n", (long long)k->nb,
                (long long)k->M, (long long)k->K, (long long)k->N, k->reduce, fast, k->fast);
    CU_ASSERT_EQUAL(fast, k->fast);
    if (!fast)
        for (int64_t i = 0; i < c_size; i++) CU_ASSERT_EQUAL_FATAL(c[i], c0[i]);
    free(a), free(b), free(c), free(c0), free(ref);
}

static void test_pairs(void) {
    static const gcase cases[] = {
        /* LoKr's forward on stories260K (A [4, 8] over 512 rows of [8, 8]) and its input gradient (A^T) */
        {512, 4, 8, 8, true, false, false, false, 0, false, false, 1.0f, true, false},
        {512, 8, 4, 8, true, false, true, false, 0, false, false, 1.0f, true, false},
        {7, 9, 13, 8, true, false, false, false, 0, false, true, 0.5f, true, false},  /* odd batch, 8 + 1 rows, accumulate */
        {2, 5, 1, 8, true, false, true, false, 0, false, false, -2.0f, true, false}, /* 4 + 1 rows, K = 1 */
        {3, 12, 8, 8, true, false, false, false, 6, false, false, 1.0f, true, false}, /* padded rows of b */
        {5, 3, 8, 8, false, false, false, false, 0, false, false, 1.0f, false, false}, /* a per batch: generic */
        {4, 4, 8, 16, true, false, false, false, 0, false, false, 1.0f, false, false}, /* 16 columns: generic */
        {3, 4, 8, 8, true, false, false, true, 0, false, false, 1.0f, false, false},  /* b transposed: generic */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
}

static void test_reduce(void) {
    static const gcase cases[] = {
        /* LoKr's dA on stories260K: sum_n dS[n] X[n]^T, [4, 8] x [8, 8]^T over 512 rows; and [8, 8] x [4, 8]^T */
        {512, 4, 8, 8, false, false, false, true, 0, true, false, 1.0f, true, false},
        {512, 8, 8, 4, false, false, false, true, 0, true, false, 1.0f, true, false},
        {9, 6, 8, 8, false, false, false, true, 0, true, true, 0.25f, true, false},  /* 4 + 2 rows, accumulate */
        {3, 1, 8, 4, true, false, false, true, 0, true, false, 1.0f, true, false},   /* a shared */
        {4, 5, 8, 8, false, true, false, true, 0, true, false, 1.0f, true, false},   /* b shared */
        {6, 4, 8, 8, false, false, false, true, 2, true, false, 1.0f, false, false}, /* padded b rows: generic */
        {5, 4, 5, 8, false, false, false, true, 0, true, false, 1.0f, false, false}, /* K 5: generic */
        {5, 3, 8, 12, false, false, false, true, 0, true, true, 1.0f, false, false}, /* 12 columns: element loop */
        {6, 7, 9, 8, false, false, true, false, 0, true, false, 2.0f, false, false}, /* plain b, a transposed */
        {2, 64, 64, 64, false, false, false, false, 0, true, false, 1.0f, false, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
}

static void test_weight_gradients(void) {
    static const gcase cases[] = {
        /* LoHa's dW = dYᵀ X on stories260K: [512, 172]ᵀ [512, 64], [512, 64]ᵀ [512, 172], [512, 32]ᵀ [512, 64] */
        {1, 172, 512, 64, false, false, true, false, 0, false, false, 2.0f, true, true},
        {1, 64, 512, 172, false, false, true, false, 0, false, false, 1.0f, true, true},
        {1, 32, 512, 64, false, false, true, false, 0, false, true, 0.5f, true, true},
        {1, 19, 130, 17, false, false, true, false, 3, false, true, 1.0f, true, true}, /* 6+6+6+1 rows, 16+1 columns */
        {1, 16, 128, 31, false, false, true, false, 0, false, false, 1.0f, true, true}, /* 6+6+4 rows */
        {1, 24, 200, 256, false, false, true, false, 0, false, false, 1.0f, true, true},
        {1, 768, 128, 64, false, false, true, false, 0, false, false, 1.0f, true, true}, /* d768's dW of V: [768, 64] */
        {1, 1100, 128, 64, false, false, true, false, 0, false, false, 1.0f, false, true}, /* tall: oneDNN packs a */
        {1, 24, 16, 64, false, false, true, false, 0, false, false, 1.0f, false, true},  /* short T: oneDNN */
        {1, 24, 256, 320, false, false, true, false, 0, false, false, 1.0f, false, true}, /* wide: oneDNN */
        {1, 24, 256, 64, false, false, false, false, 0, false, false, 1.0f, false, true}, /* a plain: oneDNN */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
}

static void test_rank8(void) {
    static const gcase cases[] = {
        /* stories260K's LoRA: x Aᵀ (A [8, 64] stored, so b transposed) and d y B (B [172, 8]), alpha 2 */
        {1, 512, 64, 8, false, false, false, true, 0, false, false, 1.0f, true, true},
        {1, 512, 172, 8, false, false, false, false, 0, false, false, 2.0f, true, true},
        {1, 13, 6, 8, false, false, false, false, 3, false, true, -0.5f, true, true}, /* 8 + 5 rows, padded b, acc */
        {1, 3, 2, 8, false, false, false, true, 1, false, true, 1.0f, true, true},    /* tail only, K 2 */
        {1, 9, 7, 8, false, false, false, false, 0, false, false, 1.0f, false, true}, /* odd K: gemm_n8 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
}

static CU_TestInfo tests[] = {
    {"pairs_of_batches_a_shared", test_pairs},
    {"sums_over_the_batch", test_reduce},
    {"weight_gradients_a_transposed", test_weight_gradients},
    {"rank8_products_a_rows", test_rank8},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("gemm_small", tests)
