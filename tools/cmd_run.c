/* peftc run: executes a text-IR graph with tensors from a safetensors file, and writes the
 * outputs to another. With --backend=ref the interpreter runs it directly; with the compiled
 * backend (jit, the default) it runs through the graph's entry function (backend/entry.h):
 * params and states are bound to the executor as always, and each step is one call of the
 * JIT-compiled `int entry(ctx, inputs..., outputs...)` through libffi with the inputs and output
 * buffers as its pointer arguments. */
#include "backend/entry.h"
#include "backend/exec.h"
#include "ir/ir.h"
#include "runtime/safetensors.h"
#include "tools/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void run_help(void) {
    printf("usage: peftc run FILE --inputs IN.safetensors -o OUT.safetensors [--seed N] [--steps N]\n"
           "                 [--backend ref|jit] [--dump-after=lower|entry] [--check-finite]\n\n"
           "Executes the graph in FILE. Each input, param and state\n"
           "is bound to the tensor of IN named like the value (%%name without '%%') or, for params\n"
           "and states, like its key; unbound params/states with an init are initialised (--seed).\n"
           "With --steps N the graph runs N times, applying its updates after each run.\n"
           "OUT receives every output by value name, plus each updated param/state by its key.\n"
           "--backend picks the reference interpreter (ref) or the compiled backend (jit, the default:\n"
           "oneDNN matmuls, LLVM-generated fused kernels, one arena), which runs each step through\n"
           "the graph's entry function called via libffi; --dump-after=lower prints the\n"
           "compiled backend's instruction IR (buffers, offsets, kernels) to stderr, --dump-after=entry\n"
           "the LLVM IR of the graph's entry function. --check-finite stops at the first NaN/inf an op\n"
           "produces with an error naming the op, its value and origin (and the step, with --steps);\n"
           "the reference interpreter always checks.\n");
}

int pc_cmd_run(const pc_registry *reg, int argc, char **argv) {
    (void)reg;
    const char *inputs = NULL, *out = NULL, *seed_s = NULL, *steps_s = NULL, *backend = NULL, *dump_after = NULL;
    bool check_finite = false;
    pc_cli_opt opts[] = {{"inputs", true, &inputs, NULL}, {"o", true, &out, NULL},
                         {"seed", true, &seed_s, NULL},   {"steps", true, &steps_s, NULL},
                         {"backend", true, &backend, NULL}, {"dump-after", true, &dump_after, NULL},
                         {"check-finite", false, NULL, &check_finite}};
    const char *pos[1];
    int npos;
    int rc = pc_cli_parse("run", argc, argv, opts, 7, pos, 1, &npos);
    if (rc == 1) { run_help(); return 0; }
    if (rc) return 1;
    if (npos != 1) { fprintf(stderr, "peftc run: expected one graph FILE (see peftc run --help)\n"); return 1; }
    if (!out) { fprintf(stderr, "peftc run: -o OUT.safetensors is required\n"); return 1; }
    pc_in ins[] = {{"FILE", pos[0]}, {"--inputs", inputs}};
    pc_out outs[] = {{.flag = "-o", .path = out, .kind = PC_OUT_FILE}};
    if (pc_cli_check_outputs("peftc run", outs, 1, ins, 2)) return 1;
    long long seed = 0, steps = 1;
    if (seed_s && pc_cli_int("run", "seed", seed_s, 0, (1ll << 62), &seed)) return 1;
    if (steps_s && pc_cli_int("run", "steps", steps_s, 1, 1000000, &steps)) return 1;
    pc_exec_opts eo = {.threads = 1, .dump_after = dump_after, .check_finite = check_finite};
    if (pc_backend_parse(backend, &eo.kind)) {
        fprintf(stderr, "peftc run: --backend: expected ref or jit, got '%s'\n", backend);
        return 1;
    }
    bool dump_entry = dump_after && strcmp(dump_after, "entry") == 0;
    if (dump_after && strcmp(dump_after, "lower") != 0 && !dump_entry) {
        fprintf(stderr, "peftc run: --dump-after: only 'lower' and 'entry' are backend stages (graph passes: peftc opt)\n");
        return 1;
    }
    if (dump_entry && eo.kind != PC_BACKEND_JIT) {
        fprintf(stderr, "peftc run: --dump-after=entry: the reference interpreter has no entry function (--backend=jit)\n");
        return 1;
    }
    if (dump_entry) eo.dump_after = NULL;

    size_t len;
    char *text = pc_cli_read("run", pos[0], &len);
    if (!text) return 1;
    char *perr = NULL, err[4096];
    pc_graph *g = pc_parse(text, len, pos[0], &perr);
    free(text);
    if (!g || pc_verify(g, &perr)) {
        fputs(perr ? perr : "invalid graph\n", stderr);
        free(perr);
        pc_graph_free(g);
        return 1;
    }
    free(perr);

    pc_st_file *in = NULL;
    pc_exec *r = NULL;
    pc_st_writer *w = NULL;
    pc_entry *en = NULL;
    void **args = NULL;
    void **owned = calloc((size_t)g->nvals, sizeof *owned);
    rc = 1;
    if (!owned) { fprintf(stderr, "peftc run: out of memory\n"); goto done; }
    if (inputs && !(in = pc_st_open(inputs, err, sizeof err))) { fprintf(stderr, "peftc run: %s\n", err); goto done; }
    if (!(r = pc_exec_new(g, &eo, err, sizeof err))) { fprintf(stderr, "peftc run: %s\n", err); goto done; }
    pc_exec_set_seed(r, (uint64_t)seed);
    for (pc_val v = 0; v < g->nvals; v++) {
        pc_value *x = pc_v(g, v);
        if (x->op != PC_OP_input && x->op != PC_OP_param && x->op != PC_OP_state) continue;
        const pc_st_tensor *t = in ? pc_st_find(in, x->name) : NULL;
        if (!t && in && x->key) t = pc_st_find(in, x->key);
        if (!t) continue; /* the interpreter reports unbound inputs / params without init */
        char want[96], got[96];
        if (t->dtype != x->dtype || !pc_shape_eq(t->shape, x->shape)) {
            pc_shape_str(x->shape, want, sizeof want);
            pc_shape_str(t->shape, got, sizeof got);
            fprintf(stderr, "peftc run: %s: tensor \"%s\" is %s%s but %%%s is %s%s\n", inputs, t->name,
                    pc_dtype_name(t->dtype), got, x->name, pc_dtype_name(x->dtype), want);
            goto done;
        }
        /* a private copy: updates write into it, and the file stays read-only */
        if (!(owned[v] = malloc(t->nbytes ? t->nbytes : 1))) { fprintf(stderr, "peftc run: out of memory\n"); goto done; }
        memcpy(owned[v], t->data, t->nbytes);
        pc_exec_bind(r, v, owned[v]);
    }
    if (eo.kind == PC_BACKEND_JIT) {
        /* the entry's arguments: each input's tensor (NULL if IN lacks it: the run reports it),
         * then one buffer per output */
        if (!(en = pc_entry_new(r, g, NULL, err, sizeof err))) { fprintf(stderr, "peftc run: %s\n", err); goto done; }
        if (dump_entry) {
            char *ir = pc_entry_ir(g, err, sizeof err);
            if (!ir) { fprintf(stderr, "peftc run: %s\n", err); goto done; }
            fprintf(stderr, "// entry function of @%s (called through libffi)\n%s", g->name, ir);
            free(ir);
        }
        int nin = pc_entry_ninputs(en), k = 0;
        if (!(args = calloc((size_t)(nin + g->noutputs) + 1, sizeof *args))) { fprintf(stderr, "peftc run: out of memory\n"); goto done; }
        for (pc_val v = 0; v < g->nvals; v++)
            if (pc_v(g, v)->op == PC_OP_input) args[k++] = owned[v];
        for (int i = 0; i < g->noutputs; i++) {
            pc_value *x = pc_v(g, g->outputs[i]);
            size_t bytes = (size_t)pc_shape_numel(x->shape) * pc_dtype_size(x->dtype);
            if (!(args[nin + i] = calloc(bytes ? bytes : 1, 1))) { fprintf(stderr, "peftc run: out of memory\n"); goto done; }
        }
    }
    for (long long s = 0; s < steps; s++) {
        if (en ? pc_entry_call(en, args, err, sizeof err) : pc_exec_run(r, err, sizeof err)) {
            if (steps > 1) fprintf(stderr, "peftc run: step %lld: %s\n", s, err); /* counted from 0 */
            else fprintf(stderr, "peftc run: %s\n", err);
            goto done;
        }
        if (s + 1 < steps && pc_exec_apply_updates(r)) { fprintf(stderr, "peftc run: applying updates failed\n"); goto done; }
    }
    if (!(w = pc_st_writer_new())) { fprintf(stderr, "peftc run: out of memory\n"); goto done; }
    for (int i = 0; i < g->noutputs; i++) {
        pc_value *x = pc_v(g, g->outputs[i]);
        const void *data = en ? args[pc_entry_ninputs(en) + i] : pc_exec_data(r, g->outputs[i]);
        if (pc_st_writer_add(w, x->name, x->dtype, x->shape, data, err, sizeof err)) {
            fprintf(stderr, "peftc run: %s\n", err);
            goto done;
        }
    }
    for (int i = 0; i < g->nupdates; i++) {
        pc_value *t = pc_v(g, g->updates[i].target);
        const char *name = t->key ? t->key : t->name;
        if (pc_st_writer_add(w, name, t->dtype, t->shape, pc_exec_data(r, g->updates[i].next), err, sizeof err)) {
            fprintf(stderr, "peftc run: %s\n", err);
            goto done;
        }
    }
    if (pc_make_parents(out, err, sizeof err) || pc_st_write(w, out, err, sizeof err)) {
        fprintf(stderr, "peftc run: %s\n", err);
        goto done;
    }
    rc = 0;
done:
    pc_st_writer_free(w);
    for (int i = 0; args && en && i < g->noutputs; i++) free(args[pc_entry_ninputs(en) + i]);
    free(args);
    pc_entry_free(en);
    pc_exec_free(r);
    pc_st_close(in);
    for (int v = 0; owned && v < g->nvals; v++) free(owned[v]);
    free(owned);
    pc_graph_free(g);
    return rc;
}
