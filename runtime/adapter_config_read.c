/* Reading adapter_config.json with PEFT's semantics (see the reading rules in adapter_config.h):
 * JSON text -> pc_adapter_config, field by field through the field table, then validation. */
#include "runtime/adapter_config_internal.h"
#include "runtime/json_kind.h"
#include "runtime/fileio.h"
#include "runtime/strutil.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_CONFIG_BYTES ((size_t)256 << 20)

/* PeftType members peftc does not implement (src/peft/utils/peft_types.py, PEFT 0.20-0.21) */
static const char *const OTHER_PEFT_TYPES[] = {
    "ADAMSS", "BOFT", "ADAPTION_PROMPT", "BEFT", "LILY", "OFT", "POLY", "LN_TUNING", "VERA", "FROD",
    "PVERA", "FOURIERFT", "GLORA", "XLORA", "HRA", "VBLORA", "UNILORA", "CPT", "MISS", "RANDLORA",
    "ROAD", "TRAINABLE_TOKENS", "HIRA", "SHIRA", "C3A", "WAVEFT", "OSF", "DELORA", "GRALORA",
    "CARTRIDGE", "TINYLORA", "PSOFT", "PEANUT", "SUPERTUNING", "DEFT", "SHADOW" /* 0.21 */, NULL,
};

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
    w[cfg->n_warnings] = ac_strdup(buf);
    if (!w[cfg->n_warnings]) return -1;
    cfg->n_warnings++;
    return 0;
}

int ac_ferr(pctx *c, const char *field, const char *fmt, ...) {
    char reason[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    pc_errf(c->err, c->errlen, "%s: field \"%s\": %s", c->src, field, reason);
    return -1;
}

static int oom(pctx *c) {
    pc_errf(c->err, c->errlen, "%s: out of memory", c->src);
    return -1;
}

static int get_bool(pctx *c, const char *k, const json_t *v, bool *out) {
    char vb[100];
    if (!json_is_boolean(v)) return ac_ferr(c, k, "must be true or false, got %s", ac_render(v, vb, sizeof vb));
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
        return ac_ferr(c, k, "must be an integer%s, got %s", nullable ? " or null" : "", ac_render(v, vb, sizeof vb));
    *out = json_integer_value(v);
    if (*out == PC_INT_NULL) return ac_ferr(c, k, "integer out of range");
    return 0;
}

static int get_num(pctx *c, const char *k, const json_t *v, pc_num *out) {
    char vb[100];
    if (!json_is_number(v)) return ac_ferr(c, k, "must be a number, got %s", ac_render(v, vb, sizeof vb));
    out->is_int = json_is_integer(v);
    out->i = out->is_int ? json_integer_value(v) : 0; /* exact past 2^53, where v is not */
    out->v = json_number_value(v);
    return 0;
}

static int get_str(pctx *c, const char *k, const json_t *v, char **out, bool nullable) {
    char vb[100];
    if (nullable && json_is_null(v)) return pc_config_set_str(out, NULL) ? oom(c) : 0;
    if (!json_is_string(v))
        return ac_ferr(c, k, "must be a string%s, got %s", nullable ? " or null" : "", ac_render(v, vb, sizeof vb));
    return pc_config_set_str(out, json_string_value(v)) ? oom(c) : 0;
}

/* compact JSON text of an object, or NULL for null */
static int get_object_text(pctx *c, const char *k, const json_t *v, char **out) {
    char vb[100];
    if (json_is_null(v)) return pc_config_set_str(out, NULL) ? oom(c) : 0;
    if (!json_is_object(v)) return ac_ferr(c, k, "must be an object or null, got %s", ac_render(v, vb, sizeof vb));
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
        ac_spec_free(out);
        return 0;
    }
    if (allow_string && json_is_string(v)) return pc_spec_set_string(out, json_string_value(v)) ? oom(c) : 0;
    if (!json_is_array(v))
        return ac_ferr(c, k, "must be a list of strings%s or null, got %s", allow_string ? ", a string" : "",
                       ac_render(v, vb, sizeof vb));
    size_t n = json_array_size(v);
    const char **items = n ? calloc(n, sizeof *items) : NULL;
    if (n && !items) return oom(c);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, i);
        if (!json_is_string(e)) {
            free(items);
            return ac_ferr(c, k, "entry %zu must be a string, got %s", i, ac_render(e, vb, sizeof vb));
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
        return ac_ferr(c, k, "must be an integer, a list of integers or null, got %s", ac_render(v, vb, sizeof vb));
    size_t n = json_array_size(v);
    int64_t *items = n ? malloc(n * sizeof *items) : NULL;
    if (n && !items) return oom(c);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, i);
        if (!json_is_integer(e)) {
            free(items);
            return ac_ferr(c, k, "entry %zu must be an integer, got %s", i, ac_render(e, vb, sizeof vb));
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
    if (!json_is_object(v)) return ac_ferr(c, k, "must be an object or null, got %s", ac_render(v, vb, sizeof vb));
    pc_pattern_clear(out, false);
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)v, key, val) {
        if (kind == PAT_MASK) {
            if (!json_is_array(val))
                return ac_ferr(c, k, "key \"%s\": must be a list of booleans (AdaLoRA rank mask), got %s", key,
                               ac_render(val, vb, sizeof vb));
            pc_pattern_entry *e = ac_pattern_push(out, key);
            if (!e) return oom(c);
            size_t n = json_array_size(val);
            e->mask = n ? malloc(n * sizeof *e->mask) : NULL;
            if (n && !e->mask) return oom(c);
            e->mask_len = n;
            size_t kept = 0;
            for (size_t i = 0; i < n; i++) {
                const json_t *b = json_array_get(val, i);
                if (!json_is_boolean(b))
                    return ac_ferr(c, k, "key \"%s\": entry %zu must be true or false, got %s", key, i,
                                   ac_render(b, vb, sizeof vb));
                e->mask[i] = json_is_true(b);
                kept += e->mask[i];
            }
            e->value = ac_num_int((double)kept);
            continue;
        }
        if (kind == PAT_RANK) {
            if (!json_is_integer(val) || json_integer_value(val) <= 0 || json_integer_value(val) > INT32_MAX)
                return ac_ferr(c, k, "key \"%s\": rank must be a positive integer, got %s", key,
                               ac_render(val, vb, sizeof vb));
        } else if (!json_is_number(val)) {
            return ac_ferr(c, k, "key \"%s\": alpha must be a number, got %s", key, ac_render(val, vb, sizeof vb));
        }
        if (pc_pattern_add(out, key, json_number_value(val), json_is_integer(val))) return oom(c);
        if (json_is_integer(val)) out->items[out->n - 1].value.i = json_integer_value(val); /* exact */
    }
    return 0;
}

static int not_supported(pctx *c, const char *k, const json_t *v, const char *dflt) {
    char vb[100];
    pc_errf(c->err, c->errlen, "%s: field \"%s\"=%s is not supported by peftc (only PEFT's default %s is)",
            c->src, k, ac_render(v, vb, sizeof vb), dflt);
    return -1;
}

static bool is_off_value(const json_t *v, unsigned accept) {
    if ((accept & A_NULL) && json_is_null(v)) return true;
    if ((accept & A_FALSE) && json_is_false(v)) return true;
    if ((accept & A_EMPTY_LIST) && json_is_array(v) && json_array_size(v) == 0) return true;
    if ((accept & A_EMPTY_OBJ) && json_is_object(v) && json_object_size(v) == 0) return true;
    return false;
}

static int parse_init_lora_weights(pctx *c, const char *k, const json_t *v) {
    char vb[100];
    pc_adapter_config *cfg = c->cfg;
    if (json_is_boolean(v)) {
        cfg->lora.init_lora_weights = json_is_true(v) ? PC_LORA_INIT_TRUE : PC_LORA_INIT_FALSE;
        return pc_config_set_str(&cfg->lora.init_lora_weights_text, NULL) ? oom(c) : 0;
    }
    if (!json_is_string(v))
        return ac_ferr(c, k, "must be true, false or a string, got %s", ac_render(v, vb, sizeof vb));
    const char *s = json_string_value(v);
    /* PEFT's dispatch (tuners/lora/layer.py update_layer / reset_lora_parameters) */
    if (pc_ascii_ieq(s, "gaussian")) {
        cfg->lora.init_lora_weights = PC_LORA_INIT_GAUSSIAN;
        return pc_config_set_str(&cfg->lora.init_lora_weights_text, strcmp(s, "gaussian") ? s : NULL) ? oom(c)
                                                                                                      : 0;
    }
    if (strncmp(s, "pissa", 5) == 0 || strncmp(s, "corda", 5) == 0 || pc_ascii_ieq(s, "olora") ||
        pc_ascii_ieq(s, "mica") || strcmp(s, "loftq") == 0 || strcmp(s, "eva") == 0 ||
        strcmp(s, "orthogonal") == 0 || strcmp(s, "lora_ga") == 0)
        return ac_ferr(c, k, "%s is not supported by peftc (supported: true, false, \"gaussian\")",
                       ac_render(v, vb, sizeof vb));
    return ac_ferr(c, k,
                   "invalid value %s (PEFT accepts true, false, \"gaussian\", \"eva\", \"olora\", \"pissa\", "
                   "\"pissa_niter_<n>\", \"corda\", \"loftq\", \"orthogonal\", \"mica\", \"lora_ga\")",
                   ac_render(v, vb, sizeof vb));
}

static int to_int32(pctx *c, const char *k, int64_t v, int *out, int64_t min) {
    if (v < min || v > INT32_MAX) {
        if (min == 1)
            return ac_ferr(c, k, "must be a positive integer%s, got %" PRId64, v > INT32_MAX ? " (at most 2147483647)" : "", v);
        return ac_ferr(c, k, "must be an integer in [%" PRId64 ", %d], got %" PRId64, min, INT32_MAX, v);
    }
    *out = (int)v;
    return 0;
}

static int parse_field(pctx *c, int id, const char *k, const json_t *v) {
    pc_adapter_config *cfg = c->cfg;
    char vb[100];
    int64_t iv = 0;
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
        pc_task_type tt = json_is_string(v) ? ac_task_type_from_name(json_string_value(v)) : PC_TASK_NONE;
        if (tt != PC_TASK_NONE) {
            cfg->task_type = tt;
            return 0;
        }
        return ac_ferr(c, k,
                       "invalid task type %s (one of SEQ_CLS, SEQ_2_SEQ_LM, CAUSAL_LM, TOKEN_CLS, QUESTION_ANS, "
                       "FEATURE_EXTRACTION or null)",
                       ac_render(v, vb, sizeof vb));
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
        if (!json_is_integer(v)) return ac_ferr(c, k, "must be a positive integer, got %s", ac_render(v, vb, sizeof vb));
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
        return ac_ferr(c, k, "must be \"none\", \"all\" or \"lora_only\", got %s", ac_render(v, vb, sizeof vb));
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
        if (!json_is_object(v)) return ac_ferr(c, k, "must be an object or null, got %s", ac_render(v, vb, sizeof vb));
        if (c->n_ignored < 3) c->ignored_init_config[c->n_ignored++] = AC_FIELDS[id].name;
        return 0;
    case F_LOFTQ_CONFIG:
        if (is_off_value(v, AC_FIELDS[id].accept)) return 0;
        if (!json_is_object(v)) return ac_ferr(c, k, "must be an object, got %s", ac_render(v, vb, sizeof vb));
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
        if (is_off_value(v, AC_FIELDS[id].accept)) return 0;
        return not_supported(c, k, v, AC_FIELDS[id].default_json);
    case F_ALPHA: return get_num(c, k, v, &cfg->lycoris.alpha);
    case F_RANK_DROPOUT: return get_num(c, k, v, &cfg->lycoris.rank_dropout);
    case F_MODULE_DROPOUT: return get_num(c, k, v, &cfg->lycoris.module_dropout);
    case F_USE_EFFECTIVE_CONV2D: return get_bool(c, k, v, &cfg->lycoris.use_effective_conv2d);
    case F_INIT_WEIGHTS:
        if (cfg->peft_type == PC_PEFT_PREFIX_TUNING) {
            if (json_is_null(v)) cfg->prompt.init_weights_zero = false;
            else if (json_is_string(v) && !strcmp(json_string_value(v), "zero")) cfg->prompt.init_weights_zero = true;
            else return ac_ferr(c, k, "must be \"zero\" or null, got %s", ac_render(v, vb, sizeof vb));
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
        return ac_ferr(c, k, "must be %s, got %s",
                       cfg->peft_type == PC_PEFT_LOKR ? "true, false or \"lycoris\"" : "true or false",
                       ac_render(v, vb, sizeof vb));
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
        else return ac_ferr(c, k, "must be \"MLP\" or \"LSTM\", got %s", ac_render(v, vb, sizeof vb));
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
                if (allowed && !strcmp(s, ac_prompt_init_name((pc_prompt_init)i))) {
                    cfg->prompt.prompt_tuning_init = (pc_prompt_init)i;
                    return 0;
                }
            }
        }
        return ac_ferr(c, k, "must be one of %s, got %s",
                       mpt ? "\"RANDOM\", \"TEXT\", \"AVERAGE_SOURCE_TASKS\", \"EXACT_SOURCE_TASK\", \"ONLY_SOURCE_SHARED\""
                        : "\"RANDOM\", \"TEXT\", \"SAMPLE_VOCAB\"",
                    ac_render(v, vb, sizeof vb));
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


static bool is_registered(const char *name, const char *const *custom_types, size_t ncustom) {
    for (size_t i = 0; custom_types && i < ncustom; i++)
        if (custom_types[i] && strcmp(custom_types[i], name) == 0) return true;
    return false;
}

/* " (registered methods: A, B)" or "" */
static void registered_note(char *buf, size_t n, const char *const *custom_types, size_t ncustom) {
    pc_textbuf b = {0};
    for (size_t i = 0; custom_types && i < ncustom; i++) {
        if (!custom_types[i]) continue;
        pc_tb_puts(&b, b.n ? ", " : " (registered methods: ");
        pc_tb_puts(&b, custom_types[i]);
    }
    if (b.n) pc_tb_puts(&b, ")");
    snprintf(buf, n, "%s", b.p && !b.oom ? b.p : "");
    free(b.p);
}

pc_adapter_config *pc_adapter_config_parse(const char *text, size_t len, const char *source, char *err,
                                           size_t errlen) {
    return pc_adapter_config_parse_ex(text, len, source, NULL, 0, err, errlen);
}

pc_adapter_config *pc_adapter_config_parse_ex(const char *text, size_t len, const char *source,
                                              const char *const *custom_types, size_t ncustom, char *err,
                                              size_t errlen) {
    const char *src = source ? source : PC_ADAPTER_CONFIG_NAME;
    char vb[100];
    if (!text) {
        pc_errf(err, errlen, "%s: no text", src);
        return NULL;
    }
    json_error_t je;
    json_t *root = json_loadb(text, len, 0, &je);
    if (!root) {
        pc_errf(err, errlen, "%s:%d:%d: invalid JSON: %s", src, je.line, je.column, je.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        pc_errf(err, errlen, "%s: expected a JSON object, got %s", src, pc_json_kind(root));
        json_decref(root);
        return NULL;
    }
    const json_t *pt = json_object_get(root, "peft_type");
    if (!pt) {
        pc_errf(err, errlen, "%s: field \"peft_type\" is missing (PEFT requires it)", src);
        json_decref(root);
        return NULL;
    }
    if (!json_is_string(pt)) {
        pc_errf(err, errlen, "%s: field \"peft_type\": must be a string, got %s", src, ac_render(pt, vb, sizeof vb));
        json_decref(root);
        return NULL;
    }
    pc_peft_type type = pc_peft_type_from_name(json_string_value(pt));
    if (type == PC_PEFT_NONE && is_registered(json_string_value(pt), custom_types, ncustom)) type = PC_PEFT_CUSTOM;
    if (type == PC_PEFT_NONE) {
        bool known = false;
        char note[300];
        registered_note(note, sizeof note, custom_types, ncustom);
        for (int i = 0; OTHER_PEFT_TYPES[i]; i++) known |= !strcmp(OTHER_PEFT_TYPES[i], json_string_value(pt));
        if (known)
            pc_errf(err, errlen, "%s: field \"peft_type\": %s is not supported by peftc (supported: LORA, LOHA, LOKR, "
                    "ADALORA, IA3, PREFIX_TUNING, P_TUNING, PROMPT_TUNING, MULTITASK_PROMPT_TUNING)%s",
                    src, ac_render(pt, vb, sizeof vb), note);
        else
            pc_errf(err, errlen, "%s: field \"peft_type\": unknown PEFT type %s%s", src, ac_render(pt, vb, sizeof vb),
                    note);
        json_decref(root);
        return NULL;
    }
    pc_adapter_config *cfg = pc_adapter_config_new(type);
    if (cfg && type == PC_PEFT_CUSTOM) {
        /* the method's own fields stay in custom_json (the whole object, as read) */
        char *whole = ac_compact_json(root);
        if (!whole || pc_config_set_str(&cfg->custom_type, json_string_value(pt))) {
            pc_adapter_config_free(cfg);
            cfg = NULL;
        } else {
            free(cfg->custom_json);
            cfg->custom_json = whole;
            whole = NULL;
        }
        free(whole);
    }
    if (!cfg) {
        pc_errf(err, errlen, "%s: out of memory", src);
        json_decref(root);
        return NULL;
    }
    pctx c = {.src = src, .err = err, .errlen = errlen, .cfg = cfg};
    const char *key;
    json_t *val;
    int rc = 0;
    /* peftc's own fields of a PEFT type ("peftc_*", e.g. prefix tuning's ablations) are kept in
     * custom_json, read by the method and written back; PEFT drops them when it loads the file */
    json_t *ext = type == PC_PEFT_CUSTOM ? NULL : json_object();
    if (type != PC_PEFT_CUSTOM && !ext) rc = oom(&c);
    json_object_foreach(root, key, val) {
        if (rc) break;
        int id = ac_field_lookup(key, type);
        if (id < 0) {
            if (type == PC_PEFT_CUSTOM) continue; /* the method's own field (custom_json) */
            if (!strncmp(key, "peftc_", 6)) {
                if (json_object_set(ext, key, val)) rc = oom(&c);
                continue;
            }
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
    if (rc == 0 && ext && json_object_size(ext)) {
        free(cfg->custom_json);
        if (!(cfg->custom_json = ac_compact_json(ext))) rc = oom(&c);
    }
    json_decref(ext);
    if (rc == 0) {
        for (int i = 0; i < c.n_ignored && rc == 0; i++)
            rc = add_warning(cfg, "%s: field \"%s\" is ignored because init_lora_weights does not select it",
                             src, c.ignored_init_config[i]) ? oom(&c) : 0;
        if (rc == 0 && type == PC_PEFT_ADALORA && cfg->r != 8)
            rc = add_warning(cfg, "%s: field \"r\" is not used by AdaLoRA and is ignored; init_r sets the initial "
                                  "rank", src) ? oom(&c) : 0;
    }
    if (rc == 0) rc = ac_validate_ctx(&c);
    json_decref(root);
    if (rc) {
        pc_adapter_config_free(cfg);
        return NULL;
    }
    return cfg;
}

char *ac_config_path(const char *path) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        size_t n = strlen(path);
        char *p = malloc(n + 1 + sizeof PC_ADAPTER_CONFIG_NAME);
        if (!p) return NULL;
        snprintf(p, n + 1 + sizeof PC_ADAPTER_CONFIG_NAME, "%s%s%s", path,
                 (n && path[n - 1] == '/') ? "" : "/", PC_ADAPTER_CONFIG_NAME);
        return p;
    }
    return ac_strdup(path);
}

pc_adapter_config *pc_adapter_config_load(const char *path, char *err, size_t errlen) {
    return pc_adapter_config_load_ex(path, NULL, 0, err, errlen);
}

pc_adapter_config *pc_adapter_config_load_ex(const char *path, const char *const *custom_types, size_t ncustom,
                                             char *err, size_t errlen) {
    if (!path) {
        pc_errf(err, errlen, "adapter_config.json: no path");
        return NULL;
    }
    char *file = ac_config_path(path);
    if (!file) {
        pc_errf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    /* pc_read_file_max: regular files only (a FIFO would block), the size limit before reading */
    char *text = NULL;
    size_t n = 0;
    pc_adapter_config *cfg = NULL;
    if (pc_read_file_max(file, MAX_CONFIG_BYTES, &text, &n, err, errlen) == 0)
        cfg = pc_adapter_config_parse_ex(text, n, file, custom_types, ncustom, err, errlen);
    free(text);
    free(file);
    return cfg;
}

