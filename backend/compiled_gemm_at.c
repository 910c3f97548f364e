/* Weight gradients in C: c = alpha aᵀ b (+ c), the contraction running down the rows of both
 * operands (dW = dYᵀ X over the T tokens of a step, a [T, M] and b [T, N] row-major).
 *
 * Why: LoHa's step (passes/adapters/loha.c) needs the full gradient of W + ΔW in every targeted
 * linear, [out, T] x [T, in] with T = 512 and out, in <= 256 on stories260K. Called alone in a
 * loop, oneDNN ran [172 x 512] x [512 x 64] in 70-75 us hot and ~117 us after 32 MB of other
 * writes; in the training step each call took ~200 us (the profile's fastest of 40). Why the
 * step is slower than the cold loop was not pinned down. Here no operand is packed: each row t
 * of a and b is read in place, rank-1 updates into a register tile of c (MR rows x NV vectors of
 * 16 columns) held for the whole of T. In the step that product takes 70 us. Called alone, hot,
 * the tiles beat oneDNN from 32 rows up (172 x 32 x 16: 1.35 vs 1.87 us; 172 x 512 x 64: 59 vs
 * 69 us), which is why they start there; the PEFT LoHa fixture's factor gradients
 * (tests/unit/test_peft_loha.c, 32 rows) run here on the JIT side.
 * Measured at d768 (LoHa's rank-r² factors): [768 x 512] x [512 x 64] 504 -> 390 us in the step;
 * wider b (768 columns) or taller a (2048 rows: each tile then reads a few floats of 512 rows far
 * apart) ran slower than oneDNN's packed kernels, so those stay there.
 * f32 sums, t ascending. */
#include "backend/compiled_internal.h"

/* rows i..i+MR of c, columns j..j+16·NV, of which the last vector holds nlast (1..16): its
 * other lanes read the start of b's next row (inside the tensor for every row but the last,
 * whose few columns are copied into a padded vector) and are never stored */
INL void at_tile(int MR, int NV, float *c, int64_t ldc, const float *a, int64_t lda, const float *b, int64_t ldb,
                 int64_t T, int nlast, float alpha, int acc) {
    v16f cc[6][4];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) cc[r][v] = (v16f){0};
    int64_t tn = nlast < 16 ? T - 1 : T; /* rows whose last vector may be read whole */
    for (int64_t t = 0; t < tn; t++) {
        v16f bv[4];
        for (int v = 0; v < NV; v++) bv[v] = ld16(b + t * ldb + 16 * v);
        for (int r = 0; r < MR; r++) {
            float ar = a[t * lda + r];
            for (int v = 0; v < NV; v++) cc[r][v] += ar * bv[v];
        }
    }
    if (tn < T) {
        float pad[16 * 4] = {0};
        memcpy(pad, b + tn * ldb, (size_t)(16 * (NV - 1) + nlast) * sizeof *pad);
        for (int r = 0; r < MR; r++) {
            float ar = a[tn * lda + r];
            for (int v = 0; v < NV; v++) cc[r][v] += ar * ld16(pad + 16 * v);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) {
            float *cr = c + r * ldc + 16 * v;
            v16f o = cc[r][v] * alpha;
            if (v < NV - 1 || nlast == 16) {
                st16(cr, acc ? o + ld16(cr) : o);
                continue;
            }
            float part[16];
            st16(part, o);
            for (int l = 0; l < nlast; l++) cr[l] = acc ? cr[l] + part[l] : part[l];
        }
}

#define AT_COLUMNS(NV)                                                                             \
    PC_HOT static void at_columns##NV(const pc_matmul_desc *d, const float *a, const float *b, float *c, int64_t j, int nlast) { \
        int64_t M = d->a_dims[0], T = d->a_dims[1], N = d->b_dims[1], lda = d->a_strides[1], ldb = d->b_strides[0]; \
        int64_t i = 0;                                                                             \
        for (; i + 6 <= M; i += 6)                                                                 \
            at_tile(6, NV, c + i * N + j, N, a + i, lda, b + j, ldb, T, nlast, d->alpha, d->accumulate); \
        for (; i + 4 <= M; i += 4)                                                                 \
            at_tile(4, NV, c + i * N + j, N, a + i, lda, b + j, ldb, T, nlast, d->alpha, d->accumulate); \
        for (; i + 2 <= M; i += 2)                                                                 \
            at_tile(2, NV, c + i * N + j, N, a + i, lda, b + j, ldb, T, nlast, d->alpha, d->accumulate); \
        for (; i < M; i++) at_tile(1, NV, c + i * N + j, N, a + i, lda, b + j, ldb, T, nlast, d->alpha, d->accumulate); \
    }
AT_COLUMNS(1)
AT_COLUMNS(2)
AT_COLUMNS(3)
AT_COLUMNS(4)

static void gemm_at(const pc_matmul_desc *d, const float *a, const float *b, float *c) {
    int64_t N = d->b_dims[1];
    for (int64_t j = 0; j < N; j += 64) {
        int64_t w = N - j < 64 ? N - j : 64;
        int nv = (int)((w + 15) / 16), nlast = (int)(w - 16 * (nv - 1));
        if (nv == 4) at_columns4(d, a, b, c, j, nlast);
        else if (nv == 3) at_columns3(d, a, b, c, j, nlast);
        else if (nv == 2) at_columns2(d, a, b, c, j, nlast);
        else at_columns1(d, a, b, c, j, nlast);
    }
}

bool pc_ck_gemm_at_ok(const pc_matmul_desc *d) {
    if (d->rank != 2 || d->bf16 || d->reduce_batch) return false;
    int64_t M = d->a_dims[0], T = d->a_dims[1], N = d->b_dims[1];
    return d->a_strides[0] == 1 && d->b_strides[1] == 1 && M >= 16 && M <= 1024 && N >= 16 && N <= 256 && T >= 32;
}

void pc_ck_gemm_at(const pc_matmul_desc *d, const float *a, const float *b, float *c) { gemm_at(d, a, b, c); }
