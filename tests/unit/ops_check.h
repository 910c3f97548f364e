/* Shared plumbing of test_ops_elementwise.c and test_ops_structured.c: every op of ir/ops.def
 * through the reference interpreter, against naive double-precision references written with
 * explicit index loops (independent of backend/ref*.c). Each test binary records the ops it ran
 * (g_covered); the two halves of the registry coverage check meet in OPS_ELEMENTWISE_COVERED. */
#ifndef PEFTC_OPS_CHECK_H
#define PEFTC_OPS_CHECK_H
#include "backend/ref.h"
#include "cu_main.h"
#include "test_rng.h"
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
static inline void *talloc(size_t n) {
    void *p = calloc(n ? n : 1, 1);
    if (!p) abort();
    if (g_nallocs == (int)(sizeof g_allocs / sizeof *g_allocs)) abort();
    g_allocs[g_nallocs++] = p;
    return p;
}
static inline void tclean(void) {
    for (int i = 0; i < g_nallocs; i++) free(g_allocs[i]);
    g_nallocs = 0;
}

static uint64_t g_rng = 0x1234567887654321ull;
static inline void rseed(uint64_t s) { g_rng = s * 0x9e3779b97f4a7c15ull + 1; }
static inline double rnd(void) { return test_rng_unit(&g_rng); } /* [0, 1) */
static inline double runi(double lo, double hi) { return lo + (hi - lo) * rnd(); }
static inline int rint_in(int lo, int hi) { return lo + (int)(rnd() * (hi - lo + 1)); } /* inclusive */

#define MAXBIND 64
typedef struct {
    pc_graph *g;
    pc_ref *r;
    int nb;
    pc_val bv[MAXBIND];
    void *bp[MAXBIND];
    char err[2048];
    bool nan_ok; /* the op's semantics produce NaN/inf here (0/0): the interpreter's check is off */
} H;

static inline H *hnew(void) {
    H *h = calloc(1, sizeof *h);
    h->g = pc_graph_new("test");
    return h;
}
static inline void hfree(H *h) {
    if (!h) return;
    pc_ref_free(h->r);
    pc_graph_free(h->g);
    free(h);
}
static inline void hbind(H *h, pc_val v, void *p) {
    if (h->nb < MAXBIND) {
        h->bv[h->nb] = v;
        h->bp[h->nb++] = p;
    }
}
static inline int64_t numel(pc_shape s) { return pc_shape_numel(s); }

static inline float *randf(int64_t n, double lo, double hi) {
    float *d = talloc((size_t)n * sizeof *d);
    for (int64_t i = 0; i < n; i++) d[i] = (float)runi(lo, hi);
    return d;
}
static inline int32_t *randi(int64_t n, int lo, int hi) {
    int32_t *d = talloc((size_t)n * sizeof *d);
    for (int64_t i = 0; i < n; i++) d[i] = rint_in(lo, hi);
    return d;
}
/* random f32 input, bound at run time */
static inline pc_val fin(H *h, const char *name, pc_shape s, double lo, double hi, float **data) {
    pc_val v = pc_input(h->g, name, PC_F32, s);
    float *d = randf(numel(s), lo, hi);
    hbind(h, v, d);
    if (data) *data = d;
    return v;
}
static inline pc_val iin(H *h, const char *name, pc_shape s, int lo, int hi, int32_t **data) {
    pc_val v = pc_input(h->g, name, PC_I32, s);
    int32_t *d = randi(numel(s), lo, hi);
    hbind(h, v, d);
    if (data) *data = d;
    return v;
}
/* input with given data */
static inline pc_val din(H *h, const char *name, pc_dtype dt, pc_shape s, void *data) {
    pc_val v = pc_input(h->g, name, dt, s);
    hbind(h, v, data);
    return v;
}
static inline pc_val mo(H *h, pc_val v) {
    pc_mark_output(h->g, v);
    return v;
}

/* builds the interpreter (once), binds, runs; 0 or -1 with the message in h->err */
static inline int hrun(H *h) {
    h->err[0] = 0;
    if (pc_graph_error(h->g)) {
        snprintf(h->err, sizeof h->err, "graph: %s", pc_graph_error(h->g));
        return -1;
    }
    if (!h->r) {
        h->r = pc_ref_new(h->g, h->err, sizeof h->err);
        if (!h->r) return -1;
        pc_ref_check_finite(h->r, !h->nan_ok);
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

static inline const float *outf(H *h, pc_val v) { return h->r ? pc_ref_data(h->r, v) : NULL; }
static inline const int32_t *outi(H *h, pc_val v) { return h->r ? pc_ref_data(h->r, v) : NULL; }

/* |got - want| <= atol + rtol |want| (NaN matches NaN, inf matches the same inf) */
static inline int check(const char *what, const float *got, const double *want, int64_t n, double rtol, double atol) {
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

static inline int check_i(const char *what, const int32_t *got, const int64_t *want, int64_t n) {
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

static inline bool shape_is(H *h, pc_val v, pc_shape s) { return pc_shape_eq(pc_val_shape(h->g, v), s); }

/* ---------------------------------------------------------------- reference index helpers */

/* flat index -> multi-index of shape s */
static inline void unravel(int64_t flat, pc_shape s, int64_t *idx) {
    for (int d = s.rank - 1; d >= 0; d--) {
        idx[d] = flat % s.dim[d];
        flat /= s.dim[d];
    }
}
/* multi-index -> flat index of shape s */
static inline int64_t ravel(const int64_t *idx, pc_shape s) {
    int64_t f = 0;
    for (int d = 0; d < s.rank; d++) f = f * s.dim[d] + idx[d];
    return f;
}
/* flat index into `in`, broadcast (numpy rules) to an output multi-index of rank orank */
static inline int64_t bidx(const int64_t *oidx, int orank, pc_shape in) {
    int64_t f = 0;
    for (int j = 0; j < in.rank; j++) {
        int i = orank - in.rank + j;
        int64_t c = in.dim[j] == 1 ? 0 : oidx[i];
        f = f * in.dim[j] + c;
    }
    return f;
}
static inline pc_shape bshape(pc_shape a, pc_shape b) {
    pc_shape r = {0};
    r.rank = a.rank > b.rank ? a.rank : b.rank;
    for (int i = 0; i < r.rank; i++) {
        int ia = a.rank - r.rank + i, ib = b.rank - r.rank + i;
        int64_t da = ia >= 0 ? a.dim[ia] : 1, db = ib >= 0 ? b.dim[ib] : 1;
        r.dim[i] = da == 1 ? db : da;
    }
    return r;
}

/* reduction over the axes in mask; kind 0 sum, 1 mean, 2 max; out has the keepdim shape */
static inline void reduce_ref(int kind, const double *x, pc_shape xs, unsigned mask, double *out) {
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

/* ---------------------------------------------------------------- registry coverage */

/* the ops test_ops_elementwise.c must run (its "every op covered" checks that it did);
 * test_ops_structured.c's "every op covered" accepts these and requires every other
 * non-leaf op of the registry to have run there */
static const char *const OPS_ELEMENTWISE_COVERED[] = {
    "add", "sub", "mul", "div", "maximum", "minimum", "eq", "lt", "gt", "where", "neg", "scale",
    "exp", "log", "sqrt", "rsqrt", "square", "abs", "tanh", "sigmoid", "relu", "gelu", "silu",
    "cast", "dropout", "stop_gradient", "sum", "mean", "max", "softmax", "log_softmax", "rmsnorm", "layernorm",
};
#define OPS_ELEMENTWISE_NCOVERED ((int)(sizeof OPS_ELEMENTWISE_COVERED / sizeof *OPS_ELEMENTWISE_COVERED))

static inline bool ops_elementwise_covers(const char *name) {
    for (int i = 0; i < OPS_ELEMENTWISE_NCOVERED; i++)
        if (!strcmp(OPS_ELEMENTWISE_COVERED[i], name)) return true;
    return false;
}

#endif
