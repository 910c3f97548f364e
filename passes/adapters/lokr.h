/* LoKr's shape rule, exposed for tests: PEFT's (LyCORIS's) factorization(dimension, factor). */
#ifndef PEFTC_PASSES_ADAPTERS_LOKR_H
#define PEFTC_PASSES_ADAPTERS_LOKR_H

#include <stdint.h>

/* dim = (*m) * (*n) with *m <= *n: (factor, dim/factor) when factor > 0 divides dim; otherwise the
 * divisor pair with the smallest m + n found by searching m upward from 1, stopping at the first
 * m that makes the sum grow or exceeds factor (factor -1: no cap). PEFT's code exactly, including
 * its answers for factors that do not divide dim (3072, 5 -> (4, 768)) and for factor < -1
 * (-> (1, dim)). dim >= 1. */
void pc_lokr_factorization(int64_t dim, int64_t factor, int64_t *m, int64_t *n);

#endif
