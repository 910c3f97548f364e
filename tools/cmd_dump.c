/* peftc dump: the IR of the model as a user sees it while developing an adapter. */
#include "drivers/train.h"
#include "ir/ir.h"
#include "passes/pipeline.h"
#include "tools/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pc_cmd_dump(const pc_registry *reg, int argc, char **argv) {
    const char *model = 0, *adapter = 0, *stage = 0, *dump_after = 0, *dot = 0, *batch = 0, *seq = 0, *task = 0, *base_dtype = 0;
    bool no_loc = false;
    pc_cli_opt opts[] = {
        {"model", true, &model, 0}, {"adapter", true, &adapter, 0}, {"stage", true, &stage, 0},
        {"dump-after", true, &dump_after, 0}, {"dot", true, &dot, 0}, {"batch", true, &batch, 0},
        {"seq", true, &seq, 0}, {"no-locations", false, 0, &no_loc}, {"graph", true, &task, 0},
        {"base-dtype", true, &base_dtype, 0},
    };
    const char *pos[1];
    int npos;
    int rc = pc_cli_parse("dump", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), pos, 0, &npos);
    if (rc == 1) {
        printf("usage: peftc dump [--model F] [--adapter DIR|CONFIG] --stage forward|adapted|train\n"
               "                  [--graph lm|decode] [--dump-after=PASS|all] [--dot F] [--batch B] [--seq S]\n"
               "                  [--no-locations] [--base-dtype bf16]\n\n"
               "Prints the IR of the model's training forward pass (forward), with the adapter applied\n"
               "at its sites (adapted; default adapter: LoRA r=8 on all projections), or the whole\n"
               "train step with gradients and AdamW updates (train). --graph decode prints the one-token\n"
               "decode step instead (--seq = KV-cache length; forward/adapted only). --dump-after prints\n"
               "the IR after each named stage (adapt, autograd, adamw or all) to stderr; --dot also\n"
               "writes Graphviz. --base-dtype bf16: the graphs of a bf16 base (adapted and train stages;\n"
               "see peftc train --help).\n");
        return 0;
    }
    if (rc) return 1;
    pc_dtype base_dt;
    if (pc_cli_base_dtype("dump", base_dtype, &base_dt)) return 1;
    if (!stage) { fprintf(stderr, "peftc dump: --stage is required (forward, adapted or train)\n"); return 1; }
    int st = strcmp(stage, "forward") == 0 ? 0 : strcmp(stage, "adapted") == 0 ? 1 : strcmp(stage, "train") == 0 ? 2 : -1;
    if (st < 0) { fprintf(stderr, "peftc dump: --stage: expected forward, adapted or train, got '%s'\n", stage); return 1; }
    bool decode = task && strcmp(task, "decode") == 0;
    if (task && !decode && strcmp(task, "lm")) { fprintf(stderr, "peftc dump: --graph: expected lm or decode, got '%s'\n", task); return 1; }
    if (decode && st == 2) { fprintf(stderr, "peftc dump: --graph decode has no train stage\n"); return 1; }
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
    pc_in ins[4] = {{"--model", model}};
    pc_cli_adapter_paths ap;
    int nin = 1 + pc_cli_adapter_inputs("--adapter", adapter, ins + 1, &ap);
    pc_out outs[] = {{.flag = "--dot", .path = dot, .kind = PC_OUT_FILE}};
    if (pc_cli_check_outputs("peftc dump", outs, 1, ins, nin)) return 1;
    pc_session s;
    if (pc_session_open(&s, reg, model, NULL, adapter, err, sizeof err) ||
        pc_session_set_base_dtype(&s, base_dt, err, sizeof err)) {
        fprintf(stderr, "peftc dump: %s\n", err);
        pc_session_close(&s);
        return 1;
    }
    pc_graph *g = NULL, *eval = NULL;
    pc_print_opts po = {.elide_consts_over = 16, .show_locations = !no_loc};
    rc = st > 0 ? pc_session_default_adapter(&s, err, sizeof err) : 0;
    if (!rc && st == 2) {
        /* exactly the graphs peftc train runs */
        pc_train_opts o = pc_train_defaults();
        o.batch = (int)B, o.seq = (int)S, o.dump_after = dump_after;
        rc = pc_train_graphs(&s, &o, true, &g, &eval, err, sizeof err);
    } else if (!rc) {
        pc_build_req req = {.task = decode ? PC_TASK_DECODE : PC_TASK_LM, .batch = B, .seq = S,
                            .mode = decode ? PC_ADAPT_DECODE : PC_ADAPT_EVAL};
        g = st == 0 ? pc_model_build(&s.model, &req, NULL, err, sizeof err) : pc_session_build(&s, &req, true, err, sizeof err);
        rc = g ? 0 : -1;
        pc_pipeline_opts pp = {.dump_after = dump_after, .print = po};
        if (g && st == 1) pc_pipeline_dump(g, "adapt", &pp);
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
    pc_graph_free(eval);
    pc_session_close(&s);
    return rc ? 1 : 0;
}
