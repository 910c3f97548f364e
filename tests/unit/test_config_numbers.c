/* adapter_config.json numbers: integers of any size come back as the same integers (a double
 * holds them exactly only up to 2^53), floats stay floats, and a non-integer where an integer
 * belongs is an error naming the field. */
#include "runtime/adapter_config.h"

#include "cu_main.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 2^53 + 1: the first integer a double cannot hold */
#define BIG "9007199254740993"

static pc_adapter_config *parse(const char *json, char *err, size_t errlen) {
    return pc_adapter_config_parse(json, strlen(json), "cfg.json", err, errlen);
}

static void expect_in(const char *text, const char *needle) {
    if (!strstr(text, needle)) fprintf(stderr, "\n  missing '%s' in:\n%s\n", needle, text);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, needle));
}

/* JSON integer in -> the same integer out, for every kind of number field */
static void test_big_integers_roundtrip(void) {
    static const char *const configs[] = {
        "{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": [\"q\"], \"lora_alpha\": " BIG ","
        " \"alpha_pattern\": {\"q\": " BIG ", \"k\": -9223372036854775807, \"v\": 24.0}}",
        "{\"peft_type\": \"LOHA\", \"r\": 4, \"target_modules\": [\"q\"], \"alpha\": 18014398509481985}",
        "{\"peft_type\": \"ADALORA\", \"target_modules\": [\"q\"], \"total_step\": " BIG ", \"tinit\": 10}",
    };
    static const char *const want[][3] = {
        {"\"lora_alpha\": " BIG ",", "\"q\": " BIG, "\"k\": -9223372036854775807,"},
        {"\"alpha\": 18014398509481985,", NULL, NULL},
        {"\"total_step\": " BIG ",", NULL, NULL},
    };
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++) {
        char err[512] = "";
        pc_adapter_config *c = parse(configs[i], err, sizeof err);
        if (!c) fprintf(stderr, "\n  %s\n", err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(c);
        char *txt = pc_adapter_config_to_json(c, err, sizeof err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(txt);
        for (int k = 0; k < 3; k++)
            if (want[i][k]) expect_in(txt, want[i][k]);
        CU_ASSERT_PTR_NULL(strstr(txt, "9007199254740992")); /* the double's rounding */
        /* written and read again: the same config, the same text */
        pc_adapter_config *back = parse(txt, err, sizeof err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(back);
        CU_ASSERT_TRUE(pc_adapter_config_equal(c, back));
        char *again = pc_adapter_config_to_json(back, err, sizeof err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(again);
        CU_ASSERT_STRING_EQUAL(again, txt);
        free(again);
        free(txt);
        pc_adapter_config_free(back);
        pc_adapter_config_free(c);
    }
    /* a float keeps its spelling; 2^53 and 2^53 + 1 are different configs */
    char err[512];
    pc_adapter_config *a = parse("{\"peft_type\": \"LORA\", \"target_modules\": [\"q\"], \"lora_alpha\": 9007199254740992}",
                                 err, sizeof err);
    pc_adapter_config *b = parse("{\"peft_type\": \"LORA\", \"target_modules\": [\"q\"], \"lora_alpha\": " BIG "}", err,
                                 sizeof err);
    pc_adapter_config *f = parse("{\"peft_type\": \"LORA\", \"target_modules\": [\"q\"], \"lora_alpha\": 16.0}", err,
                                 sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_FALSE(pc_adapter_config_equal(a, b));
    char *txt = pc_adapter_config_to_json(f, NULL, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(txt);
    expect_in(txt, "\"lora_alpha\": 16.0,");
    free(txt);
    pc_adapter_config_free(a);
    pc_adapter_config_free(b);
    pc_adapter_config_free(f);
}

/* a pc_num made in code ({v, true}, no exact part) is written from v */
static void test_built_in_code(void) {
    pc_adapter_config *c = pc_adapter_config_new(PC_PEFT_LORA);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    pc_spec_set_list(&c->target_modules, (const char *[]){"q"}, 1);
    c->lora.lora_alpha = (pc_num){.v = 16, .is_int = true};
    pc_pattern_add(&c->alpha_pattern, "q", 36028797018963968.0 /* 2^55 */, true);
    char *txt = pc_adapter_config_to_json(c, NULL, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(txt);
    expect_in(txt, "\"lora_alpha\": 16,");
    expect_in(txt, "\"q\": 36028797018963968\n");
    free(txt);
    pc_adapter_config_free(c);
}

/* integer fields: a float (even an integral one) or an out-of-range integer names the field */
static void test_integer_fields(void) {
    static const struct {
        const char *json, *msg;
    } cases[] = {
        {"{\"peft_type\": \"LORA\", \"target_modules\": [\"q\"], \"r\": 8.0}", "field \"r\": must be a positive integer, got 8.0"},
        {"{\"peft_type\": \"LORA\", \"target_modules\": [\"q\"], \"r\": " BIG "}",
         "field \"r\": must be a positive integer (at most 2147483647), got " BIG},
        {"{\"peft_type\": \"LORA\", \"target_modules\": [\"q\"], \"rank_pattern\": {\"q\": 2.5}}", "field \"rank_pattern\""},
        {"{\"peft_type\": \"LORA\", \"target_modules\": [\"q\"], \"layers_to_transform\": [1, 2.0]}",
         "field \"layers_to_transform\": entry 1 must be an integer, got 2.0"},
        {"{\"peft_type\": \"ADALORA\", \"target_modules\": [\"q\"], \"total_step\": 1e3}", "field \"total_step\""},
        {"{\"peft_type\": \"ADALORA\", \"target_modules\": [\"q\"], \"total_step\": 10, \"tinit\": 0.5}", "field \"tinit\""},
        {"{\"peft_type\": \"LOKR\", \"target_modules\": [\"q\"], \"decompose_factor\": -1.0}", "field \"decompose_factor\""},
        {"{\"peft_type\": \"PROMPT_TUNING\", \"num_virtual_tokens\": 8.5}", "field \"num_virtual_tokens\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[512] = "";
        pc_adapter_config *c = parse(cases[i].json, err, sizeof err);
        CU_ASSERT_PTR_NULL(c);
        pc_adapter_config_free(c);
        if (!strstr(err, cases[i].msg) || !strstr(err, "cfg.json"))
            fprintf(stderr, "\n  case %zu: '%s' lacks '%s'\n", i, err, cases[i].msg);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, cases[i].msg));
    }
}

static CU_TestInfo tests[] = {
    {"big_integers_roundtrip", test_big_integers_roundtrip},
    {"built_in_code", test_built_in_code},
    {"integer_fields", test_integer_fields},
    CU_TEST_INFO_NULL,
};

PC_TEST_MAIN("config_numbers", tests)
