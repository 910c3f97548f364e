/* Elementwise ops, reductions, softmax and norms of ir/ops.def through the reference interpreter,
 * against naive double-precision references (tests/unit/ops_check.h). The last test checks that
 * every op this file is responsible for (OPS_ELEMENTWISE_COVERED) ran. */
#include "ops_check.h"

/* ---------------------------------------------------------------- elementwise binary */

static double bin_ref(const char *op, double x, double y) {
    if (!strcmp(op, "add")) return x + y;
    if (!strcmp(op, "sub")) return x - y;
    if (!strcmp(op, "mul")) return x * y;
    if (!strcmp(op, "div")) return x / y;
    if (!strcmp(op, "maximum")) return x > y ? x : y;
    if (!strcmp(op, "minimum")) return x < y ? x : y;
    if (!strcmp(op, "eq")) return x == y;
    if (!strcmp(op, "lt")) return x < y;
    if (!strcmp(op, "gt")) return x > y;
    return NAN;
}

static const pc_shape *shape_pairs(int *n) {
    static pc_shape p[14];
    int k = 0;
    p[k++] = PC_SHAPE(2, 3, 4); p[k++] = PC_SHAPE(3, 1);       /* [2,3,4] + [3,1] */
    p[k++] = PC_SHAPE(3, 1);    p[k++] = PC_SHAPE(2, 3, 4);    /* reversed */
    p[k++] = PC_SHAPE(2, 3, 4); p[k++] = PC_SHAPE(2, 3, 4);    /* same shape */
    p[k++] = PC_SHAPE(4);       p[k++] = PC_SCALAR;            /* with a scalar */
    p[k++] = PC_SHAPE(2, 1, 4); p[k++] = PC_SHAPE(1, 3, 1);    /* both broadcast */
    p[k++] = PC_SHAPE(0, 3);    p[k++] = PC_SHAPE(3);          /* zero-size */
    p[k++] = PC_SCALAR;         p[k++] = PC_SCALAR;
    *n = k / 2;
    return p;
}

static void t_binary_f32(void) {
    const char *ops[] = {"add", "sub", "mul", "div", "maximum", "minimum"};
    int npairs;
    const pc_shape *sp = shape_pairs(&npairs);
    rseed(1);
    for (size_t o = 0; o < sizeof ops / sizeof *ops; o++)
        for (int p = 0; p < npairs; p++) {
            H *h = hnew();
            pc_shape as = sp[2 * p], bs = sp[2 * p + 1], os = bshape(as, bs);
            float *a, *b;
            pc_val va = fin(h, "a", as, -2, 2, &a);
            pc_val vb = strcmp(ops[o], "div") ? fin(h, "b", bs, -2, 2, &b) : fin(h, "b", bs, 0.5, 2, &b);
            pc_val y = mo(h, pc_op(h->g, ops[o], 2, (pc_val[]){va, vb}, 0, NULL));
            RUN_OK(h);
            CU_ASSERT(shape_is(h, y, os));
            int64_t n = numel(os), idx[PC_MAX_RANK];
            double *want = talloc((size_t)(n ? n : 1) * sizeof *want);
            for (int64_t i = 0; i < n; i++) {
                unravel(i, os, idx);
                want[i] = bin_ref(ops[o], a[bidx(idx, os.rank, as)], b[bidx(idx, os.rank, bs)]);
            }
            char what[64];
            snprintf(what, sizeof what, "%s pair %d", ops[o], p);
            CHECK(what, outf(h, y), want, n, 1e-6, 0);
            hfree(h);
            tclean();
        }
}

static void t_binary_i32(void) {
    const char *ops[] = {"add", "sub", "mul", "maximum", "minimum"};
    int npairs;
    const pc_shape *sp = shape_pairs(&npairs);
    rseed(2);
    for (size_t o = 0; o < sizeof ops / sizeof *ops; o++)
        for (int p = 0; p < npairs; p++) {
            H *h = hnew();
            pc_shape as = sp[2 * p], bs = sp[2 * p + 1], os = bshape(as, bs);
            int32_t *a, *b;
            pc_val va = iin(h, "a", as, -100, 100, &a), vb = iin(h, "b", bs, -100, 100, &b);
            pc_val y = mo(h, pc_op(h->g, ops[o], 2, (pc_val[]){va, vb}, 0, NULL));
            RUN_OK(h);
            CU_ASSERT_EQUAL(pc_val_dtype(h->g, y), PC_I32);
            int64_t n = numel(os), idx[PC_MAX_RANK];
            int64_t *want = talloc((size_t)(n ? n : 1) * sizeof *want);
            for (int64_t i = 0; i < n; i++) {
                unravel(i, os, idx);
                want[i] = (int64_t)bin_ref(ops[o], a[bidx(idx, os.rank, as)], b[bidx(idx, os.rank, bs)]);
            }
            CHECK_I(ops[o], outi(h, y), want, n);
            hfree(h);
            tclean();
        }
}

static void t_compare(void) {
    const char *ops[] = {"eq", "lt", "gt"};
    pc_shape as = PC_SHAPE(2, 3, 4), bs = PC_SHAPE(4);
    rseed(3);
    for (int dt = 0; dt < 2; dt++)
        for (int o = 0; o < 3; o++) {
            H *h = hnew();
            pc_val va, vb;
            double av[24], bv[4];
            if (dt == 0) { /* small integers as floats so that ties occur */
                float *a = talloc(24 * sizeof *a), *b = talloc(4 * sizeof *b);
                for (int i = 0; i < 24; i++) av[i] = a[i] = (float)rint_in(-2, 2);
                for (int i = 0; i < 4; i++) bv[i] = b[i] = (float)rint_in(-2, 2);
                va = din(h, "a", PC_F32, as, a);
                vb = din(h, "b", PC_F32, bs, b);
            } else {
                int32_t *a, *b;
                va = iin(h, "a", as, -2, 2, &a);
                vb = iin(h, "b", bs, -2, 2, &b);
                for (int i = 0; i < 24; i++) av[i] = a[i];
                for (int i = 0; i < 4; i++) bv[i] = b[i];
            }
            pc_val y = mo(h, pc_op(h->g, ops[o], 2, (pc_val[]){va, vb}, 0, NULL));
            RUN_OK(h);
            CU_ASSERT_EQUAL(pc_val_dtype(h->g, y), PC_F32);
            double want[24];
            for (int i = 0; i < 24; i++) want[i] = bin_ref(ops[o], av[i], bv[i % 4]);
            CHECK(ops[o], outf(h, y), want, 24, 0, 0);
            hfree(h);
            tclean();
        }
}

static void t_where(void) {
    rseed(4);
    for (int cdt = 0; cdt < 2; cdt++) {
        H *h = hnew();
        pc_shape cs = PC_SHAPE(3, 1), as = PC_SHAPE(2, 3, 4), bs = PC_SHAPE(4), os = PC_SHAPE(2, 3, 4);
        double cv[3];
        pc_val vc;
        if (cdt == 0) {
            float *c = talloc(3 * sizeof *c);
            c[0] = 0.0f; c[1] = 2.5f; c[2] = -1.0f;
            for (int i = 0; i < 3; i++) cv[i] = c[i];
            vc = din(h, "c", PC_F32, cs, c);
        } else {
            int32_t *c = talloc(3 * sizeof *c);
            c[0] = 7; c[1] = 0; c[2] = -3;
            for (int i = 0; i < 3; i++) cv[i] = c[i];
            vc = din(h, "c", PC_I32, cs, c);
        }
        float *a, *b;
        pc_val va = fin(h, "a", as, -1, 1, &a), vb = fin(h, "b", bs, -1, 1, &b);
        pc_val y = mo(h, pc_where(h->g, vc, va, vb));
        RUN_OK(h);
        int64_t idx[PC_MAX_RANK];
        double want[24];
        for (int i = 0; i < 24; i++) {
            unravel(i, os, idx);
            want[i] = cv[bidx(idx, 3, cs)] != 0 ? a[bidx(idx, 3, as)] : b[bidx(idx, 3, bs)];
        }
        CHECK("where", outf(h, y), want, 24, 0, 0);
        hfree(h);
        tclean();
    }
    /* i32 branches */
    H *h = hnew();
    int32_t *a, *b;
    float *c;
    pc_val vc = fin(h, "c", PC_SHAPE(5), -1, 1, &c);
    for (int i = 0; i < 5; i++) c[i] = (float)(i % 2);
    pc_val va = iin(h, "a", PC_SHAPE(5), -9, 9, &a), vb = iin(h, "b", PC_SCALAR, -9, 9, &b);
    pc_val y = mo(h, pc_where(h->g, vc, va, vb));
    RUN_OK(h);
    int64_t want[5];
    for (int i = 0; i < 5; i++) want[i] = c[i] != 0 ? a[i] : b[0];
    CHECK_I("where i32", outi(h, y), want, 5);
    hfree(h);
    tclean();
}

/* ---------------------------------------------------------------- elementwise unary */

static double un_ref(const char *op, double x, int variant) {
    if (!strcmp(op, "neg")) return -x;
    if (!strcmp(op, "stop_gradient")) return x;
    if (!strcmp(op, "scale")) return 2.5 * x - 0.75;
    if (!strcmp(op, "exp")) return exp(x);
    if (!strcmp(op, "log")) return log(x);
    if (!strcmp(op, "sqrt")) return sqrt(x);
    if (!strcmp(op, "rsqrt")) return 1 / sqrt(x);
    if (!strcmp(op, "square")) return x * x;
    if (!strcmp(op, "abs")) return fabs(x);
    if (!strcmp(op, "tanh")) return tanh(x);
    if (!strcmp(op, "sigmoid")) return 1 / (1 + exp(-x));
    if (!strcmp(op, "relu")) return x > 0 ? x : 0;
    if (!strcmp(op, "silu")) return x / (1 + exp(-x));
    if (!strcmp(op, "gelu")) {
        if (variant == 0) return 0.5 * x * (1 + erf(x / sqrt(2.0)));
        double c = sqrt(2.0 / M_PI);
        return 0.5 * x * (1 + tanh(c * (x + 0.044715 * x * x * x)));
    }
    return NAN;
}

static void t_unary(void) {
    static const struct {
        const char *op;
        double lo, hi;
        int nattr;
        const char *attrs[2];
        int variant;
    } cases[] = {
        {"neg", -3, 3, 0, {0}, 0},      {"stop_gradient", -3, 3, 0, {0}, 0},
        {"scale", -3, 3, 2, {"alpha=2.5", "beta=-0.75"}, 0},
        {"exp", -5, 5, 0, {0}, 0},      {"log", 0.01, 10, 0, {0}, 0},
        {"sqrt", 0.001, 10, 0, {0}, 0}, {"rsqrt", 0.01, 10, 0, {0}, 0},
        {"square", -3, 3, 0, {0}, 0},   {"abs", -3, 3, 0, {0}, 0},
        {"tanh", -4, 4, 0, {0}, 0},     {"sigmoid", -8, 8, 0, {0}, 0},
        {"relu", -3, 3, 0, {0}, 0},     {"gelu", -5, 5, 0, {0}, 0},
        {"gelu", -5, 5, 1, {"approximate=1"}, 1}, {"silu", -8, 8, 0, {0}, 0},
    };
    rseed(5);
    pc_shape s = PC_SHAPE(3, 5, 7);
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        H *h = hnew();
        float *x;
        pc_val vx = fin(h, "x", s, cases[c].lo, cases[c].hi, &x);
        pc_val y = mo(h, pc_op(h->g, cases[c].op, 1, &vx, cases[c].nattr, cases[c].attrs));
        RUN_OK(h);
        double want[105];
        for (int i = 0; i < 105; i++) want[i] = un_ref(cases[c].op, x[i], cases[c].variant);
        CHECK(cases[c].op, outf(h, y), want, 105, 1e-6, 1e-7);
        hfree(h);
        tclean();
    }
    /* the tanh and erf forms of gelu really differ */
    CU_ASSERT(fabs(un_ref("gelu", 1.5, 0) - un_ref("gelu", 1.5, 1)) > 1e-5);
    /* i32 neg and scale (truncating) */
    H *h = hnew();
    int32_t *x;
    pc_val vx = iin(h, "x", PC_SHAPE(20), -50, 50, &x);
    pc_val n = mo(h, pc_neg(h->g, vx));
    pc_val sc = mo(h, pc_scale(h->g, vx, 0.5, 0.25));
    pc_val sg = mo(h, pc_stop_gradient(h->g, vx));
    RUN_OK(h);
    int64_t wn[20], ws[20], wx[20];
    for (int i = 0; i < 20; i++) {
        wn[i] = -x[i];
        ws[i] = (int64_t)trunc(0.5 * x[i] + 0.25);
        wx[i] = x[i];
    }
    CHECK_I("neg i32", outi(h, n), wn, 20);
    CHECK_I("scale i32", outi(h, sc), ws, 20);
    CHECK_I("stop_gradient i32", outi(h, sg), wx, 20);
    hfree(h);
    tclean();
}

static void t_cast(void) {
    H *h = hnew();
    float *x;
    int32_t *xi;
    rseed(6);
    pc_val vx = fin(h, "x", PC_SHAPE(4, 8), -5.9, 5.9, &x);
    pc_val vi = iin(h, "xi", PC_SHAPE(6), -1000, 1000, &xi);
    x[0] = -2.7f; x[1] = 2.7f; x[2] = -0.5f; x[3] = 3.0f;
    pc_val a = mo(h, pc_cast(h->g, vx, PC_I32));
    pc_val b = mo(h, pc_cast(h->g, vi, PC_F32));
    pc_val c = mo(h, pc_cast(h->g, vx, PC_F32));
    RUN_OK(h);
    int64_t wa[32];
    double wb[6], wc[32];
    for (int i = 0; i < 32; i++) {
        wa[i] = (int64_t)trunc(x[i]);
        wc[i] = x[i];
    }
    for (int i = 0; i < 6; i++) wb[i] = xi[i];
    CHECK_I("cast f32->i32", outi(h, a), wa, 32);
    if (outi(h, a)) CU_ASSERT(outi(h, a)[0] == -2 && outi(h, a)[1] == 2 && outi(h, a)[2] == 0);
    CHECK("cast i32->f32", outf(h, b), wb, 6, 0, 0);
    CHECK("cast f32->f32", outf(h, c), wc, 32, 0, 0);
    hfree(h);
    tclean();
}

/* ---------------------------------------------------------------- dropout */

static int run_dropout(const float *x, int64_t n, int32_t seed, double p, int64_t salt, float *out) {
    H *h = hnew();
    int32_t *sd = talloc(sizeof *sd);
    *sd = seed;
    pc_val vx = din(h, "x", PC_F32, PC_SHAPE(n), (void *)x);
    pc_val vs = din(h, "seed", PC_I32, PC_SCALAR, sd);
    pc_val y = mo(h, pc_dropout(h->g, vx, vs, p, salt));
    int rc = hrun(h);
    if (rc) printf("\n  dropout: %s\n", h->err);
    if (!rc) memcpy(out, outf(h, y), (size_t)n * sizeof *out);
    hfree(h);
    return rc;
}

static void t_dropout(void) {
    enum { N = 10000 };
    rseed(7);
    float *x = randf(N, 0.5, 1.5); /* never zero, so zeros mean dropped */
    float *a = talloc(N * sizeof *a), *b = talloc(N * sizeof *b), *c = talloc(N * sizeof *c);
    float *d = talloc(N * sizeof *d), *e = talloc(N * sizeof *e);
    double p = 0.3;
    CU_ASSERT_EQUAL(run_dropout(x, N, 42, p, 5, a), 0);
    CU_ASSERT_EQUAL(run_dropout(x, N, 42, p, 5, b), 0);
    CU_ASSERT_EQUAL(run_dropout(x, N, 43, p, 5, c), 0);
    CU_ASSERT_EQUAL(run_dropout(x, N, 42, p, 6, d), 0);
    CU_ASSERT_EQUAL(run_dropout(x, N, 42, 0.0, 5, e), 0);
    CU_ASSERT(memcmp(a, b, N * sizeof *a) == 0); /* same seed, same mask */
    int kept = 0, diff_seed = 0, diff_salt = 0, bad = 0;
    float scale = (float)(1.0 / (1.0 - p));
    for (int i = 0; i < N; i++) {
        bool keep = pc_hash_uniform(42, 5, (uint64_t)i) >= p; /* the mask is specified by rng.h */
        float want = keep ? x[i] * scale : 0.0f;
        if (a[i] != want) bad++;
        kept += a[i] != 0;
        diff_seed += (a[i] != 0) != (c[i] != 0);
        diff_salt += (a[i] != 0) != (d[i] != 0);
        if (e[i] != x[i]) bad++;
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(fabs((double)kept / N - (1 - p)) < 0.03);
    CU_ASSERT(diff_seed > N / 10);
    CU_ASSERT(diff_salt > N / 10);
    /* a negative seed is fine, and deterministic */
    CU_ASSERT_EQUAL(run_dropout(x, N, -5, 0.5, 0, a), 0);
    CU_ASSERT_EQUAL(run_dropout(x, N, -5, 0.5, 0, b), 0);
    CU_ASSERT(memcmp(a, b, N * sizeof *a) == 0);
    tclean();
}

/* ---------------------------------------------------------------- reductions */

static void t_reduce(void) {
    static const struct { int n; int64_t axes[3]; } cases[] = {
        {0, {0}}, {1, {1}}, {1, {-1}}, {2, {0, 2}}, {2, {-3, -1}}, {3, {0, 1, 3}}, {1, {0}},
    };
    const char *ops[] = {"sum", "mean", "max"};
    pc_shape xs = PC_SHAPE(2, 3, 4, 5);
    rseed(8);
    for (int o = 0; o < 3; o++)
        for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
            for (int keep = 0; keep < 2; keep++) {
                H *h = hnew();
                float *x;
                pc_val vx = fin(h, "x", xs, -2, 2, &x);
                pc_val y = o == 0   ? pc_sum(h->g, vx, cases[c].n, cases[c].axes, keep)
                           : o == 1 ? pc_mean(h->g, vx, cases[c].n, cases[c].axes, keep)
                                    : pc_max(h->g, vx, cases[c].n, cases[c].axes, keep);
                mo(h, y);
                RUN_OK(h);
                unsigned mask = 0;
                for (int i = 0; i < cases[c].n; i++) mask |= 1u << ((cases[c].axes[i] + 4) % 4);
                if (cases[c].n == 0) mask = 15;
                pc_shape want_s = {0};
                for (int d = 0; d < 4; d++) {
                    if (!(mask & (1u << d))) want_s.dim[want_s.rank++] = xs.dim[d];
                    else if (keep) want_s.dim[want_s.rank++] = 1;
                }
                CU_ASSERT(shape_is(h, y, want_s));
                double xd[120], want[120];
                for (int i = 0; i < 120; i++) xd[i] = x[i];
                reduce_ref(o, xd, xs, mask, want);
                char what[64];
                snprintf(what, sizeof what, "%s case %zu keep %d", ops[o], c, keep);
                CHECK(what, outf(h, y), want, numel(want_s), 1e-5, 1e-6);
                hfree(h);
                tclean();
            }
    /* i32 sum */
    H *h = hnew();
    int32_t *x;
    pc_val vx = iin(h, "x", PC_SHAPE(3, 4), -1000, 1000, &x);
    pc_val y = mo(h, pc_sum(h->g, vx, 1, (int64_t[]){0}, 0));
    RUN_OK(h);
    int64_t want[4] = {0};
    for (int i = 0; i < 12; i++) want[i % 4] += x[i];
    CHECK_I("sum i32", outi(h, y), want, 4);
    hfree(h);
    tclean();
}

static void t_softmax(void) {
    pc_shape xs = PC_SHAPE(3, 4, 5);
    rseed(9);
    for (int lg = 0; lg < 2; lg++)
        for (int64_t axis = -1; axis <= 1; axis++) {
            H *h = hnew();
            float *x;
            pc_val vx = fin(h, "x", xs, -4, 4, &x);
            pc_val y = mo(h, lg ? pc_log_softmax(h->g, vx, axis) : pc_softmax(h->g, vx, axis));
            RUN_OK(h);
            int ax = (int)(axis < 0 ? axis + 3 : axis);
            double want[60];
            int64_t idx[PC_MAX_RANK];
            for (int i = 0; i < 60; i++) {
                unravel(i, xs, idx);
                double m = -INFINITY, s = 0;
                int64_t j[PC_MAX_RANK];
                memcpy(j, idx, sizeof j);
                for (j[ax] = 0; j[ax] < xs.dim[ax]; j[ax]++) m = fmax(m, x[ravel(j, xs)]);
                for (j[ax] = 0; j[ax] < xs.dim[ax]; j[ax]++) s += exp(x[ravel(j, xs)] - m);
                want[i] = lg ? x[i] - m - log(s) : exp(x[i] - m) / s;
            }
            char what[64];
            snprintf(what, sizeof what, "%s axis %lld", lg ? "log_softmax" : "softmax", (long long)axis);
            CHECK(what, outf(h, y), want, 60, 1e-5, 1e-7);
            hfree(h);
            tclean();
        }
}

static void t_norms(void) {
    rseed(10);
    H *h = hnew();
    float *x, *w, *x2, *w2, *b2;
    pc_shape xs = PC_SHAPE(4, 6, 16), x2s = PC_SHAPE(5, 16);
    pc_val vx = fin(h, "x", xs, -2, 2, &x), vw = fin(h, "w", PC_SHAPE(16), 0.5, 1.5, &w);
    pc_val vx2 = fin(h, "x2", x2s, -1, 3, &x2), vw2 = fin(h, "w2", PC_SHAPE(16), 0.5, 1.5, &w2);
    pc_val vb2 = fin(h, "b2", PC_SHAPE(16), -1, 1, &b2);
    pc_val r = mo(h, pc_rmsnorm(h->g, vx, vw, 1e-5));
    pc_val l = mo(h, pc_layernorm(h->g, vx2, vw2, vb2, 1e-3));
    RUN_OK(h);
    double wr[384], wl[80];
    for (int row = 0; row < 24; row++) {
        double ss = 0;
        for (int j = 0; j < 16; j++) ss += (double)x[row * 16 + j] * x[row * 16 + j];
        double inv = 1 / sqrt(ss / 16 + 1e-5);
        for (int j = 0; j < 16; j++) wr[row * 16 + j] = x[row * 16 + j] * inv * w[j];
    }
    for (int row = 0; row < 5; row++) {
        double mu = 0, var = 0;
        for (int j = 0; j < 16; j++) mu += x2[row * 16 + j];
        mu /= 16;
        for (int j = 0; j < 16; j++) var += (x2[row * 16 + j] - mu) * (x2[row * 16 + j] - mu);
        var /= 16; /* biased */
        for (int j = 0; j < 16; j++) wl[row * 16 + j] = (x2[row * 16 + j] - mu) / sqrt(var + 1e-3) * w2[j] + b2[j];
    }
    CHECK("rmsnorm", outf(h, r), wr, 384, 1e-5, 1e-6);
    CHECK("layernorm", outf(h, l), wl, 80, 1e-5, 1e-6);
    hfree(h);
    tclean();
}

/* ---------------------------------------------------------------- registry coverage */

static void t_coverage(void) {
    int missing = 0;
    for (int i = 0; i < OPS_ELEMENTWISE_NCOVERED; i++) {
        int op = pc_op_find(OPS_ELEMENTWISE_COVERED[i]);
        if (op < 0 || !g_covered[op]) {
            printf("\n  op '%s' has no test in test_ops_elementwise.c", OPS_ELEMENTWISE_COVERED[i]);
            missing++;
        }
    }
    CU_ASSERT_EQUAL(missing, 0);
}

static CU_TestInfo tests[] = {
    {"binary f32 (broadcasting)", t_binary_f32},
    {"binary i32", t_binary_i32},
    {"eq/lt/gt", t_compare},
    {"where", t_where},
    {"unary", t_unary},
    {"cast", t_cast},
    {"dropout", t_dropout},
    {"sum/mean/max", t_reduce},
    {"softmax/log_softmax", t_softmax},
    {"rmsnorm/layernorm", t_norms},
    {"every op covered", t_coverage},
    CU_TEST_INFO_NULL,
};

PC_TEST_MAIN("ops_elementwise", tests)
