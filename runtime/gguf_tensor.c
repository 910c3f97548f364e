/* GGUF tensors: the GGML type table, dequantization to f32, llama.cpp's q/k un-permutation. */
#include <stdlib.h>
#include <string.h>

#include "runtime/fileio.h"
#include "runtime/gguf.h"
#include "runtime/gguf_internal.h"

/* block sizes and bytes per block as ggml defines them (ggml.h / gguf-py GGML_QUANT_SIZES);
 * ids 4, 5, 31-33 and 36-38 were removed from ggml and stay unknown */
static const pc_gguf_ttype_info ttypes[] = {
    [0] = {"F32", 1, 4},          [1] = {"F16", 1, 2},         [2] = {"Q4_0", 32, 18},
    [3] = {"Q4_1", 32, 20},       [6] = {"Q5_0", 32, 22},      [7] = {"Q5_1", 32, 24},
    [8] = {"Q8_0", 32, 34},       [9] = {"Q8_1", 32, 40},      [10] = {"Q2_K", 256, 84},
    [11] = {"Q3_K", 256, 110},    [12] = {"Q4_K", 256, 144},   [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210},    [15] = {"Q8_K", 256, 292},   [16] = {"IQ2_XXS", 256, 66},
    [17] = {"IQ2_XS", 256, 74},   [18] = {"IQ3_XXS", 256, 98}, [19] = {"IQ1_S", 256, 50},
    [20] = {"IQ4_NL", 32, 18},    [21] = {"IQ3_S", 256, 110},  [22] = {"IQ2_S", 256, 82},
    [23] = {"IQ4_XS", 256, 136},  [24] = {"I8", 1, 1},         [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4},         [27] = {"I64", 1, 8},        [28] = {"F64", 1, 8},
    [29] = {"IQ1_M", 256, 56},    [30] = {"BF16", 1, 2},       [34] = {"TQ1_0", 256, 54},
    [35] = {"TQ2_0", 256, 66},    [39] = {"MXFP4", 32, 17},    [40] = {"NVFP4", 64, 36},
    [41] = {"Q1_0", 128, 18},
};

const pc_gguf_ttype_info *pc_gguf_ttype(uint32_t type) {
    if (type >= sizeof ttypes / sizeof ttypes[0] || !ttypes[type].name) return NULL;
    return &ttypes[type];
}

const char *pc_gguf_ttype_name(uint32_t type) {
    const pc_gguf_ttype_info *ti = pc_gguf_ttype(type);
    return ti ? ti->name : "?";
}

pc_shape pc_gguf_tensor_shape(const pc_gguf_tensor *t) {
    pc_shape s = {.rank = t->n_dims};
    for (int d = 0; d < t->n_dims; d++) s.dim[d] = t->ne[t->n_dims - 1 - d];
    return s;
}

/* IEEE half → float, exact for every input (subnormals, infinities, NaN payloads kept) */
static float half_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, bits;
    if (e == 0x1f) {
        bits = sign | 0x7f800000u | (m << 13);
    } else if (e) {
        bits = sign | ((e + 112) << 23) | (m << 13); /* rebias 15 → 127 */
    } else {
        float v = (float)m * 0x1p-24f; /* zero or subnormal: m · 2^-24, a normal float */
        return sign ? -v : v;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static float f16_at(const unsigned char *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return half_to_f32(h);
}

/* The block formats (32 elements per block): Q8_0 = f16 d, int8 q[32], x = q·d; Q4_0 = f16 d,
 * 16 bytes whose low nibbles are elements 0-15 and high nibbles 16-31, x = (q - 8)·d; Q4_1 =
 * f16 d, f16 m, the same nibbles, x = q·d + m. In f32 as gguf-py and ggml compute: q (≤ 8 bits)
 * times d (an f16, 11 significant bits) is exact in f32, so q·d + m rounds once whether or not
 * the compiler fuses it into an FMA — the result is bit-identical to gguf-py's. */
static void deq_q8_0(const unsigned char *p, size_t nblocks, float *y) {
    for (size_t b = 0; b < nblocks; b++, p += 34, y += 32) {
        float d = f16_at(p);
        for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)p[2 + j] * d;
    }
}

static void deq_q4_0(const unsigned char *p, size_t nblocks, float *y) {
    for (size_t b = 0; b < nblocks; b++, p += 18, y += 32) {
        float d = f16_at(p);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)((p[2 + j] & 0x0f) - 8) * d;
            y[j + 16] = (float)((p[2 + j] >> 4) - 8) * d;
        }
    }
}

static void deq_q4_1(const unsigned char *p, size_t nblocks, float *y) {
    for (size_t b = 0; b < nblocks; b++, p += 20, y += 32) {
        float d = f16_at(p), m = f16_at(p + 2);
        for (int j = 0; j < 16; j++) {
            float lo = (float)(p[4 + j] & 0x0f) * d, hi = (float)(p[4 + j] >> 4) * d;
            y[j] = lo + m;
            y[j + 16] = hi + m;
        }
    }
}

int pc_gguf_tensor_to_f32(const pc_gguf *g, const char *name, float *out, size_t n, char *err,
                          size_t errlen) {
    const pc_gguf_tensor *t = pc_gguf_tensor_find(g, name);
    if (!t) return pc_errf(err, errlen, "%s: no tensor '%s'", pc_gguf_path(g), name);
    if ((uint64_t)t->numel != n)
        return pc_errf(err, errlen, "%s: tensor '%s' has %lld elements, the buffer holds %zu",
                       pc_gguf_path(g), name, (long long)t->numel, n);
    const unsigned char *p = t->data;
    switch (t->type) {
    case PC_GGML_F32: memcpy(out, p, n * 4); return 0;
    case PC_GGML_F16:
        for (size_t i = 0; i < n; i++) out[i] = f16_at(p + 2 * i);
        return 0;
    case PC_GGML_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            uint32_t bits = (uint32_t)h << 16;
            memcpy(&out[i], &bits, 4);
        }
        return 0;
    case PC_GGML_Q8_0: deq_q8_0(p, n / 32, out); return 0;
    case PC_GGML_Q4_0: deq_q4_0(p, n / 32, out); return 0;
    case PC_GGML_Q4_1: deq_q4_1(p, n / 32, out); return 0;
    }
    return pc_errf(err, errlen,
                   "%s: unsupported GGUF tensor type %s for tensor '%s' (peftc dequantizes F32, "
                   "F16, BF16, Q8_0, Q4_0, Q4_1)",
                   pc_gguf_path(g), pc_gguf_ttype_name(t->type), name);
}

/* moves rows within each head: to_gguf 0 takes GGUF row 2i + j to j·R/2 + i, 1 the reverse */
static int permute_qk(float *w, int64_t rows, int64_t cols, int n_head, int to_gguf, char *err,
                      size_t errlen) {
    if (n_head <= 0 || rows < 0 || cols < 0 || rows % (2 * (int64_t)n_head))
        return pc_errf(err, errlen, "q/k %spermutation: %lld rows are not a multiple of 2 x %d heads",
                       to_gguf ? "" : "un-", (long long)rows, n_head);
    int64_t per_head = rows / n_head, half = per_head / 2;
    size_t row_bytes = (size_t)cols * sizeof(float);
    float *tmp = malloc(per_head && cols ? (size_t)per_head * row_bytes : 1);
    if (!tmp) return pc_errf(err, errlen, "q/k %spermutation: out of memory", to_gguf ? "" : "un-");
    for (int64_t h = 0; h < n_head; h++) {
        float *head = w + h * per_head * cols;
        memcpy(tmp, head, (size_t)per_head * row_bytes);
        for (int64_t i = 0; i < half; i++)
            for (int64_t j = 0; j < 2; j++) {
                int64_t gguf_row = 2 * i + j, hf_row = j * half + i;
                if (to_gguf) memcpy(head + gguf_row * cols, tmp + hf_row * cols, row_bytes);
                else memcpy(head + hf_row * cols, tmp + gguf_row * cols, row_bytes);
            }
    }
    free(tmp);
    return 0;
}

int pc_gguf_unpermute_qk(float *w, int64_t rows, int64_t cols, int n_head, char *err,
                         size_t errlen) {
    return permute_qk(w, rows, cols, n_head, 0, err, errlen);
}

int pc_gguf_permute_qk(float *w, int64_t rows, int64_t cols, int n_head, char *err,
                       size_t errlen) {
    return permute_qk(w, rows, cols, n_head, 1, err, errlen);
}
