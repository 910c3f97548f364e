/* The per-module arithmetic of drivers/combine.c, in PEFT's float order (f32 tensors times
 * scalars rounded to f32, as torch computes `tensor * python_float`). */
#ifndef PEFTC_DRIVERS_COMBINE_MATH_H
#define PEFTC_DRIVERS_COMBINE_MATH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* one input's LoRA on a module: A [r, in], B [out, r], its scale s and weight w */
typedef struct {
    const float *A, *B;
    int r;
    double s, w;
} pc_lora_term;

/* PEFT's merge_utils over n task tensors of one shape (len floats), weights w (f32):
 *   SUM              Σ wᵢ tᵢ                                   (task_arithmetic)
 *   MAGNITUDE        Σ wᵢ prune(tᵢ)                            (magnitude_prune)
 *   TIES             disjoint merge of wᵢ prune(tᵢ) over the entries whose sign agrees with the
 *                    elected one (Σ prune(tᵢ), or Σ sign with `frequency`), / max(count, 1)
 *   DARE_LINEAR      Σ wᵢ bernoulli(tᵢ)/density               (dare_linear)
 *   DARE_TIES        TIES with bernoulli(tᵢ)/density            (dare_ties)
 * prune keeps the int(density·len) entries of largest magnitude; bernoulli keeps each entry with
 * probability density, drawn from runtime/rng.h's hash of (seed, stream + i, index) — PEFT's
 * semantics, not torch.bernoulli's bits. density ≥ 1 keeps everything (no rescale), as PEFT. */
typedef enum { PC_MERGE_SUM, PC_MERGE_MAGNITUDE, PC_MERGE_TIES, PC_MERGE_DARE_LINEAR, PC_MERGE_DARE_TIES } pc_merge_kind;
typedef struct {
    pc_merge_kind kind;
    double density;
    bool frequency; /* TIES sign election by count, not by mass */
    uint64_t seed;
} pc_task_merge;
/* out[len] (may not alias the inputs); 0 or -1 (out of memory) */
int pc_task_merge_apply(const pc_task_merge *m, const float *const *t, const float *w, int n, size_t len,
                        uint64_t stream, float *out);

/* cat: A [rank, in] = rows wᵢ·sᵢ·Aᵢ then zeros, B [out, rank] = columns Bᵢ then zeros */
void pc_combine_cat(const pc_lora_term *t, int n, int in, int out, int rank, float *A, float *B);
/* linear family: A = merge(Aᵢ; sign·√|wᵢsᵢ|), B = merge(Bᵢ; √|wᵢsᵢ|) (plain `linear`: m->kind SUM);
 * every t[i].r == rank; stream numbers the module for DARE's draws. 0 or -1 (out of memory) */
int pc_combine_linear(const pc_lora_term *t, int n, int in, int out, int rank, const pc_task_merge *m,
                      uint64_t stream, float *A, float *B);
/* svd family: ΔW = merge(sᵢ·Bᵢ·Aᵢ; wᵢ) (plain `svd`: SUM, in double), B = U·S [out, rank],
 * A = Vᵀ [rank, in], signs fixed; clamp ≥ 0 clamps both to ±quantile(clamp).
 * rank ≤ min(in, out). 0 or -1 with a message. */
int pc_combine_svd(const pc_lora_term *t, int n, int in, int out, int rank, const pc_task_merge *m,
                   uint64_t stream, double clamp, float *A, float *B, char *err, size_t errlen);
/* torch.quantile(x, q) (linear interpolation, float32); sorts x in place */
float pc_quantile_f32(float *x, size_t n, double q);

#endif
