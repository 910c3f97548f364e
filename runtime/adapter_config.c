/* adapter_config.json, PEFT-exact (see adapter_config.h): the names of PEFT's types and the table
 * of every field PEFT defines per peft_type, which reading, writing and comparing all walk. */
#include "runtime/adapter_config_internal.h"

#include <string.h>

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
    [PC_PEFT_CUSTOM] = "CUSTOM",
};
#define N_PEFT_TYPES ((int)(sizeof PEFT_TYPE_NAMES / sizeof PEFT_TYPE_NAMES[0]))

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
        if (i != PC_PEFT_CUSTOM && strcmp(s, PEFT_TYPE_NAMES[i]) == 0) return (pc_peft_type)i;
    return PC_PEFT_NONE;
}

const char *pc_adapter_config_type_name(const pc_adapter_config *cfg) {
    if (!cfg) return "?";
    if (cfg->peft_type == PC_PEFT_CUSTOM && cfg->custom_type) return cfg->custom_type;
    const char *n = pc_peft_type_name(cfg->peft_type);
    return n ? n : "?";
}

const char *pc_task_type_name(pc_task_type t) {
    if ((int)t <= 0 || (int)t >= N_TASK_TYPES) return NULL;
    return TASK_TYPE_NAMES[t];
}

pc_task_type ac_task_type_from_name(const char *s) {
    for (int i = 1; i < N_TASK_TYPES; i++)
        if (strcmp(s, TASK_TYPE_NAMES[i]) == 0) return (pc_task_type)i;
    return PC_TASK_NONE;
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
#define N_PROMPT_INITS ((int)(sizeof PROMPT_INIT_NAMES / sizeof PROMPT_INIT_NAMES[0]))

const char *ac_prompt_init_name(pc_prompt_init p) {
    if ((int)p < 0 || (int)p >= N_PROMPT_INITS) return NULL;
    return PROMPT_INIT_NAMES[p];
}

/* ------------------------------------------------------------------------------------------------
 * the field table: every key PEFT writes, per peft_type (field ids and flags: adapter_config_internal.h)
 * ---------------------------------------------------------------------------------------------- */

const field_info AC_FIELDS[F_COUNT] = {
    [F_AUTO_MAPPING] = {"auto_mapping", T_ALL, NULL, 0},
    [F_BASE_MODEL] = {"base_model_name_or_path", T_ALL, NULL, 0},
    [F_INFERENCE_MODE] = {"inference_mode", T_ALL, NULL, 0},
    [F_PEFT_TYPE] = {"peft_type", T_ALL, NULL, 0},
    [F_PEFT_VERSION] = {"peft_version", T_ALL, NULL, 0},
    [F_REVISION] = {"revision", T_ALL, NULL, 0},
    [F_TASK_TYPE] = {"task_type", T_ALL, NULL, 0},
    [F_MODULES_TO_SAVE] = {"modules_to_save", T_ALL, NULL, 0},
    [F_TARGET_MODULES] = {"target_modules", T_LORAISH | T_LYCO | T_IA3 | T_CUSTOM, NULL, 0},
    [F_EXCLUDE_MODULES] = {"exclude_modules", T_LORAISH | T_LYCO | T_IA3 | T_CUSTOM, NULL, 0},
    [F_LAYERS_TO_TRANSFORM] = {"layers_to_transform", T_LORAISH | T_LYCO | T_CUSTOM, NULL, 0},
    [F_LAYERS_PATTERN] = {"layers_pattern", T_LORAISH | T_LYCO | T_CUSTOM, NULL, 0},
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

int ac_field_lookup(const char *key, pc_peft_type t) {
    for (int i = 0; i < F_COUNT; i++)
        if ((AC_FIELDS[i].types & M(t)) && strcmp(AC_FIELDS[i].name, key) == 0) return i;
    return -1;
}
