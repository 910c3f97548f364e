/* Shared by runtime/gguf.c (the parser), runtime/gguf_tensor.c (types, dequantization) and
 * runtime/gguf_write.c (the writer). */
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

/* metadata entry i (file order) as the file holds it: key, value type and value, bytes in the
 * mapping (valid until pc_gguf_close); -1 when i is out of range */
int pc_gguf_kv_raw(const pc_gguf *g, int i, const void **data, size_t *len);

#endif
