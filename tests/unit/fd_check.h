/* Shared by test_autograd.c and test_grad.c: deterministic data and the finite difference of a
 * scalar loss run by the reference interpreter. */
#ifndef PEFTC_FD_CHECK_H
#define PEFTC_FD_CHECK_H
#include "backend/ref.h"
#include "ir.h"
#include "runtime/rng.h"

#include <stdio.h>

/* ---- deterministic data ---- */
typedef struct {
    uint64_t s;
} rng;
/* splitmix64: pc_mix64 of the state, which then advances by the golden gamma */
static inline double urand(rng *r) {
    double u = (double)(pc_mix64(r->s) >> 11) * 0x1.0p-53;
    r->s += 0x9e3779b97f4a7c15ull;
    return u;
}

/* runs ref and returns the (f32) loss; on failure sets *bad, prints the first error, returns 0 */
static inline double fd_run_loss(pc_ref *ref, pc_val loss, int *bad) {
    char err[512];
    if (pc_ref_run(ref, err, sizeof err)) {
        if (!*bad) printf("\n    run failed: %s\n", err);
        *bad = 1;
        return 0;
    }
    return *(const float *)pc_ref_data(ref, loss);
}

/* d loss / d *x by a central difference refined by one Richardson step over the actual
 * (f32-rounded) steps: D = (4 D(h/2) - D(h)) / 3; *x is restored */
static inline double fd_richardson(pc_ref *ref, pc_val loss, float *x, double h, int *bad) {
    float x0 = *x;
    double f[4];
    const double steps[4] = {h, -h, h / 2, -h / 2};
    for (int s = 0; s < 4; s++) {
        *x = (float)(x0 + steps[s]);
        f[s] = fd_run_loss(ref, loss, bad);
    }
    *x = x0;
    double hp = (double)(float)(x0 + h) - (double)(float)(x0 - h);
    double hq = (double)(float)(x0 + h / 2) - (double)(float)(x0 - h / 2);
    double d1 = (f[0] - f[1]) / hp, d2 = (f[2] - f[3]) / hq;
    return (4 * d2 - d1) / 3;
}
#endif
