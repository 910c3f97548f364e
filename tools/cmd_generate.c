/* peftc generate: text from the model (and adapter), greedy or sampled like llama2.c. */
#include "drivers/generate.h"
#include "drivers/generate_lines.h"
#include "drivers/merge.h"
#include "passes/adapt.h"
#include "runtime/textbuf.h"
#include "tools/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* s as a JSON string (quoted: JSON; else only the control characters escaped, so that a text
 * stays on one line) */
static void tb_escaped(pc_textbuf *b, const char *s, bool quoted) {
    if (quoted) pc_tb_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (quoted && (*p == '"' || *p == '\\')) pc_tb_printf(b, "\\%c", *p);
        else if (*p == '\n') pc_tb_puts(b, "\\n");
        else if (*p == '\t') pc_tb_puts(b, "\\t");
        else if (*p == '\r') pc_tb_puts(b, "\\r");
        else if (*p < 0x20) pc_tb_printf(b, "\\u%04x", *p);
        else pc_tb_putn(b, (const char *)p, 1);
    }
    if (quoted) pc_tb_puts(b, "\"");
}

static void json_string(const char *s) {
    pc_textbuf b = {0};
    tb_escaped(&b, s, true);
    if (b.p) fputs(b.p, stdout);
    free(b.p);
}

/* the name line x ran with: null when the session has no named adapter (none, or merged into
 * a generator's weights) */
static void tb_adapter(pc_textbuf *b, const pc_session *s, int k) {
    if (!s->nnamed) pc_tb_puts(b, "null");
    else tb_escaped(b, k == s->nnamed ? PC_BASE_ADAPTER_NAME : s->named[k].name, true);
}

/* --prompts: every line of the file, its results printed in order once all have run (an error
 * prints nothing) */
static int run_prompts(pc_session *s, const char *prog, const char *path, const char *not_mixed, int tokens, bool json,
                       bool verbose, const pc_gen_lines_opts *o) {
    char err[4096];
    pc_gen_line *lines = NULL;
    int n = 0;
    if (pc_gen_lines_load(s, path, tokens, not_mixed, &lines, &n, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return 1;
    }
    pc_gen_result *res = calloc((size_t)n, sizeof *res);
    if (!res || pc_generate_lines(s, path, lines, n, o, res, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", prog, res ? err : "out of memory");
        pc_gen_lines_free(lines, n);
        free(res);
        return 1;
    }
    pc_textbuf b = {0};
    for (int i = 0; i < n; i++) {
        const pc_gen_line *x = &lines[i];
        if (x->kind == PC_GEN_LOAD) {
            if (verbose)
                fprintf(stderr, "%s: %s:%d: adapter '%s' replaced by %s in %.2f ms (the compiled graph kept)\n", prog,
                        path, x->line, x->name, x->from, res[i].ms);
            if (!json) continue;
            pc_tb_printf(&b, "{\"line\":%d,\"load\":", x->line);
            tb_escaped(&b, x->name, true);
            pc_tb_puts(&b, ",\"from\":");
            tb_escaped(&b, x->from, true);
            pc_tb_printf(&b, ",\"ms\":%.3f}\n", res[i].ms);
            continue;
        }
        if (json) {
            pc_tb_printf(&b, "{\"line\":%d,\"adapter\":", x->line);
            tb_adapter(&b, s, x->adapter);
            pc_tb_puts(&b, ",\"ids\":[");
            for (int k = 0; k < res[i].nids; k++) pc_tb_printf(&b, "%s%d", k ? "," : "", res[i].ids[k]);
            pc_tb_puts(&b, "],\"text\":");
            tb_escaped(&b, res[i].text, true);
            pc_tb_puts(&b, "}\n");
        } else {
            tb_escaped(&b, res[i].text, false);
            pc_tb_puts(&b, "\n");
        }
    }
    int rc = 0;
    if (b.oom) {
        fprintf(stderr, "%s: out of memory\n", prog);
        rc = 1;
    } else if (b.p) {
        fputs(b.p, stdout);
    }
    free(b.p);
    pc_gen_results_free(res, n);
    free(res);
    pc_gen_lines_free(lines, n);
    return rc;
}

int pc_cmd_generate(const pc_registry *reg, int argc, char **argv) { return pc_generate_main(reg, argc, argv, NULL); }

/* fx: an AOT executable (the model, tokenizer and merged adapter are compiled in) */
int pc_generate_main(const pc_registry *reg, int argc, char **argv, const pc_cli_fixed *fx) {
    const char *prog = fx ? fx->prog : "peftc generate";
    const char *model = 0, *tokenizer = 0, *adapter = 0, *prompt = 0, *ntok = 0, *temp = 0, *topp = 0, *seed = 0,
               *backend = 0, *dump = 0, *task = 0, *active = 0, *base_dtype = 0,
               *prompts = 0, *batch = 0;
    bool merge = false, json = false, hf = false, check_finite = false, verbose = false;
    pc_cli_opt opts[] = {
        {"model", true, &model, 0},   {"tokenizer", true, &tokenizer, 0}, {"adapter", true, &adapter, 0},
        {"prompt", true, &prompt, 0}, {"tokens", true, &ntok, 0},         {"temperature", true, &temp, 0},
        {"top-p", true, &topp, 0},    {"seed", true, &seed, 0},           {"merge", false, 0, &merge},
        {"json", false, 0, &json},    {"hf-qk-rows", false, 0, &hf},
        {"backend", true, &backend, 0}, {"dump-after", true, &dump, 0}, {"check-finite", false, 0, &check_finite},
        {"task-id", true, &task, 0}, /* MPT: the task whose prompt is fed */
        {"active", true, &active, 0}, {"base-dtype", true, &base_dtype, 0},
        {"prompts", true, &prompts, 0}, {"batch", true, &batch, 0}, {"verbose", false, 0, &verbose},
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
                   "--prompts, --batch (1 or the batch compiled), --tokens, --temperature, --top-p, --seed,\n"
                   "--json, --verbose and --task-id are those of peftc generate:\n\n",
                   fx->prog, fx->about);
        printf("usage: peftc generate [--model F] [--tokenizer F] [--adapter [NAME=]DIR ...] [--active NAME]\n"
               "                      [--merge] [--prompt TEXT | --prompts FILE [--batch B] [--verbose]]\n"
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
               "base model).\n\n"
               "--prompts FILE: one request per line, {\"prompt\": TEXT, \"adapter\": NAME|null|\"__base__\",\n"
               "\"tokens\": N} (adapter and tokens optional: the active adapter, --tokens) or a plain-text\n"
               "line (a prompt for the active adapter); one result per line, in order (--json:\n"
               "{\"line\":K,\"adapter\":NAME,\"ids\":[...],\"text\":...}; plain text with newlines as \\n).\n"
               "Every line runs on one compiled decode graph: with adapters loaded it serves all of them\n"
               "at once (each row picks its adapter through %%adapter_ids; methods that cannot mix, and\n"
               "--merge, serve the active one only). --batch B decodes B requests together (default 1),\n"
               "each row with its own adapter, prompt and length; each equals the request alone. A line\n"
               "{\"load\": NAME, \"from\": DIR} replaces adapter NAME's weights (same shapes) between\n"
               "requests without recompiling (the time it took: --verbose on stderr, \"ms\" in --json).\n\n"
               PC_CLI_CHECK_FINITE_HELP PC_CLI_BASE_DTYPE_HELP);
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
    long long task_id = 0, nbatch = 1;
    if (task && pc_cli_int("generate", "task-id", task, 0, 1 << 30, &task_id)) return 1;
    if (batch && pc_cli_int("generate", "batch", batch, 1, 4096, &nbatch)) return 1;
    if (prompts && prompt) { fprintf(stderr, "%s: --prompt and --prompts: give one of them\n", prog); return 1; }
    if ((batch || verbose) && !prompts) {
        fprintf(stderr, "%s: %s applies to --prompts FILE\n", prog, batch ? "--batch" : "--verbose");
        return 1;
    }
    if (fx && nbatch != 1 && nbatch != fx->batch) {
        char also[32] = " only";
        if (fx->batch > 1) snprintf(also, sizeof also, " and %d", fx->batch);
        fprintf(stderr, "%s: --batch %lld: this generator was compiled for --batch 1%s (peftc compile --mode infer "
                "--batch B)\n", prog, nbatch, also);
        return 1;
    }
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
    /* --prompts: adapters by name ("default" for a bare DIR), so lines can name them */
    if (pc_session_open_named(&s, reg, model, tokenizer, fx ? one : adapters, fx ? (adapter != NULL) : nad, active,
                              mixed || (prompts && adapter), 0, err, sizeof err)) {
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
    if (prompts) {
        /* one graph serves every adapter when they can mix (a generator: as compiled) */
        char why[4096] = "";
        if (merge) snprintf(why, sizeof why, "the adapter is merged into the weights (--merge)");
        else if (fx && !fx->mixed) snprintf(why, sizeof why, "it was compiled for one adapter");
        else if (!s.nnamed) snprintf(why, sizeof why, "no adapter is loaded (--adapter NAME=DIR)");
        else if (!fx) {
            pc_adapt_ctx *cx = pc_session_mixed_adapter(&s, PC_ADAPT_DECODE, why, sizeof why);
            if (cx) why[0] = 0;
            pc_adapt_free(cx);
        }
        s.mixed = !why[0];
        if (merge && pc_session_merge(&s, NULL, err, sizeof err)) {
            fprintf(stderr, "%s: %s\n", prog, err);
            pc_session_close(&s);
            return 1;
        }
        pc_gen_lines_opts lo = {.batch = (int)nbatch, .temperature = (float)t, .topp = (float)p, .seed = (uint64_t)sd,
                                .exec = &eo, .cache_sizes = fx ? fx->cache_sizes : NULL,
                                .ncache_sizes = fx ? fx->ncache_sizes : 0, .entries = fx ? fx->entries : NULL};
        rc = run_prompts(&s, prog, prompts, why[0] ? why : NULL, (int)n, json, verbose, &lo);
        pc_session_close(&s);
        return rc;
    }
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
