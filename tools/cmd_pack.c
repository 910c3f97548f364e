/* peftc pack: several adapter directories as one directory in PEFT's multi-adapter layout. */
#include "drivers/adapter_layout.h"
#include "tools/cli.h"

#include <stdio.h>
#include <string.h>

int pc_cmd_pack(const pc_registry *reg, int argc, char **argv) {
    (void)reg;
    const char *out = 0;
    pc_cli_opt opts[] = {{"out", true, &out, 0}};
    const char *pos[64];
    int npos;
    int rc = pc_cli_parse("pack", argc, argv, opts, 1, pos, 64, &npos);
    if (rc == 1) {
        printf("usage: peftc pack --out DIR [NAME=]ADAPTER_DIR ...\n\n"
               "Writes the adapters as one directory the way PEFT's save_pretrained writes a model with\n"
               "several adapters: the one named 'default' (a bare ADAPTER_DIR is 'default') at the root,\n"
               "every other one in DIR/NAME. Each is copied as it is (adapter_config.json,\n"
               "adapter_model.safetensors). peftc eval/generate --adapter DIR load them all by name\n"
               "(--active NAME); PEFT loads DIR as 'default' and DIR/NAME with load_adapter. DIR is\n"
               "written as a whole, replacing what was there.\n");
        return 0;
    }
    if (rc) return 1;
    if (!out || npos == 0) { fprintf(stderr, "peftc pack: --out and at least one adapter are required\n"); return 1; }
    const char *names[64], *dirs[64];
    char namebuf[64][256];
    pc_in ins[64 * 3];
    pc_cli_adapter_paths ap[64];
    int nin = 0;
    for (int i = 0; i < npos; i++) {
        const char *eq = strchr(pos[i], '=');
        if (eq && !memchr(pos[i], '/', (size_t)(eq - pos[i])) && (size_t)(eq - pos[i]) < sizeof namebuf[i]) {
            snprintf(namebuf[i], sizeof namebuf[i], "%.*s", (int)(eq - pos[i]), pos[i]);
            names[i] = namebuf[i], dirs[i] = eq + 1;
        } else {
            names[i] = "default", dirs[i] = pos[i];
        }
        nin += pc_cli_adapter_inputs("adapter", dirs[i], ins + nin, &ap[i]);
    }
    pc_out outs[] = {{.flag = "--out", .path = out, .kind = PC_OUT_DIR, .replaced = true}};
    if (pc_cli_check_outputs("peftc pack", outs, 1, ins, nin)) return 1;
    char err[4096];
    if (pc_adapters_write_layout(out, names, dirs, npos, err, sizeof err)) {
        fprintf(stderr, "peftc pack: %s\n", err);
        return 1;
    }
    fprintf(stderr, "peftc pack: %d adapter%s written to %s\n", npos, npos == 1 ? "" : "s", out);
    return 0;
}
