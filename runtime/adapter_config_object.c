/* The in-memory adapter config: PEFT's defaults, deep copies, Python-semantics equality, freeing,
 * and the pc_spec / pc_layers / pc_pattern value types it is built from. See adapter_config.h. */
#include "runtime/adapter_config_internal.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

char *ac_strdup(const char *s) {
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

/* ------------------------------------------------------------------------------------------------
 * value types: pc_spec, pc_layers, pc_pattern
 * ---------------------------------------------------------------------------------------------- */

void ac_spec_free(pc_spec *s) {
    free(s->str);
    for (size_t i = 0; i < s->n; i++) free(s->items[i]);
    free(s->items);
    memset(s, 0, sizeof *s);
}

void pc_spec_clear(pc_spec *s) {
    if (s) ac_spec_free(s);
}

int pc_spec_set_list(pc_spec *s, const char *const *items, size_t n) {
    if (!s || (n && !items)) return -1;
    pc_spec t = {.kind = PC_SPEC_LIST};
    if (n) {
        t.items = calloc(n, sizeof *t.items);
        if (!t.items) return -1;
    }
    for (size_t i = 0; i < n; i++) {
        t.items[i] = ac_strdup(items[i] ? items[i] : "");
        t.n = i + 1;
        if (!t.items[i]) {
            ac_spec_free(&t);
            return -1;
        }
    }
    ac_spec_free(s);
    *s = t;
    return 0;
}

int pc_spec_set_string(pc_spec *s, const char *str) {
    if (!s || !str) return -1;
    char *c = ac_strdup(str);
    if (!c) return -1;
    ac_spec_free(s);
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

pc_pattern_entry *ac_pattern_push(pc_pattern *p, const char *key) {
    pc_pattern_entry *items = realloc(p->items, (p->n + 1) * sizeof *items);
    if (!items) return NULL;
    p->items = items;
    pc_pattern_entry *e = &items[p->n];
    memset(e, 0, sizeof *e);
    e->key = ac_strdup(key);
    if (!e->key) return NULL;
    p->n++;
    p->is_null = false;
    return e;
}

int pc_pattern_add(pc_pattern *p, const char *key, double value, bool is_int) {
    if (!p || !key) return -1;
    pc_pattern_entry *e = ac_pattern_push(p, key);
    if (!e) return -1;
    e->value.v = value;
    e->value.is_int = is_int;
    return 0;
}

static int pattern_copy(pc_pattern *dst, const pc_pattern *src) {
    memset(dst, 0, sizeof *dst);
    dst->is_null = src->is_null;
    for (size_t i = 0; i < src->n; i++) {
        pc_pattern_entry *e = ac_pattern_push(dst, src->items[i].key);
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

static bool num_equal(pc_num a, pc_num b) {
    return a.v == b.v && a.is_int == b.is_int && (!a.is_int || pc_num_int64(a) == pc_num_int64(b));
}

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
        c = ac_strdup(value);
        if (!c) return -1;
    }
    free(*field);
    *field = c;
    return 0;
}

/* ------------------------------------------------------------------------------------------------
 * whole configs
 * ---------------------------------------------------------------------------------------------- */

pc_adapter_config *pc_adapter_config_new(pc_peft_type type) {
    if (!pc_peft_type_name(type)) return NULL;
    pc_adapter_config *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->peft_type = type;
    c->r = 8;
    /* LoRA defaults */
    c->lora.lora_alpha = ac_num_int(8);
    c->lora.lora_dropout = ac_num_float(0.0);
    c->lora.bias = PC_BIAS_NONE;
    c->lora.init_lora_weights = PC_LORA_INIT_TRUE;
    c->lora.megatron_core = ac_strdup("megatron.core");
    c->lora.qalora_group_size = 16;
    /* AdaLoRA keeps rank_pattern None; everything else uses {} */
    c->rank_pattern.is_null = (type == PC_PEFT_ADALORA);
    /* LyCORIS */
    c->lycoris.alpha = ac_num_int(8);
    c->lycoris.rank_dropout = ac_num_float(0.0);
    c->lycoris.module_dropout = ac_num_float(0.0);
    c->lycoris.init_weights = PC_LYCORIS_INIT_TRUE;
    c->lycoris.decompose_factor = -1;
    /* AdaLoRA */
    c->adalora.target_r = 8;
    c->adalora.init_r = 12;
    c->adalora.tinit = 0;
    c->adalora.tfinal = 0;
    c->adalora.deltaT = 1;
    c->adalora.beta1 = ac_num_float(0.85);
    c->adalora.beta2 = ac_num_float(0.85);
    c->adalora.orth_reg_weight = ac_num_float(0.5);
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
    c->prompt.encoder_dropout = ac_num_float(0.0);
    c->prompt.prompt_tuning_init = PC_PROMPT_INIT_RANDOM;
    c->prompt.prompt_tuning_init_task = 0;
    c->prompt.num_ranks = 1;
    c->prompt.num_tasks = 1;
    if (!c->lora.megatron_core || (type == PC_PEFT_CUSTOM && !(c->custom_json = ac_strdup("{}")))) {
        free(c->lora.megatron_core);
        free(c);
        return NULL;
    }
    return c;
}

/* every owned string and pc_spec member of a config: freeing and cloning both walk these lists,
 * so a new member is added in one place */
static const size_t OWNED_STRINGS[] = {
    offsetof(pc_adapter_config, base_model_name_or_path),
    offsetof(pc_adapter_config, revision),
    offsetof(pc_adapter_config, peft_version),
    offsetof(pc_adapter_config, auto_mapping),
    offsetof(pc_adapter_config, lora.init_lora_weights_text),
    offsetof(pc_adapter_config, lora.megatron_core),
    offsetof(pc_adapter_config, prompt.prompt_tuning_init_text),
    offsetof(pc_adapter_config, prompt.tokenizer_name_or_path),
    offsetof(pc_adapter_config, prompt.tokenizer_kwargs),
    offsetof(pc_adapter_config, prompt.prompt_tuning_init_state_dict_path),
    offsetof(pc_adapter_config, custom_type),
    offsetof(pc_adapter_config, custom_json),
};
static const size_t OWNED_SPECS[] = {
    offsetof(pc_adapter_config, modules_to_save),
    offsetof(pc_adapter_config, target_modules),
    offsetof(pc_adapter_config, exclude_modules),
    offsetof(pc_adapter_config, layers_pattern),
    offsetof(pc_adapter_config, ia3.feedforward_modules),
};
#define N_OWNED_STRINGS (sizeof OWNED_STRINGS / sizeof OWNED_STRINGS[0])
#define N_OWNED_SPECS (sizeof OWNED_SPECS / sizeof OWNED_SPECS[0])

static char **string_at(pc_adapter_config *c, size_t off) { return (char **)((char *)c + off); }
static const char *string_in(const pc_adapter_config *c, size_t off) {
    return *(char *const *)((const char *)c + off);
}
static pc_spec *spec_at(pc_adapter_config *c, size_t off) { return (pc_spec *)((char *)c + off); }
static const pc_spec *spec_in(const pc_adapter_config *c, size_t off) {
    return (const pc_spec *)((const char *)c + off);
}

void pc_adapter_config_free(pc_adapter_config *c) {
    if (!c) return;
    for (size_t i = 0; i < N_OWNED_STRINGS; i++) free(*string_at(c, OWNED_STRINGS[i]));
    for (size_t i = 0; i < N_OWNED_SPECS; i++) ac_spec_free(spec_at(c, OWNED_SPECS[i]));
    pc_layers_clear(&c->layers_to_transform);
    pc_pattern_clear(&c->rank_pattern, false);
    pc_pattern_clear(&c->alpha_pattern, false);
    for (size_t i = 0; i < c->n_warnings; i++) free(c->warnings[i]);
    free(c->warnings);
    ac_custom_cache_free(c);
    free(c);
}

pc_adapter_config *pc_adapter_config_clone(const pc_adapter_config *s) {
    if (!s) return NULL;
    pc_adapter_config *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    *c = *s; /* scalars; every pointer is replaced below */
    for (size_t i = 0; i < N_OWNED_STRINGS; i++) *string_at(c, OWNED_STRINGS[i]) = NULL;
    for (size_t i = 0; i < N_OWNED_SPECS; i++) memset(spec_at(c, OWNED_SPECS[i]), 0, sizeof(pc_spec));
    c->warnings = NULL;
    c->n_warnings = 0;
    c->custom_cache_ = NULL;
    memset(&c->layers_to_transform, 0, sizeof c->layers_to_transform);
    memset(&c->rank_pattern, 0, sizeof c->rank_pattern);
    memset(&c->alpha_pattern, 0, sizeof c->alpha_pattern);
    int bad = 0;
    for (size_t i = 0; i < N_OWNED_STRINGS; i++)
        bad |= pc_config_set_str(string_at(c, OWNED_STRINGS[i]), string_in(s, OWNED_STRINGS[i]));
    for (size_t i = 0; i < N_OWNED_SPECS; i++)
        bad |= spec_copy(spec_at(c, OWNED_SPECS[i]), spec_in(s, OWNED_SPECS[i]));
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
            c->warnings[i] = ac_strdup(s->warnings[i]);
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

/* two JSON texts (NULL = null) hold equal values; text that does not parse equals nothing */
static bool json_text_equal(const char *a, const char *b) {
    if (!a || !b) return a == b;
    json_t *x = json_loads(a, 0, NULL), *y = json_loads(b, 0, NULL);
    bool eq = x && y && json_equal(x, y);
    json_decref(x);
    json_decref(y);
    return eq;
}

bool pc_adapter_config_equal(const pc_adapter_config *a, const pc_adapter_config *b) {
    if (!a || !b) return a == b;
    if (a->peft_type != b->peft_type || a->task_type != b->task_type || a->inference_mode != b->inference_mode)
        return false;
    if (!str_eq_null(a->base_model_name_or_path, b->base_model_name_or_path) ||
        !str_eq_null(a->revision, b->revision) || !str_eq_null(a->peft_version, b->peft_version))
        return false;
    if (!json_text_equal(a->auto_mapping, b->auto_mapping)) return false;
    if (!spec_equal(&a->modules_to_save, &b->modules_to_save)) return false;
    pc_peft_type t = a->peft_type;
    unsigned tm = M(t);
    if ((tm & T_CUSTOM) && !str_eq_null(a->custom_type, b->custom_type)) return false;
    if (((tm & T_CUSTOM) || a->custom_json || b->custom_json) && !ac_custom_fields_equal(a, b))
        return false;
    if (tm & (T_LORAISH | T_LYCO | T_IA3 | T_CUSTOM)) {
        if (!spec_set_equal(&a->target_modules, &b->target_modules) ||
            !spec_set_equal(&a->exclude_modules, &b->exclude_modules))
            return false;
    }
    if ((tm & T_CUSTOM) && (!layers_equal(&a->layers_to_transform, &b->layers_to_transform) ||
                            !spec_equal(&a->layers_pattern, &b->layers_pattern)))
        return false;
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
            if (!json_text_equal(x->tokenizer_kwargs, y->tokenizer_kwargs)) return false;
        }
        if ((tm & T_MPT) &&
            (!str_eq_null(x->prompt_tuning_init_state_dict_path, y->prompt_tuning_init_state_dict_path) ||
             x->prompt_tuning_init_task != y->prompt_tuning_init_task || x->num_ranks != y->num_ranks ||
             x->num_tasks != y->num_tasks))
            return false;
    }
    return true;
}

