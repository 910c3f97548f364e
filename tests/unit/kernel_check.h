/* Shared harness of test_llvm_kernels_ops.c and test_llvm_kernels_fused.c: the LLVM kernel
 * backend (backend/llvm_*.c) against the reference interpreter. A graph built with the DSL is
 * "lowered" here to one pc_kernel_desc (leaves become kernel inputs with broadcast / transposed
 * strides, elementwise nodes become instructions); both run and are compared with per-op
 * tolerances (exact for the ops that are meant to be bit-identical). */
#ifndef PEFTC_KERNEL_CHECK_H
#define PEFTC_KERNEL_CHECK_H
#include "backend/kernel.h"
#include "backend/ref.h"
#include "cu_main.h"
#include "test_rng.h"
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
static inline void rseed(uint64_t s) { g_rng = s * 0x9e3779b97f4a7c15ull + 1; }
static inline uint64_t rbits(void) { return test_rng_bits(&g_rng); }
static inline double rnd(void) { return (double)(rbits() >> 11) * 0x1.0p-53; }
static inline double runi(double lo, double hi) { return lo + (hi - lo) * rnd(); }

static inline double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float bitsf(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
/* distance in representable floats (0 for equal values, +0 == -0) */
static inline int64_t ulp_dist(float a, float b) {
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

static inline void tc_init(tcase *t) {
    memset(t, 0, sizeof *t);
    t->g = pc_graph_new("t");
}
static inline void tc_free(tcase *t) {
    for (int i = 0; i < t->nleaf; i++) free(t->data[i]);
    pc_graph_free(t->g);
    memset(t, 0, sizeof *t);
}

static inline void fill(void *data, pc_dtype dt, int64_t n, fill_kind kind, double lo, double hi) {
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

static inline pc_val tc_leaf(tcase *t, pc_dtype dt, pc_shape s, fill_kind kind, double lo, double hi) {
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

static inline void tc_out(tcase *t, pc_val v) {
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
static inline void bstrides(pc_shape s, pc_shape it, int64_t st[PC_MAX_RANK]) {
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

static inline int leaf_index(tcase *t, pc_val v) {
    for (int i = 0; i < t->nleaf; i++)
        if (t->leaf[i] == v) return i;
    return -1;
}

static inline int new_input(lw *l, int leaf, const int64_t *st) {
    pc_kernel_desc *k = &l->t->k;
    int j = k->ninputs++;
    k->input[j].dtype = pc_val_dtype(l->t->g, l->t->leaf[leaf]);
    memcpy(k->input[j].stride, st, sizeof k->input[j].stride);
    l->t->kin_data[j] = l->t->data[leaf];
    return j;
}

static inline int lower_val(lw *l, pc_val v) {
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
static inline void tc_lower(tcase *t, pc_shape it) {
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

static inline void compare_f32(const float *got, const float *want, int64_t n, tol tl, cmpres *c) {
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

static inline pc_jit *jit(void) {
    if (!g_jit) {
        char err[512];
        g_jit = pc_jit_new(err, sizeof err);
        if (!g_jit) fprintf(stderr, "pc_jit_new: %s\n", err);
    }
    return g_jit;
}

/* lowers, compiles, runs kernel and reference, compares every output; returns failures */
static inline int64_t tc_run(tcase *t, pc_shape it, tol tl, const char *label) {
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

/* one kernel y = exp(x) over n elements (test_llvm_kernels_fused.c, test_llvm_kernels_ops.c) */
static inline void exp_desc(pc_kernel_desc *k, int64_t n) {
    memset(k, 0, sizeof *k);
    k->rank = 1;
    k->dim[0] = n;
    k->ninputs = 1;
    k->input[0] = (pc_kinput){.dtype = PC_F32, .stride = {1}};
    k->ninsns = 1;
    k->insn[0] = (pc_kinsn){.op = PC_OP_exp, .nin = 1, .in = {0}, .dtype = PC_F32};
    k->noutputs = 1;
}

#endif
