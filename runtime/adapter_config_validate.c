/* Validating an adapter config: the cross-field rules of the PEFT config classes' __post_init__
 * and layer code, applied to loaded configs and to configs built in code before they are written. */
#include "runtime/adapter_config_internal.h"
#include "runtime/fileio.h"
#include "runtime/target_match.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static bool spec_truthy(const pc_spec *s) {
    return (s->kind == PC_SPEC_STRING && s->str && s->str[0]) || (s->kind == PC_SPEC_LIST && s->n > 0);
}

static int check_regex(pctx *c, const char *field, const char *what, const char *prefix, const char *pattern,
                       const char *suffix) {
    char msg[256];
    if (pc_pyregex_check(prefix, pattern, suffix, msg, sizeof msg) == 0) return 0;
    if (what) return ac_ferr(c, field, "%s \"%s\" is not a valid regular expression: %s", what, pattern, msg);
    return ac_ferr(c, field, "\"%s\" is not a valid regular expression: %s", pattern, msg);
}

static int check_prob(pctx *c, const char *field, pc_num p) {
    char nb[64];
    if (!(p.v >= 0.0 && p.v < 1.0)) {
        if (p.is_int) snprintf(nb, sizeof nb, "%" PRId64, pc_num_int64(p));
        else ac_py_float_repr(p.v, nb, sizeof nb);
        return ac_ferr(c, field, "must be a probability in [0, 1), got %s", nb);
    }
    return 0;
}

static int check_finite(pctx *c, const char *field, pc_num p) {
    if (!isfinite(p.v)) return ac_ferr(c, field, "must be a finite number");
    return 0;
}

static int check_opt_pos(pctx *c, const char *field, int64_t v) {
    if (v != PC_INT_NULL && v <= 0) return ac_ferr(c, field, "must be a positive integer or null, got %" PRId64, v);
    return 0;
}

static int check_spec_regexes(pctx *c, const char *field, const pc_spec *s) {
    if (s->kind == PC_SPEC_STRING) return check_regex(c, field, NULL, NULL, s->str, NULL);
    return 0;
}

/* configs built in code: no NULL where a value is required */
static int check_spec_shape(pctx *c, const char *field, const pc_spec *s) {
    if ((int)s->kind < PC_SPEC_NULL || s->kind > PC_SPEC_STRING) return ac_ferr(c, field, "invalid kind");
    if (s->kind == PC_SPEC_STRING && !s->str) return ac_ferr(c, field, "string value is NULL");
    if (s->kind == PC_SPEC_LIST && s->n && !s->items) return ac_ferr(c, field, "list items are NULL");
    for (size_t i = 0; s->kind == PC_SPEC_LIST && i < s->n; i++)
        if (!s->items[i]) return ac_ferr(c, field, "entry %zu is NULL", i);
    return 0;
}

static bool is_object_text(const char *text) {
    json_t *j = json_loads(text, 0, NULL);
    bool ok = j && json_is_object(j);
    json_decref(j);
    return ok;
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
        return ac_ferr(c, "layers_to_transform", "malformed value");
    const pc_pattern *pats[2] = {&cfg->rank_pattern, &cfg->alpha_pattern};
    for (int k = 0; k < 2; k++) {
        if (pats[k]->n && !pats[k]->items) return ac_ferr(c, k ? "alpha_pattern" : "rank_pattern", "items are NULL");
        for (size_t i = 0; i < pats[k]->n; i++)
            if (!pats[k]->items[i].key || (pats[k]->items[i].mask_len && !pats[k]->items[i].mask))
                return ac_ferr(c, k ? "alpha_pattern" : "rank_pattern", "entry %zu is malformed", i);
    }
    if (cfg->auto_mapping && !is_object_text(cfg->auto_mapping))
        return ac_ferr(c, "auto_mapping", "must be the JSON text of an object");
    if (cfg->prompt.tokenizer_kwargs && !is_object_text(cfg->prompt.tokenizer_kwargs))
        return ac_ferr(c, "tokenizer_kwargs", "must be the JSON text of an object");
    return 0;
}

int ac_validate_ctx(pctx *c) {
    const pc_adapter_config *cfg = c->cfg;
    pc_peft_type t = cfg->peft_type;
    unsigned tm = M(t);
    if (!pc_peft_type_name(t)) {
        pc_errf(c->err, c->errlen, "%s: field \"peft_type\": invalid peft type %d", c->src, (int)t);
        return -1;
    }
    if (check_shapes(c)) return -1;
    if (cfg->task_type != PC_TASK_NONE && !pc_task_type_name(cfg->task_type)) return ac_ferr(c, "task_type", "invalid task type");

    /* modules_to_save entries are regex fragments: re.match(rf"(^|.*\.){m}($|\..*)", key) */
    if (cfg->modules_to_save.kind == PC_SPEC_STRING) return ac_ferr(c, "modules_to_save", "must be a list of strings or null");
    for (size_t i = 0; i < cfg->modules_to_save.n; i++)
        if (check_regex(c, "modules_to_save", "entry", "(^|.*\\.)", cfg->modules_to_save.items[i], "($|\\..*)"))
            return -1;

    if (tm & T_CUSTOM) {
        if (!cfg->custom_type || !cfg->custom_type[0])
            return ac_ferr(c, "peft_type", "a custom method's config needs its method name (custom_type)");
        if (pc_peft_type_from_name(cfg->custom_type) != PC_PEFT_NONE)
            return ac_ferr(c, "peft_type", "custom method name \"%s\" is one of PEFT's own types", cfg->custom_type);
        if (cfg->custom_json && !is_object_text(cfg->custom_json))
            return pc_errf(c->err, c->errlen, "%s: custom_json of method %s must be the JSON text of an object",
                           c->src, cfg->custom_type);
    }
    if (tm & (T_LORAISH | T_LYCO | T_IA3 | T_CUSTOM)) {
        if (check_spec_regexes(c, "target_modules", &cfg->target_modules) ||
            check_spec_regexes(c, "exclude_modules", &cfg->exclude_modules))
            return -1;
    }
    if (tm & (T_LORAISH | T_LYCO | T_CUSTOM)) {
        if ((tm & (T_LORA | T_LYCO)) && cfg->r <= 0)
            return ac_ferr(c, "r", "must be a positive integer, got %d", cfg->r);
        if (tm & (T_LORAISH | T_CUSTOM)) {
            /* LoraConfig / AdaLoraConfig __post_init__ */
            if (cfg->target_modules.kind == PC_SPEC_STRING && cfg->layers_to_transform.kind != PC_LAYERS_NULL)
                return ac_ferr(c, "layers_to_transform", "cannot be used when `target_modules` is a str (a regex)");
            if (cfg->target_modules.kind == PC_SPEC_STRING &&
                cfg->layers_pattern.kind != PC_SPEC_NULL)
                return ac_ferr(c, "layers_pattern", "cannot be used when `target_modules` is a str (a regex)");
        }
        if (spec_truthy(&cfg->layers_pattern) && cfg->layers_to_transform.kind == PC_LAYERS_NULL)
            return ac_ferr(c, "layers_pattern", "when `layers_pattern` is specified, `layers_to_transform` must also be specified");
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
                    return ac_ferr(c, "rank_pattern", "key \"%s\": AdaLoRA expects a list of booleans", e->key);
                continue; /* AdaLoRA keys are module paths + ".lora_E", not regexes */
            }
            if (!e->value.is_int || e->value.v <= 0 || e->value.v > INT32_MAX)
                return ac_ferr(c, "rank_pattern", "key \"%s\": rank must be a positive integer", e->key);
            if (check_regex(c, "rank_pattern", "key", "(.*\\.)?(", e->key, ")$")) return -1;
        }
        for (size_t i = 0; i < cfg->alpha_pattern.n; i++) {
            const pc_pattern_entry *e = &cfg->alpha_pattern.items[i];
            if (!isfinite(e->value.v)) return ac_ferr(c, "alpha_pattern", "key \"%s\": alpha must be a finite number", e->key);
            if (check_regex(c, "alpha_pattern", "key", "(.*\\.)?(", e->key, ")$")) return -1;
        }
    }
    if (tm & T_LORAISH) {
        if (check_finite(c, "lora_alpha", cfg->lora.lora_alpha) || check_prob(c, "lora_dropout", cfg->lora.lora_dropout))
            return -1;
        if ((int)cfg->lora.bias < 0 || cfg->lora.bias > PC_BIAS_LORA_ONLY) return ac_ferr(c, "bias", "invalid value");
        if ((int)cfg->lora.init_lora_weights < 0 || cfg->lora.init_lora_weights > PC_LORA_INIT_GAUSSIAN)
            return ac_ferr(c, "init_lora_weights", "invalid value");
        if (cfg->lora.lora_bias && cfg->lora.init_lora_weights == PC_LORA_INIT_GAUSSIAN)
            return ac_ferr(c, "lora_bias", "lora_bias=true is only supported with init_lora_weights=true or false");
        if (cfg->lora.lora_bias && cfg->lora.use_dora)
            return ac_ferr(c, "lora_bias", "lora_bias=true is not supported for DoRA (use_dora=true)");
    }
    if (t == PC_PEFT_ADALORA) {
        const __typeof__(cfg->adalora) *a = &cfg->adalora;
        if (cfg->lora.use_dora) return ac_ferr(c, "use_dora", "ADALORA does not support DoRA");
        if (a->target_r <= 0) return ac_ferr(c, "target_r", "must be a positive integer, got %d", a->target_r);
        if (a->init_r <= 0) return ac_ferr(c, "init_r", "must be a positive integer, got %d", a->init_r);
        if (a->tinit < 0) return ac_ferr(c, "tinit", "must be >= 0, got %" PRId64, a->tinit);
        if (a->tfinal < 0) return ac_ferr(c, "tfinal", "must be >= 0, got %" PRId64, a->tfinal);
        if (a->deltaT <= 0) return ac_ferr(c, "deltaT", "must be a positive integer, got %" PRId64, a->deltaT);
        if (!(a->beta1.v >= 0 && a->beta1.v <= 1)) return ac_ferr(c, "beta1", "must be in [0, 1]");
        if (!(a->beta2.v >= 0 && a->beta2.v <= 1)) return ac_ferr(c, "beta2", "must be in [0, 1]");
        if (!(a->orth_reg_weight.v >= 0) || !isfinite(a->orth_reg_weight.v))
            return ac_ferr(c, "orth_reg_weight", "must be greater than or equal to 0");
        if (a->total_step == PC_INT_NULL || a->total_step <= 0)
            return ac_ferr(c, "total_step", "AdaLoRA does not work when `total_step` is null, supply a value > 0");
        if (a->tinit >= a->total_step - a->tfinal)
            return ac_ferr(c, "tinit",
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
            return ac_ferr(c, "init_weights", "\"lycoris\" is only valid for LOKR");
        if (t == PC_PEFT_LOKR && l->decompose_factor == 0)
            return ac_ferr(c, "decompose_factor", "must be -1 (automatic) or a positive integer, got 0");
    }
    if (t == PC_PEFT_IA3) {
        const pc_spec *ff = &cfg->ia3.feedforward_modules, *tg = &cfg->target_modules;
        if (check_spec_regexes(c, "feedforward_modules", ff)) return -1;
        if (ff->kind == PC_SPEC_LIST && tg->kind == PC_SPEC_LIST) {
            for (size_t i = 0; i < ff->n; i++) {
                bool found = false;
                for (size_t j = 0; j < tg->n && !found; j++) found = !strcmp(ff->items[i], tg->items[j]);
                if (!found)
                    return ac_ferr(c, "feedforward_modules",
                                   "should be a subset of `target_modules`: \"%s\" is not in target_modules", ff->items[i]);
            }
        }
    }
    if (tm & T_PL) {
        const __typeof__(cfg->prompt) *p = &cfg->prompt;
        if (p->num_virtual_tokens == PC_INT_NULL || p->num_virtual_tokens <= 0)
            return ac_ferr(c, "num_virtual_tokens", "must be a positive integer (it is required)");
        if (check_opt_pos(c, "token_dim", p->token_dim) || check_opt_pos(c, "num_attention_heads", p->num_attention_heads) ||
            check_opt_pos(c, "num_layers", p->num_layers))
            return -1;
        if (p->num_transformer_submodules != PC_INT_NULL && p->num_transformer_submodules != 1 &&
            p->num_transformer_submodules != 2)
            return ac_ferr(c, "num_transformer_submodules", "must be 1, 2 or null, got %" PRId64, p->num_transformer_submodules);
        if ((tm & (T_PRE | T_PT)) && check_opt_pos(c, "encoder_hidden_size", p->encoder_hidden_size)) return -1;
        if (t == PC_PEFT_P_TUNING) {
            if (p->encoder_num_layers <= 0)
                return ac_ferr(c, "encoder_num_layers", "must be a positive integer, got %" PRId64, p->encoder_num_layers);
            if (check_prob(c, "encoder_dropout", p->encoder_dropout)) return -1;
        }
        if (tm & (T_PROMPT | T_MPT)) {
            bool mpt = t == PC_PEFT_MULTITASK_PROMPT_TUNING;
            pc_prompt_init pi = p->prompt_tuning_init;
            bool ok = pi == PC_PROMPT_INIT_RANDOM || pi == PC_PROMPT_INIT_TEXT ||
                      (mpt ? (pi >= PC_PROMPT_INIT_AVERAGE_SOURCE_TASKS && pi <= PC_PROMPT_INIT_ONLY_SOURCE_SHARED)
                           : pi == PC_PROMPT_INIT_SAMPLE_VOCAB);
            if (!ok) return ac_ferr(c, "prompt_tuning_init", "invalid value for %s", pc_peft_type_name(t));
            /* PromptTuningConfig.__post_init__ */
            if (pi == PC_PROMPT_INIT_TEXT && (!p->tokenizer_name_or_path || !p->tokenizer_name_or_path[0]))
                return ac_ferr(c, "tokenizer_name_or_path", "is required when prompt_tuning_init=\"TEXT\"");
            if (pi == PC_PROMPT_INIT_TEXT && !p->prompt_tuning_init_text)
                return ac_ferr(c, "prompt_tuning_init_text", "is required when prompt_tuning_init=\"TEXT\"");
            if (p->tokenizer_kwargs && strcmp(p->tokenizer_kwargs, "{}") != 0 && pi != PC_PROMPT_INIT_TEXT)
                return ac_ferr(c, "tokenizer_kwargs", "only valid when prompt_tuning_init=\"TEXT\"");
        }
        if (t == PC_PEFT_MULTITASK_PROMPT_TUNING) {
            if (check_opt_pos(c, "num_ranks", p->num_ranks) || check_opt_pos(c, "num_tasks", p->num_tasks)) return -1;
            if (p->prompt_tuning_init_task != PC_INT_NULL && p->prompt_tuning_init_task < 0)
                return ac_ferr(c, "prompt_tuning_init_task", "must be >= 0 or null");
        }
    }
    return 0;
}

int pc_adapter_config_validate(const pc_adapter_config *cfg, const char *source, char *err, size_t errlen) {
    pctx c = {.src = source ? source : PC_ADAPTER_CONFIG_NAME, .err = err, .errlen = errlen,
              .cfg = (pc_adapter_config *)cfg};
    if (!cfg) {
        pc_errf(err, errlen, "%s: no config", c.src);
        return -1;
    }
    return ac_validate_ctx(&c);
}
