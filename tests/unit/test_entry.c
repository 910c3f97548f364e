/* Graph entry points: the LLVM-generated function with the graph's signature, called through
 * libffi, computes what a direct run computes, and reports failures. */
#include "backend/entry.h"
#include "cu_main.h"
#include "peftc/peftc.h"

#include <stdlib.h>
#include <string.h>

static const char *text = "graph @step(%a: f32[8], %b: f32[8]) -> (%y: f32[8], %s: f32[]) {\n"
                          "  %m = mul %a, %b : f32[8]\n"
                          "  %y = silu %m : f32[8]\n"
                          "  %s = sum %y : f32[]\n"
                          "}\n";

static void test_entry_matches_run(void) {
    char *perr = NULL, err[512];
    pc_graph *g = pc_parse(text, strlen(text), "step.pir", &perr);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    pc_exec_opts o = {.kind = PC_BACKEND_JIT, .threads = 1};
    pc_exec *e = pc_exec_new(g, &o, err, sizeof err), *d = pc_exec_new(g, &o, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    pc_entry *en = pc_entry_new(e, g, "step", err, sizeof err);
    if (!en) fprintf(stderr, "%s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(en);
    CU_ASSERT_EQUAL(pc_entry_ninputs(en), 2);
    CU_ASSERT_EQUAL(pc_entry_noutputs(en), 2);
    float a[8], b[8], y[8] = {0}, s = 0;
    for (int i = 0; i < 8; i++) a[i] = 0.25f * (float)i - 1, b[i] = 1.5f - 0.1f * (float)i;
    void *args[4] = {a, b, y, &s};
    CU_ASSERT_EQUAL(pc_entry_call(en, args, err, sizeof err), 0);
    /* the same graph run directly */
    CU_ASSERT_EQUAL(pc_exec_bind(d, pc_lookup(g, "a"), a), 0);
    CU_ASSERT_EQUAL(pc_exec_bind(d, pc_lookup(g, "b"), b), 0);
    CU_ASSERT_EQUAL_FATAL(pc_exec_run(d, err, sizeof err), 0);
    const float *yd = pc_exec_data(d, pc_lookup(g, "y")), *sd = pc_exec_data(d, pc_lookup(g, "s"));
    CU_ASSERT_EQUAL(memcmp(y, yd, sizeof y), 0);
    CU_ASSERT_EQUAL(memcmp(&s, sd, sizeof s), 0);
    CU_ASSERT(s != 0);
    pc_entry_free(en);
    pc_exec_free(e);
    pc_exec_free(d);
    pc_graph_free(g);
    free(perr);
}

static void test_entry_reports_failure(void) {
    char *perr = NULL, err[512];
    /* an input the entry does not see cannot be bound: a graph with a param that has no init
     * fails at run time, and the status says so */
    const char *t = "graph @bad(%a: f32[4]) -> (%y: f32[4]) {\n"
                    "  %w = param frozen f32[4] \"w\"\n"
                    "  %y = mul %a, %w : f32[4]\n"
                    "}\n";
    pc_graph *g = pc_parse(t, strlen(t), "bad.pir", &perr);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    pc_exec_opts o = {.kind = PC_BACKEND_JIT, .threads = 1};
    pc_exec *e = pc_exec_new(g, &o, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    pc_entry *en = pc_entry_new(e, g, "bad", err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(en);
    float a[4] = {1, 2, 3, 4}, y[4];
    void *args[2] = {a, y};
    CU_ASSERT_NOT_EQUAL(pc_entry_call(en, args, err, sizeof err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "%w"));
    pc_entry_free(en);
    pc_exec_free(e);
    pc_graph_free(g);
    free(perr);
}

/* the name comes from the graph text; the prototype and the argument arrays from its signature */
static void test_entry_signature(void) {
    char *perr = NULL, err[512], name[PC_ENTRY_NAME_MAX], name2[PC_ENTRY_NAME_MAX];
    pc_graph *g = pc_parse(text, strlen(text), "step.pir", &perr);
    const char *t2 = "graph @step(%a: f32[8], %b: f32[8]) -> (%y: f32[8]) {\n  %y = mul %a, %b : f32[8]\n}\n";
    pc_graph *g2 = pc_parse(t2, strlen(t2), "step2.pir", &perr);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g2);
    CU_ASSERT_EQUAL(pc_entry_name(g, name, err, sizeof err), 0);
    CU_ASSERT_EQUAL(strncmp(name, "pc_entry_step_", 14), 0);
    CU_ASSERT_EQUAL(strlen(name), 14 + 16);
    CU_ASSERT_EQUAL(pc_entry_name(g2, name2, err, sizeof err), 0);
    CU_ASSERT_NOT_EQUAL(strcmp(name, name2), 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    pc_entry_write_prototype(f, g, "step");
    fclose(f);
    CU_ASSERT_STRING_EQUAL(buf, "int step(void *ctx, const float *a_0, const float *b_1, float *y_2, float *s_3)");
    free(buf);
    /* inputs by name; a missing one is an error naming it */
    float a[8] = {0}, b[8] = {0};
    const char *names[2] = {"b", "a"};
    void *const ptrs[2] = {b, a};
    pc_entry_args args;
    CU_ASSERT_EQUAL_FATAL(pc_entry_args_init(&args, g, names, ptrs, 2, err, sizeof err), 0);
    CU_ASSERT_PTR_EQUAL(args.args[0], a);
    CU_ASSERT_PTR_EQUAL(args.args[1], b);
    CU_ASSERT_PTR_EQUAL(pc_entry_args_output(&args, pc_lookup(g, "s")), args.args[3]);
    CU_ASSERT_PTR_NULL(pc_entry_args_output(&args, pc_lookup(g, "m")));
    pc_entry_args_free(&args);
    CU_ASSERT_NOT_EQUAL(pc_entry_args_init(&args, g, names, ptrs, 1, err, sizeof err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "%a"));
    /* the JIT provider: the same function, found by that name */
    pc_exec_opts o = {.kind = PC_BACKEND_JIT, .threads = 1};
    pc_exec *e = pc_exec_new(g2, &o, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    const pc_entry_provider *p = pc_entry_provider_jit();
    void *h = p->open(p, e, g2, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    float x[8], y[8], z[8];
    for (int i = 0; i < 8; i++) x[i] = (float)i, y[i] = 0.5f;
    void *cargs[3] = {x, y, z};
    CU_ASSERT_EQUAL(p->call(h, cargs, err, sizeof err), 0);
    CU_ASSERT_EQUAL(z[5], 2.5f);
    p->close(h);
    char *ir = pc_entry_ir(g2, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ir);
    CU_ASSERT_PTR_NOT_NULL(strstr(ir, name2));
    free(ir);
    pc_exec_free(e);
    pc_graph_free(g);
    pc_graph_free(g2);
    free(perr);
}

static CU_TestInfo tests[] = {
    {"entry name, prototype, arguments, provider", test_entry_signature},
    {"entry function via libffi = direct run", test_entry_matches_run},
    {"entry function reports a failed run", test_entry_reports_failure},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("entry", tests)
