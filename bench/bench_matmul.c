/* Microbenchmark of backend/onednn.c (not a test; not built by CMake).
 *
 *   cd /work/main && gcc -std=c17 -O2 -Wall -Wextra -D_GNU_SOURCE -I. bench/bench_matmul.c backend/onednn.c \
 *       -ldnnl -lm -o /tmp/bench_matmul && /tmp/bench_matmul [threads=1] [reps=50]
 *
 * For threads > 1 start it with OMP_WAIT_POLICY=passive in the environment (libgomp reads it before
 * main) and see toolchain.md §0 about calibrating 2-thread numbers.
 * Prints median and best GFLOP/s per configuration (2*M*K*N flops per call). */
#include "backend/onednn.h"

#include <stdint.h>
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

static float *buf(size_t n) {
    float *p = aligned_alloc(64, ((n * sizeof(float)) + 63) / 64 * 64);
    if (!p) exit(1);
    for (size_t i = 0; i < n; i++) p[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f; /* touch */
    return p;
}

/* b_mode: 0 plain row-major b [K,N]; 1 transposed (W stored [N,K]); 2 = 1 + b_constant prepared */
static void bench(pc_dnnl *d, int64_t M, int64_t K, int64_t N, int b_mode, int acc, int reps) {
    pc_matmul_desc m = {.rank = 2, .a_dims = {M, K}, .a_strides = {K, 1}, .b_dims = {K, N}, .c_dims = {M, N},
                        .alpha = 1.0f, .accumulate = acc, .b_constant = b_mode == 2};
    if (b_mode == 0) {
        m.b_strides[0] = N;
        m.b_strides[1] = 1;
    } else {
        m.b_strides[0] = 1;
        m.b_strides[1] = K;
    }
    char err[256];
    pc_dnnl_matmul *p = pc_dnnl_matmul_new(d, &m, err, sizeof err);
    if (!p) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    float *a = buf((size_t)(M * K)), *b = buf((size_t)(K * N)), *c = buf((size_t)(M * N));
    if (b_mode == 2 && pc_dnnl_matmul_prepare_b(p, b, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    const float *barg = b_mode == 2 ? NULL : b;
    for (int i = 0; i < 5; i++) pc_dnnl_matmul_run(p, a, barg, c);
    double *t = malloc(sizeof(double) * (size_t)reps);
    /* time batches of calls so that the tiny LoRA shapes are not dominated by the clock */
    int inner = (int)(2e8 / (double)(2 * M * K * N)) + 1;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        for (int i = 0; i < inner; i++) pc_dnnl_matmul_run(p, a, barg, c);
        t[r] = (now() - t0) / inner;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_d);
    double fl = 2.0 * (double)M * (double)K * (double)N * 1e-9;
    static const char *modes[] = {"b plain [K,N]", "b^T (W [N,K])", "b^T b_constant"};
    printf("%4ldx%4ldx%4ld %-16s %-4s %-22s median %7.1f  best %7.1f GFLOP/s  (%.1f us)\n", (long)M, (long)K,
           (long)N, modes[b_mode], acc ? "+=" : "", pc_dnnl_matmul_impl(p), fl / t[reps / 2], fl / t[0],
           t[reps / 2] * 1e6);
    free(t);
    free(a);
    free(b);
    free(c);
    pc_dnnl_matmul_free(p);
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    int reps = argc > 2 ? atoi(argv[2]) : 50;
    if (reps < 1) reps = 1;
    const char *wp = getenv("OMP_WAIT_POLICY"); /* before pc_dnnl_new, which sets it (too late for libgomp) */
    printf("threads=%d reps=%d OMP_WAIT_POLICY at start=%s\n", threads, reps, wp ? wp : "(unset)");
    char err[256];
    pc_dnnl *d = pc_dnnl_new(threads, err, sizeof err);
    if (!d) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    static const int64_t shapes[][3] = {{512, 768, 768}, {512, 768, 3072}, {512, 768, 8}, {512, 8, 768}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int mode = 0; mode < 3; mode++)
            bench(d, shapes[s][0], shapes[s][1], shapes[s][2], mode, 0, reps);
    bench(d, 512, 8, 768, 2, 1, reps);
    pc_dnnl_free(d);
    return 0;
}
