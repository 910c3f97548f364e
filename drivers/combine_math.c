/* PEFT's add_weighted_adapter per module (peft/tuners/lora/model.py: add_weighted_adapter's cat
 * branch, _generalized_task_arithmetic_weighted_adapter, _svd_generalized_task_arithmetic_
 * weighted_adapter; peft/utils/merge_utils.py task_arithmetic). */
#include "drivers/combine_math.h"
#include "runtime/rng.h"
#include "runtime/svd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pc_combine_cat(const pc_lora_term *t, int n, int in, int out, int rank, float *A, float *B) {
    memset(A, 0, sizeof(float) * (size_t)rank * in);
    memset(B, 0, sizeof(float) * (size_t)out * rank);
    int row = 0;
    for (int k = 0; k < n; k++) {
        /* torch: (A * weight) * scaling, each product rounded to f32 */
        float w = (float)t[k].w, s = (float)t[k].s;
        for (int i = 0; i < t[k].r; i++)
            for (int j = 0; j < in; j++) {
                float x = t[k].A[(size_t)i * in + j] * w;
                A[(size_t)(row + i) * in + j] = x * s;
            }
        for (int o = 0; o < out; o++)
            for (int i = 0; i < t[k].r; i++) B[(size_t)o * rank + row + i] = t[k].B[(size_t)o * t[k].r + i];
        row += t[k].r;
    }
}

/* |x| descending, then index ascending (torch.topk's order among equal magnitudes is unspecified) */
typedef struct {
    float mag;
    size_t i;
} ranked;
static int ranked_cmp(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->mag != y->mag) return x->mag < y->mag ? 1 : -1;
    return (x->i > y->i) - (x->i < y->i);
}

/* prune(t, density) into p: magnitude (keep the top int(density·len)) or random (keep with
 * probability density, rescaled by 1/density) */
static int prune(const pc_task_merge *m, const float *t, size_t len, uint64_t stream, float *p) {
    if (m->density >= 1) return memcpy(p, t, len * sizeof *p), 0;
    if (m->kind == PC_MERGE_DARE_LINEAR || m->kind == PC_MERGE_DARE_TIES) {
        float d = (float)m->density;
        for (size_t i = 0; i < len; i++) p[i] = pc_hash_uniform(m->seed, stream, i) < d ? t[i] / d : 0.0f * t[i];
        return 0;
    }
    size_t k = (size_t)(m->density * (double)len);
    ranked *r = malloc((len ? len : 1) * sizeof *r);
    if (!r) return -1;
    for (size_t i = 0; i < len; i++) r[i] = (ranked){fabsf(t[i]), i};
    qsort(r, len, sizeof *r, ranked_cmp);
    for (size_t i = 0; i < len; i++) p[i] = 0.0f * t[i]; /* torch: t * mask, so -0 stays -0 */
    for (size_t i = 0; i < k; i++) p[r[i].i] = t[r[i].i];
    free(r);
    return 0;
}

static float sign_of(float x) { return (float)((x > 0) - (x < 0)); }

int pc_task_merge_apply(const pc_task_merge *m, const float *const *t, const float *w, int n, size_t len,
                        uint64_t stream, float *out) {
    if (m->kind == PC_MERGE_SUM) {
        for (size_t j = 0; j < len; j++) {
            float acc = 0;
            for (int i = 0; i < n; i++) acc += t[i][j] * w[i];
            out[j] = acc;
        }
        return 0;
    }
    float *p = malloc(sizeof *p * len * (size_t)n + 1);
    if (!p) return -1;
    for (int i = 0; i < n; i++)
        if (prune(m, t[i], len, stream * 1024 + (uint64_t)i, p + (size_t)i * len)) return free(p), -1;
    bool ties = m->kind == PC_MERGE_TIES || m->kind == PC_MERGE_DARE_TIES;
    for (size_t j = 0; j < len; j++) {
        float acc = 0;
        if (!ties) {
            for (int i = 0; i < n; i++) acc += p[(size_t)i * len + j] * w[i];
            out[j] = acc;
            continue;
        }
        float mass = 0;
        for (int i = 0; i < n; i++) {
            float x = p[(size_t)i * len + j];
            mass += m->frequency ? sign_of(x) : x;
        }
        float major = mass >= 0 ? 1.0f : -1.0f, count = 0;
        for (int i = 0; i < n; i++) {
            float x = p[(size_t)i * len + j];
            float keep = sign_of(x) == major ? 1.0f : 0.0f;
            acc += x * w[i] * keep;
            count += keep;
        }
        out[j] = acc / (count > 1 ? count : 1.0f);
    }
    free(p);
    return 0;
}

int pc_combine_linear(const pc_lora_term *t, int n, int in, int out, int rank, const pc_task_merge *m,
                      uint64_t stream, float *A, float *B) {
    const float **ta = malloc(sizeof *ta * (size_t)n), **tb = malloc(sizeof *tb * (size_t)n);
    float *wa = malloc(sizeof *wa * (size_t)n), *wb = malloc(sizeof *wb * (size_t)n);
    int rc = -1;
    if (ta && tb && wa && wb) {
        for (int k = 0; k < n; k++) {
            /* Python floats, then torch.tensor(...) rounds them to f32; the sign goes on A only */
            double ws = t[k].w * t[k].s, root = sqrt(fabs(ws));
            wa[k] = (float)(ws >= 0 ? root : -root), wb[k] = (float)root;
            ta[k] = t[k].A, tb[k] = t[k].B;
        }
        rc = pc_task_merge_apply(m, ta, wa, n, (size_t)rank * in, 2 * stream, A) ||
                     pc_task_merge_apply(m, tb, wb, n, (size_t)out * rank, 2 * stream + 1, B)
                 ? -1
                 : 0;
    }
    free(ta), free(tb), free(wa), free(wb);
    return rc;
}

/* ΔW of a non-SUM merge: each input's f32 ΔWᵢ = (Bᵢ·Aᵢ)·sᵢ as PEFT's get_delta_weight, merged in
 * f32 with the raw weights */
static int merged_delta(const pc_lora_term *t, int n, int in, int out, const pc_task_merge *m, uint64_t stream,
                        double *dw) {
    size_t sz = (size_t)out * in;
    float *d = malloc(sizeof *d * sz * (size_t)n + 1), *res = malloc(sizeof *res * sz);
    const float **td = malloc(sizeof *td * (size_t)n);
    float *w = malloc(sizeof *w * (size_t)n);
    int rc = -1;
    if (d && res && td && w) {
        for (int k = 0; k < n; k++) {
            float *dk = d + (size_t)k * sz, s = (float)t[k].s;
            for (int o = 0; o < out; o++)
                for (int j = 0; j < in; j++) {
                    double x = 0;
                    for (int i = 0; i < t[k].r; i++)
                        x += (double)t[k].B[(size_t)o * t[k].r + i] * t[k].A[(size_t)i * in + j];
                    dk[(size_t)o * in + j] = (float)x * s;
                }
            td[k] = dk, w[k] = (float)t[k].w;
        }
        if (!pc_task_merge_apply(m, td, w, n, sz, stream, res)) {
            for (size_t i = 0; i < sz; i++) dw[i] = res[i];
            rc = 0;
        }
    }
    free(d), free(res), free(td), free(w);
    return rc;
}

static int float_cmp(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

float pc_quantile_f32(float *x, size_t n, double q) {
    qsort(x, n, sizeof *x, float_cmp);
    float rank = (float)q * (float)(n - 1);
    size_t lo = (size_t)floorf(rank), hi = lo + 1 < n ? lo + 1 : lo;
    float w = rank - (float)lo, a = x[lo], b = x[hi];
    /* torch.lerp: a + w·(b − a) below one half, b − (b − a)·(1 − w) from there */
    return w < 0.5f ? a + w * (b - a) : b - (b - a) * (1 - w);
}

/* plain svd when ΔW = Σ cᵢBᵢAᵢ has more rank than asked: never forms ΔW. The right singular
 * vectors lie in the row space of the stacked A's: an orthonormal basis Q of it (the SVD of
 * [A₁; A₂; …]ᵀ), then the SVD of the small ΔW·Q = Bc·(Ac·Q) gives ΔW = W₂·(Q·V₂)ᵀ. Cost
 * O((in + out)·R²) for R = Σ rᵢ instead of O(out·in²). 1 done, 0 when ΔW has fewer than `rank`
 * independent rows (the full SVD completes A then), -1 error. */
static int lowrank_factors(const pc_lora_term *t, int n, int in, int out, int rank, double *wout, double *vout,
                           char *err, size_t errlen) {
    int R = 0;
    for (int k = 0; k < n; k++) R += t[k].r;
    if (R < rank) return 0;
    double *m1 = malloc(sizeof(double) * (size_t)in * R), *w1 = malloc(sizeof(double) * (size_t)in * R),
           *s1 = malloc(sizeof(double) * R), *v1 = malloc(sizeof(double) * (size_t)R * R),
           *c = calloc((size_t)out * R, sizeof(double)), *w2 = malloc(sizeof(double) * (size_t)out * R),
           *s2 = malloc(sizeof(double) * R), *v2 = malloc(sizeof(double) * (size_t)R * R);
    int rc = -1;
    if (!m1 || !w1 || !s1 || !v1 || !c || !w2 || !s2 || !v2) {
        snprintf(err, errlen, "out of memory for a rank-%d SVD", R);
        goto done;
    }
    for (int k = 0, row = 0; k < n; row += t[k].r, k++) /* Acᵀ [in, R] */
        for (int i = 0; i < t[k].r; i++)
            for (int j = 0; j < in; j++) m1[(size_t)j * R + row + i] = t[k].A[(size_t)i * in + j];
    if (pc_svd_jacobi(m1, in, R, w1, s1, v1, err, errlen)) goto done;
    int q = 0; /* the rank of Ac: Q = W₁[:, :q] / σ₁ */
    while (q < R && s1[q] > 1e-12 * s1[0]) q++;
    if (q < rank) {
        rc = 0;
        goto done;
    }
    /* Ac·Q = V₁·diag(σ₁) (first q columns); C = Bc·(Ac·Q) with Bc's columns cᵢBᵢ */
    for (int k = 0, row = 0; k < n; row += t[k].r, k++) {
        double ck = t[k].w * t[k].s;
        for (int o = 0; o < out; o++)
            for (int i = 0; i < t[k].r; i++) {
                double b = ck * t[k].B[(size_t)o * t[k].r + i];
                for (int j = 0; j < q; j++) c[(size_t)o * q + j] += b * v1[(size_t)(row + i) * R + j] * s1[j];
            }
    }
    if (pc_svd_jacobi(c, out, q, w2, s2, v2, err, errlen)) goto done;
    /* W = W₂ [out, q], V = Q·V₂ [in, q] */
    for (int o = 0; o < out; o++)
        for (int j = 0; j < q; j++) wout[(size_t)o * q + j] = w2[(size_t)o * q + j];
    for (int l = 0; l < in; l++)
        for (int j = 0; j < q; j++) {
            double x = 0;
            for (int p = 0; p < q; p++) x += w1[(size_t)l * R + p] / s1[p] * v2[(size_t)p * q + j];
            vout[(size_t)l * q + j] = x;
        }
    pc_svd_fix_signs(out, in, q, wout, vout);
    rc = q; /* > 0: the factors' width */
done:
    free(m1), free(w1), free(s1), free(v1), free(c), free(w2), free(s2), free(v2);
    return rc;
}

/* a wide ΔW (in > out): the SVD of ΔWᵀ rotates out columns instead of in (O(in·out²), not
 * O(out·in²)); its V is ΔW's U, and ΔW's right vectors are its columns / σ. 1.. the width, 0 when
 * out ≤ in or a wanted σ is 0 (the right vector must come from a complete V: the caller's full SVD),
 * -1 error. */
static int wide_factors(const double *dw, int out, int in, int rank, double *w, double *v, char *err, size_t errlen) {
    if (in <= out) return 0;
    double *t = malloc(sizeof(double) * (size_t)in * out), *wt = malloc(sizeof(double) * (size_t)in * out),
           *s = malloc(sizeof(double) * out), *vt = malloc(sizeof(double) * (size_t)out * out);
    int rc = -1;
    if (!t || !wt || !s || !vt) {
        snprintf(err, errlen, "out of memory for a %dx%d SVD", in, out);
        goto done;
    }
    for (int o = 0; o < out; o++)
        for (int j = 0; j < in; j++) t[(size_t)j * out + o] = dw[(size_t)o * in + j];
    if (pc_svd_jacobi(t, in, out, wt, s, vt, err, errlen)) goto done;
    rc = 0;
    if (s[0] == 0 || s[rank - 1] <= 1e-12 * s[0]) goto done;
    /* B candidates U·σ = V_t·σ [out, out]; right vectors W_t / σ [in, out] (σ = 0 columns zeroed:
     * never among the first `rank`) */
    for (int o = 0; o < out; o++)
        for (int k = 0; k < out; k++) w[(size_t)o * out + k] = vt[(size_t)o * out + k] * s[k];
    for (int j = 0; j < in; j++)
        for (int k = 0; k < out; k++) v[(size_t)j * out + k] = s[k] > 0 ? wt[(size_t)j * out + k] / s[k] : 0;
    pc_svd_fix_signs(out, in, out, w, v);
    rc = out;
done:
    free(t), free(wt), free(s), free(vt);
    return rc;
}

int pc_combine_svd(const pc_lora_term *t, int n, int in, int out, int rank, const pc_task_merge *m,
                   uint64_t stream, double clamp, float *A, float *B, char *err, size_t errlen) {
    size_t sz = (size_t)out * in;
    double *dw = NULL, *w = malloc(sz * sizeof *w), *s = NULL, *v = malloc((size_t)in * in * sizeof *v);
    int rc = -1, width = 0;
    if (!w || !v) {
        snprintf(err, errlen, "out of memory for a %dx%d SVD", out, in);
        goto done;
    }
    if (m->kind == PC_MERGE_SUM && (width = lowrank_factors(t, n, in, out, rank, w, v, err, errlen)) < 0) goto done;
    if (!width) { /* the full SVD of ΔW */
        dw = calloc(sz, sizeof *dw), s = malloc((size_t)in * sizeof *s);
        if (!dw || !s) {
            snprintf(err, errlen, "out of memory for a %dx%d SVD", out, in);
            goto done;
        }
        if (m->kind != PC_MERGE_SUM && merged_delta(t, n, in, out, m, stream, dw)) {
            snprintf(err, errlen, "out of memory for the merged %dx%d update", out, in);
            goto done;
        }
        for (int k = 0; m->kind == PC_MERGE_SUM && k < n; k++) {
            double c = t[k].w * t[k].s;
            for (int o = 0; o < out; o++)
                for (int i = 0; i < t[k].r; i++) {
                    double b = c * t[k].B[(size_t)o * t[k].r + i];
                    const float *a = t[k].A + (size_t)i * in;
                    double *row = dw + (size_t)o * in;
                    for (int j = 0; j < in; j++) row[j] += b * a[j];
                }
        }
        if ((width = wide_factors(dw, out, in, rank, w, v, err, errlen)) < 0) goto done;
        if (!width) {
            if (pc_svd_jacobi(dw, out, in, w, s, v, err, errlen)) goto done;
            pc_svd_fix_signs(out, in, in, w, v);
            width = in;
        }
    }
    for (int o = 0; o < out; o++)
        for (int k = 0; k < rank; k++) B[(size_t)o * rank + k] = (float)w[(size_t)o * width + k];
    for (int k = 0; k < rank; k++)
        for (int j = 0; j < in; j++) A[(size_t)k * in + j] = (float)v[(size_t)j * width + k];
    if (clamp >= 0) {
        size_t nb = (size_t)out * rank, na = (size_t)rank * in;
        float *dist = malloc((nb + na) * sizeof *dist);
        if (!dist) {
            snprintf(err, errlen, "out of memory for the clamp's quantile");
            goto done;
        }
        memcpy(dist, B, nb * sizeof *dist);
        memcpy(dist + nb, A, na * sizeof *dist);
        float hi = pc_quantile_f32(dist, nb + na, clamp), lo = -hi;
        free(dist);
        for (size_t i = 0; i < nb; i++) B[i] = fminf(fmaxf(B[i], lo), hi);
        for (size_t i = 0; i < na; i++) A[i] = fminf(fmaxf(A[i], lo), hi);
    }
    rc = 0;
done:
    free(dw), free(w), free(s), free(v);
    return rc;
}
