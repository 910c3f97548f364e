#include "runtime/bf16.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define PC_BF16_X86 1
/* 16 at a time with vcvtneps2bf16: the same bits as pc_f32_to_bf16 */
__attribute__((target("avx512f,avx512bf16,avx512vl"))) static size_t to_bf16_avx512(const float *src, uint16_t *dst,
                                                                                     size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(void *)(dst + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i)));
    return i;
}
#endif

void pc_f32_to_bf16_n(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
#ifdef PC_BF16_X86
    if (__builtin_cpu_supports("avx512bf16")) i = to_bf16_avx512(src, dst, n);
#endif
    for (; i < n; i++) dst[i] = pc_f32_to_bf16(src[i]);
}

void pc_bf16_to_f32_n(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = pc_bf16_to_f32(src[i]);
}

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
bool pc_cpu_has_bf16(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    bool avx512f = b & (1u << 16), amx_bf16 = d & (1u << 22);
    unsigned a1 = 0, b1, c1, d1;
    if (a >= 1 && !__get_cpuid_count(7, 1, &a1, &b1, &c1, &d1)) a1 = 0;
    return amx_bf16 || (avx512f && (a1 & (1u << 5))); /* AMX-BF16, or AVX512F with AVX512_BF16 */
}
#else
bool pc_cpu_has_bf16(void) { return false; }
#endif
