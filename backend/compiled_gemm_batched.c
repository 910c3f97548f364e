/* Batched products of tiny matrices in C: LoKr's fused Kronecker products (passes/kron.c).
 *
 * x (A ⊗ B)ᵀ runs as a GEMM over all rows and a product broadcast over the N rows of the batch,
 * S[n] = A X[n], whose matrices are tiny: on stories260K 512 products of [4 x 8] @ [8 x 8]. A loop
 * of one small GEMM per batch spends its time on per-batch overhead and half-width vectors (about
 * 10 GFLOP/s), and the weight gradient dA = Σ_n dS[n] X[n]ᵀ was a batch of products written to
 * memory and then summed (a sum_to the lowering now folds in: reduce_batch). Two layouts keep
 * whole 16-lane vectors busy instead:
 *
 * - pairs: c[t] = alpha a b[t] (+ c[t]) with a shared by the batch and rows of 8 columns: batches
 *   t and t+1 share the 16 lanes (one row of b[t] in the low half, b[t+1]'s in the high half),
 *   every a[i, k] is one broadcast for both.
 * - reduce: c = alpha Σ_t a[t] b[t] (+ c) with K = 8 and b[t] stored transposed ([N, 8] rows,
 *   16 contiguous floats = two columns of b[t]): a row of a[t] is duplicated into both halves
 *   and multiplied into those 16 floats; the lanes are only summed once, after the last batch.
 *
 * Both run on the JIT side of the PEFT LoKr fixture test (tests/unit/test_peft_lokr.c: k, v and
 * o_proj keep a full-rank w2 of 8 x 8), so PEFT's gradients check them on real weights.
 * Anything else (rank > 3, other widths, strided rows) returns false and runs the generic loop of
 * pc_ck_gemm_small. Sums run in f32, k ascending; the reduction's order differs from a sum_to
 * after the batch (rounding only). */
#include "backend/compiled_internal.h"

INL void st8(float *p, v8f v) { memcpy(p, &v, sizeof v); }
INL v16f join8(v8f lo, v8f hi) {
    return __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}
INL void out8(float *c, v8f v, int acc) { st8(c, acc ? v + ld8(c) : v); }

/* MR rows of c[t] and c[t+1] (8 columns each); hi = 0: batch t only (b1, c1 unused) */
INL void pair_tile(int MR, const float *a, int64_t sam, int64_t sak, const float *b0, const float *b1,
                   int64_t sbk, int64_t K, float *c0, float *c1, float alpha, int acc, int hi) {
    v16f cc[8];
    for (int r = 0; r < MR; r++) cc[r] = (v16f){0};
    for (int64_t k = 0; k < K; k++) {
        v16f bk = join8(ld8(b0 + k * sbk), ld8((hi ? b1 : b0) + k * sbk));
        for (int r = 0; r < MR; r++) cc[r] += a[r * sam + k * sak] * bk;
    }
    for (int r = 0; r < MR; r++) {
        v16f o = cc[r] * alpha;
        out8(c0 + r * 8, LO8(o), acc);
        if (hi) out8(c1 + r * 8, HI8(o), acc);
    }
}

PC_HOT static void gemm_pairs8(const pc_matmul_desc *d, const float *a, const float *b, float *c) {
    int64_t nb = d->c_dims[0], M = d->a_dims[1], K = d->a_dims[2];
    int64_t sam = d->a_strides[1], sak = d->a_strides[2], sbk = d->b_strides[1];
    int64_t sbb = d->b_dims[0] > 1 ? d->b_strides[0] : 0;
    for (int64_t t = 0; t < nb; t += 2) {
        int hi = t + 1 < nb;
        const float *b0 = b + t * sbb, *b1 = b0 + sbb;
        float *c0 = c + t * M * 8, *c1 = c0 + M * 8;
        int64_t i = 0;
        for (; i + 8 <= M; i += 8)
            pair_tile(8, a + i * sam, sam, sak, b0, b1, sbk, K, c0 + i * 8, c1 + i * 8, d->alpha, d->accumulate, hi);
        for (; i + 4 <= M; i += 4)
            pair_tile(4, a + i * sam, sam, sak, b0, b1, sbk, K, c0 + i * 8, c1 + i * 8, d->alpha, d->accumulate, hi);
        for (; i < M; i++)
            pair_tile(1, a + i * sam, sam, sak, b0, b1, sbk, K, c0 + i * 8, c1 + i * 8, d->alpha, d->accumulate, hi);
    }
}

/* MR rows of c = Σ_t a[t] b[t] for K = 8, b[t] as NQ·16 contiguous floats ([2·NQ, 8] rows) */
INL void reduce_tile(int MR, int NQ, const float *a, int64_t sam, int64_t sab, const float *b, int64_t sbb,
                     int64_t nb, float *c, int64_t ldc, float alpha, int acc) {
    v16f s[4][4];
    for (int r = 0; r < MR; r++)
        for (int q = 0; q < NQ; q++) s[r][q] = (v16f){0};
    for (int64_t t = 0; t < nb; t++) {
        const float *at = a + t * sab, *bt = b + t * sbb;
        v16f bq[4];
        for (int q = 0; q < NQ; q++) bq[q] = ld16(bt + 16 * q);
        for (int r = 0; r < MR; r++) {
            v8f ar = ld8(at + r * sam);
            v16f av = join8(ar, ar);
            for (int q = 0; q < NQ; q++) s[r][q] += av * bq[q];
        }
    }
    for (int r = 0; r < MR; r++)
        for (int q = 0; q < NQ; q++) {
            float *cr = c + r * ldc + 2 * q;
            float lo = alpha * hsum8(LO8(s[r][q])), hi = alpha * hsum8(HI8(s[r][q]));
            cr[0] = acc ? cr[0] + lo : lo;
            cr[1] = acc ? cr[1] + hi : hi;
        }
}

#define REDUCE_K8(NQ)                                                                              \
    PC_HOT static void gemm_reduce8_##NQ(const pc_matmul_desc *d, const float *a, const float *b, float *c) { \
        int64_t nb = d->c_dims[0], M = d->a_dims[1], N = d->b_dims[2], sam = d->a_strides[1];      \
        int64_t sab = d->a_dims[0] > 1 ? d->a_strides[0] : 0, sbb = d->b_dims[0] > 1 ? d->b_strides[0] : 0; \
        int64_t i = 0;                                                                             \
        for (; i + 4 <= M; i += 4)                                                                 \
            reduce_tile(4, NQ, a + i * sam, sam, sab, b, sbb, nb, c + i * N, N, d->alpha, d->accumulate); \
        for (; i < M; i++)                                                                         \
            reduce_tile(1, NQ, a + i * sam, sam, sab, b, sbb, nb, c + i * N, N, d->alpha, d->accumulate); \
    }
REDUCE_K8(2)
REDUCE_K8(4)

bool pc_ck_gemm_batched(const pc_matmul_desc *d, const float *a, const float *b, float *c) {
    if (d->rank != 3 || d->bf16 || d->c_dims[0] < 2) return false;
    int64_t M = d->a_dims[1], K = d->a_dims[2], N = d->b_dims[2];
    if (M < 1 || K < 1) return false;
    if (!d->reduce_batch) {
        if (N != 8 || d->a_dims[0] != 1 || d->b_strides[2] != 1) return false;
        gemm_pairs8(d, a, b, c);
        return true;
    }
    /* b[t] transposed and dense: its [N, 8] rows are N·8 contiguous floats */
    if (K != 8 || d->a_strides[2] != 1 || d->b_strides[1] != 1 || d->b_strides[2] != 8) return false;
    if (N == 4) gemm_reduce8_2(d, a, b, c);
    else if (N == 8) gemm_reduce8_4(d, a, b, c);
    else return false;
    return true;
}
