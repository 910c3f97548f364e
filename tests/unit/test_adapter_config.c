/* adapter_config.json: reading PEFT's files, writing them back byte-for-byte, and clear errors.
 * The fixtures in tests/data/peft_configs were produced by PEFT's own config classes
 * (LoraConfig(...).save_pretrained, PEFT 0.20.1.dev0 @5d602fd and 0.13.0). */
#include "runtime/adapter_config.h"

#include "cu_main.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIXTURE(name) PEFTC_SOURCE_DIR "/tests/data/peft_configs/" name

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    if (p) p[n] = '\0';
    if (len) *len = (size_t)n;
    return p;
}

static pc_adapter_config *load_ok(const char *path) {
    char err[512] = "";
    pc_adapter_config *c = pc_adapter_config_load(path, err, sizeof err);
    if (!c) fprintf(stderr, "\n  load %s: %s\n", path, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    return c;
}

static pc_adapter_config *parse_ok(const char *json) {
    char err[512] = "";
    pc_adapter_config *c = pc_adapter_config_parse(json, strlen(json), NULL, err, sizeof err);
    if (!c) fprintf(stderr, "\n  parse: %s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    return c;
}

static bool has_item(const pc_spec *s, const char *item) {
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->items[i], item)) return true;
    return false;
}

/* a fresh directory under the build tree */
static void scratch_dir(char *out, size_t n, const char *tag) {
    snprintf(out, n, "%s/test_adapter_config.%s.%d", PEFTC_BINARY_DIR, tag, (int)getpid());
    mkdir(out, 0755);
}

static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* ---------------------------------------------------------------------------------------------- */

static void test_lora_complete(void) {
    pc_adapter_config *c = load_ok(FIXTURE("lora_llama.json"));
    CU_ASSERT_EQUAL(c->peft_type, PC_PEFT_LORA);
    CU_ASSERT_EQUAL(c->task_type, PC_TASK_CAUSAL_LM);
    CU_ASSERT_STRING_EQUAL(c->base_model_name_or_path, "meta-llama/Llama-3.2-1B");
    CU_ASSERT_PTR_NULL(c->revision);
    CU_ASSERT_STRING_EQUAL(c->peft_version, "0.20.1.dev0@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40");
    CU_ASSERT_TRUE(c->inference_mode);
    CU_ASSERT_PTR_NULL(c->auto_mapping);
    CU_ASSERT_EQUAL(c->r, 16);
    CU_ASSERT_EQUAL(c->lora.lora_alpha.v, 32.0);
    CU_ASSERT_TRUE(c->lora.lora_alpha.is_int);
    CU_ASSERT_DOUBLE_EQUAL(c->lora.lora_dropout.v, 0.05, 0);
    CU_ASSERT_FALSE(c->lora.lora_dropout.is_int);
    CU_ASSERT_EQUAL(c->target_modules.kind, PC_SPEC_LIST);
    CU_ASSERT_EQUAL(c->target_modules.n, 4);
    CU_ASSERT_TRUE(has_item(&c->target_modules, "q_proj") && has_item(&c->target_modules, "o_proj"));
    CU_ASSERT_EQUAL(c->exclude_modules.kind, PC_SPEC_NULL);
    CU_ASSERT_EQUAL(c->modules_to_save.kind, PC_SPEC_NULL);
    CU_ASSERT_EQUAL(c->layers_to_transform.kind, PC_LAYERS_NULL);
    CU_ASSERT_EQUAL(c->layers_pattern.kind, PC_SPEC_NULL);
    CU_ASSERT_FALSE(c->rank_pattern.is_null);
    CU_ASSERT_EQUAL(c->rank_pattern.n, 0);
    CU_ASSERT_EQUAL(c->alpha_pattern.n, 0);
    CU_ASSERT_EQUAL(c->lora.bias, PC_BIAS_NONE);
    CU_ASSERT_EQUAL(c->lora.init_lora_weights, PC_LORA_INIT_TRUE);
    CU_ASSERT_FALSE(c->lora.use_rslora || c->lora.use_dora || c->lora.lora_bias || c->fan_in_fan_out);
    CU_ASSERT_STRING_EQUAL(c->lora.megatron_core, "megatron.core");
    CU_ASSERT_EQUAL(c->lora.qalora_group_size, 16);
    CU_ASSERT_EQUAL(c->n_warnings, 0); /* every null/false/{} field PEFT writes is accepted silently */
    pc_adapter_config_free(c);
}

/* load -> to_json gives the file back byte for byte; write -> load gives an equal config */
static void test_roundtrip_all_fixtures(void) {
    static const char *const names[] = {
        "lora_llama.json", "lora_regex_target.json", "lora_rank_alpha_pattern.json", "lora_dora.json",
        "lora_rslora.json", "lora_gpt2_custom.json", "loha.json", "lokr.json", "adalora.json", "ia3.json",
        "ia3_bert.json", "prefix_tuning.json", "prefix_tuning_projection.json", "p_tuning.json",
        "prompt_tuning_text.json", "mpt.json",
    };
    char dir[512];
    scratch_dir(dir, sizeof dir, "roundtrip");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[600];
        snprintf(path, sizeof path, "%s/tests/data/peft_configs/%s", PEFTC_SOURCE_DIR, names[i]);
        size_t len = 0;
        char *want = slurp(path, &len);
        CU_ASSERT_PTR_NOT_NULL_FATAL(want);
        pc_adapter_config *c = load_ok(path);
        CU_ASSERT_EQUAL(c->n_warnings, 0);
        char err[512] = "";
        char *got = pc_adapter_config_to_json(c, err, sizeof err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(got);
        if (strcmp(got, want) != 0) fprintf(stderr, "\n  %s differs:\n%s\n", names[i], got);
        CU_ASSERT_STRING_EQUAL(got, want);
        CU_ASSERT_EQUAL(pc_adapter_config_write(c, dir, err, sizeof err), 0);
        pc_adapter_config *back = load_ok(dir);
        CU_ASSERT_TRUE(pc_adapter_config_equal(c, back));
        pc_adapter_config *copy = pc_adapter_config_clone(c);
        CU_ASSERT_TRUE(pc_adapter_config_equal(c, copy));
        pc_adapter_config_free(copy);
        pc_adapter_config_free(back);
        pc_adapter_config_free(c);
        free(got);
        free(want);
    }
    remove_dir(dir);
}

static void test_regex_target(void) {
    pc_adapter_config *c = load_ok(FIXTURE("lora_regex_target.json"));
    CU_ASSERT_EQUAL(c->target_modules.kind, PC_SPEC_STRING);
    CU_ASSERT_STRING_EQUAL(c->target_modules.str, ".*\\.layers\\.\\d+\\.(self_attn\\.(q|v)_proj|mlp\\.down_proj)");
    CU_ASSERT_EQUAL(c->exclude_modules.kind, PC_SPEC_STRING);
    CU_ASSERT_STRING_EQUAL(c->exclude_modules.str, ".*\\.layers\\.0\\..*");
    pc_adapter_config_free(c);
}

static void test_rank_alpha_pattern(void) {
    pc_adapter_config *c = load_ok(FIXTURE("lora_rank_alpha_pattern.json"));
    CU_ASSERT_EQUAL_FATAL(c->rank_pattern.n, 3);
    /* PEFT writes sort_keys=True, so file order is sorted order */
    CU_ASSERT_STRING_EQUAL(c->rank_pattern.items[0].key, "down_proj");
    CU_ASSERT_EQUAL(c->rank_pattern.items[0].value.v, 4);
    CU_ASSERT_STRING_EQUAL(c->rank_pattern.items[1].key, "model.layers.0.self_attn.q_proj");
    CU_ASSERT_EQUAL(c->rank_pattern.items[1].value.v, 32);
    CU_ASSERT_STRING_EQUAL(c->rank_pattern.items[2].key, "q_proj");
    CU_ASSERT_EQUAL_FATAL(c->alpha_pattern.n, 2);
    CU_ASSERT_DOUBLE_EQUAL(c->alpha_pattern.items[0].value.v, 1e-05, 0);
    CU_ASSERT_FALSE(c->alpha_pattern.items[1].value.is_int); /* 24.0 stays a float */
    CU_ASSERT_EQUAL(c->layers_to_transform.kind, PC_LAYERS_LIST);
    CU_ASSERT_EQUAL(c->layers_to_transform.n, 4);
    CU_ASSERT_EQUAL(c->layers_pattern.kind, PC_SPEC_STRING);
    CU_ASSERT_STRING_EQUAL(c->layers_pattern.str, "layers");
    pc_adapter_config_free(c);

    /* a hand-written, unsorted pattern keeps file order (= Python dict order) when loaded; the
     * writer sorts keys exactly like PEFT's json.dumps(sort_keys=True) */
    c = parse_ok("{\"peft_type\": \"LORA\", \"target_modules\": [\"q_proj\"],"
                 " \"rank_pattern\": {\"q_proj\": 4, \"model.layers.0.self_attn.q_proj\": 32}}");
    CU_ASSERT_STRING_EQUAL(c->rank_pattern.items[0].key, "q_proj");
    char *txt = pc_adapter_config_to_json(c, NULL, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(txt);
    CU_ASSERT_PTR_NOT_NULL(strstr(txt, "\"rank_pattern\": {\n    \"model.layers.0.self_attn.q_proj\": 32,\n"
                                       "    \"q_proj\": 4\n  },"));
    /* equal as Python dicts are, though the reloaded order (= match order) is now sorted */
    pc_adapter_config *back = pc_adapter_config_parse(txt, strlen(txt), NULL, NULL, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(back);
    CU_ASSERT_TRUE(pc_adapter_config_equal(c, back));
    CU_ASSERT_STRING_EQUAL(back->rank_pattern.items[0].key, "model.layers.0.self_attn.q_proj");
    back->rank_pattern.items[1].value.v = 5;
    CU_ASSERT_FALSE(pc_adapter_config_equal(c, back));
    pc_adapter_config_free(back);
    free(txt);
    pc_adapter_config_free(c);
}

static void test_dora_rslora_gpt2(void) {
    pc_adapter_config *c = load_ok(FIXTURE("lora_dora.json"));
    CU_ASSERT_TRUE(c->lora.use_dora);
    CU_ASSERT_EQUAL(c->r, 32);
    CU_ASSERT_DOUBLE_EQUAL(c->lora.lora_dropout.v, 0.1, 0);
    pc_adapter_config_free(c);

    c = load_ok(FIXTURE("lora_rslora.json"));
    CU_ASSERT_TRUE(c->lora.use_rslora);
    CU_ASSERT_EQUAL(c->lora.init_lora_weights, PC_LORA_INIT_GAUSSIAN);
    CU_ASSERT_EQUAL(c->lora.bias, PC_BIAS_LORA_ONLY);
    pc_adapter_config_free(c);

    c = load_ok(FIXTURE("lora_gpt2_custom.json"));
    CU_ASSERT_TRUE(c->fan_in_fan_out);
    CU_ASSERT_EQUAL(c->task_type, PC_TASK_NONE);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c->auto_mapping);
    CU_ASSERT_PTR_NOT_NULL(strstr(c->auto_mapping, "\"base_model_class\":\"GPT2LMHeadModel\""));
    CU_ASSERT_STRING_EQUAL(c->base_model_name_or_path, "/data/mod\xc3\xa8les/gpt2 \xe2\x80\x9csmall\xe2\x80\x9d");
    CU_ASSERT_STRING_EQUAL(c->revision, "main");
    CU_ASSERT_EQUAL(c->layers_to_transform.kind, PC_LAYERS_INT);
    CU_ASSERT_EQUAL(c->layers_to_transform.items[0], 5);
    CU_ASSERT_EQUAL(c->modules_to_save.kind, PC_SPEC_LIST);
    CU_ASSERT_STRING_EQUAL(c->modules_to_save.items[0], "lm_head");
    pc_adapter_config_free(c);
}

static void test_other_methods(void) {
    pc_adapter_config *c = load_ok(FIXTURE("loha.json"));
    CU_ASSERT_EQUAL(c->peft_type, PC_PEFT_LOHA);
    CU_ASSERT_EQUAL(c->r, 32);
    CU_ASSERT_EQUAL(c->lycoris.alpha.v, 64);
    CU_ASSERT_DOUBLE_EQUAL(c->lycoris.rank_dropout.v, 0.1, 0);
    CU_ASSERT_DOUBLE_EQUAL(c->lycoris.module_dropout.v, 0.05, 0);
    CU_ASSERT_FALSE(c->lycoris.use_effective_conv2d);
    CU_ASSERT_EQUAL(c->lycoris.init_weights, PC_LYCORIS_INIT_TRUE);
    CU_ASSERT_EQUAL(c->rank_pattern.n, 1);
    pc_adapter_config_free(c);

    c = load_ok(FIXTURE("lokr.json"));
    CU_ASSERT_EQUAL(c->peft_type, PC_PEFT_LOKR);
    CU_ASSERT_TRUE(c->lycoris.decompose_both);
    CU_ASSERT_EQUAL(c->lycoris.decompose_factor, 4);
    CU_ASSERT_FALSE(c->lycoris.rank_dropout_scale);
    CU_ASSERT_EQUAL(c->lycoris.init_weights, PC_LYCORIS_INIT_LYCORIS);
    pc_adapter_config_free(c);

    c = load_ok(FIXTURE("adalora.json"));
    CU_ASSERT_EQUAL(c->peft_type, PC_PEFT_ADALORA);
    CU_ASSERT_EQUAL(c->adalora.init_r, 12);
    CU_ASSERT_EQUAL(c->adalora.target_r, 4);
    CU_ASSERT_EQUAL(c->adalora.tinit, 200);
    CU_ASSERT_EQUAL(c->adalora.tfinal, 500);
    CU_ASSERT_EQUAL(c->adalora.deltaT, 10);
    CU_ASSERT_EQUAL(c->adalora.total_step, 5000);
    CU_ASSERT_DOUBLE_EQUAL(c->adalora.beta1.v, 0.85, 0);
    CU_ASSERT_DOUBLE_EQUAL(c->adalora.orth_reg_weight.v, 0.5, 0);
    CU_ASSERT_EQUAL_FATAL(c->rank_pattern.n, 2);
    CU_ASSERT_EQUAL(c->rank_pattern.items[0].mask_len, 12);
    CU_ASSERT_EQUAL(c->rank_pattern.items[0].value.v, 4); /* kept ranks */
    CU_ASSERT_EQUAL(c->rank_pattern.items[1].value.v, 0);
    pc_adapter_config_free(c);

    c = load_ok(FIXTURE("ia3.json"));
    CU_ASSERT_EQUAL(c->peft_type, PC_PEFT_IA3);
    CU_ASSERT_EQUAL(c->ia3.feedforward_modules.kind, PC_SPEC_LIST);
    CU_ASSERT_STRING_EQUAL(c->ia3.feedforward_modules.items[0], "down_proj");
    CU_ASSERT_TRUE(c->ia3.init_ia3_weights);
    CU_ASSERT_EQUAL(c->target_modules.n, 3);
    pc_adapter_config_free(c);

    c = load_ok(FIXTURE("prefix_tuning.json"));
    CU_ASSERT_EQUAL(c->peft_type, PC_PEFT_PREFIX_TUNING);
    CU_ASSERT_EQUAL(c->prompt.num_virtual_tokens, 20);
    CU_ASSERT_EQUAL(c->prompt.token_dim, 512);
    CU_ASSERT_EQUAL(c->prompt.num_transformer_submodules, 1);
    CU_ASSERT_EQUAL(c->prompt.num_attention_heads, 8);
    CU_ASSERT_EQUAL(c->prompt.num_layers, 16);
    CU_ASSERT_EQUAL(c->prompt.encoder_hidden_size, PC_INT_NULL);
    CU_ASSERT_FALSE(c->prompt.prefix_projection);
    CU_ASSERT_FALSE(c->prompt.init_weights_zero);
    pc_adapter_config_free(c);

    c = load_ok(FIXTURE("prefix_tuning_projection.json"));
    CU_ASSERT_TRUE(c->prompt.prefix_projection);
    CU_ASSERT_TRUE(c->prompt.init_weights_zero);
    CU_ASSERT_EQUAL(c->prompt.encoder_hidden_size, 1024);
    pc_adapter_config_free(c);

    c = load_ok(FIXTURE("p_tuning.json"));
    CU_ASSERT_EQUAL(c->prompt.encoder_reparameterization_type, PC_ENCODER_LSTM);
    CU_ASSERT_EQUAL(c->prompt.encoder_num_layers, 2);
    CU_ASSERT_DOUBLE_EQUAL(c->prompt.encoder_dropout.v, 0.1, 0);
    CU_ASSERT_EQUAL(c->prompt.encoder_hidden_size, 3072);
    pc_adapter_config_free(c);

    c = load_ok(FIXTURE("prompt_tuning_text.json"));
    CU_ASSERT_EQUAL(c->prompt.prompt_tuning_init, PC_PROMPT_INIT_TEXT);
    CU_ASSERT_STRING_EQUAL(c->prompt.prompt_tuning_init_text, "Classify if the tweet is a complaint or not:\n");
    CU_ASSERT_STRING_EQUAL(c->prompt.tokenizer_name_or_path, "meta-llama/Llama-3.2-1B");
    CU_ASSERT_PTR_NOT_NULL(c->prompt.tokenizer_kwargs);
    pc_adapter_config_free(c);

    c = load_ok(FIXTURE("mpt.json"));
    CU_ASSERT_EQUAL(c->peft_type, PC_PEFT_MULTITASK_PROMPT_TUNING);
    CU_ASSERT_EQUAL(c->task_type, PC_TASK_SEQ_2_SEQ_LM);
    CU_ASSERT_EQUAL(c->prompt.num_tasks, 4);
    CU_ASSERT_EQUAL(c->prompt.num_ranks, 1);
    CU_ASSERT_EQUAL(c->prompt.prompt_tuning_init_task, 0);
    pc_adapter_config_free(c);
}

/* a PEFT 0.13 file lacks every key added since; they take PEFT's defaults and are written out */
static void test_old_peft_version(void) {
    pc_adapter_config *c = load_ok(FIXTURE("lora_peft0130.json"));
    CU_ASSERT_EQUAL(c->n_warnings, 0);
    CU_ASSERT_PTR_NULL(c->peft_version);
    CU_ASSERT_EQUAL(c->exclude_modules.kind, PC_SPEC_NULL);
    CU_ASSERT_FALSE(c->lora.lora_bias);
    CU_ASSERT_EQUAL(c->lora.qalora_group_size, 16);
    char *txt = pc_adapter_config_to_json(c, NULL, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(txt);
    CU_ASSERT_PTR_NOT_NULL(strstr(txt, "\"exclude_modules\": null,"));
    CU_ASSERT_PTR_NOT_NULL(strstr(txt, "\"use_qalora\": false,"));
    CU_ASSERT_PTR_NOT_NULL(strstr(txt, "\"peft_version\": null,"));
    pc_adapter_config *back = pc_adapter_config_parse(txt, strlen(txt), "rewritten", NULL, 0);
    CU_ASSERT_TRUE(pc_adapter_config_equal(c, back));
    pc_adapter_config_free(back);
    free(txt);
    pc_adapter_config_free(c);
}

/* a config built in code writes exactly what PEFT writes for the same arguments */
static void test_build_in_code(void) {
    pc_adapter_config *c = pc_adapter_config_new(PC_PEFT_LORA);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    c->r = 16;
    c->lora.lora_alpha = (pc_num){.v = 32, .is_int = true};
    c->lora.lora_dropout = (pc_num){.v = 0.05, .is_int = false};
    c->task_type = PC_TASK_CAUSAL_LM;
    c->inference_mode = true;
    const char *targets[] = {"q_proj", "k_proj", "v_proj", "o_proj"};
    /* PEFT wrote this set in hash order; reuse the fixture's order */
    pc_adapter_config *ref = load_ok(FIXTURE("lora_llama.json"));
    for (size_t i = 0; i < 4; i++) targets[i] = ref->target_modules.items[i];
    CU_ASSERT_EQUAL(pc_spec_set_list(&c->target_modules, targets, 4), 0);
    CU_ASSERT_EQUAL(pc_config_set_str(&c->base_model_name_or_path, "meta-llama/Llama-3.2-1B"), 0);
    CU_ASSERT_EQUAL(pc_config_set_str(&c->peft_version, "0.20.1.dev0@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40"), 0);
    CU_ASSERT_TRUE(pc_adapter_config_equal(c, ref));
    char *got = pc_adapter_config_to_json(c, NULL, 0);
    char *want = slurp(FIXTURE("lora_llama.json"), NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(got);
    CU_ASSERT_PTR_NOT_NULL_FATAL(want);
    CU_ASSERT_STRING_EQUAL(got, want);
    c->r = 17;
    CU_ASSERT_FALSE(pc_adapter_config_equal(c, ref));
    free(got);
    free(want);
    pc_adapter_config_free(ref);
    pc_adapter_config_free(c);

    /* defaults of the other methods validate (prompt learning needs num_virtual_tokens) */
    for (int t = PC_PEFT_LORA; t <= PC_PEFT_MULTITASK_PROMPT_TUNING; t++) {
        c = pc_adapter_config_new((pc_peft_type)t);
        CU_ASSERT_PTR_NOT_NULL_FATAL(c);
        if (pc_peft_type_is_prompt_learning((pc_peft_type)t)) c->prompt.num_virtual_tokens = 10;
        if (t == PC_PEFT_ADALORA) c->adalora.total_step = 100;
        char err[256] = "";
        int rc = pc_adapter_config_validate(c, NULL, err, sizeof err);
        if (rc) fprintf(stderr, "\n  %s: %s\n", pc_peft_type_name((pc_peft_type)t), err);
        CU_ASSERT_EQUAL(rc, 0);
        pc_adapter_config_free(c);
    }
    CU_ASSERT_PTR_NULL(pc_adapter_config_new(PC_PEFT_NONE));
}

/* Python's float repr and ensure_ascii string escapes, via values in a config */
static void test_python_formatting(void) {
    pc_adapter_config *c = pc_adapter_config_new(PC_PEFT_LORA);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    pc_spec_set_list(&c->target_modules, (const char *[]){"q"}, 1);
    static const struct {
        double v;
        const char *text;
    } vals[] = {
        {1e-05, "1e-05"}, {0.0001, "0.0001"}, {1e16, "1e+16"}, {1234567890123456.0, "1234567890123456.0"},
        {0.1 + 0.2, "0.30000000000000004"}, {-2.5, "-2.5"}, {1.5e-07, "1.5e-07"}, {5e-324, "5e-324"},
        {1.7976931348623157e+308, "1.7976931348623157e+308"}, {100.0, "100.0"}, {1e22, "1e+22"},
        {123456789012345678.0, "1.2345678901234568e+17"}, {2.5e-5, "2.5e-05"},
    };
    char key[32];
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        snprintf(key, sizeof key, "k%02zu", i);
        pc_pattern_add(&c->alpha_pattern, key, vals[i].v, false);
    }
    pc_pattern_add(&c->alpha_pattern, "kint", 7, true);
    pc_config_set_str(&c->base_model_name_or_path, "a\"b\\c\n\t\x01\x7f/\xc3\xa9\xf0\x9f\x98\x80 ~");
    char *txt = pc_adapter_config_to_json(c, NULL, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(txt);
    char want[128];
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        snprintf(want, sizeof want, "\"k%02zu\": %s,\n", i, vals[i].text);
        if (!strstr(txt, want)) fprintf(stderr, "\n  missing %s", want);
        CU_ASSERT_PTR_NOT_NULL(strstr(txt, want));
    }
    CU_ASSERT_PTR_NOT_NULL(strstr(txt, "\"kint\": 7\n"));
    CU_ASSERT_PTR_NOT_NULL(
        strstr(txt, "\"base_model_name_or_path\": \"a\\\"b\\\\c\\n\\t\\u0001\\u007f/\\u00e9\\ud83d\\ude00 ~\","));
    CU_ASSERT_EQUAL(txt[strlen(txt) - 1], '}'); /* no trailing newline, like json.dumps */
    /* and it reads back to the same values */
    pc_adapter_config *back = pc_adapter_config_parse(txt, strlen(txt), NULL, NULL, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(back);
    CU_ASSERT_TRUE(pc_adapter_config_equal(c, back));
    pc_adapter_config_free(back);
    free(txt);
    pc_adapter_config_free(c);
}

static void test_unknown_keys_warn(void) {
    const char *json = "{\"peft_type\": \"LORA\", \"target_modules\": [\"q_proj\", \"q_proj\", \"v_proj\"],"
                       " \"enable_lora\": null, \"runtime_config\": {\"ephemeral_gpu_offload\": false},"
                       " \"feedforward_modules\": [\"down_proj\"]}";
    pc_adapter_config *c = parse_ok(json);
    CU_ASSERT_EQUAL_FATAL(c->n_warnings, 3);
    CU_ASSERT_PTR_NOT_NULL(strstr(c->warnings[0], "\"enable_lora\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(c->warnings[1], "runtime_config"));
    CU_ASSERT_PTR_NOT_NULL(strstr(c->warnings[2], "\"feedforward_modules\"")); /* an IA3 key in a LoRA file */
    CU_ASSERT_EQUAL(c->target_modules.n, 2);                                    /* a set in PEFT */
    char *txt = pc_adapter_config_to_json(c, NULL, 0);
    CU_ASSERT_PTR_NULL(strstr(txt, "enable_lora"));
    free(txt);
    pc_adapter_config_free(c);

    /* fields PEFT itself ignores unless init_lora_weights selects them: warned, then dropped */
    c = parse_ok("{\"peft_type\": \"LORA\", \"target_modules\": [\"q\"], \"loftq_config\": {\"loftq_bits\": 4},"
                 " \"eva_config\": {\"rho\": 2.0}}");
    CU_ASSERT_EQUAL(c->n_warnings, 2);
    txt = pc_adapter_config_to_json(c, NULL, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(txt, "\"loftq_config\": {},"));
    CU_ASSERT_PTR_NOT_NULL(strstr(txt, "\"eva_config\": null,"));
    free(txt);
    pc_adapter_config_free(c);

    /* AdaLoRA warns about r like PEFT */
    c = parse_ok("{\"peft_type\": \"ADALORA\", \"r\": 4, \"total_step\": 10, \"target_modules\": [\"q\"]}");
    CU_ASSERT_EQUAL(c->n_warnings, 1);
    pc_adapter_config_free(c);
}

/* malformed configs: each gives one clear message naming the file and the field */
static void test_malformed(void) {
    static const struct {
        const char *json;
        const char *msg;
    } cases[] = {
        {"{\"peft_type\": \"LORA\", \"r\": 0}", "adapter_config.json: field \"r\": must be a positive integer, got 0"},
        {"{\"peft_type\": \"LORA\", \"r\": -4}", "field \"r\": must be a positive integer, got -4"},
        {"{\"peft_type\": \"LORA\", \"r\": \"8\"}", "field \"r\": must be a positive integer, got \"8\""},
        {"{\"peft_type\": \"LORA\", \"r\": 8.0}", "field \"r\": must be a positive integer, got 8.0"},
        {"{\"peft_type\": \"LORA\", \"lora_dropout\": 1.0}", "field \"lora_dropout\": must be a probability in [0, 1), got 1.0"},
        {"{\"peft_type\": \"LORA\", \"lora_dropout\": -0.1}", "field \"lora_dropout\": must be a probability in [0, 1), got -0.1"},
        {"{\"peft_type\": \"LORA\", \"lora_alpha\": \"16\"}", "field \"lora_alpha\": must be a number, got \"16\""},
        {"{\"peft_type\": \"LORA\", \"lora_alpha\": null}", "field \"lora_alpha\": must be a number, got null"},
        {"{\"peft_type\": \"LORA\", \"target_modules\": [\"q_proj\", 3]}", "field \"target_modules\": entry 1 must be a string, got 3"},
        {"{\"peft_type\": \"LORA\", \"target_modules\": 5}", "field \"target_modules\": must be a list of strings, a string or null, got 5"},
        {"{\"peft_type\": \"LORA\", \"target_modules\": \"model.(q_proj\"}", "field \"target_modules\": \"model.(q_proj\" is not a valid regular expression: missing closing parenthesis"},
        {"{\"peft_type\": \"LORA\", \"exclude_modules\": \"[q\"}", "field \"exclude_modules\": \"[q\" is not a valid regular expression"},
        {"{\"peft_type\": \"LORA\", \"rank_pattern\": {\"q_proj\": 0}}", "field \"rank_pattern\": key \"q_proj\": rank must be a positive integer, got 0"},
        {"{\"peft_type\": \"LORA\", \"rank_pattern\": {\"q_proj\": 4.5}}", "field \"rank_pattern\": key \"q_proj\": rank must be a positive integer, got 4.5"},
        {"{\"peft_type\": \"LORA\", \"rank_pattern\": {\"layers.(0\": 4}}", "field \"rank_pattern\": key \"layers.(0\" is not a valid regular expression"},
        {"{\"peft_type\": \"LORA\", \"alpha_pattern\": {\"q\": \"x\"}}", "field \"alpha_pattern\": key \"q\": alpha must be a number, got \"x\""},
        {"{\"peft_type\": \"LORA\", \"rank_pattern\": [1]}", "field \"rank_pattern\": must be an object or null, got [1]"},
        {"{\"peft_type\": \"LORA\", \"bias\": \"some\"}", "field \"bias\": must be \"none\", \"all\" or \"lora_only\", got \"some\""},
        {"{\"peft_type\": \"LORA\", \"init_lora_weights\": \"pissa\"}", "field \"init_lora_weights\": \"pissa\" is not supported by peftc"},
        {"{\"peft_type\": \"LORA\", \"init_lora_weights\": \"pissa_niter_4\"}", "field \"init_lora_weights\": \"pissa_niter_4\" is not supported by peftc"},
        {"{\"peft_type\": \"LORA\", \"init_lora_weights\": \"olora\"}", "\"olora\" is not supported by peftc"},
        {"{\"peft_type\": \"LORA\", \"init_lora_weights\": \"kaiming\"}", "field \"init_lora_weights\": invalid value \"kaiming\""},
        {"{\"peft_type\": \"LORA\", \"init_lora_weights\": 1}", "field \"init_lora_weights\": must be true, false or a string, got 1"},
        {"{\"peft_type\": \"LORA\", \"use_qalora\": true}", "field \"use_qalora\"=true is not supported by peftc (only PEFT's default false is)"},
        {"{\"peft_type\": \"LORA\", \"megatron_config\": {\"tp\": 2}}", "field \"megatron_config\"={\"tp\": 2} is not supported by peftc"},
        {"{\"peft_type\": \"LORA\", \"layer_replication\": [[0, 4], [2, 5]]}", "field \"layer_replication\"=[[0, 4], [2, 5]] is not supported by peftc"},
        {"{\"peft_type\": \"LORA\", \"alora_invocation_tokens\": [1, 2]}", "field \"alora_invocation_tokens\"=[1, 2] is not supported by peftc"},
        {"{\"peft_type\": \"LORA\", \"target_parameters\": [\"experts.down_proj\"]}", "field \"target_parameters\"=[\"experts.down_proj\"] is not supported by peftc"},
        {"{\"peft_type\": \"LORA\", \"trainable_token_indices\": [0, 1]}", "field \"trainable_token_indices\"=[0, 1] is not supported by peftc"},
        {"{\"peft_type\": \"LORA\", \"ensure_weight_tying\": true}", "field \"ensure_weight_tying\"=true is not supported by peftc"},
        {"{\"peft_type\": \"LORA\", \"velora_config\": {}}", "field \"velora_config\"={} is not supported by peftc (only PEFT's default null is)"},
        {"{\"peft_type\": \"LORA\", \"inference_mode\": \"yes\"}", "field \"inference_mode\": must be true or false, got \"yes\""},
        {"{\"peft_type\": \"LORA\", \"task_type\": \"causal_lm\"}", "field \"task_type\": invalid task type \"causal_lm\""},
        {"{\"peft_type\": \"LORA\", \"layers_to_transform\": \"0\"}", "field \"layers_to_transform\": must be an integer, a list of integers or null, got \"0\""},
        {"{\"peft_type\": \"LORA\", \"layers_to_transform\": [0, \"1\"]}", "field \"layers_to_transform\": entry 1 must be an integer, got \"1\""},
        {"{\"peft_type\": \"LORA\", \"target_modules\": \".*q_proj\", \"layers_to_transform\": [0]}", "field \"layers_to_transform\": cannot be used when `target_modules` is a str"},
        {"{\"peft_type\": \"LORA\", \"target_modules\": [\"q\"], \"layers_pattern\": \"layers\"}", "field \"layers_pattern\": when `layers_pattern` is specified, `layers_to_transform` must also be specified"},
        {"{\"peft_type\": \"LORA\", \"lora_bias\": true, \"use_dora\": true}", "field \"lora_bias\": lora_bias=true is not supported for DoRA"},
        {"{\"peft_type\": \"LORA\", \"modules_to_save\": \"lm_head\"}", "field \"modules_to_save\": must be a list of strings or null, got \"lm_head\""},
        {"{\"peft_type\": \"LORA\", \"modules_to_save\": [\"lm_head(\"]}", "field \"modules_to_save\": entry \"lm_head(\" is not a valid regular expression"},
        {"{\"target_modules\": [\"q\"]}", "adapter_config.json: field \"peft_type\" is missing"},
        {"{\"peft_type\": \"OFT\"}", "field \"peft_type\": \"OFT\" is not supported by peftc"},
        {"{\"peft_type\": \"lora\"}", "field \"peft_type\": unknown PEFT type \"lora\""},
        {"{\"peft_type\": 3}", "field \"peft_type\": must be a string, got 3"},
        {"{\"peft_type\": \"LORA\", \"r\": 8,}", "adapter_config.json:1:"},
        {"[\"peft_type\"]", "adapter_config.json: expected a JSON object, got a list"},
        {"", "adapter_config.json:1:0: invalid JSON"},
        {"{\"peft_type\": \"LOHA\", \"init_weights\": \"lycoris\"}", "field \"init_weights\": must be true or false, got \"lycoris\""},
        {"{\"peft_type\": \"LOHA\", \"alpha\": [8]}", "field \"alpha\": must be a number, got [8]"},
        {"{\"peft_type\": \"LOKR\", \"rank_dropout\": 1.5}", "field \"rank_dropout\": must be a probability in [0, 1), got 1.5"},
        {"{\"peft_type\": \"ADALORA\"}", "field \"total_step\": AdaLoRA does not work when `total_step` is null"},
        {"{\"peft_type\": \"ADALORA\", \"total_step\": 100, \"tinit\": 60, \"tfinal\": 40}", "field \"tinit\": the schedule (tinit=60, tfinal=40, total_step=100) leaves no budgeting phase"},
        {"{\"peft_type\": \"ADALORA\", \"total_step\": 100, \"use_dora\": true}", "field \"use_dora\": ADALORA does not support DoRA"},
        {"{\"peft_type\": \"ADALORA\", \"total_step\": 100, \"rank_pattern\": {\"a.lora_E\": [true, 1]}}", "field \"rank_pattern\": key \"a.lora_E\": entry 1 must be true or false, got 1"},
        {"{\"peft_type\": \"IA3\", \"target_modules\": [\"k_proj\"], \"feedforward_modules\": [\"down_proj\"]}", "field \"feedforward_modules\": should be a subset of `target_modules`: \"down_proj\" is not in target_modules"},
        {"{\"peft_type\": \"PREFIX_TUNING\", \"num_virtual_tokens\": null}", "field \"num_virtual_tokens\": must be a positive integer (it is required)"},
        {"{\"peft_type\": \"PREFIX_TUNING\", \"num_virtual_tokens\": 20, \"init_weights\": \"ones\"}", "field \"init_weights\": must be \"zero\" or null, got \"ones\""},
        {"{\"peft_type\": \"P_TUNING\", \"num_virtual_tokens\": 20, \"encoder_reparameterization_type\": \"GRU\"}", "field \"encoder_reparameterization_type\": must be \"MLP\" or \"LSTM\", got \"GRU\""},
        {"{\"peft_type\": \"PROMPT_TUNING\", \"num_virtual_tokens\": 8, \"prompt_tuning_init\": \"TEXT\", \"prompt_tuning_init_text\": \"hi\"}", "field \"tokenizer_name_or_path\": is required when prompt_tuning_init=\"TEXT\""},
        {"{\"peft_type\": \"PROMPT_TUNING\", \"num_virtual_tokens\": 8, \"prompt_tuning_init\": \"EXACT_SOURCE_TASK\"}", "field \"prompt_tuning_init\": must be one of \"RANDOM\", \"TEXT\", \"SAMPLE_VOCAB\", got \"EXACT_SOURCE_TASK\""},
        {"{\"peft_type\": \"MULTITASK_PROMPT_TUNING\", \"num_virtual_tokens\": 8, \"num_tasks\": 0}", "field \"num_tasks\": must be a positive integer or null, got 0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[512] = "";
        pc_adapter_config *c = pc_adapter_config_parse(cases[i].json, strlen(cases[i].json), NULL, err, sizeof err);
        CU_ASSERT_PTR_NULL(c);
        if (c) {
            fprintf(stderr, "\n  case %zu accepted: %s\n", i, cases[i].json);
            pc_adapter_config_free(c);
            continue;
        }
        bool ok = strstr(err, cases[i].msg) != NULL && strncmp(err, "adapter_config.json", 19) == 0;
        if (!ok) fprintf(stderr, "\n  case %zu: got  %s\n          want %s\n", i, err, cases[i].msg);
        CU_ASSERT_TRUE(ok);
    }
}

static void test_load_paths_and_write_errors(void) {
    char err[512] = "";
    CU_ASSERT_PTR_NULL(pc_adapter_config_load(PEFTC_SOURCE_DIR "/tests/data/peft_configs/nope.json", err, sizeof err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "nope.json: cannot open"));
    CU_ASSERT_PTR_NULL(pc_adapter_config_load(NULL, err, sizeof err));
    CU_ASSERT_PTR_NULL(pc_adapter_config_parse(NULL, 0, NULL, NULL, 0)); /* NULL err buffer is fine */

    /* the file name in messages is the path that was loaded */
    char dir[512], path[600];
    scratch_dir(dir, sizeof dir, "errors");
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("{\"peft_type\": \"LORA\", \"r\": 0}", f);
    fclose(f);
    CU_ASSERT_PTR_NULL(pc_adapter_config_load(dir, err, sizeof err));
    char want[700];
    snprintf(want, sizeof want, "%s: field \"r\": must be a positive integer, got 0", path);
    CU_ASSERT_STRING_EQUAL(err, want);

    /* writing replaces the file atomically and leaves no temporaries */
    pc_adapter_config *c = load_ok(FIXTURE("ia3.json"));
    CU_ASSERT_EQUAL(pc_adapter_config_write(c, path, err, sizeof err), 0);
    pc_adapter_config *back = load_ok(path);
    CU_ASSERT_TRUE(pc_adapter_config_equal(c, back));
    pc_adapter_config_free(back);
    DIR *d = opendir(dir);
    int entries = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        if (e->d_name[0] != '.') entries++;
    if (d) closedir(d);
    CU_ASSERT_EQUAL(entries, 1);

    /* an invalid config is not written */
    c->r = 0; /* not used by IA3: still valid */
    c->ia3.init_ia3_weights = false;
    pc_spec_set_list(&c->ia3.feedforward_modules, (const char *[]){"nothing_like_it"}, 1);
    CU_ASSERT_EQUAL(pc_adapter_config_write(c, dir, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not written"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "feedforward_modules"));
    back = load_ok(path);
    CU_ASSERT_TRUE(back->ia3.init_ia3_weights); /* old file intact */
    pc_adapter_config_free(back);

    CU_ASSERT_EQUAL(pc_adapter_config_write(c, "/nonexistent-dir/x/adapter_config.json", err, sizeof err), -1);
    pc_adapter_config_free(c);
    remove_dir(dir);
}

static void test_names(void) {
    CU_ASSERT_STRING_EQUAL(pc_peft_type_name(PC_PEFT_PREFIX_TUNING), "PREFIX_TUNING");
    CU_ASSERT_EQUAL(pc_peft_type_from_name("LOKR"), PC_PEFT_LOKR);
    CU_ASSERT_EQUAL(pc_peft_type_from_name("OFT"), PC_PEFT_NONE);
    CU_ASSERT_PTR_NULL(pc_peft_type_name(PC_PEFT_NONE));
    CU_ASSERT_PTR_NULL(pc_peft_type_name((pc_peft_type)99));
    CU_ASSERT_STRING_EQUAL(pc_task_type_name(PC_TASK_TOKEN_CLS), "TOKEN_CLS");
    CU_ASSERT_TRUE(pc_peft_type_is_prompt_learning(PC_PEFT_P_TUNING));
    CU_ASSERT_FALSE(pc_peft_type_is_prompt_learning(PC_PEFT_IA3));
    /* user-registered methods (tests/unit/test_adapter_custom.c) */
    CU_ASSERT_STRING_EQUAL(pc_peft_type_name(PC_PEFT_CUSTOM), "CUSTOM");
    CU_ASSERT_EQUAL(pc_peft_type_from_name("CUSTOM"), PC_PEFT_NONE);
    CU_ASSERT_FALSE(pc_peft_type_is_prompt_learning(PC_PEFT_CUSTOM));
}

static CU_TestInfo tests[] = {
    {"lora_complete", test_lora_complete},
    {"roundtrip_all_fixtures", test_roundtrip_all_fixtures},
    {"regex_target", test_regex_target},
    {"rank_alpha_pattern", test_rank_alpha_pattern},
    {"dora_rslora_gpt2", test_dora_rslora_gpt2},
    {"other_methods", test_other_methods},
    {"old_peft_version", test_old_peft_version},
    {"build_in_code", test_build_in_code},
    {"python_formatting", test_python_formatting},
    {"unknown_keys_warn", test_unknown_keys_warn},
    {"malformed", test_malformed},
    {"load_paths_and_write_errors", test_load_paths_and_write_errors},
    {"names", test_names},
    CU_TEST_INFO_NULL,
};

PC_TEST_MAIN("adapter_config", tests)
