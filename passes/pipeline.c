/* Pass registry and pipeline driver. */
#include "passes/pipeline.h"
#include "ir/ir.h"

#include <stdlib.h>
#include <string.h>

#if __has_include("passes/passes.h")
#include "passes/passes.h"
#define PC_HAVE_AUTOGRAD 1
#endif

static int run_verify(pc_graph **g, char *err, size_t errlen) {
    char *msg = NULL;
    int n = pc_verify(*g, &msg);
    if (n) snprintf(err, errlen, "%s", msg ? msg : "verification failed");
    free(msg);
    return n ? -1 : 0;
}

#ifdef PC_HAVE_AUTOGRAD
static int run_autograd(pc_graph **g, char *err, size_t errlen) { return pc_pass_autograd(*g, err, errlen); }
static int run_adamw(pc_graph **g, char *err, size_t errlen) {
    pc_adamw_opts o = {.clip = 0};
    return pc_pass_adamw(*g, &o, err, errlen);
}
static int run_adamw_clip(pc_graph **g, char *err, size_t errlen) {
    pc_adamw_opts o = {.clip = 1};
    return pc_pass_adamw(*g, &o, err, errlen);
}
#endif

static const pc_pass_info passes[] = {
    {"verify", "check every value (types, operands, params, updates)", run_verify},
    {"dce", "remove values that reach no output and no update", pc_pass_dce},
    {"fuse-lowrank", "one GEMM for the low-rank down-projections (LoRA A) that share an activation", pc_pass_fuse_lowrank},
#ifdef PC_HAVE_AUTOGRAD
    {"autograd", "append the reverse-mode gradient of the loss for every trainable param", run_autograd},
    {"adamw", "append AdamW updates of trainable params (hyper-parameters in %hp: f32[8])", run_adamw},
    {"adamw-clip", "adamw with gradient clipping by global norm (max norm hp[6])", run_adamw_clip},
#endif
    {NULL, NULL, NULL},
};

const pc_pass_info *pc_pass_list(void) { return passes; }

const pc_pass_info *pc_pass_find(const char *name) {
    for (const pc_pass_info *p = passes; p->name; p++)
        if (strcmp(p->name, name) == 0) return p;
    return NULL;
}

static void dump(const pc_graph *g, const char *after, const pc_pipeline_opts *o) {
    char *text = pc_print(g, o->print);
    FILE *f = o->dump ? o->dump : stderr;
    fprintf(f, "// ----- IR dump after %s -----\n%s", after, text ? text : "(out of memory)\n");
    free(text);
}

int pc_run_pipeline(pc_graph **g, const char *list, const pc_pipeline_opts *opts, char *err, size_t errlen) {
    pc_pipeline_opts none = {0};
    if (!opts) opts = &none;
    if (opts->dump_after && strcmp(opts->dump_after, "all") != 0 && !pc_pass_find(opts->dump_after)) {
        snprintf(err, errlen, "--dump-after: unknown pass '%s'", opts->dump_after);
        return -1;
    }
    char *copy = strdup(list ? list : "");
    if (!copy) { snprintf(err, errlen, "out of memory"); return -1; }
    /* check every name first so a typo costs nothing */
    int rc = 0;
    char *save = NULL;
    for (char *name = strtok_r(copy, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        if (!pc_pass_find(name)) {
            snprintf(err, errlen, "unknown pass '%s' (see `peftc opt --help`)", name);
            free(copy);
            return -1;
        }
    }
    free(copy);
    copy = strdup(list ? list : "");
    if (!copy) { snprintf(err, errlen, "out of memory"); return -1; }
    for (char *name = strtok_r(copy, ",", &save); name && !rc; name = strtok_r(NULL, ",", &save)) {
        const pc_pass_info *p = pc_pass_find(name);
        char msg[2048] = "";
        if (p->run(g, msg, sizeof msg)) {
            snprintf(err, errlen, "pass %s: %s", name, msg);
            rc = -1;
            break;
        }
        if (msg[0]) fprintf(opts->dump ? opts->dump : stderr, "%s: %s\n", name, msg); /* a pass's warning */
        if (opts->verify_each && strcmp(name, "verify") != 0 && run_verify(g, msg, sizeof msg)) {
            snprintf(err, errlen, "after pass %s: %s", name, msg);
            rc = -1;
        }
        if (opts->dump_after && (strcmp(opts->dump_after, "all") == 0 || strcmp(opts->dump_after, name) == 0))
            dump(*g, name, opts);
    }
    free(copy);
    return rc;
}
