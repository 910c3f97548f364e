/* LoHa against the adapter directory written by Hugging Face PEFT (tests/golden/gen_peft_loha.py):
 *   tests/data/peft_loha_stories260k/  35 modules x 4 hada_* factors, r=4 alpha=8, down_proj r=2,
 *                                      v_proj alpha=4 (rank_pattern / alpha_pattern)
 * Forward (logits, loss) and all 140 factor gradients on the reference interpreter and the JIT,
 * merge vs PEFT's merge_and_unload, the unmerge round trip, rank/module dropout on one linear
 * (PEFT's rule: rows kept with probability 1-p and rescaled by 1/mean(mask); the whole term
 * skipped with probability p; only when training) and the config fields peftc refuses. */
#include "cu_main.h"
#include "compare.h"
#include "backend/exec.h"
#include "drivers/merge.h"
#include "drivers/session.h"
#include "drivers/store.h"
#include "ir/ir.h"
#include "passes/adapt.h"
#include "passes/pipeline.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern const pc_adapter_method pc_method_loha, pc_method_pfedpara;

#define MODEL PEFTC_SOURCE_DIR "/data/stories260K/stories260K.bin"
#define LOHA_DIR PEFTC_SOURCE_DIR "/tests/data/peft_loha_stories260k"

enum { B = 2, S = 16, V = 512, N = B * S, NMOD = 35 };

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

static int fx_open(fixture *x, pc_adapt_mode mode, bool trainable, bool build) {
    char err[2048];
    memset(x, 0, sizeof *x);
    if (pc_session_open(&x->s, NULL, MODEL, NULL, LOHA_DIR, err, sizeof err)) { fprintf(stderr, "%s\n", err); return -1; }
    if (!(x->ex = pc_st_open(LOHA_DIR "/expected.safetensors", err, sizeof err))) { fprintf(stderr, "%s\n", err); return -1; }
    const pc_st_tensor *tk = pc_st_find(x->ex, "tokens"), *tg = pc_st_find(x->ex, "targets");
    if (!tk || !tg || tk->dtype != PC_I32 || tg->dtype != PC_I32 || pc_shape_numel(tk->shape) != N ||
        pc_shape_numel(tg->shape) != N)
        return fprintf(stderr, "expected.safetensors: bad tokens/targets\n"), -1;
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
        CU_ASSERT_FATAL(gv != PC_NONE && (pc_v(x->g, gv)->flags & PC_OUTPUT) && wg != NULL);
        CU_ASSERT_FATAL(pc_shape_numel(wg->shape) == e->n && pc_shape_eq(pc_val_shape(x->g, gv), e->shape));
        double d = max_abs_diff(pc_exec_data(r, gv), wg->data, e->n), scale = max_abs(wg->data, e->n);
        double rel = d / (scale > 1 ? scale : 1);
        if (rel > worst) worst = rel;
        if (d > worst_abs) worst_abs = d;
        checked++;
    }
    printf("    [%s] %d gradients: max |diff| %.2e, worst rel (to max(1, max|g|)) %.2e\n", bk, checked, worst_abs, worst);
    CU_ASSERT_EQUAL(checked, 4 * NMOD);
    CU_ASSERT(worst <= 1e-4);
    pc_exec_free(r);
}

/* 1. loss, logits and the 140 factor gradients (ref and jit); the factors come from the file and
 * the ranks from rank_pattern */
static void test_loss_and_grads(void) {
    fixture x;
    if (fx_open(&x, PC_ADAPT_TRAIN, true, true)) { CU_FAIL("setup"); fx_close(&x); return; }
    CU_ASSERT_EQUAL(x.s.adapter.cfg->peft_type, PC_PEFT_LOHA);
    int n = 0, loaded = 0, rank2 = 0;
    for (int i = 0; i < x.store.n; i++) {
        const pc_store_entry *e = &x.store.e[i];
        if (!(e->flags & PC_TRAINABLE)) continue;
        n++;
        const pc_st_tensor *f = pc_st_find(x.s.adapter.weights, e->key);
        CU_ASSERT(f != NULL && strstr(e->key, ".hada_w") != NULL);
        if (e->loaded && f && f->nbytes == (size_t)e->n * sizeof(float) && !memcmp(f->data, e->data, f->nbytes)) loaded++;
        if (strstr(e->key, "down_proj.hada_w1_b") && e->shape.dim[0] == 2) rank2++;
    }
    CU_ASSERT_EQUAL(n, 4 * NMOD);
    CU_ASSERT_EQUAL(loaded, 4 * NMOD);
    CU_ASSERT_EQUAL(rank2, 5); /* rank_pattern {"down_proj": 2} */
    check_forward_backward(&x, PC_BACKEND_REF);
    check_forward_backward(&x, PC_BACKEND_JIT);
    fx_close(&x);
}

/* 2. merge vs merge_and_unload; merged logits = PEFT's merged = unmerged */
static void test_merge(void) {
    char err[2048];
    fixture m, u;
    if (fx_open(&m, PC_ADAPT_EVAL, false, false)) { CU_FAIL("setup"); fx_close(&m); return; }
    int nmod = 0, rc = pc_session_merge(&m.s, &nmod, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(nmod, NMOD);
    int checked = 0;
    double worst = 0;
    for (int i = 0; i < pc_st_count(m.ex); i++) {
        const pc_st_tensor *t = pc_st_get(m.ex, i);
        if (strncmp(t->name, "merged.", 7)) continue;
        pc_shape ms;
        const float *w = pc_model_weight(&m.s.model, t->name + 7, &ms);
        CU_ASSERT_FATAL(w != NULL && pc_shape_eq(ms, t->shape));
        double e = max_abs_diff(w, t->data, pc_shape_numel(t->shape));
        if (e > worst) worst = e;
        const float *base = m.s.model.family->weight(&m.s.model, t->name + 7, NULL);
        CU_ASSERT(base && max_abs_diff(base, t->data, pc_shape_numel(t->shape)) > 1e-3);
        checked++;
    }
    printf("\n    %d merged modules; %d merged weights (layers 0, 4) max |diff| %.2e\n", nmod, checked, worst);
    CU_ASSERT_EQUAL(checked, 14);
    CU_ASSERT(worst <= 1e-6);
    CU_ASSERT_EQUAL_FATAL(fx_graph(&m, PC_ADAPT_EVAL, false), 0);
    CU_ASSERT_EQUAL(m.store.n, 0);
    pc_exec *rm = fx_run(&m, PC_BACKEND_REF), *ru = NULL;
    CU_ASSERT_FATAL(rm != NULL);
    double em = logits_vs(&m, rm, "merged_logits");
    if (fx_open(&u, PC_ADAPT_EVAL, false, true) == 0) ru = fx_run(&u, PC_BACKEND_REF);
    CU_ASSERT(ru != NULL);
    if (ru) {
        double eu = logits_vs(&u, ru, "logits");
        const float *lm = logits_of(&m, rm), *lu = logits_of(&u, ru);
        double mu = lm && lu ? max_abs_diff(lm, lu, (int64_t)N * V) : INFINITY;
        printf("    logits max |diff|: merged vs PEFT merged %.2e, unmerged (eval) vs PEFT %.2e, merged vs unmerged %.2e\n",
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

/* 3. merge into a checkpoint file, unmerge it: the base comes back */
static void test_unmerge_roundtrip(void) {
    char err[2048], path[] = "/tmp/peftc_loha_unmerge_XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    close(fd);
    pc_session a, b;
    int n = 0;
    CU_ASSERT_EQUAL_FATAL(pc_session_open(&a, NULL, MODEL, NULL, LOHA_DIR, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(pc_session_merge(&a, &n, err, sizeof err), 0);
    CU_ASSERT_EQUAL(n, NMOD);
    CU_ASSERT_EQUAL_FATAL(pc_session_write_model(&a, path, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(pc_session_open(&b, NULL, path, NULL, LOHA_DIR, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(pc_session_unmerge(&b, &n, err, sizeof err), 0);
    CU_ASSERT_EQUAL(n, NMOD);
    double worst = 0, moved = 0;
    int checked = 0;
    for (int i = 0; i < a.model.nover; i++) {
        const pc_weight *m = &a.model.over[i];
        pc_shape sh;
        const float *base = a.model.family->weight(&a.model, m->key, &sh);
        const float *back = pc_model_weight(&b.model, m->key, NULL);
        CU_ASSERT_FATAL(base && back);
        int64_t k = pc_shape_numel(sh);
        double e = max_abs_diff(back, base, k) / fmax(1.0, max_abs(base, k)), d = max_abs_diff(m->data, base, k);
        if (e > worst) worst = e;
        if (d > moved) moved = d;
        checked++;
    }
    printf("\n    %d weights, merge moved them by up to %.3g, unmerge restores within %.3g\n", checked, moved, worst);
    CU_ASSERT_EQUAL(checked, NMOD);
    CU_ASSERT(moved > 1e-3);
    CU_ASSERT(worst <= 1e-6);
    pc_session_close(&a);
    pc_session_close(&b);
    unlink(path);
}

/* ---- 4. dropout on one linear: y = x Wᵀ + k · x (ΔW ⊙ m/mean(m))ᵀ ---- */
enum { DO_N = 3, DO_IN = 5, DO_OUT = 16, DO_R = 2 };
#define DO_MODULE "model.layers.0.self_attn.q_proj"

typedef struct {
    pc_graph *g;
    pc_val base, y, seed;
    float x[DO_N * DO_IN], w[DO_OUT * DO_IN], f[4][DO_OUT * DO_IN], D[DO_N * DO_OUT];
    pc_val fv[4];
} lin_case;

static pc_adapt_ctx *ctx_of(const char *json, pc_adapt_mode mode, pc_adapter_config **cfg, char *err, size_t n) {
    static const pc_model_info info = {.model_type = "llama", .dim = 64, .vocab = 512, .context = 512,
                                       .n_layers = 5, .n_heads = 8, .n_kv_heads = 4};
    static const char *const custom[] = {"PFEDPARA"};
    if (!(*cfg = pc_adapter_config_parse_ex(json, strlen(json), "a.json", custom, 1, err, n))) return NULL;
    const pc_adapter_method *m = (*cfg)->peft_type == PC_PEFT_CUSTOM ? &pc_method_pfedpara : &pc_method_loha;
    return pc_adapt_new(m, *cfg, "a.json", mode, mode == PC_ADAPT_TRAIN, &info, err, n);
}

/* builds the linear, rewrites it with LoHa (r=2, alpha=4: scale 2), fills inputs and factors,
 * and computes the undropped term D = x ΔWᵀ in double (pfedpara: W1 ⊙ (W2 + 1) in ΔW) */
static int lin_build(lin_case *c, pc_adapt_ctx *cx, bool pfedpara) {
    char err[1024] = "";
    memset(c, 0, sizeof *c);
    c->g = pc_graph_new("lin");
    pc_val x = pc_input(c->g, "x", PC_F32, PC_SHAPE(DO_N, DO_IN));
    pc_val w = pc_param(c->g, "w", DO_MODULE ".weight", PC_F32, PC_SHAPE(DO_OUT, DO_IN), PC_FROZEN, (pc_init){0});
    pc_site s = {.kind = PC_SITE_LINEAR, .module = DO_MODULE, .layer = 0, .g = c->g, .x = x, .weight = w,
                 .bias = PC_NONE, .in = DO_IN, .out = DO_OUT};
    s.value = c->base = pc_matmul(c->g, x, w, 0, 1);
    if (pc_adapt_site(cx, &s, err, sizeof err) || pc_adapt_nrewritten(cx) != 1) return fprintf(stderr, "rewrite: %s\n", err), -1;
    c->y = s.value;
    pc_mark_output(c->g, c->base);
    pc_mark_output(c->g, c->y);
    c->seed = pc_lookup(c->g, "seed");
    static const char *names[4] = {"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"};
    for (int k = 0; k < 4; k++) {
        char key[256];
        snprintf(key, sizeof key, "base_model.model." DO_MODULE ".%s", names[k]);
        if ((c->fv[k] = pc_lookup_key(c->g, key)) == PC_NONE) return fprintf(stderr, "no %s\n", key), -1;
    }
    if (pc_graph_error(c->g)) return fprintf(stderr, "%s\n", pc_graph_error(c->g)), -1;
    uint32_t st = 12345;
    float *all[] = {c->x, c->w, c->f[0], c->f[1], c->f[2], c->f[3]};
    for (int a = 0; a < 6; a++)
        for (int i = 0; i < DO_OUT * DO_IN && (a || i < DO_N * DO_IN); i++)
            st = st * 1664525u + 1013904223u, all[a][i] = (float)((st >> 8) / 16777216.0 - 0.5);
    for (int n = 0; n < DO_N; n++)
        for (int o = 0; o < DO_OUT; o++) {
            double acc = 0;
            for (int i = 0; i < DO_IN; i++) {
                double w1 = 0, w2 = 0;
                for (int k = 0; k < DO_R; k++)
                    w1 += (double)c->f[0][o * DO_R + k] * c->f[1][k * DO_IN + i],
                        w2 += (double)c->f[2][o * DO_R + k] * c->f[3][k * DO_IN + i];
                acc += c->x[n * DO_IN + i] * 2.0 * w1 * (pfedpara ? w2 + 1.0 : w2);
            }
            c->D[n * DO_OUT + o] = (float)acc;
        }
    return 0;
}

static pc_exec *lin_exec(lin_case *c, pc_backend_kind kind) {
    char err[1024] = "";
    pc_exec *r = pc_exec_new(c->g, &(pc_exec_opts){.kind = kind}, err, sizeof err);
    if (!r) { fprintf(stderr, "%s\n", err); return NULL; }
    pc_exec_bind(r, pc_lookup(c->g, "x"), c->x);
    pc_exec_bind(r, pc_lookup(c->g, "w"), c->w);
    for (int k = 0; k < 4; k++) pc_exec_bind(r, c->fv[k], c->f[k]);
    return r;
}

/* classifies one run: -1 wrong, 0 module skipped, else the number of kept rows (the kept ones
 * scaled by exactly out/kept) */
static int lin_check(const lin_case *c, const float *base, const float *y) {
    int kept = 0, zero = 0;
    double scale = -1;
    for (int o = 0; o < DO_OUT; o++) {
        double r[DO_N];
        for (int n = 0; n < DO_N; n++) r[n] = (y[n * DO_OUT + o] - base[n * DO_OUT + o]) / c->D[n * DO_OUT + o];
        if (fabs(r[0]) < 1e-4 && fabs(r[1]) < 1e-4 && fabs(r[2]) < 1e-4) { zero++; continue; }
        for (int n = 1; n < DO_N; n++)
            if (fabs(r[n] - r[0]) > 1e-3 * fabs(r[0])) return -1;
        if (scale < 0) scale = r[0];
        if (fabs(r[0] - scale) > 1e-3 * scale) return -1;
        kept++;
    }
    if (kept == 0) return 0;
    return fabs(scale * kept / DO_OUT - 1.0) <= 1e-3 ? kept : -1;
}

static void test_dropout(void) {
    char err[1024] = "";
    pc_adapter_config *cfg = NULL, *cfg_eval = NULL;
    const char *json = "{\"peft_type\":\"LOHA\",\"target_modules\":[\"q_proj\"],\"r\":2,\"alpha\":4,"
                       "\"rank_dropout\":0.5,\"module_dropout\":0.25}";
    pc_adapt_ctx *cx = ctx_of(json, PC_ADAPT_TRAIN, &cfg, err, sizeof err), *ce = NULL;
    if (!cx) fprintf(stderr, "%s\n", err);
    CU_ASSERT_FATAL(cx != NULL);
    lin_case c, e;
    CU_ASSERT_EQUAL_FATAL(lin_build(&c, cx, false), 0);
    CU_ASSERT_FATAL(c.seed != PC_NONE);
    pc_exec *r = lin_exec(&c, PC_BACKEND_REF), *j = lin_exec(&c, PC_BACKEND_JIT);
    CU_ASSERT_FATAL(r && j);
    enum { RUNS = 400 };
    int skipped = 0, rows = 0, runs = 0, bad = 0, nan_runs = 0;
    double jit_diff = 0;
    for (int32_t seed = 1; seed <= RUNS; seed++) {
        pc_exec_bind(r, c.seed, &seed);
        CU_ASSERT_EQUAL_FATAL(pc_exec_run(r, err, sizeof err), 0);
        const float *y = pc_exec_data(r, c.y), *b = pc_exec_data(r, c.base);
        if (isnan(y[0])) { nan_runs++; continue; } /* every row dropped: PEFT's 0/0 too */
        int k = lin_check(&c, b, y);
        if (k < 0) bad++;
        else if (k == 0) skipped++;
        else rows += k, runs++;
        if (seed <= 20) {
            pc_exec_bind(j, c.seed, &seed);
            CU_ASSERT_EQUAL_FATAL(pc_exec_run(j, err, sizeof err), 0);
            double d = max_abs_diff(pc_exec_data(j, c.y), y, DO_N * DO_OUT);
            if (d > jit_diff) jit_diff = d;
        }
    }
    double pskip = (double)skipped / RUNS, pkeep = runs ? (double)rows / (runs * DO_OUT) : 0;
    printf("\n    %d runs: module skipped %.3f (p 0.25), rows kept %.3f (1-p 0.5), %d bad, %d all-dropped (NaN); "
           "jit vs ref %.2e\n", RUNS, pskip, pkeep, bad, nan_runs, jit_diff);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(fabs(pskip - 0.25) < 0.08);
    CU_ASSERT(fabs(pkeep - 0.5) < 0.05);
    CU_ASSERT(nan_runs <= 1);
    CU_ASSERT(jit_diff <= 1e-6);
    /* evaluation: no dropout, the whole term */
    ce = ctx_of(json, PC_ADAPT_EVAL, &cfg_eval, err, sizeof err);
    CU_ASSERT_FATAL(ce != NULL);
    CU_ASSERT_EQUAL_FATAL(lin_build(&e, ce, false), 0);
    CU_ASSERT(e.seed == PC_NONE);
    pc_exec *re = lin_exec(&e, PC_BACKEND_REF);
    CU_ASSERT_FATAL(re != NULL);
    CU_ASSERT_EQUAL(pc_exec_run(re, err, sizeof err), 0);
    CU_ASSERT_EQUAL(lin_check(&e, pc_exec_data(re, e.base), pc_exec_data(re, e.y)), DO_OUT);
    pc_exec_free(re);
    pc_exec_free(r);
    pc_exec_free(j);
    pc_graph_free(c.g);
    pc_graph_free(e.g);
    pc_adapt_free(cx);
    pc_adapt_free(ce);
    pc_adapter_config_free(cfg);
    pc_adapter_config_free(cfg_eval);
}

/* ---- 5. what peftc refuses, naming the field ---- */
static void test_config_refusals(void) {
    static const struct { const char *extra, *field; } cases[] = {
        {"\"rank_dropout\":1.0", "field \"rank_dropout\""},
        {"\"module_dropout\":1", "field \"module_dropout\""},
    };
    printf("\n");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char json[512], err[1024] = "";
        snprintf(json, sizeof json, "{\"peft_type\":\"LOHA\",\"target_modules\":[\"q_proj\"],%s}", cases[i].extra);
        pc_adapter_config *cfg = NULL;
        pc_adapt_ctx *cx = ctx_of(json, PC_ADAPT_TRAIN, &cfg, err, sizeof err);
        CU_ASSERT(cx == NULL);
        printf("    %s -> %s\n", cases[i].extra, err);
        CU_ASSERT(strstr(err, cases[i].field) != NULL);
        pc_adapt_free(cx);
        pc_adapter_config_free(cfg);
    }
}

/* ---- 6. pFedPara: ΔW = (W1 ⊙ (W2 + 1)) alpha/r, a no-op at init, merge W + ΔW, the split ---- */
#define PFP_JSON(extra) "{\"peft_type\":\"PFEDPARA\",\"target_modules\":[\"q_proj\"],\"r\":2,\"alpha\":4" extra "}"
#define PFP_SPLIT ",\"global_factors\":[\"hada_w1_a\",\"hada_w1_b\"],\"local_factors\":[\"hada_w2_a\",\"hada_w2_b\"]"
static void test_pfedpara(void) {
    char err[1024] = "";
    pc_adapter_config *cfg = NULL;
    pc_adapt_ctx *cx = ctx_of(PFP_JSON(PFP_SPLIT), PC_ADAPT_TRAIN, &cfg, err, sizeof err);
    if (!cx) fprintf(stderr, "%s\n", err);
    CU_ASSERT_FATAL(cx != NULL);
    lin_case c;
    CU_ASSERT_EQUAL_FATAL(lin_build(&c, cx, true), 0);
    /* the declared inits: only w1_b is zero, so ΔW = 0 */
    CU_ASSERT_EQUAL(pc_v(c.g, c.fv[1])->init.kind, PC_INIT_ZEROS);
    CU_ASSERT_EQUAL(pc_v(c.g, c.fv[0])->init.kind, PC_INIT_KAIMING_UNIFORM);
    CU_ASSERT_EQUAL(pc_v(c.g, c.fv[2])->init.kind, PC_INIT_KAIMING_UNIFORM);
    CU_ASSERT_EQUAL(pc_v(c.g, c.fv[3])->init.kind, PC_INIT_KAIMING_UNIFORM);
    pc_exec *r = lin_exec(&c, PC_BACKEND_REF);
    CU_ASSERT_FATAL(r != NULL);
    CU_ASSERT_EQUAL_FATAL(pc_exec_run(r, err, sizeof err), 0);
    const float *y = pc_exec_data(r, c.y), *b = pc_exec_data(r, c.base);
    double worst = 0;
    for (int i = 0; i < DO_N * DO_OUT; i++) worst = fmax(worst, fabs((y[i] - b[i]) - c.D[i]));
    printf("\n    y - x W^T vs x (2 W1 (W2 + 1))^T by hand: max |diff| %.2e\n", worst);
    CU_ASSERT(worst <= 1e-6);
    /* merge: W + ΔW gives the same output */
    pc_site s = {.kind = PC_SITE_LINEAR, .module = DO_MODULE, .layer = 0, .g = c.g, .x = pc_lookup(c.g, "x"),
                 .weight = pc_lookup(c.g, "w"), .bias = PC_NONE, .in = DO_IN, .out = DO_OUT};
    pc_val mw = PC_NONE, mb = PC_NONE;
    CU_ASSERT_EQUAL_FATAL(pc_method_pfedpara.merge_linear(cx, pc_adapt_state(cx), &s, &mw, &mb, err, sizeof err), 1);
    pc_val ym = pc_matmul(c.g, s.x, mw, 0, 1);
    pc_mark_output(c.g, ym);
    pc_exec *rm = lin_exec(&c, PC_BACKEND_REF);
    CU_ASSERT_FATAL(rm != NULL);
    CU_ASSERT_EQUAL_FATAL(pc_exec_run(rm, err, sizeof err), 0);
    double dm = max_abs_diff(pc_exec_data(rm, ym), pc_exec_data(rm, c.y), DO_N * DO_OUT);
    printf("    merged x (W + dW)^T vs unmerged: max |diff| %.2e\n", dm);
    CU_ASSERT(dm <= 1e-6);
    CU_ASSERT(pc_method_pfedpara.output_rows("hada_w2_a") && !pc_method_pfedpara.output_rows("hada_w2_b"));
    pc_exec_free(rm);
    pc_exec_free(r);
    pc_graph_free(c.g);
    pc_adapt_free(cx);
    pc_adapter_config_free(cfg);
    /* the split must be recorded, and be pFedPara's */
    static const struct { const char *json, *want; } bad[] = {
        {PFP_JSON(""), "field \"global_factors\": required"},
        {PFP_JSON(",\"global_factors\":[\"hada_w2_a\",\"hada_w2_b\"],\"local_factors\":[\"hada_w1_a\",\"hada_w1_b\"]"),
         "field \"global_factors\": must be"},
        {PFP_JSON(PFP_SPLIT ",\"rank_dropout\":0.1"), "field \"rank_dropout\": not implemented"},
        {PFP_JSON(PFP_SPLIT ",\"r\":0"), "field \"r\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = 0;
        cx = ctx_of(bad[i].json, PC_ADAPT_TRAIN, &cfg, err, sizeof err);
        printf("    -> %s\n", err);
        CU_ASSERT(cx == NULL && strstr(err, bad[i].want) != NULL);
        pc_adapt_free(cx);
        pc_adapter_config_free(cfg);
    }
}

static CU_TestInfo tests[] = {
    {"loss_and_grads", test_loss_and_grads},
    {"merge", test_merge},
    {"unmerge_roundtrip", test_unmerge_roundtrip},
    {"rank_and_module_dropout", test_dropout},
    {"config_refusals", test_config_refusals},
    {"pfedpara", test_pfedpara},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("peft_loha", tests)
