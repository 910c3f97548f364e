/* The unit tests' random numbers: xorshift64* (Vigna), reproducible from a seed and the same
 * sequence on every platform. The state is the caller's. */
#ifndef PEFTC_TEST_RNG_H
#define PEFTC_TEST_RNG_H

#include <stdint.h>

/* the next 64 bits */
static inline uint64_t test_rng_bits(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}
/* uniform in [0, 1), 53 bits */
static inline double test_rng_unit(uint64_t *s) { return (double)(test_rng_bits(s) >> 11) * 0x1.0p-53; }

#endif
