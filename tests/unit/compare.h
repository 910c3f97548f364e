/* Tensor comparisons shared by the fixture tests. */
#ifndef PEFTC_TESTS_COMPARE_H
#define PEFTC_TESTS_COMPARE_H

#include <math.h>
#include <stdint.h>

/* max |a - b| over n (NaN counts as the largest) */
static inline double max_abs_diff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > m || d != d) m = d;
    }
    return m;
}

static inline double max_abs(const float *a, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        if (fabs(a[i]) > m) m = fabs(a[i]);
    return m;
}

#endif
