/* Shared by runtime/gguf.c (the parser) and runtime/gguf_tensor.c (types, dequantization). */
#ifndef PEFTC_RUNTIME_GGUF_INTERNAL_H
#define PEFTC_RUNTIME_GGUF_INTERNAL_H

#include <stdint.h>

#include "runtime/gguf.h"

/* a GGML tensor type: elements per block and bytes per block */
typedef struct {
    const char *name;
    uint32_t block;
    uint32_t block_bytes;
} pc_gguf_ttype_info;

/* NULL for an id ggml does not define (or has removed) */
const pc_gguf_ttype_info *pc_gguf_ttype(uint32_t type);

#endif
