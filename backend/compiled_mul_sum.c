/* CALL_MUL_SUM: sum_to(a * b), the product never stored. Autograd writes the gradient of a
 * broadcast factor this way: LoHa's four factors (d w1_a[o, i] = sum_j dU[o, i, j] w2_a[o, j],
 * the Khatri-Rao rows of passes/adapters/loha.c) and IA3's d l = sum over tokens of dy * x. The
 * two-pass form wrote and re-read a buffer the size of the product for a result 8 or 512 times
 * smaller.
 *
 * The f32 products a*b are rounded as the mul would round them and summed in double, as the
 * C sum_to does; the order of the sum differs from the reference's (results agree to f32
 * rounding). Operands are read through their views (broadcast axes have stride 0). */
#include "backend/compiled_internal.h"

/* the iteration space after dropping size-1 axes and merging axes contiguous in all three */
typedef struct {
    int rank;
    int64_t dim[PC_MAX_RANK], sa[PC_MAX_RANK], sb[PC_MAX_RANK], so[PC_MAX_RANK];
} ms_space;

static void ms_collapse(ms_space *s, const pc_lref *ra, const pc_lref *rb, pc_shape os) {
    pc_shape ms = ra->shape;
    int64_t ost[PC_MAX_RANK], m = 1;
    for (int j = os.rank - 1; j >= 0; j--) ost[j] = m, m *= os.dim[j];
    s->rank = 0;
    for (int i = 0; i < ms.rank; i++) {
        if (ms.dim[i] == 1) continue;
        int j = i - (ms.rank - os.rank);
        int64_t so = j < 0 || os.dim[j] == 1 ? 0 : ost[j]; /* 0: summed over */
        int r = s->rank;
        if (r > 0 && s->sa[r - 1] == ra->view.st[i] * ms.dim[i] && s->sb[r - 1] == rb->view.st[i] * ms.dim[i] &&
            s->so[r - 1] == so * ms.dim[i]) {
            s->dim[r - 1] *= ms.dim[i];
            s->sa[r - 1] = ra->view.st[i], s->sb[r - 1] = rb->view.st[i], s->so[r - 1] = so;
            continue;
        }
        s->dim[r] = ms.dim[i], s->sa[r] = ra->view.st[i], s->sb[r] = rb->view.st[i], s->so[r] = so;
        s->rank++;
    }
}

/* 16 products a[j sa] b[j sb], j < w (<= 16), the rest 0; 8 or 16 contiguous lanes are loaded
 * whole (a vector assembled in memory from a part and re-read stalls store forwarding) */
INL v16f prod16(const float *a, const float *b, int64_t sa, int64_t sb, int64_t w) {
    bool unit = sb == 0 || sb == 1;
    if (w == 8 && sa == 1 && unit) {
        v8f p = ld8(a) * (sb ? ld8(b) : (v8f){0} + b[0]);
        return __builtin_shufflevector(p, (v8f){0}, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    }
    if (w == 16 && sa == 1 && unit) return ld16(a) * (sb ? ld16(b) : (v16f){0} + b[0]);
    float x[16] = {0};
    for (int64_t j = 0; j < w; j++) x[j] = a[j * sa] * b[j * sb];
    return ld16(x);
}

/* the 8 lane sums of 8 vectors: out[i] = sum of v[i]'s lanes (pairwise trees of adjacent lanes) */
INL v8d hsum8x8(const v8d v[8]) {
#define HADD(x, y) (__builtin_shufflevector(x, y, 0, 8, 2, 10, 4, 12, 6, 14) + __builtin_shufflevector(x, y, 1, 9, 3, 11, 5, 13, 7, 15))
    v8d a = HADD(v[0], v[1]), b = HADD(v[2], v[3]), c = HADD(v[4], v[5]), d = HADD(v[6], v[7]);
    /* a = (v0 01, v1 01, v0 23, v1 23, ...): pairs again, then the two halves */
    v8d e = __builtin_shufflevector(a, b, 0, 1, 8, 9, 4, 5, 12, 13) + __builtin_shufflevector(a, b, 2, 3, 10, 11, 6, 7, 14, 15);
    v8d f = __builtin_shufflevector(c, d, 0, 1, 8, 9, 4, 5, 12, 13) + __builtin_shufflevector(c, d, 2, 3, 10, 11, 6, 7, 14, 15);
    /* e = (v0 0-3, v1 0-3, v2 0-3, v3 0-3, v0 4-7, v1 4-7, v2 4-7, v3 4-7) */
    v8d lo = __builtin_shufflevector(e, f, 0, 1, 2, 3, 8, 9, 10, 11), hi = __builtin_shufflevector(e, f, 4, 5, 6, 7, 12, 13, 14, 15);
    return lo + hi;
#undef HADD
}

/* an odometer over the axes ax[0..n) of s: offsets into a, b and the result */
typedef struct {
    int n;
    int ax[PC_MAX_RANK];
    int64_t idx[PC_MAX_RANK], oa, ob, oo;
} ms_odo;

INL bool odo_next(ms_odo *o, const ms_space *s) {
    for (int k = o->n - 1; k >= 0; k--) {
        int a = o->ax[k];
        o->oa += s->sa[a], o->ob += s->sb[a], o->oo += s->so[a];
        if (++o->idx[k] < s->dim[a]) return true;
        o->oa -= s->sa[a] * s->dim[a], o->ob -= s->sb[a] * s->dim[a], o->oo -= s->so[a] * s->dim[a];
        o->idx[k] = 0;
    }
    return false;
}

/* d[j so] = sum over t < rn of a[t ra + j] b[t rb + j sb], j < 8 (LoHa's d w2_a: rows of 8
 * summed down a column) */
INL void col8(float *d, int64_t so, const float *a, const float *b, int64_t rn, int64_t ra, int64_t rb, int64_t sb) {
    v8d acc = {0};
    for (int64_t t = 0; t < rn; t++) {
        v16f p = prod16(a + t * ra, b + t * rb, 1, sb, 8);
        acc += __builtin_convertvector(LO8(p), v8d);
    }
    v8f f = __builtin_convertvector(acc, v8f);
    if (so == 1) memcpy(d, &f, sizeof f);
    else
        for (int j = 0; j < 8; j++) d[j * so] = f[j];
}

/* acc[j] += a[j sa] b[j sb], j < n: independent sums per column (no chain to wait on) */
INL void row_acc(double *restrict acc, const float *restrict a, const float *restrict b, int64_t n, int64_t sa,
                 int64_t sb) {
    if (sa == 1 && sb == 1)
        for (int64_t j = 0; j < n; j++) acc[j] += (double)(a[j] * b[j]);
    else if (sa == 1 && sb == 0)
        for (int64_t j = 0; j < n; j++) acc[j] += (double)(a[j] * b[0]);
    else
        for (int64_t j = 0; j < n; j++) acc[j] += (double)(a[j * sa] * b[j * sb]);
}

/* eight rows of 8 (row i at a + i ra, b + i rb, lanes contiguous in a, b contiguous or one
 * value): their sums, stored contiguously */
INL void rows8x8(float *d, const float *a, const float *b, int64_t ra, int64_t rb, int64_t sb) {
    v8d r[8];
    for (int i = 0; i < 8; i++) {
        v16f p = prod16(a + i * ra, b + i * rb, 1, sb, 8);
        r[i] = __builtin_convertvector(LO8(p), v8d);
    }
    v8d t = hsum8x8(r);
    v8f f = __builtin_convertvector(t, v8f);
    memcpy(d, &f, sizeof f);
}

/* The loops run the kept axes outside and the summed ones inside, so each result is summed
 * once and stored once: a kept innermost row in a scratch row of double sums (8 columns in one
 * vector), a summed innermost row in vector lanes (eight rows of 8 in one tree). */
PC_HOT int pc_ck_mul_sum(const pc_ckctx *c) {
    const pc_linsn *I = c->li;
    pc_shape os = I->out[0].shape;
    int64_t nout = pc_shape_numel(os);
    float *o = c->k.out;
    const float *A = c->k.in[0], *B = c->k.in[1];
    ms_space s;
    ms_collapse(&s, &I->in[0], &I->in[1], os);
    for (int i = 0; i < s.rank; i++)
        if (s.dim[i] == 0) {
            for (int64_t j = 0; j < nout; j++) o[j] = 0.0f;
            return 0;
        }
    if (s.rank == 0) s.rank = 1, s.dim[0] = 1, s.sa[0] = s.sb[0] = s.so[0] = 0;
    int last = s.rank - 1;
    ms_odo kept = {0}, red = {0};
    for (int a = 0; a < last; a++) {
        if (s.so[a]) kept.ax[kept.n++] = a;
        else red.ax[red.n++] = a;
    }
    int64_t n = s.dim[last], sa = s.sa[last], sb = s.sb[last];
    if (s.so[last]) { /* the innermost axis is kept: its sums in registers (8) or in scratch */
        int64_t so = s.so[last];
        int r0 = red.n == 1 ? red.ax[0] : -1;
        bool by_col8 = n == 8 && sa == 1 && (sb == 0 || sb == 1) && red.n <= 1;
        double *acc = c->scratch;
        do {
            const float *a = A + kept.oa, *b = B + kept.ob;
            float *d = o + kept.oo;
            if (by_col8) {
                col8(d, so, a, b, r0 >= 0 ? s.dim[r0] : 1, r0 >= 0 ? s.sa[r0] : 0, r0 >= 0 ? s.sb[r0] : 0, sb);
                continue;
            }
            for (int64_t j = 0; j < n; j++) acc[j] = 0.0;
            red.oa = red.ob = 0;
            do row_acc(acc, a + red.oa, b + red.ob, n, sa, sb);
            while (odo_next(&red, &s));
            for (int64_t j = 0; j < n; j++) d[j * so] = (float)acc[j];
        } while (odo_next(&kept, &s));
        return 0;
    }
    /* the innermost axis is summed: rows of n. Eight results along a kept axis of result stride 1
     * with rows of 8 (LoHa's d w1_a) take one tree of lane sums. */
    int kin = kept.n ? kept.ax[kept.n - 1] : -1;
    bool by8 = n == 8 && red.n == 0 && kin >= 0 && s.so[kin] == 1 && s.dim[kin] % 8 == 0 && sa == 1 && (sb | 1) == 1;
    if (by8) kept.n--; /* the tree covers that axis */
    do {
        if (by8) {
            int64_t ra = s.sa[kin], rb = s.sb[kin];
            for (int64_t i0 = 0; i0 < s.dim[kin]; i0 += 8) {
                const float *a = A + kept.oa + i0 * ra, *b = B + kept.ob + i0 * rb;
                if (sb) rows8x8(o + kept.oo + i0, a, b, ra, rb, 1);
                else rows8x8(o + kept.oo + i0, a, b, ra, rb, 0);
            }
            continue;
        }
        double sum = 0.0;
        red.oa = red.ob = 0;
        do {
            const float *a = A + kept.oa + red.oa, *b = B + kept.ob + red.ob;
            if (sa == 1 && sb == 1) {
                sum += dot_f32_sum_d(a, b, n);
                continue;
            }
            v8d lo = {0}, hi = {0};
            for (int64_t j0 = 0; j0 < n; j0 += 16) {
                v16f p = prod16(a + j0 * sa, b + j0 * sb, sa, sb, n - j0 < 16 ? n - j0 : 16);
                lo += __builtin_convertvector(LO8(p), v8d);
                hi += __builtin_convertvector(HI8(p), v8d);
            }
            sum += hsum8d(lo + hi);
        } while (odo_next(&red, &s));
        o[kept.oo] = (float)sum;
    } while (odo_next(&kept, &s));
    return 0;
}

/* the scratch of a kept innermost axis: its sums in double */
int64_t pc_ck_mul_sum_scratch(const pc_linsn *I) {
    ms_space s;
    ms_collapse(&s, &I->in[0], &I->in[1], I->out[0].shape);
    return s.rank && s.so[s.rank - 1] ? s.dim[s.rank - 1] * (int64_t)sizeof(double) : 0;
}
