/* peftc dump: the IR of the model as a user sees it while developing an adapter. */
#include "drivers/session.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "passes/pipeline.h"
#include "tools/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pc_cmd_dump(int argc, char **argv) {
    const char *model = 0, *adapter = 0, *stage = 0, *dump_after = 0, *dot = 0, *batch = 0, *seq = 0;
    bool no_loc = false;
    pc_cli_opt opts[] = {
        {"model", true, &model, 0}, {"adapter", true, &adapter, 0}, {"stage", true, &stage, 0},
        {"dump-after", true, &dump_after, 0}, {"dot", true, &dot, 0}, {"batch", true, &batch, 0},
        {"seq", true, &seq, 0}, {"no-locations", false, 0, &no_loc},
    };
    const char *pos[1];
    int npos;
    int rc = pc_cli_parse("dump", argc, argv, opts, 8, pos, 0, &npos);
    if (rc == 1) {
        printf("usage: peftc dump [--model F] [--adapter DIR|CONFIG] --stage forward|adapted|train\n"
               "                  [--dump-after=PASS|all] [--dot F] [--batch B] [--seq S] [--no-locations]\n\n"
               "Prints the IR of the model's training forward pass (forward), with the adapter applied\n"
               "(adapted; default adapter: LoRA r=8 on all projections), or the whole train step with\n"
               "gradients and AdamW updates (train). --dump-after prints the IR after each named pass\n"
               "(adapt, autograd, adamw or all) to stderr; --dot also writes Graphviz.\n");
        return 0;
    }
    if (rc) return 1;
    if (!stage) { fprintf(stderr, "peftc dump: --stage is required (forward, adapted or train)\n"); return 1; }
    int st = strcmp(stage, "forward") == 0 ? 0 : strcmp(stage, "adapted") == 0 ? 1 : strcmp(stage, "train") == 0 ? 2 : -1;
    if (st < 0) { fprintf(stderr, "peftc dump: --stage: expected forward, adapted or train, got '%s'\n", stage); return 1; }
    if (dump_after && strcmp(dump_after, "all") && strcmp(dump_after, "adapt") && strcmp(dump_after, "autograd") &&
        strcmp(dump_after, "adamw")) {
        fprintf(stderr, "peftc dump: --dump-after: expected adapt, autograd, adamw or all, got '%s'\n", dump_after);
        return 1;
    }
    long long B = 1, S = 8;
    if (batch && pc_cli_int("dump", "batch", batch, 1, 65536, &B)) return 1;
    if (seq && pc_cli_int("dump", "seq", seq, 1, 1 << 20, &S)) return 1;
    char mbuf[4096], err[4096];
    if (!model) model = pc_default_path("stories260K/stories260K.bin", mbuf, sizeof mbuf);
    pc_session s;
    if (pc_session_open(&s, model, NULL, adapter, err, sizeof err)) { fprintf(stderr, "peftc dump: %s\n", err); return 1; }
    pc_adapter_config *dflt = NULL;
    if (!s.adapter.cfg && st > 0) s.adapter.cfg = dflt = pc_default_lora_config();
    pc_print_opts po = {.elide_consts_over = 16, .show_locations = !no_loc};
    pc_graph *g = pc_llama_train_graph(&s.cfg, B, S, 0, err, sizeof err);
    rc = g ? 0 : -1;
#define AFTER(name)                                                                                \
    if (!rc && dump_after && (!strcmp(dump_after, "all") || !strcmp(dump_after, name))) {          \
        char *t = pc_print(g, po);                                                                 \
        fprintf(stderr, "// ----- IR dump after %s -----\n%s", name, t ? t : "");                  \
        free(t);                                                                                   \
    }
    if (!rc && st >= 1) { rc = pc_session_adapt(&s, &g, st == 2, true, err, sizeof err); AFTER("adapt"); }
    if (!rc && st == 2) { rc = pc_pass_autograd(g, err, sizeof err); AFTER("autograd"); }
    if (!rc && st == 2) {
        pc_adamw_opts ao = {.clip = 1};
        rc = pc_pass_adamw(g, &ao, err, sizeof err);
        AFTER("adamw");
    }
    if (!rc) {
        char *text = pc_print(g, po);
        rc = text ? pc_cli_write("dump", "-", text, strlen(text)) : -1;
        free(text);
    } else {
        fprintf(stderr, "peftc dump: %s\n", err);
    }
    if (!rc && dot) {
        char *text = pc_to_dot(g);
        rc = text ? pc_cli_write("dump", dot, text, strlen(text)) : -1;
        free(text);
    }
    pc_graph_free(g);
    if (dflt) s.adapter.cfg = NULL;
    pc_adapter_config_free(dflt);
    pc_session_close(&s);
    return rc ? 1 : 0;
}
