/* peftc: the command-line driver. Each verb lives in its own file. */
#include "tools/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} verb;

static const verb verbs[] = {
    {"opt", pc_cmd_opt, "read text IR, verify, run passes, print IR"},
    {"run", pc_cmd_run, "execute a graph on the reference interpreter"},
    {"dot", pc_cmd_dot, "write a graph as Graphviz DOT"},
    {"train", pc_cmd_train, "fine-tune a frozen model with an adapter (PEFT format out)"},
    {"eval", pc_cmd_eval, "held-out loss of a text under a model and adapter"},
    {"generate", pc_cmd_generate, "generate text (greedy or sampled)"},
    {"merge", pc_cmd_merge, "fold an adapter into the base weights and write the model"},
    {"dump", pc_cmd_dump, "print the IR of a model, adapted model or train step"},
    {"compile", pc_cmd_compile, "build a standalone train or infer executable (AOT)"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: peftc VERB [options]   (peftc VERB --help for a verb's options)\n\nverbs:\n");
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        fprintf(f, "  %-10s %s\n", verbs[i].name, verbs[i].summary);
}

int main(int argc, char **argv) {
    /* libgomp (oneDNN's thread pool) reads its wait policy once, at load time: a spinning pool
     * collapses when this machine packs both vCPUs onto one, so make it passive by re-executing
     * ourselves with the variable set (the user's own setting wins). */
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 0);
        execv("/proc/self/exe", argv);
        /* exec failed (no /proc): go on with the default policy */
    }
    if (argc < 2) { usage(stderr); return 2; }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (strcmp(argv[1], verbs[i].name) == 0) return verbs[i].run(argc - 2, argv + 2);
    fprintf(stderr, "peftc: unknown verb '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
