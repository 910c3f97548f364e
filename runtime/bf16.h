/* bfloat16: the upper 16 bits of an IEEE f32. Conversions used everywhere bf16 values exist (the IR
 * parser, both backends, checkpoint loading), so every layer rounds the same way. */
#ifndef PEFTC_RUNTIME_BF16_H
#define PEFTC_RUNTIME_BF16_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* what the CPU's vcvtneps2bf16 does, so every backend rounds alike: round to nearest, ties to
 * even; a denormal input counts as a zero of its sign; NaN stays a (quiet) NaN */
static inline uint16_t pc_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    if ((u & 0x7f800000u) == 0) return (uint16_t)((u >> 16) & 0x8000u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* exact */
static inline float pc_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* n elements; the loops are plain so the compiler vectorises them */
void pc_f32_to_bf16_n(const float *src, uint16_t *dst, size_t n);
void pc_bf16_to_f32_n(const uint16_t *src, float *dst, size_t n);

/* the CPU multiplies bf16 natively (AVX512_BF16 or AMX-BF16): oneDNN's bf16 products are then
 * faster than f32 ones; without it they are emulated and slower */
bool pc_cpu_has_bf16(void);

#endif
