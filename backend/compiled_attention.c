/* The attention kernels of the compiled backend; the lowering finds their patterns in
 * backend/lower_match.c.
 *
 * Causal attention as the graph writes it computes the scores q kᵀ, scales and masks them, takes
 * the softmax p and the product p v; its backward computes d p = d o vᵀ, the softmax backward
 * g, and d q = g k, d k = gᵀ q, d v = pᵀ d o. On a small model (head dim 8) every one of those
 * steps is a pass over an [.., Sq, Sk] tensor with a few FLOPs per element.
 *
 *   FLASH, FLASH_GRAD: the whole forward (o from q, k, v) and the whole backward (d q, d k, d v
 *     from q, k, v, d o) as one kernel each, head by head; p is recomputed in the backward and
 *     never stored (the flash-attention idea). Query rows go 16 at a time, one per vector lane.
 *   ATTN, ATTN_GRAD: where p has other readers: the scores next to the softmax (p is written,
 *     the raw scores are not), and d p next to the softmax backward (g is written, d p is not).
 *
 * Products accumulate in f32 over d ascending (oneDNN's order differs: results agree to f32
 * rounding); the row-wise paths use the softmax kernel of compiled_kernels.c. */
#include "backend/compiled_internal.h"

#include <math.h>

/* element offset of batch index t (row-major over out's batch axes) in an operand's view;
 * axes of size 1 broadcast */
static int64_t batch_offset(const pc_lref *r, const pc_shape *out, int64_t t) {
    int64_t off = 0;
    for (int i = out->rank - 3; i >= 0; i--) {
        int64_t n = out->dim[i], idx = t % n;
        t /= n;
        if (r->shape.dim[i] > 1) off += idx * r->view.st[i];
    }
    return off;
}

/* element offset of batch index t (row-major over bs's batch axes) in a dense result that sums
 * its axes of size 1 (d k, d v of kv heads shared by query heads); *first: t is the first index
 * summed there, which writes (the others add) */
static int64_t sum_offset(const pc_lref *r, const pc_shape *bs, int64_t t, bool *first) {
    int64_t off = 0;
    *first = true;
    for (int i = bs->rank - 3; i >= 0; i--) {
        int64_t n = bs->dim[i], idx = t % n;
        t /= n;
        if (r->shape.dim[i] > 1) off += idx * r->view.st[i];
        else if (idx) *first = false;
    }
    return off;
}

/* the heads of a [..., rows, cols] result: the product of its batch axes, 0 if a head is empty */
static int64_t heads_of(pc_shape s) {
    int64_t n = 1;
    for (int i = 0; i < s.rank - 2; i++) n *= s.dim[i];
    return s.dim[s.rank - 2] && s.dim[s.rank - 1] ? n : 0;
}

/* n rounded up to a whole number of vectors */
static int64_t padded(int64_t n) { return (n + 15) / 16 * 16; }

/* floats of q or d o packed as rows of padded(D), or in k quads (D = 8) */
static int64_t packed_rows(int64_t sq, int64_t d) {
    int64_t rows = sq * padded(d), quads = (sq + 3) / 4 * 32;
    return rows > quads ? rows : quads;
}

int64_t pc_ck_attention_scratch(const pc_linsn *I) {
    const pc_lref *k = &I->in[I->call == PC_CALL_ATTN_GRAD ? 2 : 1]; /* k (v for ATTN_GRAD) */
    int R = k->shape.rank;
    int64_t sk = k->shape.dim[R - 2], np = padded(sk), d = k->shape.dim[R - 1];
    int64_t sq = I->in[0].shape.dim[R - 2], fl; /* q's (the result of ATTN*) */
    switch (I->call) {
    case PC_CALL_FLASH: fl = 16 * d + 16 * sk + 16 * np; break; /* qᵀ block, pᵀ block, rows (slow path) */
    case PC_CALL_FLASH_GRAD: /* qᵀ, d oᵀ blocks, pᵀ and gᵀ of the head, q and d o rows, rows (slow path) */
        fl = 32 * d + 2 * sk * padded(sq) + 2 * packed_rows(sq, d) + 16 * np + 16; /* + bcast4's overread */
        break;
    default: fl = (d + 8) * np; break;                                           /* kᵀ (vᵀ), 8 rows */
    }
    return fl * (int64_t)sizeof(float);
}

/* kt[d][j] = k[j, d] for j < n, 0 up to the padded width */
INL void pack_t(float *kt, const float *k, int64_t n, int64_t D, int64_t sj, int64_t sd) {
    int64_t np = padded(n);
    for (int64_t d = 0; d < D; d++) {
        float *row = kt + d * np;
        const float *src = k + d * sd;
        for (int64_t j = 0; j < n; j++) row[j] = src[j * sj];
        for (int64_t j = n; j < np; j++) row[j] = 0.0f;
    }
}

/* rows i < nr (<= 8) of o (row stride so): o[i][j] = alpha * sum_d q[i][d] kt[d][j] for j < jend (a
 * multiple of 16 within the padded width); eight rows at a time keep eight independent chains */
INL void score_rows(float *o, int64_t so, int nr, const float *q, int64_t sqi, int64_t sqd, const float *kt, int64_t np,
                    int64_t D, int64_t jend, float alpha) {
    if (nr == 8) {
        for (int64_t j = 0; j < jend; j += 16) {
            v16f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0}, a5 = {0}, a6 = {0}, a7 = {0};
            for (int64_t d = 0; d < D; d++) {
                v16f k = ld16(kt + d * np + j);
                const float *qd = q + d * sqd;
                a0 += qd[0] * k, a1 += qd[sqi] * k, a2 += qd[2 * sqi] * k, a3 += qd[3 * sqi] * k;
                a4 += qd[4 * sqi] * k, a5 += qd[5 * sqi] * k, a6 += qd[6 * sqi] * k, a7 += qd[7 * sqi] * k;
            }
            st16(o + j, a0 * alpha), st16(o + so + j, a1 * alpha), st16(o + 2 * so + j, a2 * alpha);
            st16(o + 3 * so + j, a3 * alpha), st16(o + 4 * so + j, a4 * alpha), st16(o + 5 * so + j, a5 * alpha);
            st16(o + 6 * so + j, a6 * alpha), st16(o + 7 * so + j, a7 * alpha);
        }
        return;
    }
    for (int r = 0; r < nr; r++)
        for (int64_t j = 0; j < jend; j += 16) {
            v16f a = {0};
            for (int64_t d = 0; d < D; d++) a += q[r * sqi + d * sqd] * ld16(kt + d * np + j);
            st16(o + r * so + j, a * alpha);
        }
}

/* keys of row i that the causal mask keeps (sq = 0: no mask) */
static int64_t valid_keys(int64_t i, int64_t n, int64_t sq) {
    if (sq == 0) return n;
    int64_t v = i + (n - sq) + 1;
    return v < 0 ? 0 : v > n ? n : v;
}

PC_HOT int pc_ck_attention_probs(const pc_ckctx *c) {
    const pc_linsn *I = c->li;
    const pc_lref *q = &I->in[0], *k = &I->in[1];
    pc_shape os = I->out[0].shape;
    int R = os.rank;
    int64_t Sq = os.dim[R - 2], Sk = os.dim[R - 1], D = q->shape.dim[R - 1], np = padded(Sk);
    int64_t heads = heads_of(os);
    const float *Q = c->k.in[0], *K = c->k.in[1];
    float *P = c->k.out, *kt = c->scratch, *rows = kt + D * np;
    float alpha = (float)c->alpha, fill = (float)c->mask->attr[0].f;
    int64_t sqi = q->view.st[R - 2], sqd = q->view.st[R - 1];
    for (int64_t t = 0; t < heads; t++) {
        const float *qh = Q + batch_offset(q, &os, t);
        pack_t(kt, K + batch_offset(k, &os, t), Sk, D, k->view.st[R - 2], k->view.st[R - 1]);
        float *ph = P + t * Sq * Sk;
        for (int64_t i0 = 0; i0 < Sq; i0 += 8) {
            int nr = Sq - i0 < 8 ? (int)(Sq - i0) : 8;
            int64_t jend = padded(valid_keys(i0 + nr - 1, Sk, Sq));
            if (jend <= Sk) score_rows(ph + i0 * Sk, Sk, nr, qh + i0 * sqi, sqi, sqd, kt, np, D, jend, alpha);
            else { /* the last block overhangs the rows: through the row buffer */
                score_rows(rows, np, nr, qh + i0 * sqi, sqi, sqd, kt, np, D, jend, alpha);
                for (int r = 0; r < nr; r++) memcpy(ph + (i0 + r) * Sk, rows + r * np, (size_t)Sk * sizeof *ph);
            }
        }
        pc_ck_softmax_rows(ph, ph, Sq, Sk, Sk, Sq, Sk - Sq, fill, false);
    }
    return 0;
}

/* alpha * [mask](y (g - sum(g y))) per row with g = d o vᵀ computed into a row buffer; keys past
 * the causal limit are computed only where y is not zero there (a mask fill that does not
 * underflow), since they enter the row sum */
PC_HOT int pc_ck_attention_probs_grad(const pc_ckctx *c) {
    const pc_linsn *I = c->li;
    const pc_lref *dor = &I->in[1], *vr = &I->in[2];
    pc_shape os = I->out[0].shape;
    int R = os.rank;
    int64_t Sq = os.dim[R - 2], Sk = os.dim[R - 1], D = dor->shape.dim[R - 1], np = padded(Sk);
    int64_t heads = heads_of(os), msq = c->mask ? Sq : 0;
    const float *Y = c->k.in[0], *DO = c->k.in[1], *V = c->k.in[2];
    float *O = c->k.out, *vt = c->scratch, *g = vt + D * np;
    float af = (float)c->alpha;
    int64_t sdi = dor->view.st[R - 2], sdd = dor->view.st[R - 1];
    for (int64_t t = 0; t < heads; t++) {
        const float *dh = DO + batch_offset(dor, &os, t);
        pack_t(vt, V + batch_offset(vr, &os, t), Sk, D, vr->view.st[R - 2], vr->view.st[R - 1]);
        for (int64_t i0 = 0; i0 < Sq; i0 += 8) {
            int nr = Sq - i0 < 8 ? (int)(Sq - i0) : 8;
            const float *y0 = Y + (t * Sq + i0) * Sk;
            int64_t jend = padded(valid_keys(i0 + nr - 1, Sk, msq));
            for (int r = 0; r < nr && jend < np; r++)
                for (int64_t j = padded(valid_keys(i0 + r, Sk, msq)); j < Sk && jend < np; j++)
                    if (y0[r * Sk + j] != 0.0f) jend = np;
            score_rows(g, np, nr, dh + i0 * sdi, sdi, sdd, vt, np, D, jend, 1.0f);
            int64_t n = jend < Sk ? jend : Sk; /* y is 0 past n */
            for (int r = 0; r < nr; r++) {
                const float *y = y0 + r * Sk, *gr = g + r * np;
                float *o = O + (t * Sq + i0 + r) * Sk;
                int64_t valid = valid_keys(i0 + r, Sk, msq);
                float sf = (float)dot_f32_sum_d(gr, y, n);
                int64_t j = 0;
                for (; j < valid; j++) o[j] = af * (y[j] * (gr[j] - sf));
                for (; j < Sk; j++) o[j] = 0.0f;
            }
        }
    }
    return 0;
}

/* kp[j][d] = k[j, d], rows padded to dp (a multiple of 16) with zeros */
INL void pack_rows(float *kp, const float *k, int64_t n, int64_t D, int64_t dp, int64_t sj, int64_t sd) {
    for (int64_t j = 0; j < n; j++) {
        float *row = kp + j * dp;
        if (sd == 1) memcpy(row, k + j * sj, (size_t)D * sizeof *row);
        else
            for (int64_t d = 0; d < D; d++) row[d] = k[j * sj + d * sd];
        for (int64_t d = D; d < dp; d++) row[d] = 0.0f;
    }
}

/* o[r][d] (+)= sum_{j < jhi} a[r][j] bp[j][d] for rows r < nr (<= 8) and d < D (bp rows of dp);
 * o rows of stride so (dense d); add: o += */
INL void rows_times(float *o, int64_t so, int nr, const float *a, int64_t lda, const float *bp, int64_t dp, int64_t D,
                    int64_t jhi, bool add) {
    for (int64_t d0 = 0; d0 < dp; d0 += 16) {
        v16f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0}, a5 = {0}, a6 = {0}, a7 = {0};
        if (nr == 8)
            for (int64_t j = 0; j < jhi; j++) {
                v16f b = ld16(bp + j * dp + d0);
                const float *aj = a + j;
                a0 += aj[0] * b, a1 += aj[lda] * b, a2 += aj[2 * lda] * b, a3 += aj[3 * lda] * b;
                a4 += aj[4 * lda] * b, a5 += aj[5 * lda] * b, a6 += aj[6 * lda] * b, a7 += aj[7 * lda] * b;
            }
        v16f acc[8] = {a0, a1, a2, a3, a4, a5, a6, a7};
        if (nr != 8)
            for (int r = 0; r < nr; r++)
                for (int64_t j = 0; j < jhi; j++) acc[r] += a[r * lda + j] * ld16(bp + j * dp + d0);
        int64_t w = D - d0 < 16 ? D - d0 : 16;
        for (int r = 0; r < nr; r++)
            if (add)
                for (int64_t x = 0; x < w; x++) o[r * so + d0 + x] += acc[r][x];
            else memcpy(o + r * so + d0, &acc[r], (size_t)w * sizeof(float));
    }
}

/* Head dim 8: products a b with b [K][8] lose half of every vector in rows_times. Here four
 * consecutive k of a row of a are broadcast as a 4-lane group and b is packed in k quads,
 * bq[q] = {b[4q + kk][c] at lane 4c + kk, c < 4} and the same for c = 4..7, so that every lane
 * of every multiply-add is used; a row's 4 partial sums per c are added at the end. */
INL void pack_quads8(float *bq, const float *b, int64_t sbi, int64_t sbd, int64_t n, int64_t nq) {
    int64_t q = 0;
    if (sbd == 1) /* whole quads of dense rows: two rows per vector, one shuffle per half */
        for (; q < nq && 4 * q + 3 < n; q++) {
            const float *b0 = b + 4 * q * sbi;
            v8f r0 = ld8(b0), r1 = ld8(b0 + sbi), r2 = ld8(b0 + 2 * sbi), r3 = ld8(b0 + 3 * sbi);
            v16f r01 = __builtin_shufflevector(r0, r1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            v16f r23 = __builtin_shufflevector(r2, r3, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            st16(bq + q * 32,
                 __builtin_shufflevector(r01, r23, 0, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27));
            st16(bq + q * 32 + 16,
                 __builtin_shufflevector(r01, r23, 4, 12, 20, 28, 5, 13, 21, 29, 6, 14, 22, 30, 7, 15, 23, 31));
        }
    for (; q < nq; q++) {
        float r[4][8];
        for (int kk = 0; kk < 4; kk++)
            for (int c = 0; c < 8; c++) r[kk][c] = 4 * q + kk < n ? b[(4 * q + kk) * sbi + c * sbd] : 0.0f;
        for (int c = 0; c < 8; c++)
            for (int kk = 0; kk < 4; kk++) bq[q * 32 + (c >> 2) * 16 + (c & 3) * 4 + kk] = r[kk][c];
    }
}

/* the sum of each 4-lane group of lo (c = 0..3) and hi (c = 4..7) */
INL v8f quad_sums(v16f lo, v16f hi) {
    v16f a = __builtin_shufflevector(lo, hi, 0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29);
    v16f b = __builtin_shufflevector(lo, hi, 2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31);
    v16f s = a + b;
    return LO8(s) + HI8(s);
}

/* p[0..3] in each 4-lane group: a whole-vector load and an in-register shuffle (GCC 12 spills a
 * 4-float load widened by a shuffle); it reads 12 floats past p, which the scratch has */
INL v16f bcast4(const float *p) {
    v16f v = ld16(p);
    return __builtin_shufflevector(v, v, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3);
}

/* o[r][0..8) (+)= sum over k quads [q0, q1) of a[r][4q..4q+3] bq[q] for rows r < nr (<= 4); o rows
 * so apart; add: o += */
INL void quads_times8(float *o, int64_t so, int nr, const float *a, int64_t lda, const float *bq, int64_t q0,
                      int64_t q1, bool add) {
    v16f l0 = {0}, h0 = {0}, l1 = {0}, h1 = {0}, l2 = {0}, h2 = {0}, l3 = {0}, h3 = {0};
    if (nr == 4)
        for (int64_t q = q0; q < q1; q++) {
            v16f bl = ld16(bq + q * 32), bh = ld16(bq + q * 32 + 16);
            v16f a0 = bcast4(a + 4 * q), a1 = bcast4(a + lda + 4 * q), a2 = bcast4(a + 2 * lda + 4 * q);
            v16f a3 = bcast4(a + 3 * lda + 4 * q);
            l0 += a0 * bl, h0 += a0 * bh, l1 += a1 * bl, h1 += a1 * bh;
            l2 += a2 * bl, h2 += a2 * bh, l3 += a3 * bl, h3 += a3 * bh;
        }
    else
        for (int64_t q = q0; q < q1; q++) {
            v16f bl = ld16(bq + q * 32), bh = ld16(bq + q * 32 + 16), a0 = bcast4(a + 4 * q);
            l0 += a0 * bl, h0 += a0 * bh;
            if (nr > 1) { v16f a1 = bcast4(a + lda + 4 * q); l1 += a1 * bl, h1 += a1 * bh; }
            if (nr > 2) { v16f a2 = bcast4(a + 2 * lda + 4 * q); l2 += a2 * bl, h2 += a2 * bh; }
        }
    v8f r[4] = {quad_sums(l0, h0), quad_sums(l1, h1), quad_sums(l2, h2), quad_sums(l3, h3)};
    for (int i = 0; i < nr && i < 4; i++) {
        if (add) r[i] += ld8(o + so * i);
        memcpy(o + so * i, &r[i], sizeof r[i]);
    }
}

/* ---- flash attention: p never leaves the cache ----
 *
 * A block of 16 query rows goes one row per vector lane: scores, max, exp, sum and scale are
 * lane-wise, with no horizontal reductions on rows of a few dozen keys; the block's
 * probabilities are kept transposed, pt[j] = p[i0 .. i0 + 15][j]. Keys past the block's last
 * causal limit are not computed (their probabilities are 0: the fast path requires the mask's
 * fill to underflow, as the default -1e30 does). A block with a non-finite row or a mild fill
 * goes row by row through the softmax kernel, with its exact semantics. */

typedef struct {
    int64_t Sq, Sk, D, shift; /* shift = Sk - Sq: row i keeps keys j <= i + shift */
    float alpha, fill;
    const float *k; /* the head's k: k[j skj + d skd] */
    int64_t skj, skd;
} fl_head;

/* A 16 x 8 block in registers, two ways: m[k] = rows k and k + 8 (lanes 0-7, 8-15), or m[c] =
 * column c (row r in lane r). Element (r, c) sits in vector k (3 bits) at lane (h, c) in the first
 * form, r = k + 8 h, and in vector c at lane (h, k) in the second: three exchanges of a vector-index
 * bit with a lane bit turn one form into the other, both ways. */
INL void transpose16x8(v16f m[8]) {
    /* the first output: a's lanes with the bit clear, b's in place of the set bit; the second:
     * a's lanes with the bit set in place of the clear bit, b's with it set */
    for (int i = 0; i < 8; i += 2) { /* vector bit 0 <-> lane bit 0 */
        v16f a = m[i], b = m[i + 1];
        m[i] = __builtin_shufflevector(a, b, 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30);
        m[i + 1] = __builtin_shufflevector(a, b, 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31);
    }
    for (int i = 0; i < 8; i += (i & 1) ? 3 : 1) { /* 0, 1, 4, 5: vector bit 1 <-> lane bit 1 */
        v16f a = m[i], b = m[i + 2];
        m[i] = __builtin_shufflevector(a, b, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29);
        m[i + 2] = __builtin_shufflevector(a, b, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
    }
    for (int i = 0; i < 4; i++) { /* vector bit 2 <-> lane bit 2 */
        v16f a = m[i], b = m[i + 4];
        m[i] = __builtin_shufflevector(a, b, 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
        m[i + 4] = __builtin_shufflevector(a, b, 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
    }
}

/* xt[d][lane r] = x[i0 + r][d] for r < nr, 0 in the other lanes; whole blocks of dense rows go
 * eight columns at a time through transpose16x8 */
INL void load_t(float *xt, const float *x, int64_t sxi, int64_t sxd, int64_t i0, int nr, int64_t D) {
    if (nr == 16 && sxd == 1 && D % 8 == 0) {
        const float *x0 = x + i0 * sxi;
        for (int64_t d0 = 0; d0 < D; d0 += 8) {
            v16f m[8];
            for (int k = 0; k < 8; k++) {
                v8f lo = ld8(x0 + k * sxi + d0), hi = ld8(x0 + (k + 8) * sxi + d0);
                m[k] = __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            }
            transpose16x8(m);
            for (int c = 0; c < 8; c++) st16(xt + (d0 + c) * 16, m[c]);
        }
        return;
    }
    for (int64_t d = 0; d < D; d++)
        for (int r = 0; r < 16; r++) xt[d * 16 + r] = r < nr ? x[(i0 + r) * sxi + d * sxd] : 0.0f;
}

/* lanes r whose row i0 + r keeps key j */
INL v16i keeps(const fl_head *h, int64_t j, int64_t i0) { return iota16 >= (int32_t)(j - h->shift - i0); }

/* o[j] (stride ldo) = scale * sum_d x[j, d] yt[d] over lanes, for j < n: eight or four keys at a time,
 * so that that many chains of multiply-adds overlap */
INL void lane_dots(float *o, int64_t ldo, const float *x, int64_t sxj, int64_t sxd, const float *yt, int64_t D,
                   int64_t n, float scale) {
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) { /* eight chains: enough to keep both FMA ports busy */
        v16f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0}, a5 = {0}, a6 = {0}, a7 = {0};
        const float *x0 = x + j * sxj;
        for (int64_t d = 0; d < D; d++) {
            v16f y = ld16(yt + d * 16);
            const float *xd = x0 + d * sxd;
            a0 += xd[0] * y, a1 += xd[sxj] * y, a2 += xd[2 * sxj] * y, a3 += xd[3 * sxj] * y;
            a4 += xd[4 * sxj] * y, a5 += xd[5 * sxj] * y, a6 += xd[6 * sxj] * y, a7 += xd[7 * sxj] * y;
        }
        st16(o + j * ldo, a0 * scale), st16(o + (j + 1) * ldo, a1 * scale);
        st16(o + (j + 2) * ldo, a2 * scale), st16(o + (j + 3) * ldo, a3 * scale);
        st16(o + (j + 4) * ldo, a4 * scale), st16(o + (j + 5) * ldo, a5 * scale);
        st16(o + (j + 6) * ldo, a6 * scale), st16(o + (j + 7) * ldo, a7 * scale);
    }
    for (; j + 4 <= n; j += 4) {
        v16f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        const float *x0 = x + j * sxj;
        for (int64_t d = 0; d < D; d++) {
            v16f y = ld16(yt + d * 16);
            const float *xd = x0 + d * sxd;
            a0 += xd[0] * y, a1 += xd[sxj] * y, a2 += xd[2 * sxj] * y, a3 += xd[3 * sxj] * y;
        }
        st16(o + j * ldo, a0 * scale), st16(o + (j + 1) * ldo, a1 * scale);
        st16(o + (j + 2) * ldo, a2 * scale), st16(o + (j + 3) * ldo, a3 * scale);
    }
    for (; j < n; j++) {
        v16f a = {0};
        for (int64_t d = 0; d < D; d++) a += x[j * sxj + d * sxd] * ld16(yt + d * 16);
        st16(o + j * ldo, a * scale);
    }
}

/* pt[j] (stride ldp) = the probabilities of rows i0.. for keys j < Sk; returns the end of their
 * nonzero part (the last row's causal limit, or Sk after the slow path, which sets *slow) */
INL int64_t probs_block(float *pt, int64_t ldp, const float *qt, const fl_head *h, int64_t D, int64_t i0, int nr,
                        float *rows, bool *slow) {
    int64_t Sk = h->Sk, jmax = valid_keys(i0 + 15 < h->Sq ? i0 + 15 : h->Sq - 1, Sk, h->Sq);
    v16f m = (v16f){0} - INFINITY;
    v16i bad = {0};
    lane_dots(pt, ldp, h->k, h->skj, h->skd, qt, D, jmax, h->alpha);
    for (int64_t j = 0; j < jmax; j++) {
        v16f s = sel16(keeps(h, j, i0), ld16(pt + j * ldp), (v16f){0} + h->fill);
        bad |= s != s;
        m = sel16(s > m, s, m);
        st16(pt + j * ldp, s);
    }
    bool masked = valid_keys(i0, Sk, h->Sq) < Sk;
    if (masked && jmax < Sk) m = sel16(m < h->fill, (v16f){0} + h->fill, m);
    bad |= (m != m) | (m == INFINITY) | (m == -INFINITY);
    if (!hany16(bad) && (!masked || !hany16(exp16(((v16f){0} + h->fill) - m) != 0.0f))) {
        v16f sum = {0};
        for (int64_t j = 0; j < jmax; j++) {
            v16f e = exp16(ld16(pt + j * ldp) - m);
            st16(pt + j * ldp, e);
            sum += e;
        }
        v16f inv = 1.0f / sum;
        for (int64_t j = 0; j < jmax; j++) st16(pt + j * ldp, ld16(pt + j * ldp) * inv);
        for (int64_t j = jmax; j < Sk; j++) st16(pt + j * ldp, (v16f){0});
        return jmax;
    }
    /* slow path: the rows themselves (scores over every key), the softmax kernel, transposed back */
    *slow = true;
    int64_t np = padded(Sk);
    for (int r = 0; r < nr; r++)
        for (int64_t j = 0; j < Sk; j++) {
            float s = 0.0f;
            for (int64_t d = 0; d < D; d++) s += h->k[j * h->skj + d * h->skd] * qt[d * 16 + r];
            rows[r * np + j] = s * h->alpha;
        }
    pc_ck_softmax_rows(rows, rows, nr, Sk, np, h->Sq, h->shift + i0, h->fill, false);
    for (int64_t j = 0; j < Sk; j++)
        for (int r = 0; r < 16; r++) pt[j * ldp + r] = r < nr ? rows[r * np + j] : 0.0f;
    return Sk;
}

/* o[(i0 + r) so + d] = sum_{j < jhi} at[j][r] x[j][d] (x[j sxj + d sxd]) for rows r < nr */
INL void lanes_times(float *o, int64_t so, int64_t i0, int nr, const float *at, int64_t lda, const float *x,
                     int64_t sxj, int64_t sxd, int64_t D, int64_t jhi) {
    for (int64_t d0 = 0; d0 < D; d0 += 8) {
        v16f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0}, a5 = {0}, a6 = {0}, a7 = {0};
        int64_t nd = D - d0 < 8 ? D - d0 : 8;
        if (nd == 8)
            for (int64_t j = 0; j < jhi; j++) {
                v16f a = ld16(at + j * lda);
                const float *xj = x + j * sxj + d0 * sxd;
                a0 += xj[0] * a, a1 += xj[sxd] * a, a2 += xj[2 * sxd] * a, a3 += xj[3 * sxd] * a;
                a4 += xj[4 * sxd] * a, a5 += xj[5 * sxd] * a, a6 += xj[6 * sxd] * a, a7 += xj[7 * sxd] * a;
            }
        else
            for (int64_t j = 0; j < jhi; j++) { /* a tail of fewer than 8 */
                v16f a = ld16(at + j * lda);
                const float *xj = x + j * sxj + d0 * sxd;
                a0 += xj[0] * a;
                if (nd > 1) a1 += xj[sxd] * a;
                if (nd > 2) a2 += xj[2 * sxd] * a;
                if (nd > 3) a3 += xj[3 * sxd] * a;
                if (nd > 4) a4 += xj[4 * sxd] * a;
                if (nd > 5) a5 += xj[5 * sxd] * a;
                if (nd > 6) a6 += xj[6 * sxd] * a;
            }
        v16f acc[8] = {a0, a1, a2, a3, a4, a5, a6, a7};
        if (nd == 8) { /* columns to rows in registers */
            transpose16x8(acc);
            for (int k = 0; k < 8 && k < nr; k++) {
                v8f lo = LO8(acc[k]), hi = HI8(acc[k]);
                memcpy(o + (i0 + k) * so + d0, &lo, sizeof lo);
                if (k + 8 < nr) memcpy(o + (i0 + k + 8) * so + d0, &hi, sizeof hi);
            }
        } else
            for (int r = 0; r < nr; r++)
                for (int64_t dd = 0; dd < nd; dd++) o[(i0 + r) * so + d0 + dd] = acc[dd][r];
    }
}

/* the kernels' bodies take the head dim as an argument: called with a constant, the inner
 * loops over d unroll */
INL void flash_fwd(const pc_ckctx *c, int64_t D) {
    const pc_linsn *I = c->li;
    const pc_lref *q = &I->in[0], *k = &I->in[1], *v = &I->in[2];
    pc_shape os = I->out[0].shape;
    int R = os.rank;
    int64_t Sq = os.dim[R - 2], Sk = k->shape.dim[R - 2];
    int64_t heads = heads_of(os);
    const float *Q = c->k.in[0], *K = c->k.in[1], *V = c->k.in[2];
    float *O = c->k.out, *qt = c->scratch, *pt = qt + 16 * D, *rows = pt + 16 * Sk;
    fl_head h = {Sq, Sk, D, Sk - Sq, (float)c->alpha, (float)c->mask->attr[0].f, NULL, k->view.st[R - 2], k->view.st[R - 1]};
    int64_t so = I->out[0].view.st[R - 2]; /* o's rows (dense d), perhaps laid out [.., S, H, D] */
    for (int64_t t = 0; t < heads; t++) {
        const float *qh = Q + batch_offset(q, &os, t), *vh = V + batch_offset(v, &os, t);
        float *oh = O + batch_offset(&I->out[0], &os, t);
        h.k = K + batch_offset(k, &os, t);
        for (int64_t i0 = 0; i0 < Sq; i0 += 16) {
            int nr = Sq - i0 < 16 ? (int)(Sq - i0) : 16;
            load_t(qt, qh, q->view.st[R - 2], q->view.st[R - 1], i0, nr, D);
            bool slow = false;
            int64_t hi = probs_block(pt, 16, qt, &h, D, i0, nr, rows, &slow);
            lanes_times(oh, so, i0, nr, pt, 16, vh, v->view.st[R - 2], v->view.st[R - 1], D, hi);
        }
    }
}

/* Denormal operands cost an assist per instruction on Intel cores: a head whose probabilities
 * reach the denormal range (p (d p - s) below 1.2e-38) ran 1.7x slower. The flash kernels run
 * with denormals flushed to zero (each flushed value is below 1.2e-38; a result made only of such
 * terms, times the other operands, loses them: 1.3e-35 in tests/unit/test_attention.c) and restore the
 * caller's mode. */
#if defined(__SSE__)
#include <xmmintrin.h>
#define FTZ_BEGIN unsigned csr_ = _mm_getcsr(); _mm_setcsr(csr_ | 0x8040); /* FTZ | DAZ */
#define FTZ_END _mm_setcsr(csr_);
#else
#define FTZ_BEGIN
#define FTZ_END
#endif

/* body(c, D) with denormals flushed, D a constant for the common head dims */
#define WITH_HEAD_DIM(body, c)                                                                     \
    do {                                                                                           \
        int64_t D_ = (c)->li->out[0].shape.dim[(c)->li->out[0].shape.rank - 1];                    \
        FTZ_BEGIN                                                                                  \
        if (D_ == 8) body(c, 8);                                                                   \
        else if (D_ == 16) body(c, 16);                                                            \
        else body(c, D_);                                                                          \
        FTZ_END                                                                                    \
    } while (0)

PC_HOT int pc_ck_flash_attention(const pc_ckctx *c) {
    WITH_HEAD_DIM(flash_fwd, c);
    return 0;
}

/* d q = g k, d k = gᵀ q, d v = pᵀ d o with p recomputed and g = alpha2 [mask2](p (d p - sum(d p p)))
 * for d p = d o vᵀ. The head's pᵀ and gᵀ are kept ([Sk][Sq rounded up to 16]) for d k and d v,
 * which then run as rows of keys times q and d o. */
INL void flash_bwd(const pc_ckctx *c, int64_t D) {
    const pc_linsn *I = c->li;
    const pc_lref *q = &I->in[0], *k = &I->in[1], *v = &I->in[2], *dor = &I->in[3];
    pc_shape os = dor->shape; /* the batch axes: d o has them all (d k, d v may sum some) */
    int R = os.rank;
    int64_t Sq = q->shape.dim[R - 2], Sk = k->shape.dim[R - 2], sqp = padded(Sq), dp = padded(D);
    int64_t heads = 1;
    for (int i = 0; i < R - 2; i++) heads *= os.dim[i];
    const float *Q = c->k.in[0], *K = c->k.in[1], *V = c->k.in[2], *DO = c->k.in[3];
    float *res[3] = {NULL, NULL, NULL}, *next[3] = {c->k.out, c->outs[0], c->outs[1]};
    const pc_lref *ref[3] = {NULL, NULL, NULL};
    for (int i = 0, n = 0; i < 3; i++) /* the results present, in order */
        if (I->outmask & (1u << i)) ref[i] = &I->out[n], res[i] = next[n++];
    float *DQ = res[0], *DK = res[1], *DV = res[2];
    /* the results' rows (dense d), perhaps laid out [.., S, H, D] (lower.c transposed_layout) */
    int64_t soq = DQ ? ref[0]->view.st[R - 2] : 0, sok = DK ? ref[1]->view.st[R - 2] : 0;
    int64_t sov = DV ? ref[2]->view.st[R - 2] : 0;
    float *qt = c->scratch, *dot = qt + 16 * D, *pT = dot + 16 * D, *gT = pT + Sk * sqp, *qp = gT + Sk * sqp;
    float *dop = qp + packed_rows(Sq, D), *rows = dop + packed_rows(Sq, D);
    float af = (float)c->alpha2;
    bool mask2 = c->mask2 != NULL;
    int64_t sqi = q->view.st[R - 2], sqd = q->view.st[R - 1], sdi = dor->view.st[R - 2], sdd = dor->view.st[R - 1];
    int64_t svj = v->view.st[R - 2], svd = v->view.st[R - 1];
    fl_head h = {Sq, Sk, D, Sk - Sq, (float)c->alpha, (float)c->mask->attr[0].f, NULL, k->view.st[R - 2], k->view.st[R - 1]};
    for (int64_t t = 0; t < heads; t++) {
        const float *qh = Q + batch_offset(q, &os, t), *dh = DO + batch_offset(dor, &os, t);
        const float *vh = V + batch_offset(v, &os, t);
        float *dqh = DQ ? DQ + batch_offset(ref[0], &os, t) : NULL;
        h.k = K + batch_offset(k, &os, t);
        bool causal_zeros = true; /* pᵀ and gᵀ are 0 past every row's causal limit */
        for (int64_t i0 = 0; i0 < Sq; i0 += 16) {
            int nr = Sq - i0 < 16 ? (int)(Sq - i0) : 16;
            load_t(qt, qh, sqi, sqd, i0, nr, D);
            load_t(dot, dh, sdi, sdd, i0, nr, D);
            float *pt = pT + i0, *gt = gT + i0;
            bool slow = false;
            int64_t hi = probs_block(pt, sqp, qt, &h, D, i0, nr, rows, &slow);
            if (slow) causal_zeros = false;
            if (nr < 16) /* lanes past Sq: 0, so that d k and d v may run over whole quads */
                for (int64_t j = 0; j < Sk; j++) st16(pt + j * sqp, sel16(iota16 < nr, ld16(pt + j * sqp), (v16f){0}));
            if (!DQ && !DK) continue; /* d v only: p is all it needs */
            lane_dots(gt, sqp, vh, svj, svd, dot, D, hi, 1.0f); /* d p, then its row sums with p */
            v16f s0 = {0}, s1 = {0};
            for (int64_t j = 0; j < hi; j++) {
                v16f e = ld16(gt + j * sqp) * ld16(pt + j * sqp);
                if (j & 1) s1 += e;
                else s0 += e;
            }
            v16f s = s0 + s1;
            for (int64_t j = 0; j < hi; j++) { /* y is 0 in the lanes past Sq: so is g */
                v16f y = ld16(pt + j * sqp), g = (ld16(gt + j * sqp) - s) * y * af;
                st16(gt + j * sqp, mask2 ? sel16(keeps(&h, j, i0), g, (v16f){0}) : g);
            }
            for (int64_t j = hi; j < Sk; j++) st16(gt + j * sqp, (v16f){0});
            if (DQ) lanes_times(dqh, soq, i0, nr, gt, sqp, h.k, h.skj, h.skd, D, hi); /* d q = g k */
        }
        /* d v = pᵀ d o, d k = gᵀ q: eight keys at a time against the head's rows of d o and q
         * (rows before a key's first query hold zeros and are skipped); summed over the heads
         * that share a kv head where d k, d v are */
        bool kfirst = true, vfirst = true;
        float *dkh = DK ? DK + sum_offset(ref[1], &os, t, &kfirst) : NULL;
        float *dvh = DV ? DV + sum_offset(ref[2], &os, t, &vfirst) : NULL;
        if (D == 8) { /* whole vectors: k quads (pᵀ, gᵀ are 0 past Sq up to the padded width) */
            int64_t nq = (Sq + 3) / 4;
            if (DV) pack_quads8(dop, dh, sdi, sdd, Sq, nq);
            if (DK) pack_quads8(qp, qh, sqi, sqd, Sq, nq);
            for (int64_t j0 = 0; j0 < Sk; j0 += 4) {
                int nj = Sk - j0 < 4 ? (int)(Sk - j0) : 4;
                int64_t i_lo = causal_zeros && j0 - h.shift > 0 ? j0 - h.shift : 0, q0 = i_lo / 4;
                if (q0 > nq) q0 = nq;
                if (DV) quads_times8(dvh + j0 * sov, sov, nj, pT + j0 * sqp, sqp, dop, q0, nq, !vfirst);
                if (DK) quads_times8(dkh + j0 * sok, sok, nj, gT + j0 * sqp, sqp, qp, q0, nq, !kfirst);
            }
            continue;
        }
        if (DV) pack_rows(dop, dh, Sq, D, dp, sdi, sdd);
        if (DK) pack_rows(qp, qh, Sq, D, dp, sqi, sqd);
        for (int64_t j0 = 0; j0 < Sk; j0 += 8) {
            int nj = Sk - j0 < 8 ? (int)(Sk - j0) : 8;
            int64_t i_lo = causal_zeros && j0 - h.shift > 0 ? j0 - h.shift : 0;
            if (i_lo > Sq) i_lo = Sq;
            if (DV)
                rows_times(dvh + j0 * sov, sov, nj, pT + j0 * sqp + i_lo, sqp, dop + i_lo * dp, dp, D, Sq - i_lo, !vfirst);
            if (DK)
                rows_times(dkh + j0 * sok, sok, nj, gT + j0 * sqp + i_lo, sqp, qp + i_lo * dp, dp, D, Sq - i_lo, !kfirst);
        }
    }
}

PC_HOT int pc_ck_flash_attention_grad(const pc_ckctx *c) {
    WITH_HEAD_DIM(flash_bwd, c);
    return 0;
}
