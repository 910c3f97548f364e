/* peftc eval: held-out loss of a text under the model (and adapter), or loss and accuracy of a
 * classifier on labelled examples. */
#include "drivers/classify.h"
#include "drivers/eval_samples.h"
#include "drivers/evaluate.h"
#include "drivers/evaluate_tasks.h"
#include "runtime/task_data.h"
#include "tools/cli.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static bool ends_with(const char *s, const char *tail) {
    size_t n = strlen(s), m = strlen(tail);
    return n >= m && strcmp(s + n - m, tail) == 0;
}

/* per-sample JSONL evaluation of a causal LM: overall and per adapter */
static int eval_samples(pc_session *s, const char *data, long long S, long long B, bool json, const pc_exec_opts *eo) {
    pc_eval_samples_result r;
    char err[4096];
    if (pc_eval_samples(s, data, (int)S, (int)B, eo, &r, err, sizeof err)) {
        fprintf(stderr, "peftc eval: %s\n", err);
        return 1;
    }
    if (json) printf("{\"loss\":%.6f,\"tokens\":%zu,\"samples\":%zu,\"adapters\":{", r.loss, r.tokens, r.samples);
    else printf("loss %.6f  ppl %.4f  (%zu tokens in %zu samples)\n", r.loss, exp(r.loss), r.tokens, r.samples);
    for (int k = 0, first = 1; k < r.ngroups; k++) {
        if (!r.group_samples[k]) continue;
        const char *name = k < s->nnamed ? s->named[k].name : PC_BASE_ADAPTER_NAME;
        if (json) printf("%s\"%s\":{\"loss\":%.6f,\"tokens\":%zu,\"samples\":%zu}", first ? "" : ",", name,
                         r.group_loss[k], r.group_tokens[k], r.group_samples[k]);
        else printf("  %-16s loss %.6f  (%zu tokens in %zu samples)\n", name, r.group_loss[k], r.group_tokens[k],
                    r.group_samples[k]);
        first = 0;
    }
    if (json) printf("}}\n");
    pc_eval_samples_free(&r);
    return 0;
}

int pc_cmd_eval(const pc_registry *reg, int argc, char **argv) {
    const char *model = 0, *tokenizer = 0, *adapter = 0, *data = 0, *seq = 0, *batch = 0, *backend = 0, *dump = 0,
               *labels = 0, *task_id = 0, *active = 0, *base_dtype = 0;
    bool merge = false, json = false, hf = false, check_finite = false;
    pc_cli_opt opts[] = {
        {"model", true, &model, 0}, {"tokenizer", true, &tokenizer, 0}, {"adapter", true, &adapter, 0},
        {"data", true, &data, 0},   {"seq", true, &seq, 0},             {"batch", true, &batch, 0},
        {"merge", false, 0, &merge}, {"json", false, 0, &json}, {"hf-qk-rows", false, 0, &hf},
        {"backend", true, &backend, 0}, {"dump-after", true, &dump, 0}, {"check-finite", false, 0, &check_finite},
        {"labels", true, &labels, 0}, {"task-id", true, &task_id, 0},
        {"active", true, &active, 0}, {"base-dtype", true, &base_dtype, 0},
    };
    const char *adapters[64]; /* --adapter [NAME=]DIR, repeated */
    int nad = 0;
    if ((argc = pc_cli_take_repeated("eval", argc, argv, "adapter", adapters, 64, &nad)) < 0) return 1;
    if (nad) adapter = adapters[0];
    const char *pos[1];
    int npos;
    int rc = pc_cli_parse("eval", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), pos, 0, &npos);
    if (rc == 1) {
        printf("usage: peftc eval [--model F] [--tokenizer F] [--adapter [NAME=]DIR ...] [--active NAME] [--merge]\n"
               "                  --data F --seq S\n"
               "                  [--batch B] [--labels F] [--backend ref|jit] [--json] [--dump-after=adapt]\n"
               "                  [--check-finite] [--task-id N]\n\n"
               "A causal LM: the mean next-token cross-entropy of the text: tokens = [BOS] + encode(text);\n"
               "window i = tokens[i*S : i*S+S+1], kept if it has S+1 tokens; loss = mean over all targets.\n"
               "A classifier (BERT, RoBERTa): mean cross-entropy and accuracy over the labelled examples of\n"
               "--data (JSONL or CSV, as peftc train reads them; --labels F names the labels), each cut to\n"
               "--seq tokens (default 128); --json prints {\"loss\":..., \"accuracy\":..., \"n_examples\":...}.\n"
               "--merge folds the adapter into the weights first. --hf-qk-rows: the adapter was made\n"
               "for a Hugging Face-converted Llama (q/k rows permuted per head). --json prints\n"
               "{\"loss\":..., \"ppl\":..., \"tokens\":..., \"windows\":...}. --dump-after=adapt (or all)\n"
               "prints the evaluated graph, adapter applied, to stderr.\n"
               "Task data (a .jsonl file of {\"text\"}, {\"input\",\"target\"} or {\"input\",\"answer_choices\",\n"
               "\"label\"} lines, each with an optional \"task\": N): the mean cross-entropy over the target tokens\n"
               "({\"loss\":..., \"tokens\":..., \"rows\":...}); multiple choice: rank-classification accuracy (the\n"
               "choice of the highest mean log-likelihood per token) and the T-Few losses averaged over the\n"
               "examples ({\"accuracy\":..., \"loss_lm\":..., \"loss_ul\":..., \"loss_ln\":..., \"n_examples\":...}).\n"
               "--seq caps a row (default: the model's context). --task-id N: the task id of examples that\n"
               "name none (default 0), for an adapter with per-task parameters.\n\n"
               "Several adapters: --adapter NAME=DIR, repeated (a bare DIR is 'default'; a directory in\n"
               "PEFT's save_pretrained layout, adapters in subdirectories named after them, loads them\n"
               "all); --active NAME picks the one the model runs with (default: the first; __base__: none).\n"
               "A causal LM with --data F.jsonl whose lines name adapters, {\"text\": ..., \"adapter\": NAME}\n"
               "(the first line must have the field; null or absent: the active one; __base__: the base\n"
               "model), evaluates one sample per line, each cut to --seq+1\n"
               "tokens; the samples of a batch may name different adapters and run in one pass. It prints\n"
               "the loss over all samples and per adapter.\n\n" PC_CLI_CHECK_FINITE_HELP PC_CLI_BASE_DTYPE_HELP);
        return 0;
    }
    if (rc) return 1;
    pc_dtype base_dt;
    if (pc_cli_base_dtype("eval", base_dtype, &base_dt)) return 1;
    if (pc_cli_dump_stage("eval", dump)) return 1;
    if (!data) { fprintf(stderr, "peftc eval: --data is required\n"); return 1; }
    long long S = 0, B = 8, T = 0;
    if (task_id && pc_cli_int("eval", "task-id", task_id, 0, 1 << 30, &T)) return 1;
    if (seq && pc_cli_int("eval", "seq", seq, 1, 1 << 20, &S)) return 1;
    if (batch && pc_cli_int("eval", "batch", batch, 1, 65536, &B)) return 1;
    if (merge && !adapter) { fprintf(stderr, "peftc eval: --merge needs --adapter\n"); return 1; }
    pc_exec_opts eo = {.threads = 1, .check_finite = check_finite};
    if (pc_backend_parse(backend, &eo.kind)) {
        fprintf(stderr, "peftc eval: --backend: expected ref or jit, got '%s'\n", backend);
        return 1;
    }
    char mbuf[4096], err[4096];
    if (!model) model = pc_default_path("stories260K/stories260K.bin", mbuf, sizeof mbuf);
    int nlabels = 0; /* --labels sizes a classifier's head */
    if (labels) {
        pc_cls_labels lb;
        if (pc_cls_labels_load(&lb, labels, err, sizeof err)) { fprintf(stderr, "peftc eval: %s\n", err); return 1; }
        nlabels = lb.n;
        pc_cls_labels_free(&lb);
    }
    pc_session s;
    if (pc_session_open_named(&s, reg, model, tokenizer, adapters, nad, active, false, nlabels, err, sizeof err)) {
        fprintf(stderr, "peftc eval: %s\n", err);
        return 1;
    }
    bool samples = false;
    if (!s.model.info.encoder && ends_with(data, ".jsonl") && pc_samples_detect(data, &samples, err, sizeof err)) {
        fprintf(stderr, "peftc eval: %s\n", err);
        pc_session_close(&s);
        return 1;
    }
    if (samples && !s.named && s.adapter.cfg) { /* samples name their adapters: open them by name */
        pc_session_close(&s);
        if (pc_session_open_named(&s, reg, model, tokenizer, adapters, nad, active, true, nlabels, err, sizeof err)) {
            fprintf(stderr, "peftc eval: %s\n", err);
            return 1;
        }
    }
    s.dump_after = dump;
    s.hf_qk_rows = hf;
    if (pc_session_set_base_dtype(&s, base_dt, err, sizeof err)) {
        fprintf(stderr, "peftc eval: %s\n", err);
        pc_session_close(&s);
        return 1;
    }
    s.task_id = (int)T; /* MPT: checked against its task count when graphs are built */
    if (s.model.info.encoder) {
        pc_cls_result c;
        rc = pc_eval_cls(&s, data, labels, S ? (int)S : 128, (int)B, merge, &eo, &c, err, sizeof err);
        pc_session_close(&s);
        if (rc) { fprintf(stderr, "peftc eval: %s\n", err); return 1; }
        if (json) printf("{\"loss\":%.6f,\"accuracy\":%.6f,\"n_examples\":%zu}\n", c.loss, c.accuracy, c.n);
        else printf("loss %.6f  accuracy %.4f  (%zu examples)\n", c.loss, c.accuracy, c.n);
        return 0;
    }
    if (samples) {
        rc = merge ? (fprintf(stderr, "peftc eval: --merge runs one adapter; per-sample data (.jsonl) names each "
                              "sample's: evaluate it unmerged\n"), 1)
                   : eval_samples(&s, data, S ? S : s.model.info.context, B, json, &eo);
        pc_session_close(&s);
        return rc;
    }
    bool jsonl = false;
    pc_eval_opts o = {.seq = (int)S, .batch = (int)B, .merge = merge, .exec = eo, .task_id = (int)T};
    if (!labels && pc_task_data_detect(data, &jsonl, err, sizeof err)) {
        fprintf(stderr, "peftc eval: %s\n", err);
        pc_session_close(&s);
        return 1;
    }
    if (jsonl && !labels) {
        pc_task_eval_result t;
        rc = pc_eval_tasks(&s, data, &o, &t, err, sizeof err);
        pc_session_close(&s);
        if (rc) { fprintf(stderr, "peftc eval: %s\n", err); return 1; }
        if (t.choice && json)
            printf("{\"accuracy\":%.6f,\"loss_lm\":%.6f,\"loss_ul\":%.6f,\"loss_ln\":%.6f,\"n_examples\":%zu}\n",
                   t.accuracy, t.loss_lm, t.loss_ul, t.loss_ln, t.n_examples);
        else if (t.choice)
            printf("accuracy %.4f  loss_lm %.6f  loss_ul %.6f  loss_ln %.6f  (%zu examples)\n", t.accuracy, t.loss_lm,
                   t.loss_ul, t.loss_ln, t.n_examples);
        else if (json) printf("{\"loss\":%.6f,\"tokens\":%zu,\"rows\":%zu}\n", t.loss, t.tokens, t.rows);
        else printf("loss %.6f  (%zu target tokens in %zu rows)\n", t.loss, t.tokens, t.rows);
        return 0;
    }
    if (!seq || labels) {
        fprintf(stderr, "peftc eval: %s\n", labels ? "--labels is for a classifier's data; this model is a causal LM"
                                                    : "--seq is required (tokens per window of the text)");
        pc_session_close(&s);
        return 1;
    }
    pc_eval_result r;
    rc = pc_eval_text(&s, data, &o, &r, err, sizeof err);
    pc_session_close(&s);
    if (rc) { fprintf(stderr, "peftc eval: %s\n", err); return 1; }
    if (json) {
        /* exp(loss) overflows to inf past ~709 nats; JSON has no inf */
        char ppl[64];
        if (isfinite(r.ppl)) snprintf(ppl, sizeof ppl, "%.6f", r.ppl);
        else snprintf(ppl, sizeof ppl, "null");
        printf("{\"loss\":%.6f,\"ppl\":%s,\"tokens\":%zu,\"windows\":%zu}\n", r.loss, ppl, r.tokens, r.windows);
    }
    else printf("loss %.6f  ppl %.4f  (%zu tokens in %zu windows)\n", r.loss, r.ppl, r.tokens, r.windows);
    return 0;
}
