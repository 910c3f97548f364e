/* peftc opt / peftc dot: text IR in, passes, text IR or DOT out. */
#include "passes/pipeline.h"
#include "tools/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* reads, parses and verifies; prints diagnostics; NULL on failure */
static pc_graph *load_graph(const char *verb, const char *path) {
    size_t len;
    char *text = pc_cli_read(verb, path, &len);
    if (!text) return NULL;
    char *err = NULL;
    pc_graph *g = pc_parse(text, len, strcmp(path, "-") == 0 ? "<stdin>" : path, &err);
    free(text);
    if (!g) {
        fputs(err ? err : "parse failed\n", stderr);
        free(err);
        return NULL;
    }
    free(err);
    err = NULL;
    if (pc_verify(g, &err)) {
        fputs(err ? err : "verification failed\n", stderr);
        free(err);
        pc_graph_free(g);
        return NULL;
    }
    free(err);
    return g;
}

static void opt_help(void) {
    printf("usage: peftc opt FILE [--passes=LIST] [--dump-after=PASS|all] [--no-locations]\n"
           "                      [--elide=N] [-o OUT]\n\n"
           "Reads text IR (FILE '-' = stdin), verifies it, runs the passes in order, verifies the\n"
           "result and prints it (to OUT, written atomically, or stdout). Dumps go to stderr.\n"
           "LIST is comma-separated, each pass with its options in braces:\n"
           "  --passes='adapt{config=examples/configs/ia3.json},autograd,adamw{clip}'\n\n"
           "passes:\n");
    for (const pc_pass_info *p = pc_pass_list(); p->name; p++) printf("  %-12s %s\n", p->name, p->help);
}

int pc_cmd_opt(const pc_registry *reg, int argc, char **argv) {
    const char *passes = NULL, *dump_after = NULL, *out = NULL, *elide = NULL;
    bool no_loc = false;
    pc_cli_opt opts[] = {
        {"passes", true, &passes, NULL},       {"dump-after", true, &dump_after, NULL},
        {"o", true, &out, NULL},               {"elide", true, &elide, NULL},
        {"no-locations", false, NULL, &no_loc},
    };
    const char *pos[1];
    int npos;
    int rc = pc_cli_parse("opt", argc, argv, opts, 5, pos, 1, &npos);
    if (rc == 1) { opt_help(); return 0; }
    if (rc) return 1;
    if (npos != 1) { fprintf(stderr, "peftc opt: expected one input FILE (see peftc opt --help)\n"); return 1; }
    pc_in ins[] = {{"FILE", pos[0]}};
    pc_out outs[] = {{.flag = "-o", .path = out, .kind = PC_OUT_FILE}};
    if (pc_cli_check_outputs("peftc opt", outs, 1, ins, 1)) return 1;
    long long elide_n = 16;
    if (elide && pc_cli_int("opt", "elide", elide, 0, 1ll << 40, &elide_n)) return 1;
    pc_graph *g = load_graph("opt", pos[0]);
    if (!g) return 1;
    pc_pipeline_opts po = {.dump_after = dump_after,
                           .dump = stderr,
                           .print = {.elide_consts_over = (int)elide_n, .show_locations = !no_loc},
                           .verify_each = 1,
                           .reg = reg};
    char err[4096];
    if (passes && pc_run_pipeline(&g, passes, &po, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        pc_graph_free(g);
        return 1;
    }
    char *text = pc_print(g, po.print);
    pc_graph_free(g);
    if (!text) { fprintf(stderr, "peftc opt: out of memory\n"); return 1; }
    rc = pc_cli_write("opt", out, text, strlen(text));
    free(text);
    return rc ? 1 : 0;
}

int pc_cmd_dot(const pc_registry *reg, int argc, char **argv) {
    (void)reg;
    const char *out = NULL;
    pc_cli_opt opts[] = {{"o", true, &out, NULL}};
    const char *pos[1];
    int npos;
    int rc = pc_cli_parse("dot", argc, argv, opts, 1, pos, 1, &npos);
    if (rc == 1) {
        printf("usage: peftc dot FILE [-o OUT.dot]\n\nWrites the graph of a text IR file as Graphviz DOT.\n");
        return 0;
    }
    if (rc) return 1;
    if (npos != 1) { fprintf(stderr, "peftc dot: expected one input FILE (see peftc dot --help)\n"); return 1; }
    pc_in ins[] = {{"FILE", pos[0]}};
    pc_out outs[] = {{.flag = "-o", .path = out, .kind = PC_OUT_FILE}};
    if (pc_cli_check_outputs("peftc dot", outs, 1, ins, 1)) return 1;
    pc_graph *g = load_graph("dot", pos[0]);
    if (!g) return 1;
    char *text = pc_to_dot(g);
    pc_graph_free(g);
    if (!text) { fprintf(stderr, "peftc dot: out of memory\n"); return 1; }
    rc = pc_cli_write("dot", out, text, strlen(text));
    free(text);
    return rc ? 1 : 0;
}
