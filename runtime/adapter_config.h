/* adapter_config.json: Hugging Face PEFT's adapter configuration, read and written exactly as PEFT
 * does (reference: /work/shared/reference/peft.md §2-§12; PEFT src/peft/config.py and
 * src/peft/tuners/<method>/config.py).
 *
 * One struct holds every supported method. Fields a method does not have keep their zero/default
 * value and are neither read nor written for it. Member names are PEFT's JSON key names.
 *
 *   char err[512];
 *   pc_adapter_config *cfg = pc_adapter_config_load("out/adapter", err, sizeof err);
 *   if (!cfg) { fprintf(stderr, "%s\n", err); return 1; }
 *   for (size_t i = 0; i < cfg->n_warnings; i++) fprintf(stderr, "warning: %s\n", cfg->warnings[i]);
 *   ...
 *   pc_adapter_config_free(cfg);
 *
 * Reading rules (PEFT's semantics, checked against the 0.20 sources):
 * - every field PEFT defines for the peft_type is accepted; a missing key takes PEFT's default;
 * - fields peftc does not implement (megatron_config, eva_config, use_qalora, ...) are accepted while
 *   they hold PEFT's default and rejected with "field X=... is not supported by peftc" otherwise;
 * - keys PEFT does not know for this peft_type are dropped with a warning (PEFT does the same);
 * - wrong types and invalid values are errors naming the file, the field and the reason.
 *
 * Custom methods (PC_PEFT_CUSTOM): the *_ex readers take the list of method names the caller has
 * registered. A peft_type that is not one of PEFT's types peftc supports but equals (case-sensitively)
 * one of those names reads as PC_PEFT_CUSTOM with custom_type = that name. Its PeftConfig fields
 * (task_type, base_model_name_or_path, revision, peft_version, inference_mode, auto_mapping,
 * modules_to_save) and targeting fields (target_modules, exclude_modules, layers_to_transform,
 * layers_pattern) are read and validated as for LoRA; every other key is the method's own, kept
 * without warning in custom_json (the whole object as read), read with pc_adapter_config_custom_*.
 * Errors never abort: functions return NULL/-1 and fill `err` (may be NULL, errlen may be 0). */
#ifndef PEFTC_RUNTIME_ADAPTER_CONFIG_H
#define PEFTC_RUNTIME_ADAPTER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PC_ADAPTER_CONFIG_NAME "adapter_config.json"

/* nullable integer fields (Optional[int] in PEFT) hold this when the JSON value is null */
#define PC_INT_NULL INT64_MIN

typedef enum {
    PC_PEFT_NONE = 0,
    PC_PEFT_LORA,
    PC_PEFT_LOHA,
    PC_PEFT_LOKR,
    PC_PEFT_ADALORA,
    PC_PEFT_IA3,
    PC_PEFT_PREFIX_TUNING,
    PC_PEFT_P_TUNING,
    PC_PEFT_PROMPT_TUNING,
    PC_PEFT_MULTITASK_PROMPT_TUNING,
    PC_PEFT_CUSTOM, /* a user-registered method: cfg->custom_type names it (see "custom methods") */
} pc_peft_type;

typedef enum {
    PC_TASK_NONE = 0, /* null */
    PC_TASK_SEQ_CLS,
    PC_TASK_SEQ_2_SEQ_LM,
    PC_TASK_CAUSAL_LM,
    PC_TASK_TOKEN_CLS,
    PC_TASK_QUESTION_ANS,
    PC_TASK_FEATURE_EXTRACTION,
} pc_task_type;

/* a JSON number together with its Python type: PEFT writes ints as `8` and floats as repr(), `8.0`.
 * A double holds integers exactly only up to 2^53, so an integer read from a file is also kept
 * in i, and a config read and written back keeps it digit for digit (pc_num_int64). A pc_num
 * built in code as {v, true} leaves i 0: the value is then taken from v. */
typedef struct {
    double v;
    bool is_int;
    int64_t i; /* is_int: the exact value, when it agrees with v */
} pc_num;

/* the integer an is_int pc_num holds: i when it agrees with v, else v (saturated to int64) */
static inline int64_t pc_num_int64(pc_num n) {
    if ((double)n.i == n.v) return n.i;
    if (n.v >= 0x1p63) return INT64_MAX; /* the cast would be undefined */
    if (n.v < -0x1p63) return INT64_MIN;
    return (int64_t)n.v;
}

/* target_modules / exclude_modules / feedforward_modules: null, a list of names (suffix match),
 * or a string (a Python regex that must match the whole name, or "all-linear").
 * modules_to_save: null or a list. layers_pattern: null, one string, or a list of strings. */
typedef enum { PC_SPEC_NULL = 0, PC_SPEC_LIST, PC_SPEC_STRING } pc_spec_kind;
typedef struct {
    pc_spec_kind kind;
    char *str;    /* PC_SPEC_STRING */
    char **items; /* PC_SPEC_LIST, in file order (PEFT sets are deduplicated on load) */
    size_t n;
} pc_spec;

/* layers_to_transform: null, one int, or a list of ints */
typedef enum { PC_LAYERS_NULL = 0, PC_LAYERS_INT, PC_LAYERS_LIST } pc_layers_kind;
typedef struct {
    pc_layers_kind kind;
    int64_t *items; /* PC_LAYERS_INT: one item */
    size_t n;
} pc_layers;

/* rank_pattern / alpha_pattern: regex key -> value, in file (= dict insertion) order; the first
 * matching key wins. AdaLoRA's rank_pattern maps "<module>.lora_E" to a per-rank keep mask. */
typedef struct {
    char *key;
    pc_num value; /* LoRA/LoHa/LoKr rank (int) or alpha (number) */
    bool *mask;   /* AdaLoRA rank_pattern only */
    size_t mask_len;
} pc_pattern_entry;
typedef struct {
    bool is_null; /* JSON null (AdaLoRA's default); otherwise an object, possibly empty */
    pc_pattern_entry *items;
    size_t n;
} pc_pattern;

typedef enum { PC_BIAS_NONE = 0, PC_BIAS_ALL, PC_BIAS_LORA_ONLY } pc_bias;
typedef enum { PC_LORA_INIT_TRUE = 0, PC_LORA_INIT_FALSE, PC_LORA_INIT_GAUSSIAN } pc_lora_init;
typedef enum { PC_LYCORIS_INIT_TRUE = 0, PC_LYCORIS_INIT_FALSE, PC_LYCORIS_INIT_LYCORIS } pc_lycoris_init;
typedef enum { PC_ENCODER_MLP = 0, PC_ENCODER_LSTM } pc_encoder_type;
typedef enum {
    PC_PROMPT_INIT_RANDOM = 0,
    PC_PROMPT_INIT_TEXT,
    PC_PROMPT_INIT_SAMPLE_VOCAB,         /* PROMPT_TUNING only */
    PC_PROMPT_INIT_AVERAGE_SOURCE_TASKS, /* MULTITASK_PROMPT_TUNING only */
    PC_PROMPT_INIT_EXACT_SOURCE_TASK,    /* MULTITASK_PROMPT_TUNING only */
    PC_PROMPT_INIT_ONLY_SOURCE_SHARED,   /* MULTITASK_PROMPT_TUNING only */
} pc_prompt_init;

typedef struct pc_adapter_config {
    /* ---- PeftConfig (every method) ---- */
    pc_peft_type peft_type;
    pc_task_type task_type;
    char *base_model_name_or_path; /* NULL = null */
    char *revision;
    char *peft_version;            /* NULL = null (PEFT fills it in when it builds a config) */
    bool inference_mode;
    char *auto_mapping;            /* compact JSON text of the object, or NULL = null */
    pc_spec modules_to_save;       /* every method */

    /* ---- module targeting (LoRA, LoHa, LoKr, AdaLoRA, IA3) ---- */
    pc_spec target_modules;
    pc_spec exclude_modules;
    pc_layers layers_to_transform; /* not IA3 */
    pc_spec layers_pattern;        /* not IA3 */
    pc_pattern rank_pattern;       /* not IA3 */
    pc_pattern alpha_pattern;      /* not IA3 */
    int r;                         /* LoRA, AdaLoRA (ignored by it), LoHa, LoKr */
    bool fan_in_fan_out;           /* LoRA, AdaLoRA, IA3 */

    /* ---- LoRA (also AdaLoRA, whose config extends LoraConfig) ---- */
    struct {
        pc_num lora_alpha;
        pc_num lora_dropout;
        pc_bias bias;
        bool use_rslora;
        bool use_dora;
        bool lora_bias;
        pc_lora_init init_lora_weights;
        char *init_lora_weights_text; /* exact spelling for "gaussian" (PEFT compares .lower()) */
        char *megatron_core;          /* inert while megatron_config is null; kept for round trips */
        int64_t qalora_group_size;    /* inert while use_qalora is false; kept for round trips */
    } lora;

    /* ---- LoHa / LoKr (LycorisConfig) ---- */
    struct {
        pc_num alpha;
        pc_num rank_dropout;
        pc_num module_dropout;
        bool use_effective_conv2d;
        pc_lycoris_init init_weights; /* LoHa: true/false; LoKr also "lycoris" */
        bool decompose_both;          /* LoKr */
        int64_t decompose_factor;     /* LoKr, -1 = automatic */
        bool rank_dropout_scale;      /* LoKr */
    } lycoris;

    /* ---- AdaLoRA ---- */
    struct {
        int target_r;
        int init_r;
        int64_t tinit;
        int64_t tfinal;
        int64_t deltaT;
        pc_num beta1;
        pc_num beta2;
        pc_num orth_reg_weight;
        int64_t total_step; /* required > 0 */
    } adalora;

    /* ---- IA3 ---- */
    struct {
        pc_spec feedforward_modules; /* list: name ends with an entry (no "." rule); string: fullmatch */
        bool init_ia3_weights;
    } ia3;

    /* ---- prompt learning (prefix tuning, P-tuning, prompt tuning, MPT) ----
     * int64_t members are PC_INT_NULL when null */
    struct {
        int64_t num_virtual_tokens; /* required > 0 */
        int64_t token_dim;
        int64_t num_transformer_submodules;
        int64_t num_attention_heads;
        int64_t num_layers;
        int64_t encoder_hidden_size;  /* PREFIX_TUNING, P_TUNING */
        bool prefix_projection;       /* PREFIX_TUNING */
        bool init_weights_zero;       /* PREFIX_TUNING: init_weights "zero" (true) or null */
        pc_encoder_type encoder_reparameterization_type; /* P_TUNING */
        int64_t encoder_num_layers;   /* P_TUNING */
        pc_num encoder_dropout;       /* P_TUNING */
        pc_prompt_init prompt_tuning_init;  /* PROMPT_TUNING, MPT */
        char *prompt_tuning_init_text;      /* PROMPT_TUNING, MPT */
        char *tokenizer_name_or_path;       /* PROMPT_TUNING, MPT */
        char *tokenizer_kwargs;             /* compact JSON object text or NULL; PROMPT_TUNING, MPT */
        char *prompt_tuning_init_state_dict_path; /* MPT */
        int64_t prompt_tuning_init_task;          /* MPT */
        int64_t num_ranks;                        /* MPT */
        int64_t num_tasks;                        /* MPT */
    } prompt;

    /* ---- custom methods (PC_PEFT_CUSTOM); a PEFT type's peftc_* fields ---- */
    char *custom_type; /* the peft_type string as written, e.g. "GAIN"; NULL for PEFT's own types */
    /* compact JSON text (sorted keys, Python's separators (",", ":")) of the whole config object as
     * read, so the method can read its own fields. Writing a custom config writes this object with
     * the PeftConfig and targeting fields replaced by the struct's values. For PEFT's types: the
     * object of its "peftc_*" keys (peftc's own fields, e.g. prefix tuning's ablations; written
     * back, dropped by PEFT), or NULL when it has none. */
    char *custom_json;

    /* non-fatal diagnostics from loading (unknown keys, ignored fields); owned by the config */
    char **warnings;
    size_t n_warnings;

    /* private: parsed copies of custom_json kept for pc_adapter_config_custom_string's results */
    void *custom_cache_;
} pc_adapter_config;

/* ---- names ---- */
/* "LORA", ...; "CUSTOM" for PC_PEFT_CUSTOM (messages should name cfg->custom_type); NULL for
 * PC_PEFT_NONE */
const char *pc_peft_type_name(pc_peft_type t);
/* PEFT's types only: PC_PEFT_NONE when not supported (also for "CUSTOM") */
pc_peft_type pc_peft_type_from_name(const char *s);
/* cfg->custom_type for custom configs, else pc_peft_type_name(cfg->peft_type); "?" when unknown */
const char *pc_adapter_config_type_name(const pc_adapter_config *cfg);
const char *pc_task_type_name(pc_task_type t);       /* NULL for PC_TASK_NONE */
bool pc_peft_type_is_prompt_learning(pc_peft_type t);

/* ---- lifetime ---- */
/* a config holding PEFT's defaults for `type` (as `LoraConfig()` would; peft_version NULL).
 * PC_PEFT_CUSTOM: custom_type NULL (set it with pc_config_set_str before validating or writing)
 * and custom_json "{}". */
pc_adapter_config *pc_adapter_config_new(pc_peft_type type);
void pc_adapter_config_free(pc_adapter_config *cfg);
/* deep copy (warnings included); NULL on out-of-memory */
pc_adapter_config *pc_adapter_config_clone(const pc_adapter_config *cfg);

/* ---- reading ---- */
/* `path` is adapter_config.json itself or the directory holding it */
pc_adapter_config *pc_adapter_config_load(const char *path, char *err, size_t errlen);
/* `source` names the text in messages (NULL: "adapter_config.json") */
pc_adapter_config *pc_adapter_config_parse(const char *json, size_t len, const char *source, char *err,
                                           size_t errlen);
/* with custom methods: custom_types[0..ncustom) are the registered method names (see "custom
 * methods" above). When peft_type is unknown and ncustom > 0 the message lists them. */
pc_adapter_config *pc_adapter_config_load_ex(const char *path, const char *const *custom_types, size_t ncustom,
                                             char *err, size_t errlen);
pc_adapter_config *pc_adapter_config_parse_ex(const char *json, size_t len, const char *source,
                                              const char *const *custom_types, size_t ncustom, char *err,
                                              size_t errlen);
/* the checks load applies, for configs built in code; 0 or -1 */
int pc_adapter_config_validate(const pc_adapter_config *cfg, const char *source, char *err, size_t errlen);

/* ---- writing ---- */
/* PEFT's text: json.dumps(asdict(config), indent=2, sort_keys=True), every field of the peft_type,
 * ensure_ascii escapes, Python float repr, no trailing newline. malloc'd; NULL + err on failure
 * (an invalid config is not written). */
char *pc_adapter_config_to_json(const pc_adapter_config *cfg, char *err, size_t errlen);
/* atomic: a temporary file in the same directory, fsync, rename. `path` is the file, or an
 * existing directory (then <path>/adapter_config.json). 0 or -1. */
int pc_adapter_config_write(const pc_adapter_config *cfg, const char *path, char *err, size_t errlen);

/* field-by-field equality with Python's semantics (warnings ignored): target/exclude/feedforward
 * lists compare as sets and rank/alpha patterns as dicts, in any order, like PEFT's config
 * dataclasses. Note that the first-match order of patterns is file order: PEFT's sort_keys=True
 * save reorders a hand-written unsorted pattern, and so does pc_adapter_config_write.
 * Custom configs also compare custom_type and the method's own fields of custom_json (as JSON
 * values; the PeftConfig/targeting keys in it are superseded by the struct's fields, compared above). */
bool pc_adapter_config_equal(const pc_adapter_config *a, const pc_adapter_config *b);

/* ---- a method's own fields (custom_json; any config type, NULL custom_json = every field absent) ---- */
/* 0: present and a number (*out set); 1: absent or null; -1: present with another type */
int pc_adapter_config_custom_number(const pc_adapter_config *cfg, const char *field, double *out);
/* the string value, owned by cfg and valid until custom_json changes; NULL when absent or not a string */
const char *pc_adapter_config_custom_string(const pc_adapter_config *cfg, const char *field);

/* ---- building configs in code (all copy their arguments; 0 or -1 on out-of-memory) ---- */
int pc_spec_set_list(pc_spec *s, const char *const *items, size_t n);
int pc_spec_set_string(pc_spec *s, const char *str);
void pc_spec_clear(pc_spec *s); /* back to null */
int pc_layers_set_list(pc_layers *l, const int64_t *items, size_t n);
int pc_layers_set_int(pc_layers *l, int64_t layer);
void pc_layers_clear(pc_layers *l);
int pc_pattern_add(pc_pattern *p, const char *key, double value, bool is_int); /* appends */
void pc_pattern_clear(pc_pattern *p, bool is_null);
/* replaces *field with a copy of value (NULL allowed) */
int pc_config_set_str(char **field, const char *value);

#ifdef __cplusplus
}
#endif
#endif
