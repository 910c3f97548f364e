/* PEFT module matching (runtime/target_match.c): the input's first byte picks which field the
 * rest goes into (a Python regex or a newline-separated list), in a config built in code; the
 * matcher then runs over a fixed set of module names (module_names.h).
 *   0 target_modules regex        1 target_modules list          2 exclude_modules regex
 *   3 exclude_modules list        4 rank_pattern / alpha_pattern keys (lines 1 and 2)
 *   5 layers_pattern list + layers_to_transform [0, 1, 12]       6 modules_to_save list
 *   7 IA3 feedforward_modules regex                              8 AdaLoRA rank_pattern key
 * Oracles: a config the validator accepts builds a matcher; the match results are consistent
 * (pc_target_match agrees with pc_target_match_ex; a module targeted is not excluded). */
#include "runtime/adapter_config.h"
#include "runtime/target_match.h"
#include "tests/fuzz/fuzz_common.h"

#include "tests/fuzz/module_names.h"

/* splits s at '\n' into at most 16 items (s is modified) */
static size_t split_lines(char *s, const char **items) {
    size_t n = 0;
    for (char *p = s; n < 16;) {
        items[n++] = p;
        char *e = strchr(p, '\n');
        if (!e) break;
        *e = '\0';
        p = e + 1;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int mode = data[0] % 9;
    char *text = malloc(size);
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    const char *items[16];
    static const char *const qv[] = {"q_proj", "v_proj", "up_proj", "c_attn"};
    pc_adapter_config *cfg =
        pc_adapter_config_new(mode == 7 ? PC_PEFT_IA3 : mode == 8 ? PC_PEFT_ADALORA : PC_PEFT_LORA);
    FUZZ_CHECK(cfg, "out of memory");
    int ok = 0;
    switch (mode) {
    case 0: ok = pc_spec_set_string(&cfg->target_modules, text); break;
    case 1: ok = pc_spec_set_list(&cfg->target_modules, items, split_lines(text, items)); break;
    case 2: ok = pc_spec_set_list(&cfg->target_modules, qv, 4) || pc_spec_set_string(&cfg->exclude_modules, text); break;
    case 3: ok = pc_spec_set_string(&cfg->target_modules, ".*") || pc_spec_set_list(&cfg->exclude_modules, items, split_lines(text, items)); break;
    case 4: {
        size_t n = split_lines(text, items);
        ok = pc_spec_set_list(&cfg->target_modules, qv, 4) || pc_pattern_add(&cfg->rank_pattern, items[0], 4, true) ||
             (n > 1 && pc_pattern_add(&cfg->alpha_pattern, items[1], 2.5, false));
        break;
    }
    case 5: {
        static const int64_t layers[] = {0, 1, 12};
        ok = pc_spec_set_list(&cfg->target_modules, qv, 4) || pc_layers_set_list(&cfg->layers_to_transform, layers, 3) ||
             pc_spec_set_list(&cfg->layers_pattern, items, split_lines(text, items));
        break;
    }
    case 6: ok = pc_spec_set_list(&cfg->target_modules, qv, 4) || pc_spec_set_list(&cfg->modules_to_save, items, split_lines(text, items)); break;
    case 7: ok = pc_spec_set_string(&cfg->target_modules, ".*proj") || pc_spec_set_string(&cfg->ia3.feedforward_modules, text); break;
    case 8: {
        ok = pc_spec_set_list(&cfg->target_modules, qv, 4);
        if (!ok) {
            cfg->rank_pattern.is_null = false;
            ok = pc_pattern_add(&cfg->rank_pattern, text, 0, true);
        }
        if (!ok) { /* an AdaLoRA mask: 3 of 4 ranks kept */
            pc_pattern_entry *e = &cfg->rank_pattern.items[0];
            e->mask = calloc(4, sizeof *e->mask);
            e->mask_len = 4;
            e->mask[0] = e->mask[1] = e->mask[3] = true;
        }
        break;
    }
    }
    FUZZ_CHECK(ok == 0, "building the config failed");
    char err[1024];
    int valid = pc_adapter_config_validate(cfg, "fuzz", err, sizeof err) == 0;
    pc_target_matcher *m = pc_target_matcher_new(cfg, err, sizeof err);
    FUZZ_CHECK(m || !valid, "a valid config builds no matcher: %s", err);
    for (size_t i = 0; m && i < FUZZ_N_MODULE_NAMES; i++) {
        const char *name = fuzz_module_names[i];
        pc_match_result r = pc_target_match_ex(m, name);
        int y = pc_target_match(m, name);
        FUZZ_CHECK(y == (r == PC_MATCH_YES ? 1 : r == PC_MATCH_ERROR ? -1 : 0), "match vs match_ex on %s", name);
        int rank = 0;
        double alpha = 0;
        if (pc_target_rank_alpha(m, name, &rank, &alpha) == 0 && mode != 8)
            FUZZ_CHECK(rank > 0, "rank %d for %s", rank, name);
        (void)pc_target_rank_key(m, name);
        (void)pc_target_alpha_key(m, name);
        (void)pc_target_is_feedforward(m, name);
    }
    pc_target_matcher_free(m);
    char msg[256];
    (void)pc_pyregex_check("(.*\\.)?(", text, ")$", msg, sizeof msg);
    pc_adapter_config_free(cfg);
    free(text);
    return 0;
}
