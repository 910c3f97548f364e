/* PEFT's add_weighted_adapter per module (peft/tuners/lora/model.py: add_weighted_adapter's cat
 * branch, _generalized_task_arithmetic_weighted_adapter, _svd_generalized_task_arithmetic_
 * weighted_adapter; peft/utils/merge_utils.py task_arithmetic). */
#include "drivers/combine_math.h"
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

void pc_combine_linear(const pc_lora_term *t, int n, int in, int out, int rank, float *A, float *B) {
    memset(A, 0, sizeof(float) * (size_t)rank * in);
    memset(B, 0, sizeof(float) * (size_t)out * rank);
    for (int k = 0; k < n; k++) {
        /* Python floats, then torch.tensor(...) rounds them to f32 */
        double ws = t[k].w * t[k].s, root = sqrt(fabs(ws));
        float wa = (float)(ws >= 0 ? root : -root), wb = (float)root;
        for (size_t i = 0; i < (size_t)rank * in; i++) A[i] += t[k].A[i] * wa;
        for (size_t i = 0; i < (size_t)out * rank; i++) B[i] += t[k].B[i] * wb;
    }
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

int pc_combine_svd(const pc_lora_term *t, int n, int in, int out, int rank, double clamp, float *A, float *B,
                   char *err, size_t errlen) {
    size_t sz = (size_t)out * in;
    double *dw = calloc(sz, sizeof *dw), *w = malloc(sz * sizeof *w), *s = malloc((size_t)in * sizeof *s),
           *v = malloc((size_t)in * in * sizeof *v);
    int rc = -1;
    if (!dw || !w || !s || !v) {
        snprintf(err, errlen, "out of memory for a %dx%d SVD", out, in);
        goto done;
    }
    for (int k = 0; k < n; k++) {
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
