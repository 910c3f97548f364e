/* PEFT's module matching (peft.md §1.1; PEFT src/peft/tuners/tuners_utils.py
 * check_target_module_exists, src/peft/utils/other.py get_pattern_key, ia3/model.py), exactly:
 *
 * 1. exclude_modules (if non-empty) wins: a string is a Python regex that must match the whole name
 *    (re.fullmatch); a list matches a name equal to an entry or ending in "." + entry.
 * 2. modules_to_save entries m are never targeted: re.match(rf"(^|.*\.){m}($|\..*)", name).
 * 3. target_modules: a string is re.fullmatch; a list matches a name equal to an entry (then no
 *    layer filtering), or ending in "." + entry, after which layers_to_transform (an int, or a
 *    non-empty list) keeps only names whose layer index is listed. The index comes from
 *    re.match(r".*?\.[^.]*\.(?P<idx>\d+)\.", name) (the first numbered segment that follows
 *    another segment), or, with layers_pattern, from the first pattern p for which
 *    re.match(rf"(?:^|.*?\.){p}\.(?P<idx>\d+)\.", name) succeeds; no index -> not targeted.
 *    (This is PEFT 0.21's rule. PEFT 0.20, the snapshot peft.md describes, used
 *    rf".*?\.{p}\.(\d+)\." and group(1): it never matched a pattern at the start of the name,
 *    e.g. GPT2Model's "h.0.attn.c_attn", and crashed on patterns with their own groups. Every name
 *    0.20 matched, 0.21 matches the same way.)
 * 4. rank_pattern / alpha_pattern: the first key k (file order) with
 *    re.match(rf"(.*\.)?({k})$", name) gives the value; otherwise r / alpha.
 *
 * Python regexes run on PCRE2 (UTF + UCP, like Python str patterns); Python-only spellings are
 * translated: \Z -> \z, {,n} -> {0,n}, \uXXXX and \UXXXXXXXX -> \x{...}.
 *
 * A matcher is immutable after construction and holds no shared state, so it may be used from
 * several threads at once. */
#ifndef PEFTC_RUNTIME_TARGET_MATCH_H
#define PEFTC_RUNTIME_TARGET_MATCH_H

#include "runtime/adapter_config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pc_target_matcher pc_target_matcher;

typedef enum {
    PC_MATCH_NO = 0,            /* not targeted */
    PC_MATCH_YES = 1,           /* targeted */
    PC_MATCH_EXCLUDED,          /* matched exclude_modules */
    PC_MATCH_MODULES_TO_SAVE,   /* is (inside) a modules_to_save module */
    PC_MATCH_LAYER_FILTERED,    /* matched a target entry, but layers_to_transform rejected it */
    PC_MATCH_ERROR = -1,        /* regex engine failure (e.g. invalid UTF-8 name, match limit) */
} pc_match_result;

/* Builds the matcher for a layer-wrapping method (LoRA, LoHa, LoKr, AdaLoRA, IA3, and custom
 * methods, PC_PEFT_CUSTOM, which target modules as LoRA does). Fails when
 * target_modules is null (fill it: pc_adapter_config_fill_default_targets) or still "all-linear"
 * (expand it: pc_adapter_config_expand_all_linear), for IA3 when feedforward_modules is null, and
 * on invalid regexes. The config may be freed afterwards. */
pc_target_matcher *pc_target_matcher_new(const pc_adapter_config *cfg, char *err, size_t errlen);
void pc_target_matcher_free(pc_target_matcher *m);

/* 1 targeted, 0 not targeted, -1 engine error */
int pc_target_match(const pc_target_matcher *m, const char *module_name);
pc_match_result pc_target_match_ex(const pc_target_matcher *m, const char *module_name);
/* pc_target_match_ex that says why on PC_MATCH_ERROR: the field, its pattern, the name and
 * PCRE2's message (e.g. "match limit exceeded") go to msg (msglen bytes; msg may be NULL).
 * The *_why forms below do the same for their functions' engine errors. */
pc_match_result pc_target_match_why(const pc_target_matcher *m, const char *module_name, char *msg, size_t msglen);

/* per-module rank and alpha: rank_pattern/alpha_pattern (LoRA, LoHa, LoKr) or AdaLoRA's saved
 * rank masks ("<module>.lora_E" -> rank = number of kept entries, else init_r; alpha = lora_alpha).
 * 0, or -1 for methods without a rank (IA3, custom methods, prompt learning) or on an engine error. */
int pc_target_rank_alpha(const pc_target_matcher *m, const char *module_name, int *r, double *alpha);
int pc_target_rank_alpha_why(const pc_target_matcher *m, const char *module_name, int *r, double *alpha, char *msg,
                             size_t msglen);
/* the rank_pattern / alpha_pattern key that decided (NULL: none matched, the default applies) */
const char *pc_target_rank_key(const pc_target_matcher *m, const char *module_name);
const char *pc_target_alpha_key(const pc_target_matcher *m, const char *module_name);

/* IA3: 1 if the module is a feedforward module (input-scaled), 0 if not, -1 on error */
int pc_target_is_feedforward(const pc_target_matcher *m, const char *module_name);
int pc_target_is_feedforward_why(const pc_target_matcher *m, const char *module_name, char *msg, size_t msglen);

/* "all-linear" (any case): replaces target_modules by the list of names for which
 * is_linear(ctx, name) returns non-zero. The predicate must say "nn.Linear or HF Conv1D, and not
 * the output embedding (LM head) nor, for SEQ_CLS models without one, the classifier/score head",
 * as PEFT's _maybe_include_all_linear_layers does. PEFT saves the expanded list, so should peftc.
 * No-op (0) when target_modules is not "all-linear". 0 or -1. */
int pc_adapter_config_expand_all_linear(pc_adapter_config *cfg, const char *const *module_names, size_t n,
                                        int (*is_linear)(void *ctx, const char *module_name), void *ctx,
                                        char *err, size_t errlen);

/* PEFT's per-model defaults (src/peft/utils/constants.py) for a null target_modules (and IA3's
 * feedforward_modules), keyed by the transformers model_type ("llama", "gpt2", "bert", ...).
 * No-op when already set. 0, or -1 when the model type has no default. */
int pc_adapter_config_fill_default_targets(pc_adapter_config *cfg, const char *model_type, char *err,
                                           size_t errlen);

/* Compiles prefix + pattern + suffix as Python's re would (any part may be NULL). 0, or -1 with
 * PCRE2's message and offset in msg. Used by the config validator. */
int pc_pyregex_check(const char *prefix, const char *pattern, const char *suffix, char *msg, size_t msglen);

#ifdef __cplusplus
}
#endif
#endif
