/* Private interface of the compiled backend (backend/compiled*.c).
 *
 * compiled.c owns the pc_compiled state: the lowered instruction list, the arena, oneDNN
 * primitives, JIT kernels, bindings and run-time pointers, and the small C matmuls (with
 * compiled_gemm_batched.c for tiny batched ones and compiled_gemm_at.c for weight gradients).
 * compiled_kernels.c holds the C kernels of CALL instructions (fast versions of the reference
 * kernels' semantics; anything without one runs the reference kernel itself) and the strided copy
 * of COPY instructions; compiled_attention.c the attention kernels. The vector helpers below are
 * shared by all of them. */
#ifndef PEFTC_BACKEND_COMPILED_INTERNAL_H
#define PEFTC_BACKEND_COMPILED_INTERNAL_H

#include "backend/compiled.h"
#include "backend/ref_internal.h"
#include "backend/lower.h"

#include <stdio.h>
#include <string.h>

/* what a C kernel sees: the reference kernel context (node, operand and output buffers, message
 * buffer) plus the instruction's arena scratch and its extras */
typedef struct {
    ref_kctx k;
    void *scratch;         /* pc_ck_select's scratch bytes, in the arena */
    const pc_value *mask;  /* CALL_MASKED_SOFTMAX / SOFTMAX_GRAD: the causal_mask node, or NULL */
    double alpha;          /* CALL_SOFTMAX_GRAD: the folded scale */
    const double *table;   /* rope: (cos, sin) per position index and frequency, or NULL */
    const pc_linsn *li;    /* the instruction (operand views of the attention kernels) */
    void *outs[2];         /* results 1 and 2 of a multi-result call (FLASH_GRAD); k.out is result 0 */
    const pc_value *mask2; /* FLASH_GRAD: the softmax backward's causal_mask, or NULL */
    double alpha2;         /* FLASH_GRAD: the softmax backward's scale */
} pc_ckctx;

typedef int (*pc_ck_fn)(const pc_ckctx *c);

/* The C kernel of a CALL instruction; *scratch receives the bytes of arena scratch it needs and
 * *name a short name for profiles ("softmax", "ref:kron" for a reference fallback). */
pc_ck_fn pc_ck_select(const pc_graph *g, const pc_linsn *I, int64_t *scratch, const char **name);

/* rope tables for constant positions, computed once: n_pos rows of half (cos, sin) pairs, in
 * double, exactly as the reference computes them (malloc'd; NULL if out of memory or a position
 * is negative, which the kernel then reports at run time) */
double *pc_ck_rope_table(const pc_graph *g, pc_val rope, const int32_t *pos);

/* hot loops: compiled for AVX-512 / AVX2 / baseline, picked at load time (ifunc); reductions
 * use GCC vector types so that they vectorize without reassociation flags */
#pragma GCC diagnostic ignored "-Wpsabi" /* vector helpers are always inlined: no ABI crosses */
#if defined(__clang__)
/* clang checks the vector calling convention of every call before inlining, so an AVX clone
 * calling the (always inlined) helpers below is an error there, and it has no optimize
 * attribute: with clang the hot loops are compiled once, for the build's target (baseline x86-64
 * unless CFLAGS say otherwise), at the build's optimization level */
#define PC_HOT __attribute__((hot))
#else
#define PC_HOT                                                                                     \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), optimize("O3", "fp-contract=fast")))
#endif
#define INL static inline __attribute__((always_inline))

typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));
typedef double v8d __attribute__((vector_size(64)));

INL v16f ld16(const float *p) { v16f v; memcpy(&v, p, sizeof v); return v; }
INL v8f ld8(const float *p) { v8f v; memcpy(&v, p, sizeof v); return v; }
INL void st16(float *p, v16f v) { memcpy(p, &v, sizeof v); }
INL v8d ld8d(const float *p) { v8f v; memcpy(&v, p, sizeof v); return __builtin_convertvector(v, v8d); }
INL v16f sel16(v16i m, v16f a, v16f b) { return (v16f)(((v16i)a & m) | ((v16i)b & ~m)); }
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef double v4d __attribute__((vector_size(32)));
#define LO8(v) __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7)
#define HI8(v) __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15)
/* horizontal reductions as trees (a sequential lane loop costs more than a short row) */
INL float hsum8(v8f a) {
    v4f b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
    return (b[0] + b[2]) + (b[1] + b[3]);
}
INL float hsum16(v16f v) { return hsum8(LO8(v) + HI8(v)); }
INL float hmax16(v16f v) {
    v8f lo = LO8(v), hi = HI8(v);
    v8f a = (v8f)(((v8i)hi & (hi > lo)) | ((v8i)lo & ~(hi > lo)));
    float r = a[0];
    for (int l = 1; l < 8; l++) r = a[l] > r ? a[l] : r;
    return r;
}
INL int hany16(v16i m) {
    v8i a = LO8(m) | HI8(m);
    return (a[0] | a[1] | a[2] | a[3] | a[4] | a[5] | a[6] | a[7]) != 0;
}
INL double hsum8d(v8d v) {
    v4d a = __builtin_shufflevector(v, v, 0, 1, 2, 3) + __builtin_shufflevector(v, v, 4, 5, 6, 7);
    return (a[0] + a[2]) + (a[1] + a[3]);
}

/* sum of the f32 products a[j] b[j], j < n, accumulated in double (the softmax backward's row sum) */
INL double dot_f32_sum_d(const float *a, const float *b, int64_t n) {
    v8d a0 = {0}, a1 = {0};
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        v16f p = ld16(a + j) * ld16(b + j);
        a0 += __builtin_convertvector(LO8(p), v8d);
        a1 += __builtin_convertvector(HI8(p), v8d);
    }
    double s = hsum8d(a0 + a1);
    for (; j < n; j++) s += (double)(a[j] * b[j]);
    return s;
}

static const v16i iota16 = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

/* exp(x) for x <= 0 on 16 lanes (Cephes expf polynomial, ~1e-7 relative); 0 below -87.3 */
INL v16f exp16(v16f x0) {
    v16f x = sel16(x0 < -88.0f, (v16f){0} - 88.0f, x0); /* keeps the conversion defined */
    v16f t = x * 1.44269504088896341f;
    v16f n = (t + 12582912.0f) - 12582912.0f;
    v16f r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    v16f p = r * 1.9875691500E-4f + 1.3981999507E-3f;
    p = p * r + 8.3334519073E-3f;
    p = p * r + 4.1665795894E-2f;
    p = p * r + 1.6666665459E-1f;
    p = p * r + 5.0000001201E-1f;
    p = p * r * r + r + 1.0f;
    v16i e = (__builtin_convertvector(n, v16i) + 127) << 23;
    v16f res = p * (v16f)e;
    return (v16f)((v16i)res & (x0 >= -87.33654f));
}

/* softmax of rows of n, row stride ld (compiled_kernels.c); sq > 0: the causal mask (entries
 * j > (row % sq) + shift read as fill); o may be x */
void pc_ck_softmax_rows(float *o, const float *x, int64_t rows, int64_t n, int64_t ld, int64_t sq, int64_t shift,
                        float fill, bool logsm);
/* the attention kernels (compiled_attention.c): CALL_ATTN, CALL_ATTN_GRAD and their scratch bytes */
int pc_ck_attention_probs(const pc_ckctx *c);
int pc_ck_attention_probs_grad(const pc_ckctx *c);
int pc_ck_flash_attention(const pc_ckctx *c);
int pc_ck_flash_attention_grad(const pc_ckctx *c);
/* CALL_MUL_SUM (compiled_mul_sum.c): sum_to(a * b) without the product, and its scratch bytes */
int pc_ck_mul_sum(const pc_ckctx *c);
int64_t pc_ck_mul_sum_scratch(const pc_linsn *I);
int64_t pc_ck_attention_scratch(const pc_linsn *I);

/* small matmuls in C (N = 4, 8 or 16), for shapes where oneDNN wastes its vectors */
bool pc_ck_gemm_small_ok(const pc_matmul_desc *d);
void pc_ck_gemm_small(const pc_matmul_desc *d, const float *a, const float *b, float *c);
/* the batched layouts of backend/compiled_gemm_batched.c; false: not one of them (nothing written) */
bool pc_ck_gemm_batched(const pc_matmul_desc *d, const float *a, const float *b, float *c);
/* 8-column products with A's rows contiguous, two k per lane (backend/compiled_gemm_pairs.c);
 * false: not that form (nothing written) */
bool pc_ck_gemm_pairs(const pc_matmul_desc *d, const float *a, const float *b, float *c);
/* c = alpha aᵀ b (+ c) with a [T, M], b [T, N] read row by row (backend/compiled_gemm_at.c) */
bool pc_ck_gemm_at_ok(const pc_matmul_desc *d);
void pc_ck_gemm_at(const pc_matmul_desc *d, const float *a, const float *b, float *c);

/* dst (dense) = src read with element strides st over dims (4-byte elements) */
void pc_ck_copy(void *dst, const void *src, int rank, const int64_t *dims, const int64_t *st);

/* --check-finite (backend/compiled_finite.c): judges the results of instruction I, just run, by
 * the rule of backend/finite.h; base holds each buffer's address and bufkinds each buffer's
 * PC_FIN_* kinds as checked this run (zeroed at the start of a run; updated here). 0, or -1 with
 * the message naming the op. */
int pc_cfin_check(const pc_graph *g, void *const *base, const pc_linsn *I, uint8_t *bufkinds, char *err,
                  size_t errlen);
/* the params and states (bound, else initialised: bound[v] or init[v]) before a run */
int pc_cfin_check_leaves(const pc_graph *g, void *const *bound, void *const *init, char *err, size_t errlen);

/* ---- profiling (tests and benchmarks) ---- */
void pc_compiled_set_profile(pc_compiled *c, int on);
/* per instruction kind and per CALL/op name: calls and time since profiling was switched on */
void pc_compiled_profile_report(const pc_compiled *c, FILE *f);
/* the lowered program (for tests and dumps) */
const pc_lowered *pc_compiled_lowered(const pc_compiled *c);

#endif
