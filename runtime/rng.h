/* Deterministic random numbers shared by every backend: a counter-based hash, so that a
 * dropout mask or an initial value depends only on (seed, stream, index) and never on the
 * order of evaluation or the number of threads. */
#ifndef PEFTC_RNG_H
#define PEFTC_RNG_H
#include <math.h>
#include <stdint.h>

static inline uint64_t pc_mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* uniform in [0, 1) with 24 bits of resolution (exact in f32) */
static inline float pc_hash_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
    uint64_t h = pc_mix64(pc_mix64(seed ^ pc_mix64(stream)) ^ index);
    return (float)(h >> 40) * (1.0f / 16777216.0f);
}

/* standard normal by Box-Muller on two hashed uniforms */
static inline double pc_hash_normal(uint64_t seed, uint64_t stream, uint64_t index) {
    double u1 = ((double)(pc_mix64(pc_mix64(seed ^ pc_mix64(stream)) ^ (2 * index)) >> 11) + 0.5) * 0x1.0p-53;
    double u2 = (double)(pc_mix64(pc_mix64(seed ^ pc_mix64(stream)) ^ (2 * index + 1)) >> 11) * 0x1.0p-53;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
#endif
