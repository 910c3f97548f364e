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

int pc_combine_svd(const pc_lora_term *t, int n, int in, int out, int rank, const pc_task_merge *m,
                   uint64_t stream, double clamp, float *A, float *B, char *err, size_t errlen) {
    size_t sz = (size_t)out * in;
    double *dw = calloc(sz, sizeof *dw), *w = malloc(sz * sizeof *w), *s = malloc((size_t)in * sizeof *s),
           *v = malloc((size_t)in * in * sizeof *v);
    int rc = -1;
    if (!dw || !w || !s || !v) {
        snprintf(err, errlen, "out of memory for a %dx%d SVD", out, in);
        goto done;
    }
    if (m->kind != PC_MERGE_SUM) {
        if (merged_delta(t, n, in, out, m, stream, dw)) {
            snprintf(err, errlen, "out of memory for the merged %dx%d update", out, in);
            goto done;
        }
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
    if (pc_svd_jacobi(dw, out, in, w, s, v, err, errlen)) goto done;
    pc_svd_fix_signs(out, in, w, v);
    for (int o = 0; o < out; o++)
        for (int k = 0; k < rank; k++) B[(size_t)o * rank + k] = (float)w[(size_t)o * in + k];
    for (int k = 0; k < rank; k++)
        for (int j = 0; j < in; j++) A[(size_t)k * in + j] = (float)v[(size_t)j * in + k];
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
