/* PEFT module matching. Every expectation below was checked against PEFT's own
 * check_target_module_exists / get_pattern_key (src/peft/tuners/tuners_utils.py,
 * src/peft/utils/other.py; PEFT 0.21.2, and 5d602fd except where noted) run on the same configs
 * and names. */
#include "runtime/target_match.h"

#include "cu_main.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIXTURE(name) PEFTC_SOURCE_DIR "/tests/data/peft_configs/" name

enum { NO = PC_MATCH_NO, YES = PC_MATCH_YES, EXCL = PC_MATCH_EXCLUDED, MTS = PC_MATCH_MODULES_TO_SAVE,
       LAYER = PC_MATCH_LAYER_FILTERED };

static pc_target_matcher *matcher_from_json(const char *json) {
    char err[512] = "";
    pc_adapter_config *c = pc_adapter_config_parse(json, strlen(json), "inline", err, sizeof err);
    if (!c) fprintf(stderr, "\n  config: %s\n  %s\n", json, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    pc_target_matcher *m = pc_target_matcher_new(c, err, sizeof err);
    if (!m) fprintf(stderr, "\n  matcher: %s\n", err);
    pc_adapter_config_free(c); /* the matcher keeps its own copy */
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    return m;
}

static pc_target_matcher *matcher_from_file(const char *path) {
    char err[512] = "";
    pc_adapter_config *c = pc_adapter_config_load(path, err, sizeof err);
    if (!c) fprintf(stderr, "\n  %s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    pc_target_matcher *m = pc_target_matcher_new(c, err, sizeof err);
    if (!m) fprintf(stderr, "\n  matcher: %s\n", err);
    pc_adapter_config_free(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    return m;
}

typedef struct {
    const char *name;
    int want;
} expect;

static int run_cases(const char *config_json, const expect *cases, size_t n) {
    pc_target_matcher *m = matcher_from_json(config_json);
    int checked = 0;
    for (size_t i = 0; i < n; i++) {
        pc_match_result got = pc_target_match_ex(m, cases[i].name);
        if ((int)got != cases[i].want)
            fprintf(stderr, "\n  %s\n    %s: got %d want %d\n", config_json, cases[i].name, (int)got, cases[i].want);
        CU_ASSERT_EQUAL(got, cases[i].want);
        CU_ASSERT_EQUAL(pc_target_match(m, cases[i].name), cases[i].want == YES ? 1 : 0);
        checked++;
    }
    pc_target_matcher_free(m);
    return checked;
}
#define RUN(json, ...)                                                                                  \
    do {                                                                                                \
        static const expect cs_[] = {__VA_ARGS__};                                                     \
        run_cases(json, cs_, sizeof cs_ / sizeof cs_[0]);                                               \
    } while (0)

#define LORA(body) "{\"peft_type\": \"LORA\", " body "}"

/* list entries: equal, or a suffix after a "." (never a substring) */
static void test_list_suffix_rule(void) {
    RUN(LORA("\"target_modules\": [\"q_proj\", \"v_proj\"]"),
        {"model.layers.3.self_attn.q_proj", YES}, {"model.layers.3.self_attn.v_proj", YES},
        {"model.layers.3.self_attn.k_proj", NO}, {"model.layers.3.self_attn.xq_proj", NO}, /* substring trap */
        {"q_proj", YES}, {"model.layers.3.self_attn", NO}, {"lm_head", NO},
        {"model.layers.3.self_attn.q_proj.lora_A", NO});
    /* a dotted entry must end at a dot boundary: "attn.q_proj" is not a suffix of "self_attn.q_proj" */
    RUN(LORA("\"target_modules\": [\"attn.q_proj\"]"), {"model.layers.3.self_attn.q_proj", NO});
    RUN(LORA("\"target_modules\": [\"self_attn.q_proj\"]"), {"model.layers.3.self_attn.q_proj", YES});
    /* Llama MLP */
    RUN(LORA("\"target_modules\": [\"down_proj\"]"), {"model.layers.10.mlp.down_proj", YES},
        {"model.layers.10.mlp.up_proj", NO}, {"model.layers.10.mlp.down_proj_x", NO});
}

static void test_gpt2_and_bert_names(void) {
    RUN(LORA("\"target_modules\": [\"c_attn\"], \"fan_in_fan_out\": true"),
        {"transformer.h.0.attn.c_attn", YES}, {"transformer.h.11.attn.c_attn", YES},
        {"transformer.h.0.attn.c_proj", NO}, {"transformer.h.0.mlp.c_proj", NO}, {"lm_head", NO});
    RUN(LORA("\"target_modules\": [\"mlp.c_proj\"]"), {"transformer.h.0.mlp.c_proj", YES},
        {"transformer.h.0.attn.c_proj", NO});
    RUN(LORA("\"target_modules\": [\"query\", \"value\"]"), {"bert.encoder.layer.0.attention.self.query", YES},
        {"bert.encoder.layer.0.attention.self.value", YES}, {"bert.encoder.layer.0.attention.self.key", NO});
    /* BERT's "output.dense" suffix matches both the attention output and the FFN output */
    RUN(LORA("\"target_modules\": [\"output.dense\"]"), {"bert.encoder.layer.0.attention.output.dense", YES},
        {"bert.encoder.layer.0.output.dense", YES}, {"bert.pooler.dense", NO},
        {"bert.encoder.layer.0.intermediate.dense", NO});
}

/* a string target is re.fullmatch: the regex must cover the whole name */
static void test_regex_fullmatch(void) {
    RUN(LORA("\"target_modules\": \"q_proj\""), {"model.layers.3.self_attn.q_proj", NO}, {"q_proj", YES});
    RUN(LORA("\"target_modules\": \".*\\\\.(q|v)_proj\""), {"model.layers.3.self_attn.q_proj", YES},
        {"model.layers.3.self_attn.v_proj", YES}, {"model.layers.3.self_attn.k_proj", NO},
        {"model.layers.3.self_attn.q_proj.lora_A", NO});
    /* a prefix match of an alternative is not enough ... */
    RUN(LORA("\"target_modules\": \".*q_proj|.*v_pro\""), {"model.layers.3.self_attn.v_proj", NO});
    /* ... but backtracking into a later alternative that covers the name is */
    RUN(LORA("\"target_modules\": \"model.layers.3.self_attn.v_pro|model.layers.3.self_attn.v_proj\""),
        {"model.layers.3.self_attn.v_proj", YES});
    /* Python-only spellings: \Z and {,n} */
    RUN(LORA("\"target_modules\": \".*q_proj\\\\Z\""), {"model.layers.3.self_attn.q_proj", YES});
    RUN(LORA("\"target_modules\": \"x{,2}y\""), {"xxy", YES}, {"y", YES}, {"xxxy", NO});
    /* a realistic layer-range regex */
    RUN(LORA("\"target_modules\": \"model\\\\.layers\\\\.([0-9]|1[0-5])\\\\.self_attn\\\\.(q|k|v|o)_proj\""),
        {"model.layers.0.self_attn.o_proj", YES}, {"model.layers.15.self_attn.k_proj", YES},
        {"model.layers.16.self_attn.k_proj", NO}, {"model.layers.15.mlp.up_proj", NO});
}

static void test_exclude_wins(void) {
    RUN(LORA("\"target_modules\": [\"lm_head\"], \"exclude_modules\": [\"lm_head\"]"), {"lm_head", EXCL});
    RUN(LORA("\"target_modules\": [\"q_proj\"], \"exclude_modules\": [\"model.layers.0.self_attn.q_proj\"]"),
        {"model.layers.0.self_attn.q_proj", EXCL}, {"model.layers.1.self_attn.q_proj", YES});
    RUN(LORA("\"target_modules\": \".*_proj\", \"exclude_modules\": [\"mlp.down_proj\"]"),
        {"model.layers.2.mlp.down_proj", EXCL}, {"model.layers.2.mlp.up_proj", YES});
    RUN(LORA("\"target_modules\": [\"q_proj\"], \"exclude_modules\": \".*\\\\.layers\\\\.0\\\\..*\""),
        {"model.layers.0.self_attn.q_proj", EXCL}, {"model.layers.1.self_attn.q_proj", YES});
    /* an empty exclude string is falsy in PEFT: ignored */
    RUN(LORA("\"target_modules\": [\"q_proj\"], \"exclude_modules\": \"\""), {"model.layers.0.self_attn.q_proj", YES});
    /* the regex-target fixture: layers 1..N of q/v/down, layer 0 excluded */
    pc_target_matcher *m = matcher_from_file(FIXTURE("lora_regex_target.json"));
    CU_ASSERT_EQUAL(pc_target_match_ex(m, "model.layers.0.self_attn.q_proj"), PC_MATCH_EXCLUDED);
    CU_ASSERT_EQUAL(pc_target_match_ex(m, "model.layers.3.self_attn.q_proj"), PC_MATCH_YES);
    CU_ASSERT_EQUAL(pc_target_match_ex(m, "model.layers.3.self_attn.k_proj"), PC_MATCH_NO);
    CU_ASSERT_EQUAL(pc_target_match_ex(m, "model.layers.10.mlp.down_proj"), PC_MATCH_YES);
    CU_ASSERT_EQUAL(pc_target_match_ex(m, "model.layers.10.mlp.up_proj"), PC_MATCH_NO);
    CU_ASSERT_EQUAL(pc_target_match_ex(m, "lm_head"), PC_MATCH_NO);
    pc_target_matcher_free(m);
}

/* modules_to_save are never targeted: re.match(rf"(^|.*\.){m}($|\..*)", name) */
static void test_modules_to_save(void) {
    RUN(LORA("\"target_modules\": \".*\", \"modules_to_save\": [\"lm_head\"]"), {"lm_head", MTS},
        {"model.lm_head_x", YES}, {"lm_head.modules_to_save.default", MTS}, {"x.lm_head", MTS},
        {"model.layers.0.mlp", YES});
}

static void test_layers_to_transform(void) {
    /* no layers_pattern: the first numbered segment that follows another segment */
    RUN(LORA("\"target_modules\": [\"q_proj\"], \"layers_to_transform\": [0, 2]"),
        {"model.layers.0.self_attn.q_proj", YES}, {"model.layers.1.self_attn.q_proj", LAYER},
        {"model.layers.2.self_attn.q_proj", YES}, {"model.layers.10.self_attn.q_proj", LAYER},
        {"model.layers.20.self_attn.q_proj", LAYER}, {"layers.0.q_proj", LAYER}, /* no segment before */
        {"q_proj", YES},                                                        /* exact entry: no filter */
        {"model.layers.0.self_attn.k_proj", NO});
    RUN(LORA("\"target_modules\": [\"q_proj\"], \"layers_to_transform\": 3"),
        {"model.layers.3.self_attn.q_proj", YES}, {"model.layers.30.self_attn.q_proj", LAYER});
    RUN(LORA("\"target_modules\": [\"query\"], \"layers_to_transform\": [0]"),
        {"bert.encoder.layer.0.attention.self.query", YES}, {"bert.encoder.layer.1.attention.self.query", LAYER});
    /* MoE: the lazy regex takes the layer index, not the expert index */
    RUN(LORA("\"target_modules\": [\"down_proj\"], \"layers_to_transform\": [1]"),
        {"model.layers.1.mlp.experts.0.down_proj", YES}, {"model.layers.0.mlp.experts.1.down_proj", LAYER});
    /* an empty list means "no layer selection" */
    RUN(LORA("\"target_modules\": [\"q_proj\"], \"layers_to_transform\": []"), {"model.layers.7.self_attn.q_proj", YES});
    /* an exact target entry bypasses the layer filter; suffix entries do not */
    RUN(LORA("\"target_modules\": [\"model.layers.5.self_attn.q_proj\", \"v_proj\"], \"layers_to_transform\": [0]"),
        {"model.layers.5.self_attn.q_proj", YES}, {"model.layers.5.self_attn.v_proj", LAYER},
        {"model.layers.0.self_attn.v_proj", YES});
}

static void test_layers_pattern(void) {
    RUN(LORA("\"target_modules\": [\"c_attn\"], \"layers_to_transform\": [2], \"layers_pattern\": \"h\""),
        {"transformer.h.2.attn.c_attn", YES}, {"transformer.h.3.attn.c_attn", LAYER});
    RUN(LORA("\"target_modules\": [\"c_attn\"], \"layers_to_transform\": [2], \"layers_pattern\": \"layers\""),
        {"transformer.h.2.attn.c_attn", LAYER});
    RUN(LORA("\"target_modules\": [\"c_attn\"], \"layers_to_transform\": [2], \"layers_pattern\": [\"blocks\", \"h\"]"),
        {"transformer.h.2.attn.c_attn", YES}, {"vision.blocks.2.attn.c_attn", YES},
        {"vision.blocks.1.attn.c_attn", LAYER});
    /* PEFT >= 0.21: the pattern may start the name (GPT2Model has no "transformer." prefix), and a
     * pattern with its own group still yields the layer index */
    RUN(LORA("\"target_modules\": [\"c_attn\"], \"layers_to_transform\": [2], \"layers_pattern\": \"h\""),
        {"h.2.attn.c_attn", YES}, {"h.1.attn.c_attn", LAYER}, {"xh.2.attn.c_attn", LAYER});
    RUN(LORA("\"target_modules\": [\"c_attn\"], \"layers_to_transform\": [2], \"layers_pattern\": \"(h|blocks)\""),
        {"transformer.h.2.attn.c_attn", YES}, {"vision.blocks.2.attn.c_attn", YES}, {"vision.blocks.3.attn.c_attn", LAYER});
    /* the fixture: layers 0-3 of "layers" */
    pc_target_matcher *m = matcher_from_file(FIXTURE("lora_rank_alpha_pattern.json"));
    CU_ASSERT_EQUAL(pc_target_match(m, "model.layers.3.mlp.down_proj"), 1);
    CU_ASSERT_EQUAL(pc_target_match_ex(m, "model.layers.4.mlp.down_proj"), PC_MATCH_LAYER_FILTERED);
    CU_ASSERT_EQUAL(pc_target_match(m, "model.layers.0.self_attn.k_proj"), 0);
    pc_target_matcher_free(m);
}

static void check_rank(pc_target_matcher *m, const char *name, int r, double alpha) {
    int gr = -1;
    double ga = -1;
    CU_ASSERT_EQUAL(pc_target_rank_alpha(m, name, &gr, &ga), 0);
    if (gr != r || ga != alpha) fprintf(stderr, "\n  %s: got r=%d alpha=%g, want r=%d alpha=%g\n", name, gr, ga, r, alpha);
    CU_ASSERT_EQUAL(gr, r);
    CU_ASSERT_DOUBLE_EQUAL(ga, alpha, 0);
}

/* rank_pattern / alpha_pattern: re.match(rf"(.*\.)?({k})$", name), first key in order */
static void test_rank_alpha_pattern(void) {
    pc_target_matcher *m = matcher_from_file(FIXTURE("lora_rank_alpha_pattern.json"));
    /* keys, as PEFT saved them (sorted): down_proj: 4, model.layers.0.self_attn.q_proj: 32, q_proj: 12 */
    check_rank(m, "model.layers.0.self_attn.q_proj", 32, 24.0);
    check_rank(m, "model.layers.1.self_attn.q_proj", 12, 24.0);
    check_rank(m, "model.layers.1.mlp.down_proj", 4, 1e-05);
    check_rank(m, "model.layers.1.self_attn.v_proj", 8, 16.0);
    check_rank(m, "model.layers.1.self_attn.xq_proj", 8, 16.0); /* a key is matched at a dot boundary too */
    CU_ASSERT_STRING_EQUAL(pc_target_rank_key(m, "model.layers.0.self_attn.q_proj"), "model.layers.0.self_attn.q_proj");
    CU_ASSERT_PTR_NULL(pc_target_rank_key(m, "model.layers.1.self_attn.v_proj"));
    CU_ASSERT_STRING_EQUAL(pc_target_alpha_key(m, "model.layers.1.mlp.down_proj"), "down_proj");
    pc_target_matcher_free(m);

    /* insertion order decides, not specificity */
    m = matcher_from_json(LORA("\"target_modules\": [\"q_proj\"], "
                               "\"rank_pattern\": {\"q_proj\": 4, \"model.layers.0.self_attn.q_proj\": 32}"));
    check_rank(m, "model.layers.0.self_attn.q_proj", 4, 8);
    pc_target_matcher_free(m);

    /* regex keys */
    m = matcher_from_json(LORA("\"target_modules\": [\"q_proj\"], \"r\": 8, \"lora_alpha\": 16, "
                               "\"rank_pattern\": {\"model\\\\.layers\\\\.[0-4]\\\\..*\": 2, \"proj\": 3, "
                               "\".*mlp\\\\.(up|down)_proj\": 5}, \"alpha_pattern\": {\"mlp\\\\..*\": 2.5}"));
    check_rank(m, "model.layers.3.mlp.down_proj", 2, 2.5);
    check_rank(m, "model.layers.5.mlp.down_proj", 5, 2.5);
    check_rank(m, "model.layers.5.self_attn.q_proj", 8, 16);
    check_rank(m, "model.layers.5.proj", 3, 16);
    check_rank(m, "proj", 3, 16);
    pc_target_matcher_free(m);

    /* LoHa uses r/alpha */
    m = matcher_from_file(FIXTURE("loha.json"));
    check_rank(m, "model.layers.2.self_attn.v_proj", 16, 64);
    check_rank(m, "model.layers.2.self_attn.q_proj", 32, 64);
    pc_target_matcher_free(m);
}

/* AdaLoRA: saved "<module>.lora_E" masks give each module's rank; others keep init_r */
static void test_adalora_ranks(void) {
    pc_target_matcher *m = matcher_from_file(FIXTURE("adalora.json"));
    check_rank(m, "model.layers.0.self_attn.q_proj", 4, 32);
    check_rank(m, "model.layers.0.self_attn.v_proj", 0, 32); /* pruned to rank 0 */
    check_rank(m, "model.layers.1.self_attn.q_proj", 12, 32);
    CU_ASSERT_EQUAL(pc_target_match(m, "model.layers.0.self_attn.v_proj"), 1);
    pc_target_matcher_free(m);
    /* keys still carrying the adapter name (in memory, before saving) */
    m = matcher_from_json("{\"peft_type\": \"ADALORA\", \"total_step\": 10, \"target_modules\": [\"q\"],"
                          " \"rank_pattern\": {\"enc.0.q.lora_E.default\": [true, true, false]}}");
    check_rank(m, "enc.0.q", 2, 8);
    pc_target_matcher_free(m);
}

static void test_ia3_feedforward(void) {
    pc_target_matcher *m = matcher_from_file(FIXTURE("ia3.json"));
    CU_ASSERT_EQUAL(pc_target_match(m, "model.layers.0.self_attn.k_proj"), 1);
    CU_ASSERT_EQUAL(pc_target_match(m, "model.layers.0.self_attn.q_proj"), 0);
    CU_ASSERT_EQUAL(pc_target_match(m, "model.layers.0.mlp.down_proj"), 1);
    CU_ASSERT_EQUAL(pc_target_is_feedforward(m, "model.layers.0.mlp.down_proj"), 1);
    CU_ASSERT_EQUAL(pc_target_is_feedforward(m, "model.layers.0.self_attn.k_proj"), 0);
    /* PEFT's feedforward check is a plain endswith, without the "." boundary */
    CU_ASSERT_EQUAL(pc_target_is_feedforward(m, "model.layers.0.mlp.xdown_proj"), 1);
    CU_ASSERT_EQUAL(pc_target_rank_alpha(m, "model.layers.0.mlp.down_proj", NULL, NULL), -1);
    pc_target_matcher_free(m);
    m = matcher_from_file(FIXTURE("ia3_bert.json"));
    CU_ASSERT_EQUAL(pc_target_is_feedforward(m, "bert.encoder.layer.0.attention.output.dense"), 1);
    CU_ASSERT_EQUAL(pc_target_is_feedforward(m, "bert.encoder.layer.0.output.dense"), 1);
    CU_ASSERT_EQUAL(pc_target_match_ex(m, "classifier"), PC_MATCH_MODULES_TO_SAVE);
    pc_target_matcher_free(m);
    m = matcher_from_json("{\"peft_type\": \"IA3\", \"target_modules\": \".*\\\\.(k|v|down)_proj\","
                          " \"feedforward_modules\": \".*down_proj\"}");
    CU_ASSERT_EQUAL(pc_target_is_feedforward(m, "model.layers.0.mlp.down_proj"), 1);
    CU_ASSERT_EQUAL(pc_target_is_feedforward(m, "model.layers.0.mlp.down_proj.x"), 0);
    pc_target_matcher_free(m);
}

static int linear_not_head(void *ctx, const char *name) {
    (void)ctx;
    static const char *const suffixes[] = {"_proj", NULL};
    if (!strcmp(name, "lm_head")) return 0; /* the output embedding */
    size_t n = strlen(name);
    for (int i = 0; suffixes[i]; i++) {
        size_t s = strlen(suffixes[i]);
        if (n >= s && !strcmp(name + n - s, suffixes[i])) return 1;
    }
    return 0;
}

static void test_all_linear(void) {
    char err[512] = "";
    const char *json = LORA("\"target_modules\": \"all-linear\"");
    pc_adapter_config *c = pc_adapter_config_parse(json, strlen(json), NULL, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_PTR_NULL(pc_target_matcher_new(c, err, sizeof err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "pc_adapter_config_expand_all_linear"));
    static const char *const names[] = {
        "model", "model.embed_tokens", "model.layers", "model.layers.0", "model.layers.0.self_attn",
        "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj", "model.layers.0.mlp",
        "model.layers.0.mlp.down_proj", "model.layers.0.input_layernorm", "model.norm", "lm_head",
    };
    CU_ASSERT_EQUAL(pc_adapter_config_expand_all_linear(c, names, sizeof names / sizeof names[0], linear_not_head,
                                                        NULL, err, sizeof err),
                    0);
    CU_ASSERT_EQUAL(c->target_modules.kind, PC_SPEC_LIST);
    CU_ASSERT_EQUAL(c->target_modules.n, 3);
    pc_target_matcher *m = pc_target_matcher_new(c, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(pc_target_match(m, "model.layers.0.self_attn.q_proj"), 1);
    CU_ASSERT_EQUAL(pc_target_match(m, "model.layers.0.mlp.down_proj"), 1);
    CU_ASSERT_EQUAL(pc_target_match(m, "lm_head"), 0);
    CU_ASSERT_EQUAL(pc_target_match(m, "model.norm"), 0);
    pc_target_matcher_free(m);
    /* the expanded list is what gets saved */
    char *txt = pc_adapter_config_to_json(c, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL(strstr(txt, "\"model.layers.0.mlp.down_proj\""));
    free(txt);
    /* not all-linear: no-op */
    CU_ASSERT_EQUAL(pc_adapter_config_expand_all_linear(c, NULL, 0, NULL, NULL, err, sizeof err), 0);
    pc_adapter_config_free(c);
}

static void test_default_targets_and_errors(void) {
    char err[512] = "";
    pc_adapter_config *c = pc_adapter_config_new(PC_PEFT_LORA);
    CU_ASSERT_PTR_NULL(pc_target_matcher_new(c, err, sizeof err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "field \"target_modules\" is null"));
    CU_ASSERT_EQUAL(pc_adapter_config_fill_default_targets(c, "nosuchmodel", err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no default for model_type \"nosuchmodel\""));
    CU_ASSERT_EQUAL(pc_adapter_config_fill_default_targets(c, "llama", err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(c->target_modules.n, 2);
    CU_ASSERT_STRING_EQUAL(c->target_modules.items[0], "q_proj");
    CU_ASSERT_STRING_EQUAL(c->target_modules.items[1], "v_proj");
    pc_adapter_config_free(c);

    c = pc_adapter_config_new(PC_PEFT_IA3);
    CU_ASSERT_EQUAL(pc_adapter_config_fill_default_targets(c, "bert", err, sizeof err), 0);
    pc_target_matcher *m = pc_target_matcher_new(c, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(pc_target_match(m, "bert.encoder.layer.0.attention.self.key"), 1);
    CU_ASSERT_EQUAL(pc_target_match(m, "bert.encoder.layer.0.attention.self.query"), 0);
    CU_ASSERT_EQUAL(pc_target_is_feedforward(m, "bert.encoder.layer.0.output.dense"), 1);
    pc_target_matcher_free(m);
    pc_adapter_config_free(c);

    c = pc_adapter_config_new(PC_PEFT_IA3);
    pc_spec_set_list(&c->target_modules, (const char *[]){"k"}, 1);
    CU_ASSERT_PTR_NULL(pc_target_matcher_new(c, err, sizeof err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "field \"feedforward_modules\" is null"));
    pc_adapter_config_free(c);

    c = pc_adapter_config_new(PC_PEFT_PROMPT_TUNING);
    c->prompt.num_virtual_tokens = 4;
    CU_ASSERT_PTR_NULL(pc_target_matcher_new(c, err, sizeof err));
    pc_adapter_config_free(c);

    /* an invalid regex set in code is caught when the matcher is built */
    c = pc_adapter_config_new(PC_PEFT_LORA);
    pc_spec_set_string(&c->target_modules, "(unclosed");
    CU_ASSERT_PTR_NULL(pc_target_matcher_new(c, err, sizeof err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "\"target_modules\": \"(unclosed\" is not a valid regular expression"));
    pc_adapter_config_free(c);

    /* invalid UTF-8 names are an engine error for regex targets, never a crash */
    m = matcher_from_json(LORA("\"target_modules\": \".*q_proj\""));
    CU_ASSERT_EQUAL(pc_target_match(m, "model.\xff.q_proj"), -1);
    CU_ASSERT_EQUAL(pc_target_match(m, NULL), -1);
    CU_ASSERT_EQUAL(pc_target_match(NULL, "x"), -1);
    pc_target_matcher_free(m);
    pc_target_matcher_free(NULL);

    CU_ASSERT_EQUAL(pc_pyregex_check("(.*\\.)?(", "q_proj", ")$", err, sizeof err), 0);
    CU_ASSERT_EQUAL(pc_pyregex_check(NULL, "a)", NULL, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "at offset 1"));
}

/* the engine's own failures (a pattern that backtracks exponentially over a name) come with
 * PCRE2's message and the pattern, for every field that matches by regex */
static void test_engine_errors_say_why(void) {
#define SLOW "(?:.|.)*(?:\\\\d\\\\d\\\\d\\\\d|\\\\d\\\\d\\\\d\\\\d\\\\d)"
    const char *name = "model.layers.0.self_attn.q_proj";
    char msg[512] = "";
    pc_target_matcher *m = matcher_from_json("{\"peft_type\": \"LORA\", \"target_modules\": \"" SLOW "\"}");
    CU_ASSERT_EQUAL(pc_target_match_why(m, name, msg, sizeof msg), PC_MATCH_ERROR);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "field \"target_modules\": pattern \"(?:.|.)*"));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "PCRE2 error: "));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "limit exceeded"));
    CU_ASSERT_EQUAL(pc_target_match(m, name), -1);
    CU_ASSERT_EQUAL(pc_target_match_why(m, name, NULL, 0), PC_MATCH_ERROR); /* no buffer is fine */
    pc_target_matcher_free(m);
    m = matcher_from_json("{\"peft_type\": \"LORA\", \"target_modules\": [\"q_proj\"], \"alpha_pattern\": {\"" SLOW "\": 4}}");
    int r;
    double alpha;
    msg[0] = 0;
    CU_ASSERT_EQUAL(pc_target_rank_alpha_why(m, name, &r, &alpha, msg, sizeof msg), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "field \"alpha_pattern\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "limit exceeded"));
    pc_target_matcher_free(m);
    m = matcher_from_json("{\"peft_type\": \"IA3\", \"target_modules\": [\"q_proj\"], \"feedforward_modules\": \"" SLOW "\"}");
    msg[0] = 0;
    CU_ASSERT_EQUAL(pc_target_is_feedforward_why(m, name, msg, sizeof msg), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "field \"feedforward_modules\""));
    pc_target_matcher_free(m);
#undef SLOW
}

static CU_TestInfo tests[] = {
    {"list_suffix_rule", test_list_suffix_rule},
    {"gpt2_and_bert_names", test_gpt2_and_bert_names},
    {"regex_fullmatch", test_regex_fullmatch},
    {"exclude_wins", test_exclude_wins},
    {"modules_to_save", test_modules_to_save},
    {"layers_to_transform", test_layers_to_transform},
    {"layers_pattern", test_layers_pattern},
    {"rank_alpha_pattern", test_rank_alpha_pattern},
    {"adalora_ranks", test_adalora_ranks},
    {"ia3_feedforward", test_ia3_feedforward},
    {"all_linear", test_all_linear},
    {"default_targets_and_errors", test_default_targets_and_errors},
    {"engine_errors_say_why", test_engine_errors_say_why},
    CU_TEST_INFO_NULL,
};

PC_TEST_MAIN("target_match", tests)
