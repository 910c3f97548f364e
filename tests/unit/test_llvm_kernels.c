/* The LLVM kernel backend (backend/llvm_*.c): fused elementwise kernels compiled by the JIT
 * are compared against the reference interpreter running the same computation as a graph.
 *
 * The harness builds a graph with the DSL, "lowers" it here to one pc_kernel_desc (leaves
 * become kernel inputs with broadcast / transposed strides, elementwise nodes become
 * instructions), runs both, and compares with per-op tolerances (exact for the ops that are
 * meant to be bit-identical). It also sweeps the math helpers against libm over wide ranges
 * (every f32 when PEFTC_EXHAUSTIVE=1), and prints throughput and compile times. */
#include "backend/kernel.h"
#include "backend/ref.h"
#include "cu_main.h"
#include "ir.h"
#include "runtime/rng.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define PC_SANITIZED 1
#else
#define PC_SANITIZED 0
#endif

/* ---------------------------------------------------------------- plumbing */

static uint64_t g_rng = 0x1234567887654321ull;
static void rseed(uint64_t s) { g_rng = s * 0x9e3779b97f4a7c15ull + 1; }
static uint64_t rbits(void) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 0x2545F4914F6CDD1Dull;
}
static double rnd(void) { return (double)(rbits() >> 11) * 0x1.0p-53; }
static double runi(double lo, double hi) { return lo + (hi - lo) * rnd(); }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float bitsf(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
/* distance in representable floats (0 for equal values, +0 == -0) */
static int64_t ulp_dist(float a, float b) {
    int32_t ia = (int32_t)fbits(a), ib = (int32_t)fbits(b);
    int64_t oa = ia < 0 ? (int64_t)INT32_MIN - ia : ia, ob = ib < 0 ? (int64_t)INT32_MIN - ib : ib;
    return oa > ob ? oa - ob : ob - oa;
}

/* how leaf data is filled */
typedef enum {
    FILL_UNIFORM,  /* f32 uniform [lo, hi] */
    FILL_SPECIAL,  /* uniform plus NaN, +-inf, +-0, denormals, huge values at some positions */
    FILL_QUANT,    /* f32 values lo + k*0.5 (so that comparisons hit equality) */
    FILL_LOGUNI,   /* f32 |x| = 2^U(lo, hi), random sign (hi > lo; positive only if lo2 set) */
    FILL_POSLOG,   /* positive 2^U(lo, hi) */
    FILL_INT,      /* i32 uniform in [lo, hi] */
    FILL_INTFULL,  /* i32 full range with extremes */
} fill_kind;

#define MAXLEAF 12
typedef struct {
    pc_graph *g;
    int nleaf;
    pc_val leaf[MAXLEAF];
    void *data[MAXLEAF];
    int64_t numel[MAXLEAF];
    int nout;
    pc_val out[PC_K_MAX_OUT];
    /* the lowering */
    pc_kernel_desc k;
    void *kin_data[PC_K_MAX_IN];
    char err[2048];
} tcase;

static void tc_init(tcase *t) {
    memset(t, 0, sizeof *t);
    t->g = pc_graph_new("t");
}
static void tc_free(tcase *t) {
    for (int i = 0; i < t->nleaf; i++) free(t->data[i]);
    pc_graph_free(t->g);
    memset(t, 0, sizeof *t);
}

static void fill(void *data, pc_dtype dt, int64_t n, fill_kind kind, double lo, double hi) {
    static const float specials[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1e-40f, -3e-39f, 1.17549435e-38f,
                                     3e38f, -3e38f, 1.0f, -1.0f};
    if (dt == PC_I32) {
        int32_t *p = data;
        for (int64_t i = 0; i < n; i++) {
            if (kind == FILL_INTFULL) {
                p[i] = (int32_t)(uint32_t)rbits();
                if (i % 17 == 3) p[i] = INT32_MAX;
                if (i % 17 == 5) p[i] = INT32_MIN;
                if (i % 17 == 7) p[i] = 0;
            } else {
                p[i] = (int32_t)floor(runi(lo, hi + 1));
            }
        }
        return;
    }
    float *p = data;
    for (int64_t i = 0; i < n; i++) {
        switch (kind) {
        case FILL_QUANT: p[i] = (float)(lo + 0.5 * floor(runi(0, (hi - lo) * 2 + 1))); break;
        case FILL_LOGUNI: p[i] = (float)(exp2(runi(lo, hi)) * (rnd() < 0.5 ? -1 : 1)); break;
        case FILL_POSLOG: p[i] = (float)exp2(runi(lo, hi)); break;
        default: p[i] = (float)runi(lo, hi); break;
        }
        if (kind == FILL_SPECIAL && i % 7 == 2) p[i] = specials[(i / 7) % (sizeof specials / sizeof *specials)];
    }
}

static pc_val tc_leaf(tcase *t, pc_dtype dt, pc_shape s, fill_kind kind, double lo, double hi) {
    char name[16];
    snprintf(name, sizeof name, "x%d", t->nleaf);
    pc_val v = pc_input(t->g, name, dt, s);
    int64_t n = pc_shape_numel(s);
    t->leaf[t->nleaf] = v;
    t->numel[t->nleaf] = n;
    t->data[t->nleaf] = calloc((size_t)(n ? n : 1), 4);
    fill(t->data[t->nleaf], dt, n, kind, lo, hi);
    t->nleaf++;
    return v;
}

static void tc_out(tcase *t, pc_val v) {
    t->out[t->nout++] = v;
    pc_mark_output(t->g, v);
}

/* ---------------------------------------------------------------- lowering (test-only) */

typedef struct {
    tcase *t;
    pc_shape it;
    int ref[512]; /* per value: kernel ref + 1 (0 = not lowered) */
} lw;

/* element strides of a contiguous tensor `s` seen through iteration shape `it` (trailing
 * aligned, 0 on broadcast axes); all 0 when it does not broadcast (hyper-parameter vectors) */
static void bstrides(pc_shape s, pc_shape it, int64_t st[PC_MAX_RANK]) {
    int64_t m = 1;
    memset(st, 0, sizeof(int64_t) * PC_MAX_RANK);
    for (int a = it.rank - 1, b = s.rank - 1; a >= 0; a--, b--) {
        if (b < 0) continue;
        if (s.dim[b] == it.dim[a]) st[a] = m;
        else if (s.dim[b] != 1) {
            memset(st, 0, sizeof(int64_t) * PC_MAX_RANK);
            return;
        }
        m *= s.dim[b];
    }
}

static int leaf_index(tcase *t, pc_val v) {
    for (int i = 0; i < t->nleaf; i++)
        if (t->leaf[i] == v) return i;
    return -1;
}

static int new_input(lw *l, int leaf, const int64_t *st) {
    pc_kernel_desc *k = &l->t->k;
    int j = k->ninputs++;
    k->input[j].dtype = pc_val_dtype(l->t->g, l->t->leaf[leaf]);
    memcpy(k->input[j].stride, st, sizeof k->input[j].stride);
    l->t->kin_data[j] = l->t->data[leaf];
    return j;
}

static int lower_val(lw *l, pc_val v) {
    if (l->ref[v]) return l->ref[v] - 1;
    const pc_graph *g = l->t->g;
    const pc_value *n = pc_v(g, v);
    int r;
    int64_t st[PC_MAX_RANK];
    if (n->op == PC_OP_input) {
        bstrides(n->shape, l->it, st);
        r = new_input(l, leaf_index(l->t, v), st);
    } else if (n->op == PC_OP_broadcast) {
        r = lower_val(l, n->in[0]);
    } else if (n->op == PC_OP_transpose) { /* of a leaf, same rank as the iteration space */
        const pc_value *x = pc_v(g, n->in[0]);
        int64_t cs[PC_MAX_RANK], m = 1;
        for (int a = x->shape.rank - 1; a >= 0; a--) {
            cs[a] = m;
            m *= x->shape.dim[a];
        }
        for (int a = 0; a < n->shape.rank; a++) st[a] = cs[n->attr[0].ints[a]];
        r = new_input(l, leaf_index(l->t, n->in[0]), st);
    } else {
        pc_kinsn in;
        memset(&in, 0, sizeof in);
        in.op = n->op;
        in.nin = n->nin;
        in.dtype = n->dtype;
        memcpy(in.attr, n->attr, sizeof in.attr);
        for (int j = 0; j < n->nin; j++) {
            int o = lower_val(l, n->in[j]);
            in.in[j] = o;
        }
        pc_kernel_desc *k = &l->t->k;
        k->insn[k->ninsns] = in;
        r = -(k->ninsns++) - 1;
    }
    l->ref[v] = r + 1;
    return r;
}

/* lowers the outputs over iteration shape `it` into t->k */
static void tc_lower(tcase *t, pc_shape it) {
    lw *l = calloc(1, sizeof *l);
    l->t = t;
    l->it = it;
    memset(&t->k, 0, sizeof t->k);
    t->k.rank = it.rank;
    memcpy(t->k.dim, it.dim, sizeof t->k.dim);
    for (int o = 0; o < t->nout; o++) {
        int r = lower_val(l, t->out[o]);
        t->k.output[o] = -r - 1;
    }
    t->k.noutputs = t->nout;
    free(l);
}

/* ---------------------------------------------------------------- comparison */

typedef struct {
    int64_t maxulp; /* accepted ulp distance */
    double rtol, atol; /* or |a - b| <= atol + rtol |b| */
} tol;

typedef struct {
    int64_t worst_ulp;
    double worst_rel;
    int64_t bad;
    int64_t first_bad;
    double bad_got, bad_want;
} cmpres;

static void compare_f32(const float *got, const float *want, int64_t n, tol tl, cmpres *c) {
    for (int64_t i = 0; i < n; i++) {
        float a = got[i], b = want[i];
        bool ok;
        if (isnan(b) || isnan(a)) ok = isnan(a) && isnan(b);
        else if (isinf(b) || isinf(a)) ok = a == b;
        else {
            int64_t u = ulp_dist(a, b);
            double d = fabs((double)a - (double)b);
            if (u > c->worst_ulp) c->worst_ulp = u;
            if (b != 0 && fabs(b) > 1e-30 && d / fabs(b) > c->worst_rel) c->worst_rel = d / fabs(b);
            ok = u <= tl.maxulp || d <= tl.atol + tl.rtol * fabs((double)b);
        }
        if (!ok) {
            if (!c->bad) {
                c->first_bad = i;
                c->bad_got = a;
                c->bad_want = b;
            }
            c->bad++;
        }
    }
}

static pc_jit *g_jit; /* one JIT for the suite's comparison tests (names are unique) */
static int g_kcount;

static pc_jit *jit(void) {
    if (!g_jit) {
        char err[512];
        g_jit = pc_jit_new(err, sizeof err);
        if (!g_jit) fprintf(stderr, "pc_jit_new: %s\n", err);
    }
    return g_jit;
}

/* lowers, compiles, runs kernel and reference, compares every output; returns failures */
static int64_t tc_run(tcase *t, pc_shape it, tol tl, const char *label) {
    CU_ASSERT_PTR_NULL_FATAL(pc_graph_error(t->g));
    if (pc_graph_error(t->g)) {
        fprintf(stderr, "%s: %s\n", label, pc_graph_error(t->g));
        return 1;
    }
    tc_lower(t, it);
    char name[64];
    snprintf(name, sizeof name, "k%d_%s", g_kcount++, label);
    for (char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9'))) *p = '_';
    const char *names[1] = {name};
    pc_kernel_fn fn = NULL;
    int rc = pc_jit_compile(jit(), &t->k, names, 1, &fn, t->err, sizeof t->err);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc) {
        fprintf(stderr, "%s: %s\n", label, t->err);
        return 1;
    }
    int64_t n = pc_shape_numel(it);
    void *args[PC_K_MAX_IN + PC_K_MAX_OUT];
    void *outs[PC_K_MAX_OUT];
    for (int j = 0; j < t->k.ninputs; j++) args[j] = t->kin_data[j];
    for (int o = 0; o < t->nout; o++) {
        outs[o] = calloc((size_t)(n ? n : 1), 4);
        args[t->k.ninputs + o] = outs[o];
    }
    fn(args);
    pc_ref *r = pc_ref_new(t->g, t->err, sizeof t->err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    for (int i = 0; i < t->nleaf; i++) pc_ref_bind(r, t->leaf[i], t->data[i]);
    rc = pc_ref_run(r, t->err, sizeof t->err);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc) fprintf(stderr, "%s: reference: %s\n", label, t->err);
    int64_t bad = 0;
    for (int o = 0; o < t->nout && !rc; o++) {
        const void *want = pc_ref_data(r, t->out[o]);
        cmpres c = {0};
        if (pc_val_dtype(t->g, t->out[o]) == PC_I32) {
            for (int64_t i = 0; i < n; i++)
                if (((int32_t *)outs[o])[i] != ((const int32_t *)want)[i]) {
                    if (!c.bad) {
                        c.first_bad = i;
                        c.bad_got = ((int32_t *)outs[o])[i];
                        c.bad_want = ((const int32_t *)want)[i];
                    }
                    c.bad++;
                }
        } else {
            compare_f32(outs[o], want, n, tl, &c);
        }
        if (c.bad)
            fprintf(stderr, "\n  %s output %d: %lld mismatches, first at %lld: got %.9g want %.9g\n", label, o,
                    (long long)c.bad, (long long)c.first_bad, c.bad_got, c.bad_want);
        else if (tl.maxulp || tl.rtol || tl.atol)
            printf("\n    %-22s output %d: max %lld ulp, max rel err %.3g", label, o, (long long)c.worst_ulp, c.worst_rel);
        bad += c.bad;
    }
    CU_ASSERT_EQUAL(bad, 0);
    pc_ref_free(r);
    for (int o = 0; o < t->nout; o++) free(outs[o]);
    return bad;
}

static const tol EXACT = {0, 0, 0};

/* ---------------------------------------------------------------- per-op tests */

#define IT_SHAPE PC_SHAPE(4, 7, 33)

/* binary op(A [7,33], B [4,1,1]): iteration [4,7,33], strides [0,33,1] and [1,0,0] */
static void binary_case(pc_opcode op, pc_dtype dt, fill_kind kind, double lo, double hi, tol tl, const char *label) {
    tcase t;
    tc_init(&t);
    rseed((uint64_t)op * 31 + dt);
    pc_val a = tc_leaf(&t, dt, PC_SHAPE(7, 33), kind, lo, hi);
    pc_val b = tc_leaf(&t, dt, PC_SHAPE(4, 1, 1), kind, lo, hi);
    pc_val in[2] = {a, b};
    pc_val y = pc_node(t.g, PC_HERE, op, 2, in, NULL);
    tc_out(&t, y);
    /* the same op with the operands swapped, B [4,7,1] now broadcast along the last axis */
    pc_val c = tc_leaf(&t, dt, PC_SHAPE(4, 7, 1), kind, lo, hi);
    pc_val in2[2] = {c, a};
    tc_out(&t, pc_node(t.g, PC_HERE, op, 2, in2, NULL));
    tc_run(&t, IT_SHAPE, tl, label);
    tc_free(&t);
}

static void test_binary_f32(void) {
    pc_opcode ops[] = {PC_OP_add, PC_OP_sub, PC_OP_mul, PC_OP_div, PC_OP_maximum, PC_OP_minimum};
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
        binary_case(ops[i], PC_F32, FILL_SPECIAL, -3, 3, EXACT, pc_op_get(ops[i])->name);
    pc_opcode cmp[] = {PC_OP_eq, PC_OP_lt, PC_OP_gt};
    for (size_t i = 0; i < 3; i++) {
        binary_case(cmp[i], PC_F32, FILL_QUANT, -2, 2, EXACT, pc_op_get(cmp[i])->name);
        binary_case(cmp[i], PC_F32, FILL_SPECIAL, -2, 2, EXACT, pc_op_get(cmp[i])->name);
    }
}

static void test_binary_i32(void) {
    pc_opcode ops[] = {PC_OP_add, PC_OP_sub, PC_OP_mul, PC_OP_maximum, PC_OP_minimum, PC_OP_eq, PC_OP_lt, PC_OP_gt};
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
        binary_case(ops[i], PC_I32, FILL_INTFULL, 0, 0, EXACT, pc_op_get(ops[i])->name);
        binary_case(ops[i], PC_I32, FILL_INT, -3, 3, EXACT, pc_op_get(ops[i])->name);
    }
}

static void test_where(void) {
    for (int ci = 0; ci < 2; ci++)
        for (int vi = 0; vi < 2; vi++) {
            tcase t;
            tc_init(&t);
            rseed(99 + (uint64_t)(ci * 2 + vi));
            pc_dtype cd = ci ? PC_I32 : PC_F32, vd = vi ? PC_I32 : PC_F32;
            pc_val c = tc_leaf(&t, cd, PC_SHAPE(4, 1, 1), ci ? FILL_INT : FILL_QUANT, -1, 1);
            if (!ci) ((float *)t.data[0])[3] = NAN; /* NaN != 0: true */
            pc_val a = tc_leaf(&t, vd, PC_SHAPE(7, 33), vi ? FILL_INTFULL : FILL_SPECIAL, -5, 5);
            pc_val b = tc_leaf(&t, vd, PC_SHAPE(4, 7, 33), vi ? FILL_INTFULL : FILL_SPECIAL, -5, 5);
            tc_out(&t, pc_where(t.g, c, a, b));
            /* the condition dense, the values broadcast */
            pc_val c2 = tc_leaf(&t, cd, PC_SHAPE(4, 7, 33), ci ? FILL_INT : FILL_QUANT, -1, 1);
            tc_out(&t, pc_where(t.g, c2, b, a));
            tc_run(&t, IT_SHAPE, EXACT, "where");
            tc_free(&t);
        }
}

typedef struct {
    pc_opcode op;
    const char *label;
    fill_kind kind;
    double lo, hi;
    tol tl;
    double a0, a1; /* attributes (scale alpha/beta, gelu approximate) */
} ucase;

/* unary op(broadcast(A [7,33])) and op(A [4,7,33]) dense; also op(transpose(A [33,7,4])) */
static void unary_case(const ucase *u, pc_dtype dt) {
    tcase t;
    tc_init(&t);
    uint64_t h = 7;
    for (const char *c = u->label; *c; c++) h = h * 131 + (unsigned char)*c;
    rseed(h);
    pc_attr at[PC_MAX_ATTRS];
    pc_attr_defaults(u->op, at);
    if (u->op == PC_OP_scale) at[0].f = u->a0, at[1].f = u->a1;
    if (u->op == PC_OP_gelu || u->op == PC_OP_cast) at[0].i = (int64_t)u->a0;
    pc_val a = tc_leaf(&t, dt, PC_SHAPE(7, 33), u->kind, u->lo, u->hi);
    pc_val ab = pc_broadcast(t.g, a, IT_SHAPE);
    tc_out(&t, pc_node(t.g, PC_HERE, u->op, 1, &ab, at));
    pc_val d = tc_leaf(&t, dt, IT_SHAPE, u->kind, u->lo, u->hi);
    tc_out(&t, pc_node(t.g, PC_HERE, u->op, 1, &d, at));
    pc_val e = tc_leaf(&t, dt, PC_SHAPE(33, 7, 4), u->kind, u->lo, u->hi);
    pc_val et = pc_transpose(t.g, e, 3, (int64_t[]){2, 1, 0});
    tc_out(&t, pc_node(t.g, PC_HERE, u->op, 1, &et, at));
    tc_run(&t, IT_SHAPE, u->tl, u->label);
    tc_free(&t);
}

static void test_unary_simple(void) {
    const ucase cases[] = {
        {PC_OP_neg, "neg", FILL_SPECIAL, -5, 5, EXACT, 0, 0},
        {PC_OP_scale, "scale", FILL_SPECIAL, -5, 5, EXACT, 1.7, -0.3},
        {PC_OP_scale, "scale2", FILL_SPECIAL, -5, 5, EXACT, -1e-3, 1e30},
        {PC_OP_sqrt, "sqrt", FILL_SPECIAL, 0, 100, EXACT, 0, 0},
        {PC_OP_sqrt, "sqrt_wide", FILL_POSLOG, -149, 128, EXACT, 0, 0},
        {PC_OP_rsqrt, "rsqrt", FILL_SPECIAL, 0, 100, {1, 0, 0}, 0, 0},
        {PC_OP_rsqrt, "rsqrt_wide", FILL_POSLOG, -149, 128, {1, 0, 0}, 0, 0},
        {PC_OP_square, "square", FILL_SPECIAL, -1e20, 1e20, EXACT, 0, 0},
        {PC_OP_abs, "abs", FILL_SPECIAL, -5, 5, EXACT, 0, 0},
        {PC_OP_relu, "relu", FILL_SPECIAL, -5, 5, EXACT, 0, 0},
        {PC_OP_cast, "cast_f32_f32", FILL_SPECIAL, -5, 5, EXACT, 0, 0},
        {PC_OP_cast, "cast_f32_i32", FILL_SPECIAL, -5e9, 5e9, EXACT, 1, 0},
        {PC_OP_cast, "cast_f32_i32s", FILL_UNIFORM, -9, 9, EXACT, 1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) unary_case(&cases[i], PC_F32);
    const ucase icases[] = {
        {PC_OP_neg, "neg_i32", FILL_INTFULL, 0, 0, EXACT, 0, 0},
        {PC_OP_scale, "scale_i32", FILL_INTFULL, 0, 0, EXACT, 2.5, -1},
        {PC_OP_scale, "scale_i32b", FILL_INT, -100, 100, EXACT, -0.37, 0.5},
        {PC_OP_cast, "cast_i32_f32", FILL_INTFULL, 0, 0, EXACT, 0, 0},
        {PC_OP_cast, "cast_i32_i32", FILL_INTFULL, 0, 0, EXACT, 1, 0},
    };
    for (size_t i = 0; i < sizeof icases / sizeof *icases; i++) unary_case(&icases[i], PC_I32);
}

/* transcendental ops: a few ulp; atol covers the reference's own cancellation (gelu) and
 * results in the denormal range */
static void test_unary_math(void) {
    const tol T1 = {1, 0, 0}, T2 = {2, 0, 0}, T3 = {3, 0, 0};
    const tol TG = {3, 0, 1e-14}; /* the reference loses accuracy for x < -5 (1 + erf, 1 + tanh) */
    const ucase cases[] = {
        {PC_OP_exp, "exp", FILL_SPECIAL, -110, 95, {1, 0, 0}, 0, 0},
        {PC_OP_exp, "exp_small", FILL_LOGUNI, -30, 3, {1, 0, 0}, 0, 0},
        {PC_OP_log, "log", FILL_SPECIAL, 0, 1e6, {1, 0, 0}, 0, 0},
        {PC_OP_log, "log_wide", FILL_POSLOG, -149, 128, {1, 0, 0}, 0, 0},
        {PC_OP_log, "log_near1", FILL_UNIFORM, 0.8, 1.25, {1, 0, 0}, 0, 0},
        {PC_OP_tanh, "tanh", FILL_SPECIAL, -12, 12, T1, 0, 0},
        {PC_OP_tanh, "tanh_small", FILL_LOGUNI, -30, 1, T1, 0, 0},
        {PC_OP_sigmoid, "sigmoid", FILL_SPECIAL, -120, 120, T2, 0, 0},
        {PC_OP_sigmoid, "sigmoid_mid", FILL_UNIFORM, -8, 8, T2, 0, 0},
        {PC_OP_silu, "silu", FILL_SPECIAL, -120, 120, T3, 0, 0},
        {PC_OP_silu, "silu_mid", FILL_UNIFORM, -8, 8, T3, 0, 0},
        {PC_OP_gelu, "gelu_erf", FILL_SPECIAL, -15, 15, TG, 0, 0},
        {PC_OP_gelu, "gelu_erf_mid", FILL_UNIFORM, -5, 5, TG, 0, 0},
        {PC_OP_gelu, "gelu_erf_small", FILL_LOGUNI, -40, 2, TG, 0, 0},
        {PC_OP_gelu, "gelu_tanh", FILL_SPECIAL, -15, 15, TG, 1, 0},
        {PC_OP_gelu, "gelu_tanh_mid", FILL_UNIFORM, -5, 5, TG, 1, 0},
        {PC_OP_gelu, "gelu_tanh_small", FILL_LOGUNI, -40, 2, TG, 1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) unary_case(&cases[i], PC_F32);
}

/* dropout: masks and values bit-identical to the reference */
static void test_dropout(void) {
    const double ps[] = {0.0, 0.1, 0.3, 0.5, 0.9, 1e-9, 0.999999};
    const int32_t seeds[] = {0, 42, -5, INT32_MIN};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++)
        for (size_t s = 0; s < sizeof seeds / sizeof *seeds; s++) {
            tcase t;
            tc_init(&t);
            rseed(i * 11 + s);
            pc_val x = tc_leaf(&t, PC_F32, IT_SHAPE, FILL_SPECIAL, -3, 3);
            pc_val seed = tc_leaf(&t, PC_I32, PC_SCALAR, FILL_INT, 0, 0);
            *(int32_t *)t.data[1] = seeds[s];
            tc_out(&t, pc_dropout(t.g, x, seed, ps[i], (int64_t)(i * 1000 + 7)));
            /* broadcast input (the index is the iteration space's) */
            pc_val y = tc_leaf(&t, PC_F32, PC_SHAPE(7, 33), FILL_UNIFORM, -3, 3);
            tc_out(&t, pc_dropout(t.g, pc_broadcast(t.g, y, IT_SHAPE), seed, ps[i], -3));
            tc_run(&t, IT_SHAPE, EXACT, "dropout");
            tc_free(&t);
        }
}

static pc_val op4(tcase *t, const char *op, pc_val a, pc_val b, pc_val c, pc_val d) {
    pc_val in[4] = {a, b, c, d};
    return pc_op(t->g, op, 4, in, 0, NULL);
}

static void fill_hp(float *hp, float max_norm, float step) {
    hp[0] = 1e-3f, hp[1] = 0.9f, hp[2] = 0.999f, hp[3] = 1e-8f, hp[4] = 0.01f, hp[5] = step, hp[6] = max_norm, hp[7] = 0;
}

/* the AdamW update in one kernel: clip_coef, adamw_m, adamw_v, adamw_p; bit-identical */
static void test_adamw(void) {
    const float norms[] = {0.0f, 0.5f, 1e6f, -1.0f};
    for (int ni = 0; ni < 4; ni++) {
        tcase t;
        tc_init(&t);
        rseed(5 + (uint64_t)ni);
        pc_shape s = PC_SHAPE(3, 7, 33);
        pc_val p = tc_leaf(&t, PC_F32, s, FILL_UNIFORM, -1, 1);
        pc_val g = tc_leaf(&t, PC_F32, s, FILL_UNIFORM, -0.1, 0.1);
        pc_val m = tc_leaf(&t, PC_F32, s, FILL_UNIFORM, -0.01, 0.01);
        pc_val v = tc_leaf(&t, PC_F32, s, FILL_UNIFORM, 0, 1e-4);
        pc_val hp = tc_leaf(&t, PC_F32, PC_SHAPE(8), FILL_UNIFORM, 0, 0);
        pc_val ss = tc_leaf(&t, PC_F32, PC_SCALAR, FILL_UNIFORM, 0, 0);
        fill_hp(t.data[4], norms[ni], (float)(ni * 3 + 1));
        *(float *)t.data[5] = 2.25f;
        pc_val in2[2] = {ss, hp};
        pc_val gs = pc_op(t.g, "clip_coef", 2, in2, 0, NULL);
        pc_val m2 = op4(&t, "adamw_m", m, g, hp, gs);
        pc_val v2 = op4(&t, "adamw_v", v, g, hp, gs);
        pc_val p2 = op4(&t, "adamw_p", p, m2, v2, hp);
        tc_out(&t, m2);
        tc_out(&t, v2);
        tc_out(&t, p2);
        tc_run(&t, s, EXACT, "adamw");
        tc_free(&t);
    }
    /* clip_coef alone in a rank-0 kernel */
    const float sumsq[] = {0.0f, 4.0f, 1e10f, NAN, INFINITY};
    for (int i = 0; i < 5; i++) {
        tcase t;
        tc_init(&t);
        pc_val ss = tc_leaf(&t, PC_F32, PC_SCALAR, FILL_UNIFORM, 0, 0);
        pc_val hp = tc_leaf(&t, PC_F32, PC_SHAPE(8), FILL_UNIFORM, 0, 0);
        *(float *)t.data[0] = sumsq[i];
        fill_hp(t.data[1], i == 4 ? NAN : 1.0f, 1);
        pc_val in2[2] = {ss, hp};
        tc_out(&t, pc_op(t.g, "clip_coef", 2, in2, 0, NULL));
        tc_run(&t, PC_SCALAR, EXACT, "clip_coef");
        tc_free(&t);
    }
}

/* ---------------------------------------------------------------- fused chains */

/* SwiGLU-style chain with a bias, residual and several outputs: 14 ops, 4 outputs */
static void test_fused_chain(void) {
    tcase t;
    tc_init(&t);
    rseed(77);
    pc_shape s = PC_SHAPE(5, 9, 40);
    pc_val gate = tc_leaf(&t, PC_F32, s, FILL_UNIFORM, -6, 6);
    pc_val up = tc_leaf(&t, PC_F32, s, FILL_UNIFORM, -2, 2);
    pc_val bias = tc_leaf(&t, PC_F32, PC_SHAPE(40), FILL_UNIFORM, -1, 1);
    pc_val res = tc_leaf(&t, PC_F32, PC_SHAPE(5, 1, 40), FILL_UNIFORM, -1, 1);
    pc_val sc = tc_leaf(&t, PC_F32, PC_SCALAR, FILL_UNIFORM, 0.5, 1.5);
    pc_val seed = tc_leaf(&t, PC_I32, PC_SCALAR, FILL_INT, 1, 1000);
    pc_val h = pc_mul(t.g, pc_silu(t.g, pc_add(t.g, gate, bias)), up);    /* 3 */
    pc_val y = pc_add(t.g, pc_mul(t.g, h, sc), res);                       /* 5 */
    pc_val z = pc_gelu(t.g, pc_scale(t.g, y, 0.5, 0.1), 0);                /* 7 */
    pc_val w = pc_where(t.g, pc_gt(t.g, y, res), pc_tanh(t.g, z), pc_neg(t.g, pc_sigmoid(t.g, y))); /* 12 */
    pc_val d = pc_dropout(t.g, w, seed, 0.25, 3);                          /* 13 */
    pc_val e = pc_exp(t.g, pc_minimum(t.g, y, pc_sqrt(t.g, pc_abs(t.g, up)))); /* 16 */
    tc_out(&t, h);
    tc_out(&t, y);
    tc_out(&t, d);
    tc_out(&t, e);
    tc_run(&t, s, (tol){4, 1e-6, 1e-7}, "swiglu_chain");
    CU_ASSERT(t.k.ninsns >= 10);
    tc_free(&t);
}

/* strides that collapse (dense 4-d), strides that do not (broadcast middle axes, transposes) */
static void test_layouts(void) {
    tcase t;
    tc_init(&t);
    rseed(3);
    pc_shape s = PC_SHAPE(2, 3, 5, 64);
    pc_val a = tc_leaf(&t, PC_F32, s, FILL_UNIFORM, -2, 2);
    pc_val b = tc_leaf(&t, PC_F32, PC_SHAPE(3, 1, 64), FILL_UNIFORM, -2, 2);
    pc_val c = tc_leaf(&t, PC_F32, PC_SHAPE(2, 1, 1, 1), FILL_UNIFORM, -2, 2);
    pc_val e = tc_leaf(&t, PC_F32, PC_SHAPE(64, 5, 3, 2), FILL_UNIFORM, -2, 2);
    pc_val et = pc_transpose(t.g, e, 4, (int64_t[]){3, 2, 1, 0});
    tc_out(&t, pc_add(t.g, pc_mul(t.g, a, b), c));
    tc_out(&t, pc_sub(t.g, et, a));
    tc_out(&t, pc_exp(t.g, a));
    tc_run(&t, s, (tol){1, 0, 0}, "layouts");
    tc_free(&t);
    /* size-1 axes everywhere, and a 6-d space */
    tc_init(&t);
    pc_shape s6 = PC_SHAPE(1, 3, 1, 2, 5, 17);
    pc_val x = tc_leaf(&t, PC_F32, s6, FILL_UNIFORM, -2, 2);
    pc_val y = tc_leaf(&t, PC_F32, PC_SHAPE(3, 1, 1, 1, 17), FILL_UNIFORM, -2, 2);
    tc_out(&t, pc_maximum(t.g, x, y));
    tc_run(&t, s6, EXACT, "rank6");
    tc_free(&t);
}

/* rank-0 kernel, all-ones shape, and zero-size spaces (no memory is touched) */
static void test_rank0_and_empty(void) {
    tcase t;
    tc_init(&t);
    rseed(8);
    pc_val a = tc_leaf(&t, PC_F32, PC_SCALAR, FILL_UNIFORM, -2, 2);
    pc_val b = tc_leaf(&t, PC_F32, PC_SCALAR, FILL_UNIFORM, -2, 2);
    tc_out(&t, pc_add(t.g, pc_exp(t.g, a), b));
    tc_out(&t, pc_cast(t.g, pc_scale(t.g, b, 1000, 0), PC_I32));
    tc_run(&t, PC_SCALAR, (tol){1, 0, 0}, "rank0");
    tc_free(&t);

    tc_init(&t);
    pc_val c = tc_leaf(&t, PC_F32, PC_SHAPE(1, 1, 1), FILL_UNIFORM, -2, 2);
    tc_out(&t, pc_silu(t.g, c));
    tc_run(&t, PC_SHAPE(1, 1, 1), (tol){2, 0, 0}, "ones");
    tc_free(&t);

    const int64_t dims[][3] = {{3, 0, 5}, {0, 4, 4}, {2, 2, 0}};
    for (int i = 0; i < 3; i++) {
        pc_kernel_desc k;
        memset(&k, 0, sizeof k);
        k.rank = 3;
        memcpy(k.dim, dims[i], sizeof dims[i]);
        k.ninputs = 2;
        k.input[0].dtype = PC_F32;
        k.input[0].stride[2] = 1;
        k.input[1].dtype = PC_I32;
        k.ninsns = 2;
        k.insn[0] = (pc_kinsn){.op = PC_OP_dropout, .nin = 2, .in = {0, 1}, .dtype = PC_F32};
        k.insn[0].attr[0].f = 0.5;
        k.insn[1] = (pc_kinsn){.op = PC_OP_exp, .nin = 1, .in = {-1}, .dtype = PC_F32};
        k.noutputs = 2;
        k.output[0] = 0;
        k.output[1] = 1;
        char name[32], err[512];
        snprintf(name, sizeof name, "empty%d", i);
        const char *names[1] = {name};
        pc_kernel_fn fn = NULL;
        CU_ASSERT_EQUAL_FATAL(pc_jit_compile(jit(), &k, names, 1, &fn, err, sizeof err), 0);
        void *args[4] = {NULL, NULL, NULL, NULL}; /* must not be dereferenced */
        fn(args);
    }
}

/* several kernels in one module, and successive modules in one JIT */
static void test_multi_kernel_module(void) {
    char err[512];
    pc_jit *j = pc_jit_new(err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    pc_kernel_desc k[3];
    memset(k, 0, sizeof k);
    for (int i = 0; i < 3; i++) {
        k[i].rank = 1;
        k[i].dim[0] = 100 + i;
        k[i].ninputs = 1;
        k[i].input[0].dtype = PC_F32;
        k[i].input[0].stride[0] = 1;
        k[i].ninsns = 1;
        k[i].insn[0] = (pc_kinsn){.op = PC_OP_scale, .nin = 1, .in = {0}, .dtype = PC_F32};
        k[i].insn[0].attr[0].f = i + 1;
        k[i].insn[0].attr[1].f = 0;
        k[i].noutputs = 1;
    }
    const char *names[3] = {"mk_a", "mk_b", "mk_c"};
    pc_kernel_fn fns[3];
    CU_ASSERT_EQUAL_FATAL(pc_jit_compile(j, k, names, 3, fns, err, sizeof err), 0);
    const char *names2[1] = {"mk_d"};
    pc_kernel_fn fn4;
    CU_ASSERT_EQUAL_FATAL(pc_jit_compile(j, k, names2, 1, &fn4, err, sizeof err), 0);
    /* a name defined by an earlier module is an error, and the JIT stays usable */
    pc_kernel_fn dup = NULL;
    CU_ASSERT_NOT_EQUAL(pc_jit_compile(j, k, names, 1, &dup, err, sizeof err), 0);
    CU_ASSERT_PTR_NULL(dup);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "mk_a"));
    float x[102], y[102];
    for (int i = 0; i < 102; i++) x[i] = (float)i;
    for (int f = 0; f < 3; f++) {
        memset(y, 0, sizeof y);
        void *args[2] = {x, y};
        fns[f](args);
        for (int i = 0; i < 100 + f; i++) CU_ASSERT_EQUAL(y[i], (float)(i * (f + 1)));
    }
    void *args[2] = {x, y};
    fn4(args);
    CU_ASSERT_EQUAL(y[99], 99.0f);
    pc_jit_free(j);
}

/* errors are messages, never aborts */
static void test_errors(void) {
    char err[512];
    pc_jit *j = jit();
    pc_kernel_desc k;
    memset(&k, 0, sizeof k);
    k.rank = 1;
    k.dim[0] = 8;
    k.ninputs = 1;
    k.input[0].dtype = PC_F32;
    k.input[0].stride[0] = 1;
    k.ninsns = 1;
    k.insn[0] = (pc_kinsn){.op = PC_OP_matmul, .nin = 2, .in = {0, 0}, .dtype = PC_F32};
    k.noutputs = 1;
    const char *nm[1] = {"bad1"};
    pc_kernel_fn fn;
    CU_ASSERT_NOT_EQUAL(pc_jit_compile(j, &k, nm, 1, &fn, err, sizeof err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not supported"));
    k.insn[0] = (pc_kinsn){.op = PC_OP_rope, .nin = 2, .in = {0, 0}, .dtype = PC_F32};
    CU_ASSERT_NOT_EQUAL(pc_jit_compile(j, &k, nm, 1, &fn, err, sizeof err), 0);
    k.insn[0] = (pc_kinsn){.op = PC_OP_exp, .nin = 1, .in = {0}, .dtype = PC_I32}; /* wrong result dtype */
    CU_ASSERT_NOT_EQUAL(pc_jit_compile(j, &k, nm, 1, &fn, err, sizeof err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "dtype"));
    k.insn[0] = (pc_kinsn){.op = PC_OP_exp, .nin = 1, .in = {-1}, .dtype = PC_F32}; /* self reference */
    CU_ASSERT_NOT_EQUAL(pc_jit_compile(j, &k, nm, 1, &fn, err, sizeof err), 0);
    k.insn[0] = (pc_kinsn){.op = PC_OP_div, .nin = 2, .in = {0, 0}, .dtype = PC_I32};
    k.input[0].dtype = PC_I32;
    CU_ASSERT_NOT_EQUAL(pc_jit_compile(j, &k, nm, 1, &fn, err, sizeof err), 0);
    k.input[0].dtype = PC_BF16;
    k.insn[0] = (pc_kinsn){.op = PC_OP_exp, .nin = 1, .in = {0}, .dtype = PC_F32};
    CU_ASSERT_NOT_EQUAL(pc_jit_compile(j, &k, nm, 1, &fn, err, sizeof err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "bf16"));
    k.input[0].dtype = PC_F32;
    k.insn[0].attr[0].i = 0;
    k.output[0] = 3;
    CU_ASSERT_NOT_EQUAL(pc_jit_compile(j, &k, nm, 1, &fn, err, sizeof err), 0);
    k.output[0] = 0;
    const char *badname[1] = {"1abc"};
    CU_ASSERT_NOT_EQUAL(pc_jit_compile(j, &k, badname, 1, &fn, err, sizeof err), 0);
    const char *two[2] = {"same", "same"};
    pc_kernel_desc k2[2] = {k, k};
    pc_kernel_fn f2[2];
    CU_ASSERT_NOT_EQUAL(pc_jit_compile(j, k2, two, 2, f2, err, sizeof err), 0);
    /* an adamw whose hyper-parameters are computed is refused */
    pc_kernel_desc ka = k;
    ka.insn[0] = (pc_kinsn){.op = PC_OP_adamw_m, .nin = 4, .in = {0, 0, -1, 0}, .dtype = PC_F32};
    CU_ASSERT_NOT_EQUAL(pc_jit_compile(j, &ka, nm, 1, &fn, err, sizeof err), 0);
    /* dropout p out of range */
    pc_kernel_desc kd = k;
    kd.ninputs = 2;
    kd.input[1].dtype = PC_I32;
    kd.insn[0] = (pc_kinsn){.op = PC_OP_dropout, .nin = 2, .in = {0, 1}, .dtype = PC_F32};
    kd.insn[0].attr[0].f = 1.0;
    CU_ASSERT_NOT_EQUAL(pc_jit_compile(j, &kd, nm, 1, &fn, err, sizeof err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "p = 1"));
    /* and the JIT still works */
    CU_ASSERT_EQUAL(pc_jit_compile(j, &k, nm, 1, &fn, err, sizeof err), 0);
    CU_ASSERT_PTR_NULL(pc_llvm_kernel_ir(&kd, "bad2", err, sizeof err));
    CU_ASSERT_NOT_EQUAL(pc_llvm_emit_object(&kd, nm, 1, "/nonexistent/x.o", err, sizeof err), 0);
    CU_ASSERT_NOT_EQUAL(pc_llvm_emit_object(&k, nm, 1, "/nonexistent/x.o", err, sizeof err), 0);
}

/* ---------------------------------------------------------------- AOT and IR text */

static void swiglu_desc(pc_kernel_desc *k, int64_t n) {
    memset(k, 0, sizeof *k);
    k->rank = 1;
    k->dim[0] = n;
    k->ninputs = 2;
    k->input[0] = (pc_kinput){.dtype = PC_F32, .stride = {1}};
    k->input[1] = (pc_kinput){.dtype = PC_F32, .stride = {1}};
    k->ninsns = 2;
    k->insn[0] = (pc_kinsn){.op = PC_OP_silu, .nin = 1, .in = {0}, .dtype = PC_F32};
    k->insn[1] = (pc_kinsn){.op = PC_OP_mul, .nin = 2, .in = {-1, 1}, .dtype = PC_F32};
    k->noutputs = 1;
    k->output[0] = 1;
}

static void exp_desc(pc_kernel_desc *k, int64_t n) {
    memset(k, 0, sizeof *k);
    k->rank = 1;
    k->dim[0] = n;
    k->ninputs = 1;
    k->input[0] = (pc_kinput){.dtype = PC_F32, .stride = {1}};
    k->ninsns = 1;
    k->insn[0] = (pc_kinsn){.op = PC_OP_exp, .nin = 1, .in = {0}, .dtype = PC_F32};
    k->noutputs = 1;
}

static bool file_contains(const char *path, const char *needle) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    bool found = memmem(buf, got, needle, strlen(needle)) != NULL;
    free(buf);
    return found;
}

static void test_object_and_ir(void) {
    char err[512];
    pc_kernel_desc k[2];
    swiglu_desc(&k[0], 1000);
    exp_desc(&k[1], 4096);
    const char *names[2] = {"peftc_swiglu_k", "peftc_exp_k"};
    char path[] = "/tmp/peftc_llvm_obj_XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    close(fd);
    CU_ASSERT_EQUAL(pc_llvm_emit_object(k, names, 2, path, err, sizeof err), 0);
    CU_ASSERT(file_contains(path, "peftc_swiglu_k"));
    CU_ASSERT(file_contains(path, "peftc_exp_k"));
    CU_ASSERT(file_contains(path, "\177ELF"));
    const char *keep = getenv("PEFTC_KEEP_OBJ");
    if (keep) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "cp %s %s", path, keep);
        if (system(cmd) != 0) fprintf(stderr, "cannot copy %s\n", path);
    }
    unlink(path);
    char *ir = pc_llvm_kernel_ir(&k[0], "peftc_swiglu_k", err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ir);
    CU_ASSERT_PTR_NOT_NULL(strstr(ir, "define"));
    CU_ASSERT_PTR_NOT_NULL(strstr(ir, "@peftc_swiglu_k("));
    CU_ASSERT_PTR_NOT_NULL(strstr(ir, "noalias"));
    free(ir);
}

/* ---------------------------------------------------------------- math sweeps against libm */

typedef double (*dfn)(double);
static double d_exp(double x) { return exp(x); }
static double d_log(double x) { return log(x); }
static double d_tanh(double x) { return tanh(x); }
static double d_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
static double d_silu(double x) { return x / (1.0 + exp(-x)); }
static double d_gelu(double x) { return 0.5 * x * erfc(-x / sqrt(2.0)); } /* accurate in the tail */
static double d_gelu_t(double x) {
    double u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    return x / (1.0 + exp(-2.0 * u)); /* = 0.5 x (1 + tanh u), accurate in the tail */
}

typedef struct {
    pc_opcode op;
    int approx;
    const char *name;
    dfn ref;
    int64_t maxulp;
} mcase;

static const mcase g_math[] = {
    {PC_OP_exp, 0, "exp", d_exp, 1},         {PC_OP_log, 0, "log", d_log, 1},
    {PC_OP_tanh, 0, "tanh", d_tanh, 1},      {PC_OP_sigmoid, 0, "sigmoid", d_sigmoid, 2},
    {PC_OP_silu, 0, "silu", d_silu, 3},      {PC_OP_gelu, 0, "gelu_erf", d_gelu, 3},
    {PC_OP_gelu, 1, "gelu_tanh", d_gelu_t, 3},
};

/* every f32 bit pattern (PEFTC_EXHAUSTIVE=1) or 2^22 random patterns plus a dense [-20,20]
 * grid; reports the worst ulp error of each math op against libm in double */
static void test_math_sweep(void) {
    bool full = getenv("PEFTC_EXHAUSTIVE") != NULL;
    const int64_t chunk = 1 << 22;
    float *x = malloc(chunk * 4), *y = malloc(chunk * 4);
    for (size_t mi = 0; mi < sizeof g_math / sizeof *g_math; mi++) {
        const mcase *mc = &g_math[mi];
        pc_kernel_desc k;
        exp_desc(&k, chunk);
        k.insn[0].op = mc->op;
        k.insn[0].attr[0].i = mc->approx;
        char name[32], err[512];
        snprintf(name, sizeof name, "sweep_%s", mc->name);
        const char *names[1] = {name};
        pc_kernel_fn fn;
        CU_ASSERT_EQUAL_FATAL(pc_jit_compile(jit(), &k, names, 1, &fn, err, sizeof err), 0);
        int64_t worst = 0, bad = 0;
        float worst_x = 0;
        int64_t nchunks = full ? ((int64_t)1 << 32) / chunk : 2;
        if (PC_SANITIZED && !full) nchunks = 1;
        rseed(mi);
        for (int64_t c = 0; c < nchunks; c++) {
            for (int64_t i = 0; i < chunk; i++) {
                if (full) x[i] = bitsf((uint32_t)(c * chunk + i));
                else if (c == 0) x[i] = (float)(-20.0 + 40.0 * (double)i / (double)chunk);
                else x[i] = bitsf((uint32_t)rbits());
            }
            void *args[2] = {x, y};
            fn(args);
            for (int64_t i = 0; i < chunk; i++) {
                float want = (float)mc->ref((double)x[i]);
                float got = y[i];
                if (isnan(want) || isnan(got)) {
                    if (isnan(want) != isnan(got)) bad++;
                    continue;
                }
                int64_t u = ulp_dist(got, want);
                if (u > worst) worst = u, worst_x = x[i];
            }
        }
        printf("\n    %-10s worst %lld ulp (at x = %.9g) over %s", mc->name, (long long)worst, worst_x,
               full ? "every f32" : "2^22 grid [-20,20] + 2^22 random bit patterns");
        CU_ASSERT(worst <= mc->maxulp);
        CU_ASSERT_EQUAL(bad, 0);
    }
    free(x);
    free(y);
}

/* ---------------------------------------------------------------- throughput and compile time */

static double median(double *v, int n) {
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (v[j] < v[i]) {
                double t = v[i];
                v[i] = v[j];
                v[j] = t;
            }
    return v[n / 2];
}

static void test_throughput(void) {
    const int64_t n = PC_SANITIZED ? (1 << 20) : (16 << 20);
    float *a = malloc((size_t)n * 4), *b = malloc((size_t)n * 4), *o = malloc((size_t)n * 4);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    for (int64_t i = 0; i < n; i++) a[i] = (float)((i % 1000) * 0.01 - 5), b[i] = 1.0f, o[i] = 0;
    char err[512];
    pc_kernel_desc k[4];
    exp_desc(&k[0], n);
    swiglu_desc(&k[1], n);
    exp_desc(&k[2], n);
    k[2].insn[0].op = PC_OP_gelu;
    exp_desc(&k[3], n);
    k[3].insn[0].op = PC_OP_scale;
    k[3].insn[0].attr[0].f = 2;
    const char *names[4] = {"tp_exp", "tp_swiglu", "tp_gelu", "tp_scale"};
    const int nbytes[4] = {8, 12, 8, 8};
    pc_kernel_fn fns[4];
    double t0 = now();
    CU_ASSERT_EQUAL_FATAL(pc_jit_compile(jit(), k, names, 4, fns, err, sizeof err), 0);
    double t1 = now();
    printf("\n    compile (build + O3 + JIT) of a 4-kernel module: %.1f ms", 1e3 * (t1 - t0));
    for (int f = 0; f < 4; f++) {
        void *args[3] = {a, f == 1 ? (void *)b : (void *)o, o};
        double ts[7];
        for (int r = 0; r < 7; r++) {
            double s = now();
            fns[f](args);
            ts[r] = now() - s;
        }
        double best = ts[0];
        for (int r = 1; r < 7; r++) best = ts[r] < best ? ts[r] : best;
        double med = median(ts, 7);
        printf("\n    %-10s %lldM elements: median %.2f ms = %.1f GB/s (best %.1f GB/s)", names[f], (long long)(n >> 20),
               1e3 * med, (double)n * nbytes[f] / med * 1e-9, (double)n * nbytes[f] / best * 1e-9);
    }
    /* compile time of single small kernels (warm) */
    double ts[9];
    for (int r = 0; r < 9; r++) {
        pc_kernel_desc kk;
        swiglu_desc(&kk, 4096);
        char nm[32];
        snprintf(nm, sizeof nm, "ct_%d", r);
        const char *nn[1] = {nm};
        pc_kernel_fn fn;
        double s = now();
        CU_ASSERT_EQUAL(pc_jit_compile(jit(), &kk, nn, 1, &fn, err, sizeof err), 0);
        ts[r] = now() - s;
    }
    printf("\n    compile of one small kernel (silu*mul): median %.1f ms", 1e3 * median(ts, 9));
    free(a);
    free(b);
    free(o);
}

static void test_cleanup(void) {
    pc_jit_free(g_jit);
    g_jit = NULL;
}

static CU_TestInfo tests[] = {
    {"binary_f32", test_binary_f32},
    {"binary_i32", test_binary_i32},
    {"where", test_where},
    {"unary_simple", test_unary_simple},
    {"unary_math", test_unary_math},
    {"dropout", test_dropout},
    {"adamw", test_adamw},
    {"fused_chain", test_fused_chain},
    {"layouts", test_layouts},
    {"rank0_and_empty", test_rank0_and_empty},
    {"multi_kernel_module", test_multi_kernel_module},
    {"errors", test_errors},
    {"object_and_ir", test_object_and_ir},
    {"math_sweep", test_math_sweep},
    {"throughput", test_throughput},
    {"cleanup", test_cleanup},
    CU_TEST_INFO_NULL,
};

PC_TEST_MAIN("llvm_kernels", tests)
