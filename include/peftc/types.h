/* peftc's shared vocabulary types: element types and shapes. This header is what the runtime
 * (runtime/: safetensors, llama2c checkpoints, ...) and the compiler have in common; it declares
 * no function, so including it links nothing. The graph API is in peftc/peftc.h, which includes
 * this header. */
#ifndef PEFTC_TYPES_H
#define PEFTC_TYPES_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* the largest rank of any value (and of any tensor in a checkpoint peftc reads) */
#define PC_MAX_RANK 6

/* element types: 32-bit IEEE float, 32-bit signed integer, bfloat16. bf16 is a storage type:
 * checkpoint tensors, and in graphs the frozen base weights and the operands of their products
 * (cast, matmul, embedding and reshape read it; see peftc.h) */
typedef enum { PC_F32 = 0, PC_I32 = 1, PC_BF16 = 2 } pc_dtype;

/* a row-major shape: dim[0..rank-1] are the extents (outermost first), rank 0 is a scalar with
 * one element; entries past rank are 0 by convention */
typedef struct {
    int rank;
    int64_t dim[PC_MAX_RANK];
} pc_shape;

#ifdef __cplusplus
}
#endif
#endif
