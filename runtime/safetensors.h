/* safetensors reader and writer (https://github.com/huggingface/safetensors format).
 *
 * File = u64 little-endian N, N bytes of JSON header, then the data section. The header maps
 * tensor names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the data
 * section) plus an optional "__metadata__" object of string -> string.
 *
 * Tensors peftc computes with have dtype F32, I32 or BF16. The format's other dtypes (F16, I64,
 * F64, ...) open too, as PC_ST_FOREIGN with their name in dtype_name: a Hugging Face checkpoint
 * holds them (f16 weights, an I64 position_ids buffer); pc_st_to_f32 converts the floating-point
 * ones. Packed sub-byte dtypes (F4, F6_*) are rejected as unsupported. Every failing call returns NULL / -1 and writes a message
 * naming the file, the tensor or field, and the reason into err. */
#ifndef PEFTC_RUNTIME_SAFETENSORS_H
#define PEFTC_RUNTIME_SAFETENSORS_H

#include <peftc/types.h>
#include <stddef.h>
#include <stdint.h>

/* the dtype of a tensor whose type peftc does not compute in (see dtype_name) */
#define PC_ST_FOREIGN ((pc_dtype)-1)

typedef struct {
    const char *name;
    pc_dtype dtype;         /* PC_ST_FOREIGN for the format's other types */
    const char *dtype_name; /* the file's name for it: "F32", "F16", "I64", ... (static) */
    size_t elem_size;       /* bytes per element */
    pc_shape shape;
    const void *data; /* aligned for dtype; valid until pc_st_close */
    size_t nbytes;    /* numel * element size */
    uint64_t offset;  /* begin offset inside the data section */
} pc_st_tensor;

typedef struct pc_st_file pc_st_file;

/* Maps (read-only) and validates a file. Zero-size tensors are legal. */
pc_st_file *pc_st_open(const char *path, char *err, size_t errlen);
void pc_st_close(pc_st_file *f); /* NULL is fine */

int pc_st_count(const pc_st_file *f);
/* i-th tensor in data-offset order; NULL if out of range */
const pc_st_tensor *pc_st_get(const pc_st_file *f, int i);
const pc_st_tensor *pc_st_find(const pc_st_file *f, const char *name); /* NULL if absent */

/* the tensor's values as f32 (F32, BF16, F16 exactly; F64 rounded) into out[numel]; other dtypes
 * are an error naming the file and tensor */
int pc_st_to_f32(const pc_st_file *f, const pc_st_tensor *t, float *out, char *err, size_t errlen);

/* "__metadata__" entries, sorted by key */
int pc_st_meta_count(const pc_st_file *f);
const char *pc_st_meta_key(const pc_st_file *f, int i);
const char *pc_st_meta_value(const pc_st_file *f, int i);
const char *pc_st_meta(const pc_st_file *f, const char *key); /* NULL if absent */
const char *pc_st_path(const pc_st_file *f); /* the path it was opened from */

/* "F32" / "I32" / "BF16"; element size in bytes (0 for an invalid dtype) */
const char *pc_st_dtype_name(pc_dtype dt);
size_t pc_st_dtype_size(pc_dtype dt);

/* ---- writer ----
 * Collects tensors (data borrowed, must stay valid until pc_st_write returns) and metadata, then
 * writes the file atomically. Layout follows the Python/Rust safetensors library: tensors sorted by
 * dtype (F32, then I32, then BF16 — descending alignment, so every tensor stays aligned) and then
 * by name, packed back to back; compact JSON header with "__metadata__" first, padded with spaces
 * to a multiple of 8 bytes. */
typedef struct pc_st_writer pc_st_writer;

pc_st_writer *pc_st_writer_new(void); /* NULL only when out of memory */
void pc_st_writer_free(pc_st_writer *w);
/* copies name; rejects duplicates, "__metadata__", invalid UTF-8, bad dtype/shape.
 * data may be NULL only for a zero-size tensor. */
int pc_st_writer_add(pc_st_writer *w, const char *name, pc_dtype dt, pc_shape shape,
                     const void *data, char *err, size_t errlen);
/* sets (or replaces) one metadata entry; both strings copied */
int pc_st_writer_meta(pc_st_writer *w, const char *key, const char *value, char *err,
                      size_t errlen);
int pc_st_write(const pc_st_writer *w, const char *path, char *err, size_t errlen);

#endif
