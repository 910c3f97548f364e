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

static CU_TestInfo tests[] = {
    {"entry function via libffi = direct run", test_entry_matches_run},
    {"entry function reports a failed run", test_entry_reports_failure},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("entry", tests)
