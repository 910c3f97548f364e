/* Products with 8 columns, C = alpha A B (+ C), A's rows contiguous: a rank-8 LoRA's x Aᵀ and
 * d y B. gemm_n8 (compiled.c) holds a row of C in half a vector. Here a whole vector of 16 serves
 * one row: lane 2 j + t sums column j over the k with k % 2 == t. A row's pair a[k], a[k + 1] is one
 * 64-bit broadcast load (no shuffle), B is packed per call as pairs bp[k / 2][2 j + t] = b[k + t][j],
 * and at the end the two halves of two rows fold into one vector: rows r and r + 1 of C, stored
 * as one. The sums run over even and odd k separately, added once at the end (f32). */
#include "backend/compiled_internal.h"

typedef long long v8q __attribute__((vector_size(64)));

/* {p[0], p[1]} in every pair of lanes: an integer splat, so the bits are never rounded as a double */
INL v16f pair16(const float *p) {
    long long u;
    memcpy(&u, p, sizeof u);
    return (v16f)((v8q){0} + u);
}

/* {row x, row y}: lane j of each half is its row's even-k sum plus its odd-k sum */
INL v16f fold2(v16f x, v16f y) {
    v16f even = __builtin_shufflevector(x, y, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    v16f odd = __builtin_shufflevector(x, y, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    return even + odd;
}

INL void store2(float *c, v16f v, float alpha, int acc) {
    v16f o = v * alpha;
    if (acc) o += ld16(c);
    st16(c, o);
}

PC_HOT static void gemm_pairs(float *c, const float *a, int64_t sam, const float *bp, int64_t M, int64_t K, float alpha,
                              int acc) {
    int64_t i = 0;
    for (; i + 8 <= M; i += 8) {
        v16f c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0}, c4 = {0}, c5 = {0}, c6 = {0}, c7 = {0};
        const float *ai = a + i * sam;
        for (int64_t k = 0; k < K; k += 2) {
            v16f bk = ld16(bp + k * 8);
            const float *ak = ai + k;
            c0 += pair16(ak) * bk, c1 += pair16(ak + sam) * bk, c2 += pair16(ak + 2 * sam) * bk;
            c3 += pair16(ak + 3 * sam) * bk, c4 += pair16(ak + 4 * sam) * bk, c5 += pair16(ak + 5 * sam) * bk;
            c6 += pair16(ak + 6 * sam) * bk, c7 += pair16(ak + 7 * sam) * bk;
        }
        float *ci = c + i * 8;
        store2(ci, fold2(c0, c1), alpha, acc), store2(ci + 16, fold2(c2, c3), alpha, acc);
        store2(ci + 32, fold2(c4, c5), alpha, acc), store2(ci + 48, fold2(c6, c7), alpha, acc);
    }
    for (; i < M; i++) { /* fewer than 8 rows left: one at a time */
        v16f ci = {0};
        for (int64_t k = 0; k < K; k += 2) ci += pair16(a + i * sam + k) * ld16(bp + k * 8);
        v16f s = fold2(ci, ci);
        v8f o = LO8(s) * alpha;
        if (acc) o += ld8(c + i * 8);
        memcpy(c + i * 8, &o, sizeof o);
    }
}

bool pc_ck_gemm_pairs(const pc_matmul_desc *d, const float *a, const float *b, float *c) {
    int R = d->rank;
    int64_t M = d->a_dims[R - 2], K = d->a_dims[R - 1], N = d->b_dims[R - 1];
    for (int i = 0; i < R - 2; i++)
        if (d->c_dims[i] != 1) return false;
    if (N != 8 || d->a_strides[R - 1] != 1 || K % 2 || K > 512 || d->reduce_batch) return false;
    float bp[512 * 8];
    int64_t sbk = d->b_strides[R - 2], sbn = d->b_strides[R - 1];
    for (int64_t k = 0; k < K; k += 2)
        for (int64_t j = 0; j < 8; j++) {
            bp[k * 8 + 2 * j] = b[k * sbk + j * sbn];
            bp[k * 8 + 2 * j + 1] = b[(k + 1) * sbk + j * sbn];
        }
    gemm_pairs(c, a, d->a_strides[R - 2], bp, M, K, d->alpha, d->accumulate);
    return true;
}
