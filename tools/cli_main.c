/* The verbs of the peftc command line, with the adapter methods of a registry. */
#include "backend/kernel.h"
#include "backend/onednn.h"
#include "drivers/session.h"
#include "tools/cli.h"

#include <stdio.h>
#include <string.h>

#ifndef PEFTC_VERSION
#define PEFTC_VERSION "unknown" /* CMakeLists.txt: the project's version */
#endif

typedef struct {
    const char *name;
    int (*run)(const pc_registry *reg, int argc, char **argv);
    const char *summary;
} verb;

static const verb verbs[] = {
    {"opt", pc_cmd_opt, "read text IR, verify, run passes, print IR"},
    {"run", pc_cmd_run, "execute a graph on the reference interpreter"},
    {"dot", pc_cmd_dot, "write a graph as Graphviz DOT"},
    {"train", pc_cmd_train, "fine-tune a frozen model with an adapter (PEFT format out)"},
    {"eval", pc_cmd_eval, "held-out loss of a text (or a classifier's accuracy) under a model and adapter"},
    {"predict", pc_cmd_predict, "the label a classifier and adapter give each example"},
    {"generate", pc_cmd_generate, "generate text (greedy or sampled)"},
    {"merge", pc_cmd_merge, "fold an adapter into the base weights and write the model"},
    {"combine", pc_cmd_combine, "a new adapter from weighted adapters (PEFT's add_weighted_adapter)"},
    {"dump", pc_cmd_dump, "print the IR of a model, adapted model or train step"},
    {"compile", pc_cmd_compile, "build a standalone train or infer executable (AOT)"},
    {"methods", pc_cmd_methods, "list the adapter methods this peftc knows"},
    {"pack", pc_cmd_pack, "several adapters as one directory in PEFT's multi-adapter layout"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: peftc VERB [options]   (peftc VERB --help for a verb's options; peftc --version)\n\nverbs:\n");
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        fprintf(f, "  %-10s %s\n", verbs[i].name, verbs[i].summary);
}

int pc_cmd_methods(const pc_registry *reg, int argc, char **argv) {
    (void)argv;
    if (argc > 0) { fprintf(stderr, "peftc methods: takes no arguments\n"); return 1; }
    int wn = 0, wt = 0; /* columns as wide as the longest name and type */
    for (int i = 0; i < pc_registry_count(reg); i++) {
        const pc_adapter_method *m = pc_registry_at(reg, i);
        int n = (int)strlen(m->name), t = m->peft_type ? (int)strlen(m->peft_type) : 1;
        wn = n > wn ? n : wn, wt = t > wt ? t : wt;
    }
    for (int i = 0; i < pc_registry_count(reg); i++) {
        const pc_adapter_method *m = pc_registry_at(reg, i);
        printf("%-*s  peft_type %-*s  %s\n", wn, m->name, wt, m->peft_type ? m->peft_type : "-",
               m->merge_linear ? "mergeable" : "not mergeable");
    }
    return 0;
}

/* peftc's version, the oneDNN and LLVM libraries it runs with, where its bundled data is */
static int version(void) {
    char dnnl[256], llvm[64], data[4096];
    pc_dnnl_version(dnnl, sizeof dnnl);
    pc_llvm_version(llvm, sizeof llvm);
    const char *d = pc_default_data_dir(data, sizeof data);
    printf("peftc %s\noneDNN %s\nLLVM %s\ndata %s\n", PEFTC_VERSION, dnnl, llvm,
           d ? d : "not found (set PEFTC_DATA_DIR)");
    return 0;
}

int pc_cli_main(const pc_registry *reg, int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) return version();
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (strcmp(argv[1], verbs[i].name) == 0) return verbs[i].run(reg, argc - 2, argv + 2);
    fprintf(stderr, "peftc: unknown verb '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
