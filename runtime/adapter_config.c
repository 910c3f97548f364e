/* adapter_config.json reader/writer, PEFT-exact. See adapter_config.h. */
#include "runtime/adapter_config.h"

#include "runtime/target_match.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_CONFIG_BYTES ((size_t)256 << 20)

/* ------------------------------------------------------------------------------------------------
 * small helpers
 * ---------------------------------------------------------------------------------------------- */

static void seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static char *xstrdup(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s);
    char *p = malloc(n + 1);
    if (p) memcpy(p, s, n + 1);
    return p;
}

static bool str_eq_null(const char *a, const char *b) {
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

/* growable text buffer; `oom` is sticky */
typedef struct {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_putn(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}
static void sb_puts(sbuf *b, const char *s) { sb_putn(b, s, strlen(s)); }
static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if ((size_t)k < sizeof tmp) {
        sb_putn(b, tmp, (size_t)k);
        return;
    }
    char *big = malloc((size_t)k + 1);
    if (!big) {
        b->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)k + 1, fmt, ap);
    va_end(ap);
    sb_putn(b, big, (size_t)k);
    free(big);
}

/* ------------------------------------------------------------------------------------------------
 * Python-compatible JSON text: json.dumps(v, indent=2, sort_keys=True) (ensure_ascii) and the
 * one-line form json.dumps(v) used in messages.
 * ---------------------------------------------------------------------------------------------- */

/* repr(float): shortest round-trip digits; fixed notation when -4 <= exponent < 16 */
static void py_float_repr(double v, char *out, size_t outlen) {
    if (isnan(v)) {
        snprintf(out, outlen, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(out, outlen, v < 0 ? "-Infinity" : "Infinity");
        return;
    }
    if (v == 0) {
        snprintf(out, outlen, signbit(v) ? "-0.0" : "0.0");
        return;
    }
    char tmp[64];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, v);
        if (strtod(tmp, NULL) == v) break;
    }
    /* tmp: [-]d[.ddd]e[+-]xx */
    const char *p = tmp;
    bool neg = false;
    if (*p == '-') {
        neg = true;
        p++;
    }
    char digits[32];
    size_t nd = 0;
    while (*p && *p != 'e') {
        if (*p != '.' && nd + 1 < sizeof digits) digits[nd++] = *p;
        p++;
    }
    digits[nd] = '\0';
    int exp10 = (*p == 'e') ? atoi(p + 1) : 0;
    while (nd > 1 && digits[nd - 1] == '0') digits[--nd] = '\0';
    sbuf b = {0};
    if (neg) sb_puts(&b, "-");
    if (exp10 >= -4 && exp10 < 16) {
        int decpt = exp10 + 1; /* digits before the point */
        if (decpt <= 0) {
            sb_puts(&b, "0.");
            for (int i = 0; i < -decpt; i++) sb_puts(&b, "0");
            sb_puts(&b, digits);
        } else if ((size_t)decpt >= nd) {
            sb_puts(&b, digits);
            for (size_t i = nd; i < (size_t)decpt; i++) sb_puts(&b, "0");
            sb_puts(&b, ".0");
        } else {
            sb_putn(&b, digits, (size_t)decpt);
            sb_puts(&b, ".");
            sb_puts(&b, digits + decpt);
        }
    } else {
        sb_putn(&b, digits, 1);
        if (nd > 1) {
            sb_puts(&b, ".");
            sb_puts(&b, digits + 1);
        }
        sb_printf(&b, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    }
    snprintf(out, outlen, "%s", b.oom || !b.p ? "0.0" : b.p);
    free(b.p);
}

/* decodes one UTF-8 sequence (input is valid UTF-8 from jansson); returns bytes consumed */
static size_t utf8_decode(const unsigned char *s, size_t n, unsigned *cp) {
    unsigned c = s[0];
    if (c < 0x80 || n < 2) {
        *cp = c;
        return 1;
    }
    if ((c & 0xE0) == 0xC0) {
        *cp = ((c & 0x1Fu) << 6) | (s[1] & 0x3Fu);
        return 2;
    }
    if ((c & 0xF0) == 0xE0 && n >= 3) {
        *cp = ((c & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
        return 3;
    }
    if ((c & 0xF8) == 0xF0 && n >= 4) {
        *cp = ((c & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu);
        return 4;
    }
    *cp = c;
    return 1;
}

static void py_dump_string(sbuf *b, const char *s, size_t n) {
    sb_puts(b, "\"");
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned char c = u[i];
        if (c >= 0x20 && c <= 0x7e && c != '"' && c != '\\') {
            size_t j = i;
            while (j < n && u[j] >= 0x20 && u[j] <= 0x7e && u[j] != '"' && u[j] != '\\') j++;
            sb_putn(b, s + i, j - i);
            i = j;
            continue;
        }
        switch (c) {
        case '"': sb_puts(b, "\\\""); i++; continue;
        case '\\': sb_puts(b, "\\\\"); i++; continue;
        case '\n': sb_puts(b, "\\n"); i++; continue;
        case '\r': sb_puts(b, "\\r"); i++; continue;
        case '\t': sb_puts(b, "\\t"); i++; continue;
        case '\b': sb_puts(b, "\\b"); i++; continue;
        case '\f': sb_puts(b, "\\f"); i++; continue;
        default: break;
        }
        unsigned cp;
        i += utf8_decode(u + i, n - i, &cp);
        if (cp >= 0x10000) {
            unsigned v = cp - 0x10000;
            sb_printf(b, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
        } else {
            sb_printf(b, "\\u%04x", cp);
        }
    }
    sb_puts(b, "\"");
}

static int cmp_cstr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void py_indent(sbuf *b, int indent, int depth) {
    sb_puts(b, "\n");
    for (int i = 0; i < indent * depth; i++) sb_puts(b, " ");
}

/* indent < 0: one line (", " and ": " separators, keys in object order) */
static void py_dump(sbuf *b, const json_t *v, int indent, int depth) {
    switch (json_typeof(v)) {
    case JSON_NULL: sb_puts(b, "null"); return;
    case JSON_TRUE: sb_puts(b, "true"); return;
    case JSON_FALSE: sb_puts(b, "false"); return;
    case JSON_INTEGER: sb_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v)); return;
    case JSON_REAL: {
        char tmp[64];
        py_float_repr(json_real_value(v), tmp, sizeof tmp);
        sb_puts(b, tmp);
        return;
    }
    case JSON_STRING: py_dump_string(b, json_string_value(v), json_string_length(v)); return;
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        if (n == 0) {
            sb_puts(b, "[]");
            return;
        }
        sb_puts(b, "[");
        for (size_t i = 0; i < n; i++) {
            if (i) sb_puts(b, indent < 0 ? ", " : ",");
            if (indent >= 0) py_indent(b, indent, depth + 1);
            py_dump(b, json_array_get(v, i), indent, depth + 1);
        }
        if (indent >= 0) py_indent(b, indent, depth);
        sb_puts(b, "]");
        return;
    }
    case JSON_OBJECT: {
        size_t n = json_object_size(v);
        if (n == 0) {
            sb_puts(b, "{}");
            return;
        }
        const char **keys = malloc(n * sizeof *keys);
        if (!keys) {
            b->oom = true;
            return;
        }
        size_t k = 0;
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)v, key, val) {
            if (k < n) keys[k++] = key;
        }
        if (indent >= 0) qsort(keys, k, sizeof *keys, cmp_cstr);
        sb_puts(b, "{");
        for (size_t i = 0; i < k; i++) {
            if (i) sb_puts(b, indent < 0 ? ", " : ",");
            if (indent >= 0) py_indent(b, indent, depth + 1);
            py_dump_string(b, keys[i], strlen(keys[i]));
            sb_puts(b, ": ");
            py_dump(b, json_object_get(v, keys[i]), indent, depth + 1);
        }
        free(keys);
        if (indent >= 0) py_indent(b, indent, depth);
        sb_puts(b, "}");
        return;
    }
    }
}

/* a short rendering of a JSON value for messages */
static const char *render(const json_t *v, char *buf, size_t buflen) {
    sbuf b = {0};
    py_dump(&b, v, -1, 0);
    if (b.oom || !b.p) {
        snprintf(buf, buflen, "(value)");
    } else if (b.n > 80) {
        snprintf(buf, buflen, "%.77s...", b.p);
    } else {
        snprintf(buf, buflen, "%s", b.p);
    }
    free(b.p);
    return buf;
}

/* ------------------------------------------------------------------------------------------------
 * names
 * ---------------------------------------------------------------------------------------------- */

static const char *const PEFT_TYPE_NAMES[] = {
    [PC_PEFT_NONE] = NULL,
    [PC_PEFT_LORA] = "LORA",
    [PC_PEFT_LOHA] = "LOHA",
    [PC_PEFT_LOKR] = "LOKR",
    [PC_PEFT_ADALORA] = "ADALORA",
    [PC_PEFT_IA3] = "IA3",
    [PC_PEFT_PREFIX_TUNING] = "PREFIX_TUNING",
    [PC_PEFT_P_TUNING] = "P_TUNING",
    [PC_PEFT_PROMPT_TUNING] = "PROMPT_TUNING",
    [PC_PEFT_MULTITASK_PROMPT_TUNING] = "MULTITASK_PROMPT_TUNING",
};
#define N_PEFT_TYPES ((int)(sizeof PEFT_TYPE_NAMES / sizeof PEFT_TYPE_NAMES[0]))

/* PeftType members peftc does not implement (src/peft/utils/peft_types.py, PEFT 0.20-0.21) */
static const char *const OTHER_PEFT_TYPES[] = {
    "ADAMSS", "BOFT", "ADAPTION_PROMPT", "BEFT", "LILY", "OFT", "POLY", "LN_TUNING", "VERA", "FROD",
    "PVERA", "FOURIERFT", "GLORA", "XLORA", "HRA", "VBLORA", "UNILORA", "CPT", "MISS", "RANDLORA",
    "ROAD", "TRAINABLE_TOKENS", "HIRA", "SHIRA", "C3A", "WAVEFT", "OSF", "DELORA", "GRALORA",
    "CARTRIDGE", "TINYLORA", "PSOFT", "PEANUT", "SUPERTUNING", "DEFT", "SHADOW" /* 0.21 */, NULL,
};

static const char *const TASK_TYPE_NAMES[] = {
    [PC_TASK_NONE] = NULL,
    [PC_TASK_SEQ_CLS] = "SEQ_CLS",
    [PC_TASK_SEQ_2_SEQ_LM] = "SEQ_2_SEQ_LM",
    [PC_TASK_CAUSAL_LM] = "CAUSAL_LM",
    [PC_TASK_TOKEN_CLS] = "TOKEN_CLS",
    [PC_TASK_QUESTION_ANS] = "QUESTION_ANS",
    [PC_TASK_FEATURE_EXTRACTION] = "FEATURE_EXTRACTION",
};
#define N_TASK_TYPES ((int)(sizeof TASK_TYPE_NAMES / sizeof TASK_TYPE_NAMES[0]))

const char *pc_peft_type_name(pc_peft_type t) {
    if ((int)t <= 0 || (int)t >= N_PEFT_TYPES) return NULL;
    return PEFT_TYPE_NAMES[t];
}

pc_peft_type pc_peft_type_from_name(const char *s) {
    if (!s) return PC_PEFT_NONE;
    for (int i = 1; i < N_PEFT_TYPES; i++)
        if (strcmp(s, PEFT_TYPE_NAMES[i]) == 0) return (pc_peft_type)i;
    return PC_PEFT_NONE;
}

const char *pc_task_type_name(pc_task_type t) {
    if ((int)t <= 0 || (int)t >= N_TASK_TYPES) return NULL;
    return TASK_TYPE_NAMES[t];
}

bool pc_peft_type_is_prompt_learning(pc_peft_type t) {
    return t == PC_PEFT_PREFIX_TUNING || t == PC_PEFT_P_TUNING || t == PC_PEFT_PROMPT_TUNING ||
           t == PC_PEFT_MULTITASK_PROMPT_TUNING;
}

static const char *const PROMPT_INIT_NAMES[] = {
    [PC_PROMPT_INIT_RANDOM] = "RANDOM",
    [PC_PROMPT_INIT_TEXT] = "TEXT",
    [PC_PROMPT_INIT_SAMPLE_VOCAB] = "SAMPLE_VOCAB",
    [PC_PROMPT_INIT_AVERAGE_SOURCE_TASKS] = "AVERAGE_SOURCE_TASKS",
    [PC_PROMPT_INIT_EXACT_SOURCE_TASK] = "EXACT_SOURCE_TASK",
    [PC_PROMPT_INIT_ONLY_SOURCE_SHARED] = "ONLY_SOURCE_SHARED",
};

/* ------------------------------------------------------------------------------------------------
 * the field table: every key PEFT writes, per peft_type
 * ---------------------------------------------------------------------------------------------- */

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
#define T_LORAISH (T_LORA | T_ADA)
#define T_LYCO (T_LOHA | T_LOKR)
#define T_PL (T_PRE | T_PT | T_PROMPT | T_MPT)
#define T_ALL (T_LORAISH | T_LYCO | T_IA3 | T_PL)

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

static const field_info FIELDS[F_COUNT] = {
    [F_AUTO_MAPPING] = {"auto_mapping", T_ALL, NULL, 0},
    [F_BASE_MODEL] = {"base_model_name_or_path", T_ALL, NULL, 0},
    [F_INFERENCE_MODE] = {"inference_mode", T_ALL, NULL, 0},
    [F_PEFT_TYPE] = {"peft_type", T_ALL, NULL, 0},
    [F_PEFT_VERSION] = {"peft_version", T_ALL, NULL, 0},
    [F_REVISION] = {"revision", T_ALL, NULL, 0},
    [F_TASK_TYPE] = {"task_type", T_ALL, NULL, 0},
    [F_MODULES_TO_SAVE] = {"modules_to_save", T_ALL, NULL, 0},
    [F_TARGET_MODULES] = {"target_modules", T_LORAISH | T_LYCO | T_IA3, NULL, 0},
    [F_EXCLUDE_MODULES] = {"exclude_modules", T_LORAISH | T_LYCO | T_IA3, NULL, 0},
    [F_LAYERS_TO_TRANSFORM] = {"layers_to_transform", T_LORAISH | T_LYCO, NULL, 0},
    [F_LAYERS_PATTERN] = {"layers_pattern", T_LORAISH | T_LYCO, NULL, 0},
    [F_RANK_PATTERN] = {"rank_pattern", T_LORAISH | T_LYCO, NULL, 0},
    [F_ALPHA_PATTERN] = {"alpha_pattern", T_LORAISH | T_LYCO, NULL, 0},
    [F_R] = {"r", T_LORAISH | T_LYCO, NULL, 0},
    [F_FAN_IN_FAN_OUT] = {"fan_in_fan_out", T_LORAISH | T_IA3, NULL, 0},
    [F_LORA_ALPHA] = {"lora_alpha", T_LORAISH, NULL, 0},
    [F_LORA_DROPOUT] = {"lora_dropout", T_LORAISH, NULL, 0},
    [F_BIAS] = {"bias", T_LORAISH, NULL, 0},
    [F_USE_RSLORA] = {"use_rslora", T_LORAISH, NULL, 0},
    [F_INIT_LORA_WEIGHTS] = {"init_lora_weights", T_LORAISH, NULL, 0},
    [F_USE_DORA] = {"use_dora", T_LORAISH, NULL, 0},
    [F_LORA_BIAS] = {"lora_bias", T_LORAISH, NULL, 0},
    [F_MEGATRON_CORE] = {"megatron_core", T_LORAISH, NULL, 0},
    [F_QALORA_GROUP_SIZE] = {"qalora_group_size", T_LORAISH, NULL, 0},
    [F_MEGATRON_CONFIG] = {"megatron_config", T_LORAISH, "null", A_NULL | A_EMPTY_OBJ},
    [F_TRAINABLE_TOKEN_INDICES] = {"trainable_token_indices", T_LORAISH, "null",
                                   A_NULL | A_EMPTY_LIST | A_EMPTY_OBJ},
    [F_LOFTQ_CONFIG] = {"loftq_config", T_LORAISH, "{}", A_NULL | A_EMPTY_OBJ},
    [F_EVA_CONFIG] = {"eva_config", T_LORAISH, "null", A_NULL},
    [F_CORDA_CONFIG] = {"corda_config", T_LORAISH, "null", A_NULL},
    [F_LORA_GA_CONFIG] = {"lora_ga_config", T_LORAISH, "null", A_NULL},
    [F_VELORA_CONFIG] = {"velora_config", T_LORAISH, "null", A_NULL},
    [F_ALORA_INVOCATION_TOKENS] = {"alora_invocation_tokens", T_LORAISH, "null", A_NULL},
    [F_USE_QALORA] = {"use_qalora", T_LORAISH, "false", A_FALSE},
    [F_MONTECLORA_CONFIG] = {"monteclora_config", T_LORAISH, "null", A_NULL},
    [F_LAYER_REPLICATION] = {"layer_replication", T_LORAISH, "null", A_NULL | A_EMPTY_LIST},
    [F_TARGET_PARAMETERS] = {"target_parameters", T_LORAISH, "null", A_NULL | A_EMPTY_LIST},
    [F_USE_BDLORA] = {"use_bdlora", T_LORAISH, "null", A_NULL},
    [F_ARROW_CONFIG] = {"arrow_config", T_LORAISH, "null", A_NULL},
    [F_KASA_CONFIG] = {"kasa_config", T_LORAISH, "null", A_NULL},
    [F_ENSURE_WEIGHT_TYING] = {"ensure_weight_tying", T_LORAISH, "false", A_FALSE},
    [F_ALPHA] = {"alpha", T_LYCO, NULL, 0},
    [F_RANK_DROPOUT] = {"rank_dropout", T_LYCO, NULL, 0},
    [F_MODULE_DROPOUT] = {"module_dropout", T_LYCO, NULL, 0},
    [F_USE_EFFECTIVE_CONV2D] = {"use_effective_conv2d", T_LYCO, NULL, 0},
    [F_INIT_WEIGHTS] = {"init_weights", T_LYCO | T_PRE, NULL, 0},
    [F_DECOMPOSE_BOTH] = {"decompose_both", T_LOKR, NULL, 0},
    [F_DECOMPOSE_FACTOR] = {"decompose_factor", T_LOKR, NULL, 0},
    [F_RANK_DROPOUT_SCALE] = {"rank_dropout_scale", T_LOKR, NULL, 0},
    [F_TARGET_R] = {"target_r", T_ADA, NULL, 0},
    [F_INIT_R] = {"init_r", T_ADA, NULL, 0},
    [F_TINIT] = {"tinit", T_ADA, NULL, 0},
    [F_TFINAL] = {"tfinal", T_ADA, NULL, 0},
    [F_DELTAT] = {"deltaT", T_ADA, NULL, 0},
    [F_BETA1] = {"beta1", T_ADA, NULL, 0},
    [F_BETA2] = {"beta2", T_ADA, NULL, 0},
    [F_ORTH_REG_WEIGHT] = {"orth_reg_weight", T_ADA, NULL, 0},
    [F_TOTAL_STEP] = {"total_step", T_ADA, NULL, 0},
    [F_FEEDFORWARD_MODULES] = {"feedforward_modules", T_IA3, NULL, 0},
    [F_INIT_IA3_WEIGHTS] = {"init_ia3_weights", T_IA3, NULL, 0},
    [F_NUM_VIRTUAL_TOKENS] = {"num_virtual_tokens", T_PL, NULL, 0},
    [F_TOKEN_DIM] = {"token_dim", T_PL, NULL, 0},
    [F_NUM_TRANSFORMER_SUBMODULES] = {"num_transformer_submodules", T_PL, NULL, 0},
    [F_NUM_ATTENTION_HEADS] = {"num_attention_heads", T_PL, NULL, 0},
    [F_NUM_LAYERS] = {"num_layers", T_PL, NULL, 0},
    [F_ENCODER_HIDDEN_SIZE] = {"encoder_hidden_size", T_PRE | T_PT, NULL, 0},
    [F_PREFIX_PROJECTION] = {"prefix_projection", T_PRE, NULL, 0},
    [F_ENCODER_REPARAM_TYPE] = {"encoder_reparameterization_type", T_PT, NULL, 0},
    [F_ENCODER_NUM_LAYERS] = {"encoder_num_layers", T_PT, NULL, 0},
    [F_ENCODER_DROPOUT] = {"encoder_dropout", T_PT, NULL, 0},
    [F_PROMPT_TUNING_INIT] = {"prompt_tuning_init", T_PROMPT | T_MPT, NULL, 0},
    [F_PROMPT_TUNING_INIT_TEXT] = {"prompt_tuning_init_text", T_PROMPT | T_MPT, NULL, 0},
    [F_TOKENIZER_NAME_OR_PATH] = {"tokenizer_name_or_path", T_PROMPT | T_MPT, NULL, 0},
    [F_TOKENIZER_KWARGS] = {"tokenizer_kwargs", T_PROMPT | T_MPT, NULL, 0},
    [F_PROMPT_TUNING_INIT_STATE_DICT_PATH] = {"prompt_tuning_init_state_dict_path", T_MPT, NULL, 0},
    [F_PROMPT_TUNING_INIT_TASK] = {"prompt_tuning_init_task", T_MPT, NULL, 0},
    [F_NUM_RANKS] = {"num_ranks", T_MPT, NULL, 0},
    [F_NUM_TASKS] = {"num_tasks", T_MPT, NULL, 0},
};

static int field_lookup(const char *key, pc_peft_type t) {
    for (int i = 0; i < F_COUNT; i++)
        if ((FIELDS[i].types & M(t)) && strcmp(FIELDS[i].name, key) == 0) return i;
    return -1;
}

/* ------------------------------------------------------------------------------------------------
 * construction, destruction, copies
 * ---------------------------------------------------------------------------------------------- */

static void spec_free(pc_spec *s) {
    free(s->str);
    for (size_t i = 0; i < s->n; i++) free(s->items[i]);
    free(s->items);
    memset(s, 0, sizeof *s);
}

void pc_spec_clear(pc_spec *s) {
    if (s) spec_free(s);
}

int pc_spec_set_list(pc_spec *s, const char *const *items, size_t n) {
    if (!s || (n && !items)) return -1;
    pc_spec t = {.kind = PC_SPEC_LIST};
    if (n) {
        t.items = calloc(n, sizeof *t.items);
        if (!t.items) return -1;
    }
    for (size_t i = 0; i < n; i++) {
        t.items[i] = xstrdup(items[i] ? items[i] : "");
        t.n = i + 1;
        if (!t.items[i]) {
            spec_free(&t);
            return -1;
        }
    }
    spec_free(s);
    *s = t;
    return 0;
}

int pc_spec_set_string(pc_spec *s, const char *str) {
    if (!s || !str) return -1;
    char *c = xstrdup(str);
    if (!c) return -1;
    spec_free(s);
    s->kind = PC_SPEC_STRING;
    s->str = c;
    return 0;
}

static int spec_copy(pc_spec *dst, const pc_spec *src) {
    memset(dst, 0, sizeof *dst);
    if (src->kind == PC_SPEC_LIST) return pc_spec_set_list(dst, (const char *const *)src->items, src->n);
    if (src->kind == PC_SPEC_STRING) return pc_spec_set_string(dst, src->str);
    return 0;
}

static bool spec_equal(const pc_spec *a, const pc_spec *b) {
    if (a->kind != b->kind) return false;
    if (a->kind == PC_SPEC_STRING) return str_eq_null(a->str, b->str);
    if (a->kind == PC_SPEC_LIST) {
        if (a->n != b->n) return false;
        for (size_t i = 0; i < a->n; i++)
            if (!str_eq_null(a->items[i], b->items[i])) return false;
    }
    return true;
}

void pc_layers_clear(pc_layers *l) {
    if (!l) return;
    free(l->items);
    memset(l, 0, sizeof *l);
}

int pc_layers_set_list(pc_layers *l, const int64_t *items, size_t n) {
    if (!l || (n && !items)) return -1;
    int64_t *c = NULL;
    if (n) {
        c = malloc(n * sizeof *c);
        if (!c) return -1;
        memcpy(c, items, n * sizeof *c);
    }
    pc_layers_clear(l);
    l->kind = PC_LAYERS_LIST;
    l->items = c;
    l->n = n;
    return 0;
}

int pc_layers_set_int(pc_layers *l, int64_t layer) {
    if (!l) return -1;
    int64_t *c = malloc(sizeof *c);
    if (!c) return -1;
    *c = layer;
    pc_layers_clear(l);
    l->kind = PC_LAYERS_INT;
    l->items = c;
    l->n = 1;
    return 0;
}

static bool layers_equal(const pc_layers *a, const pc_layers *b) {
    if (a->kind != b->kind || a->n != b->n) return false;
    for (size_t i = 0; i < a->n; i++)
        if (a->items[i] != b->items[i]) return false;
    return true;
}

void pc_pattern_clear(pc_pattern *p, bool is_null) {
    if (!p) return;
    for (size_t i = 0; i < p->n; i++) {
        free(p->items[i].key);
        free(p->items[i].mask);
    }
    free(p->items);
    memset(p, 0, sizeof *p);
    p->is_null = is_null;
}

static pc_pattern_entry *pattern_push(pc_pattern *p, const char *key) {
    pc_pattern_entry *items = realloc(p->items, (p->n + 1) * sizeof *items);
    if (!items) return NULL;
    p->items = items;
    pc_pattern_entry *e = &items[p->n];
    memset(e, 0, sizeof *e);
    e->key = xstrdup(key);
    if (!e->key) return NULL;
    p->n++;
    p->is_null = false;
    return e;
}

int pc_pattern_add(pc_pattern *p, const char *key, double value, bool is_int) {
    if (!p || !key) return -1;
    pc_pattern_entry *e = pattern_push(p, key);
    if (!e) return -1;
    e->value.v = value;
    e->value.is_int = is_int;
    return 0;
}

static int pattern_copy(pc_pattern *dst, const pc_pattern *src) {
    memset(dst, 0, sizeof *dst);
    dst->is_null = src->is_null;
    for (size_t i = 0; i < src->n; i++) {
        pc_pattern_entry *e = pattern_push(dst, src->items[i].key);
        if (!e) return -1;
        e->value = src->items[i].value;
        if (src->items[i].mask_len) {
            e->mask = malloc(src->items[i].mask_len * sizeof *e->mask);
            if (!e->mask) return -1;
            memcpy(e->mask, src->items[i].mask, src->items[i].mask_len * sizeof *e->mask);
            e->mask_len = src->items[i].mask_len;
        }
    }
    dst->is_null = src->is_null;
    return 0;
}

static bool num_equal(pc_num a, pc_num b) { return a.v == b.v && a.is_int == b.is_int; }

static bool entry_equal(const pc_pattern_entry *x, const pc_pattern_entry *y) {
    if (!str_eq_null(x->key, y->key) || x->mask_len != y->mask_len) return false;
    if (x->mask_len) {
        for (size_t j = 0; j < x->mask_len; j++)
            if (x->mask[j] != y->mask[j]) return false;
        return true;
    }
    return num_equal(x->value, y->value);
}

/* dict equality, as Python compares configs: same keys and values, in any order */
static bool pattern_contains(const pc_pattern *p, const pc_pattern_entry *e) {
    for (size_t i = 0; i < p->n; i++)
        if (entry_equal(&p->items[i], e)) return true;
    return false;
}

static bool pattern_equal(const pc_pattern *a, const pc_pattern *b) {
    if (a->is_null != b->is_null || a->n != b->n) return false;
    for (size_t i = 0; i < a->n; i++)
        if (!pattern_contains(b, &a->items[i]) || !pattern_contains(a, &b->items[i])) return false;
    return true;
}

/* set equality for target_modules / exclude_modules / feedforward_modules lists (sets in PEFT) */
static bool spec_list_contains(const pc_spec *s, const char *item) {
    for (size_t i = 0; i < s->n; i++)
        if (str_eq_null(s->items[i], item)) return true;
    return false;
}

static bool spec_set_equal(const pc_spec *a, const pc_spec *b) {
    if (a->kind != PC_SPEC_LIST || b->kind != PC_SPEC_LIST) return spec_equal(a, b);
    for (size_t i = 0; i < a->n; i++)
        if (!spec_list_contains(b, a->items[i])) return false;
    for (size_t i = 0; i < b->n; i++)
        if (!spec_list_contains(a, b->items[i])) return false;
    return true;
}

int pc_config_set_str(char **field, const char *value) {
    if (!field) return -1;
    char *c = NULL;
    if (value) {
        c = xstrdup(value);
        if (!c) return -1;
    }
    free(*field);
    *field = c;
    return 0;
}

static pc_num num_int(double v) { return (pc_num){v, true}; }
static pc_num num_float(double v) { return (pc_num){v, false}; }

pc_adapter_config *pc_adapter_config_new(pc_peft_type type) {
    if (!pc_peft_type_name(type)) return NULL;
    pc_adapter_config *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->peft_type = type;
    c->r = 8;
    /* LoRA defaults */
    c->lora.lora_alpha = num_int(8);
    c->lora.lora_dropout = num_float(0.0);
    c->lora.bias = PC_BIAS_NONE;
    c->lora.init_lora_weights = PC_LORA_INIT_TRUE;
    c->lora.megatron_core = xstrdup("megatron.core");
    c->lora.qalora_group_size = 16;
    /* AdaLoRA keeps rank_pattern None; everything else uses {} */
    c->rank_pattern.is_null = (type == PC_PEFT_ADALORA);
    /* LyCORIS */
    c->lycoris.alpha = num_int(8);
    c->lycoris.rank_dropout = num_float(0.0);
    c->lycoris.module_dropout = num_float(0.0);
    c->lycoris.init_weights = PC_LYCORIS_INIT_TRUE;
    c->lycoris.decompose_factor = -1;
    /* AdaLoRA */
    c->adalora.target_r = 8;
    c->adalora.init_r = 12;
    c->adalora.tinit = 0;
    c->adalora.tfinal = 0;
    c->adalora.deltaT = 1;
    c->adalora.beta1 = num_float(0.85);
    c->adalora.beta2 = num_float(0.85);
    c->adalora.orth_reg_weight = num_float(0.5);
    c->adalora.total_step = PC_INT_NULL;
    /* IA3 */
    c->ia3.init_ia3_weights = true;
    /* prompt learning */
    c->prompt.num_virtual_tokens = PC_INT_NULL;
    c->prompt.token_dim = PC_INT_NULL;
    c->prompt.num_transformer_submodules = PC_INT_NULL;
    c->prompt.num_attention_heads = PC_INT_NULL;
    c->prompt.num_layers = PC_INT_NULL;
    c->prompt.encoder_hidden_size = PC_INT_NULL;
    c->prompt.encoder_reparameterization_type = PC_ENCODER_MLP;
    c->prompt.encoder_num_layers = 2;
    c->prompt.encoder_dropout = num_float(0.0);
    c->prompt.prompt_tuning_init = PC_PROMPT_INIT_RANDOM;
    c->prompt.prompt_tuning_init_task = 0;
    c->prompt.num_ranks = 1;
    c->prompt.num_tasks = 1;
    if (!c->lora.megatron_core) {
        free(c);
        return NULL;
    }
    return c;
}

void pc_adapter_config_free(pc_adapter_config *c) {
    if (!c) return;
    free(c->base_model_name_or_path);
    free(c->revision);
    free(c->peft_version);
    free(c->auto_mapping);
    spec_free(&c->modules_to_save);
    spec_free(&c->target_modules);
    spec_free(&c->exclude_modules);
    pc_layers_clear(&c->layers_to_transform);
    spec_free(&c->layers_pattern);
    pc_pattern_clear(&c->rank_pattern, false);
    pc_pattern_clear(&c->alpha_pattern, false);
    free(c->lora.init_lora_weights_text);
    free(c->lora.megatron_core);
    spec_free(&c->ia3.feedforward_modules);
    free(c->prompt.prompt_tuning_init_text);
    free(c->prompt.tokenizer_name_or_path);
    free(c->prompt.tokenizer_kwargs);
    free(c->prompt.prompt_tuning_init_state_dict_path);
    for (size_t i = 0; i < c->n_warnings; i++) free(c->warnings[i]);
    free(c->warnings);
    free(c);
}

pc_adapter_config *pc_adapter_config_clone(const pc_adapter_config *s) {
    if (!s) return NULL;
    pc_adapter_config *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    *c = *s; /* scalars; every pointer is replaced below */
    c->base_model_name_or_path = NULL;
    c->revision = NULL;
    c->peft_version = NULL;
    c->auto_mapping = NULL;
    c->lora.init_lora_weights_text = NULL;
    c->lora.megatron_core = NULL;
    c->prompt.prompt_tuning_init_text = NULL;
    c->prompt.tokenizer_name_or_path = NULL;
    c->prompt.tokenizer_kwargs = NULL;
    c->prompt.prompt_tuning_init_state_dict_path = NULL;
    c->warnings = NULL;
    c->n_warnings = 0;
    memset(&c->modules_to_save, 0, sizeof c->modules_to_save);
    memset(&c->target_modules, 0, sizeof c->target_modules);
    memset(&c->exclude_modules, 0, sizeof c->exclude_modules);
    memset(&c->layers_to_transform, 0, sizeof c->layers_to_transform);
    memset(&c->layers_pattern, 0, sizeof c->layers_pattern);
    memset(&c->rank_pattern, 0, sizeof c->rank_pattern);
    memset(&c->alpha_pattern, 0, sizeof c->alpha_pattern);
    memset(&c->ia3.feedforward_modules, 0, sizeof c->ia3.feedforward_modules);
    int bad = 0;
    bad |= pc_config_set_str(&c->base_model_name_or_path, s->base_model_name_or_path);
    bad |= pc_config_set_str(&c->revision, s->revision);
    bad |= pc_config_set_str(&c->peft_version, s->peft_version);
    bad |= pc_config_set_str(&c->auto_mapping, s->auto_mapping);
    bad |= pc_config_set_str(&c->lora.init_lora_weights_text, s->lora.init_lora_weights_text);
    bad |= pc_config_set_str(&c->lora.megatron_core, s->lora.megatron_core);
    bad |= pc_config_set_str(&c->prompt.prompt_tuning_init_text, s->prompt.prompt_tuning_init_text);
    bad |= pc_config_set_str(&c->prompt.tokenizer_name_or_path, s->prompt.tokenizer_name_or_path);
    bad |= pc_config_set_str(&c->prompt.tokenizer_kwargs, s->prompt.tokenizer_kwargs);
    bad |= pc_config_set_str(&c->prompt.prompt_tuning_init_state_dict_path,
                             s->prompt.prompt_tuning_init_state_dict_path);
    bad |= spec_copy(&c->modules_to_save, &s->modules_to_save);
    bad |= spec_copy(&c->target_modules, &s->target_modules);
    bad |= spec_copy(&c->exclude_modules, &s->exclude_modules);
    bad |= spec_copy(&c->layers_pattern, &s->layers_pattern);
    bad |= spec_copy(&c->ia3.feedforward_modules, &s->ia3.feedforward_modules);
    if (s->layers_to_transform.kind == PC_LAYERS_INT)
        bad |= pc_layers_set_int(&c->layers_to_transform, s->layers_to_transform.items[0]);
    else if (s->layers_to_transform.kind == PC_LAYERS_LIST)
        bad |= pc_layers_set_list(&c->layers_to_transform, s->layers_to_transform.items, s->layers_to_transform.n);
    bad |= pattern_copy(&c->rank_pattern, &s->rank_pattern);
    bad |= pattern_copy(&c->alpha_pattern, &s->alpha_pattern);
    if (s->n_warnings) {
        c->warnings = calloc(s->n_warnings, sizeof *c->warnings);
        if (!c->warnings) bad = -1;
        for (size_t i = 0; c->warnings && i < s->n_warnings; i++) {
            c->warnings[i] = xstrdup(s->warnings[i]);
            c->n_warnings = i + 1;
            if (!c->warnings[i]) bad = -1;
        }
    }
    if (bad) {
        pc_adapter_config_free(c);
        return NULL;
    }
    return c;
}

bool pc_adapter_config_equal(const pc_adapter_config *a, const pc_adapter_config *b) {
    if (!a || !b) return a == b;
    if (a->peft_type != b->peft_type || a->task_type != b->task_type || a->inference_mode != b->inference_mode)
        return false;
    if (!str_eq_null(a->base_model_name_or_path, b->base_model_name_or_path) ||
        !str_eq_null(a->revision, b->revision) || !str_eq_null(a->peft_version, b->peft_version))
        return false;
    if (!(a->auto_mapping == NULL) != !(b->auto_mapping == NULL)) return false;
    if (a->auto_mapping) {
        json_t *x = json_loads(a->auto_mapping, 0, NULL), *y = json_loads(b->auto_mapping, 0, NULL);
        bool eq = x && y && json_equal(x, y);
        json_decref(x);
        json_decref(y);
        if (!eq) return false;
    }
    if (!spec_equal(&a->modules_to_save, &b->modules_to_save)) return false;
    pc_peft_type t = a->peft_type;
    unsigned tm = M(t);
    if (tm & (T_LORAISH | T_LYCO | T_IA3)) {
        if (!spec_set_equal(&a->target_modules, &b->target_modules) ||
            !spec_set_equal(&a->exclude_modules, &b->exclude_modules))
            return false;
    }
    if (tm & (T_LORAISH | T_LYCO)) {
        if (!layers_equal(&a->layers_to_transform, &b->layers_to_transform) ||
            !spec_equal(&a->layers_pattern, &b->layers_pattern) ||
            !pattern_equal(&a->rank_pattern, &b->rank_pattern) ||
            !pattern_equal(&a->alpha_pattern, &b->alpha_pattern) || a->r != b->r)
            return false;
    }
    if ((tm & (T_LORAISH | T_IA3)) && a->fan_in_fan_out != b->fan_in_fan_out) return false;
    if (tm & T_LORAISH) {
        const __typeof__(a->lora) *x = &a->lora, *y = &b->lora;
        if (!num_equal(x->lora_alpha, y->lora_alpha) || !num_equal(x->lora_dropout, y->lora_dropout) ||
            x->bias != y->bias || x->use_rslora != y->use_rslora || x->use_dora != y->use_dora ||
            x->lora_bias != y->lora_bias || x->init_lora_weights != y->init_lora_weights ||
            !str_eq_null(x->megatron_core, y->megatron_core) || x->qalora_group_size != y->qalora_group_size)
            return false;
        if (x->init_lora_weights == PC_LORA_INIT_GAUSSIAN &&
            !str_eq_null(x->init_lora_weights_text ? x->init_lora_weights_text : "gaussian",
                         y->init_lora_weights_text ? y->init_lora_weights_text : "gaussian"))
            return false;
    }
    if (tm & T_LYCO) {
        const __typeof__(a->lycoris) *x = &a->lycoris, *y = &b->lycoris;
        if (!num_equal(x->alpha, y->alpha) || !num_equal(x->rank_dropout, y->rank_dropout) ||
            !num_equal(x->module_dropout, y->module_dropout) ||
            x->use_effective_conv2d != y->use_effective_conv2d || x->init_weights != y->init_weights)
            return false;
        if ((tm & T_LOKR) && (x->decompose_both != y->decompose_both ||
                              x->decompose_factor != y->decompose_factor ||
                              x->rank_dropout_scale != y->rank_dropout_scale))
            return false;
    }
    if (tm & T_ADA) {
        const __typeof__(a->adalora) *x = &a->adalora, *y = &b->adalora;
        if (x->target_r != y->target_r || x->init_r != y->init_r || x->tinit != y->tinit ||
            x->tfinal != y->tfinal || x->deltaT != y->deltaT || !num_equal(x->beta1, y->beta1) ||
            !num_equal(x->beta2, y->beta2) || !num_equal(x->orth_reg_weight, y->orth_reg_weight) ||
            x->total_step != y->total_step)
            return false;
    }
    if (tm & T_IA3) {
        if (!spec_set_equal(&a->ia3.feedforward_modules, &b->ia3.feedforward_modules) ||
            a->ia3.init_ia3_weights != b->ia3.init_ia3_weights)
            return false;
    }
    if (tm & T_PL) {
        const __typeof__(a->prompt) *x = &a->prompt, *y = &b->prompt;
        if (x->num_virtual_tokens != y->num_virtual_tokens || x->token_dim != y->token_dim ||
            x->num_transformer_submodules != y->num_transformer_submodules ||
            x->num_attention_heads != y->num_attention_heads || x->num_layers != y->num_layers)
            return false;
        if ((tm & (T_PRE | T_PT)) && x->encoder_hidden_size != y->encoder_hidden_size) return false;
        if ((tm & T_PRE) && (x->prefix_projection != y->prefix_projection ||
                             x->init_weights_zero != y->init_weights_zero))
            return false;
        if ((tm & T_PT) && (x->encoder_reparameterization_type != y->encoder_reparameterization_type ||
                            x->encoder_num_layers != y->encoder_num_layers ||
                            !num_equal(x->encoder_dropout, y->encoder_dropout)))
            return false;
        if (tm & (T_PROMPT | T_MPT)) {
            if (x->prompt_tuning_init != y->prompt_tuning_init ||
                !str_eq_null(x->prompt_tuning_init_text, y->prompt_tuning_init_text) ||
                !str_eq_null(x->tokenizer_name_or_path, y->tokenizer_name_or_path))
                return false;
            if (!(x->tokenizer_kwargs == NULL) != !(y->tokenizer_kwargs == NULL)) return false;
            if (x->tokenizer_kwargs) {
                json_t *p = json_loads(x->tokenizer_kwargs, 0, NULL), *q = json_loads(y->tokenizer_kwargs, 0, NULL);
                bool eq = p && q && json_equal(p, q);
                json_decref(p);
                json_decref(q);
                if (!eq) return false;
            }
        }
        if ((tm & T_MPT) &&
            (!str_eq_null(x->prompt_tuning_init_state_dict_path, y->prompt_tuning_init_state_dict_path) ||
             x->prompt_tuning_init_task != y->prompt_tuning_init_task || x->num_ranks != y->num_ranks ||
             x->num_tasks != y->num_tasks))
            return false;
    }
    return true;
}

/* ------------------------------------------------------------------------------------------------
 * parsing
 * ---------------------------------------------------------------------------------------------- */

typedef struct {
    const char *src;
    char *err;
    size_t errlen;
    pc_adapter_config *cfg;
    /* fields PEFT ignores unless init_lora_weights selects them */
    const char *ignored_init_config[3];
    int n_ignored;
} pctx;

static int add_warning(pc_adapter_config *cfg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int add_warning(pc_adapter_config *cfg, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **w = realloc(cfg->warnings, (cfg->n_warnings + 1) * sizeof *w);
    if (!w) return -1;
    cfg->warnings = w;
    w[cfg->n_warnings] = xstrdup(buf);
    if (!w[cfg->n_warnings]) return -1;
    cfg->n_warnings++;
    return 0;
}

static int ferr(pctx *c, const char *field, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int ferr(pctx *c, const char *field, const char *fmt, ...) {
    char reason[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    seterr(c->err, c->errlen, "%s: field \"%s\": %s", c->src, field, reason);
    return -1;
}

static int oom(pctx *c) {
    seterr(c->err, c->errlen, "%s: out of memory", c->src);
    return -1;
}

static const char *type_word(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "a list";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a float";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

static int get_bool(pctx *c, const char *k, const json_t *v, bool *out) {
    char vb[100];
    if (!json_is_boolean(v)) return ferr(c, k, "must be true or false, got %s", render(v, vb, sizeof vb));
    *out = json_is_true(v);
    return 0;
}

/* integers; JSON floats are rejected even when integral (PEFT would fail later building layers) */
static int get_int(pctx *c, const char *k, const json_t *v, int64_t *out, bool nullable) {
    char vb[100];
    if (nullable && json_is_null(v)) {
        *out = PC_INT_NULL;
        return 0;
    }
    if (!json_is_integer(v))
        return ferr(c, k, "must be an integer%s, got %s", nullable ? " or null" : "", render(v, vb, sizeof vb));
    *out = json_integer_value(v);
    if (*out == PC_INT_NULL) return ferr(c, k, "integer out of range");
    return 0;
}

static int get_num(pctx *c, const char *k, const json_t *v, pc_num *out) {
    char vb[100];
    if (!json_is_number(v)) return ferr(c, k, "must be a number, got %s", render(v, vb, sizeof vb));
    out->is_int = json_is_integer(v);
    out->v = json_number_value(v);
    return 0;
}

static int get_str(pctx *c, const char *k, const json_t *v, char **out, bool nullable) {
    char vb[100];
    if (nullable && json_is_null(v)) return pc_config_set_str(out, NULL) ? oom(c) : 0;
    if (!json_is_string(v))
        return ferr(c, k, "must be a string%s, got %s", nullable ? " or null" : "", render(v, vb, sizeof vb));
    return pc_config_set_str(out, json_string_value(v)) ? oom(c) : 0;
}

/* compact JSON text of an object, or NULL for null */
static int get_object_text(pctx *c, const char *k, const json_t *v, char **out) {
    char vb[100];
    if (json_is_null(v)) return pc_config_set_str(out, NULL) ? oom(c) : 0;
    if (!json_is_object(v)) return ferr(c, k, "must be an object or null, got %s", render(v, vb, sizeof vb));
    char *s = json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(17));
    if (!s) return oom(c);
    int rc = pc_config_set_str(out, s);
    free(s);
    return rc ? oom(c) : 0;
}

/* null | list of str | str. dedupe: PEFT turns these lists into sets */
static int get_spec(pctx *c, const char *k, const json_t *v, pc_spec *out, bool allow_string, bool dedupe) {
    char vb[100];
    if (json_is_null(v)) {
        spec_free(out);
        return 0;
    }
    if (allow_string && json_is_string(v)) return pc_spec_set_string(out, json_string_value(v)) ? oom(c) : 0;
    if (!json_is_array(v))
        return ferr(c, k, "must be a list of strings%s or null, got %s", allow_string ? ", a string" : "",
                    render(v, vb, sizeof vb));
    size_t n = json_array_size(v);
    const char **items = n ? calloc(n, sizeof *items) : NULL;
    if (n && !items) return oom(c);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, i);
        if (!json_is_string(e)) {
            free(items);
            return ferr(c, k, "entry %zu must be a string, got %s", i, render(e, vb, sizeof vb));
        }
        const char *s = json_string_value(e);
        bool dup = false;
        for (size_t j = 0; dedupe && j < m; j++)
            if (strcmp(items[j], s) == 0) dup = true;
        if (!dup) items[m++] = s;
    }
    int rc = pc_spec_set_list(out, items, m);
    free(items);
    return rc ? oom(c) : 0;
}

static int get_layers(pctx *c, const char *k, const json_t *v, pc_layers *out) {
    char vb[100];
    if (json_is_null(v)) {
        pc_layers_clear(out);
        return 0;
    }
    if (json_is_integer(v)) return pc_layers_set_int(out, json_integer_value(v)) ? oom(c) : 0;
    if (!json_is_array(v))
        return ferr(c, k, "must be an integer, a list of integers or null, got %s", render(v, vb, sizeof vb));
    size_t n = json_array_size(v);
    int64_t *items = n ? malloc(n * sizeof *items) : NULL;
    if (n && !items) return oom(c);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, i);
        if (!json_is_integer(e)) {
            free(items);
            return ferr(c, k, "entry %zu must be an integer, got %s", i, render(e, vb, sizeof vb));
        }
        items[i] = json_integer_value(e);
    }
    int rc = pc_layers_set_list(out, items, n);
    free(items);
    return rc ? oom(c) : 0;
}

typedef enum { PAT_RANK, PAT_ALPHA, PAT_MASK } pattern_kind;

static int get_pattern(pctx *c, const char *k, const json_t *v, pc_pattern *out, pattern_kind kind) {
    char vb[100];
    if (json_is_null(v)) {
        pc_pattern_clear(out, true);
        return 0;
    }
    if (!json_is_object(v)) return ferr(c, k, "must be an object or null, got %s", render(v, vb, sizeof vb));
    pc_pattern_clear(out, false);
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)v, key, val) {
        if (kind == PAT_MASK) {
            if (!json_is_array(val))
                return ferr(c, k, "key \"%s\": must be a list of booleans (AdaLoRA rank mask), got %s", key,
                            render(val, vb, sizeof vb));
            pc_pattern_entry *e = pattern_push(out, key);
            if (!e) return oom(c);
            size_t n = json_array_size(val);
            e->mask = n ? malloc(n * sizeof *e->mask) : NULL;
            if (n && !e->mask) return oom(c);
            e->mask_len = n;
            size_t kept = 0;
            for (size_t i = 0; i < n; i++) {
                const json_t *b = json_array_get(val, i);
                if (!json_is_boolean(b))
                    return ferr(c, k, "key \"%s\": entry %zu must be true or false, got %s", key, i,
                                render(b, vb, sizeof vb));
                e->mask[i] = json_is_true(b);
                kept += e->mask[i];
            }
            e->value = num_int((double)kept);
            continue;
        }
        if (kind == PAT_RANK) {
            if (!json_is_integer(val) || json_integer_value(val) <= 0 || json_integer_value(val) > INT32_MAX)
                return ferr(c, k, "key \"%s\": rank must be a positive integer, got %s", key,
                            render(val, vb, sizeof vb));
        } else if (!json_is_number(val)) {
            return ferr(c, k, "key \"%s\": alpha must be a number, got %s", key, render(val, vb, sizeof vb));
        }
        if (pc_pattern_add(out, key, json_number_value(val), json_is_integer(val))) return oom(c);
    }
    return 0;
}

static int not_supported(pctx *c, const char *k, const json_t *v, const char *dflt) {
    char vb[100];
    seterr(c->err, c->errlen, "%s: field \"%s\"=%s is not supported by peftc (only PEFT's default %s is)",
           c->src, k, render(v, vb, sizeof vb), dflt);
    return -1;
}

static bool is_off_value(const json_t *v, unsigned accept) {
    if ((accept & A_NULL) && json_is_null(v)) return true;
    if ((accept & A_FALSE) && json_is_false(v)) return true;
    if ((accept & A_EMPTY_LIST) && json_is_array(v) && json_array_size(v) == 0) return true;
    if ((accept & A_EMPTY_OBJ) && json_is_object(v) && json_object_size(v) == 0) return true;
    return false;
}

static bool ascii_ieq(const char *a, const char *b) {
    for (; *a && *b; a++, b++) {
        char x = *a, y = *b;
        if (x >= 'A' && x <= 'Z') x = (char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = (char)(y - 'A' + 'a');
        if (x != y) return false;
    }
    return *a == *b;
}

static int parse_init_lora_weights(pctx *c, const char *k, const json_t *v) {
    char vb[100];
    pc_adapter_config *cfg = c->cfg;
    if (json_is_boolean(v)) {
        cfg->lora.init_lora_weights = json_is_true(v) ? PC_LORA_INIT_TRUE : PC_LORA_INIT_FALSE;
        return pc_config_set_str(&cfg->lora.init_lora_weights_text, NULL) ? oom(c) : 0;
    }
    if (!json_is_string(v))
        return ferr(c, k, "must be true, false or a string, got %s", render(v, vb, sizeof vb));
    const char *s = json_string_value(v);
    /* PEFT's dispatch (tuners/lora/layer.py update_layer / reset_lora_parameters) */
    if (ascii_ieq(s, "gaussian")) {
        cfg->lora.init_lora_weights = PC_LORA_INIT_GAUSSIAN;
        return pc_config_set_str(&cfg->lora.init_lora_weights_text, strcmp(s, "gaussian") ? s : NULL) ? oom(c)
                                                                                                      : 0;
    }
    if (strncmp(s, "pissa", 5) == 0 || strncmp(s, "corda", 5) == 0 || ascii_ieq(s, "olora") ||
        ascii_ieq(s, "mica") || strcmp(s, "loftq") == 0 || strcmp(s, "eva") == 0 ||
        strcmp(s, "orthogonal") == 0 || strcmp(s, "lora_ga") == 0)
        return ferr(c, k, "%s is not supported by peftc (supported: true, false, \"gaussian\")",
                    render(v, vb, sizeof vb));
    return ferr(c, k,
                "invalid value %s (PEFT accepts true, false, \"gaussian\", \"eva\", \"olora\", \"pissa\", "
                "\"pissa_niter_<n>\", \"corda\", \"loftq\", \"orthogonal\", \"mica\", \"lora_ga\")",
                render(v, vb, sizeof vb));
}

static int to_int32(pctx *c, const char *k, int64_t v, int *out, int64_t min) {
    if (v < min || v > INT32_MAX) {
        if (min == 1) return ferr(c, k, "must be a positive integer, got %" PRId64, v);
        return ferr(c, k, "must be an integer in [%" PRId64 ", %d], got %" PRId64, min, INT32_MAX, v);
    }
    *out = (int)v;
    return 0;
}

static int parse_field(pctx *c, int id, const char *k, const json_t *v) {
    pc_adapter_config *cfg = c->cfg;
    char vb[100];
    int64_t iv;
    switch ((field_id)id) {
    case F_PEFT_TYPE: return 0;
    case F_AUTO_MAPPING: return get_object_text(c, k, v, &cfg->auto_mapping);
    case F_BASE_MODEL: return get_str(c, k, v, &cfg->base_model_name_or_path, true);
    case F_INFERENCE_MODE: return get_bool(c, k, v, &cfg->inference_mode);
    case F_PEFT_VERSION: return get_str(c, k, v, &cfg->peft_version, true);
    case F_REVISION: return get_str(c, k, v, &cfg->revision, true);
    case F_TASK_TYPE: {
        if (json_is_null(v)) {
            cfg->task_type = PC_TASK_NONE;
            return 0;
        }
        if (json_is_string(v)) {
            for (int i = 1; i < N_TASK_TYPES; i++)
                if (strcmp(json_string_value(v), TASK_TYPE_NAMES[i]) == 0) {
                    cfg->task_type = (pc_task_type)i;
                    return 0;
                }
        }
        return ferr(c, k,
                    "invalid task type %s (one of SEQ_CLS, SEQ_2_SEQ_LM, CAUSAL_LM, TOKEN_CLS, QUESTION_ANS, "
                    "FEATURE_EXTRACTION or null)",
                    render(v, vb, sizeof vb));
    }
    case F_MODULES_TO_SAVE: return get_spec(c, k, v, &cfg->modules_to_save, false, false);
    case F_TARGET_MODULES: return get_spec(c, k, v, &cfg->target_modules, true, true);
    case F_EXCLUDE_MODULES: return get_spec(c, k, v, &cfg->exclude_modules, true, true);
    case F_LAYERS_TO_TRANSFORM: return get_layers(c, k, v, &cfg->layers_to_transform);
    case F_LAYERS_PATTERN: return get_spec(c, k, v, &cfg->layers_pattern, true, false);
    case F_RANK_PATTERN:
        return get_pattern(c, k, v, &cfg->rank_pattern, cfg->peft_type == PC_PEFT_ADALORA ? PAT_MASK : PAT_RANK);
    case F_ALPHA_PATTERN: return get_pattern(c, k, v, &cfg->alpha_pattern, PAT_ALPHA);
    case F_R:
        if (!json_is_integer(v)) return ferr(c, k, "must be a positive integer, got %s", render(v, vb, sizeof vb));
        return to_int32(c, k, json_integer_value(v), &cfg->r, cfg->peft_type == PC_PEFT_ADALORA ? INT32_MIN : 1);
    case F_FAN_IN_FAN_OUT: return get_bool(c, k, v, &cfg->fan_in_fan_out);
    case F_LORA_ALPHA: return get_num(c, k, v, &cfg->lora.lora_alpha);
    case F_LORA_DROPOUT: return get_num(c, k, v, &cfg->lora.lora_dropout);
    case F_BIAS:
        if (json_is_string(v)) {
            const char *s = json_string_value(v);
            if (!strcmp(s, "none")) cfg->lora.bias = PC_BIAS_NONE;
            else if (!strcmp(s, "all")) cfg->lora.bias = PC_BIAS_ALL;
            else if (!strcmp(s, "lora_only")) cfg->lora.bias = PC_BIAS_LORA_ONLY;
            else goto bad_bias;
            return 0;
        }
    bad_bias:
        return ferr(c, k, "must be \"none\", \"all\" or \"lora_only\", got %s", render(v, vb, sizeof vb));
    case F_USE_RSLORA: return get_bool(c, k, v, &cfg->lora.use_rslora);
    case F_INIT_LORA_WEIGHTS: return parse_init_lora_weights(c, k, v);
    case F_USE_DORA: return get_bool(c, k, v, &cfg->lora.use_dora);
    case F_LORA_BIAS: return get_bool(c, k, v, &cfg->lora.lora_bias);
    case F_MEGATRON_CORE: return get_str(c, k, v, &cfg->lora.megatron_core, true);
    case F_QALORA_GROUP_SIZE:
        if (get_int(c, k, v, &iv, false)) return -1;
        cfg->lora.qalora_group_size = iv;
        return 0;
    case F_EVA_CONFIG:
    case F_CORDA_CONFIG:
    case F_LORA_GA_CONFIG:
        /* PEFT ignores these unless init_lora_weights selects the method (checked after the loop) */
        if (json_is_null(v)) return 0;
        if (!json_is_object(v)) return ferr(c, k, "must be an object or null, got %s", render(v, vb, sizeof vb));
        if (c->n_ignored < 3) c->ignored_init_config[c->n_ignored++] = FIELDS[id].name;
        return 0;
    case F_LOFTQ_CONFIG:
        if (is_off_value(v, FIELDS[id].accept)) return 0;
        if (!json_is_object(v)) return ferr(c, k, "must be an object, got %s", render(v, vb, sizeof vb));
        /* LoraConfig.__post_init__: a loftq_config without init_lora_weights="loftq" is reset to {} */
        if (add_warning(cfg, "%s: field \"loftq_config\" is ignored because init_lora_weights is not \"loftq\" "
                             "(PEFT resets it to {})",
                        c->src))
            return oom(c);
        return 0;
    case F_MEGATRON_CONFIG:
    case F_TRAINABLE_TOKEN_INDICES:
    case F_VELORA_CONFIG:
    case F_ALORA_INVOCATION_TOKENS:
    case F_USE_QALORA:
    case F_MONTECLORA_CONFIG:
    case F_LAYER_REPLICATION:
    case F_TARGET_PARAMETERS:
    case F_USE_BDLORA:
    case F_ARROW_CONFIG:
    case F_KASA_CONFIG:
    case F_ENSURE_WEIGHT_TYING:
        if (is_off_value(v, FIELDS[id].accept)) return 0;
        return not_supported(c, k, v, FIELDS[id].default_json);
    case F_ALPHA: return get_num(c, k, v, &cfg->lycoris.alpha);
    case F_RANK_DROPOUT: return get_num(c, k, v, &cfg->lycoris.rank_dropout);
    case F_MODULE_DROPOUT: return get_num(c, k, v, &cfg->lycoris.module_dropout);
    case F_USE_EFFECTIVE_CONV2D: return get_bool(c, k, v, &cfg->lycoris.use_effective_conv2d);
    case F_INIT_WEIGHTS:
        if (cfg->peft_type == PC_PEFT_PREFIX_TUNING) {
            if (json_is_null(v)) cfg->prompt.init_weights_zero = false;
            else if (json_is_string(v) && !strcmp(json_string_value(v), "zero")) cfg->prompt.init_weights_zero = true;
            else return ferr(c, k, "must be \"zero\" or null, got %s", render(v, vb, sizeof vb));
            return 0;
        }
        if (json_is_boolean(v)) {
            cfg->lycoris.init_weights = json_is_true(v) ? PC_LYCORIS_INIT_TRUE : PC_LYCORIS_INIT_FALSE;
            return 0;
        }
        if (cfg->peft_type == PC_PEFT_LOKR && json_is_string(v) && !strcmp(json_string_value(v), "lycoris")) {
            cfg->lycoris.init_weights = PC_LYCORIS_INIT_LYCORIS;
            return 0;
        }
        return ferr(c, k, "must be %s, got %s",
                    cfg->peft_type == PC_PEFT_LOKR ? "true, false or \"lycoris\"" : "true or false",
                    render(v, vb, sizeof vb));
    case F_DECOMPOSE_BOTH: return get_bool(c, k, v, &cfg->lycoris.decompose_both);
    case F_DECOMPOSE_FACTOR: return get_int(c, k, v, &cfg->lycoris.decompose_factor, false);
    case F_RANK_DROPOUT_SCALE: return get_bool(c, k, v, &cfg->lycoris.rank_dropout_scale);
    case F_TARGET_R:
        if (get_int(c, k, v, &iv, false)) return -1;
        return to_int32(c, k, iv, &cfg->adalora.target_r, 1);
    case F_INIT_R:
        if (get_int(c, k, v, &iv, false)) return -1;
        return to_int32(c, k, iv, &cfg->adalora.init_r, 1);
    case F_TINIT: return get_int(c, k, v, &cfg->adalora.tinit, false);
    case F_TFINAL: return get_int(c, k, v, &cfg->adalora.tfinal, false);
    case F_DELTAT: return get_int(c, k, v, &cfg->adalora.deltaT, false);
    case F_BETA1: return get_num(c, k, v, &cfg->adalora.beta1);
    case F_BETA2: return get_num(c, k, v, &cfg->adalora.beta2);
    case F_ORTH_REG_WEIGHT: return get_num(c, k, v, &cfg->adalora.orth_reg_weight);
    case F_TOTAL_STEP: return get_int(c, k, v, &cfg->adalora.total_step, true);
    case F_FEEDFORWARD_MODULES: return get_spec(c, k, v, &cfg->ia3.feedforward_modules, true, true);
    case F_INIT_IA3_WEIGHTS: return get_bool(c, k, v, &cfg->ia3.init_ia3_weights);
    case F_NUM_VIRTUAL_TOKENS: return get_int(c, k, v, &cfg->prompt.num_virtual_tokens, true);
    case F_TOKEN_DIM: return get_int(c, k, v, &cfg->prompt.token_dim, true);
    case F_NUM_TRANSFORMER_SUBMODULES: return get_int(c, k, v, &cfg->prompt.num_transformer_submodules, true);
    case F_NUM_ATTENTION_HEADS: return get_int(c, k, v, &cfg->prompt.num_attention_heads, true);
    case F_NUM_LAYERS: return get_int(c, k, v, &cfg->prompt.num_layers, true);
    case F_ENCODER_HIDDEN_SIZE: return get_int(c, k, v, &cfg->prompt.encoder_hidden_size, true);
    case F_PREFIX_PROJECTION: return get_bool(c, k, v, &cfg->prompt.prefix_projection);
    case F_ENCODER_REPARAM_TYPE:
        if (json_is_string(v) && !strcmp(json_string_value(v), "MLP")) cfg->prompt.encoder_reparameterization_type = PC_ENCODER_MLP;
        else if (json_is_string(v) && !strcmp(json_string_value(v), "LSTM")) cfg->prompt.encoder_reparameterization_type = PC_ENCODER_LSTM;
        else return ferr(c, k, "must be \"MLP\" or \"LSTM\", got %s", render(v, vb, sizeof vb));
        return 0;
    case F_ENCODER_NUM_LAYERS: return get_int(c, k, v, &cfg->prompt.encoder_num_layers, false);
    case F_ENCODER_DROPOUT: return get_num(c, k, v, &cfg->prompt.encoder_dropout);
    case F_PROMPT_TUNING_INIT: {
        bool mpt = cfg->peft_type == PC_PEFT_MULTITASK_PROMPT_TUNING;
        if (json_is_string(v)) {
            const char *s = json_string_value(v);
            for (int i = 0; i <= PC_PROMPT_INIT_ONLY_SOURCE_SHARED; i++) {
                bool allowed = i == PC_PROMPT_INIT_RANDOM || i == PC_PROMPT_INIT_TEXT ||
                               (mpt ? i >= PC_PROMPT_INIT_AVERAGE_SOURCE_TASKS : i == PC_PROMPT_INIT_SAMPLE_VOCAB);
                if (allowed && !strcmp(s, PROMPT_INIT_NAMES[i])) {
                    cfg->prompt.prompt_tuning_init = (pc_prompt_init)i;
                    return 0;
                }
            }
        }
        return ferr(c, k, "must be one of %s, got %s",
                    mpt ? "\"RANDOM\", \"TEXT\", \"AVERAGE_SOURCE_TASKS\", \"EXACT_SOURCE_TASK\", \"ONLY_SOURCE_SHARED\""
                        : "\"RANDOM\", \"TEXT\", \"SAMPLE_VOCAB\"",
                    render(v, vb, sizeof vb));
    }
    case F_PROMPT_TUNING_INIT_TEXT: return get_str(c, k, v, &cfg->prompt.prompt_tuning_init_text, true);
    case F_TOKENIZER_NAME_OR_PATH: return get_str(c, k, v, &cfg->prompt.tokenizer_name_or_path, true);
    case F_TOKENIZER_KWARGS: return get_object_text(c, k, v, &cfg->prompt.tokenizer_kwargs);
    case F_PROMPT_TUNING_INIT_STATE_DICT_PATH:
        return get_str(c, k, v, &cfg->prompt.prompt_tuning_init_state_dict_path, true);
    case F_PROMPT_TUNING_INIT_TASK: return get_int(c, k, v, &cfg->prompt.prompt_tuning_init_task, true);
    case F_NUM_RANKS: return get_int(c, k, v, &cfg->prompt.num_ranks, true);
    case F_NUM_TASKS: return get_int(c, k, v, &cfg->prompt.num_tasks, true);
    case F_COUNT: break;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------------
 * validation (cross-field rules from the PEFT config classes' __post_init__ and layer code)
 * ---------------------------------------------------------------------------------------------- */

static bool spec_truthy(const pc_spec *s) {
    return (s->kind == PC_SPEC_STRING && s->str && s->str[0]) || (s->kind == PC_SPEC_LIST && s->n > 0);
}

static int check_regex(pctx *c, const char *field, const char *what, const char *prefix, const char *pattern,
                       const char *suffix) {
    char msg[256];
    if (pc_pyregex_check(prefix, pattern, suffix, msg, sizeof msg) == 0) return 0;
    if (what) return ferr(c, field, "%s \"%s\" is not a valid regular expression: %s", what, pattern, msg);
    return ferr(c, field, "\"%s\" is not a valid regular expression: %s", pattern, msg);
}

static int check_prob(pctx *c, const char *field, pc_num p) {
    char nb[64];
    if (!(p.v >= 0.0 && p.v < 1.0)) {
        if (p.is_int) snprintf(nb, sizeof nb, "%.0f", p.v);
        else py_float_repr(p.v, nb, sizeof nb);
        return ferr(c, field, "must be a probability in [0, 1), got %s", nb);
    }
    return 0;
}

static int check_finite(pctx *c, const char *field, pc_num p) {
    if (!isfinite(p.v)) return ferr(c, field, "must be a finite number");
    return 0;
}

static int check_opt_pos(pctx *c, const char *field, int64_t v) {
    if (v != PC_INT_NULL && v <= 0) return ferr(c, field, "must be a positive integer or null, got %" PRId64, v);
    return 0;
}

static int check_spec_regexes(pctx *c, const char *field, const pc_spec *s) {
    if (s->kind == PC_SPEC_STRING) return check_regex(c, field, NULL, NULL, s->str, NULL);
    return 0;
}

/* configs built in code: no NULL where a value is required */
static int check_spec_shape(pctx *c, const char *field, const pc_spec *s) {
    if ((int)s->kind < PC_SPEC_NULL || s->kind > PC_SPEC_STRING) return ferr(c, field, "invalid kind");
    if (s->kind == PC_SPEC_STRING && !s->str) return ferr(c, field, "string value is NULL");
    if (s->kind == PC_SPEC_LIST && s->n && !s->items) return ferr(c, field, "list items are NULL");
    for (size_t i = 0; s->kind == PC_SPEC_LIST && i < s->n; i++)
        if (!s->items[i]) return ferr(c, field, "entry %zu is NULL", i);
    return 0;
}

static int check_shapes(pctx *c) {
    const pc_adapter_config *cfg = c->cfg;
    if (check_spec_shape(c, "modules_to_save", &cfg->modules_to_save) ||
        check_spec_shape(c, "target_modules", &cfg->target_modules) ||
        check_spec_shape(c, "exclude_modules", &cfg->exclude_modules) ||
        check_spec_shape(c, "layers_pattern", &cfg->layers_pattern) ||
        check_spec_shape(c, "feedforward_modules", &cfg->ia3.feedforward_modules))
        return -1;
    const pc_layers *l = &cfg->layers_to_transform;
    if ((int)l->kind < PC_LAYERS_NULL || l->kind > PC_LAYERS_LIST || (l->kind != PC_LAYERS_NULL && l->n && !l->items) ||
        (l->kind == PC_LAYERS_INT && l->n != 1))
        return ferr(c, "layers_to_transform", "malformed value");
    const pc_pattern *pats[2] = {&cfg->rank_pattern, &cfg->alpha_pattern};
    for (int k = 0; k < 2; k++) {
        if (pats[k]->n && !pats[k]->items) return ferr(c, k ? "alpha_pattern" : "rank_pattern", "items are NULL");
        for (size_t i = 0; i < pats[k]->n; i++)
            if (!pats[k]->items[i].key || (pats[k]->items[i].mask_len && !pats[k]->items[i].mask))
                return ferr(c, k ? "alpha_pattern" : "rank_pattern", "entry %zu is malformed", i);
    }
    if (cfg->auto_mapping) {
        json_t *j = json_loads(cfg->auto_mapping, 0, NULL);
        bool ok = j && json_is_object(j);
        json_decref(j);
        if (!ok) return ferr(c, "auto_mapping", "must be the JSON text of an object");
    }
    if (cfg->prompt.tokenizer_kwargs) {
        json_t *j = json_loads(cfg->prompt.tokenizer_kwargs, 0, NULL);
        bool ok = j && json_is_object(j);
        json_decref(j);
        if (!ok) return ferr(c, "tokenizer_kwargs", "must be the JSON text of an object");
    }
    return 0;
}

static int validate_ctx(pctx *c) {
    const pc_adapter_config *cfg = c->cfg;
    pc_peft_type t = cfg->peft_type;
    unsigned tm = M(t);
    if (!pc_peft_type_name(t)) {
        seterr(c->err, c->errlen, "%s: field \"peft_type\": invalid peft type %d", c->src, (int)t);
        return -1;
    }
    if (check_shapes(c)) return -1;
    if ((int)cfg->task_type < 0 || (int)cfg->task_type >= N_TASK_TYPES) return ferr(c, "task_type", "invalid task type");

    /* modules_to_save entries are regex fragments: re.match(rf"(^|.*\.){m}($|\..*)", key) */
    if (cfg->modules_to_save.kind == PC_SPEC_STRING) return ferr(c, "modules_to_save", "must be a list of strings or null");
    for (size_t i = 0; i < cfg->modules_to_save.n; i++)
        if (check_regex(c, "modules_to_save", "entry", "(^|.*\\.)", cfg->modules_to_save.items[i], "($|\\..*)"))
            return -1;

    if (tm & (T_LORAISH | T_LYCO | T_IA3)) {
        if (check_spec_regexes(c, "target_modules", &cfg->target_modules) ||
            check_spec_regexes(c, "exclude_modules", &cfg->exclude_modules))
            return -1;
    }
    if (tm & (T_LORAISH | T_LYCO)) {
        if (t != PC_PEFT_ADALORA && cfg->r <= 0) return ferr(c, "r", "must be a positive integer, got %d", cfg->r);
        if (tm & T_LORAISH) {
            /* LoraConfig / AdaLoraConfig __post_init__ */
            if (cfg->target_modules.kind == PC_SPEC_STRING && cfg->layers_to_transform.kind != PC_LAYERS_NULL)
                return ferr(c, "layers_to_transform", "cannot be used when `target_modules` is a str (a regex)");
            if (cfg->target_modules.kind == PC_SPEC_STRING &&
                cfg->layers_pattern.kind != PC_SPEC_NULL)
                return ferr(c, "layers_pattern", "cannot be used when `target_modules` is a str (a regex)");
        }
        if (spec_truthy(&cfg->layers_pattern) && cfg->layers_to_transform.kind == PC_LAYERS_NULL)
            return ferr(c, "layers_pattern", "when `layers_pattern` is specified, `layers_to_transform` must also be specified");
        if (cfg->layers_pattern.kind == PC_SPEC_STRING && cfg->layers_pattern.str[0] &&
            check_regex(c, "layers_pattern", NULL, "(?:^|.*?\\.)", cfg->layers_pattern.str, "\\.(?P<idx>\\d+)\\."))
            return -1;
        for (size_t i = 0; cfg->layers_pattern.kind == PC_SPEC_LIST && i < cfg->layers_pattern.n; i++)
            if (check_regex(c, "layers_pattern", "entry", "(?:^|.*?\\.)", cfg->layers_pattern.items[i],
                            "\\.(?P<idx>\\d+)\\."))
                return -1;
        for (size_t i = 0; i < cfg->rank_pattern.n; i++) {
            const pc_pattern_entry *e = &cfg->rank_pattern.items[i];
            if (t == PC_PEFT_ADALORA) {
                if (!e->mask && e->mask_len == 0 && e->value.v != 0)
                    return ferr(c, "rank_pattern", "key \"%s\": AdaLoRA expects a list of booleans", e->key);
                continue; /* AdaLoRA keys are module paths + ".lora_E", not regexes */
            }
            if (!e->value.is_int || e->value.v <= 0 || e->value.v > INT32_MAX)
                return ferr(c, "rank_pattern", "key \"%s\": rank must be a positive integer", e->key);
            if (check_regex(c, "rank_pattern", "key", "(.*\\.)?(", e->key, ")$")) return -1;
        }
        for (size_t i = 0; i < cfg->alpha_pattern.n; i++) {
            const pc_pattern_entry *e = &cfg->alpha_pattern.items[i];
            if (!isfinite(e->value.v)) return ferr(c, "alpha_pattern", "key \"%s\": alpha must be a finite number", e->key);
            if (check_regex(c, "alpha_pattern", "key", "(.*\\.)?(", e->key, ")$")) return -1;
        }
    }
    if (tm & T_LORAISH) {
        if (check_finite(c, "lora_alpha", cfg->lora.lora_alpha) || check_prob(c, "lora_dropout", cfg->lora.lora_dropout))
            return -1;
        if ((int)cfg->lora.bias < 0 || cfg->lora.bias > PC_BIAS_LORA_ONLY) return ferr(c, "bias", "invalid value");
        if ((int)cfg->lora.init_lora_weights < 0 || cfg->lora.init_lora_weights > PC_LORA_INIT_GAUSSIAN)
            return ferr(c, "init_lora_weights", "invalid value");
        if (cfg->lora.lora_bias && cfg->lora.init_lora_weights == PC_LORA_INIT_GAUSSIAN)
            return ferr(c, "lora_bias", "lora_bias=true is only supported with init_lora_weights=true or false");
        if (cfg->lora.lora_bias && cfg->lora.use_dora)
            return ferr(c, "lora_bias", "lora_bias=true is not supported for DoRA (use_dora=true)");
    }
    if (t == PC_PEFT_ADALORA) {
        const __typeof__(cfg->adalora) *a = &cfg->adalora;
        if (cfg->lora.use_dora) return ferr(c, "use_dora", "ADALORA does not support DoRA");
        if (a->target_r <= 0) return ferr(c, "target_r", "must be a positive integer, got %d", a->target_r);
        if (a->init_r <= 0) return ferr(c, "init_r", "must be a positive integer, got %d", a->init_r);
        if (a->tinit < 0) return ferr(c, "tinit", "must be >= 0, got %" PRId64, a->tinit);
        if (a->tfinal < 0) return ferr(c, "tfinal", "must be >= 0, got %" PRId64, a->tfinal);
        if (a->deltaT <= 0) return ferr(c, "deltaT", "must be a positive integer, got %" PRId64, a->deltaT);
        if (!(a->beta1.v >= 0 && a->beta1.v <= 1)) return ferr(c, "beta1", "must be in [0, 1]");
        if (!(a->beta2.v >= 0 && a->beta2.v <= 1)) return ferr(c, "beta2", "must be in [0, 1]");
        if (!(a->orth_reg_weight.v >= 0) || !isfinite(a->orth_reg_weight.v))
            return ferr(c, "orth_reg_weight", "must be greater than or equal to 0");
        if (a->total_step == PC_INT_NULL || a->total_step <= 0)
            return ferr(c, "total_step", "AdaLoRA does not work when `total_step` is null, supply a value > 0");
        if (a->tinit >= a->total_step - a->tfinal)
            return ferr(c, "tinit",
                        "the schedule (tinit=%" PRId64 ", tfinal=%" PRId64 ", total_step=%" PRId64
                        ") leaves no budgeting phase: need tinit < total_step - tfinal",
                        a->tinit, a->tfinal, a->total_step);
    }
    if (tm & T_LYCO) {
        const __typeof__(cfg->lycoris) *l = &cfg->lycoris;
        if (check_finite(c, "alpha", l->alpha) || check_prob(c, "rank_dropout", l->rank_dropout) ||
            check_prob(c, "module_dropout", l->module_dropout))
            return -1;
        if (t == PC_PEFT_LOHA && l->init_weights == PC_LYCORIS_INIT_LYCORIS)
            return ferr(c, "init_weights", "\"lycoris\" is only valid for LOKR");
        if (t == PC_PEFT_LOKR && l->decompose_factor == 0)
            return ferr(c, "decompose_factor", "must be -1 (automatic) or a positive integer, got 0");
    }
    if (t == PC_PEFT_IA3) {
        const pc_spec *ff = &cfg->ia3.feedforward_modules, *tg = &cfg->target_modules;
        if (check_spec_regexes(c, "feedforward_modules", ff)) return -1;
        if (ff->kind == PC_SPEC_LIST && tg->kind == PC_SPEC_LIST) {
            for (size_t i = 0; i < ff->n; i++) {
                bool found = false;
                for (size_t j = 0; j < tg->n && !found; j++) found = !strcmp(ff->items[i], tg->items[j]);
                if (!found)
                    return ferr(c, "feedforward_modules",
                                "should be a subset of `target_modules`: \"%s\" is not in target_modules", ff->items[i]);
            }
        }
    }
    if (tm & T_PL) {
        const __typeof__(cfg->prompt) *p = &cfg->prompt;
        if (p->num_virtual_tokens == PC_INT_NULL || p->num_virtual_tokens <= 0)
            return ferr(c, "num_virtual_tokens", "must be a positive integer (it is required)");
        if (check_opt_pos(c, "token_dim", p->token_dim) || check_opt_pos(c, "num_attention_heads", p->num_attention_heads) ||
            check_opt_pos(c, "num_layers", p->num_layers))
            return -1;
        if (p->num_transformer_submodules != PC_INT_NULL && p->num_transformer_submodules != 1 &&
            p->num_transformer_submodules != 2)
            return ferr(c, "num_transformer_submodules", "must be 1, 2 or null, got %" PRId64, p->num_transformer_submodules);
        if ((tm & (T_PRE | T_PT)) && check_opt_pos(c, "encoder_hidden_size", p->encoder_hidden_size)) return -1;
        if (t == PC_PEFT_P_TUNING) {
            if (p->encoder_num_layers <= 0)
                return ferr(c, "encoder_num_layers", "must be a positive integer, got %" PRId64, p->encoder_num_layers);
            if (check_prob(c, "encoder_dropout", p->encoder_dropout)) return -1;
        }
        if (tm & (T_PROMPT | T_MPT)) {
            bool mpt = t == PC_PEFT_MULTITASK_PROMPT_TUNING;
            pc_prompt_init pi = p->prompt_tuning_init;
            bool ok = pi == PC_PROMPT_INIT_RANDOM || pi == PC_PROMPT_INIT_TEXT ||
                      (mpt ? (pi >= PC_PROMPT_INIT_AVERAGE_SOURCE_TASKS && pi <= PC_PROMPT_INIT_ONLY_SOURCE_SHARED)
                           : pi == PC_PROMPT_INIT_SAMPLE_VOCAB);
            if (!ok) return ferr(c, "prompt_tuning_init", "invalid value for %s", pc_peft_type_name(t));
            /* PromptTuningConfig.__post_init__ */
            if (pi == PC_PROMPT_INIT_TEXT && (!p->tokenizer_name_or_path || !p->tokenizer_name_or_path[0]))
                return ferr(c, "tokenizer_name_or_path", "is required when prompt_tuning_init=\"TEXT\"");
            if (pi == PC_PROMPT_INIT_TEXT && !p->prompt_tuning_init_text)
                return ferr(c, "prompt_tuning_init_text", "is required when prompt_tuning_init=\"TEXT\"");
            if (p->tokenizer_kwargs && strcmp(p->tokenizer_kwargs, "{}") != 0 && pi != PC_PROMPT_INIT_TEXT)
                return ferr(c, "tokenizer_kwargs", "only valid when prompt_tuning_init=\"TEXT\"");
        }
        if (t == PC_PEFT_MULTITASK_PROMPT_TUNING) {
            if (check_opt_pos(c, "num_ranks", p->num_ranks) || check_opt_pos(c, "num_tasks", p->num_tasks)) return -1;
            if (p->prompt_tuning_init_task != PC_INT_NULL && p->prompt_tuning_init_task < 0)
                return ferr(c, "prompt_tuning_init_task", "must be >= 0 or null");
        }
    }
    return 0;
}

int pc_adapter_config_validate(const pc_adapter_config *cfg, const char *source, char *err, size_t errlen) {
    pctx c = {.src = source ? source : PC_ADAPTER_CONFIG_NAME, .err = err, .errlen = errlen,
              .cfg = (pc_adapter_config *)cfg};
    if (!cfg) {
        seterr(err, errlen, "%s: no config", c.src);
        return -1;
    }
    return validate_ctx(&c);
}

pc_adapter_config *pc_adapter_config_parse(const char *text, size_t len, const char *source, char *err,
                                           size_t errlen) {
    const char *src = source ? source : PC_ADAPTER_CONFIG_NAME;
    char vb[100];
    if (!text) {
        seterr(err, errlen, "%s: no text", src);
        return NULL;
    }
    json_error_t je;
    json_t *root = json_loadb(text, len, 0, &je);
    if (!root) {
        seterr(err, errlen, "%s:%d:%d: invalid JSON: %s", src, je.line, je.column, je.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        seterr(err, errlen, "%s: expected a JSON object, got %s", src, type_word(root));
        json_decref(root);
        return NULL;
    }
    const json_t *pt = json_object_get(root, "peft_type");
    if (!pt) {
        seterr(err, errlen, "%s: field \"peft_type\" is missing (PEFT requires it)", src);
        json_decref(root);
        return NULL;
    }
    if (!json_is_string(pt)) {
        seterr(err, errlen, "%s: field \"peft_type\": must be a string, got %s", src, render(pt, vb, sizeof vb));
        json_decref(root);
        return NULL;
    }
    pc_peft_type type = pc_peft_type_from_name(json_string_value(pt));
    if (type == PC_PEFT_NONE) {
        bool known = false;
        for (int i = 0; OTHER_PEFT_TYPES[i]; i++) known |= !strcmp(OTHER_PEFT_TYPES[i], json_string_value(pt));
        if (known)
            seterr(err, errlen, "%s: field \"peft_type\": %s is not supported by peftc (supported: LORA, LOHA, LOKR, "
                   "ADALORA, IA3, PREFIX_TUNING, P_TUNING, PROMPT_TUNING, MULTITASK_PROMPT_TUNING)",
                   src, render(pt, vb, sizeof vb));
        else
            seterr(err, errlen, "%s: field \"peft_type\": unknown PEFT type %s", src, render(pt, vb, sizeof vb));
        json_decref(root);
        return NULL;
    }
    pc_adapter_config *cfg = pc_adapter_config_new(type);
    if (!cfg) {
        seterr(err, errlen, "%s: out of memory", src);
        json_decref(root);
        return NULL;
    }
    pctx c = {.src = src, .err = err, .errlen = errlen, .cfg = cfg};
    const char *key;
    json_t *val;
    int rc = 0;
    json_object_foreach(root, key, val) {
        int id = field_lookup(key, type);
        if (id < 0) {
            if (!strcmp(key, "runtime_config"))
                rc = add_warning(cfg, "%s: key \"runtime_config\" is ignored (runtime configurations are only "
                                      "valid at runtime)", src);
            else
                rc = add_warning(cfg, "%s: unknown key \"%s\" for peft_type %s is ignored (PEFT drops it too)",
                                 src, key, pc_peft_type_name(type));
            if (rc) {
                oom(&c);
                break;
            }
            continue;
        }
        if ((rc = parse_field(&c, id, key, val)) != 0) break;
    }
    if (rc == 0) {
        for (int i = 0; i < c.n_ignored && rc == 0; i++)
            rc = add_warning(cfg, "%s: field \"%s\" is ignored because init_lora_weights does not select it",
                             src, c.ignored_init_config[i]) ? oom(&c) : 0;
        if (rc == 0 && type == PC_PEFT_ADALORA && cfg->r != 8)
            rc = add_warning(cfg, "%s: field \"r\" is not used by AdaLoRA and is ignored; init_r sets the initial "
                                  "rank", src) ? oom(&c) : 0;
    }
    if (rc == 0) rc = validate_ctx(&c);
    json_decref(root);
    if (rc) {
        pc_adapter_config_free(cfg);
        return NULL;
    }
    return cfg;
}

static char *config_path(const char *path) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        size_t n = strlen(path);
        char *p = malloc(n + 1 + sizeof PC_ADAPTER_CONFIG_NAME);
        if (!p) return NULL;
        snprintf(p, n + 1 + sizeof PC_ADAPTER_CONFIG_NAME, "%s%s%s", path,
                 (n && path[n - 1] == '/') ? "" : "/", PC_ADAPTER_CONFIG_NAME);
        return p;
    }
    return xstrdup(path);
}

pc_adapter_config *pc_adapter_config_load(const char *path, char *err, size_t errlen) {
    if (!path) {
        seterr(err, errlen, "adapter_config.json: no path");
        return NULL;
    }
    char *file = config_path(path);
    if (!file) {
        seterr(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    FILE *f = fopen(file, "rb");
    if (!f) {
        seterr(err, errlen, "%s: cannot open: %s", file, strerror(errno));
        free(file);
        return NULL;
    }
    sbuf b = {0};
    char chunk[65536];
    size_t k;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0) {
        sb_putn(&b, chunk, k);
        if (b.n > MAX_CONFIG_BYTES) break;
    }
    int rerr = ferror(f);
    fclose(f);
    pc_adapter_config *cfg = NULL;
    if (rerr) seterr(err, errlen, "%s: read error", file);
    else if (b.oom) seterr(err, errlen, "%s: out of memory", file);
    else if (b.n > MAX_CONFIG_BYTES) seterr(err, errlen, "%s: file too large (> %zu bytes)", file, MAX_CONFIG_BYTES);
    else cfg = pc_adapter_config_parse(b.p ? b.p : "", b.n, file, err, errlen);
    free(b.p);
    free(file);
    return cfg;
}

/* ------------------------------------------------------------------------------------------------
 * writing
 * ---------------------------------------------------------------------------------------------- */

static json_t *jnum(pc_num n) {
    if (n.is_int && n.v == floor(n.v) && fabs(n.v) < 9.007199254740992e15) return json_integer((json_int_t)n.v);
    return json_real(n.v);
}
static json_t *jstr_or_null(const char *s) { return s ? json_string(s) : json_null(); }
static json_t *jint_or_null(int64_t v) { return v == PC_INT_NULL ? json_null() : json_integer(v); }

static json_t *jspec(const pc_spec *s) {
    if (s->kind == PC_SPEC_STRING) return json_string(s->str ? s->str : "");
    if (s->kind != PC_SPEC_LIST) return json_null();
    json_t *a = json_array();
    for (size_t i = 0; a && i < s->n; i++) {
        json_t *e = json_string(s->items[i]);
        if (!e || json_array_append_new(a, e)) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *jlayers(const pc_layers *l) {
    if (l->kind == PC_LAYERS_INT && l->n) return json_integer(l->items[0]);
    if (l->kind != PC_LAYERS_LIST) return json_null();
    json_t *a = json_array();
    for (size_t i = 0; a && i < l->n; i++) {
        if (json_array_append_new(a, json_integer(l->items[i]))) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *jpattern(const pc_pattern *p, bool masks) {
    if (p->is_null) return json_null();
    json_t *o = json_object();
    for (size_t i = 0; o && i < p->n; i++) {
        const pc_pattern_entry *e = &p->items[i];
        json_t *v;
        if (masks) {
            v = json_array();
            for (size_t j = 0; v && j < e->mask_len; j++)
                if (json_array_append_new(v, json_boolean(e->mask[j]))) {
                    json_decref(v);
                    v = NULL;
                }
        } else {
            v = jnum(e->value);
        }
        if (!v || json_object_set_new(o, e->key, v)) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

static json_t *jobject_text(const char *text) {
    if (!text) return json_null();
    return json_loads(text, 0, NULL);
}

static json_t *field_value(const pc_adapter_config *cfg, field_id id) {
    const field_info *fi = &FIELDS[id];
    switch (id) {
    case F_PEFT_TYPE: return json_string(pc_peft_type_name(cfg->peft_type));
    case F_AUTO_MAPPING: return jobject_text(cfg->auto_mapping);
    case F_BASE_MODEL: return jstr_or_null(cfg->base_model_name_or_path);
    case F_INFERENCE_MODE: return json_boolean(cfg->inference_mode);
    case F_PEFT_VERSION: return jstr_or_null(cfg->peft_version);
    case F_REVISION: return jstr_or_null(cfg->revision);
    case F_TASK_TYPE: return jstr_or_null(pc_task_type_name(cfg->task_type));
    case F_MODULES_TO_SAVE: return jspec(&cfg->modules_to_save);
    case F_TARGET_MODULES: return jspec(&cfg->target_modules);
    case F_EXCLUDE_MODULES: return jspec(&cfg->exclude_modules);
    case F_LAYERS_TO_TRANSFORM: return jlayers(&cfg->layers_to_transform);
    case F_LAYERS_PATTERN: return jspec(&cfg->layers_pattern);
    case F_RANK_PATTERN: return jpattern(&cfg->rank_pattern, cfg->peft_type == PC_PEFT_ADALORA);
    case F_ALPHA_PATTERN: return jpattern(&cfg->alpha_pattern, false);
    case F_R: return json_integer(cfg->r);
    case F_FAN_IN_FAN_OUT: return json_boolean(cfg->fan_in_fan_out);
    case F_LORA_ALPHA: return jnum(cfg->lora.lora_alpha);
    case F_LORA_DROPOUT: return jnum(cfg->lora.lora_dropout);
    case F_BIAS:
        return json_string(cfg->lora.bias == PC_BIAS_ALL ? "all" : cfg->lora.bias == PC_BIAS_LORA_ONLY ? "lora_only" : "none");
    case F_USE_RSLORA: return json_boolean(cfg->lora.use_rslora);
    case F_INIT_LORA_WEIGHTS:
        if (cfg->lora.init_lora_weights == PC_LORA_INIT_GAUSSIAN)
            return json_string(cfg->lora.init_lora_weights_text ? cfg->lora.init_lora_weights_text : "gaussian");
        return json_boolean(cfg->lora.init_lora_weights == PC_LORA_INIT_TRUE);
    case F_USE_DORA: return json_boolean(cfg->lora.use_dora);
    case F_LORA_BIAS: return json_boolean(cfg->lora.lora_bias);
    case F_MEGATRON_CORE: return jstr_or_null(cfg->lora.megatron_core);
    case F_QALORA_GROUP_SIZE: return json_integer(cfg->lora.qalora_group_size);
    case F_MEGATRON_CONFIG:
    case F_TRAINABLE_TOKEN_INDICES:
    case F_LOFTQ_CONFIG:
    case F_EVA_CONFIG:
    case F_CORDA_CONFIG:
    case F_LORA_GA_CONFIG:
    case F_VELORA_CONFIG:
    case F_ALORA_INVOCATION_TOKENS:
    case F_USE_QALORA:
    case F_MONTECLORA_CONFIG:
    case F_LAYER_REPLICATION:
    case F_TARGET_PARAMETERS:
    case F_USE_BDLORA:
    case F_ARROW_CONFIG:
    case F_KASA_CONFIG:
    case F_ENSURE_WEIGHT_TYING: return json_loads(fi->default_json, JSON_DECODE_ANY, NULL);
    case F_ALPHA: return jnum(cfg->lycoris.alpha);
    case F_RANK_DROPOUT: return jnum(cfg->lycoris.rank_dropout);
    case F_MODULE_DROPOUT: return jnum(cfg->lycoris.module_dropout);
    case F_USE_EFFECTIVE_CONV2D: return json_boolean(cfg->lycoris.use_effective_conv2d);
    case F_INIT_WEIGHTS:
        if (cfg->peft_type == PC_PEFT_PREFIX_TUNING) return cfg->prompt.init_weights_zero ? json_string("zero") : json_null();
        if (cfg->lycoris.init_weights == PC_LYCORIS_INIT_LYCORIS) return json_string("lycoris");
        return json_boolean(cfg->lycoris.init_weights == PC_LYCORIS_INIT_TRUE);
    case F_DECOMPOSE_BOTH: return json_boolean(cfg->lycoris.decompose_both);
    case F_DECOMPOSE_FACTOR: return json_integer(cfg->lycoris.decompose_factor);
    case F_RANK_DROPOUT_SCALE: return json_boolean(cfg->lycoris.rank_dropout_scale);
    case F_TARGET_R: return json_integer(cfg->adalora.target_r);
    case F_INIT_R: return json_integer(cfg->adalora.init_r);
    case F_TINIT: return json_integer(cfg->adalora.tinit);
    case F_TFINAL: return json_integer(cfg->adalora.tfinal);
    case F_DELTAT: return json_integer(cfg->adalora.deltaT);
    case F_BETA1: return jnum(cfg->adalora.beta1);
    case F_BETA2: return jnum(cfg->adalora.beta2);
    case F_ORTH_REG_WEIGHT: return jnum(cfg->adalora.orth_reg_weight);
    case F_TOTAL_STEP: return jint_or_null(cfg->adalora.total_step);
    case F_FEEDFORWARD_MODULES: return jspec(&cfg->ia3.feedforward_modules);
    case F_INIT_IA3_WEIGHTS: return json_boolean(cfg->ia3.init_ia3_weights);
    case F_NUM_VIRTUAL_TOKENS: return jint_or_null(cfg->prompt.num_virtual_tokens);
    case F_TOKEN_DIM: return jint_or_null(cfg->prompt.token_dim);
    case F_NUM_TRANSFORMER_SUBMODULES: return jint_or_null(cfg->prompt.num_transformer_submodules);
    case F_NUM_ATTENTION_HEADS: return jint_or_null(cfg->prompt.num_attention_heads);
    case F_NUM_LAYERS: return jint_or_null(cfg->prompt.num_layers);
    case F_ENCODER_HIDDEN_SIZE: return jint_or_null(cfg->prompt.encoder_hidden_size);
    case F_PREFIX_PROJECTION: return json_boolean(cfg->prompt.prefix_projection);
    case F_ENCODER_REPARAM_TYPE:
        return json_string(cfg->prompt.encoder_reparameterization_type == PC_ENCODER_LSTM ? "LSTM" : "MLP");
    case F_ENCODER_NUM_LAYERS: return json_integer(cfg->prompt.encoder_num_layers);
    case F_ENCODER_DROPOUT: return jnum(cfg->prompt.encoder_dropout);
    case F_PROMPT_TUNING_INIT: return json_string(PROMPT_INIT_NAMES[cfg->prompt.prompt_tuning_init]);
    case F_PROMPT_TUNING_INIT_TEXT: return jstr_or_null(cfg->prompt.prompt_tuning_init_text);
    case F_TOKENIZER_NAME_OR_PATH: return jstr_or_null(cfg->prompt.tokenizer_name_or_path);
    case F_TOKENIZER_KWARGS: return jobject_text(cfg->prompt.tokenizer_kwargs);
    case F_PROMPT_TUNING_INIT_STATE_DICT_PATH: return jstr_or_null(cfg->prompt.prompt_tuning_init_state_dict_path);
    case F_PROMPT_TUNING_INIT_TASK: return jint_or_null(cfg->prompt.prompt_tuning_init_task);
    case F_NUM_RANKS: return jint_or_null(cfg->prompt.num_ranks);
    case F_NUM_TASKS: return jint_or_null(cfg->prompt.num_tasks);
    case F_COUNT: break;
    }
    return NULL;
}

char *pc_adapter_config_to_json(const pc_adapter_config *cfg, char *err, size_t errlen) {
    if (pc_adapter_config_validate(cfg, "adapter config", err, errlen)) return NULL;
    json_t *root = json_object();
    if (!root) {
        seterr(err, errlen, "adapter config: out of memory");
        return NULL;
    }
    unsigned tm = M(cfg->peft_type);
    for (int i = 0; i < F_COUNT; i++) {
        if (!(FIELDS[i].types & tm)) continue;
        json_t *v = field_value(cfg, (field_id)i);
        if (!v || json_object_set_new(root, FIELDS[i].name, v)) {
            /* json_string fails on invalid UTF-8 text set through the C API */
            seterr(err, errlen, "adapter config: field \"%s\": cannot encode (invalid UTF-8 or out of memory)",
                   FIELDS[i].name);
            json_decref(root);
            return NULL;
        }
    }
    sbuf b = {0};
    py_dump(&b, root, 2, 0);
    json_decref(root);
    if (b.oom || !b.p) {
        free(b.p);
        seterr(err, errlen, "adapter config: out of memory");
        return NULL;
    }
    return b.p;
}

int pc_adapter_config_write(const pc_adapter_config *cfg, const char *path, char *err, size_t errlen) {
    if (!path) {
        seterr(err, errlen, "adapter_config.json: no path");
        return -1;
    }
    char *file = config_path(path);
    if (!file) {
        seterr(err, errlen, "%s: out of memory", path);
        return -1;
    }
    char sub[400];
    char *text = pc_adapter_config_to_json(cfg, sub, sizeof sub);
    if (!text) {
        seterr(err, errlen, "%s: not written: %s", file, sub);
        free(file);
        return -1;
    }
    size_t flen = strlen(file);
    char *tmp = malloc(flen + 16);
    if (!tmp) {
        seterr(err, errlen, "%s: out of memory", file);
        free(text);
        free(file);
        return -1;
    }
    snprintf(tmp, flen + 16, "%s.tmp.XXXXXX", file);
    int rc = -1;
    int fd = mkstemp(tmp);
    if (fd < 0) {
        seterr(err, errlen, "%s: cannot create a temporary file next to it: %s", file, strerror(errno));
        goto out;
    }
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            seterr(err, errlen, "%s: write failed: %s", tmp, strerror(errno));
            close(fd);
            unlink(tmp);
            goto out;
        }
        off += (size_t)w;
    }
    if (fchmod(fd, 0644) != 0 || fsync(fd) != 0) {
        seterr(err, errlen, "%s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        goto out;
    }
    if (close(fd) != 0) {
        seterr(err, errlen, "%s: close failed: %s", tmp, strerror(errno));
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, file) != 0) {
        seterr(err, errlen, "%s: rename from %s failed: %s", file, tmp, strerror(errno));
        unlink(tmp);
        goto out;
    }
    rc = 0;
out:
    free(tmp);
    free(text);
    free(file);
    return rc;
}
