/* GGUF writer: a version 3 file (little-endian), laid out as ggml and gguf-py write it:
 *   "GGUF", u32 3, u64 tensor count, u64 metadata count,
 *   the metadata entries in the order added (u64 key length, key, u32 value type, value),
 *   the tensor infos in the order added (u64 name length, name, u32 n_dims, u64 ne[n_dims],
 *   u32 GGML type, u64 offset into the data section),
 *   zero padding to the alignment, then each tensor's bytes followed by zero padding to the
 *   alignment (so every offset is a multiple of it).
 * The alignment is 32 unless a general.alignment entry is added (copied from a file, or
 * pc_gguf_writer_kv_int with a uint32 power of two).
 *
 * Metadata is copied from an open file entry by entry, byte for byte (strings, arrays and all),
 * or added as an integer; tensors are described by their GGUF dims (ne[0] fastest-varying) and
 * GGML type, their bytes borrowed until the file is written. Everything is checked before a byte
 * is written: a duplicate key or tensor name, an unknown type, dims that are negative, more than
 * 4, not a whole number of the type's blocks or too many to count give an error naming the
 * output and the entry, and nothing is written. The file is written atomically
 * (pc_atomic_open: a temporary in the same directory, fsync'd, renamed): on any error no file
 * is left behind. */
#ifndef PEFTC_RUNTIME_GGUF_WRITE_H
#define PEFTC_RUNTIME_GGUF_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/gguf.h"

typedef struct pc_gguf_writer pc_gguf_writer;

/* name: the output, for messages (the path it will be written to). NULL when out of memory. */
pc_gguf_writer *pc_gguf_writer_new(const char *name);
void pc_gguf_writer_free(pc_gguf_writer *w); /* NULL is fine */

/* metadata entry i (file order) of src, exactly as src holds it */
int pc_gguf_writer_copy_kv(pc_gguf_writer *w, const pc_gguf *src, int i, char *err, size_t errlen);
/* an integer entry of the given integer type; v must fit in it */
int pc_gguf_writer_kv_int(pc_gguf_writer *w, const char *key, pc_gguf_vtype type, int64_t v, char *err,
                          size_t errlen);

/* a tensor: n_dims (0..4) GGUF dims ne (ne[0] fastest-varying), GGML type id, and its bytes in
 * that type's layout (the type's byte count for ne; data is borrowed until written) */
int pc_gguf_writer_tensor(pc_gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *ne,
                          const void *data, char *err, size_t errlen);

int pc_gguf_writer_count_kv(const pc_gguf_writer *w);
int pc_gguf_writer_count_tensors(const pc_gguf_writer *w);

/* writes the file atomically at path */
int pc_gguf_writer_write(const pc_gguf_writer *w, const char *path, char *err, size_t errlen);
/* the same bytes into a malloc'd buffer (the caller frees *data) */
int pc_gguf_writer_write_mem(const pc_gguf_writer *w, void **data, size_t *len, char *err, size_t errlen);

#endif
