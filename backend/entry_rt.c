/* The runtime side of graph entry functions (backend/entry.h): the ctx the generated code calls
 * back into, entry names and C prototypes from the graph signature, and argument arrays. No
 * LLVM here: AOT executables link it. */
#include "backend/entry.h"
#include "ir/ir.h"
#include "runtime/fileio.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int rt_bind(void *ctx, int i, void *data) {
    pc_entry_rt *rt = ctx;
    return i >= 0 && i < rt->nin ? pc_exec_bind(rt->e, rt->in[i], data) : -1;
}

static int rt_run(void *ctx) {
    pc_entry_rt *rt = ctx;
    return pc_exec_run(rt->e, rt->err, rt->errlen) ? 1 : 0;
}

static int rt_copy_out(void *ctx, int i, void *data) {
    pc_entry_rt *rt = ctx;
    if (i < 0 || i >= rt->nout || !data) return -1;
    const pc_value *x = &rt->g->vals[rt->out[i]];
    const void *src = pc_exec_data(rt->e, rt->out[i]);
    if (!src) {
        pc_errf(rt->err, rt->errlen, "entry: output %%%s has no value after the run", x->name);
        return 2;
    }
    memcpy(data, src, (size_t)pc_shape_numel(x->shape) * pc_dtype_size(x->dtype));
    return 0;
}

int pc_entry_graph_ninputs(const pc_graph *g) {
    int n = 0;
    for (pc_val v = 0; v < g->nvals; v++) n += g->vals[v].op == PC_OP_input;
    return n;
}

int pc_entry_rt_init(pc_entry_rt *rt, pc_exec *e, const pc_graph *g, char *err, size_t errlen) {
    *rt = (pc_entry_rt){.fns = {rt_bind, rt_run, rt_copy_out}, .e = e, .g = g};
    rt->nin = pc_entry_graph_ninputs(g);
    rt->nout = g->noutputs;
    rt->in = calloc((size_t)rt->nin + 1, sizeof *rt->in);
    rt->out = calloc((size_t)rt->nout + 1, sizeof *rt->out);
    if (!rt->in || !rt->out) {
        pc_entry_rt_free(rt);
        return pc_errf(err, errlen, "out of memory");
    }
    int k = 0;
    for (pc_val v = 0; v < g->nvals; v++)
        if (g->vals[v].op == PC_OP_input) rt->in[k++] = v;
    for (int i = 0; i < rt->nout; i++) rt->out[i] = g->outputs[i];
    return 0;
}

void pc_entry_rt_free(pc_entry_rt *rt) {
    if (!rt) return;
    free(rt->in);
    free(rt->out);
    rt->in = rt->out = NULL;
}

/* ---- names and prototypes ---- */

int pc_entry_name(const pc_graph *g, char name[PC_ENTRY_NAME_MAX], char *err, size_t errlen) {
    char *text = pc_print(g, (pc_print_opts){0});
    if (!text) return pc_errf(err, errlen, "entry name of @%s: out of memory", g->name ? g->name : "graph");
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) h = (h ^ *p) * 0x100000001b3ull;
    free(text);
    char gname[48];
    int n = 0;
    for (const char *p = g->name ? g->name : "graph"; *p && n < (int)sizeof gname - 1; p++)
        gname[n++] = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ? *p : '_';
    gname[n] = 0;
    snprintf(name, PC_ENTRY_NAME_MAX, "pc_entry_%s_%016llx", gname, (unsigned long long)h);
    return 0;
}

static const char *c_type(pc_dtype t) {
    switch (t) {
    case PC_F32: return "float";
    case PC_I32: return "int32_t";
    case PC_BF16: return "uint16_t";
    }
    return "void";
}

static bool is_keyword(const char *s) {
    static const char *const kw[] = {"auto", "break", "case", "char", "const", "continue", "default", "do", "double",
                                     "else", "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long",
                                     "register", "restrict", "return", "short", "signed", "sizeof", "static",
                                     "struct", "switch", "typedef", "union", "unsigned", "void", "volatile", "while",
                                     "bool", "true", "false", "ctx", "int32_t", "uint16_t", "NULL"};
    for (size_t i = 0; i < sizeof kw / sizeof kw[0]; i++)
        if (strcmp(s, kw[i]) == 0) return true;
    return false;
}

/* the value's name as a C identifier; the parameter index when it cannot be one */
static void param_name(const pc_graph *g, pc_val v, int idx, char *out, size_t len) {
    const char *s = g->vals[v].name ? g->vals[v].name : "";
    size_t n = 0;
    if (*s >= '0' && *s <= '9' && n + 1 < len) out[n++] = 'v';
    for (; *s && n + 1 < len; s++)
        out[n++] = (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ? *s : '_';
    out[n] = 0;
    if (!n || out[0] == '_' || is_keyword(out)) snprintf(out, len, "arg%d", idx);
    else if (n + 8 < len) snprintf(out + n, len - n, "_%d", idx); /* unique even after the mapping above */
}

void pc_entry_write_prototype(FILE *f, const pc_graph *g, const char *name) {
    fprintf(f, "int %s(void *ctx", name);
    int i = 0;
    char pn[96];
    for (pc_val v = 0; v < g->nvals; v++) {
        if (g->vals[v].op != PC_OP_input) continue;
        param_name(g, v, i++, pn, sizeof pn);
        fprintf(f, ", const %s *%s", c_type(g->vals[v].dtype), pn);
    }
    for (int k = 0; k < g->noutputs; k++) {
        param_name(g, g->outputs[k], i++, pn, sizeof pn);
        fprintf(f, ", %s *%s", c_type(g->vals[g->outputs[k]].dtype), pn);
    }
    fputc(')', f);
}

/* ---- argument arrays ---- */

int pc_entry_args_init(pc_entry_args *a, const pc_graph *g, const char *const *names, void *const *ptrs, int n,
                       char *err, size_t errlen) {
    *a = (pc_entry_args){.g = g, .nin = pc_entry_graph_ninputs(g), .nout = g->noutputs};
    if (!(a->args = calloc((size_t)(a->nin + a->nout) + 1, sizeof *a->args))) return pc_errf(err, errlen, "out of memory");
    int k = 0;
    for (pc_val v = 0; v < g->nvals; v++) {
        if (g->vals[v].op != PC_OP_input) continue;
        int j = 0;
        while (j < n && strcmp(names[j], g->vals[v].name) != 0) j++;
        if (j == n) {
            pc_entry_args_free(a);
            return pc_errf(err, errlen, "entry of @%s: no memory for input %%%s", g->name ? g->name : "graph", g->vals[v].name);
        }
        a->args[k++] = ptrs[j];
    }
    for (int i = 0; i < a->nout; i++) {
        const pc_value *x = &g->vals[g->outputs[i]];
        size_t bytes = (size_t)pc_shape_numel(x->shape) * pc_dtype_size(x->dtype);
        if (!(a->args[a->nin + i] = calloc(bytes ? bytes : 1, 1))) {
            pc_entry_args_free(a);
            return pc_errf(err, errlen, "out of memory");
        }
    }
    return 0;
}

const void *pc_entry_args_output(const pc_entry_args *a, pc_val v) {
    for (int i = 0; i < a->nout; i++)
        if (a->g->outputs[i] == v) return a->args[a->nin + i];
    return NULL;
}

void pc_entry_args_free(pc_entry_args *a) {
    if (!a || !a->args) return;
    for (int i = 0; i < a->nout; i++) free(a->args[a->nin + i]);
    free(a->args);
    a->args = NULL;
}
