/* Reference kernels, part 2: matmul and kron, layout ops, embedding, rope, causal mask and
 * cross-entropy. */
#include "ref_internal.h"
#include "ir/rope.h"
#include "runtime/bf16.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- matmul ---- */

/* c[j] += a * b[j]; unrolled so that the compiler vectorizes it at -O2 (each c[j] still
 * accumulates in the same order) */
static void axpy_row(float *restrict c, float a, const float *restrict b, int64_t n) {
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        c[j] += a * b[j];
        c[j + 1] += a * b[j + 1];
        c[j + 2] += a * b[j + 2];
        c[j + 3] += a * b[j + 3];
        c[j + 4] += a * b[j + 4];
        c[j + 5] += a * b[j + 5];
        c[j + 6] += a * b[j + 6];
        c[j + 7] += a * b[j + 7];
    }
    for (; j < n; j++) c[j] += a * b[j];
}

/* four output rows at once: c_r[j] += a_r * b[j] (each c_r[j] accumulates in the same order
 * as with one row at a time) */
static void axpy_4rows(float *restrict c0, float *restrict c1, float *restrict c2, float *restrict c3, float a0,
                       float a1, float a2, float a3, const float *restrict b, int64_t n) {
    int64_t j = 0;
#define ROW4(c, a)                                                                                 \
    c[j] += a * b[j];                                                                              \
    c[j + 1] += a * b[j + 1];                                                                      \
    c[j + 2] += a * b[j + 2];                                                                      \
    c[j + 3] += a * b[j + 3];
    for (; j + 4 <= n; j += 4) {
        ROW4(c0, a0)
        ROW4(c1, a1)
        ROW4(c2, a2)
        ROW4(c3, a3)
    }
#undef ROW4
    for (; j < n; j++) {
        float bj = b[j];
        c0[j] += a0 * bj;
        c1[j] += a1 * bj;
        c2[j] += a2 * bj;
        c3[j] += a3 * bj;
    }
}

/* C[M,N] = A[M,K] B[K,N] where A(i,k) = a[i*ai + k*ak] and b is a contiguous [K,N] matrix:
 * i-k-j order, k ascending, f32 accumulation in the output row (like a BLAS). */
static void gemm_rows(float *c, const float *a, int64_t ai, int64_t ak, const float *b, int64_t m, int64_t kk,
                      int64_t n) {
    for (int64_t j = 0; j < m * n; j++) c[j] = 0.0f;
    int64_t i = 0;
    for (; i + 4 <= m; i += 4) {
        float *c0 = c + i * n;
        for (int64_t p = 0; p < kk; p++) {
            const float *ap = a + i * ai + p * ak;
            axpy_4rows(c0, c0 + n, c0 + 2 * n, c0 + 3 * n, ap[0], ap[ai], ap[2 * ai], ap[3 * ai], b + p * n, n);
        }
    }
    for (; i < m; i++)
        for (int64_t p = 0; p < kk; p++) axpy_row(c + i * n, a[i * ai + p * ak], b + p * n, n);
}

int ref_matmul(const ref_kctx *k) {
    pc_shape as = ref_ishape(k, 0), bs = ref_ishape(k, 1), os = k->node->shape;
    bool ta = ref_attr(k, 0)->i != 0, tb = ref_attr(k, 1)->i != 0;
    int64_t ar = as.dim[as.rank - 2], ac = as.dim[as.rank - 1];
    int64_t br = bs.dim[bs.rank - 2], bc = bs.dim[bs.rank - 1];
    int64_t m = ta ? ac : ar, kk = ta ? ar : ac, n = tb ? br : bc;
    /* A(i,p): row-major [ar, ac]; transposed reads a[p*ac + i] */
    int64_t ai = ta ? 1 : ac, ak = ta ? ac : 1;
    /* batch: broadcast strides of the batch axes, counted in matrices */
    pc_shape ob = os, ab = as, bb = bs;
    ob.rank -= 2;
    ab.rank -= 2;
    bb.rank -= 2;
    int64_t sta[PC_MAX_RANK] = {0}, stb[PC_MAX_RANK] = {0};
    ref_bcast_strides(ab, ob, sta);
    ref_bcast_strides(bb, ob, stb);
    int64_t nbatch = pc_shape_numel(ob), amat = ar * ac, bmat = br * bc, omat = m * n;
    const float *a = ref_inf(k, 0), *b = ref_inf(k, 1);
    float *a32 = NULL, *b32 = NULL;
    if (ref_idtype(k, 0) == PC_BF16) { /* bf16 x bf16: exact f32 copies, products exact, f32 sums */
        size_t na = (size_t)pc_shape_numel(as), nb = (size_t)pc_shape_numel(bs);
        a32 = malloc((na ? na : 1) * sizeof *a32), b32 = malloc((nb ? nb : 1) * sizeof *b32);
        if (!a32 || !b32) { free(a32); free(b32); return ref_fail(k, "out of memory"); }
        pc_bf16_to_f32_n(k->in[0], a32, na);
        pc_bf16_to_f32_n(k->in[1], b32, nb);
        a = a32, b = b32;
    }
    float *bt = NULL; /* b transposed to [K, N] when transpose_b */
    int64_t bt_of = -1;
    if (tb && kk * n > 0 && !(bt = malloc((size_t)(kk * n) * sizeof *bt))) {
        free(a32);
        free(b32);
        return ref_fail(k, "out of memory");
    }
    for (int64_t t = 0; t < nbatch; t++) {
        int64_t rem = t, aoff = 0, boff = 0;
        for (int d = ob.rank - 1; d >= 0; d--) {
            int64_t id = rem % ob.dim[d];
            rem /= ob.dim[d];
            aoff += id * sta[d];
            boff += id * stb[d];
        }
        const float *am = a + aoff * amat, *bm = b + boff * bmat;
        if (tb && bt) {
            if (boff != bt_of) {
                for (int64_t j = 0; j < n; j++)
                    for (int64_t p = 0; p < kk; p++) bt[p * n + j] = bm[j * kk + p];
                bt_of = boff;
            }
            bm = bt;
        }
        gemm_rows(ref_outf(k) + t * omat, am, ai, ak, bm, m, kk, n);
    }
    free(bt);
    free(a32);
    free(b32);
    return 0;
}

/* kron(a [m,n], b [p,q])[i*p + r, j*q + s] = a[i,j] * b[r,s] */
int ref_kron(const ref_kctx *k) {
    pc_shape as = ref_ishape(k, 0), bs = ref_ishape(k, 1);
    int64_t m = as.dim[0], n = as.dim[1], p = bs.dim[0], q = bs.dim[1], cols = n * q;
    const float *a = ref_inf(k, 0), *b = ref_inf(k, 1);
    float *o = ref_outf(k);
    for (int64_t i = 0; i < m; i++)
        for (int64_t r = 0; r < p; r++)
            for (int64_t j = 0; j < n; j++)
                for (int64_t s = 0; s < q; s++) o[(i * p + r) * cols + j * q + s] = a[i * n + j] * b[r * q + s];
    return 0;
}

/* ---- layout (dtype-agnostic: 4-byte elements) ---- */

int ref_reshape(const ref_kctx *k) {
    memcpy(k->out, k->in[0], (size_t)pc_shape_numel(k->node->shape) * pc_dtype_size(k->node->dtype));
    return 0;
}

/* copies operand 0 read through strides st (per output axis) into the contiguous output */
static void strided_copy(const ref_kctx *k, const int64_t src_st[PC_MAX_RANK]) {
    int64_t st[2][PC_MAX_RANK];
    pc_shape os = k->node->shape;
    ref_contig_strides(os, st[0]);
    for (int i = 0; i < os.rank; i++) st[1][i] = src_st[i];
    ref_iter it;
    ref_iter_init(&it, os, 2, (const int64_t(*)[PC_MAX_RANK])st);
    const uint32_t *x = k->in[0];
    uint32_t *o = k->out;
    int64_t sx = it.st[1][it.rank - 1];
    for (int64_t r = 0; r < it.nrows; r++, ref_iter_next(&it))
        for (int64_t j = 0; j < it.len; j++) o[it.off[0] + j] = x[it.off[1] + j * sx];
}

int ref_transpose(const ref_kctx *k) {
    pc_shape in = ref_ishape(k, 0);
    const pc_attr *perm = ref_attr(k, 0);
    int64_t cs[PC_MAX_RANK], st[PC_MAX_RANK] = {0};
    ref_contig_strides(in, cs);
    for (int i = 0; i < in.rank; i++) st[i] = cs[perm->ints[i]];
    strided_copy(k, st);
    return 0;
}

int ref_broadcast(const ref_kctx *k) {
    int64_t st[PC_MAX_RANK] = {0};
    ref_bcast_strides(ref_ishape(k, 0), k->node->shape, st);
    strided_copy(k, st);
    return 0;
}

/* outer = product of the axes before ax, inner = after it (elements) */
static void split_axis(pc_shape s, int64_t ax, int64_t *outer, int64_t *inner) {
    *outer = 1;
    *inner = 1;
    for (int i = 0; i < ax; i++) *outer *= s.dim[i];
    for (int i = (int)ax + 1; i < s.rank; i++) *inner *= s.dim[i];
}

int ref_slice(const ref_kctx *k) {
    pc_shape in = ref_ishape(k, 0);
    int64_t ax = pc_norm_axis(ref_attr(k, 0)->i, in.rank), start = ref_attr(k, 1)->i, end = ref_attr(k, 2)->i;
    int64_t outer, inner, es = (int64_t)pc_dtype_size(k->node->dtype);
    split_axis(in, ax, &outer, &inner);
    int64_t len = (end - start) * inner;
    const char *x = k->in[0];
    char *o = k->out;
    for (int64_t i = 0; i < outer; i++)
        if (len > 0) memcpy(o + i * len * es, x + (i * in.dim[ax] + start) * inner * es, (size_t)(len * es));
    return 0;
}

int ref_pad(const ref_kctx *k) {
    pc_shape in = ref_ishape(k, 0), os = k->node->shape;
    int64_t ax = pc_norm_axis(ref_attr(k, 0)->i, in.rank), before = ref_attr(k, 1)->i;
    int64_t outer, inner, es = (int64_t)pc_dtype_size(k->node->dtype);
    split_axis(in, ax, &outer, &inner);
    int64_t len = in.dim[ax] * inner;
    memset(k->out, 0, (size_t)(pc_shape_numel(os) * es)); /* 0.0f and 0 are all-zero bits */
    const char *x = k->in[0];
    char *o = k->out;
    for (int64_t i = 0; i < outer; i++)
        if (len > 0) memcpy(o + (i * os.dim[ax] + before) * inner * es, x + i * len * es, (size_t)(len * es));
    return 0;
}

int ref_concat(const ref_kctx *k) {
    pc_shape os = k->node->shape;
    int64_t ax = pc_norm_axis(ref_attr(k, 0)->i, os.rank);
    int64_t outer, inner, es = (int64_t)pc_dtype_size(k->node->dtype), at = 0;
    split_axis(os, ax, &outer, &inner);
    char *o = k->out;
    for (int t = 0; t < k->node->nin; t++) {
        int64_t d = ref_ishape(k, t).dim[ax], len = d * inner;
        const char *x = k->in[t];
        for (int64_t i = 0; i < outer; i++)
            if (len > 0) memcpy(o + (i * os.dim[ax] + at) * inner * es, x + i * len * es, (size_t)(len * es));
        at += d;
    }
    return 0;
}

/* ---- embedding ---- */

/* "index [1,7]" for flat index i of shape s */
static void index_str(pc_shape s, int64_t i, char *buf, size_t len) {
    int64_t idx[PC_MAX_RANK];
    for (int d = s.rank - 1; d >= 0; d--) {
        idx[d] = s.dim[d] ? i % s.dim[d] : 0;
        i = s.dim[d] ? i / s.dim[d] : 0;
    }
    size_t o = (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < s.rank; d++)
        o += (size_t)snprintf(buf + (o < len ? o : len), o < len ? len - o : 0, "%s%lld", d ? "," : "", (long long)idx[d]);
    snprintf(buf + (o < len ? o : len), o < len ? len - o : 0, "]");
}

int ref_embedding(const ref_kctx *k) {
    pc_shape ts = ref_ishape(k, 0), is = ref_ishape(k, 1);
    int64_t rows = ts.dim[0], d = ts.dim[1], n = pc_shape_numel(is);
    const float *t = ref_inf(k, 0);
    const int32_t *ids = ref_ini(k, 1);
    float *o = ref_outf(k);
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= rows) {
            char where[96];
            index_str(is, i, where, sizeof where);
            return ref_fail(k, "id %d at index %s of %%%s is out of range [0, %lld)", ids[i], where,
                            ref_opnd(k, 1)->name, (long long)rows);
        }
        if (d <= 0) continue;
        if (ref_idtype(k, 0) == PC_BF16) pc_bf16_to_f32_n((const uint16_t *)k->in[0] + (int64_t)ids[i] * d, o + i * d, (size_t)d);
        else memcpy(o + i * d, t + (int64_t)ids[i] * d, (size_t)d * sizeof *o);
    }
    return 0;
}

/* scatter-add of the gradient rows into [rows, D], accumulated in double */
int ref_embedding_grad(const ref_kctx *k) {
    pc_shape is = ref_ishape(k, 0);
    int64_t rows = ref_attr(k, 0)->i, d = k->node->shape.dim[1], n = pc_shape_numel(is);
    const int32_t *ids = ref_ini(k, 0);
    const float *g = ref_inf(k, 1);
    double *acc = calloc((size_t)(rows * d > 0 ? rows * d : 1), sizeof *acc);
    if (!acc) return ref_fail(k, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= rows) {
            char where[96];
            index_str(is, i, where, sizeof where);
            free(acc);
            return ref_fail(k, "id %d at index %s of %%%s is out of range [0, %lld)", ids[i], where,
                            ref_opnd(k, 0)->name, (long long)rows);
        }
        double *dst = acc + (int64_t)ids[i] * d;
        for (int64_t j = 0; j < d; j++) dst[j] += g[i * d + j];
    }
    for (int64_t i = 0; i < rows * d; i++) ref_outf(k)[i] = (float)acc[i];
    free(acc);
    return 0;
}

/* ---- rope: x [..., S, H, D], pos i32 [S] or [..., S] ---- */

int ref_rope(const ref_kctx *k) {
    pc_shape xs = k->node->shape, ps = ref_ishape(k, 1);
    int style = (int)ref_attr(k, 1)->i;
    double sign = ref_attr(k, 2)->i ? -1.0 : 1.0;
    int64_t d = xs.dim[xs.rank - 1], h = xs.dim[xs.rank - 2], s = xs.dim[xs.rank - 3], half = d / 2;
    int64_t rows = 1; /* positions: the leading axes up to S, flattened */
    for (int i = 0; i < xs.rank - 2; i++) rows *= xs.dim[i];
    const float *x = ref_inf(k, 0);
    const int32_t *pos = ref_ini(k, 1);
    float *o = ref_outf(k);
    double *cs = malloc((size_t)(half ? half : 1) * 2 * sizeof *cs);
    if (!cs) return ref_fail(k, "out of memory");
    for (int64_t t = 0; t < rows; t++) {
        int64_t pi = ps.rank == 1 ? t % (s ? s : 1) : t;
        int32_t p = pos[pi];
        if (p < 0) {
            char where[96];
            index_str(ps, pi, where, sizeof where);
            free(cs);
            return ref_fail(k, "position %d at index %s of %%%s is negative", p, where, ref_opnd(k, 1)->name);
        }
        for (int64_t i = 0; i < half; i++) {
            double ang = sign * (double)p * pc_rope_inv_freq(k->node->attr, i, d);
            cs[2 * i] = cos(ang);
            cs[2 * i + 1] = sin(ang);
        }
        for (int64_t hh = 0; hh < h; hh++) {
            const float *xv = x + (t * h + hh) * d;
            float *ov = o + (t * h + hh) * d;
            for (int64_t i = 0; i < half; i++) {
                int64_t i0 = style == 0 ? 2 * i : i, i1 = style == 0 ? 2 * i + 1 : i + half;
                double c = cs[2 * i], sn = cs[2 * i + 1], x0 = xv[i0], x1 = xv[i1];
                ov[i0] = (float)(x0 * c - x1 * sn);
                ov[i1] = (float)(x0 * sn + x1 * c);
            }
        }
    }
    free(cs);
    return 0;
}

/* ---- causal mask: scores [..., Sq, Sk], (i, j) -> fill when j > i + (Sk - Sq) ---- */

int ref_causal_mask(const ref_kctx *k) {
    pc_shape s = k->node->shape;
    int64_t sq = s.dim[s.rank - 2], sk = s.dim[s.rank - 1], mats = sq * sk > 0 ? pc_shape_numel(s) / (sq * sk) : 0;
    float fill = (float)ref_attr(k, 0)->f;
    const float *x = ref_inf(k, 0);
    float *o = ref_outf(k);
    for (int64_t b = 0; b < mats; b++)
        for (int64_t i = 0; i < sq; i++)
            for (int64_t j = 0; j < sk; j++) {
                int64_t at = (b * sq + i) * sk + j;
                o[at] = j > i + (sk - sq) ? fill : x[at];
            }
    return 0;
}

/* ---- cross-entropy: logits [..., V], targets i32 [...] ---- */

/* validates the targets; returns the number of non-ignored ones, or -1 */
static int64_t ce_count(const ref_kctx *k, int64_t rows, int64_t v, int64_t ignore) {
    const int32_t *t = ref_ini(k, 1);
    int64_t count = 0;
    for (int64_t r = 0; r < rows; r++) {
        if (t[r] == ignore) continue;
        if (t[r] < 0 || t[r] >= v) {
            char where[96];
            index_str(ref_ishape(k, 1), r, where, sizeof where);
            ref_fail(k, "target %d at index %s of %%%s is out of range [0, %lld) and is not the ignore_index %lld", t[r],
                     where, ref_opnd(k, 1)->name, (long long)v, (long long)ignore);
            return -1;
        }
        count++;
    }
    return count;
}

/* log-sum-exp of a row, in double */
static double row_lse(const float *x, int64_t v) {
    double m = -INFINITY;
    for (int64_t j = 0; j < v; j++)
        if (x[j] > m || isnan(x[j])) m = x[j];
    if (isinf(m) && m < 0) return m; /* empty row or all -inf */
    double s = 0;
    for (int64_t j = 0; j < v; j++) {
        double d = (double)x[j] - m;
        s += d < -746.0 ? 0.0 : exp(d); /* skips libm's slow underflow path */
    }
    return m + log(s);
}

int ref_cross_entropy(const ref_kctx *k) {
    pc_shape ls = ref_ishape(k, 0);
    int64_t v = ls.dim[ls.rank - 1], rows = pc_shape_numel(ref_ishape(k, 1));
    int64_t ignore = ref_attr(k, 0)->i, red = ref_attr(k, 1)->i;
    int64_t count = ce_count(k, rows, v, ignore);
    if (count < 0) return -1;
    const float *x = ref_inf(k, 0);
    const int32_t *t = ref_ini(k, 1);
    double total = 0;
    for (int64_t r = 0; r < rows; r++) {
        double l = 0;
        if (t[r] != ignore) l = row_lse(x + r * v, v) - (double)x[r * v + t[r]];
        if (red == 2) ref_outf(k)[r] = (float)l;
        else total += l;
    }
    if (red == 0) ref_outf(k)[0] = count ? (float)(total / (double)count) : 0.0f;
    else if (red == 1) ref_outf(k)[0] = (float)total;
    return 0;
}

/* d logits = (softmax - onehot) * scale, zero rows for ignored targets;
 * scale = g/count (mean), g (sum), g[row] (none) */
int ref_cross_entropy_grad(const ref_kctx *k) {
    pc_shape ls = ref_ishape(k, 0);
    int64_t v = ls.dim[ls.rank - 1], rows = pc_shape_numel(ref_ishape(k, 1));
    int64_t ignore = ref_attr(k, 0)->i, red = ref_attr(k, 1)->i;
    int64_t count = ce_count(k, rows, v, ignore);
    if (count < 0) return -1;
    const float *x = ref_inf(k, 0), *g = ref_inf(k, 2);
    const int32_t *t = ref_ini(k, 1);
    float *o = ref_outf(k);
    for (int64_t r = 0; r < rows; r++) {
        float *orow = o + r * v;
        if (t[r] == ignore) {
            for (int64_t j = 0; j < v; j++) orow[j] = 0.0f;
            continue;
        }
        double scale = red == 0 ? (double)g[0] / (double)count : red == 1 ? (double)g[0] : (double)g[r];
        const float *xr = x + r * v;
        double lse = row_lse(xr, v);
        for (int64_t j = 0; j < v; j++) {
            double p = exp((double)xr[j] - lse) - (j == t[r] ? 1.0 : 0.0);
            orow[j] = (float)(p * scale);
        }
    }
    return 0;
}
