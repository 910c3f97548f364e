/* C kernels of the compiled backend's CALL instructions: the reference kernels' semantics
 * (backend/ref_internal.h) with contiguous, vectorizable inner loops, no allocation (scratch
 * comes from the arena) and float math where the result stays within ~1e-6 relative of the
 * reference (reductions accumulate in double). A kernel that meets bad data (an id out of
 * range) hands over to the reference kernel, which reports the identical error. Ops without a
 * fast kernel run the reference kernel itself. */
#include "backend/compiled_internal.h"
#include "ir/rope.h"

#include "runtime/bf16.h"
#include "runtime/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* exp(x) for x <= 0 in float (Cephes expf polynomial, ~1e-7 relative); 0 below -87.3 */
INL float exp_le0f(float x) {
    float x0 = x;
    x = x < -88.0f ? -88.0f : x; /* keeps the float -> int conversion defined */
    float t = x * 1.44269504088896341f;
    float n = (t + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500E-4f;
    p = p * r + 1.3981999507E-3f;
    p = p * r + 8.3334519073E-3f;
    p = p * r + 4.1665795894E-2f;
    p = p * r + 1.6666665459E-1f;
    p = p * r + 5.0000001201E-1f;
    p = p * r * r + r + 1.0f;
    union { int32_t i; float f; } u;
    u.i = ((int32_t)n + 127) << 23;
    return x0 < -87.33654f ? 0.0f : p * u.f;
}

static const float *inf_(const ref_kctx *k, int i) { return (const float *)k->in[i]; }

/* ---- row kernels ---- */

/* entries j >= valid of a row read as `fill` (the causal mask; valid = n: no mask) */
INL v16f row_ld(const float *x, int64_t j, int64_t valid, float fill) {
    v16f v = ld16(x + j);
    return j + 16 <= valid ? v : sel16(iota16 + (int32_t)j < (int32_t)valid, v, (v16f){0} + fill);
}

/* max of a row; *nan set when it holds a NaN */
INL float row_max(const float *x, int64_t n, int64_t valid, float fill, int *nan) {
    v16f m = (v16f){0} - INFINITY;
    v16i bad = {0};
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        v16f v = row_ld(x, j, valid, fill);
        m = sel16(v > m, v, m);
        bad |= v != v;
    }
    float r = hmax16(m);
    *nan |= hany16(bad);
    for (; j < n; j++) {
        float v = j < valid ? x[j] : fill;
        r = v > r ? v : r;
        *nan |= v != v;
    }
    return r;
}

/* o[j] = exp(x[j] - m) (o may be NULL: sum only); returns the sum */
INL double row_expsum(float *o, const float *x, int64_t n, int64_t valid, float fill, float m) {
    v16f acc = {0}, acc1 = {0}, acc2 = {0}, acc3 = {0};
    int64_t j = 0;
    for (; j + 64 <= n; j += 64) { /* four independent chains: the polynomial is latency-bound */
        v16f e0 = exp16(row_ld(x, j, valid, fill) - m), e1 = exp16(row_ld(x, j + 16, valid, fill) - m);
        v16f e2 = exp16(row_ld(x, j + 32, valid, fill) - m), e3 = exp16(row_ld(x, j + 48, valid, fill) - m);
        if (o) st16(o + j, e0), st16(o + j + 16, e1), st16(o + j + 32, e2), st16(o + j + 48, e3);
        acc += e0, acc1 += e1, acc2 += e2, acc3 += e3;
    }
    acc += (acc1 + acc2) + acc3;
    for (; j + 16 <= n; j += 16) {
        v16f e = exp16(row_ld(x, j, valid, fill) - m);
        if (o) st16(o + j, e);
        acc += e;
    }
    double s = hsum16(acc);
    for (; j < n; j++) {
        float e = exp_le0f((j < valid ? x[j] : fill) - m);
        if (o) o[j] = e;
        s += e;
    }
    return s;
}

INL void row_scale(float *o, int64_t n, float s) {
    for (int64_t j = 0; j < n; j++) o[j] *= s;
}

INL double row_sum(const float *x, int64_t n) {
    v8d a0 = {0}, a1 = {0};
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        a0 += ld8d(x + j);
        a1 += ld8d(x + j + 8);
    }
    double s = hsum8d(a0 + a1);
    for (; j < n; j++) s += x[j];
    return s;
}

INL double row_sumsq(const float *x, int64_t n) {
    v8d a0 = {0}, a1 = {0};
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        v8d u = ld8d(x + j), w = ld8d(x + j + 8);
        a0 += u * u;
        a1 += w * w;
    }
    double s = hsum8d(a0 + a1);
    for (; j < n; j++) s += (double)x[j] * x[j];
    return s;
}

/* NaN / infinite rows: the reference's double arithmetic */
__attribute__((noinline)) static void softmax_row_slow(float *o, const float *x, int64_t n, int64_t valid, float fill,
                                                       bool logsm, double md) {
    double s = 0;
    for (int64_t j = 0; j < n; j++) s += exp((j < valid ? (double)x[j] : fill) - md);
    for (int64_t j = 0; j < n; j++) {
        double d = (j < valid ? (double)x[j] : fill) - md;
        o[j] = (float)(logsm ? d - log(s) : exp(d) / s);
    }
}

/* softmax of rows of n (row stride ld); with sq > 0 (the causal mask), entries j > (row % sq) +
 * shift read as fill.
 * Rows go in blocks, one phase at a time (max, exp + sum, scale), so that the rows of a block are
 * independent and their latency chains overlap. */
PC_HOT void pc_ck_softmax_rows(float *o, const float *x, int64_t rows, int64_t n, int64_t ld, int64_t sq,
                               int64_t shift, float fill, bool logsm) {
    enum { BLK = 32 };
    float m[BLK];
    double s[BLK];
    int64_t valid[BLK], span[BLK];
    for (int64_t r0 = 0; r0 < rows; r0 += BLK) {
        int64_t nb = rows - r0 < BLK ? rows - r0 : BLK;
        const float *xb = x + r0 * ld;
        float *ob = o + r0 * ld;
        int bad = 0;
        for (int64_t i = 0; i < nb; i++) {
            valid[i] = n;
            if (sq > 0 && (valid[i] = (r0 + i) % sq + shift + 1) > n) valid[i] = n;
            /* masked entries past the valid block whose exp underflows to 0 are not computed */
            span[i] = (valid[i] + 15) / 16 * 16;
            if (span[i] > n) span[i] = n;
            int nan = 0;
            m[i] = row_max(xb + i * ld, span[i], valid[i], fill, &nan);
            if (valid[i] < n && (fill > m[i] || fill != fill)) m[i] = fill;
            if (nan || !isfinite(m[i])) m[i] = NAN, bad = 1;
            else if (logsm || (span[i] < n && exp_le0f(fill - m[i]) != 0.0f)) span[i] = n;
        }
        for (int64_t i = 0; i < nb; i++)
            if (m[i] == m[i]) s[i] = row_expsum(logsm ? NULL : ob + i * ld, xb + i * ld, span[i], valid[i], fill, m[i]);
        for (int64_t i = 0; i < nb; i++) {
            const float *xr = xb + i * ld;
            float *orow = ob + i * ld;
            if (m[i] != m[i]) continue;
            if (logsm) {
                double lse = log(s[i]);
                for (int64_t j = 0; j < n; j++) orow[j] = (float)((double)(j < valid[i] ? xr[j] : fill) - m[i] - lse);
            } else {
                row_scale(orow, span[i], (float)(1.0 / s[i]));
                for (int64_t j = span[i]; j < n; j++) orow[j] = 0.0f;
            }
        }
        if (bad) /* NaN / infinite rows */
            for (int64_t i = 0; i < nb; i++)
                if (m[i] != m[i]) {
                    int nan = 0;
                    float mm = row_max(xb + i * ld, n, valid[i], fill, &nan);
                    softmax_row_slow(ob + i * ld, xb + i * ld, n, valid[i], fill, logsm, nan ? NAN : mm);
                }
    }
}

static int ck_softmax_common(const pc_ckctx *c, bool logsm) {
    const ref_kctx *k = &c->k;
    pc_shape s = k->node->shape;
    int64_t n = s.dim[s.rank - 1], rows = n ? pc_shape_numel(s) / n : 0;
    pc_ck_softmax_rows(k->out, inf_(k, 0), rows, n, n, 0, 0, 0.0f, logsm);
    return 0;
}
static int ck_softmax(const pc_ckctx *c) { return ck_softmax_common(c, false); }
static int ck_log_softmax(const pc_ckctx *c) { return ck_softmax_common(c, true); }

/* softmax(causal_mask(x)) over the last axis */
static int ck_masked_softmax(const pc_ckctx *c) {
    const ref_kctx *k = &c->k;
    pc_shape s = k->node->shape;
    int64_t sq = s.dim[s.rank - 2], sk = s.dim[s.rank - 1], rows = sk ? pc_shape_numel(s) / sk : 0;
    pc_ck_softmax_rows(k->out, inf_(k, 0), rows, sk, sk, sq, sk - sq, (float)c->mask->attr[0].f, false);
    return 0;
}

/* the softmax backward alpha * [mask0](y (g - sum(g y))) per row (sum in double of the f32
 * products, like the unfused ops) */
PC_HOT static void softmax_grad_rows(float *o, const float *y, const float *g, int64_t rows, int64_t n, int64_t sq,
                                     int64_t shift, double alpha) {
    for (int64_t r = 0; r < rows; r++, o += n, y += n, g += n) {
        float sf = (float)dot_f32_sum_d(g, y, n), af = (float)alpha;
        int64_t j, valid = n;
        if (sq > 0 && (valid = r % sq + shift + 1) > n) valid = n;
        for (j = 0; j < valid; j++) o[j] = af * (y[j] * (g[j] - sf)); /* alpha in f32: <= 1 ulp */
        for (; j < n; j++) o[j] = 0.0f;
    }
}

static int ck_softmax_grad(const pc_ckctx *c) {
    const ref_kctx *k = &c->k;
    pc_shape s = k->node->shape;
    int64_t n = s.dim[s.rank - 1], rows = n ? pc_shape_numel(s) / n : 0;
    int64_t sq = c->mask ? s.dim[s.rank - 2] : 0;
    softmax_grad_rows(k->out, inf_(k, 0), inf_(k, 1), rows, n, sq, sq ? n - sq : 0, c->alpha);
    return 0;
}

PC_HOT static void rmsnorm_rows(float *o, const float *x, const float *w, int64_t rows, int64_t d, double eps) {
    for (int64_t r = 0; r < rows; r++, o += d, x += d) {
        float inv = (float)(1.0 / sqrt(row_sumsq(x, d) / (double)d + eps));
        for (int64_t j = 0; j < d; j++) o[j] = x[j] * inv * w[j];
    }
}

static int ck_rmsnorm(const pc_ckctx *c) {
    const ref_kctx *k = &c->k;
    pc_shape s = k->node->shape;
    int64_t d = s.dim[s.rank - 1], rows = d ? pc_shape_numel(s) / d : 0;
    rmsnorm_rows(k->out, inf_(k, 0), inf_(k, 1), rows, d, k->node->attr[0].f);
    return 0;
}

/* rmsnorm's d x per row: r (g w - x r dot), r = 1 / sqrt(mean(x^2) + eps), dot = mean(g w x r);
 * the means in double of f32 terms, as the unfused ops sum them. Rows go in blocks, one pass
 * per step over the block, so that the rows' reductions and square roots (a chain of latencies
 * per row) overlap. */
PC_HOT static void rmsnorm_grad_rows(float *o, const float *x, const float *w, const float *g, int64_t rows,
                                     int64_t d, double eps) {
    enum { BLK = 32 };
    float r[BLK], dot[BLK];
    for (int64_t i0 = 0; i0 < rows; i0 += BLK) {
        int n = rows - i0 < BLK ? (int)(rows - i0) : BLK;
        const float *xb = x + i0 * d, *gb = g + i0 * d;
        for (int i = 0; i < n; i++) r[i] = (float)(dot_f32_sum_d(xb + i * d, xb + i * d, d) / (double)d); /* f32 squares */
        for (int i = 0; i < n; i++) r[i] = (float)(1.0 / sqrt((double)r[i] + eps));
        for (int i = 0; i < n; i++) {
            const float *xr = xb + i * d, *gr = gb + i * d;
            v8d a0 = {0}, a1 = {0};
            int64_t j = 0;
            for (; j + 16 <= d; j += 16) {
                v16f p = ld16(gr + j) * ld16(w + j) * (ld16(xr + j) * r[i]);
                a0 += __builtin_convertvector(LO8(p), v8d);
                a1 += __builtin_convertvector(HI8(p), v8d);
            }
            double sd = hsum8d(a0 + a1);
            for (; j < d; j++) sd += (double)(gr[j] * w[j] * (xr[j] * r[i]));
            dot[i] = (float)(sd / (double)d);
        }
        for (int i = 0; i < n; i++) {
            const float *xr = xb + i * d, *gr = gb + i * d;
            float *or = o + (i0 + i) * d, ri = r[i], di = dot[i];
            for (int64_t j = 0; j < d; j++) or[j] = ri * (gr[j] * w[j] - xr[j] * ri * di);
        }
    }
}

static int ck_rmsnorm_grad(const pc_ckctx *c) {
    const ref_kctx *k = &c->k;
    pc_shape s = k->node->shape;
    int64_t d = s.dim[s.rank - 1], rows = d ? pc_shape_numel(s) / d : 0;
    rmsnorm_grad_rows(k->out, inf_(k, 0), inf_(k, 1), inf_(k, 2), rows, d, c->alpha);
    return 0;
}

INL double row_centered_sq(const float *x, int64_t n, double mean) {
    v8d a0 = {0}, a1 = {0};
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        v8d u = ld8d(x + j) - mean, w = ld8d(x + j + 8) - mean;
        a0 += u * u;
        a1 += w * w;
    }
    double s = hsum8d(a0 + a1);
    for (; j < n; j++) s += (x[j] - mean) * (x[j] - mean);
    return s;
}

PC_HOT static void layernorm_rows(float *o, const float *x, const float *w, const float *b, int64_t rows, int64_t d,
                                  double eps) {
    for (int64_t r = 0; r < rows; r++, o += d, x += d) {
        double mean = row_sum(x, d) / (double)d;
        double inv = 1.0 / sqrt(row_centered_sq(x, d, mean) / (double)d + eps);
        for (int64_t j = 0; j < d; j++) o[j] = (float)((x[j] - mean) * inv * w[j] + b[j]);
    }
}

static int ck_layernorm(const pc_ckctx *c) {
    const ref_kctx *k = &c->k;
    pc_shape s = k->node->shape;
    int64_t d = s.dim[s.rank - 1], rows = d ? pc_shape_numel(s) / d : 0;
    layernorm_rows(k->out, inf_(k, 0), inf_(k, 1), inf_(k, 2), rows, d, k->node->attr[0].f);
    return 0;
}

/* ---- reductions: one contiguous block of reduced axes = [outer, r, inner] ---- */

typedef struct {
    int64_t outer, r, inner;
} red_geom;

/* false when the reduced axes (mask over in's axes) are not one block after merging */
static bool reduce_geom(pc_shape in, unsigned mask, red_geom *gm) {
    int first = -1, last = -1;
    for (int i = 0; i < in.rank; i++)
        if ((mask & (1u << i)) && in.dim[i] != 1) {
            if (first < 0) first = i;
            last = i;
        }
    gm->outer = gm->r = gm->inner = 1;
    if (first < 0) { gm->outer = pc_shape_numel(in); return true; }
    for (int i = first; i <= last; i++)
        if (!(mask & (1u << i)) && in.dim[i] != 1) return false;
    for (int i = 0; i < first; i++) gm->outer *= in.dim[i];
    for (int i = first; i <= last; i++) gm->r *= in.dim[i];
    for (int i = last + 1; i < in.rank; i++) gm->inner *= in.dim[i];
    return true;
}

static unsigned reduce_mask(const pc_graph *g, pc_val v) {
    const pc_value *x = &g->vals[v];
    pc_shape in = g->vals[x->in[0]].shape;
    unsigned m = 0;
    if (x->op == PC_OP_sum_to) { /* the axes along which `shape` was broadcast */
        for (int i = 0; i < in.rank; i++) {
            int j = i - (in.rank - x->shape.rank);
            if (j < 0 || (x->shape.dim[j] == 1 && in.dim[i] != 1)) m |= 1u << i;
        }
        return m;
    }
    const pc_attr *axes = &x->attr[0];
    if (axes->n == 0) return in.rank ? (1u << in.rank) - 1 : 0;
    for (int i = 0; i < axes->n; i++) {
        int64_t ax = pc_norm_axis(axes->ints[i], in.rank);
        if (ax >= 0) m |= 1u << ax;
    }
    return m;
}

/* [outer, r, inner] -> [outer, inner]: rows of inner accumulated in double (scratch: inner) */
PC_HOT static void sum_mid(float *o, const float *x, double *acc, int64_t outer, int64_t r, int64_t inner, double div) {
    for (int64_t a = 0; a < outer; a++, x += r * inner, o += inner) {
        for (int64_t j = 0; j < inner; j++) acc[j] = x[j];
        for (int64_t t = 1; t < r; t++)
            for (int64_t j = 0; j < inner; j++) acc[j] += x[t * inner + j];
        for (int64_t j = 0; j < inner; j++) o[j] = (float)(acc[j] / div);
    }
}

PC_HOT static void max_mid(float *o, const float *x, int64_t outer, int64_t r, int64_t inner) {
    for (int64_t a = 0; a < outer; a++, x += r * inner, o += inner) {
        for (int64_t j = 0; j < inner; j++) o[j] = -INFINITY;
        for (int64_t t = 0; t < r; t++)
            for (int64_t j = 0; j < inner; j++) {
                float v = x[t * inner + j];
                o[j] = (v > o[j] || v != v) && o[j] == o[j] ? v : o[j];
            }
    }
}

PC_HOT static void sum_rows(float *o, const float *x, int64_t rows, int64_t r, double div) {
    for (int64_t a = 0; a < rows; a++) o[a] = (float)(row_sum(x + a * r, r) / div);
}

static int ck_reduce(const pc_ckctx *c) {
    const ref_kctx *k = &c->k;
    pc_val v = k->v;
    red_geom gm;
    reduce_geom(ref_ishape(k, 0), reduce_mask(k->g, v), &gm);
    double div = k->node->op == PC_OP_mean ? (double)gm.r : 1.0;
    const float *x = inf_(k, 0);
    float *o = k->out;
    if (k->node->op != PC_OP_max && gm.inner == 1) {
        sum_rows(o, x, gm.outer, gm.r, div);
        return 0;
    }
    if (k->node->op == PC_OP_max) max_mid(o, x, gm.outer, gm.r, gm.inner);
    else if (gm.r > 0) sum_mid(o, x, c->scratch, gm.outer, gm.r, gm.inner, div);
    else
        for (int64_t i = 0; i < gm.outer * gm.inner; i++) o[i] = (float)(0.0 / div);
    return 0;
}

/* ---- embedding ---- */

static int ck_embedding(const pc_ckctx *c) {
    const ref_kctx *k = &c->k;
    int64_t rows = ref_ishape(k, 0).dim[0], d = ref_ishape(k, 0).dim[1], n = pc_shape_numel(ref_ishape(k, 1));
    const int32_t *ids = ref_ini(k, 1);
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= rows) return ref_embedding(k);
    if (ref_idtype(k, 0) == PC_BF16) {
        for (int64_t i = 0; i < n; i++)
            pc_bf16_to_f32_n((const uint16_t *)k->in[0] + (int64_t)ids[i] * d, (float *)k->out + i * d, (size_t)d);
        return 0;
    }
    for (int64_t i = 0; i < n; i++) memcpy((float *)k->out + i * d, inf_(k, 0) + (int64_t)ids[i] * d, (size_t)d * 4);
    return 0;
}

PC_HOT static void acc_row(double *acc, const float *g, int64_t d) {
    for (int64_t j = 0; j < d; j++) acc[j] += g[j];
}

static int ck_embedding_grad(const pc_ckctx *c) {
    const ref_kctx *k = &c->k;
    int64_t rows = k->node->attr[0].i, d = k->node->shape.dim[1], n = pc_shape_numel(ref_ishape(k, 0));
    const int32_t *ids = ref_ini(k, 0);
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= rows) return ref_embedding_grad(k);
    double *acc = c->scratch;
    memset(acc, 0, (size_t)(rows * d) * sizeof *acc);
    for (int64_t i = 0; i < n; i++) acc_row(acc + (int64_t)ids[i] * d, inf_(k, 1) + i * d, d);
    float *o = k->out;
    for (int64_t i = 0; i < rows * d; i++) o[i] = (float)acc[i];
    return 0;
}

/* ---- cross-entropy ---- */

/* the reference's validation (it reports the error); count of non-ignored targets or -1 */
static int64_t ce_check(const ref_kctx *k, int64_t rows, int64_t v, int64_t ignore) {
    const int32_t *t = ref_ini(k, 1);
    int64_t count = 0;
    for (int64_t r = 0; r < rows; r++) {
        if (t[r] == ignore) continue;
        if (t[r] < 0 || t[r] >= v) return -1;
        count++;
    }
    return count;
}

INL double row_lse(const float *x, int64_t v) {
    int nan = 0;
    float m = row_max(x, v, v, 0.0f, &nan);
    if (nan) return NAN;
    if (isinf(m)) return m;
    return m + log(row_expsum(NULL, x, v, v, 0.0f, m));
}

/* per-row losses (o per position when red == 2); returns their sum */
PC_HOT static double ce_rows(float *o, const float *x, const int32_t *t, int64_t rows, int64_t v, int64_t ignore, int red) {
    double total = 0;
    for (int64_t r = 0; r < rows; r++) {
        double l = 0;
        if (t[r] != ignore) l = row_lse(x + r * v, v) - (double)x[r * v + t[r]];
        if (red == 2) o[r] = (float)l;
        else total += l;
    }
    return total;
}

static int ck_cross_entropy(const pc_ckctx *c) {
    const ref_kctx *k = &c->k;
    pc_shape ls = ref_ishape(k, 0);
    int64_t v = ls.dim[ls.rank - 1], rows = pc_shape_numel(ref_ishape(k, 1));
    int64_t ignore = k->node->attr[0].i, red = k->node->attr[1].i;
    int64_t count = ce_check(k, rows, v, ignore);
    if (count < 0) return ref_cross_entropy(k);
    float *o = k->out;
    double total = ce_rows(o, inf_(k, 0), ref_ini(k, 1), rows, v, ignore, (int)red);
    if (red == 0) o[0] = count ? (float)(total / (double)count) : 0.0f;
    else if (red == 1) o[0] = (float)total;
    return 0;
}

/* d logits = (softmax - onehot) * scale per row; scale = g/count, g or g[row]. o may equal x (the
 * lowering writes the gradient over dying logits) */
PC_HOT static void ce_grad_rows(float *o, const float *x, const int32_t *t, const float *g, int64_t rows, int64_t v,
                                int64_t ignore, int red, int64_t count) {
    for (int64_t r = 0; r < rows; r++) {
        float *orow = o + r * v;
        const float *xr = x + r * v;
        if (t[r] == ignore) {
            memset(orow, 0, (size_t)v * sizeof *orow);
            continue;
        }
        double scale = red == 0 ? (double)g[0] / (double)count : red == 1 ? (double)g[0] : (double)g[r];
        int nan = 0;
        float m = row_max(xr, v, v, 0.0f, &nan);
        if (nan || !isfinite(m)) { /* NaN / inf rows: the reference's double path */
            double lse = nan ? NAN : m;
            for (int64_t j = 0; j < v; j++)
                orow[j] = (float)((exp((double)xr[j] - lse) - (j == t[r] ? 1.0 : 0.0)) * scale);
            continue;
        }
        /* one exp per entry: softmax = exp(x - m) / sum (o may be x: the target's logit is read first) */
        float xt = xr[t[r]];
        double sum = row_expsum(orow, xr, v, v, 0.0f, m), lse = m + log(sum);
        row_scale(orow, v, (float)(scale / sum));
        orow[t[r]] = (float)((exp((double)xt - lse) - 1.0) * scale);
    }
}

static int ck_cross_entropy_grad(const pc_ckctx *c) {
    const ref_kctx *k = &c->k;
    pc_shape ls = ref_ishape(k, 0);
    int64_t v = ls.dim[ls.rank - 1], rows = pc_shape_numel(ref_ishape(k, 1));
    int64_t ignore = k->node->attr[0].i, red = k->node->attr[1].i;
    int64_t count = ce_check(k, rows, v, ignore);
    if (count < 0) return ref_cross_entropy_grad(k);
    ce_grad_rows(k->out, inf_(k, 0), ref_ini(k, 1), inf_(k, 2), rows, v, ignore, (int)red, count);
    return 0;
}

/* ---- rope ---- */

double *pc_ck_rope_table(const pc_graph *g, pc_val rope, const int32_t *pos) {
    const pc_value *x = &g->vals[rope];
    int64_t np = pc_shape_numel(g->vals[x->in[1]].shape), d = x->shape.dim[x->shape.rank - 1], half = d / 2;
    double *t = malloc((size_t)(np * half * 2 + 1) * sizeof *t);
    if (!t) return NULL;
    for (int64_t p = 0; p < np; p++) {
        if (pos[p] < 0) { free(t); return NULL; }
        for (int64_t i = 0; i < half; i++) {
            double ang = (double)pos[p] * pc_rope_inv_freq(x->attr, i, d);
            t[(p * half + i) * 2] = cos(ang);
            t[(p * half + i) * 2 + 1] = sin(ang);
        }
    }
    return t;
}

/* rows of H heads of D; position index = row % per (per > 0) or row; float math (the table
 * rounded to f32: within ~2 ulp of the reference's double arithmetic). Rows that share a
 * position (the batch's, per > 0) go together, so each position's f32 factors are made once. */
PC_HOT static void rope_rows(float *o, const float *x, const double *tab, int64_t rows, int64_t per, int64_t h,
                             int64_t d, int style, float sign) {
    int64_t half = d / 2, npos = per ? (per < rows ? per : rows) : rows;
    float cf[256], sf[256];
    for (int64_t p = 0; p < npos; p++) {
        const double *cs = tab + p * half * 2;
        for (int64_t i = 0; i < half; i++) cf[i] = (float)cs[2 * i], sf[i] = sign * (float)cs[2 * i + 1];
        if (style == 0 && d % 8 == 0) { /* pairs (2i, 2i+1) inside vectors: x c + swap(x) s */
            float ce[256], se[256];
            for (int64_t i = 0; i < half; i++) ce[2 * i] = ce[2 * i + 1] = cf[i], se[2 * i] = -sf[i], se[2 * i + 1] = sf[i];
            for (int64_t t = p; t < rows; t += per ? per : rows) {
                int64_t j = 0;
                if (d % 16 == 0)
                    for (; j < h * d; j += 16) {
                        v16f xv = ld16(x + t * h * d + j);
                        v16f r = xv * ld16(ce + j % d) +
                                 __builtin_shufflevector(xv, xv, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14) *
                                     ld16(se + j % d);
                        st16(o + t * h * d + j, r);
                    }
                for (; j < h * d; j += 8) {
                    v8f xv = ld8(x + t * h * d + j);
                    v8f r = xv * ld8(ce + j % d) +
                            __builtin_shufflevector(xv, xv, 1, 0, 3, 2, 5, 4, 7, 6) * ld8(se + j % d);
                    memcpy(o + t * h * d + j, &r, sizeof r);
                }
            }
            continue;
        }
        for (int64_t t = p; t < rows; t += per ? per : rows)
            for (int64_t hh = 0; hh < h; hh++) {
                const float *xv = x + (t * h + hh) * d;
                float *ov = o + (t * h + hh) * d;
                if (style == 0)
                    for (int64_t i = 0; i < half; i++) {
                        float x0 = xv[2 * i], x1 = xv[2 * i + 1];
                        ov[2 * i] = x0 * cf[i] - x1 * sf[i];
                        ov[2 * i + 1] = x0 * sf[i] + x1 * cf[i];
                    }
                else
                    for (int64_t i = 0; i < half; i++) {
                        float x0 = xv[i], x1 = xv[i + half];
                        ov[i] = x0 * cf[i] - x1 * sf[i];
                        ov[i + half] = x0 * sf[i] + x1 * cf[i];
                    }
            }
    }
}

static int ck_rope(const pc_ckctx *c) {
    const ref_kctx *k = &c->k;
    pc_shape xs = k->node->shape, ps = ref_ishape(k, 1);
    int style = (int)k->node->attr[1].i;
    double sign = k->node->attr[2].i ? -1.0 : 1.0;
    int64_t d = xs.dim[xs.rank - 1], h = xs.dim[xs.rank - 2], s = xs.dim[xs.rank - 3], half = d / 2;
    int64_t rows = 1, np = pc_shape_numel(ps);
    for (int i = 0; i < xs.rank - 2; i++) rows *= xs.dim[i];
    const int32_t *pos = ref_ini(k, 1);
    for (int64_t p = 0; p < np; p++)
        if (pos[p] < 0) return ref_rope(k);
    const double *tab = c->table;
    if (!tab) {
        double *t = c->scratch;
        for (int64_t p = 0; p < np; p++)
            for (int64_t i = 0; i < half; i++) {
                double ang = (double)pos[p] * pc_rope_inv_freq(k->node->attr, i, d);
                t[(p * half + i) * 2] = cos(ang);
                t[(p * half + i) * 2 + 1] = sin(ang);
            }
        tab = t;
    }
    if (half <= 256) {
        rope_rows(k->out, inf_(k, 0), tab, rows, ps.rank == 1 ? (s ? s : 1) : 0, h, d, style, (float)sign);
        return 0;
    }
    const float *x = inf_(k, 0);
    float *o = k->out;
    for (int64_t t = 0; t < rows; t++) {
        int64_t pi = ps.rank == 1 ? t % (s ? s : 1) : t;
        const double *cs = tab + pi * half * 2;
        for (int64_t hh = 0; hh < h; hh++) {
            const float *xv = x + (t * h + hh) * d;
            float *ov = o + (t * h + hh) * d;
            for (int64_t i = 0; i < half; i++) {
                int64_t i0 = style == 0 ? 2 * i : i, i1 = style == 0 ? 2 * i + 1 : i + half;
                double cc = cs[2 * i], sn = sign * cs[2 * i + 1], x0 = xv[i0], x1 = xv[i1];
                ov[i0] = (float)(x0 * cc - x1 * sn);
                ov[i1] = (float)(x0 * sn + x1 * cc);
            }
        }
    }
    return 0;
}

/* ---- layout and small ops ---- */

static int ck_causal_mask(const pc_ckctx *c) {
    const ref_kctx *k = &c->k;
    pc_shape s = k->node->shape;
    int64_t sq = s.dim[s.rank - 2], sk = s.dim[s.rank - 1], rows = sk ? pc_shape_numel(s) / sk : 0;
    float fill = (float)k->node->attr[0].f;
    const float *x = inf_(k, 0);
    float *o = k->out;
    for (int64_t r = 0; r < rows; r++) {
        int64_t i = r % sq, valid = i + (sk - sq) + 1;
        if (valid > sk) valid = sk;
        memcpy(o + r * sk, x + r * sk, (size_t)valid * sizeof *o);
        for (int64_t j = valid; j < sk; j++) o[r * sk + j] = fill;
    }
    return 0;
}

static void split_axis(pc_shape s, int64_t ax, int64_t *outer, int64_t *inner) {
    *outer = *inner = 1;
    for (int i = 0; i < ax; i++) *outer *= s.dim[i];
    for (int i = (int)ax + 1; i < s.rank; i++) *inner *= s.dim[i];
}

static int ck_pad(const pc_ckctx *c) {
    const ref_kctx *k = &c->k;
    pc_shape in = ref_ishape(k, 0), os = k->node->shape;
    int64_t ax = pc_norm_axis(k->node->attr[0].i, in.rank), before = k->node->attr[1].i, outer, inner;
    split_axis(in, ax, &outer, &inner);
    int64_t len = in.dim[ax] * inner, olen = os.dim[ax] * inner;
    char *o = k->out;
    const char *x = k->in[0];
    for (int64_t i = 0; i < outer; i++) {
        memset(o + i * olen * 4, 0, (size_t)(before * inner * 4));
        memcpy(o + (i * olen + before * inner) * 4, x + i * len * 4, (size_t)(len * 4));
        memset(o + (i * olen + before * inner + len) * 4, 0, (size_t)((olen - before * inner - len) * 4));
    }
    return 0;
}

static int ck_concat(const pc_ckctx *c) {
    const ref_kctx *k = &c->k;
    pc_shape os = k->node->shape;
    int64_t ax = pc_norm_axis(k->node->attr[0].i, os.rank), outer, inner, at = 0;
    split_axis(os, ax, &outer, &inner);
    char *o = k->out;
    for (int t = 0; t < k->node->nin; t++) {
        int64_t dd = ref_ishape(k, t).dim[ax], len = dd * inner;
        const char *x = k->in[t];
        for (int64_t i = 0; i < outer && len > 0; i++)
            memcpy(o + (i * os.dim[ax] + at) * inner * 4, x + i * len * 4, (size_t)(len * 4));
        at += dd;
    }
    return 0;
}

/* ---- the strided copy of COPY instructions ---- */

/* rows of len 4-byte elements: the odometer walks the outer axes (d, s: r - 1 of them) */
#define COPY_ROWS(body)                                                                            \
    for (int64_t row = 0; row < rows; row++) {                                                     \
        const uint32_t *xr = x + off;                                                              \
        body;                                                                                      \
        o += len;                                                                                  \
        for (int i = r - 2; i >= 0; i--) {                                                         \
            off += s[i];                                                                           \
            if (++idx[i] < d[i]) break;                                                            \
            off -= s[i] * d[i];                                                                    \
            idx[i] = 0;                                                                            \
        }                                                                                          \
    }

PC_HOT static void copy_rows(uint32_t *o, const uint32_t *x, int r, const int64_t *d, const int64_t *s) {
    int64_t idx[PC_MAX_RANK] = {0}, len = d[r - 1], sl = s[r - 1], rows = 1, off = 0;
    for (int i = 0; i < r - 1; i++) rows *= d[i];
    if (sl == 1 && len == 8) COPY_ROWS(memcpy(o, xr, 32)) /* head-dim rows of transposes */
    else if (sl == 1 && len == 16) COPY_ROWS(memcpy(o, xr, 64))
    else if (sl == 1) COPY_ROWS(memcpy(o, xr, (size_t)len * 4))
    else COPY_ROWS(for (int64_t j = 0; j < len; j++) o[j] = xr[j * sl])
}

void pc_ck_copy(void *dst, const void *src, int rank, const int64_t *dims, const int64_t *st) {
    int64_t d[PC_MAX_RANK], s[PC_MAX_RANK];
    int r = 0;
    for (int i = 0; i < rank; i++) {
        if (dims[i] == 0) return;
        if (dims[i] == 1) continue;
        if (r > 0 && s[r - 1] == st[i] * dims[i]) { /* merge with the outer axis */
            d[r - 1] *= dims[i];
            s[r - 1] = st[i];
            continue;
        }
        d[r] = dims[i];
        s[r++] = st[i];
    }
    if (r == 0) memcpy(dst, src, 4);
    else copy_rows(dst, src, r, d, s);
}

/* ---- selection ---- */

#define REF(id)                                                                                    \
    static int ckref_##id(const pc_ckctx *c) { return ref_##id(&c->k); }
#define OP(id, name, nin, fusion, diff, attrs) REF(id)
#include "ops.def"
#undef OP
#undef REF

static const pc_ck_fn ref_fallback[PC_OP_COUNT] = {
#define OP(id, name, nin, fusion, diff, attrs) [PC_OP_##id] = ckref_##id,
#include "ops.def"
#undef OP
};

pc_ck_fn pc_ck_select(const pc_graph *g, const pc_linsn *I, int64_t *scratch, const char **name) {
    const pc_value *x = &g->vals[I->v];
    *scratch = 0;
    *name = pc_op_get(x->op)->name;
    if (I->call == PC_CALL_MASKED_SOFTMAX) {
        *name = "causal_softmax";
        return ck_masked_softmax;
    }
    if (I->call == PC_CALL_SOFTMAX_GRAD) {
        *name = I->aux != PC_NONE ? "causal_softmax_grad" : "softmax_grad";
        return ck_softmax_grad;
    }
    if (I->call == PC_CALL_RMSNORM_GRAD) {
        *name = "rmsnorm_grad";
        return ck_rmsnorm_grad;
    }
    if (I->call == PC_CALL_MUL_SUM) {
        *name = "mul_sum_to";
        *scratch = pc_ck_mul_sum_scratch(I);
        return pc_ck_mul_sum;
    }
    if (I->call == PC_CALL_ATTN || I->call == PC_CALL_ATTN_GRAD || I->call == PC_CALL_FLASH ||
        I->call == PC_CALL_FLASH_GRAD) {
        static const struct { const char *name; pc_ck_fn fn; } attn[] = {
            [PC_CALL_ATTN] = {"causal_attention_probs", pc_ck_attention_probs},
            [PC_CALL_ATTN_GRAD] = {"attention_probs_grad", pc_ck_attention_probs_grad},
            [PC_CALL_FLASH] = {"flash_attention", pc_ck_flash_attention},
            [PC_CALL_FLASH_GRAD] = {"flash_attention_grad", pc_ck_flash_attention_grad},
        };
        *scratch = pc_ck_attention_scratch(I);
        *name = I->call == PC_CALL_ATTN_GRAD && I->aux != PC_NONE ? "causal_attention_probs_grad" : attn[I->call].name;
        return attn[I->call].fn;
    }
    bool f32 = x->dtype == PC_F32;
    switch (x->op) {
    case PC_OP_softmax:
    case PC_OP_log_softmax:
        if (pc_norm_axis(x->attr[0].i, x->shape.rank) == x->shape.rank - 1)
            return x->op == PC_OP_softmax ? ck_softmax : ck_log_softmax;
        break;
    case PC_OP_rmsnorm: return ck_rmsnorm;
    case PC_OP_layernorm: return ck_layernorm;
    case PC_OP_sum: case PC_OP_mean: case PC_OP_max: case PC_OP_sum_to: {
        red_geom gm;
        if (!f32 || !reduce_geom(g->vals[x->in[0]].shape, reduce_mask(g, I->v), &gm)) break;
        if (x->op != PC_OP_max && gm.inner > 1) *scratch = gm.inner * (int64_t)sizeof(double);
        return ck_reduce;
    }
    case PC_OP_embedding: return ck_embedding;
    case PC_OP_embedding_grad:
        *scratch = x->attr[0].i * x->shape.dim[1] * (int64_t)sizeof(double);
        return ck_embedding_grad;
    case PC_OP_cross_entropy: return ck_cross_entropy;
    case PC_OP_cross_entropy_grad: return ck_cross_entropy_grad;
    case PC_OP_rope: {
        pc_shape ps = g->vals[x->in[1]].shape;
        *scratch = pc_shape_numel(ps) * (x->shape.dim[x->shape.rank - 1] / 2) * 2 * (int64_t)sizeof(double);
        return ck_rope;
    }
    case PC_OP_causal_mask: return ck_causal_mask;
    case PC_OP_pad: return ck_pad;
    case PC_OP_concat: return ck_concat;
    default: break;
    }
    static const char *const prefixed[PC_OP_COUNT] = {
#define OP(id, name, nin, fusion, diff, attrs) [PC_OP_##id] = "ref:" name,
#include "ops.def"
#undef OP
    };
    *name = prefixed[x->op];
    return ref_fallback[x->op];
}
