/* peftc generate: text from the model (and adapter), greedy or sampled like llama2.c. */
#include "drivers/generate.h"
#include "tools/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void json_string(const char *s) {
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') printf("\\%c", *p);
        else if (*p == '\n') printf("\\n");
        else if (*p == '\t') printf("\\t");
        else if (*p == '\r') printf("\\r");
        else if (*p < 0x20) printf("\\u%04x", *p);
        else putchar(*p);
    }
    putchar('"');
}

int pc_cmd_generate(const pc_registry *reg, int argc, char **argv) { return pc_generate_main(reg, argc, argv, NULL); }

/* fx: an AOT executable (the model, tokenizer and merged adapter are compiled in) */
int pc_generate_main(const pc_registry *reg, int argc, char **argv, const pc_cli_fixed *fx) {
    const char *prog = fx ? fx->prog : "peftc generate";
    const char *model = 0, *tokenizer = 0, *adapter = 0, *prompt = 0, *ntok = 0, *temp = 0, *topp = 0, *seed = 0,
               *backend = 0, *dump = 0, *task = 0, *active = 0, *base_dtype = 0;
    bool merge = false, json = false, hf = false, check_finite = false;
    pc_cli_opt opts[] = {
        {"model", true, &model, 0},   {"tokenizer", true, &tokenizer, 0}, {"adapter", true, &adapter, 0},
        {"prompt", true, &prompt, 0}, {"tokens", true, &ntok, 0},         {"temperature", true, &temp, 0},
        {"top-p", true, &topp, 0},    {"seed", true, &seed, 0},           {"merge", false, 0, &merge},
        {"json", false, 0, &json},    {"hf-qk-rows", false, 0, &hf},
        {"backend", true, &backend, 0}, {"dump-after", true, &dump, 0}, {"check-finite", false, 0, &check_finite},
        {"task-id", true, &task, 0}, /* MPT: the task whose prompt is fed */
        {"active", true, &active, 0}, {"base-dtype", true, &base_dtype, 0},
    };
    const char *adapters[64]; /* --adapter [NAME=]DIR, repeated */
    int nad = 0;
    if ((argc = pc_cli_take_repeated("generate", argc, argv, "adapter", adapters, 64, &nad)) < 0) return 1;
    if (nad) adapter = adapters[0];
    const char *pos[1];
    int npos;
    int rc = pc_cli_parse("generate", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), pos, 0, &npos);
    if (rc == 1) {
        if (fx)
            printf("%s: a standalone text generator compiled by peftc compile --mode infer (%s).\n"
                   "The model, tokenizer and adapter (merged into the weights) are compiled in; --prompt,\n"
                   "--tokens, --temperature, --top-p, --seed, --json and --task-id are those of peftc\n"
                   "generate:\n\n",
                   fx->prog, fx->about);
        printf("usage: peftc generate [--model F] [--tokenizer F] [--adapter [NAME=]DIR ...] [--active NAME]\n"
               "                      [--merge] [--prompt TEXT]\n"
               "                      [--tokens N] [--temperature T] [--top-p P] [--seed N] [--json]\n"
               "                      [--backend ref|jit] [--dump-after=adapt] [--check-finite] [--task-id N]\n\n"
               "Generates up to N tokens (default 256) after the prompt (encoded with the tokenizer's\n"
               "special tokens; an empty one starts from the model's BOS), like llama2.c run.c, until\n"
               "the model's end token (llama2.c: BOS; HF/GGUF: the checkpoint's EOS): temperature 0 is greedy; otherwise softmax(logits/T) sampled with nucleus top-p\n"
               "(default 0.9) and the seed. --merge folds the adapter into the weights first.\n"
               "--hf-qk-rows: the adapter was made for a Hugging Face-converted Llama.\n"
               "--json prints {\"ids\":[...], \"text\":\"...\"}. --dump-after=adapt (or all) prints the\n"
               "decode graph, adapter applied, to stderr. --task-id N (multitask prompt tuning): the\n"
               "task whose prompt is fed (default 0). Several adapters: --adapter NAME=DIR, repeated (a\n"
               "bare DIR is 'default'; a directory in PEFT's save_pretrained layout loads every adapter\n"
               "in it by name); --active NAME generates with that one (default: the first; __base__: the\n"
               "base model).\n\n" PC_CLI_CHECK_FINITE_HELP PC_CLI_BASE_DTYPE_HELP);
        return 0;
    }
    if (rc) return 1;
    if (pc_cli_dump_stage("generate", dump)) return 1;
    pc_dtype base_dt;
    if (pc_cli_base_dtype("generate", base_dtype, &base_dt) || pc_cli_fixed_base_dtype(fx, base_dtype, &base_dt)) return 1;
    long long n = 256, sd = 42;
    double t = 1.0, p = 0.9;
    if (ntok && pc_cli_int("generate", "tokens", ntok, 1, 1 << 20, &n)) return 1;
    if (temp && pc_cli_double("generate", "temperature", temp, 0, 100, &t)) return 1;
    if (topp && pc_cli_double("generate", "top-p", topp, 0, 1, &p)) return 1;
    if (seed && pc_cli_int("generate", "seed", seed, 0, (1ll << 62), &sd)) return 1;
    long long task_id = 0;
    if (task && pc_cli_int("generate", "task-id", task, 0, 1 << 30, &task_id)) return 1;
    if (fx) {
        const char *what = model ? "--model" : tokenizer ? "--tokenizer" : adapter ? "--adapter" : merge ? "--merge"
                         : active && !fx->mixed ? "--active"
                         : hf ? "--hf-qk-rows" : backend ? "--backend" : NULL;
        if (what) {
            fprintf(stderr, "%s: %s is fixed when the executable is compiled (peftc compile)\n", prog, what);
            return 1;
        }
        model = fx->model, tokenizer = fx->tokenizer, adapter = fx->adapter; /* an unmerged (prompt) adapter */
    }
    if (merge && !adapter) { fprintf(stderr, "peftc generate: --merge needs --adapter\n"); return 1; }
    if (merge && active && strcmp(active, PC_BASE_ADAPTER_NAME) == 0) {
        fprintf(stderr, "peftc generate: --merge with --active %s: there is no adapter to merge\n", active);
        return 1;
    }
    pc_exec_opts eo = {.threads = 1, .kernels = fx ? fx->kernels : NULL, .check_finite = check_finite};
    if (pc_backend_parse(backend, &eo.kind)) {
        fprintf(stderr, "peftc generate: --backend: expected ref or jit, got '%s'\n", backend);
        return 1;
    }
    char mbuf[4096], err[4096];
    if (!model) model = pc_default_path("stories260K/stories260K.bin", mbuf, sizeof mbuf);
    pc_session s;
    const char *one[1] = {adapter};
    /* a mixed executable: every adapter of its directory in one graph, the active one per run */
    bool mixed = fx && fx->mixed;
    if (pc_session_open_named(&s, reg, model, tokenizer, fx ? one : adapters, fx ? (adapter != NULL) : nad, active, mixed,
                              0, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return 1;
    }
    s.mixed = mixed;
    s.hf_qk_rows = hf;
    if (pc_session_set_base_dtype(&s, base_dt, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", prog, err);
        pc_session_close(&s);
        return 1;
    }
    s.dump_after = dump;
    s.task_id = (int)task_id;
    pc_gen_request q = {.prompt = prompt ? prompt : "", .tokens = (int)n, .temperature = (float)t,
                        .topp = (float)p, .seed = (uint64_t)sd, .merge = merge, .exec = &eo,
                        .cache_sizes = fx ? fx->cache_sizes : NULL,
                        .ncache_sizes = fx ? fx->ncache_sizes : 0, .entries = fx ? fx->entries : NULL};
    pc_gen_output out;
    rc = pc_generate_text(&s, &q, &out, err, sizeof err);
    pc_session_close(&s);
    if (rc) { fprintf(stderr, "%s: %s\n", prog, err); return 1; }
    if (json) {
        printf("{\"ids\":[");
        for (int i = 0; i < out.nids; i++) printf("%s%d", i ? "," : "", out.ids[i]);
        printf("],\"text\":");
        json_string(out.text);
        printf("}\n");
    } else {
        printf("%s\n", out.text);
    }
    pc_gen_output_free(&out);
    return 0;
}
