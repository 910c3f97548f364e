/* Writing adapter_config.json exactly as PEFT does: every field of the peft_type, sort_keys,
 * indent=2, Python float repr (see adapter_config.h), atomically. */
#include "runtime/adapter_config_internal.h"
#include "runtime/fileio.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* an integer stays an integer at any size (pc_num_int64: exact past 2^53, where the double is
 * not); only one beyond int64, which JSON text read by jansson cannot hold, becomes a float */
static json_t *jnum(pc_num n) {
    if (n.is_int && n.v == floor(n.v) && n.v >= -0x1p63 && n.v < 0x1p63) return json_integer(pc_num_int64(n));
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
    const field_info *fi = &AC_FIELDS[id];
    switch (id) {
    case F_PEFT_TYPE:
        return json_string(cfg->peft_type == PC_PEFT_CUSTOM ? cfg->custom_type : pc_peft_type_name(cfg->peft_type));
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
    case F_PROMPT_TUNING_INIT: return json_string(ac_prompt_init_name(cfg->prompt.prompt_tuning_init));
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
    /* a custom method's own fields are custom_json's (a PEFT type's: its peftc_* fields); the
     * struct's fields replace the rest */
    json_t *root = cfg->peft_type == PC_PEFT_CUSTOM || cfg->custom_json ? ac_custom_object(cfg) : json_object();
    if (!root) {
        pc_errf(err, errlen, "adapter config: out of memory");
        return NULL;
    }
    unsigned tm = M(cfg->peft_type);
    for (int i = 0; i < F_COUNT; i++) {
        if (!(AC_FIELDS[i].types & tm)) continue;
        json_t *v = field_value(cfg, (field_id)i);
        if (!v || json_object_set_new(root, AC_FIELDS[i].name, v)) {
            /* json_string fails on invalid UTF-8 text set through the C API */
            pc_errf(err, errlen, "adapter config: field \"%s\": cannot encode (invalid UTF-8 or out of memory)",
                    AC_FIELDS[i].name);
            json_decref(root);
            return NULL;
        }
    }
    pc_textbuf b = {0};
    ac_py_dump(&b, root, 2, 0);
    json_decref(root);
    if (b.oom || !b.p) {
        free(b.p);
        pc_errf(err, errlen, "adapter config: out of memory");
        return NULL;
    }
    return b.p;
}

int pc_adapter_config_write(const pc_adapter_config *cfg, const char *path, char *err, size_t errlen) {
    if (!path) {
        pc_errf(err, errlen, "adapter_config.json: no path");
        return -1;
    }
    char *file = ac_config_path(path);
    if (!file) {
        pc_errf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    char sub[400];
    char *text = pc_adapter_config_to_json(cfg, sub, sizeof sub);
    if (!text) {
        pc_errf(err, errlen, "%s: not written: %s", file, sub);
        free(file);
        return -1;
    }
    size_t flen = strlen(file);
    char *tmp = malloc(flen + 16);
    if (!tmp) {
        pc_errf(err, errlen, "%s: out of memory", file);
        free(text);
        free(file);
        return -1;
    }
    snprintf(tmp, flen + 16, "%s.tmp.XXXXXX", file);
    int rc = -1;
    int fd = mkstemp(tmp);
    if (fd < 0) {
        pc_errf(err, errlen, "%s: cannot create a temporary file next to it: %s", file, strerror(errno));
        goto out;
    }
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            pc_errf(err, errlen, "%s: write failed: %s", tmp, strerror(errno));
            close(fd);
            unlink(tmp);
            goto out;
        }
        off += (size_t)w;
    }
    if (fchmod(fd, 0644) != 0 || fsync(fd) != 0) {
        pc_errf(err, errlen, "%s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        goto out;
    }
    if (close(fd) != 0) {
        pc_errf(err, errlen, "%s: close failed: %s", tmp, strerror(errno));
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, file) != 0) {
        pc_errf(err, errlen, "%s: rename from %s failed: %s", file, tmp, strerror(errno));
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
