/* IR text (ir/parse.c, ir/verify.c) and the passes behind `peftc opt` (passes/pipeline.c): the
 * input is a .pir file. It is parsed and verified as `peftc opt` does; a graph that verifies is
 * printed and parsed back, then goes through two pipelines with the verifier after every pass
 * (`peftc opt` runs none by default; these are the ones the drivers run):
 *   A  fuse-kron,fuse-lowrank,dce,autograd,adamw{clip}            (the graph's own params)
 *   B  adapt{config=C,mode=train},fuse-kron,fuse-lowrank,base-bf16,autograd,adamw (train: what
 *      `peftc train --base-dtype bf16` runs on a model graph) or adapt{config=C,mode=eval},fuse-kron,dce (eval), with C one of
 *      seven adapter configs (LoRA, DoRA, IA3, LoHa, LoKr, AdaLoRA, prompt tuning) picked by a hash
 *      of the input.
 * Oracles: a pass may refuse a graph, but must not leave one that fails verification ("after
 * pass X" errors abort); every verified graph, and every pipeline's result, prints to text that
 * parses, verifies and prints the same again. */
#include "passes/pipeline.h"
#include "peftc/peftc.h"
#include "tests/fuzz/fuzz_common.h"

static const char *const configs[][2] = {
    {"lora.json", "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\", \"k_proj\", \"v_proj\", \"up_proj\", \"w1\"]}"},
    {"dora.json", "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 8, \"use_dora\": true, \"lora_bias\": true, \"target_modules\": \".*\"}"},
    {"ia3.json", "{\"peft_type\": \"IA3\", \"target_modules\": [\"q_proj\", \"k_proj\", \"v_proj\", \"up_proj\", \"w2\"], \"feedforward_modules\": [\"up_proj\"]}"},
    {"loha.json", "{\"peft_type\": \"LOHA\", \"r\": 2, \"alpha\": 4, \"target_modules\": \".*\"}"},
    {"lokr.json", "{\"peft_type\": \"LOKR\", \"r\": 2, \"alpha\": 4, \"decompose_both\": true, \"target_modules\": \".*\"}"},
    {"adalora.json", "{\"peft_type\": \"ADALORA\", \"init_r\": 4, \"target_r\": 2, \"lora_alpha\": 8, \"tinit\": 1, \"tfinal\": 2, \"deltaT\": 1, \"total_step\": 10, \"target_modules\": \".*\"}"},
    {"prompt.json", "{\"peft_type\": \"PROMPT_TUNING\", \"task_type\": \"CAUSAL_LM\", \"num_virtual_tokens\": 2, \"prompt_tuning_init\": \"RANDOM\"}"},
};
#define N_CONFIGS (sizeof configs / sizeof configs[0])
static char config_paths[N_CONFIGS][400];

static void write_configs(void) {
    if (config_paths[0][0]) return;
    for (size_t i = 0; i < N_CONFIGS; i++) {
        snprintf(config_paths[i], sizeof config_paths[i], "%s/%s", fuzz_tmpdir(), configs[i][0]);
        FILE *f = fopen(config_paths[i], "w");
        FUZZ_CHECK(f && fputs(configs[i][1], f) >= 0 && fclose(f) == 0, "writing %s", config_paths[i]);
    }
}

static const pc_print_opts plain = {.elide_consts_over = 0, .show_locations = 0};

/* print -> parse -> verify -> print gives the same text */
static void roundtrip(const pc_graph *g, const char *what) {
    char *text = pc_print(g, plain);
    FUZZ_CHECK(text, "print failed");
    char *err = NULL;
    pc_graph *h = pc_parse(text, strlen(text), "printed.pir", &err);
    FUZZ_CHECK(h, "%s: the printed graph does not parse:\n%s\n%s", what, err ? err : "", text);
    free(err);
    err = NULL;
    FUZZ_CHECK(pc_verify(h, &err) == 0, "%s: the printed graph does not verify:\n%s\n%s", what, err ? err : "", text);
    free(err);
    char *text2 = pc_print(h, plain);
    FUZZ_CHECK(text2 && strcmp(text, text2) == 0, "%s: printing is not stable:\n%s\n----\n%s", what, text,
               text2 ? text2 : "");
    free(text2);
    free(text);
    pc_graph_free(h);
}

static void run(const uint8_t *data, size_t size, const char *passes) {
    pc_graph *g = pc_parse((const char *)data, size, "fuzz.pir", NULL);
    FUZZ_CHECK(g, "a graph that parsed once does not parse again");
    char err[4096];
    FILE *null = fopen("/dev/null", "w");
    pc_pipeline_opts po = {.dump = null, .verify_each = 1};
    if (pc_run_pipeline(&g, passes, &po, err, sizeof err)) {
        FUZZ_CHECK(strncmp(err, "after pass", 10) != 0, "%s: a pass left an invalid graph: %s", passes, err);
    } else {
        roundtrip(g, passes);
    }
    if (null) fclose(null);
    pc_graph_free(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    write_configs();
    char *err = NULL;
    pc_graph *g = pc_parse((const char *)data, size, "fuzz.pir", &err);
    free(err);
    if (!g) return 0;
    err = NULL;
    int bad = pc_verify(g, &err);
    free(err);
    if (!bad) {
        roundtrip(g, "input");
        char *dot = pc_to_dot(g);
        free(dot);
    }
    pc_graph_free(g);
    if (bad) return 0;

    uint32_t h = 2166136261u;
    for (size_t i = 0; i < size; i++) h = (h ^ data[i]) * 16777619u;
    size_t c = h % N_CONFIGS;
    int train = (h / N_CONFIGS) % 2;
    run(data, size, "fuse-kron,fuse-lowrank,dce,autograd,adamw{clip}");
    char passes[600];
    if (train)
        snprintf(passes, sizeof passes, "adapt{config=%s,mode=train},fuse-kron,fuse-lowrank,base-bf16,autograd,adamw",
                 config_paths[c]);
    else
        snprintf(passes, sizeof passes, "adapt{config=%s,mode=eval},fuse-kron,dce", config_paths[c]);
    run(data, size, passes);
    return 0;
}
