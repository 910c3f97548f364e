/* peftc predict: the label a classifier (and adapter) gives each example of a file. */
#include "drivers/classify.h"
#include "tools/cli.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct {
    const pc_cls_labels *names; /* --labels, or NULL: ids */
    bool json;
} out_ctx;

static int print_one(void *ctx, const pc_cls_example *e, const float *probs, int L) {
    const out_ctx *o = ctx;
    int k = pc_argmax(probs, L);
    const char *name = o->names && k < o->names->n ? o->names->names[k] : NULL;
    if (o->json) {
        printf("{\"line\":%d,\"label\":%d,", e->line, k);
        if (name) {
            /* label names are plain identifiers in practice; escape what JSON needs anyway */
            fputs("\"name\":\"", stdout);
            for (const char *c = name; *c; c++) {
                if (*c == '"' || *c == '\\') printf("\\%c", *c);
                else if ((unsigned char)*c < 0x20) printf("\\u%04x", *c);
                else putchar(*c);
            }
            fputs("\",", stdout);
        }
        printf("\"prob\":%.6f}\n", probs[k]);
    } else if (name) {
        printf("%s\n", name);
    } else {
        printf("%d\n", k);
    }
    return ferror(stdout) ? 1 : 0;
}

int pc_cmd_predict(const pc_registry *reg, int argc, char **argv) {
    const char *model = 0, *tokenizer = 0, *adapter = 0, *data = 0, *seq = 0, *batch = 0, *backend = 0, *labels = 0, *base_dtype = 0;
    bool merge = false, json = false, check_finite = false;
    pc_cli_opt opts[] = {
        {"model", true, &model, 0}, {"tokenizer", true, &tokenizer, 0}, {"adapter", true, &adapter, 0},
        {"data", true, &data, 0},   {"seq", true, &seq, 0},             {"batch", true, &batch, 0},
        {"labels", true, &labels, 0}, {"merge", false, 0, &merge},      {"json", false, 0, &json},
        {"backend", true, &backend, 0}, {"check-finite", false, 0, &check_finite},
        {"base-dtype", true, &base_dtype, 0},
    };
    const char *pos[1];
    int npos;
    int rc = pc_cli_parse("predict", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), pos, 0, &npos);
    if (rc == 1) {
        printf("usage: peftc predict --model DIR [--adapter DIR] [--merge] --data F [--labels F] [--seq S]\n"
               "                     [--batch B] [--backend ref|jit] [--json] [--check-finite]\n\n"
               "Classifies every example of --data (JSONL with a \"text\" field, or CSV with a text column;\n"
               "labels in the file are not needed and not used) with an encoder's classification head and\n"
               "the adapter, and prints one line per example in file order: the label's name from --labels\n"
               "(a JSON list), else its id. --json prints {\"line\":..., \"label\":id, \"name\":..., \"prob\":...}\n"
               "(prob: the softmax probability of the label). Examples are cut to --seq tokens (default 128).\n\n"
               PC_CLI_CHECK_FINITE_HELP PC_CLI_BASE_DTYPE_HELP);
        return 0;
    }
    if (rc) return 1;
    pc_dtype base_dt;
    if (pc_cli_base_dtype("predict", base_dtype, &base_dt)) return 1;
    if (!model || !data) { fprintf(stderr, "peftc predict: --model and --data are required\n"); return 1; }
    long long S = 128, B = 8;
    if (seq && pc_cli_int("predict", "seq", seq, 1, 1 << 20, &S)) return 1;
    if (batch && pc_cli_int("predict", "batch", batch, 1, 65536, &B)) return 1;
    if (merge && !adapter) { fprintf(stderr, "peftc predict: --merge needs --adapter\n"); return 1; }
    pc_exec_opts eo = {.threads = 1, .check_finite = check_finite};
    if (pc_backend_parse(backend, &eo.kind)) {
        fprintf(stderr, "peftc predict: --backend: expected ref or jit, got '%s'\n", backend);
        return 1;
    }
    char err[4096];
    pc_cls_labels names = {0};
    if (labels && pc_cls_labels_load(&names, labels, err, sizeof err)) {
        fprintf(stderr, "peftc predict: %s\n", err);
        return 1;
    }
    pc_session s;
    if (pc_session_open_labels(&s, reg, model, tokenizer, adapter, names.n, err, sizeof err)) {
        fprintf(stderr, "peftc predict: %s\n", err);
        pc_cls_labels_free(&names);
        return 1;
    }
    if (pc_session_set_base_dtype(&s, base_dt, err, sizeof err)) {
        fprintf(stderr, "peftc predict: %s\n", err);
        pc_session_close(&s);
        pc_cls_labels_free(&names);
        return 1;
    }
    out_ctx oc = {labels ? &names : NULL, json};
    rc = pc_predict_cls(&s, data, labels, (int)S, (int)B, merge, &eo, print_one, &oc, err, sizeof err);
    pc_session_close(&s);
    pc_cls_labels_free(&names);
    if (rc) { fprintf(stderr, "peftc predict: %s\n", err); return 1; }
    if (fflush(stdout)) { fprintf(stderr, "peftc predict: writing to stdout failed\n"); return 1; }
    return 0;
}
