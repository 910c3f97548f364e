/* GGUF reader: llama.cpp / ggml model files
 * (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md).
 *
 * File = "GGUF", u32 version (2 or 3; little-endian only), u64 tensor count, u64 metadata count,
 * the metadata (key string, u32 value type, value), the tensor infos (name, u32 n_dims, u64
 * ne[n_dims], u32 GGML type, u64 offset), padding to general.alignment (default 32), then the
 * data section; every tensor offset is relative to it and a multiple of the alignment.
 *
 * pc_gguf_open validates the whole header up front against the file size — counts, every
 * string and array length, the value and tensor types, dims (≤ 4, their product and byte count
 * without overflow, ne[0] a multiple of the type's block), aligned offsets, data inside the file
 * and not overlapping, no duplicate key or tensor name — so the getters below never read out of
 * bounds. Every failing call returns NULL / -1 and writes a message naming the file, the key or
 * tensor, and the reason into err.
 *
 * Tensor layout: ne[0] is the fastest-varying dim. A GGUF matrix with ne = {in, out} is the
 * row-major [out, in] matrix of PyTorch / safetensors (numpy shape = ne reversed; see
 * pc_gguf_tensor_shape). pc_gguf_tensor_to_f32 dequantizes F32, F16, BF16, Q8_0, Q4_0, Q4_1
 * exactly as ggml and gguf-py do (bit for bit); other GGML types open fine (their size is
 * known) but converting them is an "unsupported GGUF tensor type" error.
 * The writer is runtime/gguf_write.h. */
#ifndef PEFTC_RUNTIME_GGUF_H
#define PEFTC_RUNTIME_GGUF_H

#include <peftc/types.h>
#include <stddef.h>
#include <stdint.h>

/* metadata value types, numbered as in the file */
typedef enum {
    PC_GGUF_UINT8 = 0,
    PC_GGUF_INT8 = 1,
    PC_GGUF_UINT16 = 2,
    PC_GGUF_INT16 = 3,
    PC_GGUF_UINT32 = 4,
    PC_GGUF_INT32 = 5,
    PC_GGUF_FLOAT32 = 6,
    PC_GGUF_BOOL = 7,
    PC_GGUF_STRING = 8,
    PC_GGUF_ARRAY = 9,
    PC_GGUF_UINT64 = 10,
    PC_GGUF_INT64 = 11,
    PC_GGUF_FLOAT64 = 12,
} pc_gguf_vtype;

/* the GGML tensor types peftc dequantizes (ids as in ggml.h); other ids are known by name */
enum {
    PC_GGML_F32 = 0,
    PC_GGML_F16 = 1,
    PC_GGML_Q4_0 = 2,
    PC_GGML_Q4_1 = 3,
    PC_GGML_Q8_0 = 8,
    PC_GGML_BF16 = 30,
};

#define PC_GGUF_MAX_DIMS 4

typedef struct {
    const char *name;
    uint32_t type;                /* GGML type id */
    int n_dims;                   /* 0..4 */
    int64_t ne[PC_GGUF_MAX_DIMS]; /* ne[0] fastest-varying; entries past n_dims are 1 */
    int64_t numel;
    uint64_t offset;  /* inside the data section */
    const void *data; /* raw (possibly quantized) bytes, valid until pc_gguf_close */
    size_t nbytes;
} pc_gguf_tensor;

typedef struct pc_gguf pc_gguf;

/* Maps (read-only) and validates a file. */
pc_gguf *pc_gguf_open(const char *path, char *err, size_t errlen);
/* The same on a caller's buffer (borrowed: it must outlive the pc_gguf); name stands for the
 * path in messages. This is the entry point for fuzzing. */
pc_gguf *pc_gguf_open_mem(const void *data, size_t len, const char *name, char *err,
                          size_t errlen);
void pc_gguf_close(pc_gguf *g); /* NULL is fine */

const char *pc_gguf_path(const pc_gguf *g);
uint32_t pc_gguf_version(const pc_gguf *g);
uint32_t pc_gguf_alignment(const pc_gguf *g);

/* ---- metadata ---- */
int pc_gguf_kv_count(const pc_gguf *g);
const char *pc_gguf_kv_key(const pc_gguf *g, int i); /* file order; NULL if out of range */
/* the key's pc_gguf_vtype, or -1 if the key is absent */
int pc_gguf_kv_type(const pc_gguf *g, const char *key);
/* "uint8", ..., "float64"; "?" for an unknown id */
const char *pc_gguf_vtype_name(int type);

/* Typed getters: a missing key or a value of another type is an error.
 *   get_str:   STRING. *out is NUL-terminated; *len (may be NULL) is its length in bytes
 *              (GGUF strings are length-prefixed and may hold NUL bytes).
 *   get_int:   any integer type (a uint64 above INT64_MAX is an error); not bool, not floats.
 *   get_float: FLOAT32 / FLOAT64, or any integer type (converted).
 *   get_bool:  BOOL only; *out is 0 or 1 (any nonzero byte is true, as in ggml). */
int pc_gguf_get_str(const pc_gguf *g, const char *key, const char **out, size_t *len, char *err,
                    size_t errlen);
int pc_gguf_get_int(const pc_gguf *g, const char *key, int64_t *out, char *err, size_t errlen);
int pc_gguf_get_float(const pc_gguf *g, const char *key, double *out, char *err, size_t errlen);
int pc_gguf_get_bool(const pc_gguf *g, const char *key, int *out, char *err, size_t errlen);

/* Arrays (of any type but arrays: arrays of arrays are rejected at open, as ggml does).
 * get_array gives the element type and the length; the element getters follow the scalar
 * rules above for element i (i ≥ length is an error). */
int pc_gguf_get_array(const pc_gguf *g, const char *key, pc_gguf_vtype *elem_type, uint64_t *len,
                      char *err, size_t errlen);
int pc_gguf_array_str(const pc_gguf *g, const char *key, uint64_t i, const char **out,
                      size_t *len, char *err, size_t errlen);
int pc_gguf_array_int(const pc_gguf *g, const char *key, uint64_t i, int64_t *out, char *err,
                      size_t errlen);
int pc_gguf_array_float(const pc_gguf *g, const char *key, uint64_t i, double *out, char *err,
                        size_t errlen);

/* ---- tensors ---- */
int pc_gguf_tensor_count(const pc_gguf *g);
const pc_gguf_tensor *pc_gguf_tensor_at(const pc_gguf *g, int i); /* file order; NULL if OOR */
const pc_gguf_tensor *pc_gguf_tensor_find(const pc_gguf *g, const char *name); /* NULL if absent */
/* "F32", "Q4_K", ...; "?" for an unknown id */
const char *pc_gguf_ttype_name(uint32_t type);
/* the row-major shape: ne reversed (ne = {576, 49152} → [49152, 576]); n_dims 0 is a scalar */
pc_shape pc_gguf_tensor_shape(const pc_gguf_tensor *t);

/* Dequantizes the whole tensor into out, which holds n floats (n must equal numel), in the
 * row-major order of pc_gguf_tensor_shape (i.e. the file's element order). */
int pc_gguf_tensor_to_f32(const pc_gguf *g, const char *name, float *out, size_t n, char *err,
                          size_t errlen);

/* Undoes llama.cpp's convert-time permutation of a Llama q or k projection, in place, on the
 * row-major [rows, cols] matrix (rows = ne[1], cols = ne[0]); n_head is the query head count
 * for q and the KV head count for k. GGUF row h·R + 2i + j (R = rows / n_head, i < R/2,
 * j ∈ {0, 1}) becomes row h·R + j·R/2 + i — transformers' reverse_permute_weights: reshape
 * [n_head, R/2, 2, cols], swap the middle axes. rows must be a multiple of 2·n_head. */
int pc_gguf_unpermute_qk(float *w, int64_t rows, int64_t cols, int n_head, char *err,
                         size_t errlen);
/* Its inverse, llama.cpp's convert-time permutation (convert_hf_to_gguf.py LlamaModel.permute:
 * reshape [n_head, 2, R/2, cols], swap the middle axes): Hugging Face row h·R + j·R/2 + i
 * becomes GGUF row h·R + 2i + j. What a writer applies to q and k before storing them. */
int pc_gguf_permute_qk(float *w, int64_t rows, int64_t cols, int n_head, char *err,
                       size_t errlen);

#endif
