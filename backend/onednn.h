/* oneDNN 2.6 (C API) matmul primitives, created once and executed many times.
 * c = alpha * op(a) @ op(b) [+ c when accumulate]  (f32, batched with broadcasting).
 * Transposes and batch broadcasting are expressed through dims/strides. */
#ifndef PEFTC_BACKEND_ONEDNN_H
#define PEFTC_BACKEND_ONEDNN_H

#include <stddef.h>
#include <stdint.h>

#define PC_MM_MAX_RANK 6

typedef struct pc_dnnl pc_dnnl; /* engine + stream */

/* threads: OpenMP threads for oneDNN (1 = single-threaded). Sets OMP_WAIT_POLICY=passive
 * unless the environment already sets it (spinning pools collapse on this machine). */
pc_dnnl *pc_dnnl_new(int threads, char *err, size_t errlen);
void pc_dnnl_free(pc_dnnl *d);
/* the version of the oneDNN library in use ("3.0.0 (commit 1234abcd, OpenMP)": dnnl_version) */
void pc_dnnl_version(char *buf, size_t len);

typedef struct {
    int rank; /* >= 2; a, b and c all have this rank (leading batch dims may be 1 = broadcast) */
    int64_t a_dims[PC_MM_MAX_RANK], a_strides[PC_MM_MAX_RANK]; /* logical [..., M, K] (in elements) */
    int64_t b_dims[PC_MM_MAX_RANK], b_strides[PC_MM_MAX_RANK]; /* logical [..., K, N] */
    int64_t c_dims[PC_MM_MAX_RANK];                            /* [..., M, N], dense row-major */
    float alpha;
    int accumulate; /* 1: c += alpha * a @ b (oneDNN sum post-op) */
    int bf16;       /* 1: a and b are bf16 (c stays f32, accumulated in f32) */
    int b_constant; /* 1: b never changes (a frozen weight): oneDNN may pick a blocked layout, and
                       pc_dnnl_matmul_prepare_b reorders it once */
    int reduce_batch; /* 1: c is one [M, N] matrix, the sum over the batch of the products (a
                         sum_to the lowering folded in); only the backend's C kernels run it */
} pc_matmul_desc;

typedef struct pc_dnnl_matmul pc_dnnl_matmul;

pc_dnnl_matmul *pc_dnnl_matmul_new(pc_dnnl *d, const pc_matmul_desc *m, char *err, size_t errlen);
void pc_dnnl_matmul_free(pc_dnnl_matmul *p);
/* for b_constant: converts b once into the primitive's layout, kept inside p (NULL if not needed) */
int pc_dnnl_matmul_prepare_b(pc_dnnl_matmul *p, const void *b, char *err, size_t errlen);

/* Reordered constant weights shared by matmuls, also of different executors: one buffer per
 * (source pointer, layout). A matmul given a cache (before its first prepare) reorders into
 * the cache's buffer instead of one of its own; every prepare reorders again from the source,
 * so a changed source (an adapter rebound after training steps) reaches every sharer. The
 * sharers must not run concurrently, and the cache must outlive them. */
typedef struct pc_dnnl_wcache pc_dnnl_wcache;
pc_dnnl_wcache *pc_dnnl_wcache_new(void);
void pc_dnnl_wcache_free(pc_dnnl_wcache *c);
/* bytes the cache holds */
size_t pc_dnnl_wcache_bytes(const pc_dnnl_wcache *c);
/* 0, or -1 when out of memory */
int pc_dnnl_matmul_share_b(pc_dnnl_matmul *p, pc_dnnl_wcache *c, char *err, size_t errlen);
/* runs with plain pointers (b ignored when prepared); 0 or -1 */
int pc_dnnl_matmul_run(pc_dnnl_matmul *p, const void *a, const void *b, float *c);
/* the oneDNN implementation name, for reports ("brg:avx512_core") */
const char *pc_dnnl_matmul_impl(const pc_dnnl_matmul *p);

#endif
