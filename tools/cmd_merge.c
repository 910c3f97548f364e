/* peftc merge: write the base checkpoint with the adapter folded into its weights. */
#include "drivers/merge.h"
#include "tools/cli.h"

#include <stdio.h>
#include <sys/stat.h>

int pc_cmd_merge(const pc_registry *reg, int argc, char **argv) {
    const char *model = 0, *adapter = 0, *out = 0;
    bool hf = false, unmerge = false;
    pc_cli_opt opts[] = {{"model", true, &model, 0}, {"adapter", true, &adapter, 0}, {"out", true, &out, 0},
                         {"hf-qk-rows", false, 0, &hf}, {"unmerge", false, 0, &unmerge}};
    const char *pos[1];
    int npos;
    int rc = pc_cli_parse("merge", argc, argv, opts, 5, pos, 0, &npos);
    if (rc == 1) {
        printf("usage: peftc merge [--model F] --adapter DIR --out F [--hf-qk-rows] [--unmerge]\n\n"
               "Folds the adapter into the base weights by its method's merge rule (LoRA: W' = W + s*B*A;\n"
               "DoRA: W' = m / ||W + s*B*A||_row * (W + s*B*A); IA3: W's rows or columns scaled by ia3_l)\n"
               "and writes the merged model atomically in the input checkpoint's format: a llama2.c checkpoint,\n"
               "a Hugging Face directory (f32 safetensors), or a GGUF file (the source's metadata, every tensor\n"
               "F32: a quantized GGUF is written dequantized, not re-quantized).\n"
               "Prompt methods cannot be merged.\n"
               "--unmerge: --model is a merged checkpoint; the adapter is taken out again (PEFT's unmerge:\n"
               "LoRA W - s*B*A, IA3 W / (l + 1e-8); DoRA has no inverse: the row norms are lost).\n");
        return 0;
    }
    if (rc) return 1;
    if (!adapter || !out) { fprintf(stderr, "peftc merge: --adapter and --out are required\n"); return 1; }
    char mbuf[4096], err[4096];
    if (!model) model = pc_default_path("stories260K/stories260K.bin", mbuf, sizeof mbuf);
    pc_in ins[4] = {{"--model", model}};
    pc_cli_adapter_paths ap;
    int nin = 1 + pc_cli_adapter_inputs("--adapter", adapter, ins + 1, &ap);
    /* a model read from a directory (Hugging Face) is merged into a directory written as a whole
     * (runtime/hf_write.h): nothing inside it may be an input; a checkpoint file gives a file */
    struct stat mst;
    bool dir_model = stat(model, &mst) == 0 && S_ISDIR(mst.st_mode);
    pc_out outs[] = {{.flag = "--out", .path = out, .kind = dir_model ? PC_OUT_DIR : PC_OUT_FILE, .replaced = dir_model}};
    if (pc_cli_check_outputs("peftc merge", outs, 1, ins, nin)) return 1;
    pc_session s;
    if (pc_session_open(&s, reg, model, NULL, adapter, err, sizeof err)) { fprintf(stderr, "peftc merge: %s\n", err); return 1; }
    s.hf_qk_rows = hf;
    int n = 0;
    rc = unmerge ? pc_session_unmerge(&s, &n, err, sizeof err) : pc_session_merge(&s, &n, err, sizeof err);
    if (!rc) rc = pc_make_parents(out, err, sizeof err);
    if (!rc) rc = pc_session_write_model(&s, out, err, sizeof err);
    if (!rc) fprintf(stderr, "peftc merge: %d modules %smerged into %s\n", n, unmerge ? "un" : "", out);
    pc_session_close(&s);
    if (rc) { fprintf(stderr, "peftc merge: %s\n", err); return 1; }
    return 0;
}
