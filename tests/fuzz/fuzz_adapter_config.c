/* adapter_config.json reader and validator (runtime/adapter_config_*.c): the input is the JSON
 * text. Oracles: a config that reads validates; its clone is equal; it writes (PEFT's text) and
 * the text reads back to an equal config that writes the same text. Configs of the
 * layer-wrapping methods then get their default targets for "llama", "all-linear" expanded and a
 * target matcher built and run over a fixed set of Llama / GPT-2 module names. */
#include "runtime/adapter_config.h"
#include "runtime/target_match.h"
#include "tests/fuzz/fuzz_common.h"

#include "tests/fuzz/module_names.h"

static const char *const custom_types[] = {"GAIN", "MY_METHOD"};

static int is_linear(void *ctx, const char *name) {
    (void)ctx;
    return strstr(name, "proj") || strstr(name, "c_attn") || strstr(name, "c_fc");
}

static void match_all(pc_adapter_config *cfg) {
    char err[1024];
    switch (cfg->peft_type) {
    case PC_PEFT_LORA: case PC_PEFT_LOHA: case PC_PEFT_LOKR: case PC_PEFT_ADALORA: case PC_PEFT_IA3:
    case PC_PEFT_CUSTOM: break;
    default: return;
    }
    if (pc_adapter_config_fill_default_targets(cfg, "llama", err, sizeof err)) return;
    FUZZ_CHECK(pc_adapter_config_expand_all_linear(cfg, fuzz_module_names, FUZZ_N_MODULE_NAMES, is_linear,
                                                   NULL, err, sizeof err) == 0,
               "expand all-linear: %s", err);
    pc_target_matcher *m = pc_target_matcher_new(cfg, err, sizeof err);
    if (!m) return;
    for (size_t i = 0; i < FUZZ_N_MODULE_NAMES; i++) {
        const char *name = fuzz_module_names[i];
        pc_match_result r = pc_target_match_ex(m, name);
        int y = pc_target_match(m, name);
        FUZZ_CHECK(y == (r == PC_MATCH_YES ? 1 : r == PC_MATCH_ERROR ? -1 : 0), "match vs match_ex on %s", name);
        int rank;
        double alpha;
        (void)pc_target_rank_alpha(m, name, &rank, &alpha);
        (void)pc_target_rank_key(m, name);
        (void)pc_target_alpha_key(m, name);
        (void)pc_target_is_feedforward(m, name);
    }
    pc_target_matcher_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[2048];
    pc_adapter_config *cfg = pc_adapter_config_parse_ex((const char *)data, size, "fuzz.json", custom_types, 2,
                                                        err, sizeof err);
    if (!cfg) return 0;
    FUZZ_CHECK(pc_adapter_config_validate(cfg, "fuzz.json", err, sizeof err) == 0,
               "a config that reads does not validate: %s", err);
    pc_adapter_config *c2 = pc_adapter_config_clone(cfg);
    FUZZ_CHECK(c2 && pc_adapter_config_equal(cfg, c2), "clone differs");
    pc_adapter_config_free(c2);
    char *json = pc_adapter_config_to_json(cfg, err, sizeof err);
    FUZZ_CHECK(json, "a config that reads does not write: %s", err);
    c2 = pc_adapter_config_parse_ex(json, strlen(json), "written.json", custom_types, 2, err, sizeof err);
    FUZZ_CHECK(c2, "the written config does not read back: %s\n%s", err, json);
    FUZZ_CHECK(pc_adapter_config_equal(cfg, c2), "the written config reads back different:\n%s", json);
    char *json2 = pc_adapter_config_to_json(c2, err, sizeof err);
    FUZZ_CHECK(json2 && strcmp(json, json2) == 0, "writing is not stable:\n%s\n----\n%s", json, json2 ? json2 : err);
    free(json2);
    free(json);
    (void)pc_adapter_config_type_name(cfg);
    (void)pc_adapter_config_custom_string(cfg, "peft_type");
    double d;
    (void)pc_adapter_config_custom_number(cfg, "r", &d);
    match_all(cfg);
    pc_adapter_config_free(c2);
    pc_adapter_config_free(cfg);
    return 0;
}
