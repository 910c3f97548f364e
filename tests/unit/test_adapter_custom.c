/* adapter_config.json for user-registered methods (PC_PEFT_CUSTOM): a peft_type the caller lists
 * in custom_types reads as a custom config whose PeftConfig and targeting fields are read and
 * validated as for LoRA and whose other keys are the method's own (custom_json). */
#include "runtime/adapter_config.h"
#include "runtime/adapter_io.h"
#include "runtime/target_match.h"

#include "cu_main.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const GAIN[] = {"GAIN"};

#define GAIN_JSON                                                                                               \
    "{\"peft_type\": \"GAIN\", \"target_modules\": [\"o_proj\"], \"task_type\": \"CAUSAL_LM\", \"init_scale\": " \
    "1.0}"

static pc_adapter_config *parse_custom(const char *json, const char *const *types, size_t n) {
    char err[512] = "";
    pc_adapter_config *c = pc_adapter_config_parse_ex(json, strlen(json), NULL, types, n, err, sizeof err);
    if (!c) fprintf(stderr, "\n  parse: %s\n  %s\n", json, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    return c;
}

/* the error message, or "" when the text parsed */
static const char *parse_err(const char *json, const char *const *types, size_t n, char *err, size_t errlen) {
    err[0] = '\0';
    pc_adapter_config *c = pc_adapter_config_parse_ex(json, strlen(json), NULL, types, n, err, errlen);
    if (c) {
        pc_adapter_config_free(c);
        err[0] = '\0';
    }
    return err;
}

static void scratch_dir(char *out, size_t n, const char *tag) {
    snprintf(out, n, "%s/test_adapter_custom.%s.%d", PEFTC_BINARY_DIR, tag, (int)getpid());
    mkdir(out, 0755);
}

/* ---------------------------------------------------------------------------------------------- */

static void test_parse_registered(void) {
    pc_adapter_config *c = parse_custom(GAIN_JSON, GAIN, 1);
    CU_ASSERT_EQUAL(c->peft_type, PC_PEFT_CUSTOM);
    CU_ASSERT_STRING_EQUAL(c->custom_type, "GAIN");
    CU_ASSERT_STRING_EQUAL(pc_adapter_config_type_name(c), "GAIN");
    CU_ASSERT_STRING_EQUAL(pc_peft_type_name(PC_PEFT_CUSTOM), "CUSTOM");
    CU_ASSERT_EQUAL(pc_peft_type_from_name("CUSTOM"), PC_PEFT_NONE);
    CU_ASSERT_EQUAL(c->task_type, PC_TASK_CAUSAL_LM);
    CU_ASSERT_EQUAL_FATAL(c->target_modules.kind, PC_SPEC_LIST);
    CU_ASSERT_EQUAL_FATAL(c->target_modules.n, 1);
    CU_ASSERT_STRING_EQUAL(c->target_modules.items[0], "o_proj");
    CU_ASSERT_EQUAL(c->exclude_modules.kind, PC_SPEC_NULL);
    CU_ASSERT_EQUAL(c->layers_to_transform.kind, PC_LAYERS_NULL);
    CU_ASSERT_FALSE(c->inference_mode);
    CU_ASSERT_EQUAL(c->n_warnings, 0);
    /* the whole object, compact, keys sorted, Python's float text */
    CU_ASSERT_STRING_EQUAL(c->custom_json, "{\"init_scale\":1.0,\"peft_type\":\"GAIN\",\"target_modules\":[\"o_proj\"],"
                                           "\"task_type\":\"CAUSAL_LM\"}");
    pc_adapter_config_free(c);

    /* one of several registered names; every common field read as for LoRA */
    static const char *const several[] = {"FOO", "GAIN", "BAR"};
    c = parse_custom("{\"peft_type\": \"BAR\", \"target_modules\": \".*\\\\.o_proj\", \"inference_mode\": true,"
                     " \"base_model_name_or_path\": \"m\", \"revision\": \"main\", \"peft_version\": \"0.17.0\","
                     " \"modules_to_save\": [\"lm_head\"], \"auto_mapping\": {\"base_model_class\": \"X\"},"
                     " \"exclude_modules\": [\"a\"]}",
                     several, 3);
    CU_ASSERT_STRING_EQUAL(c->custom_type, "BAR");
    CU_ASSERT_EQUAL(c->target_modules.kind, PC_SPEC_STRING);
    CU_ASSERT_STRING_EQUAL(c->target_modules.str, ".*\\.o_proj");
    CU_ASSERT_TRUE(c->inference_mode);
    CU_ASSERT_STRING_EQUAL(c->base_model_name_or_path, "m");
    CU_ASSERT_STRING_EQUAL(c->revision, "main");
    CU_ASSERT_STRING_EQUAL(c->peft_version, "0.17.0");
    CU_ASSERT_EQUAL(c->modules_to_save.n, 1);
    CU_ASSERT_STRING_EQUAL(c->auto_mapping, "{\"base_model_class\":\"X\"}");
    CU_ASSERT_EQUAL(c->exclude_modules.n, 1);
    pc_adapter_config_free(c);

    /* PEFT's own supported types win over a registered name; a PEFT type peftc lacks can be claimed */
    static const char *const lora_oft[] = {"LORA", "OFT"};
    c = parse_custom("{\"peft_type\": \"LORA\"}", lora_oft, 2);
    CU_ASSERT_EQUAL(c->peft_type, PC_PEFT_LORA);
    CU_ASSERT_PTR_NULL(c->custom_type);
    CU_ASSERT_PTR_NULL(c->custom_json);
    pc_adapter_config_free(c);
    c = parse_custom("{\"peft_type\": \"OFT\", \"target_modules\": [\"q\"]}", lora_oft, 2);
    CU_ASSERT_EQUAL(c->peft_type, PC_PEFT_CUSTOM);
    CU_ASSERT_STRING_EQUAL(c->custom_type, "OFT");
    pc_adapter_config_free(c);

    /* from disk, as a file and through adapter_io (a .json path: no weights) */
    char dir[512], path[600], err[512] = "";
    scratch_dir(dir, sizeof dir, "load");
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(GAIN_JSON, f);
    fclose(f);
    c = pc_adapter_config_load_ex(dir, GAIN, 1, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_STRING_EQUAL(c->custom_type, "GAIN");
    pc_adapter_config_free(c);
    pc_adapter_files af;
    CU_ASSERT_EQUAL(pc_adapter_load_ex(path, &af, GAIN, 1, err, sizeof err), 0);
    CU_ASSERT_PTR_NOT_NULL(af.cfg);
    CU_ASSERT_PTR_NULL(af.weights);
    if (af.cfg) CU_ASSERT_EQUAL(af.cfg->peft_type, PC_PEFT_CUSTOM);
    pc_adapter_close(&af);
    CU_ASSERT_EQUAL(pc_adapter_load(path, &af, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "unknown PEFT type \"GAIN\""));
    unlink(path);
    rmdir(dir);
}

static void test_unregistered_errors(void) {
    char err[512];
    /* no registry: the old message, unchanged */
    CU_ASSERT_STRING_EQUAL(parse_err(GAIN_JSON, NULL, 0, err, sizeof err),
                           "adapter_config.json: field \"peft_type\": unknown PEFT type \"GAIN\"");
    CU_ASSERT_PTR_NULL(pc_adapter_config_parse(GAIN_JSON, strlen(GAIN_JSON), NULL, err, sizeof err));
    CU_ASSERT_STRING_EQUAL(err, "adapter_config.json: field \"peft_type\": unknown PEFT type \"GAIN\"");
    /* a registry without the name: the message lists what is registered */
    static const char *const others[] = {"FOO", "BAR"};
    CU_ASSERT_STRING_EQUAL(parse_err(GAIN_JSON, others, 2, err, sizeof err),
                           "adapter_config.json: field \"peft_type\": unknown PEFT type \"GAIN\" "
                           "(registered methods: FOO, BAR)");
    /* names are case-sensitive */
    CU_ASSERT_STRING_EQUAL(parse_err("{\"peft_type\": \"gain\"}", GAIN, 1, err, sizeof err),
                           "adapter_config.json: field \"peft_type\": unknown PEFT type \"gain\" "
                           "(registered methods: GAIN)");
    /* a PEFT type peftc does not implement keeps its own message, plus the registry */
    parse_err("{\"peft_type\": \"OFT\"}", GAIN, 1, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "field \"peft_type\": \"OFT\" is not supported by peftc (supported: LORA"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "MULTITASK_PROMPT_TUNING) (registered methods: GAIN)"));
    /* "CUSTOM" is not a peft_type by itself */
    CU_ASSERT_STRING_EQUAL(parse_err("{\"peft_type\": \"CUSTOM\"}", NULL, 0, err, sizeof err),
                           "adapter_config.json: field \"peft_type\": unknown PEFT type \"CUSTOM\"");
}

/* the PeftConfig and targeting fields of a custom config: LoRA's checks and messages */
static void test_custom_field_errors(void) {
    static const struct {
        const char *json, *msg;
    } cases[] = {
        {"{\"peft_type\": \"GAIN\", \"target_modules\": 5}",
         "my/adapter_config.json: field \"target_modules\": must be a list of strings, a string or null, got 5"},
        {"{\"peft_type\": \"GAIN\", \"target_modules\": [\"o_proj\", 3]}",
         "my/adapter_config.json: field \"target_modules\": entry 1 must be a string, got 3"},
        {"{\"peft_type\": \"GAIN\", \"target_modules\": \"model.(o_proj\"}",
         "field \"target_modules\": \"model.(o_proj\" is not a valid regular expression: missing closing parenthesis"},
        {"{\"peft_type\": \"GAIN\", \"exclude_modules\": {\"a\": 1}}",
         "field \"exclude_modules\": must be a list of strings, a string or null, got {\"a\": 1}"},
        {"{\"peft_type\": \"GAIN\", \"exclude_modules\": \"[q\"}",
         "field \"exclude_modules\": \"[q\" is not a valid regular expression"},
        {"{\"peft_type\": \"GAIN\", \"layers_to_transform\": \"0\"}",
         "field \"layers_to_transform\": must be an integer, a list of integers or null, got \"0\""},
        {"{\"peft_type\": \"GAIN\", \"layers_to_transform\": [0, 1.5]}",
         "field \"layers_to_transform\": entry 1 must be an integer, got 1.5"},
        {"{\"peft_type\": \"GAIN\", \"target_modules\": [\"o\"], \"layers_pattern\": \"layers\"}",
         "field \"layers_pattern\": when `layers_pattern` is specified, `layers_to_transform` must also be specified"},
        {"{\"peft_type\": \"GAIN\", \"target_modules\": \".*o\", \"layers_to_transform\": [0]}",
         "field \"layers_to_transform\": cannot be used when `target_modules` is a str"},
        {"{\"peft_type\": \"GAIN\", \"layers_pattern\": 7, \"layers_to_transform\": [0]}",
         "field \"layers_pattern\": must be a list of strings, a string or null, got 7"},
        {"{\"peft_type\": \"GAIN\", \"task_type\": \"causal_lm\"}", "field \"task_type\": invalid task type \"causal_lm\""},
        {"{\"peft_type\": \"GAIN\", \"inference_mode\": \"yes\"}", "field \"inference_mode\": must be true or false, got \"yes\""},
        {"{\"peft_type\": \"GAIN\", \"modules_to_save\": \"lm_head\"}",
         "field \"modules_to_save\": must be a list of strings or null, got \"lm_head\""},
        {"{\"peft_type\": \"GAIN\", \"base_model_name_or_path\": 3}",
         "field \"base_model_name_or_path\": must be a string or null, got 3"},
        {"{\"peft_type\": \"GAIN\", \"auto_mapping\": [1]}", "field \"auto_mapping\": must be an object or null, got [1]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[512] = "";
        pc_adapter_config *c = pc_adapter_config_parse_ex(cases[i].json, strlen(cases[i].json), "my/adapter_config.json",
                                                          GAIN, 1, err, sizeof err);
        CU_ASSERT_PTR_NULL(c);
        if (c) {
            fprintf(stderr, "\n  case %zu accepted: %s\n", i, cases[i].json);
            pc_adapter_config_free(c);
            continue;
        }
        bool ok = strstr(err, cases[i].msg) != NULL && strncmp(err, "my/adapter_config.json: ", 24) == 0;
        if (!ok) fprintf(stderr, "\n  case %zu: got  %s\n          want %s\n", i, err, cases[i].msg);
        CU_ASSERT_TRUE(ok);
    }
}

static void test_extra_keys_kept(void) {
    /* LoRA's own keys are the method's here too: not read, not checked, not warned about */
    const char *json = "{\"peft_type\": \"GAIN\", \"target_modules\": [\"o_proj\"], \"init_scale\": 0.1,"
                       " \"r\": \"not a LoRA r\", \"runtime_config\": {\"x\": 1}, \"gate\": {\"kind\": \"sigmoid\","
                       " \"bias\": [1, 2.5, null]}, \"label\": \"caf\\u00e9\", \"enable_lora\": null}";
    pc_adapter_config *c = parse_custom(json, GAIN, 1);
    CU_ASSERT_EQUAL(c->n_warnings, 0);
    CU_ASSERT_EQUAL(c->r, 8); /* untouched default */
    CU_ASSERT_STRING_EQUAL(c->custom_json,
                           "{\"enable_lora\":null,\"gate\":{\"bias\":[1,2.5,null],\"kind\":\"sigmoid\"},"
                           "\"init_scale\":0.1,\"label\":\"caf\\u00e9\",\"peft_type\":\"GAIN\",\"r\":\"not a LoRA r\","
                           "\"runtime_config\":{\"x\":1},\"target_modules\":[\"o_proj\"]}");
    CU_ASSERT_STRING_EQUAL(pc_adapter_config_custom_string(c, "label"), "caf\xc3\xa9");
    CU_ASSERT_STRING_EQUAL(pc_adapter_config_custom_string(c, "r"), "not a LoRA r");
    pc_adapter_config_free(c);
}

static void test_write_roundtrip(void) {
    char err[512] = "";
    pc_adapter_config *c = parse_custom(GAIN_JSON, GAIN, 1);
    char *txt = pc_adapter_config_to_json(c, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(txt);
    /* PEFT's format: every common and targeting field, indent 2, sorted, no LoRA fields */
    CU_ASSERT_STRING_EQUAL(txt, "{\n"
                                "  \"auto_mapping\": null,\n"
                                "  \"base_model_name_or_path\": null,\n"
                                "  \"exclude_modules\": null,\n"
                                "  \"inference_mode\": false,\n"
                                "  \"init_scale\": 1.0,\n"
                                "  \"layers_pattern\": null,\n"
                                "  \"layers_to_transform\": null,\n"
                                "  \"modules_to_save\": null,\n"
                                "  \"peft_type\": \"GAIN\",\n"
                                "  \"peft_version\": null,\n"
                                "  \"revision\": null,\n"
                                "  \"target_modules\": [\n"
                                "    \"o_proj\"\n"
                                "  ],\n"
                                "  \"task_type\": \"CAUSAL_LM\"\n"
                                "}");
    pc_adapter_config *back = parse_custom(txt, GAIN, 1);
    CU_ASSERT_TRUE(pc_adapter_config_equal(c, back));
    CU_ASSERT_TRUE(pc_adapter_config_equal(back, c));
    char *txt2 = pc_adapter_config_to_json(back, err, sizeof err);
    CU_ASSERT_STRING_EQUAL(txt, txt2); /* stable */
    free(txt2);
    pc_adapter_config_free(back);
    free(txt);

    /* the struct's current values win over the copies in custom_json */
    pc_adapter_config *e = pc_adapter_config_clone(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    CU_ASSERT_TRUE(pc_adapter_config_equal(c, e));
    pc_spec_set_list(&e->target_modules, (const char *[]){"o_proj", "down_proj"}, 2);
    pc_layers_set_list(&e->layers_to_transform, (const int64_t[]){1, 3}, 2);
    e->inference_mode = true;
    CU_ASSERT_FALSE(pc_adapter_config_equal(c, e));
    char dir[512];
    scratch_dir(dir, sizeof dir, "write");
    CU_ASSERT_EQUAL(pc_adapter_config_write(e, dir, err, sizeof err), 0);
    back = pc_adapter_config_load_ex(dir, GAIN, 1, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(back);
    CU_ASSERT_TRUE(pc_adapter_config_equal(e, back));
    CU_ASSERT_EQUAL(back->target_modules.n, 2);
    CU_ASSERT_EQUAL(back->layers_to_transform.n, 2);
    CU_ASSERT_TRUE(back->inference_mode);
    double v = 0;
    CU_ASSERT_EQUAL(pc_adapter_config_custom_number(back, "init_scale", &v), 0);
    CU_ASSERT_DOUBLE_EQUAL(v, 1.0, 0);
    pc_adapter_config_free(back);
    char path[600];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    unlink(path);
    rmdir(dir);

    /* the method's own fields and its name take part in equality */
    CU_ASSERT_EQUAL(pc_config_set_str(&e->custom_json, "{\"init_scale\":2.0}"), 0);
    pc_adapter_config *f = pc_adapter_config_clone(e);
    CU_ASSERT_TRUE(pc_adapter_config_equal(e, f));
    CU_ASSERT_EQUAL(pc_config_set_str(&f->custom_json, "{\"init_scale\":2}"), 0); /* int vs float, as Python's repr */
    CU_ASSERT_FALSE(pc_adapter_config_equal(e, f));
    CU_ASSERT_EQUAL(pc_config_set_str(&f->custom_json, "{\"init_scale\":2.0, \"peft_type\":\"X\"}"), 0);
    CU_ASSERT_TRUE(pc_adapter_config_equal(e, f)); /* struct-held keys in custom_json do not count */
    CU_ASSERT_EQUAL(pc_config_set_str(&f->custom_type, "GAIN2"), 0);
    CU_ASSERT_FALSE(pc_adapter_config_equal(e, f));
    pc_adapter_config_free(f);
    pc_adapter_config_free(e);
    pc_adapter_config_free(c);
}

static void test_build_in_code(void) {
    char err[512] = "";
    pc_adapter_config *c = pc_adapter_config_new(PC_PEFT_CUSTOM);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_PTR_NULL(c->custom_type);
    CU_ASSERT_STRING_EQUAL(c->custom_json, "{}");
    CU_ASSERT_STRING_EQUAL(pc_adapter_config_type_name(c), "CUSTOM");
    /* a custom config needs its method's name, and not one of PEFT's */
    CU_ASSERT_EQUAL(pc_adapter_config_validate(c, NULL, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "field \"peft_type\": a custom method's config needs its method name"));
    CU_ASSERT_PTR_NULL(pc_adapter_config_to_json(c, err, sizeof err));
    pc_config_set_str(&c->custom_type, "LORA");
    CU_ASSERT_EQUAL(pc_adapter_config_validate(c, NULL, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "\"LORA\" is one of PEFT's own types"));
    pc_config_set_str(&c->custom_type, "GAIN");
    pc_config_set_str(&c->custom_json, "[1]");
    CU_ASSERT_EQUAL(pc_adapter_config_validate(c, NULL, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "custom_json of method GAIN must be the JSON text of an object"));
    pc_config_set_str(&c->custom_json, "{\"init_scale\": 0.5, \"task_type\": \"SEQ_CLS\"}");
    c->task_type = PC_TASK_CAUSAL_LM;
    pc_spec_set_list(&c->target_modules, (const char *[]){"o_proj"}, 1);
    CU_ASSERT_EQUAL(pc_adapter_config_validate(c, NULL, err, sizeof err), 0);

    char *txt = pc_adapter_config_to_json(c, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(txt);
    CU_ASSERT_PTR_NOT_NULL(strstr(txt, "\n  \"init_scale\": 0.5,\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(txt, "\n  \"peft_type\": \"GAIN\",\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(txt, "\n  \"task_type\": \"CAUSAL_LM\"\n")); /* the struct's value */
    CU_ASSERT_PTR_NULL(strstr(txt, "SEQ_CLS"));
    CU_ASSERT_PTR_NULL(strstr(txt, "\"r\""));
    pc_adapter_config *back = parse_custom(txt, GAIN, 1);
    CU_ASSERT_TRUE(pc_adapter_config_equal(c, back));
    pc_adapter_config_free(back);
    free(txt);
    pc_adapter_config_free(c);
}

static void test_accessors(void) {
    pc_adapter_config *c = parse_custom("{\"peft_type\": \"GAIN\", \"target_modules\": [\"o_proj\"], \"init_scale\": 1.5,"
                                        " \"steps\": 3, \"mode\": \"mul\", \"off\": null, \"flags\": [1], \"on\": true}",
                                        GAIN, 1);
    double v = -1;
    CU_ASSERT_EQUAL(pc_adapter_config_custom_number(c, "init_scale", &v), 0);
    CU_ASSERT_DOUBLE_EQUAL(v, 1.5, 0);
    CU_ASSERT_EQUAL(pc_adapter_config_custom_number(c, "steps", &v), 0);
    CU_ASSERT_DOUBLE_EQUAL(v, 3.0, 0);
    v = 7;
    CU_ASSERT_EQUAL(pc_adapter_config_custom_number(c, "missing", &v), 1);
    CU_ASSERT_EQUAL(pc_adapter_config_custom_number(c, "off", &v), 1);
    CU_ASSERT_DOUBLE_EQUAL(v, 7.0, 0); /* untouched */
    CU_ASSERT_EQUAL(pc_adapter_config_custom_number(c, "mode", &v), -1);
    CU_ASSERT_EQUAL(pc_adapter_config_custom_number(c, "flags", &v), -1);
    CU_ASSERT_EQUAL(pc_adapter_config_custom_number(c, "on", &v), -1);
    CU_ASSERT_EQUAL(pc_adapter_config_custom_number(c, "init_scale", NULL), 0);

    const char *mode = pc_adapter_config_custom_string(c, "mode");
    CU_ASSERT_STRING_EQUAL(mode, "mul");
    CU_ASSERT_PTR_EQUAL(pc_adapter_config_custom_string(c, "mode"), mode); /* parsed once */
    CU_ASSERT_STRING_EQUAL(pc_adapter_config_custom_string(c, "peft_type"), "GAIN");
    CU_ASSERT_PTR_NULL(pc_adapter_config_custom_string(c, "steps"));
    CU_ASSERT_PTR_NULL(pc_adapter_config_custom_string(c, "off"));
    CU_ASSERT_PTR_NULL(pc_adapter_config_custom_string(c, "missing"));
    CU_ASSERT_PTR_NULL(pc_adapter_config_custom_string(c, NULL));

    /* custom_json edited in code: the accessors follow, earlier results stay valid */
    pc_config_set_str(&c->custom_json, "{\"mode\": \"add\"}");
    CU_ASSERT_STRING_EQUAL(pc_adapter_config_custom_string(c, "mode"), "add");
    CU_ASSERT_STRING_EQUAL(mode, "mul");
    CU_ASSERT_EQUAL(pc_adapter_config_custom_number(c, "init_scale", &v), 1);
    pc_config_set_str(&c->custom_json, "not json");
    CU_ASSERT_PTR_NULL(pc_adapter_config_custom_string(c, "mode"));
    CU_ASSERT_EQUAL(pc_adapter_config_custom_number(c, "mode", &v), 1);
    pc_adapter_config_free(c);

    /* other config types: no custom_json, every field absent */
    c = pc_adapter_config_new(PC_PEFT_LORA);
    CU_ASSERT_PTR_NULL(c->custom_json);
    CU_ASSERT_EQUAL(pc_adapter_config_custom_number(c, "r", &v), 1);
    CU_ASSERT_PTR_NULL(pc_adapter_config_custom_string(c, "bias"));
    pc_adapter_config_free(c);
    CU_ASSERT_EQUAL(pc_adapter_config_custom_number(NULL, "x", &v), 1);
    CU_ASSERT_PTR_NULL(pc_adapter_config_custom_string(NULL, "x"));
}

static void test_matcher(void) {
    char err[512] = "";
    pc_adapter_config *c = parse_custom(GAIN_JSON, GAIN, 1);
    pc_target_matcher *m = pc_target_matcher_new(c, err, sizeof err);
    if (!m) fprintf(stderr, "\n  matcher: %s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(pc_target_match(m, "model.layers.0.self_attn.o_proj"), 1);
    CU_ASSERT_EQUAL(pc_target_match(m, "model.layers.31.self_attn.o_proj"), 1);
    CU_ASSERT_EQUAL(pc_target_match(m, "o_proj"), 1);
    CU_ASSERT_EQUAL(pc_target_match(m, "model.layers.0.self_attn.q_proj"), 0);
    CU_ASSERT_EQUAL(pc_target_match(m, "model.layers.0.self_attn.xo_proj"), 0);
    int r = 0;
    double alpha = 0;
    CU_ASSERT_EQUAL(pc_target_rank_alpha(m, "model.layers.0.self_attn.o_proj", &r, &alpha), -1);
    CU_ASSERT_EQUAL(pc_target_is_feedforward(m, "model.layers.0.mlp.down_proj"), -1);
    pc_target_matcher_free(m);

    /* layers_to_transform / exclude_modules / modules_to_save as for LoRA */
    pc_adapter_config_free(c);
    c = parse_custom("{\"peft_type\": \"GAIN\", \"target_modules\": [\"o_proj\"], \"layers_to_transform\": [1],"
                     " \"layers_pattern\": \"layers\", \"exclude_modules\": [\"vision.o_proj\"]}",
                     GAIN, 1);
    m = pc_target_matcher_new(c, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(pc_target_match_ex(m, "model.layers.1.self_attn.o_proj"), PC_MATCH_YES);
    CU_ASSERT_EQUAL(pc_target_match_ex(m, "model.layers.0.self_attn.o_proj"), PC_MATCH_LAYER_FILTERED);
    CU_ASSERT_EQUAL(pc_target_match_ex(m, "model.vision.o_proj"), PC_MATCH_EXCLUDED);
    pc_target_matcher_free(m);

    /* no per-model defaults for a user's method */
    pc_spec_clear(&c->target_modules);
    CU_ASSERT_PTR_NULL(pc_target_matcher_new(c, err, sizeof err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "field \"target_modules\" is null"));
    CU_ASSERT_EQUAL(pc_adapter_config_fill_default_targets(c, "llama", err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "peft_type GAIN has no per-model default target modules"));
    pc_adapter_config_free(c);
}

static CU_TestInfo tests[] = {
    {"parse_registered", test_parse_registered},
    {"unregistered_errors", test_unregistered_errors},
    {"custom_field_errors", test_custom_field_errors},
    {"extra_keys_kept", test_extra_keys_kept},
    {"write_roundtrip", test_write_roundtrip},
    {"build_in_code", test_build_in_code},
    {"accessors", test_accessors},
    {"matcher", test_matcher},
    CU_TEST_INFO_NULL,
};

PC_TEST_MAIN("adapter_custom", tests)
