/* One core's f32 FMA peak, measured (toolchain.md §3): 16 independent _mm512_fmadd_ps chains
 * held in NAMED variables (an array of __m512 accumulators gets spilled by gcc -O2 and reads
 * about 4x too low). Build: gcc -std=c17 -O2 -march=native -Wall -Wextra -Werror bench/fma_peak.c
 *
 *   fma_peak [--reps R] [--json]
 *
 * Runs R (default 7) timed repetitions of ~0.15 s each after a short warm-up and prints the
 * median and best GFLOP/s (2 FLOP per lane per FMA, 16 lanes, 16 chains). One thread.
 * The same loop on ymm (8 lanes) is reported too: zmm = 2x ymm on a core with a full 512-bit
 * datapath (Zen 5), zmm = ymm where 512-bit ops are double-pumped (Zen 4). */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* iters x 16 chains x 16 lanes x 2 FLOP; the result is returned so nothing is dead code */
static float kernel(long iters, float seed) {
    __m512 a0 = _mm512_set1_ps(seed), a1 = _mm512_set1_ps(seed + 1), a2 = _mm512_set1_ps(seed + 2),
           a3 = _mm512_set1_ps(seed + 3), a4 = _mm512_set1_ps(seed + 4), a5 = _mm512_set1_ps(seed + 5),
           a6 = _mm512_set1_ps(seed + 6), a7 = _mm512_set1_ps(seed + 7), a8 = _mm512_set1_ps(seed + 8),
           a9 = _mm512_set1_ps(seed + 9), a10 = _mm512_set1_ps(seed + 10), a11 = _mm512_set1_ps(seed + 11),
           a12 = _mm512_set1_ps(seed + 12), a13 = _mm512_set1_ps(seed + 13), a14 = _mm512_set1_ps(seed + 14),
           a15 = _mm512_set1_ps(seed + 15);
    const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (long i = 0; i < iters; i++) {
        a0 = _mm512_fmadd_ps(a0, m, c);
        a1 = _mm512_fmadd_ps(a1, m, c);
        a2 = _mm512_fmadd_ps(a2, m, c);
        a3 = _mm512_fmadd_ps(a3, m, c);
        a4 = _mm512_fmadd_ps(a4, m, c);
        a5 = _mm512_fmadd_ps(a5, m, c);
        a6 = _mm512_fmadd_ps(a6, m, c);
        a7 = _mm512_fmadd_ps(a7, m, c);
        a8 = _mm512_fmadd_ps(a8, m, c);
        a9 = _mm512_fmadd_ps(a9, m, c);
        a10 = _mm512_fmadd_ps(a10, m, c);
        a11 = _mm512_fmadd_ps(a11, m, c);
        a12 = _mm512_fmadd_ps(a12, m, c);
        a13 = _mm512_fmadd_ps(a13, m, c);
        a14 = _mm512_fmadd_ps(a14, m, c);
        a15 = _mm512_fmadd_ps(a15, m, c);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)),
                                       _mm512_add_ps(_mm512_add_ps(a12, a13), _mm512_add_ps(a14, a15))));
    return _mm512_reduce_add_ps(s);
}

/* the same on ymm registers: iters x 16 chains x 8 lanes x 2 FLOP */
static float kernel_ymm(long iters, float seed) {
    __m256 a0 = _mm256_set1_ps(seed), a1 = _mm256_set1_ps(seed + 1), a2 = _mm256_set1_ps(seed + 2),
           a3 = _mm256_set1_ps(seed + 3), a4 = _mm256_set1_ps(seed + 4), a5 = _mm256_set1_ps(seed + 5),
           a6 = _mm256_set1_ps(seed + 6), a7 = _mm256_set1_ps(seed + 7), a8 = _mm256_set1_ps(seed + 8),
           a9 = _mm256_set1_ps(seed + 9), a10 = _mm256_set1_ps(seed + 10), a11 = _mm256_set1_ps(seed + 11),
           a12 = _mm256_set1_ps(seed + 12), a13 = _mm256_set1_ps(seed + 13), a14 = _mm256_set1_ps(seed + 14),
           a15 = _mm256_set1_ps(seed + 15);
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (long i = 0; i < iters; i++) {
        a0 = _mm256_fmadd_ps(a0, m, c);
        a1 = _mm256_fmadd_ps(a1, m, c);
        a2 = _mm256_fmadd_ps(a2, m, c);
        a3 = _mm256_fmadd_ps(a3, m, c);
        a4 = _mm256_fmadd_ps(a4, m, c);
        a5 = _mm256_fmadd_ps(a5, m, c);
        a6 = _mm256_fmadd_ps(a6, m, c);
        a7 = _mm256_fmadd_ps(a7, m, c);
        a8 = _mm256_fmadd_ps(a8, m, c);
        a9 = _mm256_fmadd_ps(a9, m, c);
        a10 = _mm256_fmadd_ps(a10, m, c);
        a11 = _mm256_fmadd_ps(a11, m, c);
        a12 = _mm256_fmadd_ps(a12, m, c);
        a13 = _mm256_fmadd_ps(a13, m, c);
        a14 = _mm256_fmadd_ps(a14, m, c);
        a15 = _mm256_fmadd_ps(a15, m, c);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)),
                                       _mm256_add_ps(_mm256_add_ps(a12, a13), _mm256_add_ps(a14, a15))));
    float o[8];
    _mm256_storeu_ps(o, s);
    return o[0] + o[1] + o[2] + o[3] + o[4] + o[5] + o[6] + o[7];
}

typedef float (*kernel_fn)(long, float);

/* median and best GFLOP/s of reps runs of ~0.15 s; flop_per_iter per loop iteration */
static void measure(kernel_fn k, double flop_per_iter, int reps, double *g, double *med, double *best,
                    volatile float *sink) {
    long iters = 1L << 20;
    for (;;) { /* size one repetition to ~0.15 s (this also warms the core up) */
        double t0 = now();
        *sink += k(iters, 1.0f);
        double dt = now() - t0;
        if (dt > 0.05 || iters > (1L << 34)) {
            iters = (long)((double)iters * 0.15 / (dt > 1e-6 ? dt : 1e-6));
            break;
        }
        iters *= 4;
    }
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        *sink += k(iters, (float)r);
        double dt = now() - t0;
        g[r] = flop_per_iter * (double)iters / dt * 1e-9;
    }
    qsort(g, (size_t)reps, sizeof *g, cmp_d);
    *med = g[reps / 2];
    *best = g[reps - 1];
}

int main(int argc, char **argv) {
    int reps = 7, json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json")) json = 1;
        else {
            fprintf(stderr, "usage: fma_peak [--reps R] [--json]\n");
            return 2;
        }
    }
    if (reps < 1 || reps > 1000) reps = 7;
    volatile float sink = 0;
    double *g = malloc((size_t)reps * sizeof *g);
    if (!g) return 1;
    double med, best, ymed, ybest;
    measure(kernel, 16.0 * 16.0 * 2.0, reps, g, &med, &best, &sink);
    measure(kernel_ymm, 16.0 * 8.0 * 2.0, reps, g, &ymed, &ybest, &sink);
    if (json)
        printf("{\"bench\":\"fma_peak\",\"isa\":\"avx512 zmm\",\"threads\":1,\"gflops_median\":%.1f,\"gflops_best\":%.1f,"
               "\"gflops_ymm_median\":%.1f,\"gflops_ymm_best\":%.1f,\"reps\":%d}\n", med, best, ymed, ybest, reps);
    else
        printf("FMA peak (1 thread, f32): zmm median %.1f GFLOP/s, best %.1f; ymm median %.1f, best %.1f (%d reps)\n",
               med, best, ymed, ybest, reps);
    free(g);
    return sink == 12345.0f ? 3 : 0; /* keeps sink live */
}
