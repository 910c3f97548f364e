/* Every op of ir/ops.def through the reference interpreter, against naive double-precision
 * references written here with explicit index loops (independent of backend/ref*.c).
 * The last test checks that every non-leaf op of the registry ran in some test. */
#include "backend/ref.h"
#include "cu_main.h"
#include "ir.h"
#include "runtime/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__SANITIZE_ADDRESS__)
#define PC_SANITIZED 1
#else
#define PC_SANITIZED 0
#endif

/* ---------------------------------------------------------------- test plumbing */

static bool g_covered[PC_OP_COUNT];

/* allocations freed at the end of each test */
static void *g_allocs[4096];
static int g_nallocs;
static void *talloc(size_t n) {
    void *p = calloc(n ? n : 1, 1);
    if (!p) abort();
    if (g_nallocs == (int)(sizeof g_allocs / sizeof *g_allocs)) abort();
    g_allocs[g_nallocs++] = p;
    return p;
}
static void tclean(void) {
    for (int i = 0; i < g_nallocs; i++) free(g_allocs[i]);
    g_nallocs = 0;
}

static uint64_t g_rng = 0x1234567887654321ull;
static void rseed(uint64_t s) { g_rng = s * 0x9e3779b97f4a7c15ull + 1; }
static double rnd(void) { /* xorshift64*, [0, 1) */
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return (double)((g_rng * 0x2545F4914F6CDD1Dull) >> 11) * 0x1.0p-53;
}
static double runi(double lo, double hi) { return lo + (hi - lo) * rnd(); }
static int rint_in(int lo, int hi) { return lo + (int)(rnd() * (hi - lo + 1)); } /* inclusive */

#define MAXBIND 64
typedef struct {
    pc_graph *g;
    pc_ref *r;
    int nb;
    pc_val bv[MAXBIND];
    void *bp[MAXBIND];
    char err[2048];
} H;

static H *hnew(void) {
    H *h = calloc(1, sizeof *h);
    h->g = pc_graph_new("test");
    return h;
}
static void hfree(H *h) {
    if (!h) return;
    pc_ref_free(h->r);
    pc_graph_free(h->g);
    free(h);
}
static void hbind(H *h, pc_val v, void *p) {
    if (h->nb < MAXBIND) {
        h->bv[h->nb] = v;
        h->bp[h->nb++] = p;
    }
}
static int64_t numel(pc_shape s) { return pc_shape_numel(s); }

static float *randf(int64_t n, double lo, double hi) {
    float *d = talloc((size_t)n * sizeof *d);
    for (int64_t i = 0; i < n; i++) d[i] = (float)runi(lo, hi);
    return d;
}
static int32_t *randi(int64_t n, int lo, int hi) {
    int32_t *d = talloc((size_t)n * sizeof *d);
    for (int64_t i = 0; i < n; i++) d[i] = rint_in(lo, hi);
    return d;
}
/* random f32 input, bound at run time */
static pc_val fin(H *h, const char *name, pc_shape s, double lo, double hi, float **data) {
    pc_val v = pc_input(h->g, name, PC_F32, s);
    float *d = randf(numel(s), lo, hi);
    hbind(h, v, d);
    if (data) *data = d;
    return v;
}
static pc_val iin(H *h, const char *name, pc_shape s, int lo, int hi, int32_t **data) {
    pc_val v = pc_input(h->g, name, PC_I32, s);
    int32_t *d = randi(numel(s), lo, hi);
    hbind(h, v, d);
    if (data) *data = d;
    return v;
}
/* input with given data */
static pc_val din(H *h, const char *name, pc_dtype dt, pc_shape s, void *data) {
    pc_val v = pc_input(h->g, name, dt, s);
    hbind(h, v, data);
    return v;
}
static pc_val mo(H *h, pc_val v) {
    pc_mark_output(h->g, v);
    return v;
}

/* builds the interpreter (once), binds, runs; 0 or -1 with the message in h->err */
static int hrun(H *h) {
    h->err[0] = 0;
    if (pc_graph_error(h->g)) {
        snprintf(h->err, sizeof h->err, "graph: %s", pc_graph_error(h->g));
        return -1;
    }
    if (!h->r) {
        h->r = pc_ref_new(h->g, h->err, sizeof h->err);
        if (!h->r) return -1;
        for (int i = 0; i < h->nb; i++) pc_ref_bind(h->r, h->bv[i], h->bp[i]);
    }
    int rc = pc_ref_run(h->r, h->err, sizeof h->err);
    if (rc == 0)
        for (int v = 0; v < h->g->nvals; v++) g_covered[h->g->vals[v].op] = true;
    return rc;
}
#define RUN_OK(h)                                                                                  \
    do {                                                                                           \
        int rc_ = hrun(h);                                                                         \
        if (rc_) printf("\n  run failed: %s\n", (h)->err);                                         \
        CU_ASSERT_EQUAL(rc_, 0);                                                                   \
    } while (0)

static const float *outf(H *h, pc_val v) { return h->r ? pc_ref_data(h->r, v) : NULL; }
static const int32_t *outi(H *h, pc_val v) { return h->r ? pc_ref_data(h->r, v) : NULL; }

/* |got - want| <= atol + rtol |want| (NaN matches NaN, inf matches the same inf) */
static int check(const char *what, const float *got, const double *want, int64_t n, double rtol, double atol) {
    if (!got) {
        printf("\n  %s: no data\n", what);
        return 1;
    }
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double g = got[i], w = want[i];
        if (isnan(w) && isnan(g)) continue;
        if (isinf(w) && g == w) continue;
        if (fabs(g - w) <= atol + rtol * fabs(w)) continue;
        if (bad < 5) printf("\n  %s[%lld]: got %.9g want %.9g", what, (long long)i, g, w);
        bad++;
    }
    if (bad) printf("\n  %s: %d of %lld mismatch\n", what, bad, (long long)n);
    return bad;
}
#define CHECK(...) CU_ASSERT_EQUAL(check(__VA_ARGS__), 0)

static int check_i(const char *what, const int32_t *got, const int64_t *want, int64_t n) {
    if (!got) {
        printf("\n  %s: no data\n", what);
        return 1;
    }
    int bad = 0;
    for (int64_t i = 0; i < n; i++)
        if ((int64_t)got[i] != want[i]) {
            if (bad < 5) printf("\n  %s[%lld]: got %d want %lld", what, (long long)i, got[i], (long long)want[i]);
            bad++;
        }
    return bad;
}
#define CHECK_I(...) CU_ASSERT_EQUAL(check_i(__VA_ARGS__), 0)

static bool shape_is(H *h, pc_val v, pc_shape s) { return pc_shape_eq(pc_val_shape(h->g, v), s); }

/* ---------------------------------------------------------------- reference index helpers */

/* flat index -> multi-index of shape s */
static void unravel(int64_t flat, pc_shape s, int64_t *idx) {
    for (int d = s.rank - 1; d >= 0; d--) {
        idx[d] = flat % s.dim[d];
        flat /= s.dim[d];
    }
}
/* multi-index -> flat index of shape s */
static int64_t ravel(const int64_t *idx, pc_shape s) {
    int64_t f = 0;
    for (int d = 0; d < s.rank; d++) f = f * s.dim[d] + idx[d];
    return f;
}
/* flat index into `in`, broadcast (numpy rules) to an output multi-index of rank orank */
static int64_t bidx(const int64_t *oidx, int orank, pc_shape in) {
    int64_t f = 0;
    for (int j = 0; j < in.rank; j++) {
        int i = orank - in.rank + j;
        int64_t c = in.dim[j] == 1 ? 0 : oidx[i];
        f = f * in.dim[j] + c;
    }
    return f;
}
static pc_shape bshape(pc_shape a, pc_shape b) {
    pc_shape r = {0};
    r.rank = a.rank > b.rank ? a.rank : b.rank;
    for (int i = 0; i < r.rank; i++) {
        int ia = a.rank - r.rank + i, ib = b.rank - r.rank + i;
        int64_t da = ia >= 0 ? a.dim[ia] : 1, db = ib >= 0 ? b.dim[ib] : 1;
        r.dim[i] = da == 1 ? db : da;
    }
    return r;
}

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
        {"neg", -3, 3, 0, {0}, 0},      {"scale", -3, 3, 2, {"alpha=2.5", "beta=-0.75"}, 0},
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
    RUN_OK(h);
    int64_t wn[20], ws[20];
    for (int i = 0; i < 20; i++) {
        wn[i] = -x[i];
        ws[i] = (int64_t)trunc(0.5 * x[i] + 0.25);
    }
    CHECK_I("neg i32", outi(h, n), wn, 20);
    CHECK_I("scale i32", outi(h, sc), ws, 20);
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

/* kind 0 sum, 1 mean, 2 max; out has the keepdim shape */
static void reduce_ref(int kind, const double *x, pc_shape xs, unsigned mask, double *out) {
    pc_shape ks = xs;
    int64_t count = 1;
    for (int d = 0; d < xs.rank; d++)
        if (mask & (1u << d)) {
            ks.dim[d] = 1;
            count *= xs.dim[d];
        }
    int64_t nk = numel(ks), idx[PC_MAX_RANK];
    for (int64_t i = 0; i < nk; i++) out[i] = kind == 2 ? -INFINITY : 0;
    for (int64_t i = 0; i < numel(xs); i++) {
        unravel(i, xs, idx);
        for (int d = 0; d < xs.rank; d++)
            if (mask & (1u << d)) idx[d] = 0;
        int64_t o = ravel(idx, ks);
        if (kind == 2) out[o] = x[i] > out[o] ? x[i] : out[o];
        else out[o] += x[i];
    }
    if (kind == 1)
        for (int64_t i = 0; i < nk; i++) out[i] /= (double)count;
}

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

/* ---------------------------------------------------------------- matmul, kron */

/* want and the bound sum |a||b| for the error tolerance */
static void matmul_ref(const float *a, pc_shape as, int ta, const float *b, pc_shape bs, int tb, pc_shape os,
                       double *want, double *mag) {
    int orank = os.rank, nb = orank - 2;
    int64_t m = os.dim[orank - 2], n = os.dim[orank - 1];
    int64_t ar = as.dim[as.rank - 2], ac = as.dim[as.rank - 1], br = bs.dim[bs.rank - 2], bc = bs.dim[bs.rank - 1];
    int64_t kk = ta ? ar : ac;
    pc_shape abat = as, bbat = bs;
    abat.rank -= 2;
    bbat.rank -= 2;
    int64_t idx[PC_MAX_RANK];
    for (int64_t f = 0; f < numel(os); f++) {
        unravel(f, os, idx);
        int64_t i = idx[orank - 2], j = idx[orank - 1];
        int64_t abase = bidx(idx, nb, abat) * ar * ac, bbase = bidx(idx, nb, bbat) * br * bc;
        double s = 0, t = 0;
        for (int64_t p = 0; p < kk; p++) {
            double x = ta ? a[abase + p * ac + i] : a[abase + i * ac + p];
            double y = tb ? b[bbase + j * bc + p] : b[bbase + p * bc + j];
            s += x * y;
            t += fabs(x * y);
        }
        want[f] = s;
        mag[f] = t;
    }
    (void)m;
    (void)n;
}

static int check_mm(const char *what, const float *got, const double *want, const double *mag, int64_t n) {
    if (!got) return 1;
    int bad = 0;
    for (int64_t i = 0; i < n; i++)
        if (!(fabs(got[i] - want[i]) <= 1e-6 * mag[i] + 1e-7)) {
            if (bad < 5) printf("\n  %s[%lld]: got %.9g want %.9g", what, (long long)i, got[i], want[i]);
            bad++;
        }
    return bad;
}

static void mm_case(pc_shape as, pc_shape bs, int ta, int tb, pc_shape want_s) {
    H *h = hnew();
    float *a, *b;
    pc_val va = fin(h, "a", as, -1, 1, &a), vb = fin(h, "b", bs, -1, 1, &b);
    pc_val y = mo(h, pc_matmul(h->g, va, vb, ta, tb));
    RUN_OK(h);
    CU_ASSERT(shape_is(h, y, want_s));
    int64_t n = numel(want_s);
    double *want = talloc((size_t)(n ? n : 1) * sizeof *want), *mag = talloc((size_t)(n ? n : 1) * sizeof *mag);
    matmul_ref(a, as, ta, b, bs, tb, want_s, want, mag);
    char what[64];
    snprintf(what, sizeof what, "matmul ta=%d tb=%d", ta, tb);
    CU_ASSERT_EQUAL(check_mm(what, outf(h, y), want, mag, n), 0);
    hfree(h);
    tclean();
}

static void t_matmul(void) {
    rseed(11);
    int64_t m = 5, k = 7, n = 3;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            pc_shape as = ta ? PC_SHAPE(k, m) : PC_SHAPE(m, k), bs = tb ? PC_SHAPE(n, k) : PC_SHAPE(k, n);
            mm_case(as, bs, ta, tb, PC_SHAPE(m, n));
            /* batched with broadcasting: [2,3,.,.] x [3,.,.] */
            pc_shape ab = ta ? PC_SHAPE(2, 3, k, m) : PC_SHAPE(2, 3, m, k);
            pc_shape bb = tb ? PC_SHAPE(3, n, k) : PC_SHAPE(3, k, n);
            mm_case(ab, bb, ta, tb, PC_SHAPE(2, 3, m, n));
            /* both sides broadcast: [2,1,.,.] x [1,4,.,.] */
            pc_shape a2 = ta ? PC_SHAPE(2, 1, k, m) : PC_SHAPE(2, 1, m, k);
            pc_shape b2 = tb ? PC_SHAPE(1, 4, n, k) : PC_SHAPE(1, 4, k, n);
            mm_case(a2, b2, ta, tb, PC_SHAPE(2, 4, m, n));
            /* batched a with a plain matrix b (a linear layer) */
            mm_case(ab, tb ? PC_SHAPE(n, k) : PC_SHAPE(k, n), ta, tb, PC_SHAPE(2, 3, m, n));
            /* a plain matrix a with batched b */
            mm_case(ta ? PC_SHAPE(k, m) : PC_SHAPE(m, k), bb, ta, tb, PC_SHAPE(3, m, n));
        }
    /* a larger one with a long contraction */
    mm_case(PC_SHAPE(33, 200), PC_SHAPE(17, 200), 0, 1, PC_SHAPE(33, 17));
}

static void t_kron(void) {
    rseed(12);
    H *h = hnew();
    float *a, *b;
    pc_val va = fin(h, "a", PC_SHAPE(2, 3), -2, 2, &a), vb = fin(h, "b", PC_SHAPE(4, 5), -2, 2, &b);
    pc_val y = mo(h, pc_kron(h->g, va, vb));
    RUN_OK(h);
    CU_ASSERT(shape_is(h, y, PC_SHAPE(8, 15)));
    double want[120];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int p = 0; p < 4; p++)
                for (int q = 0; q < 5; q++) want[(i * 4 + p) * 15 + j * 5 + q] = (double)a[i * 3 + j] * b[p * 5 + q];
    CHECK("kron", outf(h, y), want, 120, 1e-6, 0);
    hfree(h);
    tclean();
}

/* ---------------------------------------------------------------- layout */

static void t_reshape_transpose(void) {
    rseed(13);
    H *h = hnew();
    float *x;
    int32_t *xi;
    pc_shape xs = PC_SHAPE(2, 3, 4, 5);
    pc_val vx = fin(h, "x", xs, -1, 1, &x);
    pc_val vxi = iin(h, "xi", xs, -99, 99, &xi);
    pc_val r = mo(h, pc_op(h->g, "reshape", 1, &vx, 1, (const char *[]){"shape=[6,-1,2]"}));
    int64_t perm[4] = {2, 0, 3, 1};
    pc_val t = mo(h, pc_transpose(h->g, vx, 4, perm));
    pc_val ti = mo(h, pc_transpose(h->g, vxi, 4, perm));
    pc_val t2 = mo(h, pc_transpose(h->g, vx, 4, (int64_t[]){0, 1, 3, 2}));
    RUN_OK(h);
    CU_ASSERT(shape_is(h, r, PC_SHAPE(6, 10, 2)));
    CU_ASSERT(shape_is(h, t, PC_SHAPE(4, 2, 5, 3)));
    double wr[120], wt[120], wt2[120];
    int64_t wti[120], idx[PC_MAX_RANK], src[PC_MAX_RANK];
    for (int i = 0; i < 120; i++) wr[i] = x[i];
    pc_shape ts = PC_SHAPE(4, 2, 5, 3), t2s = PC_SHAPE(2, 3, 5, 4);
    for (int i = 0; i < 120; i++) {
        unravel(i, ts, idx); /* out[i0,i1,i2,i3] = x[idx with axis perm[d] = i_d] */
        for (int d = 0; d < 4; d++) src[perm[d]] = idx[d];
        wt[i] = x[ravel(src, xs)];
        wti[i] = xi[ravel(src, xs)];
        unravel(i, t2s, idx);
        int64_t s2[4] = {idx[0], idx[1], idx[3], idx[2]};
        wt2[i] = x[ravel(s2, xs)];
    }
    CHECK("reshape", outf(h, r), wr, 120, 0, 0);
    CHECK("transpose", outf(h, t), wt, 120, 0, 0);
    CHECK("transpose last two", outf(h, t2), wt2, 120, 0, 0);
    CHECK_I("transpose i32", outi(h, ti), wti, 120);
    hfree(h);
    tclean();
}

static void t_broadcast_sum_to(void) {
    rseed(14);
    H *h = hnew();
    float *x, *big;
    pc_shape xs = PC_SHAPE(3, 1), bs = PC_SHAPE(2, 3, 4);
    pc_val vx = fin(h, "x", xs, -1, 1, &x);
    pc_val vb = fin(h, "big", bs, -1, 1, &big);
    pc_val b = mo(h, pc_broadcast(h->g, vx, bs));
    pc_val s1 = mo(h, pc_sum_to(h->g, vb, xs));
    pc_val s2 = mo(h, pc_sum_to(h->g, vb, PC_SHAPE(4)));
    pc_val s3 = mo(h, pc_sum_to(h->g, vb, PC_SCALAR));
    pc_val s4 = mo(h, pc_sum_to(h->g, vb, PC_SHAPE(2, 1, 4)));
    pc_val s5 = mo(h, pc_sum_to(h->g, vb, bs));
    RUN_OK(h);
    double wb[24], w1[3] = {0}, w2[4] = {0}, w3[1] = {0}, w4[8] = {0}, w5[24];
    int64_t idx[PC_MAX_RANK];
    for (int i = 0; i < 24; i++) {
        unravel(i, bs, idx);
        wb[i] = x[idx[1]];
        w1[idx[1]] += big[i];
        w2[idx[2]] += big[i];
        w3[0] += big[i];
        w4[idx[0] * 4 + idx[2]] += big[i];
        w5[i] = big[i];
    }
    CHECK("broadcast", outf(h, b), wb, 24, 0, 0);
    CHECK("sum_to [3,1]", outf(h, s1), w1, 3, 1e-6, 1e-7);
    CHECK("sum_to [4]", outf(h, s2), w2, 4, 1e-6, 1e-7);
    CHECK("sum_to []", outf(h, s3), w3, 1, 1e-6, 1e-7);
    CHECK("sum_to [2,1,4]", outf(h, s4), w4, 8, 1e-6, 1e-7);
    CHECK("sum_to identity", outf(h, s5), w5, 24, 0, 0);
    hfree(h);
    tclean();
}

static void t_slice_pad_concat(void) {
    rseed(15);
    H *h = hnew();
    float *x, *c1, *c2, *c3;
    int32_t *i1, *i2;
    pc_shape xs = PC_SHAPE(2, 3, 4);
    pc_val vx = fin(h, "x", xs, -1, 1, &x);
    pc_val s1 = mo(h, pc_slice(h->g, vx, -1, 1, 3));
    pc_val s2 = mo(h, pc_slice(h->g, vx, 0, 1, 2));
    pc_val s3 = mo(h, pc_slice(h->g, vx, 1, 2, 2)); /* empty */
    pc_val p1 = mo(h, pc_pad(h->g, vx, 1, 2, 1));
    pc_val p2 = mo(h, pc_pad(h->g, vx, -1, 0, 3));
    pc_val vc1 = fin(h, "c1", PC_SHAPE(2, 1, 4), -1, 1, &c1);
    pc_val vc2 = fin(h, "c2", PC_SHAPE(2, 0, 4), -1, 1, &c2);
    pc_val vc3 = fin(h, "c3", PC_SHAPE(2, 2, 4), -1, 1, &c3);
    pc_val cc = mo(h, pc_concat(h->g, 4, (pc_val[]){vx, vc1, vc2, vc3}, 1));
    pc_val vi1 = iin(h, "i1", PC_SHAPE(2, 2), -9, 9, &i1), vi2 = iin(h, "i2", PC_SHAPE(2, 3), -9, 9, &i2);
    pc_val ci = mo(h, pc_concat(h->g, 2, (pc_val[]){vi1, vi2}, -1));
    RUN_OK(h);
    CU_ASSERT(shape_is(h, s1, PC_SHAPE(2, 3, 2)));
    CU_ASSERT(shape_is(h, s3, PC_SHAPE(2, 0, 4)));
    CU_ASSERT(shape_is(h, p1, PC_SHAPE(2, 6, 4)));
    CU_ASSERT(shape_is(h, cc, PC_SHAPE(2, 6, 4)));
    double w1[12], w2[12], wp1[48], wp2[42], wc[48];
    int64_t wci[10];
    int64_t idx[PC_MAX_RANK];
    for (int i = 0; i < 12; i++) {
        unravel(i, PC_SHAPE(2, 3, 2), idx);
        w1[i] = x[ravel((int64_t[]){idx[0], idx[1], idx[2] + 1}, xs)];
        unravel(i, PC_SHAPE(1, 3, 4), idx);
        w2[i] = x[ravel((int64_t[]){idx[0] + 1, idx[1], idx[2]}, xs)];
    }
    for (int i = 0; i < 48; i++) {
        unravel(i, PC_SHAPE(2, 6, 4), idx);
        int64_t j = idx[1] - 2;
        wp1[i] = (j >= 0 && j < 3) ? x[ravel((int64_t[]){idx[0], j, idx[2]}, xs)] : 0.0;
        int64_t r = idx[1];
        wc[i] = r < 3 ? x[ravel((int64_t[]){idx[0], r, idx[2]}, xs)]
                : r < 4 ? c1[ravel((int64_t[]){idx[0], 0, idx[2]}, PC_SHAPE(2, 1, 4))]
                        : c3[ravel((int64_t[]){idx[0], r - 4, idx[2]}, PC_SHAPE(2, 2, 4))];
    }
    for (int i = 0; i < 42; i++) {
        unravel(i, PC_SHAPE(2, 3, 7), idx);
        wp2[i] = idx[2] < 4 ? x[ravel(idx, xs)] : 0.0;
    }
    for (int i = 0; i < 10; i++) {
        int row = i / 5, col = i % 5;
        wci[i] = col < 2 ? i1[row * 2 + col] : i2[row * 3 + col - 2];
    }
    CHECK("slice axis -1", outf(h, s1), w1, 12, 0, 0);
    CHECK("slice axis 0", outf(h, s2), w2, 12, 0, 0);
    CU_ASSERT_PTR_NOT_NULL(outf(h, s3));
    CHECK("pad axis 1", outf(h, p1), wp1, 48, 0, 0);
    CHECK("pad axis -1", outf(h, p2), wp2, 42, 0, 0);
    CHECK("concat", outf(h, cc), wc, 48, 0, 0);
    CHECK_I("concat i32", outi(h, ci), wci, 10);
    hfree(h);
    tclean();
}

/* ---------------------------------------------------------------- embedding */

static void t_embedding(void) {
    rseed(16);
    H *h = hnew();
    float *t, *g;
    int32_t *ids, *ids2;
    pc_val vt = fin(h, "table", PC_SHAPE(10, 4), -1, 1, &t);
    pc_val vi = iin(h, "ids", PC_SHAPE(2, 3), 0, 9, &ids);
    pc_val e = mo(h, pc_embedding(h->g, vt, vi));
    pc_val vi2 = iin(h, "ids2", PC_SHAPE(3, 4), 0, 4, &ids2);
    pc_val vg = fin(h, "g", PC_SHAPE(3, 4, 6), -1, 1, &g);
    pc_val eg = mo(h, pc_embedding_grad(h->g, vi2, vg, 5));
    RUN_OK(h);
    CU_ASSERT(shape_is(h, e, PC_SHAPE(2, 3, 4)));
    CU_ASSERT(shape_is(h, eg, PC_SHAPE(5, 6)));
    double we[24], wg[30] = {0};
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 4; j++) we[i * 4 + j] = t[ids[i] * 4 + j];
    for (int i = 0; i < 12; i++)
        for (int j = 0; j < 6; j++) wg[ids2[i] * 6 + j] += g[i * 6 + j];
    CHECK("embedding", outf(h, e), we, 24, 0, 0);
    CHECK("embedding_grad", outf(h, eg), wg, 30, 1e-6, 1e-7);
    /* out of range: a run-time error naming the value and its location, twice (rerun) */
    ids[4] = 10;
    CU_ASSERT_EQUAL(hrun(h), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(h->err, "out of range"));
    CU_ASSERT_PTR_NOT_NULL(strstr(h->err, "test_ops.c:"));
    CU_ASSERT_PTR_NOT_NULL(strstr(h->err, "%ids"));
    CU_ASSERT_PTR_NOT_NULL(strstr(h->err, "[1,1]"));
    CU_ASSERT_PTR_NULL(outf(h, e)); /* a failed run leaves no results */
    ids[4] = -1;
    CU_ASSERT_EQUAL(hrun(h), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(h->err, "id -1"));
    ids[4] = 3;
    ids2[0] = 5; /* embedding_grad with rows = 5 */
    CU_ASSERT_EQUAL(hrun(h), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(h->err, "embedding_grad"));
    ids2[0] = 0;
    RUN_OK(h);
    hfree(h);
    tclean();
}

/* ---------------------------------------------------------------- rope */

/* x [T..., S, H, D] flattened as [rows, H, D]; pos per row */
static void rope_ref(const float *x, int64_t rows, int64_t hh, int64_t d, const int32_t *pos, int pos_per_row,
                     int64_t s, double theta, int style, int inverse, double *out) {
    for (int64_t t = 0; t < rows; t++) {
        int32_t p = pos_per_row ? pos[t] : pos[t % s];
        for (int64_t h = 0; h < hh; h++) {
            const float *v = x + (t * hh + h) * d;
            double *o = out + (t * hh + h) * d;
            for (int64_t i = 0; i < d / 2; i++) {
                double freq = pow(theta, -2.0 * (double)i / (double)d), ang = p * freq * (inverse ? -1 : 1);
                int64_t a = style ? i : 2 * i, b = style ? i + d / 2 : 2 * i + 1;
                o[a] = v[a] * cos(ang) - v[b] * sin(ang);
                o[b] = v[a] * sin(ang) + v[b] * cos(ang);
            }
        }
    }
}

static void t_rope(void) {
    rseed(17);
    for (int style = 0; style < 2; style++)
        for (int prow = 0; prow < 2; prow++) {
            H *h = hnew();
            float *x;
            int32_t *pos;
            pc_shape xs = PC_SHAPE(2, 5, 3, 8);
            double theta = style ? 500.0 : 10000.0;
            pc_val vx = fin(h, "x", xs, -1, 1, &x);
            pc_val vp = prow ? iin(h, "pos", PC_SHAPE(2, 5), 0, 60, &pos) : iin(h, "pos", PC_SHAPE(5), 0, 60, &pos);
            pc_val y = mo(h, pc_rope(h->g, vx, vp, theta, style, 0));
            pc_val yi = mo(h, pc_rope(h->g, vx, vp, theta, style, 1));
            pc_val back = mo(h, pc_rope(h->g, y, vp, theta, style, 1));
            RUN_OK(h);
            double want[240], wanti[240], xd[240];
            rope_ref(x, 10, 3, 8, pos, prow, 5, theta, style, 0, want);
            rope_ref(x, 10, 3, 8, pos, prow, 5, theta, style, 1, wanti);
            for (int i = 0; i < 240; i++) xd[i] = x[i];
            char what[64];
            snprintf(what, sizeof what, "rope style %d pos %s", style, prow ? "[B,S]" : "[S]");
            CHECK(what, outf(h, y), want, 240, 1e-5, 1e-6);
            CHECK("rope inverse", outf(h, yi), wanti, 240, 1e-5, 1e-6);
            CHECK("rope inverse(rope(x)) == x", outf(h, back), xd, 240, 1e-5, 1e-6);
            hfree(h);
            tclean();
        }
    /* llama2.c check by hand: D = 4, pos = 1, adjacent pairs: pair 0 rotates by 1 rad, pair 1 by 0.01 */
    H *h = hnew();
    float *x = talloc(4 * sizeof *x);
    int32_t *pos = talloc(sizeof *pos);
    x[0] = 1; x[1] = 0; x[2] = 0; x[3] = 1;
    pos[0] = 1;
    pc_val vx = din(h, "x", PC_F32, PC_SHAPE(1, 1, 4), x), vp = din(h, "pos", PC_I32, PC_SHAPE(1), pos);
    pc_val y0 = mo(h, pc_rope(h->g, vx, vp, 10000.0, 0, 0));
    pc_val y1 = mo(h, pc_rope(h->g, vx, vp, 10000.0, 1, 0));
    RUN_OK(h);
    double w0[4] = {cos(1.0), sin(1.0), -sin(0.01), cos(0.01)};
    /* halves: pairs (0,2) = (1,0) by 1 rad, (1,3) = (0,1) by 0.01 rad */
    double w1[4] = {cos(1.0), -sin(0.01), sin(1.0), cos(0.01)};
    CHECK("rope llama2.c by hand", outf(h, y0), w0, 4, 1e-6, 1e-7);
    CHECK("rope HF by hand", outf(h, y1), w1, 4, 1e-6, 1e-7);
    /* rank-3 x [S, H, D] and a negative position */
    pos[0] = -3;
    CU_ASSERT_EQUAL(hrun(h), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(h->err, "negative"));
    CU_ASSERT_PTR_NOT_NULL(strstr(h->err, "test_ops.c:"));
    hfree(h);
    tclean();
}

static void t_causal_mask(void) {
    rseed(18);
    H *h = hnew();
    float *x, *x2;
    pc_shape xs = PC_SHAPE(2, 3, 5), x2s = PC_SHAPE(4, 4);
    pc_val vx = fin(h, "x", xs, -1, 1, &x), vx2 = fin(h, "x2", x2s, -1, 1, &x2);
    pc_val y = mo(h, pc_causal_mask(h->g, vx, -1e9));
    pc_val y2 = mo(h, pc_op(h->g, "causal_mask", 1, &vx2, 0, NULL)); /* default fill -1e30 */
    RUN_OK(h);
    double w[30], w2[16];
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 5; j++) w[(b * 3 + i) * 5 + j] = j > i + 2 ? (double)(float)-1e9 : x[(b * 3 + i) * 5 + j];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) w2[i * 4 + j] = j > i ? (double)(float)-1e30 : x2[i * 4 + j];
    CHECK("causal_mask Sk > Sq", outf(h, y), w, 30, 0, 0);
    CHECK("causal_mask square", outf(h, y2), w2, 16, 0, 0);
    hfree(h);
    tclean();
}

/* ---------------------------------------------------------------- cross-entropy */

static double lse_ref(const float *x, int v) {
    double m = -INFINITY, s = 0;
    for (int j = 0; j < v; j++) m = fmax(m, x[j]);
    for (int j = 0; j < v; j++) s += exp(x[j] - m);
    return m + log(s);
}

static void t_cross_entropy(void) {
    rseed(19);
    enum { B = 2, S = 5, V = 7, R = B * S };
    for (int ig = 0; ig < 2; ig++) {
        int ignore = ig ? 3 : -100;
        H *h = hnew();
        float *x, *gs, *gn;
        int32_t *t;
        pc_val vx = fin(h, "logits", PC_SHAPE(B, S, V), -3, 3, &x);
        pc_val vt = iin(h, "targets", PC_SHAPE(B, S), 0, V - 1, &t);
        t[1] = ignore;
        t[6] = ignore;
        if (!ig) t[7] = 3; /* class 3 is valid when it is not the ignore index */
        pc_val vgs = fin(h, "gs", PC_SCALAR, 0.5, 2, &gs), vgn = fin(h, "gn", PC_SHAPE(B, S), -1, 1, &gn);
        pc_val l[3], g[3];
        const char *ia = ig ? "ignore_index=3" : "ignore_index=-100";
        const char *reds[3] = {"reduction=0", "reduction=1", "reduction=2"};
        for (int r = 0; r < 3; r++) {
            l[r] = mo(h, pc_cross_entropy(h->g, vx, vt, ignore, r));
            g[r] = mo(h, pc_op(h->g, "cross_entropy_grad", 3, (pc_val[]){vx, vt, r == 2 ? vgn : vgs}, 2,
                               (const char *[]){ia, reds[r]}));
        }
        RUN_OK(h);
        CU_ASSERT(shape_is(h, l[0], PC_SCALAR) && shape_is(h, l[1], PC_SCALAR) && shape_is(h, l[2], PC_SHAPE(B, S)));
        double per[R], sum = 0;
        int count = 0;
        for (int r = 0; r < R; r++) {
            per[r] = t[r] == ignore ? 0 : lse_ref(x + r * V, V) - x[r * V + t[r]];
            sum += per[r];
            count += t[r] != ignore;
        }
        double mean = sum / count;
        CHECK("ce mean", outf(h, l[0]), &mean, 1, 1e-5, 1e-7);
        CHECK("ce sum", outf(h, l[1]), &sum, 1, 1e-5, 1e-7);
        CHECK("ce none", outf(h, l[2]), per, R, 1e-5, 1e-7);
        for (int r = 0; r < 3; r++) {
            double want[R * V];
            for (int row = 0; row < R; row++) {
                double sc = r == 0 ? gs[0] / count : r == 1 ? gs[0] : gn[row];
                double lse = lse_ref(x + row * V, V);
                for (int j = 0; j < V; j++)
                    want[row * V + j] = t[row] == ignore ? 0 : (exp(x[row * V + j] - lse) - (j == t[row])) * sc;
            }
            CHECK(reds[r], outf(h, g[r]), want, R * V, 1e-5, 1e-7);
        }
        /* all ignored: mean is 0, not NaN; the gradient is zero */
        for (int r = 0; r < R; r++) t[r] = ignore;
        RUN_OK(h);
        double zero[R * V] = {0};
        CHECK("ce all ignored", outf(h, l[0]), zero, 1, 0, 0);
        CHECK("ce grad all ignored", outf(h, g[0]), zero, R * V, 0, 0);
        /* out of range targets */
        t[3] = V;
        CU_ASSERT_EQUAL(hrun(h), -1);
        CU_ASSERT_PTR_NOT_NULL(strstr(h->err, "out of range"));
        CU_ASSERT_PTR_NOT_NULL(strstr(h->err, "test_ops.c:"));
        t[3] = -1;
        CU_ASSERT_EQUAL(hrun(h), -1);
        hfree(h);
        tclean();
    }
}

/* ---------------------------------------------------------------- optimizer */

static void t_adamw(void) {
    enum { N = 6 };
    H *h = hnew();
    float *p = talloc(N * 4), *m = talloc(N * 4), *v = talloc(N * 4), *g = talloc(N * 4), *hp = talloc(8 * 4),
          *gs = talloc(4);
    float pv[N] = {0.5f, -1.25f, 2.0f, 0.0f, 3.5f, -0.75f}, mv[N] = {0.1f, -0.2f, 0.0f, 0.05f, 1.0f, -0.3f};
    float vv[N] = {0.01f, 0.04f, 0.0f, 0.001f, 0.5f, 0.2f}, gv[N] = {0.3f, -0.6f, 1.5f, 0.0f, -2.0f, 0.25f};
    memcpy(p, pv, sizeof pv);
    memcpy(m, mv, sizeof mv);
    memcpy(v, vv, sizeof vv);
    memcpy(g, gv, sizeof gv);
    float hpv[8] = {1e-2f, 0.9f, 0.999f, 1e-8f, 0.1f, 3.0f, 0.0f, 0.0f};
    memcpy(hp, hpv, sizeof hpv);
    gs[0] = 0.5f;
    pc_val vp = din(h, "p", PC_F32, PC_SHAPE(N), p), vm = din(h, "m", PC_F32, PC_SHAPE(N), m);
    pc_val vv_ = din(h, "v", PC_F32, PC_SHAPE(N), v), vg = din(h, "g", PC_F32, PC_SHAPE(N), g);
    pc_val vhp = din(h, "hp", PC_F32, PC_SHAPE(8), hp), vgs = din(h, "gs", PC_F32, PC_SCALAR, gs);
    pc_val m2 = mo(h, pc_op(h->g, "adamw_m", 4, (pc_val[]){vm, vg, vhp, vgs}, 0, NULL));
    pc_val v2 = mo(h, pc_op(h->g, "adamw_v", 4, (pc_val[]){vv_, vg, vhp, vgs}, 0, NULL));
    pc_val p2 = mo(h, pc_op(h->g, "adamw_p", 4, (pc_val[]){vp, m2, v2, vhp}, 0, NULL));
    RUN_OK(h);
    double wm[N], wv[N], wp[N];
    double lr = hpv[0], b1 = hpv[1], b2 = hpv[2], eps = hpv[3], wd = hpv[4];
    for (int i = 0; i < N; i++) {
        double sg = 0.5 * gv[i];
        wm[i] = b1 * mv[i] + (1 - b1) * sg;
        wv[i] = b2 * vv[i] + (1 - b2) * sg * sg;
        double mh = (float)wm[i] / (1 - pow(b1, 3)), vh = (float)wv[i] / (1 - pow(b2, 3));
        wp[i] = pv[i] - lr * wd * pv[i] - lr * mh / (sqrt(vh) + eps);
    }
    CHECK("adamw_m", outf(h, m2), wm, N, 1e-6, 1e-9);
    CHECK("adamw_v", outf(h, v2), wv, N, 1e-6, 1e-12);
    CHECK("adamw_p", outf(h, p2), wp, N, 1e-6, 1e-9);
    /* first step from zero moments: the update is p(1 - lr wd) - lr sign(g) (up to eps) */
    memset(m, 0, N * 4);
    memset(v, 0, N * 4);
    hp[5] = 1.0f;
    gs[0] = 1.0f;
    RUN_OK(h);
    for (int i = 0; i < N; i++) {
        double sign = gv[i] > 0 ? 1 : gv[i] < 0 ? -1 : 0;
        wp[i] = pv[i] * (1 - lr * wd) - lr * sign;
    }
    CHECK("adamw first step", outf(h, p2), wp, N, 1e-5, 1e-6);
    hfree(h);
    tclean();
}

static void t_clip_coef(void) {
    H *h = hnew();
    float *ss = talloc(4), *hp = talloc(32);
    ss[0] = 16.0f;
    pc_val vs = din(h, "ss", PC_F32, PC_SCALAR, ss), vh = din(h, "hp", PC_F32, PC_SHAPE(8), hp);
    pc_val c = mo(h, pc_op(h->g, "clip_coef", 2, (pc_val[]){vs, vh}, 0, NULL));
    const double max_norms[4] = {2.0, 10.0, 0.0, -1.0};
    for (int i = 0; i < 4; i++) {
        hp[6] = (float)max_norms[i];
        RUN_OK(h);
        double want = max_norms[i] > 0 ? fmin(1.0, max_norms[i] / (4.0 + 1e-6)) : 1.0;
        CHECK("clip_coef", outf(h, c), &want, 1, 1e-6, 0);
    }
    hfree(h);
    tclean();
}

/* ---------------------------------------------------------------- interpreter behaviour */

static void t_apply_updates(void) {
    H *h = hnew();
    float *w = talloc(4 * 4), *x = talloc(4 * 4);
    float w0[4] = {1, 2, 3, 4}, xv[4] = {0.5f, -1, 2, 0.25f};
    memcpy(w, w0, sizeof w0);
    memcpy(x, xv, sizeof xv);
    pc_graph *g = h->g;
    pc_val vw = pc_param(g, "w", "w", PC_F32, PC_SHAPE(4), PC_TRAINABLE, (pc_init){0});
    hbind(h, vw, w);
    pc_val vb = pc_param(g, "b", "b", PC_F32, PC_SHAPE(4), PC_TRAINABLE, (pc_init){PC_INIT_ONES, 0, 0});
    pc_val vs = pc_state(g, "s", "s.m", PC_F32, PC_SHAPE(4), (pc_init){PC_INIT_ZEROS, 0, 0});
    pc_val p1 = pc_param(g, "p1", "p1", PC_F32, PC_SHAPE(2), PC_TRAINABLE, (pc_init){PC_INIT_ONES, 0, 0});
    pc_val p2 = pc_param(g, "p2", "p2", PC_F32, PC_SHAPE(2), PC_TRAINABLE, (pc_init){PC_INIT_ZEROS, 0, 0});
    pc_val vx = din(h, "x", PC_F32, PC_SHAPE(4), x);
    pc_val w2 = pc_sub(g, vw, pc_scale(g, vx, 0.1, 0.0));
    pc_val b2 = pc_scale(g, vb, 2.0, 0.0);
    pc_val s2 = pc_add(g, vs, vx);
    pc_mark_loss(g, pc_sum(g, w2, 0, NULL, 0));
    pc_add_update(g, vw, w2);
    pc_add_update(g, vb, b2);
    pc_add_update(g, vs, s2);
    pc_add_update(g, p1, p2); /* a swap through leaves */
    pc_add_update(g, p2, p1);
    CU_ASSERT_PTR_NULL(pc_graph_error(g));
    CU_ASSERT_EQUAL(hrun(h), 0);
    CU_ASSERT_EQUAL(pc_ref_apply_updates(h->r), 0);
    CU_ASSERT_EQUAL(hrun(h), 0);
    CU_ASSERT_EQUAL(pc_ref_apply_updates(h->r), 0);
    double ww[4], wb[4], wsv[4], wp1[2] = {1, 1}, wp2[2] = {0, 0};
    for (int i = 0; i < 4; i++) {
        ww[i] = (double)(float)((float)(w0[i] - (float)(0.1 * xv[i])) - (float)(0.1 * xv[i]));
        wb[i] = 4;
        wsv[i] = 2.0 * xv[i];
    }
    CHECK("updated bound w", w, ww, 4, 1e-6, 1e-7);
    CHECK("updated initialised b", pc_ref_data(h->r, vb), wb, 4, 0, 0);
    CHECK("updated state s", pc_ref_data(h->r, vs), wsv, 4, 1e-6, 0);
    CHECK("swapped p1", pc_ref_data(h->r, p1), wp1, 2, 0, 0); /* swapped twice */
    CHECK("swapped p2", pc_ref_data(h->r, p2), wp2, 2, 0, 0);
    CU_ASSERT_PTR_EQUAL(pc_ref_data(h->r, vw), w);
    hfree(h);
    tclean();
    /* no run yet: nothing to apply */
    H *h2 = hnew();
    pc_val q = pc_param(h2->g, "q", "q", PC_F32, PC_SHAPE(2), PC_TRAINABLE, (pc_init){PC_INIT_ONES, 0, 0});
    pc_add_update(h2->g, q, pc_scale(h2->g, q, 2, 0));
    char err[256];
    h2->r = pc_ref_new(h2->g, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL(h2->r);
    CU_ASSERT_EQUAL(pc_ref_apply_updates(h2->r), -1);
    hfree(h2);
}

static void t_errors(void) {
    /* unbound input */
    H *h = hnew();
    pc_val t = pc_input(h->g, "tokens", PC_I32, PC_SHAPE(8, 64));
    mo(h, pc_cast(h->g, t, PC_F32));
    CU_ASSERT_EQUAL(hrun(h), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(h->err, "%tokens (input i32[8,64]) is not bound"));
    CU_ASSERT_PTR_NOT_NULL(strstr(h->err, "test_ops.c:"));
    hfree(h);
    /* unbound param without init */
    h = hnew();
    pc_val w = pc_param(h->g, "w", "layers.0.w", PC_F32, PC_SHAPE(2, 2), PC_FROZEN, (pc_init){0});
    mo(h, pc_neg(h->g, w));
    CU_ASSERT_EQUAL(hrun(h), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(h->err, "%w (param f32[2,2] \"layers.0.w\") is not bound and has no init"));
    hfree(h);
    /* elided constant */
    h = hnew();
    pc_val c = pc_const(h->g, PC_F32, PC_SHAPE(3), NULL);
    mo(h, pc_neg(h->g, c));
    CU_ASSERT_EQUAL(hrun(h), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(h->err, "elided"));
    hfree(h);
    /* constants with data run */
    h = hnew();
    float cv[3] = {1, 2, 3};
    c = pc_const(h->g, PC_F32, PC_SHAPE(3), cv);
    pc_val y = mo(h, pc_add(h->g, c, pc_scalar(h->g, 0.5f)));
    RUN_OK(h);
    double wc[3] = {1.5, 2.5, 3.5};
    CHECK("const + scalar", outf(h, y), wc, 3, 0, 0);
    hfree(h);
    /* bf16 */
    h = hnew();
    uint16_t bf[4] = {0};
    pc_val xb = din(h, "xb", PC_BF16, PC_SHAPE(4), bf);
    mo(h, pc_add(h->g, xb, xb));
    CU_ASSERT_EQUAL(hrun(h), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(h->err, "bf16 is not supported by the reference interpreter"));
    hfree(h);
    /* a graph with a sticky error is refused */
    h = hnew();
    pc_val a = pc_input(h->g, "a", PC_F32, PC_SHAPE(2, 3));
    pc_matmul(h->g, a, a, 0, 0);
    char err[512];
    CU_ASSERT_PTR_NULL(pc_ref_new(h->g, err, sizeof err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "contraction"));
    hfree(h);
    /* an ill-typed raw node (as a parser could make) is refused before running */
    h = hnew();
    a = pc_input(h->g, "a", PC_F32, PC_SHAPE(2, 3));
    pc_node_raw(h->g, PC_HERE, "bad", PC_OP_neg, 1, &a, NULL, PC_F32, PC_SHAPE(7, 7));
    CU_ASSERT_PTR_NULL(pc_ref_new(h->g, err, sizeof err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "%bad"));
    hfree(h);
    /* bind refuses non-leaves */
    h = hnew();
    a = pc_input(h->g, "a", PC_F32, PC_SHAPE(2));
    y = pc_neg(h->g, a);
    h->r = pc_ref_new(h->g, err, sizeof err);
    CU_ASSERT_EQUAL(pc_ref_bind(h->r, y, bf), -1);
    CU_ASSERT_EQUAL(pc_ref_bind(h->r, 99, bf), -1);
    hfree(h);
    tclean();
}

static void t_keep_all(void) {
    for (int keep = 0; keep < 2; keep++) {
        H *h = hnew();
        float *x;
        pc_val vx = fin(h, "x", PC_SHAPE(10), 0.5, 2, &x);
        pc_val e = pc_exp(h->g, vx);
        pc_val l = pc_log(h->g, e);
        pc_val s = mo(h, pc_sum(h->g, l, 0, NULL, 0));
        pc_val unused = pc_neg(h->g, vx);
        h->r = pc_ref_new(h->g, h->err, sizeof h->err);
        pc_ref_bind(h->r, vx, x);
        pc_ref_keep_all(h->r, keep);
        RUN_OK(h);
        CU_ASSERT(keep ? outf(h, e) != NULL : outf(h, e) == NULL);
        CU_ASSERT(keep ? outf(h, unused) != NULL : outf(h, unused) == NULL);
        CU_ASSERT_PTR_NOT_NULL(outf(h, s));
        CU_ASSERT_PTR_EQUAL(outf(h, vx), x);
        double want = 0;
        for (int i = 0; i < 10; i++) want += x[i];
        CHECK("sum(log(exp(x)))", outf(h, s), &want, 1, 1e-6, 0);
        if (keep) {
            double we[10];
            for (int i = 0; i < 10; i++) we[i] = exp(x[i]);
            CHECK("kept exp", outf(h, e), we, 10, 1e-6, 0);
        }
        hfree(h);
        tclean();
    }
}

static void t_zero_size(void) {
    rseed(20);
    H *h = hnew();
    float *a0, *b3, *m20, *m03, *m04, *m43, *s05, *l05, *e0, *k02, *k22, *r0;
    int32_t *ids0, *t0, *p0;
    pc_val va0 = fin(h, "a0", PC_SHAPE(0, 3), -1, 1, &a0), vb3 = fin(h, "b3", PC_SHAPE(3), -1, 1, &b3);
    pc_val add = mo(h, pc_add(h->g, va0, vb3));
    pc_val sum = mo(h, pc_sum(h->g, va0, 1, (int64_t[]){0}, 0));
    pc_val mean = mo(h, pc_mean(h->g, va0, 1, (int64_t[]){0}, 0));
    pc_val sum_all = mo(h, pc_sum(h->g, va0, 0, NULL, 0));
    pc_val vm20 = fin(h, "m20", PC_SHAPE(2, 0), -1, 1, &m20), vm03 = fin(h, "m03", PC_SHAPE(0, 3), -1, 1, &m03);
    pc_val mm_k0 = mo(h, pc_matmul(h->g, vm20, vm03, 0, 0));
    pc_val mm_k0t = mo(h, pc_matmul(h->g, vm20, pc_transpose(h->g, vm03, 2, (int64_t[]){1, 0}), 0, 1));
    pc_val vm04 = fin(h, "m04", PC_SHAPE(0, 4), -1, 1, &m04), vm43 = fin(h, "m43", PC_SHAPE(4, 3), -1, 1, &m43);
    pc_val mm_m0 = mo(h, pc_matmul(h->g, vm04, vm43, 0, 0));
    pc_val cat = mo(h, pc_concat(h->g, 2, (pc_val[]){vm20, pc_scale(h->g, vm20, 2, 0)}, 1));
    pc_val vs05 = fin(h, "s05", PC_SHAPE(0, 5), -1, 1, &s05);
    pc_val sm = mo(h, pc_softmax(h->g, vs05, -1));
    pc_val sm0 = mo(h, pc_softmax(h->g, vs05, 0));
    pc_val ve0 = fin(h, "e0", PC_SHAPE(4, 2), -1, 1, &e0);
    pc_val vids0 = iin(h, "ids0", PC_SHAPE(0), 0, 3, &ids0);
    pc_val emb = mo(h, pc_embedding(h->g, ve0, vids0));
    pc_val embg = mo(h, pc_embedding_grad(h->g, vids0, emb, 4));
    pc_val vl05 = fin(h, "l05", PC_SHAPE(0, 5), -1, 1, &l05);
    pc_val vt0 = iin(h, "t0", PC_SHAPE(0), 0, 4, &t0);
    pc_val ce = mo(h, pc_cross_entropy(h->g, vl05, vt0, -100, 0));
    pc_val ces = mo(h, pc_cross_entropy(h->g, vl05, vt0, -100, 1));
    pc_val tr = mo(h, pc_transpose(h->g, va0, 2, (int64_t[]){1, 0}));
    pc_val sl = mo(h, pc_slice(h->g, vb3, 0, 1, 1));
    pc_val pd = mo(h, pc_pad(h->g, sl, 0, 2, 1));
    pc_val vk02 = fin(h, "k02", PC_SHAPE(0, 2), -1, 1, &k02), vk22 = fin(h, "k22", PC_SHAPE(2, 2), -1, 1, &k22);
    pc_val kr = mo(h, pc_kron(h->g, vk02, vk22));
    pc_val vr0 = fin(h, "r0", PC_SHAPE(0, 2, 4), -1, 1, &r0);
    pc_val vp0 = iin(h, "p0", PC_SHAPE(0), 0, 4, &p0);
    pc_val ro = mo(h, pc_rope(h->g, vr0, vp0, 10000.0, 0, 0));
    pc_val rn = mo(h, pc_rmsnorm(h->g, va0, vb3, 1e-5));
    pc_val mx = mo(h, pc_max(h->g, pc_reshape(h->g, va0, PC_SHAPE(3, 0)), 1, (int64_t[]){0}, 0));
    RUN_OK(h);
    CU_ASSERT(shape_is(h, add, PC_SHAPE(0, 3)));
    CU_ASSERT(shape_is(h, mm_m0, PC_SHAPE(0, 3)));
    CU_ASSERT(shape_is(h, cat, PC_SHAPE(2, 0)));
    CU_ASSERT(shape_is(h, emb, PC_SHAPE(0, 2)));
    CU_ASSERT(shape_is(h, kr, PC_SHAPE(0, 4)));
    CU_ASSERT(shape_is(h, mx, PC_SHAPE(0)));
    double z[8] = {0}, nan3[3] = {NAN, NAN, NAN}, pad_want[3] = {0, 0, 0};
    CHECK("sum over empty", outf(h, sum), z, 3, 0, 0);
    CHECK("sum all of empty", outf(h, sum_all), z, 1, 0, 0);
    CHECK("mean over empty is NaN", outf(h, mean), nan3, 3, 0, 0);
    CHECK("matmul K=0", outf(h, mm_k0), z, 6, 0, 0);
    CHECK("matmul K=0 transposed", outf(h, mm_k0t), z, 6, 0, 0);
    CHECK("embedding_grad of nothing", outf(h, embg), z, 8, 0, 0);
    CHECK("cross_entropy mean of nothing", outf(h, ce), z, 1, 0, 0);
    CHECK("cross_entropy sum of nothing", outf(h, ces), z, 1, 0, 0);
    CHECK("pad of empty", outf(h, pd), pad_want, 3, 0, 0);
    const pc_val empties[] = {add, mm_m0, cat, sm, sm0, emb, tr, sl, kr, ro, rn, mx};
    for (size_t i = 0; i < sizeof empties / sizeof *empties; i++) CU_ASSERT_PTR_NOT_NULL(outf(h, empties[i]));
    hfree(h);
    tclean();
}

static void t_init_fill(void) {
    enum { N = 100000 };
    float *x = talloc(N * sizeof *x), *y = talloc(N * sizeof *y);
    /* kaiming_uniform(a = sqrt(5)), fan_in 64: bound = sqrt(6 / ((1 + 5) 64)) = 1/8 */
    pc_init_fill(x, N, (pc_init){PC_INIT_KAIMING_UNIFORM, sqrt(5.0), 0}, 64, 7, 3);
    double bound = 0.125, s = 0, s2 = 0, mx = 0;
    int over = 0;
    for (int i = 0; i < N; i++) {
        over += fabs(x[i]) > bound;
        mx = fmax(mx, fabs(x[i]));
        s += x[i];
        s2 += (double)x[i] * x[i];
    }
    CU_ASSERT_EQUAL(over, 0);
    CU_ASSERT(mx > 0.999 * bound);
    CU_ASSERT(fabs(s / N) < 2e-3);
    CU_ASSERT(fabs(s2 / N / (bound * bound / 3) - 1) < 0.02);
    /* kaiming_uniform(a = 0): bound = sqrt(6 / fan_in) */
    pc_init_fill(x, N, (pc_init){PC_INIT_KAIMING_UNIFORM, 0, 0}, 24, 7, 3);
    mx = 0;
    for (int i = 0; i < N; i++) mx = fmax(mx, fabs(x[i]));
    CU_ASSERT(mx <= sqrt(6.0 / 24) && mx > 0.999 * sqrt(6.0 / 24));
    /* normal(std = 0.02) */
    pc_init_fill(x, N, (pc_init){PC_INIT_NORMAL, 0.02, 0}, 1, 11, 5);
    s = s2 = 0;
    for (int i = 0; i < N; i++) {
        s += x[i];
        s2 += (double)x[i] * x[i];
    }
    double mean = s / N, sd = sqrt(s2 / N - mean * mean);
    CU_ASSERT(fabs(mean) < 5 * 0.02 / sqrt(N));
    CU_ASSERT(fabs(sd / 0.02 - 1) < 0.01);
    /* uniform(-2, 3) */
    pc_init_fill(x, N, (pc_init){PC_INIT_UNIFORM, -2, 3}, 1, 1, 1);
    double lo = 1e9, hi = -1e9;
    s = 0;
    for (int i = 0; i < N; i++) {
        lo = fmin(lo, x[i]);
        hi = fmax(hi, x[i]);
        s += x[i];
    }
    CU_ASSERT(lo >= -2 && lo < -1.99 && hi < 3 && hi > 2.99);
    CU_ASSERT(fabs(s / N - 0.5) < 0.02);
    /* determinism: same (seed, stream) same values; another stream or seed differs */
    pc_init_fill(x, 1000, (pc_init){PC_INIT_NORMAL, 1, 0}, 1, 1, 2);
    pc_init_fill(y, 1000, (pc_init){PC_INIT_NORMAL, 1, 0}, 1, 1, 2);
    CU_ASSERT(memcmp(x, y, 1000 * sizeof *x) == 0);
    pc_init_fill(y, 1000, (pc_init){PC_INIT_NORMAL, 1, 0}, 1, 1, 3);
    CU_ASSERT(memcmp(x, y, 1000 * sizeof *x) != 0);
    pc_init_fill(y, 1000, (pc_init){PC_INIT_NORMAL, 1, 0}, 1, 2, 2);
    CU_ASSERT(memcmp(x, y, 1000 * sizeof *x) != 0);
    /* zeros / ones */
    pc_init_fill(x, 10, (pc_init){PC_INIT_ONES, 0, 0}, 1, 0, 0);
    pc_init_fill(y, 10, (pc_init){PC_INIT_ZEROS, 0, 0}, 1, 0, 0);
    for (int i = 0; i < 10; i++) CU_ASSERT(x[i] == 1.0f && y[i] == 0.0f);
    pc_init_fill(x, 0, (pc_init){PC_INIT_ONES, 0, 0}, 1, 0, 0); /* nothing */

    /* through the interpreter: an unbound [16, 64] kaiming param, reproducible by seed */
    float first[16 * 64];
    for (int seed = 0; seed < 2; seed++) {
        H *h = hnew();
        pc_val w = pc_param(h->g, "lora_A", "layers.0.q.lora_A.weight", PC_F32, PC_SHAPE(16, 64), PC_TRAINABLE,
                            (pc_init){PC_INIT_KAIMING_UNIFORM, sqrt(5.0), 0});
        pc_val y2 = mo(h, pc_scale(h->g, w, 1, 0));
        h->r = pc_ref_new(h->g, h->err, sizeof h->err);
        pc_ref_set_seed(h->r, (uint64_t)seed + 100);
        RUN_OK(h);
        const float *d = outf(h, y2);
        CU_ASSERT_PTR_NOT_NULL(d);
        if (d) {
            int bad = 0;
            for (int i = 0; i < 16 * 64; i++) bad += fabs(d[i]) > 0.125;
            CU_ASSERT_EQUAL(bad, 0);
            if (seed == 0) memcpy(first, d, sizeof first);
            else CU_ASSERT(memcmp(first, d, sizeof first) != 0);
            CU_ASSERT(memcmp(pc_ref_data(h->r, w), d, sizeof first) == 0);
        }
        hfree(h);
    }
    tclean();
}

/* rank 6, the maximum: broadcasting, a full reversal, a reduction and softmax mid-axis */
static void t_rank6(void) {
    rseed(22);
    H *h = hnew();
    float *a, *b;
    pc_shape as = PC_SHAPE(2, 1, 3, 1, 2, 2), bs = PC_SHAPE(3, 2, 1, 2), os = PC_SHAPE(2, 1, 3, 2, 2, 2);
    pc_val va = fin(h, "a", as, -1, 1, &a), vb = fin(h, "b", bs, -1, 1, &b);
    pc_val y = mo(h, pc_add(h->g, va, vb));
    pc_val t = mo(h, pc_transpose(h->g, y, 6, (int64_t[]){5, 4, 3, 2, 1, 0}));
    pc_val r = mo(h, pc_sum(h->g, y, 3, (int64_t[]){1, 3, -1}, 1));
    pc_val sm = mo(h, pc_softmax(h->g, y, 3));
    RUN_OK(h);
    int64_t n = numel(os), idx[PC_MAX_RANK], rev[PC_MAX_RANK];
    double wy[72] = {0}, wt[72] = {0}, wr[72] = {0}, wsm[72] = {0}, yd[72] = {0};
    for (int64_t i = 0; i < n; i++) {
        unravel(i, os, idx);
        yd[i] = wy[i] = (double)(float)(a[bidx(idx, 6, as)] + b[bidx(idx, 6, bs)]);
    }
    pc_shape ts = PC_SHAPE(2, 2, 2, 3, 1, 2);
    for (int64_t i = 0; i < n; i++) {
        unravel(i, ts, idx);
        for (int d = 0; d < 6; d++) rev[5 - d] = idx[d];
        wt[i] = wy[ravel(rev, os)];
    }
    reduce_ref(0, yd, os, (1u << 1) | (1u << 3) | (1u << 5), wr);
    for (int64_t i = 0; i < n; i++) {
        unravel(i, os, idx);
        double m = -INFINITY, s = 0;
        int64_t j[PC_MAX_RANK];
        memcpy(j, idx, sizeof j);
        for (j[3] = 0; j[3] < os.dim[3]; j[3]++) m = fmax(m, wy[ravel(j, os)]);
        for (j[3] = 0; j[3] < os.dim[3]; j[3]++) s += exp(wy[ravel(j, os)] - m);
        wsm[i] = exp(wy[i] - m) / s;
    }
    CU_ASSERT(shape_is(h, y, os));
    CU_ASSERT(shape_is(h, r, PC_SHAPE(2, 1, 3, 1, 2, 1)));
    CHECK("rank-6 add", outf(h, y), wy, n, 0, 0);
    CHECK("rank-6 transpose", outf(h, t), wt, n, 0, 0);
    CHECK("rank-6 sum keepdim", outf(h, r), wr, 12, 1e-6, 1e-7);
    CHECK("rank-6 softmax", outf(h, sm), wsm, n, 1e-6, 1e-7);
    hfree(h);
    tclean();
}

/* ---------------------------------------------------------------- speed */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static pc_val kparam(pc_graph *g, const char *name, pc_shape s) {
    return pc_param(g, name, name, PC_F32, s, PC_FROZEN, (pc_init){PC_INIT_KAIMING_UNIFORM, sqrt(5.0), 0});
}

/* a stories260K-sized step: 5 layers, dim 64, 8 heads, hidden 172, vocab 512, batch [8, 64],
 * forward + the logits backward */
static void t_speed(void) {
    enum { B = 8, S = 64, D = 64, NH = 8, HD = 8, HID = 172, V = 512, L = 5 };
    H *h = hnew();
    pc_graph *g = h->g;
    rseed(21);
    int32_t *tok, *tgt, *pos = talloc(S * sizeof *pos);
    for (int i = 0; i < S; i++) pos[i] = i;
    pc_val vtok = iin(h, "tokens", PC_SHAPE(B, S), 0, V - 1, &tok);
    pc_val vtgt = iin(h, "targets", PC_SHAPE(B, S), 0, V - 1, &tgt);
    pc_val vpos = din(h, "pos", PC_I32, PC_SHAPE(S), pos);
    pc_val emb = kparam(g, "tok_embeddings", PC_SHAPE(V, D));
    pc_val x = pc_embedding(g, emb, vtok);
    char nm[64];
    for (int l = 0; l < L; l++) {
#define P(n, ...) (snprintf(nm, sizeof nm, "l%d." n, l), kparam(g, nm, PC_SHAPE(__VA_ARGS__)))
        pc_val hn = pc_rmsnorm(g, x, P("attn_norm", D), 1e-5);
        pc_val q = pc_matmul(g, hn, P("wq", D, D), 0, 1);
        pc_val k = pc_matmul(g, hn, P("wk", D, D), 0, 1);
        pc_val v = pc_matmul(g, hn, P("wv", D, D), 0, 1);
        q = pc_rope(g, pc_reshape(g, q, PC_SHAPE(B, S, NH, HD)), vpos, 10000.0, 0, 0);
        k = pc_rope(g, pc_reshape(g, k, PC_SHAPE(B, S, NH, HD)), vpos, 10000.0, 0, 0);
        v = pc_reshape(g, v, PC_SHAPE(B, S, NH, HD));
        int64_t perm[4] = {0, 2, 1, 3};
        q = pc_transpose(g, q, 4, perm);
        k = pc_transpose(g, k, 4, perm);
        v = pc_transpose(g, v, 4, perm);
        pc_val sc = pc_scale(g, pc_matmul(g, q, k, 0, 1), 1.0 / sqrt((double)HD), 0);
        pc_val att = pc_softmax(g, pc_causal_mask(g, sc, -1e30), -1);
        pc_val o = pc_transpose(g, pc_matmul(g, att, v, 0, 0), 4, perm);
        o = pc_matmul(g, pc_reshape(g, o, PC_SHAPE(B, S, D)), P("wo", D, D), 0, 1);
        x = pc_add(g, x, o);
        pc_val hf = pc_rmsnorm(g, x, P("ffn_norm", D), 1e-5);
        pc_val h1 = pc_matmul(g, hf, P("w1", HID, D), 0, 1);
        pc_val h3 = pc_matmul(g, hf, P("w3", HID, D), 0, 1);
        pc_val ff = pc_matmul(g, pc_mul(g, pc_silu(g, h1), h3), P("w2", D, HID), 0, 1);
        x = pc_add(g, x, ff);
#undef P
    }
    pc_val hfin = pc_rmsnorm(g, x, kparam(g, "norm", PC_SHAPE(D)), 1e-5);
    pc_val wcls = kparam(g, "output", PC_SHAPE(V, D));
    pc_val logits = pc_matmul(g, hfin, wcls, 0, 1);
    pc_val loss = pc_cross_entropy(g, logits, vtgt, -100, 0);
    pc_mark_loss(g, loss);
    pc_val dlog = pc_op(g, "cross_entropy_grad", 3, (pc_val[]){logits, vtgt, pc_scalar(g, 1.0f)}, 0, NULL);
    pc_val dh = mo(h, pc_matmul(g, dlog, wcls, 0, 0));
    pc_val dw = mo(h, pc_matmul(g, pc_reshape(g, dlog, PC_SHAPE(B * S, V)), pc_reshape(g, hfin, PC_SHAPE(B * S, D)), 1, 0));
    (void)dh;
    (void)dw;
    double t0 = now();
    RUN_OK(h);
    double t1 = now();
    RUN_OK(h); /* second run: the params are already initialised */
    double t2 = now();
    const float *l = outf(h, loss);
    CU_ASSERT(l && isfinite(*l) && *l > 4.0f && *l < 9.0f); /* about log(512) = 6.2 */
    printf("\n  stories260K-sized forward + logits backward (%d values): %.1f ms, again %.1f ms (loss %.4f)",
           g->nvals, 1e3 * (t1 - t0), 1e3 * (t2 - t1), l ? *l : 0.0f);
    if (!PC_SANITIZED) CU_ASSERT(t2 - t1 < 1.0);
    hfree(h);
    tclean();

    /* big matmuls */
    const int64_t shapes[3][3] = {{512, 64, 64}, {512, 64, 512}, {512, 512, 512}};
    for (int c = 0; c < 3; c++) {
        int64_t m = shapes[c][0], k = shapes[c][1], n = shapes[c][2];
        h = hnew();
        pc_val a = fin(h, "a", PC_SHAPE(m, k), -1, 1, NULL), b = fin(h, "b", PC_SHAPE(n, k), -1, 1, NULL);
        pc_val y = mo(h, pc_matmul(h->g, a, b, 0, 1));
        (void)y;
        double s0 = now();
        RUN_OK(h);
        double s1 = now();
        printf("\n  matmul [%lld,%lld]x[%lld,%lld]^T: %.2f ms (%.2f GFLOP/s)", (long long)m, (long long)k,
               (long long)n, (long long)k, 1e3 * (s1 - s0), 2e-9 * (double)(m * k * n) / (s1 - s0));
        hfree(h);
        tclean();
    }
    printf("\n");
}

/* ---------------------------------------------------------------- registry coverage */

static void t_coverage(void) {
    int missing = 0;
    for (int op = 0; op < PC_OP_COUNT; op++) {
        const pc_op_info *info = pc_op_get((pc_opcode)op);
        if (info->fusion == PC_FUSE_SOURCE) continue;
        if (!g_covered[op]) {
            printf("\n  op '%s' has no test in test_ops.c", info->name);
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
    {"matmul", t_matmul},
    {"kron", t_kron},
    {"reshape/transpose", t_reshape_transpose},
    {"broadcast/sum_to", t_broadcast_sum_to},
    {"slice/pad/concat", t_slice_pad_concat},
    {"embedding", t_embedding},
    {"rope", t_rope},
    {"causal_mask", t_causal_mask},
    {"cross_entropy", t_cross_entropy},
    {"adamw", t_adamw},
    {"clip_coef", t_clip_coef},
    {"apply_updates", t_apply_updates},
    {"errors", t_errors},
    {"keep_all", t_keep_all},
    {"zero-size tensors", t_zero_size},
    {"pc_init_fill", t_init_fill},
    {"rank 6", t_rank6},
    {"speed", t_speed},
    {"every op covered", t_coverage},
    CU_TEST_INFO_NULL,
};

PC_TEST_MAIN("ops", tests)
