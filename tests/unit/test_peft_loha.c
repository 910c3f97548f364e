/* LoHa against the adapter directory written by Hugging Face PEFT (tests/golden/gen_peft_loha.py):
 *   tests/data/peft_loha_stories260k/  35 modules x 4 hada_* factors, r=4 alpha=8, down_proj r=2,
 *                                      v_proj alpha=4 (rank_pattern / alpha_pattern)
 * Forward (logits, loss) and all 140 factor gradients on the reference interpreter and the JIT,
 * merge vs PEFT's merge_and_unload, the unmerge round trip, rank/module dropout on one linear
 * (PEFT's rule: rows kept with probability 1-p and rescaled by 1/mean(mask); the whole term
 * skipped with probability p; only when training), the rank-r² path of wide layers (its factor
 * gradients against ΔW in double) and the config fields peftc refuses. */
#include "backend/lower.h"
#include "cu_main.h"
#include "compare.h"
#include "peft_fixture.h"
#include "passes/adapt.h"
#include "passes/passes.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

extern const pc_adapter_method pc_method_loha, pc_method_pfedpara;

#define LOHA_DIR PF_DATA("peft_loha_stories260k")

enum { NMOD = 35 };

/* 1. loss, logits and the 140 factor gradients (ref and jit); the factors come from the file and
 * the ranks from rank_pattern */
static void test_loss_and_grads(void) {
    pf_fixture x;
    if (pf_open(&x, LOHA_DIR, NULL, PC_ADAPT_TRAIN, true, true)) { CU_FAIL("setup"); pf_close(&x); return; }
    CU_ASSERT_EQUAL(x.s.adapter.cfg->peft_type, PC_PEFT_LOHA);
    int loaded, n = pf_trainable_from_file(&x, ".hada_w", &loaded), rank2 = 0;
    for (int i = 0; i < x.store.n; i++) {
        const pc_store_entry *e = &x.store.e[i];
        if ((e->flags & PC_TRAINABLE) && strstr(e->key, "down_proj.hada_w1_b") && e->shape.dim[0] == 2) rank2++;
    }
    CU_ASSERT_EQUAL(n, 4 * NMOD);
    CU_ASSERT_EQUAL(loaded, 4 * NMOD);
    CU_ASSERT_EQUAL(rank2, 5); /* rank_pattern {"down_proj": 2} */
    pf_check_loss_logits_grads(&x, PC_BACKEND_REF, 4 * NMOD, NULL, NULL, 0);
    pf_check_loss_logits_grads(&x, PC_BACKEND_JIT, 4 * NMOD, NULL, NULL, 0);
    pf_close(&x);
}

/* 2. merge vs merge_and_unload; merged logits = PEFT's merged = unmerged */
static void test_merge(void) {
    pf_fixture m;
    pf_check_merge(&m, PF_MODEL, &(pf_merge_spec){.adapter = LOHA_DIR, .modules = NMOD, .weights = 14,
                                                  .weights_label = "max |diff|", .unmerged_kind = PC_BACKEND_REF});
    pf_close(&m);
}

/* 3. merge into a checkpoint file, unmerge it: the base comes back */
static void test_unmerge_roundtrip(void) { pf_check_unmerge(PF_MODEL, LOHA_DIR, NULL, NMOD, 1e-6); }

/* ---- 4. dropout on one linear: y = x Wᵀ + k · x (ΔW ⊙ m/mean(m))ᵀ ---- */
enum { DO_N = 3, DO_IN = 5, DO_OUT = 16, DO_R = 2 };
#define DO_MODULE "model.layers.0.self_attn.q_proj"

typedef struct {
    pc_graph *g;
    pc_val base, y, seed;
    float x[DO_N * DO_IN], w[DO_OUT * DO_IN], f[4][DO_OUT * DO_IN], D[DO_N * DO_OUT];
    pc_val fv[4];
} lin_case;

/* n values uniform in [-0.5, 0.5) from a 32-bit LCG (the sequence the fixtures were made with) */
static void lcg_fill(uint32_t *st, float *p, int n) {
    for (int i = 0; i < n; i++) *st = *st * 1664525u + 1013904223u, p[i] = (float)((*st >> 8) / 16777216.0 - 0.5);
}

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
    for (int a = 0; a < 6; a++) lcg_fill(&st, all[a], a ? DO_OUT * DO_IN : DO_N * DO_IN);
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
    /* the interpreter's finiteness check off: rank dropout may drop every row, a 0/0 that PEFT
     * makes too and test_dropout counts */
    pc_exec *r = pc_exec_new(c->g, &(pc_exec_opts){.kind = kind, .check_finite = -1}, err, sizeof err);
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

/* ---- 4b. training without dropout: y = x (W + ΔW)ᵀ as one product (ΔW formed: in·out <
 * r²·(in + out) here) gives the loss and gradients of x Wᵀ + x ΔWᵀ, which the rank-dropout
 * path still computes (p = 1e-9: every row kept, the mask and its mean exactly 1) ---- */
static pc_exec *lin_grads(lin_case *c, const char *json, pc_adapter_config **cfg, pc_adapt_ctx **cx) {
    char err[1024] = "";
    if (!(*cx = ctx_of(json, PC_ADAPT_TRAIN, cfg, err, sizeof err)) || lin_build(c, *cx, false)) return NULL;
    pc_mark_loss(c->g, pc_sum(c->g, pc_square(c->g, c->y), 0, NULL, 0));
    if (pc_pass_autograd(c->g, err, sizeof err)) return fprintf(stderr, "autograd: %s\n", err), NULL;
    pc_exec *r = lin_exec(c, PC_BACKEND_REF);
    int32_t seed = 7;
    if (r && c->seed != PC_NONE) pc_exec_bind(r, c->seed, &seed);
    if (r && pc_exec_run(r, err, sizeof err)) fprintf(stderr, "%s\n", err), pc_exec_free(r), r = NULL;
    return r;
}

static void test_fused_grads(void) {
    const char *fused = "{\"peft_type\":\"LOHA\",\"target_modules\":[\"q_proj\"],\"r\":2,\"alpha\":4}";
    const char *two = "{\"peft_type\":\"LOHA\",\"target_modules\":[\"q_proj\"],\"r\":2,\"alpha\":4,\"rank_dropout\":1e-9}";
    pc_adapter_config *cf = NULL, *ct = NULL;
    pc_adapt_ctx *xf = NULL, *xt = NULL;
    lin_case f, t;
    pc_exec *rf = lin_grads(&f, fused, &cf, &xf), *rt = lin_grads(&t, two, &ct, &xt);
    CU_ASSERT_FATAL(rf && rt);
    CU_ASSERT(f.seed == PC_NONE && t.seed != PC_NONE); /* two different graphs */
    int fused_prods = 0; /* products of x by a sum W + ΔW */
    for (pc_val v = 0; v < f.g->nvals; v++) {
        const pc_value *m = pc_v(f.g, v);
        fused_prods += m->op == PC_OP_matmul && m->shape.dim[0] == DO_N && pc_v(f.g, m->in[1])->op == PC_OP_add;
    }
    CU_ASSERT_EQUAL(fused_prods, 1);
    CU_ASSERT_EQUAL_FATAL(f.g->noutputs, t.g->noutputs);
    double worst = 0;
    int ngrads = 0;
    for (int i = 0; i < f.g->noutputs; i++) {
        const pc_value *a = pc_v(f.g, f.g->outputs[i]);
        size_t n = (size_t)pc_shape_numel(a->shape);
        CU_ASSERT_EQUAL_FATAL(n, (size_t)pc_shape_numel(pc_v(t.g, t.g->outputs[i])->shape));
        const float *p = pc_exec_data(rf, f.g->outputs[i]), *q = pc_exec_data(rt, t.g->outputs[i]);
        double big = 1;
        for (size_t k = 0; k < n; k++) big = fmax(big, fabs(q[k]));
        double d = max_abs_diff(p, q, n) / big;
        if (d > worst) worst = d;
        ngrads += a->name && strncmp(a->name, "grad.", 5) == 0;
    }
    printf("\n    %d outputs (%d gradients): fused vs two products, worst rel %.2e\n", f.g->noutputs, ngrads, worst);
    CU_ASSERT_EQUAL(ngrads, 4);
    CU_ASSERT(worst <= 1e-6);
    pc_exec_free(rf);
    pc_exec_free(rt);
    pc_graph_free(f.g);
    pc_graph_free(t.g);
    pc_adapt_free(xf);
    pc_adapt_free(xt);
    pc_adapter_config_free(cf);
    pc_adapter_config_free(ct);
}

/* ---- 4c. the rank-r² path (r²·(in + out) < in·out: wide layers) never forms ΔW: U = w1_a ⊙
 * w2_a row by row, V = w1_b ⊙ w2_b column by column, x ΔWᵀ = (x Vᵀ) Uᵀ. Its four factor
 * gradients (the JIT sums them with call.mul_sum_to, its Khatri-Rao rows with short-row
 * kernels) against the explicit ΔW in double, on both backends ---- */
enum { KR_N = 6, KR_IN = 24, KR_OUT = 40, KR_R = 3 };

static void test_factored_grads(void) {
    const char *json = "{\"peft_type\":\"LOHA\",\"target_modules\":[\"q_proj\"],\"r\":3,\"alpha\":6}";
    char err[1024] = "";
    pc_adapter_config *cfg = NULL;
    pc_adapt_ctx *cx = ctx_of(json, PC_ADAPT_TRAIN, &cfg, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cx);
    pc_graph *g = pc_graph_new("kr");
    pc_val x = pc_input(g, "x", PC_F32, PC_SHAPE(KR_N, KR_IN)), rr = pc_input(g, "r", PC_F32, PC_SHAPE(KR_N, KR_OUT));
    pc_val w = pc_param(g, "w", DO_MODULE ".weight", PC_F32, PC_SHAPE(KR_OUT, KR_IN), PC_FROZEN, (pc_init){0});
    pc_site site = {.kind = PC_SITE_LINEAR, .module = DO_MODULE, .layer = 0, .g = g, .x = x, .weight = w,
                    .bias = PC_NONE, .in = KR_IN, .out = KR_OUT};
    site.value = pc_matmul(g, x, w, 0, 1);
    CU_ASSERT_FATAL(pc_adapt_site(cx, &site, err, sizeof err) == 0 && pc_adapt_nrewritten(cx) == 1);
    int formed = 0; /* a product by W + ΔW would mean ΔW was formed */
    for (pc_val v = 0; v < g->nvals; v++)
        formed += pc_v(g, v)->op == PC_OP_matmul && pc_v(g, pc_v(g, v)->in[1])->op == PC_OP_add;
    CU_ASSERT_EQUAL(formed, 0);
    pc_mark_loss(g, pc_sum(g, pc_mul(g, site.value, rr), 0, NULL, 0)); /* dL/dy = r */
    CU_ASSERT_EQUAL_FATAL(pc_pass_autograd(g, err, sizeof err), 0);
    pc_lowered *l = pc_lower(g, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    int mul_sums = 0;
    for (int i = 0; i < l->ninsns; i++) mul_sums += l->insn[i].kind == PC_LI_CALL && l->insn[i].call == PC_CALL_MUL_SUM;
    CU_ASSERT_EQUAL(mul_sums, 4); /* one per factor */
    pc_lowered_free(l);
    static const char *names[4] = {"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"};
    static const int64_t rows[4] = {KR_OUT, KR_R, KR_OUT, KR_R}, cols[4] = {KR_R, KR_IN, KR_R, KR_IN};
    static float xs[KR_N * KR_IN], rs[KR_N * KR_OUT], ws[KR_OUT * KR_IN], f[4][KR_OUT * KR_IN];
    pc_val fv[4], gv[4];
    uint32_t st = 777;
    for (int k = 0; k < 4; k++) {
        char key[256], gname[300];
        snprintf(key, sizeof key, "base_model.model." DO_MODULE ".%s", names[k]);
        fv[k] = pc_lookup_key(g, key);
        CU_ASSERT_FATAL(fv[k] != PC_NONE);
        snprintf(gname, sizeof gname, "grad.%s", pc_v(g, fv[k])->name);
        gv[k] = pc_lookup(g, gname);
        CU_ASSERT_FATAL(gv[k] != PC_NONE);
        lcg_fill(&st, f[k], (int)(rows[k] * cols[k]));
    }
    lcg_fill(&st, xs, KR_N * KR_IN);
    lcg_fill(&st, rs, KR_N * KR_OUT);
    /* G = s rᵀ x, P1 = w1_a w1_b, P2 = w2_a w2_b (s = alpha / r = 2): d w1_a = (G ⊙ P2) w1_bᵀ, ... */
    static double G[KR_OUT * KR_IN], P[2][KR_OUT * KR_IN], want[4][KR_OUT * KR_IN];
    memset(want, 0, sizeof want);
    for (int o = 0; o < KR_OUT; o++)
        for (int i = 0; i < KR_IN; i++) {
            double gs = 0, p1 = 0, p2 = 0;
            for (int n = 0; n < KR_N; n++) gs += (double)rs[n * KR_OUT + o] * xs[n * KR_IN + i];
            for (int k = 0; k < KR_R; k++)
                p1 += (double)f[0][o * KR_R + k] * f[1][k * KR_IN + i], p2 += (double)f[2][o * KR_R + k] * f[3][k * KR_IN + i];
            G[o * KR_IN + i] = 2.0 * gs, P[0][o * KR_IN + i] = p1, P[1][o * KR_IN + i] = p2;
        }
    for (int h = 0; h < 2; h++) /* factor pair h: its product is multiplied by the other one's */
        for (int o = 0; o < KR_OUT; o++)
            for (int i = 0; i < KR_IN; i++) {
                double gp = G[o * KR_IN + i] * P[1 - h][o * KR_IN + i];
                for (int k = 0; k < KR_R; k++) {
                    want[2 * h][o * KR_R + k] += gp * f[2 * h + 1][k * KR_IN + i];
                    want[2 * h + 1][k * KR_IN + i] += gp * f[2 * h][o * KR_R + k];
                }
            }
    for (int b = 0; b < 2; b++) {
        pc_backend_kind kind = b ? PC_BACKEND_JIT : PC_BACKEND_REF;
        pc_exec *e = pc_exec_new(g, &(pc_exec_opts){.kind = kind}, err, sizeof err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(e);
        pc_exec_bind(e, x, xs);
        pc_exec_bind(e, rr, rs);
        pc_exec_bind(e, w, ws);
        for (int k = 0; k < 4; k++) pc_exec_bind(e, fv[k], f[k]);
        CU_ASSERT_EQUAL_FATAL(pc_exec_run(e, err, sizeof err), 0);
        double worst = 0;
        for (int k = 0; k < 4; k++) {
            const float *got = pc_exec_data(e, gv[k]);
            double big = 1e-30;
            for (int i = 0; i < rows[k] * cols[k]; i++) big = fmax(big, fabs(want[k][i]));
            for (int i = 0; i < rows[k] * cols[k]; i++) worst = fmax(worst, fabs(got[i] - want[k][i]) / big);
        }
        printf("\n    rank-r² factor gradients (%s) vs ΔW in double: worst rel %.2e", b ? "jit" : "ref", worst);
        CU_ASSERT(worst <= 1e-5);
        pc_exec_free(e);
    }
    pc_graph_free(g);
    pc_adapt_free(cx);
    pc_adapter_config_free(cfg);
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
    {"fused_grads", test_fused_grads},
    {"factored_grads", test_factored_grads},
    {"config_refusals", test_config_refusals},
    {"pfedpara", test_pfedpara},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("peft_loha", tests)
