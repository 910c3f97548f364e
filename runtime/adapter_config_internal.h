/* Private to the adapter_config*.c files: the field table, the shared parse/validate context and
 * the helpers more than one of them needs. The public API is runtime/adapter_config.h.
 *
 *   adapter_config.c           names of PEFT types/task types and the per-method field table
 *   adapter_config_object.c    building, copying, comparing and freeing configs
 *   adapter_config_read.c      JSON text -> config (PEFT's reading rules), load from disk
 *   adapter_config_validate.c  cross-field checks from PEFT's __post_init__ and layer code
 *   adapter_config_write.c     config -> PEFT's JSON text, atomic write to disk
 *   adapter_config_pyjson.c    Python-compatible json.dumps text and float repr
 *   adapter_config_custom.c    user-registered methods (PC_PEFT_CUSTOM): custom_json and its accessors */
#ifndef PEFTC_RUNTIME_ADAPTER_CONFIG_INTERNAL_H
#define PEFTC_RUNTIME_ADAPTER_CONFIG_INTERNAL_H

#include "runtime/adapter_config.h"
#include "runtime/textbuf.h"

#include <jansson.h>

/* ---- the field table: every key PEFT writes, per peft_type (adapter_config.c) ---- */

#define M(t) (1u << (t))
#define T_LORA M(PC_PEFT_LORA)
#define T_LOHA M(PC_PEFT_LOHA)
#define T_LOKR M(PC_PEFT_LOKR)
#define T_ADA M(PC_PEFT_ADALORA)
#define T_IA3 M(PC_PEFT_IA3)
#define T_PRE M(PC_PEFT_PREFIX_TUNING)
#define T_PT M(PC_PEFT_P_TUNING)
#define T_PROMPT M(PC_PEFT_PROMPT_TUNING)
#define T_MPT M(PC_PEFT_MULTITASK_PROMPT_TUNING)
#define T_CUSTOM M(PC_PEFT_CUSTOM)
#define T_LORAISH (T_LORA | T_ADA)
#define T_LYCO (T_LOHA | T_LOKR)
#define T_PL (T_PRE | T_PT | T_PROMPT | T_MPT)
#define T_ALL (T_LORAISH | T_LYCO | T_IA3 | T_PL | T_CUSTOM)

typedef enum {
    /* PeftConfig */
    F_AUTO_MAPPING, F_BASE_MODEL, F_INFERENCE_MODE, F_PEFT_TYPE, F_PEFT_VERSION, F_REVISION, F_TASK_TYPE,
    F_MODULES_TO_SAVE,
    /* targeting */
    F_TARGET_MODULES, F_EXCLUDE_MODULES, F_LAYERS_TO_TRANSFORM, F_LAYERS_PATTERN, F_RANK_PATTERN,
    F_ALPHA_PATTERN, F_R, F_FAN_IN_FAN_OUT,
    /* LoRA */
    F_LORA_ALPHA, F_LORA_DROPOUT, F_BIAS, F_USE_RSLORA, F_INIT_LORA_WEIGHTS, F_USE_DORA, F_LORA_BIAS,
    F_MEGATRON_CORE, F_QALORA_GROUP_SIZE,
    /* LoRA fields peftc accepts only at PEFT's default */
    F_MEGATRON_CONFIG, F_TRAINABLE_TOKEN_INDICES, F_LOFTQ_CONFIG, F_EVA_CONFIG, F_CORDA_CONFIG,
    F_LORA_GA_CONFIG, F_VELORA_CONFIG, F_ALORA_INVOCATION_TOKENS, F_USE_QALORA, F_MONTECLORA_CONFIG,
    F_LAYER_REPLICATION, F_TARGET_PARAMETERS, F_USE_BDLORA, F_ARROW_CONFIG, F_KASA_CONFIG,
    F_ENSURE_WEIGHT_TYING,
    /* LyCORIS */
    F_ALPHA, F_RANK_DROPOUT, F_MODULE_DROPOUT, F_USE_EFFECTIVE_CONV2D, F_INIT_WEIGHTS, F_DECOMPOSE_BOTH,
    F_DECOMPOSE_FACTOR, F_RANK_DROPOUT_SCALE,
    /* AdaLoRA */
    F_TARGET_R, F_INIT_R, F_TINIT, F_TFINAL, F_DELTAT, F_BETA1, F_BETA2, F_ORTH_REG_WEIGHT, F_TOTAL_STEP,
    /* IA3 */
    F_FEEDFORWARD_MODULES, F_INIT_IA3_WEIGHTS,
    /* prompt learning */
    F_NUM_VIRTUAL_TOKENS, F_TOKEN_DIM, F_NUM_TRANSFORMER_SUBMODULES, F_NUM_ATTENTION_HEADS, F_NUM_LAYERS,
    F_ENCODER_HIDDEN_SIZE, F_PREFIX_PROJECTION, F_ENCODER_REPARAM_TYPE, F_ENCODER_NUM_LAYERS,
    F_ENCODER_DROPOUT, F_PROMPT_TUNING_INIT, F_PROMPT_TUNING_INIT_TEXT, F_TOKENIZER_NAME_OR_PATH,
    F_TOKENIZER_KWARGS, F_PROMPT_TUNING_INIT_STATE_DICT_PATH, F_PROMPT_TUNING_INIT_TASK, F_NUM_RANKS,
    F_NUM_TASKS,
    F_COUNT
} field_id;

typedef struct {
    const char *name;
    unsigned types;
    /* for fields peftc only accepts at their default: the default as written, and what else PEFT
     * treats as the same "off" value */
    const char *default_json;
    unsigned accept; /* A_* bits */
} field_info;

enum { A_NULL = 1, A_FALSE = 2, A_EMPTY_LIST = 4, A_EMPTY_OBJ = 8 };

extern const field_info AC_FIELDS[F_COUNT];

/* the field id of `key` for peft_type `t`, or -1 when PEFT does not define it for that type */
int ac_field_lookup(const char *key, pc_peft_type t);
pc_task_type ac_task_type_from_name(const char *s); /* PC_TASK_NONE when unknown */
const char *ac_prompt_init_name(pc_prompt_init p);  /* NULL when out of range */

/* ---- value helpers (adapter_config_object.c) ---- */

char *ac_strdup(const char *s); /* NULL stays NULL */
void ac_spec_free(pc_spec *s);  /* back to null */
/* appends an entry with a copy of key and a zero value; NULL on out-of-memory */
pc_pattern_entry *ac_pattern_push(pc_pattern *p, const char *key);
static inline pc_num ac_num_int(double v) { return (pc_num){.v = v, .is_int = true}; }
static inline pc_num ac_num_float(double v) { return (pc_num){.v = v, .is_int = false}; }

/* ---- reading and validation (adapter_config_read.c, adapter_config_validate.c) ---- */

typedef struct {
    const char *src; /* names the text in messages */
    char *err;
    size_t errlen;
    pc_adapter_config *cfg;
    /* fields PEFT ignores unless init_lora_weights selects them */
    const char *ignored_init_config[3];
    int n_ignored;
} pctx;

/* "<src>: field "<field>": <reason>" into c->err; returns -1 */
int ac_ferr(pctx *c, const char *field, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int ac_validate_ctx(pctx *c);
/* `path` itself, or <path>/adapter_config.json when path is a directory; malloc'd */
char *ac_config_path(const char *path);

/* ---- Python-compatible JSON text (adapter_config_pyjson.c) ---- */

/* repr(float) */
void ac_py_float_repr(double v, char *out, size_t outlen);
/* json.dumps(v, indent=indent, sort_keys=True) with ensure_ascii; indent -1: the one-line
 * json.dumps(v) form (", " and ": " separators, keys in object order); indent AC_PY_COMPACT:
 * json.dumps(v, separators=(",", ":"), sort_keys=True) */
#define AC_PY_COMPACT (-2)
void ac_py_dump(pc_textbuf *b, const json_t *v, int indent, int depth);

/* ---- custom methods (adapter_config_custom.c) ---- */

/* the compact sorted text of v (AC_PY_COMPACT), malloc'd; NULL on out-of-memory */
char *ac_compact_json(const json_t *v);
/* custom_json as an object (NULL text: {}); NULL when it is not the text of an object */
json_t *ac_custom_object(const pc_adapter_config *cfg);
/* the method's own fields of two custom configs' custom_json are equal JSON values */
bool ac_custom_fields_equal(const pc_adapter_config *a, const pc_adapter_config *b);
/* frees the accessors' parsed copies of custom_json */
void ac_custom_cache_free(pc_adapter_config *cfg);
/* a short one-line rendering of a JSON value for messages; returns buf */
const char *ac_render(const json_t *v, char *buf, size_t buflen);

#endif
