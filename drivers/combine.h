/* Combining adapters into a new one: PEFT 0.21's add_weighted_adapter (peft/tuners/lora/model.py,
 * peft/tuners/ia3/model.py, peft/utils/merge_utils.py), reading and writing adapter directories.
 *
 * LoRA, combination types:
 *   cat     A = [w₁s₁A₁; w₂s₂A₂; …] (rows), B = [B₁ B₂ …] (columns), r = Σ rᵢ (rank_pattern maxima),
 *           zero-padded where a module has fewer; exact: B·A = Σ wᵢsᵢBᵢAᵢ
 *   linear  A = Σ ±√|wᵢsᵢ|·Aᵢ (sign on A), B = Σ √|wᵢsᵢ|·Bᵢ; all ranks equal (PEFT's rule); not
 *           Σ wᵢsᵢBᵢAᵢ (cross terms), as PEFT
 *   svd     ΔW = Σ wᵢsᵢBᵢAᵢ truncated to svd_rank (default: the largest input rank) by an SVD
 *           (runtime/svd.h): B = U·S, A = Vᵀ; with svd_clamp q every entry of both is clamped to
 *           ±quantile(q) of all their entries (torch.quantile's linear interpolation)
 * where sᵢ is input i's scale on the module (alpha/r or alpha/√r, its patterns). One input is
 * always `linear` (PEFT's rule). The result's config is the first input's with r = lora_alpha =
 * the new rank, target_modules the union (lists) or "(t₁)|(t₂)…" (regex strings), empty
 * rank/alpha patterns — so an input with use_rslora first gives a result scaled by √r, as PEFT.
 * ties, dare_linear, dare_ties, magnitude_prune: the linear family with PEFT's merge_utils
 *           function in place of the sum (drivers/combine_math.h), on A and B separately; their
 *           *_svd forms apply it to the ΔWᵢ = sᵢBᵢAᵢ and truncate as svd. DARE's random pruning
 *           follows PEFT's semantics (keep with probability density, rescale) with peftc's own
 *           counter-based draws, not torch.bernoulli's bits.
 * IA3: ia3_l = Σ wᵢ·lᵢ, target and feedforward modules united the same way (PEFT has no other
 * type for IA3).
 * Refused with PEFT's reason: LoHa, LoKr (PEFT 0.21 has no add_weighted_adapter for them),
 * AdaLoRA, prompt methods, mixed methods, mixed target_modules kinds, unequal ranks for the linear family.
 * Refused because PEFT's result would silently lose them: DoRA, lora_bias, modules_to_save.
 *
 * The SVD's singular pairs get a fixed sign (runtime/svd.h pc_svd_fix_signs); PEFT's are LAPACK's
 * arbitrary ones, so B and A may differ from PEFT's in the sign of a rank, never in B·A — except
 * with svd_clamp, where the quantile itself depends on the signs. */
#ifndef PEFTC_DRIVERS_COMBINE_H
#define PEFTC_DRIVERS_COMBINE_H

#include "runtime/adapter_config.h"

#include <peftc/types.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *name; /* how messages name it (the command line's NAME) */
    const char *dir;  /* an adapter directory */
    double weight;
} pc_combine_input;

typedef struct {
    const char *type; /* PEFT's combination_type; NULL: "svd" for LoRA, the weighted sum for IA3 */
    int svd_rank;     /* 0: the largest input rank */
    bool clamp;       /* svd_clamp given */
    double svd_clamp; /* a quantile in [0, 1] */
    bool pruned;      /* density given */
    double density;   /* ties, dare_*, magnitude_prune (and *_svd): the fraction kept, ≥ 0 */
    bool frequency;   /* majority_sign_method "frequency" (default "total") */
    uint64_t seed;    /* dare_*: the seed of the random pruning (runtime/rng.h) */
} pc_combine_opts;

typedef struct {
    char *key; /* PEFT's file key */
    pc_shape shape;
    float *data;
} pc_combined_tensor;

typedef struct {
    pc_adapter_config *cfg;
    pc_combined_tensor *tensors;
    int ntensors;
    const char *type; /* the type applied ("linear" for one LoRA input, "weighted sum" for IA3) */
    int nmodules;
    char **warnings; /* modules PEFT drops too (not targeted by the result's config) */
    int nwarnings;
} pc_combined;

/* Reads the inputs and combines them into *out (freed by pc_combined_free, also after a failure).
 * Errors name the input (NAME and file), the field or tensor, and the reason; -1. */
int pc_combine(const pc_combine_input *in, int n, const pc_combine_opts *o, pc_combined *out, char *err,
               size_t errlen);
/* --model: every module of the result is a linear of the model (`model` names it in messages)
 * with the shape the tensors imply ([out, in] from lora_B and lora_A; IA3: the module exists):
 * adapters trained on another model are refused before anything is written. 0 or -1. */
struct pc_model;
int pc_combined_check_model(const pc_combined *c, const struct pc_model *m, const char *model, char *err,
                            size_t errlen);
/* writes out as an adapter directory, atomically (runtime/atomic_dir.h) */
int pc_combined_save(const pc_combined *c, const char *dir, char *err, size_t errlen);
const pc_combined_tensor *pc_combined_find(const pc_combined *c, const char *key);
void pc_combined_free(pc_combined *c);

#endif
