/* Pass registry and pipeline driver. */
#include "passes/pipeline.h"
#include "ir/ir.h"
#include "passes/passes.h"

#include <stdlib.h>
#include <string.h>

static int run_verify(pc_graph **g, const pc_pass_args *a, char *err, size_t errlen) {
    (void)a;
    char *msg = NULL;
    int n = pc_verify(*g, &msg);
    if (n) snprintf(err, errlen, "%s", msg ? msg : "verification failed");
    free(msg);
    return n ? -1 : 0;
}
static int run_dce(pc_graph **g, const pc_pass_args *a, char *err, size_t errlen) { (void)a; return pc_pass_dce(g, err, errlen); }
static int run_fuse_lowrank(pc_graph **g, const pc_pass_args *a, char *err, size_t errlen) {
    (void)a;
    return pc_pass_fuse_lowrank(g, err, errlen);
}
static int run_fuse_kron(pc_graph **g, const pc_pass_args *a, char *err, size_t errlen) { (void)a; return pc_pass_fuse_kron(g, err, errlen); }
static int run_autograd(pc_graph **g, const pc_pass_args *a, char *err, size_t errlen) {
    (void)a;
    return pc_pass_autograd(*g, err, errlen);
}
static int run_adamw(pc_graph **g, const pc_pass_args *a, char *err, size_t errlen) {
    pc_adamw_opts o = {.clip = 0};
    if (!strcmp(a->args, "clip")) o.clip = 1;
    else if (a->args[0]) return snprintf(err, errlen, "unknown option '%s' (adamw takes {clip})", a->args), -1;
    return pc_pass_adamw(*g, &o, err, errlen);
}
static int run_adamw_clip(pc_graph **g, const pc_pass_args *a, char *err, size_t errlen) {
    (void)a;
    pc_adamw_opts o = {.clip = 1};
    return pc_pass_adamw(*g, &o, err, errlen);
}

static int run_base_bf16(pc_graph **g, const pc_pass_args *a, char *err, size_t errlen) {
    (void)a;
    return pc_pass_base_bf16(g, err, errlen);
}

static const pc_pass_info passes[] = {
    {"verify", "check every value (types, operands, params, updates)", run_verify},
    {"dce", "remove values that reach no output and no update", run_dce},
    {"adapt", "{config=FILE[,mode=train|eval]}: apply an adapter (PEFT config or a registered method) to every linear", pc_pass_adapt},
    {"fuse-lowrank", "one GEMM for the low-rank down-projections (LoRA A) that share an activation", run_fuse_lowrank},
    {"fuse-kron", "x (A kron B)^T as two small matmuls on a reshaped x (LoKr): the Kronecker product is never formed", run_fuse_kron},
    {"base-bf16", "frozen rank-2 weights read only by products and embeddings in bf16; their products read the other operand rounded to bf16", run_base_bf16},
    {"autograd", "append the reverse-mode gradient of the loss for every trainable param", run_autograd},
    {"adamw", "{clip}: append AdamW updates of trainable params (hyper-parameters in %hp: f32[8]); clip by global norm", run_adamw},
    {"adamw-clip", "adamw{clip}", run_adamw_clip},
    {NULL, NULL, NULL},
};

const pc_pass_info *pc_pass_list(void) { return passes; }

const pc_pass_info *pc_pass_find(const char *name) {
    for (const pc_pass_info *p = passes; p->name; p++)
        if (strcmp(p->name, name) == 0) return p;
    return NULL;
}

void pc_pipeline_dump(const pc_graph *g, const char *stage, const pc_pipeline_opts *o) {
    if (!o || !o->dump_after || (strcmp(o->dump_after, "all") != 0 && strcmp(o->dump_after, stage) != 0)) return;
    char *text = pc_print(g, o->print);
    FILE *f = o->dump ? o->dump : stderr;
    fprintf(f, "// ----- IR dump after %s -----\n%s", stage, text ? text : "(out of memory)\n");
    free(text);
}

/* splits "a{x,y},b" at the commas outside braces; each item: name and args */
typedef struct {
    char name[64];
    char *args;
} item;

static int parse_list(const char *list, item **out, int *n, char *err, size_t errlen) {
    *out = NULL, *n = 0;
    size_t len = strlen(list);
    item *it = calloc(len / 2 + 2, sizeof *it);
    if (!it) return snprintf(err, errlen, "out of memory"), -1;
    const char *p = list;
    while (*p) {
        const char *e = p;
        while (*e && *e != ',' && *e != '{') e++;
        if (e == p || (size_t)(e - p) >= sizeof it[0].name) {
            snprintf(err, errlen, "pass list: empty or overlong pass name at '%s'", p);
            goto fail;
        }
        item *x = &it[(*n)++];
        memcpy(x->name, p, (size_t)(e - p));
        const char *a = "", *ae = a;
        if (*e == '{') {
            a = e + 1;
            if (!(ae = strchr(a, '}'))) { snprintf(err, errlen, "pass list: '{' after %s is not closed", x->name); goto fail; }
            e = ae + 1;
        }
        if (!(x->args = strndup(a, (size_t)(ae - a)))) { snprintf(err, errlen, "out of memory"); goto fail; }
        if (*e && *e != ',') { snprintf(err, errlen, "pass list: expected ',' after %s", x->name); goto fail; }
        p = *e ? e + 1 : e;
    }
    *out = it;
    return 0;
fail:
    for (int i = 0; i < *n; i++) free(it[i].args);
    free(it);
    return -1;
}

int pc_run_pipeline(pc_graph **g, const char *list, const pc_pipeline_opts *opts, char *err, size_t errlen) {
    pc_pipeline_opts none = {0};
    if (!opts) opts = &none;
    if (opts->dump_after && strcmp(opts->dump_after, "all") != 0 && !pc_pass_find(opts->dump_after)) {
        snprintf(err, errlen, "--dump-after: unknown pass '%s'", opts->dump_after);
        return -1;
    }
    item *it;
    int n, rc = 0;
    if (parse_list(list ? list : "", &it, &n, err, errlen)) return -1;
    /* check every name first so a typo costs nothing */
    for (int i = 0; i < n && !rc; i++)
        if (!pc_pass_find(it[i].name)) {
            snprintf(err, errlen, "unknown pass '%s' (see `peftc opt --help`)", it[i].name);
            rc = -1;
        }
    for (int i = 0; i < n && !rc; i++) {
        const pc_pass_info *p = pc_pass_find(it[i].name);
        pc_pass_args a = {.args = it[i].args, .reg = opts->reg};
        char msg[2048] = "";
        if (p->run(g, &a, msg, sizeof msg)) {
            snprintf(err, errlen, "pass %s: %s", p->name, msg);
            rc = -1;
            break;
        }
        if (msg[0]) fprintf(opts->dump ? opts->dump : stderr, "%s: %s\n", p->name, msg); /* a pass's warning */
        if (opts->verify_each && strcmp(p->name, "verify") != 0 && run_verify(g, NULL, msg, sizeof msg)) {
            snprintf(err, errlen, "after pass %s: %s", p->name, msg);
            rc = -1;
        }
        pc_pipeline_dump(*g, p->name, opts);
    }
    for (int i = 0; i < n; i++) free(it[i].args);
    free(it);
    return rc;
}
