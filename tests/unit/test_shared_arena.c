/* Executors sharing memory (pc_exec_opts.arena): the intermediate arena, grown by a larger graph
 * compiled after a smaller one ran (the smaller one re-resolves its pointers), and oneDNN's
 * reordered frozen weights, held once per weight and layout for every sharer and reordered
 * again when a sharer is rebound to changed contents. Results equal private executors'. */
#include "backend/exec.h"
#include "backend/onednn.h"
#include "cu_main.h"
#include "ir/ir.h"

#include <stdio.h>

#include <stdlib.h>
#include <string.h>

enum { K = 1100, N = 1100 }; /* a weight larger than 1024: its forward keeps the blocked copy */

/* y = tanh(x Wᵀ) summed: x [M, K], W [N, K] frozen (a param bound by the caller) */
static pc_graph *graph(int64_t M) {
    pc_graph *g = pc_graph_new("t");
    pc_val x = pc_input(g, "x", PC_F32, PC_SHAPE(M, K));
    pc_val w = pc_param(g, "w", "w", PC_F32, PC_SHAPE(N, K), PC_FROZEN, (pc_init){PC_INIT_NONE, 0, 0});
    pc_val y = pc_tanh(g, pc_matmul(g, x, w, 0, 1));
    pc_mark_output(g, y);
    CU_ASSERT_PTR_NULL_FATAL(g->error);
    return g;
}

static void fill(float *p, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) p[i] = scale * (float)((int)(i * 2654435761u % 2001) - 1000) / 1000.0f;
}

/* runs g (private memory) and returns a copy of its output */
static float *run_private(const pc_graph *g, float *x, float *w, size_t nout) {
    char err[512];
    pc_exec_opts o = {.kind = PC_BACKEND_JIT, .threads = 1};
    pc_exec *r = pc_exec_new(g, &o, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(pc_exec_bind(r, pc_lookup(g, "x"), x), 0);
    CU_ASSERT_EQUAL(pc_exec_bind(r, pc_lookup(g, "w"), w), 0);
    CU_ASSERT_EQUAL_FATAL(pc_exec_run(r, err, sizeof err), 0);
    float *out = malloc(nout * sizeof *out);
    memcpy(out, pc_exec_data(r, g->outputs[0]), nout * sizeof *out);
    pc_exec_free(r);
    return out;
}

static void test_shared(void) {
    const int64_t Ms = 8, Ml = 96;
    pc_graph *gs = graph(Ms), *gl = graph(Ml);
    float *xs = malloc((size_t)Ms * K * sizeof *xs), *xl = malloc((size_t)Ml * K * sizeof *xl);
    float *w = malloc((size_t)N * K * sizeof *w);
    fill(xs, (size_t)Ms * K, 1.0f), fill(xl, (size_t)Ml * K, 0.5f), fill(w, (size_t)N * K, 0.03f);
    float *want_s = run_private(gs, xs, w, (size_t)Ms * N), *want_l = run_private(gl, xl, w, (size_t)Ml * N);

    char err[512];
    pc_arena arena = {0};
    pc_exec_opts o = {.kind = PC_BACKEND_JIT, .threads = 1, .arena = &arena};
    /* the small graph first, run; then the large one grows the arena */
    pc_exec *rs = pc_exec_new(gs, &o, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rs);
    pc_exec_bind(rs, pc_lookup(gs, "x"), xs);
    pc_exec_bind(rs, pc_lookup(gs, "w"), w);
    CU_ASSERT_EQUAL_FATAL(pc_exec_run(rs, err, sizeof err), 0);
    CU_ASSERT_EQUAL(memcmp(pc_exec_data(rs, gs->outputs[0]), want_s, (size_t)Ms * N * sizeof(float)), 0);
    void *small_base = arena.base;
    size_t small_size = arena.size;
    pc_exec *rl = pc_exec_new(gl, &o, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rl);
    CU_ASSERT(arena.size > small_size);
    pc_exec_bind(rl, pc_lookup(gl, "x"), xl);
    pc_exec_bind(rl, pc_lookup(gl, "w"), w);
    CU_ASSERT_EQUAL_FATAL(pc_exec_run(rl, err, sizeof err), 0);
    CU_ASSERT_EQUAL(memcmp(pc_exec_data(rl, gl->outputs[0]), want_l, (size_t)Ml * N * sizeof(float)), 0);
    /* the small one again, on the grown (moved) arena */
    CU_ASSERT_EQUAL_FATAL(pc_exec_run(rs, err, sizeof err), 0);
    CU_ASSERT_EQUAL(memcmp(pc_exec_data(rs, gs->outputs[0]), want_s, (size_t)Ms * N * sizeof(float)), 0);
    printf("\n  arena %zu -> %zu bytes (%s); ", small_size, arena.size, arena.base != small_base ? "moved" : "grew in place");

    /* one reordered copy of w for both executors (oneDNN's blocked layout pads it: 1104 x 1152
     * here), not one each */
    size_t held = pc_dnnl_wcache_bytes(arena.weights), wbytes = (size_t)N * K * sizeof(float);
    printf("reordered weights held: %zu bytes (w is %zu)", held, wbytes);
    CU_ASSERT(held >= wbytes && held < wbytes * 3 / 2);

    /* changed contents, rebound to one sharer: both see them (every prepare reorders again) */
    for (size_t i = 0; i < (size_t)N * K; i++) w[i] = -w[i];
    free(want_s), free(want_l);
    want_s = run_private(gs, xs, w, (size_t)Ms * N), want_l = run_private(gl, xl, w, (size_t)Ml * N);
    pc_exec_bind(rs, pc_lookup(gs, "w"), w);
    pc_exec_bind(rl, pc_lookup(gl, "w"), w);
    CU_ASSERT_EQUAL_FATAL(pc_exec_run(rs, err, sizeof err), 0);
    CU_ASSERT_EQUAL(memcmp(pc_exec_data(rs, gs->outputs[0]), want_s, (size_t)Ms * N * sizeof(float)), 0);
    CU_ASSERT_EQUAL_FATAL(pc_exec_run(rl, err, sizeof err), 0);
    CU_ASSERT_EQUAL(memcmp(pc_exec_data(rl, gl->outputs[0]), want_l, (size_t)Ml * N * sizeof(float)), 0);

    pc_exec_free(rs);
    pc_exec_free(rl);
    pc_arena_free(&arena);
    free(want_s), free(want_l), free(xs), free(xl), free(w);
    pc_graph_free(gs);
    pc_graph_free(gl);
}

static CU_TestInfo tests[] = {
    {"two executors share an arena (grown by the second) and the reordered weights", test_shared},
    CU_TEST_INFO_NULL,
};

PC_TEST_MAIN("shared_arena", tests)
