/* LoKr against adapter directories written by Hugging Face PEFT (tests/golden/gen_peft_lokr.py,
 * tests/golden/lokr.md):
 *   tests/data/peft_lokr_stories260k/     35 modules, 95 tensors, every factor layout (w1 / w1_a+w1_b, w2 /
 *                                         w2_a+w2_b), q/k w2 rows in llama2.c order
 *   tests/data/peft_lokr_stories260k_hf/  the same adapter as PEFT saved it (HF q/k rows)
 * PEFT's factorization; forward (logits, loss) and every factor's gradient on the reference
 * interpreter and the JIT, through the fused graph (no kron left); merge vs merge_and_unload;
 * unmerge; --hf-qk-rows (w2 rows permuted, and refused when a head spans two w2 blocks). */
#include "cu_main.h"
#include "compare.h"
#include "backend/exec.h"
#include "drivers/merge.h"
#include "drivers/session.h"
#include "drivers/store.h"
#include "ir/ir.h"
#include "passes/kron.h"
#include "passes/pipeline.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MODEL PEFTC_SOURCE_DIR "/data/stories260K/stories260K.bin"
#define LOKR_DIR PEFTC_SOURCE_DIR "/tests/data/peft_lokr_stories260k"
#define LOKR_HF_DIR PEFTC_SOURCE_DIR "/tests/data/peft_lokr_stories260k_hf"

enum { B = 2, S = 16, V = 512, N = B * S, NTENSORS = 5 * 19 };

typedef struct {
    pc_session s;
    pc_st_file *ex;
    pc_graph *g;
    pc_store store;
    int32_t tokens[N], targets[N];
} fixture;

static int fx_graph(fixture *x, pc_adapt_mode mode, bool trainable) {
    char err[2048];
    pc_build_req req = {.task = PC_TASK_LM, .batch = B, .seq = S, .output_logits = true, .mode = mode};
    if (!(x->g = pc_session_build(&x->s, &req, trainable, err, sizeof err))) { fprintf(stderr, "build: %s\n", err); return -1; }
    if (trainable && pc_run_pipeline(&x->g, "autograd", NULL, err, sizeof err)) { fprintf(stderr, "autograd: %s\n", err); return -1; }
    if (pc_session_store(&x->s, x->g, &x->store, NULL, 0, err, sizeof err)) { fprintf(stderr, "store: %s\n", err); return -1; }
    return 0;
}

static int fx_open(fixture *x, const char *dir, pc_adapt_mode mode, bool trainable, bool build) {
    char err[2048];
    memset(x, 0, sizeof *x);
    if (pc_session_open(&x->s, NULL, MODEL, NULL, dir, err, sizeof err)) { fprintf(stderr, "%s\n", err); return -1; }
    if (!(x->ex = pc_st_open(LOKR_DIR "/expected.safetensors", err, sizeof err))) { fprintf(stderr, "%s\n", err); return -1; }
    const pc_st_tensor *tk = pc_st_find(x->ex, "tokens"), *tg = pc_st_find(x->ex, "targets");
    if (!tk || !tg || pc_shape_numel(tk->shape) != N || pc_shape_numel(tg->shape) != N) return -1;
    memcpy(x->tokens, tk->data, sizeof x->tokens);
    memcpy(x->targets, tg->data, sizeof x->targets);
    return build ? fx_graph(x, mode, trainable) : 0;
}

static void fx_close(fixture *x) {
    pc_store_free(&x->store);
    pc_graph_free(x->g);
    pc_st_close(x->ex);
    pc_session_close(&x->s);
}

static pc_exec *fx_run(fixture *x, pc_backend_kind kind) {
    char err[2048] = "";
    pc_exec *r = pc_exec_new(x->g, &(pc_exec_opts){.kind = kind}, err, sizeof err);
    if (!r) { fprintf(stderr, "exec_new: %s\n", err); return NULL; }
    if (pc_session_bind_base(&x->s, r, x->g, false, err, sizeof err) || pc_store_bind(&x->store, r) ||
        pc_exec_bind(r, pc_lookup(x->g, "tokens"), x->tokens) || pc_exec_bind(r, pc_lookup(x->g, "targets"), x->targets) ||
        pc_exec_run(r, err, sizeof err)) {
        fprintf(stderr, "bind/run: %s\n", err);
        pc_exec_free(r);
        return NULL;
    }
    return r;
}

static pc_val output_where(const pc_graph *g, bool loss) {
    for (int i = 0; i < g->noutputs; i++) {
        const pc_value *o = pc_v(g, g->outputs[i]);
        if (loss ? (o->flags & PC_LOSS) != 0 : (!(o->flags & PC_LOSS) && o->shape.rank == 3)) return g->outputs[i];
    }
    return PC_NONE;
}

static const float *logits_of(const fixture *x, const pc_exec *r) {
    pc_val lv = output_where(x->g, false);
    if (lv == PC_NONE || !pc_shape_eq(pc_val_shape(x->g, lv), PC_SHAPE(B, S, V))) return NULL;
    return pc_exec_data(r, lv);
}

static double logits_vs(const fixture *x, const pc_exec *r, const char *key) {
    const float *l = logits_of(x, r);
    const pc_st_tensor *w = pc_st_find(x->ex, key);
    if (!l || !w || pc_shape_numel(w->shape) != (int64_t)N * V) return INFINITY;
    return max_abs_diff(l, w->data, (int64_t)N * V);
}

static int count_op(const pc_graph *g, pc_opcode op) {
    int n = 0;
    for (pc_val v = 0; v < g->nvals; v++) n += pc_v(g, v)->op == op;
    return n;
}

/* 1. PEFT's factorization(dim, factor), the table of peft.md and gen_peft_lokr.py */
static void test_factorization(void) {
    static const int64_t cases[][4] = {
        {4096, -1, 64, 64}, {3072, -1, 48, 64}, {1024, -1, 32, 32}, {768, -1, 24, 32}, {2304, -1, 48, 48},
        {11008, -1, 86, 128}, {127, -1, 1, 127}, {3072, 4, 4, 768}, {1024, 4, 4, 256}, {256, -1, 16, 16},
        {128, -1, 8, 16}, {128, 4, 4, 32}, {64, -1, 8, 8}, {32, -1, 4, 8}, {172, -1, 4, 43}, {3072, 5, 4, 768},
        {64, 16, 16, 4}, {172, 2, 2, 86}, {1, -1, 1, 1}, {12, -3, 1, 12},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t m = 0, n = 0;
        pc_kron_factorization(cases[i][0], cases[i][1], &m, &n);
        if (m != cases[i][2] || n != cases[i][3])
            printf("\n    factorization(%lld, %lld) = (%lld, %lld), PEFT (%lld, %lld)", (long long)cases[i][0],
                   (long long)cases[i][1], (long long)m, (long long)n, (long long)cases[i][2], (long long)cases[i][3]);
        CU_ASSERT(m == cases[i][2] && n == cases[i][3]);
    }
}

static void check_forward_backward(fixture *x, pc_backend_kind kind) {
    pc_exec *r = fx_run(x, kind);
    CU_ASSERT_FATAL(r != NULL);
    const char *bk = pc_backend_name(kind);
    pc_val lv = output_where(x->g, true);
    const pc_st_tensor *wl = pc_st_find(x->ex, "loss");
    CU_ASSERT_FATAL(lv != PC_NONE && wl != NULL);
    float loss = *(const float *)pc_exec_data(r, lv), want = *(const float *)wl->data;
    double le = logits_vs(x, r, "logits");
    printf("\n    [%s] loss %.7f (PEFT %.7f, rel %.2e), logits max |diff| %.2e\n", bk, loss, want,
           fabs(loss - want) / fabs(want), le);
    CU_ASSERT(fabs(loss - want) <= 1e-5 * fabs(want));
    CU_ASSERT(le <= 1e-4);
    double worst = 0, worst_abs = 0;
    int checked = 0;
    for (int i = 0; i < x->store.n; i++) {
        const pc_store_entry *e = &x->store.e[i];
        if (!(e->flags & PC_TRAINABLE)) continue;
        char gname[700], gkey[700];
        snprintf(gname, sizeof gname, "grad.%s", pc_val_name(x->g, e->v));
        snprintf(gkey, sizeof gkey, "grad.%s", e->key);
        pc_val gv = pc_lookup(x->g, gname);
        const pc_st_tensor *wg = pc_st_find(x->ex, gkey);
        CU_ASSERT_FATAL(gv != PC_NONE && wg != NULL);
        CU_ASSERT_FATAL(pc_shape_numel(wg->shape) == e->n && pc_shape_eq(pc_val_shape(x->g, gv), e->shape));
        double d = max_abs_diff(pc_exec_data(r, gv), wg->data, e->n), scale = max_abs(wg->data, e->n);
        double rel = d / (scale > 1 ? scale : 1);
        if (rel > worst) worst = rel;
        if (d > worst_abs) worst_abs = d;
        checked++;
    }
    printf("    [%s] %d gradients: max |diff| %.2e, worst rel (to max(1, max|g|)) %.2e\n", bk, checked, worst_abs, worst);
    CU_ASSERT_EQUAL(checked, NTENSORS);
    CU_ASSERT(worst <= 1e-4);
    pc_exec_free(r);
}

/* 2. loss, logits and the 95 factor gradients (ref and jit), on the fused graph */
static void test_loss_and_grads(void) {
    fixture x;
    if (fx_open(&x, LOKR_DIR, PC_ADAPT_TRAIN, true, true)) { CU_FAIL("setup"); fx_close(&x); return; }
    CU_ASSERT_EQUAL(x.s.adapter.cfg->peft_type, PC_PEFT_LOKR);
    int n = 0, loaded = 0;
    for (int i = 0; i < x.store.n; i++) {
        const pc_store_entry *e = &x.store.e[i];
        if (!(e->flags & PC_TRAINABLE)) continue;
        n++;
        const pc_st_tensor *f = pc_st_find(x.s.adapter.weights, e->key);
        if (e->loaded && f && f->nbytes == (size_t)e->n * sizeof(float) && !memcmp(f->data, e->data, f->nbytes)) loaded++;
    }
    CU_ASSERT_EQUAL(n, NTENSORS);
    CU_ASSERT_EQUAL(loaded, NTENSORS);
    /* fuse-kron ran: neither the forward nor the backward forms a Kronecker product */
    printf("\n    train graph: %d kron ops, %d matmuls", count_op(x.g, PC_OP_kron), count_op(x.g, PC_OP_matmul));
    CU_ASSERT_EQUAL(count_op(x.g, PC_OP_kron), 0);
    check_forward_backward(&x, PC_BACKEND_REF);
    check_forward_backward(&x, PC_BACKEND_JIT);
    fx_close(&x);
}

/* 3. merge vs merge_and_unload (layers 0 and 4, all seven projections), merged = unmerged logits */
static void test_merge(void) {
    char err[2048];
    fixture m, u;
    if (fx_open(&m, LOKR_DIR, PC_ADAPT_EVAL, false, false)) { CU_FAIL("setup"); fx_close(&m); return; }
    int nmod = 0, rc = pc_session_merge(&m.s, &nmod, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(nmod, 35);
    int checked = 0;
    double worst = 0;
    for (int i = 0; i < pc_st_count(m.ex); i++) {
        const pc_st_tensor *t = pc_st_get(m.ex, i);
        if (strncmp(t->name, "merged.", 7) || !strcmp(t->name, "merged_logits")) continue;
        pc_shape ms;
        const float *w = pc_model_weight(&m.s.model, t->name + 7, &ms);
        CU_ASSERT_FATAL(w != NULL && pc_shape_eq(ms, t->shape));
        double e = max_abs_diff(w, t->data, pc_shape_numel(t->shape));
        if (e > worst) worst = e;
        const float *base = m.s.model.family->weight(&m.s.model, t->name + 7, NULL);
        CU_ASSERT(base && max_abs_diff(base, t->data, pc_shape_numel(t->shape)) > 1e-3);
        checked++;
    }
    printf("\n    %d merged modules; %d merged weights (layers 0, 4) max |diff| vs PEFT %.2e\n", nmod, checked, worst);
    CU_ASSERT_EQUAL(checked, 14);
    CU_ASSERT(worst <= 1e-6);
    CU_ASSERT_EQUAL_FATAL(fx_graph(&m, PC_ADAPT_EVAL, false), 0);
    CU_ASSERT_EQUAL(m.store.n, 0);
    pc_exec *rm = fx_run(&m, PC_BACKEND_REF), *ru = NULL;
    CU_ASSERT_FATAL(rm != NULL);
    double em = logits_vs(&m, rm, "merged_logits");
    if (fx_open(&u, LOKR_DIR, PC_ADAPT_EVAL, false, true) == 0) ru = fx_run(&u, PC_BACKEND_JIT);
    CU_ASSERT(ru != NULL);
    if (ru) {
        const float *lm = logits_of(&m, rm), *lu = logits_of(&u, ru);
        double eu = logits_vs(&u, ru, "logits"), mu = lm && lu ? max_abs_diff(lm, lu, (int64_t)N * V) : INFINITY;
        printf("    logits max |diff|: merged vs PEFT merged %.2e, unmerged (eval, jit) vs PEFT %.2e, merged vs unmerged %.2e\n",
               em, eu, mu);
        CU_ASSERT(eu <= 1e-4);
        CU_ASSERT(mu <= 1e-4);
    }
    CU_ASSERT(em <= 1e-4);
    pc_exec_free(ru);
    pc_exec_free(rm);
    fx_close(&u);
    fx_close(&m);
}

/* 4. merge into a checkpoint, unmerge it: W - kron(w1, w2) s gives the base back */
static void test_unmerge(void) {
    char err[2048], path[] = "/tmp/peftc_lokr_unmerge_XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    close(fd);
    pc_session a, b;
    int n = 0;
    CU_ASSERT_EQUAL_FATAL(pc_session_open(&a, NULL, MODEL, NULL, LOKR_DIR, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(pc_session_merge(&a, &n, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(pc_session_write_model(&a, path, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(pc_session_open(&b, NULL, path, NULL, LOKR_DIR, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(pc_session_unmerge(&b, &n, err, sizeof err), 0);
    CU_ASSERT_EQUAL(n, 35);
    double worst = 0, moved = 0;
    for (int i = 0; i < a.model.nover; i++) {
        const pc_weight *m = &a.model.over[i];
        pc_shape sh;
        const float *base = a.model.family->weight(&a.model, m->key, &sh), *back = pc_model_weight(&b.model, m->key, NULL);
        CU_ASSERT_FATAL(base && back);
        int64_t k = pc_shape_numel(sh);
        worst = fmax(worst, max_abs_diff(back, base, k) / fmax(1.0, max_abs(base, k)));
        moved = fmax(moved, max_abs_diff(m->data, base, k));
    }
    printf("\n    %d weights: merge moved them by up to %.3g, unmerge restores within %.3g\n", a.model.nover, moved, worst);
    CU_ASSERT_EQUAL(a.model.nover, 35);
    CU_ASSERT(moved > 1e-3);
    CU_ASSERT(worst <= 1e-6);
    pc_session_close(&a);
    pc_session_close(&b);
    unlink(path);
}

/* 5. --hf-qk-rows: PEFT's own file (HF q/k rows) loads as the llama2.c-order file (the w2 / w2_a
 * rows of q and k permuted per head), and gives PEFT's logits */
static void test_hf_qk_rows(void) {
    fixture h, l;
    char err[2048];
    if (fx_open(&h, LOKR_HF_DIR, PC_ADAPT_EVAL, false, false) || fx_open(&l, LOKR_DIR, PC_ADAPT_EVAL, false, true)) {
        CU_FAIL("setup");
        fx_close(&h);
        fx_close(&l);
        return;
    }
    h.s.hf_qk_rows = true;
    CU_ASSERT_EQUAL_FATAL(fx_graph(&h, PC_ADAPT_EVAL, false), 0);
    int same = 0, permuted = 0;
    for (int i = 0; i < l.store.n; i++) {
        const pc_store_entry *e = &l.store.e[i], *f = pc_store_find(&h.store, e->key);
        CU_ASSERT_FATAL(f != NULL && f->n == e->n);
        same += !memcmp(e->data, f->data, (size_t)e->n * sizeof(float));
        const pc_st_tensor *raw = pc_st_find(h.s.adapter.weights, e->key);
        permuted += raw && memcmp(raw->data, f->data, (size_t)e->n * sizeof(float)) != 0;
    }
    printf("\n    %d of %d tensors equal the llama2.c-order file after --hf-qk-rows; %d were permuted\n", same,
           l.store.n, permuted);
    CU_ASSERT_EQUAL(same, NTENSORS);
    CU_ASSERT_EQUAL(permuted, 2 * 5); /* q's w2_a and k's w2 in each layer */
    pc_exec *r = fx_run(&h, PC_BACKEND_REF);
    CU_ASSERT_FATAL(r != NULL);
    double e = logits_vs(&h, r, "logits");
    printf("    logits (HF file, --hf-qk-rows) vs PEFT max |diff| %.2e\n", e);
    CU_ASSERT(e <= 1e-4);
    pc_exec_free(r);

    /* decompose_factor 16: q's 64 rows are (16, 4), a head of 8 rows spans two w2 blocks: refused */
    pc_adapter_config *c = pc_adapter_config_new(PC_PEFT_LOKR);
    static const char *const q[] = {"q_proj"};
    CU_ASSERT_FATAL(c && pc_spec_set_list(&c->target_modules, q, 1) == 0);
    c->lycoris.decompose_factor = 16;
    CU_ASSERT_EQUAL_FATAL(pc_session_set_adapter(&h.s, c, "factor16.json", err, sizeof err), 0);
    pc_store_free(&h.store);
    pc_graph_free(h.g);
    pc_build_req req = {.task = PC_TASK_LM, .batch = B, .seq = S, .mode = PC_ADAPT_EVAL};
    h.g = pc_session_build(&h.s, &req, true, err, sizeof err);
    CU_ASSERT_FATAL(h.g != NULL);
    int rc = pc_session_store(&h.s, h.g, &h.store, NULL, 0, err, sizeof err);
    printf("    decompose_factor 16 with --hf-qk-rows: rc %d, \"%s\"\n", rc, err);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT(strstr(err, "factor16.json: --hf-qk-rows:") != NULL && strstr(err, "lokr_w2") != NULL);
    h.s.hf_qk_rows = false; /* without it the same adapter is fine */
    CU_ASSERT_EQUAL(pc_session_store(&h.s, h.g, &h.store, NULL, 0, err, sizeof err), 0);
    fx_close(&h);
    fx_close(&l);
}

/* 6. the config checks of the method */
static void test_refusals(void) {
    char err[2048] = "";
    pc_session s;
    CU_ASSERT_EQUAL_FATAL(pc_session_open(&s, NULL, MODEL, NULL, NULL, err, sizeof err), 0);
    pc_adapter_config *c = pc_adapter_config_new(PC_PEFT_LOKR);
    static const char *const q[] = {"q_proj"};
    CU_ASSERT_FATAL(c && pc_spec_set_list(&c->target_modules, q, 1) == 0);
    c->lycoris.use_effective_conv2d = true;
    CU_ASSERT_EQUAL_FATAL(pc_session_set_adapter(&s, c, "conv.json", err, sizeof err), 0);
    pc_build_req req = {.task = PC_TASK_LM, .batch = 1, .seq = 4, .mode = PC_ADAPT_TRAIN};
    pc_graph *g = pc_session_build(&s, &req, true, err, sizeof err);
    printf("\n    use_effective_conv2d: \"%s\"\n", err);
    CU_ASSERT(g == NULL && strstr(err, "conv.json: field \"use_effective_conv2d\"") != NULL);
    pc_graph_free(g);
    pc_session_close(&s);
}

static CU_TestInfo tests[] = {
    {"factorization", test_factorization},
    {"loss_and_grads", test_loss_and_grads},
    {"merge", test_merge},
    {"unmerge", test_unmerge},
    {"hf_qk_rows", test_hf_qk_rows},
    {"refusals", test_refusals},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("peft_lokr", tests)
