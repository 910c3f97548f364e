/* The per-module arithmetic of drivers/combine.c, in PEFT's float order (f32 tensors times
 * scalars rounded to f32, as torch computes `tensor * python_float`). */
#ifndef PEFTC_DRIVERS_COMBINE_MATH_H
#define PEFTC_DRIVERS_COMBINE_MATH_H

#include <stddef.h>

/* one input's LoRA on a module: A [r, in], B [out, r], its scale s and weight w */
typedef struct {
    const float *A, *B;
    int r;
    double s, w;
} pc_lora_term;

/* cat: A [rank, in] = rows wᵢ·sᵢ·Aᵢ then zeros, B [out, rank] = columns Bᵢ then zeros */
void pc_combine_cat(const pc_lora_term *t, int n, int in, int out, int rank, float *A, float *B);
/* linear: A = Σ (sign·√|wᵢsᵢ|)·Aᵢ, B = Σ √|wᵢsᵢ|·Bᵢ; every t[i].r == rank */
void pc_combine_linear(const pc_lora_term *t, int n, int in, int out, int rank, float *A, float *B);
/* svd: ΔW = Σ wᵢ·sᵢ·Bᵢ·Aᵢ, B = U·S [out, rank], A = Vᵀ [rank, in], signs fixed; clamp ≥ 0 clamps
 * both to ±quantile(clamp). rank ≤ min(in, out). 0 or -1 with a message. */
int pc_combine_svd(const pc_lora_term *t, int n, int in, int out, int rank, double clamp, float *A, float *B,
                   char *err, size_t errlen);
/* torch.quantile(x, q) (linear interpolation, float32); sorts x in place */
float pc_quantile_f32(float *x, size_t n, double q);

#endif
