/* KronA^B / KronA^B_res (passes/adapters/kronab.c, tests/golden/kronab.md):
 *   - PEFT LoKr's factorization rule, against values printed by PEFT 0.21.2's own function;
 *   - the factored product x (A ⊗ B)ᵀ (two matmuls, A ⊗ B never formed) against
 *     matmul(x, kron(A, B), transpose_b) and a double loop, random small shapes, ref and JIT;
 *   - gradients of A, B and s_res against finite differences (ref), and JIT against ref;
 *   - the res variant on one FFN site against a hand computation; the no-op init; the inits;
 *   - refused configs (file and field named), no FFN site, targets matching no FFN module. */
#include "cu_main.h"
#include "fd_check.h"
#include "backend/exec.h"
#include "passes/adapt.h"
#include "passes/kron.h"
#include "passes/passes.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const pc_adapter_method pc_method_kronab;

#define MOD "model.layers.0.mlp"
#define KEY(t) "base_model.model." MOD "." t

/* ---- 1. factorization(dim, factor): (dim, factor) -> PEFT's (m, n) ---- */
static void test_factorization(void) {
    static const int64_t cases[][4] = {
        {64, -1, 8, 8}, {128, -1, 8, 16}, {127, -1, 1, 127}, {128, 4, 4, 32}, {256, -1, 16, 16},
        {4096, -1, 64, 64}, {3072, -1, 48, 64}, {11008, -1, 86, 128}, {768, -1, 24, 32}, {3072, 4, 4, 768},
        {64, 3, 2, 32}, {64, 5, 4, 16}, {64, 16, 16, 4}, {64, 64, 64, 1}, {64, 128, 8, 8}, {1, -1, 1, 1},
        {6, -1, 2, 3}, {12, -1, 3, 4}, {36, -1, 6, 6}, {100, 7, 5, 20}, {172, -1, 4, 43}, {96, -1, 8, 12},
        {1024, -1, 32, 32}, {2304, -1, 48, 48}, {1024, 4, 4, 256}, {32, -1, 4, 8}, {3072, 5, 4, 768},
        {172, 2, 2, 86}, {12, -3, 1, 12},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int64_t m = 0, n = 0;
        pc_kron_factorization(cases[i][0], cases[i][1], &m, &n);
        if (m != cases[i][2] || n != cases[i][3])
            printf("\n    factorization(%lld, %lld) = (%lld, %lld), PEFT (%lld, %lld)", (long long)cases[i][0],
                   (long long)cases[i][1], (long long)m, (long long)n, (long long)cases[i][2], (long long)cases[i][3]);
        CU_ASSERT(m == cases[i][2] && n == cases[i][3]);
    }
}

static float *rand_fill(rng *r, int64_t n) {
    float *d = malloc((size_t)(n ? n : 1) * sizeof *d);
    for (int64_t i = 0; i < n; i++) d[i] = (float)(2 * urand(r) - 1);
    return d;
}

/* y[n, i·b1 + j] = Σ_k Σ_l A[i, k] B[j, l] x[n, k·b2 + l], in double */
static void kron_by_hand(const float *x, const float *a, const float *b, int64_t N, int64_t a1, int64_t a2, int64_t b1,
                         int64_t b2, double *y) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < a1; i++)
            for (int64_t j = 0; j < b1; j++) {
                double acc = 0;
                for (int64_t k = 0; k < a2; k++)
                    for (int64_t l = 0; l < b2; l++)
                        acc += (double)a[i * a2 + k] * b[j * b2 + l] * x[n * a2 * b2 + k * b2 + l];
                y[n * a1 * b1 + i * b1 + j] = acc;
            }
}

static double max_diff(const float *y, const double *want, int64_t n) {
    double w = 0;
    for (int64_t i = 0; i < n; i++) w = fmax(w, fabs((double)y[i] - want[i]));
    return w;
}

/* ---- 2. the factored product on random small shapes, ref and JIT ---- */
static void test_kron_product(void) {
    rng r = {20221220};
    double worst[3] = {0, 0, 0};
    for (int trial = 0; trial < 10; trial++) {
        int64_t a1 = 1 + (int64_t)(urand(&r) * 4), a2 = 1 + (int64_t)(urand(&r) * 4);
        int64_t b1 = 1 + (int64_t)(urand(&r) * 5), b2 = 1 + (int64_t)(urand(&r) * 5);
        int64_t B0 = 1 + (int64_t)(urand(&r) * 3), S = 1 + (int64_t)(urand(&r) * 5), N = B0 * S;
        pc_graph *g = pc_graph_new("kron");
        pc_val x = pc_input(g, "x", PC_F32, PC_SHAPE(B0, S, a2 * b2));
        pc_val a = pc_input(g, "a", PC_F32, PC_SHAPE(a1, a2)), b = pc_input(g, "b", PC_F32, PC_SHAPE(b1, b2));
        pc_val y = pc_kron_linear_at(g, PC_HERE, x, a, b);
        pc_val yk = pc_matmul(g, x, pc_kron(g, a, b), 0, 1);
        pc_mark_output(g, y);
        pc_mark_output(g, yk);
        CU_ASSERT_PTR_NULL_FATAL(pc_graph_error(g));
        CU_ASSERT(pc_shape_eq(pc_val_shape(g, y), PC_SHAPE(B0, S, a1 * b1)));
        float *xd = rand_fill(&r, N * a2 * b2), *ad = rand_fill(&r, a1 * a2), *bd = rand_fill(&r, b1 * b2);
        double *want = malloc((size_t)(N * a1 * b1) * sizeof *want);
        kron_by_hand(xd, ad, bd, N, a1, a2, b1, b2, want);
        for (int kind = 0; kind < 2; kind++) {
            char err[1024] = "";
            pc_exec *e = pc_exec_new(g, &(pc_exec_opts){.kind = kind ? PC_BACKEND_JIT : PC_BACKEND_REF}, err, sizeof err);
            if (!e) printf("\n    exec: %s", err);
            CU_ASSERT_FATAL(e != NULL);
            pc_exec_bind(e, x, xd), pc_exec_bind(e, a, ad), pc_exec_bind(e, b, bd);
            CU_ASSERT_EQUAL_FATAL(pc_exec_run(e, err, sizeof err), 0);
            worst[kind] = fmax(worst[kind], max_diff(pc_exec_data(e, y), want, N * a1 * b1));
            worst[2] = fmax(worst[2], max_diff(pc_exec_data(e, yk), want, N * a1 * b1));
            pc_exec_free(e);
        }
        free(xd), free(ad), free(bd), free(want);
        pc_graph_free(g);
    }
    printf("\n    x (A⊗B)ᵀ factored vs double loop: ref %.2e, jit %.2e; matmul(x, kron(A,B), tb) %.2e\n", worst[0],
           worst[1], worst[2]);
    CU_ASSERT(worst[0] <= 1e-5 && worst[1] <= 1e-5 && worst[2] <= 1e-5);
}

/* ---- the method on one synthetic FFN site ---- */
static const pc_model_info info = {.model_type = "llama", .dim = 6, .vocab = 16, .context = 16, .n_layers = 1,
                                   .n_heads = 1, .n_kv_heads = 1};

static pc_adapt_ctx *ctx_of(const char *json, pc_adapter_config **cfg, char *err, size_t n) {
    static const char *const custom[] = {"KRONAB"};
    *cfg = NULL;
    if (!(*cfg = pc_adapter_config_parse_ex(json, strlen(json), "a.json", custom, 1, err, n))) return NULL;
    return pc_adapt_new(&pc_method_kronab, *cfg, "a.json", PC_ADAPT_TRAIN, true, &info, err, n);
}

/* emits an FFN site (input x, output v) of `module`; the rewritten value or PC_NONE */
static pc_val ffn_site(pc_adapt_ctx *cx, pc_graph *g, const char *module, pc_val x, pc_val v, char *err, size_t n) {
    pc_site s = {.kind = PC_SITE_FFN, .module = module, .layer = -1, .g = g, .loc = PC_HERE, .value = v,
                 .value2 = PC_NONE, .x = x, .weight = PC_NONE, .bias = PC_NONE, .ids = PC_NONE};
    return pc_adapt_site(cx, &s, err, n) ? PC_NONE : s.value;
}

typedef struct {
    pc_graph *g;
    pc_val x, v, y, loss, p[3], grad[3];
    int np;
    int64_t np_n[3];
    float *xd, *vd, *pd[3];
} site_case;

/* x [2, 3, din], v [2, 3, dout] constants; y the rewritten site; loss = Σ y ⊙ R; autograd */
static int site_build(site_case *c, const char *json, int64_t din, int64_t dout, rng *r, bool grads) {
    char err[1024] = "";
    pc_adapter_config *cfg = NULL;
    memset(c, 0, sizeof *c);
    pc_adapt_ctx *cx = ctx_of(json, &cfg, err, sizeof err);
    if (!cx) { printf("\n    %s", err); pc_adapter_config_free(cfg); return -1; }
    pc_graph *g = c->g = pc_graph_new("ffn");
    c->xd = rand_fill(r, 6 * din), c->vd = rand_fill(r, 6 * dout);
    c->x = pc_const(g, PC_F32, PC_SHAPE(2, 3, din), c->xd);
    c->v = pc_const(g, PC_F32, PC_SHAPE(2, 3, dout), c->vd);
    c->y = ffn_site(cx, g, MOD, c->x, c->v, err, sizeof err);
    int rc = c->y == PC_NONE || pc_adapt_finish(cx, g, err, sizeof err) ? -1 : 0;
    pc_adapt_free(cx);
    pc_adapter_config_free(cfg);
    if (rc) { printf("\n    %s", err); return -1; }
    float *rd = rand_fill(r, 6 * dout);
    c->loss = pc_sum(g, pc_mul(g, c->y, pc_const(g, PC_F32, PC_SHAPE(2, 3, dout), rd)), 0, NULL, 0);
    free(rd);
    pc_mark_output(g, c->y);
    pc_mark_loss(g, c->loss);
    static const char *const keys[3] = {KEY("kronab_A"), KEY("kronab_B"), KEY("kronab_res_scale")};
    for (int k = 0; k < 3; k++) {
        pc_val p = pc_lookup_key(g, keys[k]);
        if (p == PC_NONE) continue;
        c->p[c->np] = p;
        c->np_n[c->np] = pc_shape_numel(pc_val_shape(g, p));
        c->pd[c->np] = rand_fill(r, c->np_n[c->np]);
        c->np++;
    }
    if (pc_graph_error(g)) return printf("\n    %s", pc_graph_error(g)), -1;
    if (!grads) return 0;
    if (pc_pass_autograd(g, err, sizeof err)) return printf("\n    autograd: %s", err), -1;
    for (int k = 0; k < c->np; k++) {
        char name[300];
        snprintf(name, sizeof name, "grad.%s", pc_val_name(g, c->p[k]));
        if ((c->grad[k] = pc_lookup(g, name)) == PC_NONE) return printf("\n    no %s", name), -1;
        pc_mark_output(g, c->grad[k]);
    }
    return 0;
}

static void site_free(site_case *c) {
    for (int k = 0; k < c->np; k++) free(c->pd[k]);
    free(c->xd), free(c->vd);
    pc_graph_free(c->g);
}

static pc_exec *site_exec(site_case *c, pc_backend_kind kind, bool bind_params) {
    char err[1024] = "";
    pc_exec *e = pc_exec_new(c->g, &(pc_exec_opts){.kind = kind}, err, sizeof err);
    if (!e) { printf("\n    exec: %s", err); return NULL; }
    for (int k = 0; k < c->np && bind_params; k++) pc_exec_bind(e, c->p[k], c->pd[k]);
    if (pc_exec_run(e, err, sizeof err)) { printf("\n    run: %s", err); pc_exec_free(e); return NULL; }
    return e;
}

/* ---- 3. gradients against finite differences (ref), and JIT = ref ---- */
static void grads_case(const char *what, const char *json, int64_t din, int64_t dout, uint64_t seed) {
    rng r = {seed};
    site_case c;
    char err[1024] = "";
    CU_ASSERT_EQUAL_FATAL(site_build(&c, json, din, dout, &r, true), 0);
    pc_ref *ref = pc_ref_new(c.g, err, sizeof err);
    CU_ASSERT_FATAL(ref != NULL);
    for (int k = 0; k < c.np; k++) pc_ref_bind(ref, c.p[k], c.pd[k]);
    int bad = 0;
    fd_run_loss(ref, c.loss, &bad);
    float *ana[3] = {0};
    for (int k = 0; k < c.np; k++) {
        ana[k] = malloc((size_t)c.np_n[k] * sizeof(float));
        memcpy(ana[k], pc_ref_data(ref, c.grad[k]), (size_t)c.np_n[k] * sizeof(float));
    }
    double worst = 0, jworst = 0;
    for (int k = 0; k < c.np && !bad; k++)
        for (int64_t i = 0; i < c.np_n[k]; i++) {
            double fd = fd_richardson(ref, c.loss, &c.pd[k][i], 2e-2, &bad);
            worst = fmax(worst, fabs(ana[k][i] - fd) / fmax(1.0, fabs(fd)));
        }
    pc_exec *j = site_exec(&c, PC_BACKEND_JIT, true);
    CU_ASSERT_FATAL(j != NULL);
    for (int k = 0; k < c.np; k++) {
        const float *jg = pc_exec_data(j, c.grad[k]);
        for (int64_t i = 0; i < c.np_n[k]; i++) jworst = fmax(jworst, fabs(jg[i] - ana[k][i]) / fmax(1.0, fabs(ana[k][i])));
    }
    printf("\n    %s: %d params, autograd vs finite difference %.2e, jit vs ref %.2e", what, c.np, worst, jworst);
    CU_ASSERT(!bad && worst <= 2e-4 && jworst <= 1e-5);
    for (int k = 0; k < c.np; k++) free(ana[k]);
    pc_exec_free(j);
    pc_ref_free(ref);
    site_free(&c);
}

static void test_grads(void) {
    grads_case("KronA^B_res, 6 -> 6", "{\"peft_type\":\"KRONAB\",\"target_modules\":[\"mlp\"],\"scale\":0.7,"
               "\"residual\":true,\"res_scale_init\":0.5}", 6, 6, 7);
    grads_case("KronA^B, 6 -> 12", "{\"peft_type\":\"KRONAB\",\"scale\":1.5}", 6, 12, 11);
    printf("\n");
}

/* ---- 4. KronA^B_res on one site against a hand computation; inits; the no-op start ---- */
static void test_res_formula(void) {
    rng r = {99};
    site_case c;
    const double s = 0.7;
    CU_ASSERT_EQUAL_FATAL(site_build(&c, "{\"peft_type\":\"KRONAB\",\"target_modules\":[\"mlp\"],\"scale\":0.7,"
                                         "\"residual\":true,\"res_scale_init\":0.5}", 6, 6, &r, false), 0);
    CU_ASSERT_EQUAL_FATAL(c.np, 3);
    /* shapes by factorization(6) = (2, 3): A [2, 2], B [3, 3]; the declared inits */
    const pc_value *A = pc_v(c.g, c.p[0]), *B = pc_v(c.g, c.p[1]), *R = pc_v(c.g, c.p[2]);
    CU_ASSERT(pc_shape_eq(A->shape, PC_SHAPE(2, 2)) && pc_shape_eq(B->shape, PC_SHAPE(3, 3)) &&
              pc_shape_eq(R->shape, PC_SHAPE(1)));
    CU_ASSERT(A->init.kind == PC_INIT_ZEROS && B->init.kind == PC_INIT_KAIMING_UNIFORM && fabs(B->init.a - sqrt(5.0)) < 1e-12);
    CU_ASSERT(R->init.kind == PC_INIT_UNIFORM && R->init.a == 0.5 && R->init.b == 0.5);
    CU_ASSERT(A->flags & PC_TRAINABLE && B->flags & PC_TRAINABLE && R->flags & PC_TRAINABLE);
    /* y = v + s · x (A ⊗ B)ᵀ + s_res · x, by hand */
    double want[36], kx[36];
    kron_by_hand(c.xd, c.pd[0], c.pd[1], 6, 2, 2, 3, 3, kx);
    for (int i = 0; i < 36; i++) want[i] = c.vd[i] + s * kx[i] + (double)c.pd[2][0] * c.xd[i];
    for (int kind = 0; kind < 2; kind++) {
        pc_exec *e = site_exec(&c, kind ? PC_BACKEND_JIT : PC_BACKEND_REF, true);
        CU_ASSERT_FATAL(e != NULL);
        double d = max_diff(pc_exec_data(e, c.y), want, 36);
        printf("\n    %s: y vs v + s x(A⊗B)ᵀ + s_res x by hand: max |diff| %.2e", kind ? "jit" : "ref", d);
        CU_ASSERT(d <= 1e-5);
        pc_exec_free(e);
    }
    /* from the declared inits (A = 0, s_res = 0.5): y = v + 0.5 x exactly */
    pc_exec *e = site_exec(&c, PC_BACKEND_REF, false);
    CU_ASSERT_FATAL(e != NULL);
    for (int i = 0; i < 36; i++) want[i] = c.vd[i] + 0.5 * (double)c.xd[i];
    CU_ASSERT(max_diff(pc_exec_data(e, c.y), want, 36) <= 1e-6);
    pc_exec_free(e);
    site_free(&c);
    /* defaults: res_scale_init 0, so both variants start as the base FFN exactly */
    static const char *const noop[] = {"{\"peft_type\":\"KRONAB\",\"residual\":true}", "{\"peft_type\":\"KRONAB\"}"};
    for (int k = 0; k < 2; k++) {
        CU_ASSERT_EQUAL_FATAL(site_build(&c, noop[k], 6, 6, &r, false), 0);
        CU_ASSERT_EQUAL(c.np, k ? 2 : 3);
        e = site_exec(&c, PC_BACKEND_REF, false);
        CU_ASSERT_FATAL(e != NULL);
        CU_ASSERT(memcmp(pc_exec_data(e, c.y), c.vd, 36 * sizeof(float)) == 0);
        pc_exec_free(e);
        site_free(&c);
    }
    printf("\n");
}

/* ---- 5. refusals: the file and the field; no FFN site; nothing targeted ---- */
#define KJ(extra) "{\"peft_type\":\"KRONAB\"" extra "}"
static void test_refusals(void) {
    static const struct { const char *json, *want; } bad[] = {
        {KJ(",\"decompose_factor\":0"), "a.json: field \"decompose_factor\": must be -1"},
        {KJ(",\"decompose_factor\":2.5"), "a.json: field \"decompose_factor\""},
        {KJ(",\"decompose_factor\":-2"), "a.json: field \"decompose_factor\""},
        {KJ(",\"decompose_factor\":\"4\""), "a.json: field \"decompose_factor\""},
        {KJ(",\"scale\":\"big\""), "a.json: field \"scale\": must be a finite number"},
        {KJ(",\"residual\":1"), "a.json: field \"residual\": must be true"},
        {KJ(",\"res_scale_init\":1"), "a.json: field \"res_scale_init\": only with \"residual\": true"},
        {KJ(",\"residual\":true,\"res_scale_init\":\"one\""), "a.json: field \"res_scale_init\": must be"},
        {KJ(",\"r\":8"), "a.json: field \"r\": not a KRONAB field"},
        {KJ(",\"lora_alpha\":16"), "a.json: field \"lora_alpha\": not a KRONAB field"},
        {KJ(",\"residul\":true"), "a.json: field \"residul\": not a KRONAB field"},
        {KJ(",\"layers_to_transform\":[0]"), "a.json: field \"layers_to_transform\": needs target_modules"},
    };
    char err[1024];
    pc_adapter_config *cfg = NULL;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = 0;
        pc_adapt_ctx *cx = ctx_of(bad[i].json, &cfg, err, sizeof err);
        printf("\n    -> %s", err);
        CU_ASSERT(cx == NULL && strstr(err, bad[i].want) != NULL);
        pc_adapt_free(cx);
        pc_adapter_config_free(cfg);
    }
    /* a graph whose builder emitted no FFN site (only a linear one) */
    pc_adapt_ctx *cx = ctx_of(KJ(""), &cfg, err, sizeof err);
    CU_ASSERT_FATAL(cx != NULL);
    pc_graph *g = pc_graph_new("noffn");
    pc_val x = pc_input(g, "x", PC_F32, PC_SHAPE(2, 6));
    pc_site lin = {.kind = PC_SITE_LINEAR, .module = "model.layers.0.mlp.down_proj", .layer = 0, .g = g, .loc = PC_HERE,
                   .value = x, .value2 = PC_NONE, .x = x, .weight = PC_NONE, .bias = PC_NONE, .ids = PC_NONE};
    CU_ASSERT_EQUAL(pc_adapt_site(cx, &lin, err, sizeof err), 0);
    CU_ASSERT_EQUAL(pc_adapt_finish(cx, g, err, sizeof err), -1);
    printf("\n    -> %s", err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "a.json: KronAB needs an FFN hook point"));
    pc_adapt_free(cx);
    pc_adapter_config_free(cfg);
    /* targets that name no FFN module; the res variant on an FFN that changes width */
    cx = ctx_of(KJ(",\"target_modules\":[\"q_proj\"]"), &cfg, err, sizeof err);
    CU_ASSERT_FATAL(cx != NULL);
    CU_ASSERT(ffn_site(cx, g, MOD, x, x, err, sizeof err) == x);
    CU_ASSERT_EQUAL(pc_adapt_finish(cx, g, err, sizeof err), -1);
    printf("\n    -> %s", err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "a.json: field \"target_modules\": matched none of the model's 1 FFN modules"));
    pc_adapt_free(cx);
    pc_adapter_config_free(cfg);
    cx = ctx_of(KJ(",\"residual\":true"), &cfg, err, sizeof err);
    CU_ASSERT_FATAL(cx != NULL);
    err[0] = 0;
    CU_ASSERT(ffn_site(cx, g, MOD, x, pc_input(g, "v", PC_F32, PC_SHAPE(2, 12)), err, sizeof err) == PC_NONE);
    printf("\n    -> %s", err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "needs the FFN's input and output widths equal (6 vs 12)"));
    pc_adapt_free(cx);
    pc_adapter_config_free(cfg);
    pc_graph_free(g);
    /* layers_to_transform with target_modules: only layer 1's FFN */
    cx = ctx_of(KJ(",\"target_modules\":[\"mlp\"],\"layers_to_transform\":[1]"), &cfg, err, sizeof err);
    CU_ASSERT_FATAL(cx != NULL);
    g = pc_graph_new("layers");
    x = pc_input(g, "x", PC_F32, PC_SHAPE(2, 6));
    CU_ASSERT(ffn_site(cx, g, "model.layers.0.mlp", x, x, err, sizeof err) == x);
    CU_ASSERT(ffn_site(cx, g, "model.layers.1.mlp", x, x, err, sizeof err) != x);
    CU_ASSERT_EQUAL(pc_adapt_nrewritten(cx), 1);
    CU_ASSERT(pc_lookup_key(g, "base_model.model.model.layers.1.mlp.kronab_A") != PC_NONE);
    CU_ASSERT_EQUAL(pc_adapt_finish(cx, g, err, sizeof err), 0);
    pc_adapt_free(cx);
    pc_adapter_config_free(cfg);
    pc_graph_free(g);
    CU_ASSERT_PTR_NOT_NULL(pc_method_kronab.not_mergeable);
    CU_ASSERT_PTR_NULL(pc_method_kronab.merge_linear);
    printf("\n");
}

static CU_TestInfo tests[] = {
    {"factorization", test_factorization},
    {"kron_product", test_kron_product},
    {"grads", test_grads},
    {"res_formula", test_res_formula},
    {"refusals", test_refusals},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("kronab", tests)
