/* bf16 frozen base: the conversions of runtime/bf16.h (edge cases, the vectorised path against
 * the scalar one), cast / matmul / embedding on bf16 values in the interpreter against double
 * references and in the compiled backend against the interpreter, autograd through the
 * base-bf16 pass (dX = round(dY) round(W)), and the verifier's bf16 rules. */
#include "backend/exec.h"
#include "cu_main.h"
#include "test_rng.h"
#include "ir/ir.h"
#include "passes/pipeline.h"
#include "runtime/bf16.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- plumbing */

typedef struct {
    uint64_t s;
} rng;
static uint64_t next_u64(rng *r) { return test_rng_bits(&r->s); }
static uint32_t next_u32(rng *r) { return (uint32_t)(next_u64(r) >> 32); }
static float uniform(rng *r, float lo, float hi) { return lo + (hi - lo) * (float)((next_u64(r) >> 40) * 0x1.0p-24); }

static float f_of(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static uint32_t u_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static float rb(float f) { return pc_bf16_to_f32(pc_f32_to_bf16(f)); } /* f rounded to bf16 */

/* an independent rounding reference for finite non-denormal f: the nearer of the two bf16
 * neighbours of |f| (ties to the even one), 2^128 standing for the next one past the largest */
static uint16_t ref_round(uint32_t u) {
    uint32_t sign = u & 0x80000000u, mag = u & 0x7fffffffu;
    uint32_t lo = mag & 0xffff0000u, hi = lo + 0x10000u;
    double x = f_of(mag), dlo = f_of(lo), dhi = hi == 0x7f800000u ? 0x1p128 : (double)f_of(hi);
    double elo = x - dlo, ehi = dhi - x;
    uint32_t r = elo < ehi ? lo : ehi < elo ? hi : ((lo >> 16) & 1u) ? hi : lo;
    return (uint16_t)((sign | r) >> 16);
}

static pc_exec *exec_new(const pc_graph *g, pc_backend_kind kind, char *err, size_t errlen) {
    /* NaN and inf travel through the casts on purpose: the finiteness check is off */
    pc_exec_opts o = {.kind = kind, .threads = 1, .check_finite = -1};
    return pc_exec_new(g, &o, err, errlen);
}

/* runs g on `kind` with nb (value, data) bindings; NULL (and a printed reason) on failure */
static pc_exec *run_on(const pc_graph *g, pc_backend_kind kind, int nb, const pc_val *bv, void *const *bp) {
    char err[2048] = "";
    pc_exec *e = exec_new(g, kind, err, sizeof err);
    if (!e) {
        printf("\n    %s: create: %s\n", pc_backend_name(kind), err);
        return NULL;
    }
    for (int i = 0; i < nb; i++)
        if (pc_exec_bind(e, bv[i], bp[i])) {
            printf("\n    %s: bind %%%s failed\n", pc_backend_name(kind), pc_val_name(g, bv[i]));
            pc_exec_free(e);
            return NULL;
        }
    if (pc_exec_run(e, err, sizeof err)) {
        printf("\n    %s: run: %s\n", pc_backend_name(kind), err);
        pc_exec_free(e);
        return NULL;
    }
    return e;
}

/* the compiled backend's bf16 products need the CPU's bf16 units (oneDNN has no portable bf16
 * matmul everywhere): without them those comparisons are skipped, with a note */
static bool jit_bf16_ok(const char *what) {
    if (pc_cpu_has_bf16()) return true;
    printf("\n    note: %s: no AVX512-BF16/AMX-BF16 on this CPU, compiled-backend part skipped", what);
    return false;
}

static pc_init no_init(void) { return (pc_init){PC_INIT_NONE, 0, 0}; }

/* ---------------------------------------------------------------- 1. conversions */

static void test_scalar_edges(void) {
    static const struct {
        uint32_t in;
        uint16_t want;
    } cases[] = {
        {0x3f800000u, 0x3f80}, /* 1: exact */
        {0xc0000000u, 0xc000}, /* -2: exact */
        {0x00000000u, 0x0000}, /* +0 */
        {0x80000000u, 0x8000}, /* -0 */
        {0x3f7f0000u, 0x3f7f}, /* exact, odd mantissa */
        {0x3f808000u, 0x3f80}, /* tie between 0x3f80 and 0x3f81: down to the even one */
        {0x3f818000u, 0x3f82}, /* tie between 0x3f81 and 0x3f82: up to the even one */
        {0xbf818000u, 0xbf82}, /* the same, negative */
        {0x3f807fffu, 0x3f80}, /* just below the tie */
        {0x3f808001u, 0x3f81}, /* just above the tie */
        {0x3f81ffffu, 0x3f82}, /* carry into the exponent's neighbour */
        {0x3fffffffu, 0x4000}, /* carry into the exponent */
        {0x7f7f0000u, 0x7f7f}, /* the largest finite bf16 */
        {0x7f7f7fffu, 0x7f7f}, /* below its half-way point: stays finite */
        {0x7f7f8000u, 0x7f80}, /* the tie past it rounds to even = inf */
        {0x7f7fffffu, 0x7f80}, /* FLT_MAX -> inf */
        {0xff7fffffu, 0xff80}, /* -FLT_MAX -> -inf */
        {0x00800000u, 0x0080}, /* the smallest normal */
        {0x00000001u, 0x0000}, /* denormals count as zeros of their sign */
        {0x007fffffu, 0x0000},
        {0x00400000u, 0x0000},
        {0x80000001u, 0x8000},
        {0x807fffffu, 0x8000},
        {0x7f800000u, 0x7f80}, /* inf */
        {0xff800000u, 0xff80}, /* -inf */
        {0x7fc00000u, 0x7fc0}, /* quiet NaN */
        {0xffc00000u, 0xffc0},
        {0x7f800001u, 0x7fc0}, /* signalling NaN, payload only in the low half: quieted, not inf */
        {0xff800001u, 0xffc0},
        {0x7fbfffffu, 0x7fff}, /* NaN whose rounding would carry: no carry */
        {0xffffffffu, 0xffff},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t got = pc_f32_to_bf16(f_of(cases[i].in));
        if (got != cases[i].want) printf("\n    0x%08x -> 0x%04x, want 0x%04x", cases[i].in, got, cases[i].want);
        CU_ASSERT_EQUAL(got, cases[i].want);
    }
    /* bf16 -> f32 is the upper half exactly */
    CU_ASSERT_EQUAL(u_of(pc_bf16_to_f32(0x3f81)), 0x3f810000u);
    CU_ASSERT_EQUAL(u_of(pc_bf16_to_f32(0x8001)), 0x80010000u);
    CU_ASSERT(isnan(pc_bf16_to_f32(0x7fc1)));
}

/* bit patterns from every class: normals, exact ties, denormals, infinities, NaNs */
static uint32_t random_bits(rng *r) {
    uint32_t u = next_u32(r);
    switch (u & 15u) {
    case 0: case 1: return u & 0x807fffffu;                       /* denormal (or zero) */
    case 2: return u | 0x7f800000u;                               /* NaN or inf */
    case 3: return (u & 0x807fffffu) | 0x7f800000u;               /* mostly NaN, payload anywhere */
    case 4: case 5: return (u & 0xffff0000u) | 0x8000u;           /* exact tie */
    case 6: return (u & 0x80000000u) | 0x7f7f0000u | (u & 0xffffu); /* near the largest finite */
    default: return u;
    }
}

static bool nan16(uint16_t h) { return (h & 0x7f80u) == 0x7f80u && (h & 0x7fu); }

static void test_vector_matches_scalar(void) {
    enum { N = 1 << 20 };
    rng r = {0x243f6a8885a308d3ull};
    float *src = malloc(N * sizeof *src);
    uint16_t *dst = malloc((N + 8) * sizeof *dst);
    CU_ASSERT_FATAL(src && dst);
    for (int i = 0; i < N; i++) src[i] = f_of(random_bits(&r));
    pc_f32_to_bf16_n(src, dst, N);
    int bad_vec = 0, bad_ref = 0, nan_bad = 0;
    for (int i = 0; i < N; i++) {
        uint32_t u = u_of(src[i]);
        uint16_t s = pc_f32_to_bf16(src[i]);
        if (dst[i] != s && bad_vec++ < 5) printf("\n    n: 0x%08x -> 0x%04x, scalar 0x%04x", u, dst[i], s);
        uint32_t e = u & 0x7f800000u;
        if (e == 0x7f800000u) { /* inf stays inf; NaN stays NaN with its sign */
            if ((u & 0x7fffffu) ? !nan16(s) || (s & 0x8000u) != ((u >> 16) & 0x8000u) : s != (uint16_t)(u >> 16))
                nan_bad++;
        } else if (e == 0) {
            if (s != ((u >> 16) & 0x8000u)) bad_ref++;
        } else if (s != ref_round(u) && bad_ref++ < 5) {
            printf("\n    0x%08x -> 0x%04x, reference 0x%04x", u, s, ref_round(u));
        }
    }
    CU_ASSERT_EQUAL(bad_vec, 0);
    CU_ASSERT_EQUAL(bad_ref, 0);
    CU_ASSERT_EQUAL(nan_bad, 0);
    /* odd lengths from odd offsets: the vector loop's tail, nothing written past n */
    static const size_t lens[] = {0, 1, 7, 15, 16, 17, 31, 33, 47, 1001, 4097};
    static const size_t offs[] = {0, 1, 3, 13};
    for (size_t a = 0; a < sizeof offs / sizeof offs[0]; a++)
        for (size_t b = 0; b < sizeof lens / sizeof lens[0]; b++) {
            size_t o = offs[a], n = lens[b];
            for (size_t i = 0; i < n + 8; i++) dst[i] = 0xdead;
            pc_f32_to_bf16_n(src + 1000 * a + o, dst + o % 2, n);
            int bad = 0;
            for (size_t i = 0; i < n; i++) bad += dst[o % 2 + i] != pc_f32_to_bf16(src[1000 * a + o + i]);
            for (size_t i = n + o % 2; i < n + 8; i++) bad += dst[i] != 0xdead;
            if (o % 2) bad += dst[0] != 0xdead;
            if (bad) printf("\n    length %zu at offset %zu: %d wrong", n, o, bad);
            CU_ASSERT_EQUAL(bad, 0);
        }
    /* and back: bf16 -> f32 -> bf16 is the identity on every non-NaN pattern */
    uint16_t h[4096];
    float f[4096];
    for (int i = 0; i < 4096; i++) h[i] = (uint16_t)(i * 16 + 7);
    pc_bf16_to_f32_n(h, f, 4096);
    int bad = 0;
    for (int i = 0; i < 4096; i++) {
        bad += u_of(f[i]) != (uint32_t)h[i] << 16;
        if (!nan16(h[i]) && (h[i] & 0x7f80u)) bad += pc_f32_to_bf16(f[i]) != h[i];
    }
    CU_ASSERT_EQUAL(bad, 0);
    printf("\n    %d patterns: %d vector != scalar, %d scalar != reference, %d NaN/inf wrong%s", N, bad_vec, bad_ref,
           nan_bad, pc_cpu_has_bf16() ? " (the CPU has bf16 units)" : "");
    free(src);
    free(dst);
}

/* ---------------------------------------------------------------- 2/3. ops, ref and jit */

/* x (f32, specials included) -> cast bf16 (out) -> cast f32 (out) -> mul by x (out, fused in
 * the compiled backend): the bits exactly, in both backends */
static void test_cast(void) {
    enum { N = 4099 };
    static const uint32_t specials[] = {0x3f808000u, 0x3f818000u, 0x7f7fffffu, 0xff7fffffu, 0x00000001u,
                                        0x807fffffu, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0x7f800001u,
                                        0xff800001u, 0x80000000u, 0x7f7f8000u, 0x00800000u};
    rng r = {0x13198a2e03707344ull};
    float *x = malloc(N * sizeof *x);
    CU_ASSERT_FATAL(x != NULL);
    for (int i = 0; i < N; i++) x[i] = i < 14 ? f_of(specials[i]) : i % 3 ? uniform(&r, -4, 4) : f_of(random_bits(&r));
    pc_graph *g = pc_graph_new("cast");
    pc_val in = pc_input(g, "x", PC_F32, PC_SHAPE(N));
    pc_val h = pc_cast(g, in, PC_BF16), back = pc_cast(g, h, PC_F32), prod = pc_mul(g, back, in);
    pc_mark_output(g, h);
    pc_mark_output(g, back);
    pc_mark_output(g, prod);
    CU_ASSERT_PTR_NULL_FATAL(pc_graph_error(g));
    CU_ASSERT_EQUAL(pc_val_dtype(g, h), PC_BF16);
    CU_ASSERT_EQUAL(pc_val_dtype(g, back), PC_F32);
    void *bp[] = {x};
    pc_exec *ref = run_on(g, PC_BACKEND_REF, 1, &in, bp);
    CU_ASSERT_PTR_NOT_NULL(ref);
    if (ref) {
        const uint16_t *rh = pc_exec_data(ref, h);
        const float *rf = pc_exec_data(ref, back), *rp = pc_exec_data(ref, prod);
        int bad = 0;
        for (int i = 0; i < N; i++) {
            uint16_t want = pc_f32_to_bf16(x[i]);
            float p = pc_bf16_to_f32(want) * x[i];
            bad += rh[i] != want || u_of(rf[i]) != (uint32_t)want << 16 || (u_of(rp[i]) != u_of(p) && !(isnan(rp[i]) && isnan(p)));
        }
        CU_ASSERT_EQUAL(bad, 0);
        /* the compiled backend converts with the same rule (vcvtneps2bf16 or its scalar twin) */
        pc_exec *jit = run_on(g, PC_BACKEND_JIT, 1, &in, bp);
        CU_ASSERT_PTR_NOT_NULL(jit);
        if (jit) {
            CU_ASSERT(memcmp(pc_exec_data(jit, h), rh, N * 2) == 0);
            CU_ASSERT(memcmp(pc_exec_data(jit, back), rf, N * 4) == 0);
            const float *jp = pc_exec_data(jit, prod);
            int pbad = 0;
            for (int i = 0; i < N; i++) pbad += u_of(jp[i]) != u_of(rp[i]) && !(isnan(jp[i]) && isnan(rp[i]));
            CU_ASSERT_EQUAL(pbad, 0);
            pc_exec_free(jit);
        }
        pc_exec_free(ref);
    }
    pc_graph_free(g);
    free(x);
}

typedef struct {
    const char *what;
    int ba, bb;          /* batch extents of a and b (0: rank 2; bb 1 with ba > 1: broadcast) */
    int m, k, n, ta, tb; /* a is [.., m, k] read (stored [.., k, m] with ta), b [.., k, n] (tb: [.., n, k]) */
    int b_param;         /* b is a frozen bf16 param bound as bf16 (oneDNN's constant-weight path);
                            else an f32 input cast in the graph */
} mm_case;

static double g_mm_ref_err, g_mm_jit_err; /* worst errors over the cases, for the summary */

static void run_mm_case(const mm_case *c) {
    rng r = {0xa4093822299f31d0ull ^ (uint64_t)(c->m * 131 + c->k * 7 + c->n + c->ta * 2 + c->tb)};
    int ba = c->ba ? c->ba : 1, bb = c->bb ? c->bb : 1, nb = ba > bb ? ba : bb;
    int64_t na = (int64_t)ba * c->m * c->k, nbv = (int64_t)bb * c->k * c->n, nc = (int64_t)nb * c->m * c->n;
    float *a = malloc((size_t)na * sizeof *a), *bf = malloc((size_t)nbv * sizeof *bf);
    uint16_t *bh = malloc((size_t)nbv * sizeof *bh);
    double *want = malloc((size_t)nc * sizeof *want), *scale = malloc((size_t)nb * c->m * sizeof *scale);
    CU_ASSERT_FATAL(a && bf && bh && want && scale);
    for (int64_t i = 0; i < na; i++) a[i] = uniform(&r, -1, 1);
    for (int64_t i = 0; i < nbv; i++) bf[i] = uniform(&r, -1, 1) * (i % 5 == 0 ? 8.0f : 1.0f), bh[i] = pc_f32_to_bf16(bf[i]);
    pc_graph *g = pc_graph_new("mm");
    int64_t ar = c->ta ? c->k : c->m, ac = c->ta ? c->m : c->k, br = c->tb ? c->n : c->k, bc = c->tb ? c->k : c->n;
    pc_shape as = c->ba ? PC_SHAPE(c->ba, ar, ac) : PC_SHAPE(ar, ac);
    pc_shape bs = c->bb ? PC_SHAPE(c->bb, br, bc) : PC_SHAPE(br, bc);
    pc_val av = pc_input(g, "a", PC_F32, as), a16 = pc_cast(g, av, PC_BF16), bv, b16;
    if (c->b_param) b16 = bv = pc_param(g, "w", "w.weight", PC_BF16, bs, PC_FROZEN, no_init());
    else bv = pc_input(g, "b", PC_F32, bs), b16 = pc_cast(g, bv, PC_BF16);
    pc_val y = pc_matmul(g, a16, b16, c->ta, c->tb);
    pc_mark_output(g, y);
    if (pc_graph_error(g)) printf("\n    %s: %s", c->what, pc_graph_error(g));
    CU_ASSERT_PTR_NULL_FATAL(pc_graph_error(g));
    CU_ASSERT_EQUAL(pc_val_dtype(g, y), PC_F32);
    /* the reference: the rounded operands' exact products summed in double */
    for (int t = 0; t < nb; t++)
        for (int i = 0; i < c->m; i++) {
            double rowmag = 0;
            for (int j = 0; j < c->n; j++) {
                double s = 0, sa = 0;
                for (int kk = 0; kk < c->k; kk++) {
                    int64_t ai = (int64_t)(ba > 1 ? t : 0) * c->m * c->k + (c->ta ? (int64_t)kk * c->m + i : (int64_t)i * c->k + kk);
                    int64_t bi = (int64_t)(bb > 1 ? t : 0) * c->k * c->n + (c->tb ? (int64_t)j * c->k + kk : (int64_t)kk * c->n + j);
                    double p = (double)rb(a[ai]) * pc_bf16_to_f32(bh[bi]);
                    s += p, sa += fabs(p);
                }
                want[((int64_t)t * c->m + i) * c->n + j] = s;
                if (sa > rowmag) rowmag = sa;
            }
            scale[(int64_t)t * c->m + i] = rowmag > 0 ? rowmag : 1;
        }
    pc_val bvs[] = {av, bv};
    void *bps[] = {a, c->b_param ? (void *)bh : (void *)bf};
    pc_exec *ref = run_on(g, PC_BACKEND_REF, 2, bvs, bps);
    CU_ASSERT_PTR_NOT_NULL(ref);
    if (ref) {
        const float *got = pc_exec_data(ref, y);
        double worst = 0;
        for (int64_t i = 0; i < nc; i++) {
            double e = fabs(got[i] - want[i]) / scale[i / c->n];
            if (!(e <= worst)) worst = e;
        }
        if (worst > g_mm_ref_err) g_mm_ref_err = worst;
        if (!(worst <= 1e-5)) printf("\n    %s: ref error %.3g", c->what, worst);
        CU_ASSERT(worst <= 1e-5);
        if (pc_cpu_has_bf16()) {
            pc_exec *jit = run_on(g, PC_BACKEND_JIT, 2, bvs, bps);
            CU_ASSERT_PTR_NOT_NULL(jit);
            if (jit) {
                const float *jg = pc_exec_data(jit, y);
                double jw = 0;
                for (int64_t i = 0; i < nc; i++) {
                    double e = fabs((double)jg[i] - got[i]) / scale[i / c->n];
                    if (!(e <= jw)) jw = e;
                }
                if (jw > g_mm_jit_err) g_mm_jit_err = jw;
                if (!(jw <= 1e-5)) printf("\n    %s: jit vs ref %.3g", c->what, jw);
                CU_ASSERT(jw <= 1e-5);
                pc_exec_free(jit);
            }
        }
        pc_exec_free(ref);
    }
    pc_graph_free(g);
    free(a);
    free(bf);
    free(bh);
    free(want);
    free(scale);
}

static void test_matmul(void) {
    static const mm_case cases[] = {
        {"33x70x45", 0, 0, 33, 70, 45, 0, 0, 1},
        {"33x70x45 ta", 0, 0, 33, 70, 45, 1, 0, 1},
        {"33x70x45 tb", 0, 0, 33, 70, 45, 0, 1, 1},
        {"33x70x45 ta tb", 0, 0, 33, 70, 45, 1, 1, 1},
        {"33x70x45 tb, b cast in the graph", 0, 0, 33, 70, 45, 0, 1, 0},
        {"3x33x70 @ [45,70]^T (rank-2 weights)", 3, 0, 33, 70, 45, 0, 1, 1},
        {"4x5x70 @ [1,45,70]^T (broadcast batch)", 4, 1, 5, 70, 45, 0, 1, 1},
        {"3x[70,33]^T @ 3x[70,45] (per-batch b)", 3, 3, 33, 70, 45, 1, 0, 0},
        {"1x1x1", 0, 0, 1, 1, 1, 0, 0, 1},
        {"7x129x17 tb", 0, 0, 7, 129, 17, 0, 1, 1},
    };
    g_mm_ref_err = g_mm_jit_err = 0;
    if (!jit_bf16_ok("matmul")) printf("\n");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_mm_case(&cases[i]);
    printf("\n    matmul: max |err| / row magnitude: ref vs double %.3g, jit vs ref %.3g", g_mm_ref_err, g_mm_jit_err);
}

static void test_embedding(void) {
    enum { ROWS = 37, D = 19, NI = 10 };
    rng r = {0x082efa98ec4e6c89ull};
    uint16_t table[ROWS * D];
    int32_t ids[NI] = {0, 36, 5, 5, 17, 0, 1, 35, 20, 36};
    for (int i = 0; i < ROWS * D; i++) table[i] = pc_f32_to_bf16(uniform(&r, -3, 3));
    table[0] = 0x8000, table[1] = 0x7f7f, table[2] = 0x0001; /* -0, the largest, a denormal bf16 */
    pc_graph *g = pc_graph_new("emb");
    pc_val t = pc_param(g, "emb", "embed_tokens.weight", PC_BF16, PC_SHAPE(ROWS, D), PC_FROZEN, no_init());
    pc_val iv = pc_input(g, "ids", PC_I32, PC_SHAPE(2, 5));
    pc_val e = pc_embedding(g, t, iv);
    pc_mark_output(g, e);
    CU_ASSERT_PTR_NULL_FATAL(pc_graph_error(g));
    CU_ASSERT_EQUAL(pc_val_dtype(g, e), PC_F32);
    pc_val bv[] = {t, iv};
    void *bp[] = {table, ids};
    for (int kind = PC_BACKEND_REF; kind <= PC_BACKEND_JIT; kind++) {
        pc_exec *x = run_on(g, (pc_backend_kind)kind, 2, bv, bp);
        CU_ASSERT_PTR_NOT_NULL(x);
        if (!x) continue;
        const float *o = pc_exec_data(x, e);
        int bad = 0;
        for (int i = 0; i < NI; i++)
            for (int d = 0; d < D; d++) bad += u_of(o[i * D + d]) != (uint32_t)table[ids[i] * D + d] << 16;
        CU_ASSERT_EQUAL(bad, 0);
        pc_exec_free(x);
    }
    pc_graph_free(g);
}

/* ---------------------------------------------------------------- 4. autograd through base-bf16 */

static void test_autograd(void) {
    enum { M = 6, K = 37, N = 21 };
    rng r = {0x452821e638d01377ull};
    pc_graph *g = pc_graph_new("grad");
    pc_val x = pc_param(g, "x", "x", PC_F32, PC_SHAPE(M, K), PC_TRAINABLE, no_init());
    pc_val w = pc_param(g, "w", "w.weight", PC_F32, PC_SHAPE(N, K), PC_FROZEN, no_init());
    pc_val y = pc_matmul(g, x, w, 0, 1);
    pc_set_name(g, y, "y");
    pc_val loss = pc_sum(g, pc_square(g, y), 0, NULL, 0);
    pc_set_name(g, loss, "loss");
    pc_mark_output(g, y);
    pc_mark_loss(g, loss);
    CU_ASSERT_PTR_NULL_FATAL(pc_graph_error(g));
    char err[2048] = "";
    pc_pipeline_opts po = {0};
    int rc = pc_run_pipeline(&g, "base-bf16,autograd", &po, err, sizeof err);
    if (rc) printf("\n    pipeline: %s", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    /* the weight became bf16 and the activation reads it through a cast to bf16 */
    w = pc_lookup_key(g, "w.weight");
    x = pc_lookup_key(g, "x");
    y = pc_lookup(g, "y");
    loss = pc_lookup(g, "loss");
    pc_val gx = pc_lookup(g, "grad.x");
    CU_ASSERT_FATAL(w != PC_NONE && x != PC_NONE && y != PC_NONE && loss != PC_NONE && gx != PC_NONE);
    CU_ASSERT_EQUAL(pc_val_dtype(g, w), PC_BF16);
    CU_ASSERT_EQUAL(pc_val_dtype(g, x), PC_F32);
    CU_ASSERT_EQUAL(pc_val_dtype(g, gx), PC_F32);
    const pc_value *yv = pc_v(g, y);
    CU_ASSERT_EQUAL(yv->op, PC_OP_matmul);
    CU_ASSERT_EQUAL(yv->in[1], w);
    const pc_value *xc = pc_v(g, yv->in[0]);
    CU_ASSERT(xc->op == PC_OP_cast && xc->dtype == PC_BF16 && xc->in[0] == x);
    int nbf16_mm = 0; /* the forward product and dX = round(dY) W: two bf16 x bf16 products */
    for (pc_val v = 0; v < pc_graph_size(g); v++) {
        const pc_value *p = pc_v(g, v);
        if (p->op == PC_OP_matmul && pc_v(g, p->in[0])->dtype == PC_BF16) nbf16_mm++;
    }
    CU_ASSERT_EQUAL(nbf16_mm, 2);

    float xd[M * K], wf[N * K];
    uint16_t wd[N * K];
    for (int i = 0; i < M * K; i++) xd[i] = uniform(&r, -1, 1);
    for (int i = 0; i < N * K; i++) wf[i] = uniform(&r, -0.5f, 0.5f), wd[i] = pc_f32_to_bf16(wf[i]);
    pc_val bv[] = {x, w};
    void *bp[] = {xd, wd};
    pc_exec *ex[2] = {run_on(g, PC_BACKEND_REF, 2, bv, bp), NULL};
    CU_ASSERT_PTR_NOT_NULL_FATAL(ex[0]);
    bool jit = jit_bf16_ok("autograd");
    if (jit) {
        ex[1] = run_on(g, PC_BACKEND_JIT, 2, bv, bp);
        CU_ASSERT_PTR_NOT_NULL(ex[1]);
    }
    double worst_y = 0, worst_g = 0, unrounded = INFINITY, worst_loss = 0;
    for (int b = 0; b < 2; b++) {
        if (!ex[b]) continue;
        const float *yd = pc_exec_data(ex[b], y), *gd = pc_exec_data(ex[b], gx), *ld = pc_exec_data(ex[b], loss);
        /* the forward against double from the rounded operands */
        double lsum = 0;
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                double s = 0, sa = 0;
                for (int k = 0; k < K; k++) {
                    double p = (double)rb(xd[i * K + k]) * pc_bf16_to_f32(wd[j * K + k]);
                    s += p, sa += fabs(p);
                }
                double e = fabs(yd[i * N + j] - s) / (sa > 0 ? sa : 1);
                if (!(e <= worst_y)) worst_y = e;
                lsum += s * s;
            }
        double le = ld ? fabs(*ld - lsum) / (lsum > 0 ? lsum : 1) : INFINITY;
        if (!(le <= worst_loss)) worst_loss = le;
        /* dX = round(dY) @ W with dY = 2 y (exact in f32, from this backend's own forward) */
        double wg = 0, wu = 0;
        for (int i = 0; i < M; i++)
            for (int k = 0; k < K; k++) {
                double s = 0, su = 0, sa = 0;
                for (int j = 0; j < N; j++) {
                    float dy = 2.0f * yd[i * N + j];
                    double wj = pc_bf16_to_f32(wd[j * K + k]);
                    s += (double)rb(dy) * wj, su += (double)dy * wj, sa += fabs((double)dy * wj);
                }
                sa = sa > 0 ? sa : 1;
                double e = fabs(gd[i * K + k] - s) / sa, eu = fabs(gd[i * K + k] - su) / sa;
                if (!(e <= wg)) wg = e;
                if (eu > wu) wu = eu;
            }
        if (wg > worst_g) worst_g = wg;
        if (wu < unrounded) unrounded = wu;
    }
    CU_ASSERT(worst_y <= 1e-5);
    CU_ASSERT(worst_loss <= 1e-5);
    CU_ASSERT(worst_g <= 1e-5);
    /* the adjoint really was rounded: against an unrounded dY the error is bf16-sized */
    CU_ASSERT(unrounded >= 1e-4);
    double rj = 0;
    if (ex[1]) { /* ref vs jit on the gradient */
        const float *a = pc_exec_data(ex[0], gx), *b = pc_exec_data(ex[1], gx);
        double mag = 0;
        for (int i = 0; i < M * K; i++) mag = fmax(mag, fabs(a[i]));
        for (int i = 0; i < M * K; i++) rj = fmax(rj, fabs((double)a[i] - b[i]) / (mag > 0 ? mag : 1));
        CU_ASSERT(rj <= 1e-5);
    }
    printf("\n    autograd: y err %.3g, loss err %.3g, grad.x err %.3g (vs an unrounded dY: %.3g), jit vs ref %.3g",
           worst_y, worst_loss, worst_g, unrounded, rj);
    pc_exec_free(ex[0]);
    pc_exec_free(ex[1]);
    pc_graph_free(g);
}

/* ---------------------------------------------------------------- 5. the verifier's rules */

static void expect_refused(pc_graph *g, pc_val v, const char *what, const char *want1, const char *want2) {
    const char *e = pc_graph_error(g);
    if (v != PC_NONE || !e || !strstr(e, want1) || (want2 && !strstr(e, want2)))
        printf("\n    %s: got %s", what, e ? e : "(no error)");
    CU_ASSERT_EQUAL(v, PC_NONE);
    CU_ASSERT(e && strstr(e, want1) && (!want2 || strstr(e, want2)));
}

static void test_verifier(void) {
    pc_graph *g = pc_graph_new("v");
    pc_val h = pc_input(g, "h", PC_BF16, PC_SHAPE(4, 8));
    expect_refused(g, pc_add(g, h, h), "add of bf16", "bf16", "reads f32");
    pc_graph_free(g);

    g = pc_graph_new("v");
    h = pc_input(g, "h", PC_BF16, PC_SHAPE(4, 8));
    expect_refused(g, pc_cast(g, h, PC_I32), "cast bf16 -> i32", "bf16", NULL);
    pc_graph_free(g);

    g = pc_graph_new("v");
    pc_val i = pc_input(g, "i", PC_I32, PC_SHAPE(4, 8));
    expect_refused(g, pc_cast(g, i, PC_BF16), "cast i32 -> bf16", "bf16", NULL);
    pc_graph_free(g);

    g = pc_graph_new("v");
    pc_val f = pc_input(g, "f", PC_F32, PC_SHAPE(4, 8));
    h = pc_input(g, "h", PC_BF16, PC_SHAPE(8, 3));
    expect_refused(g, pc_matmul(g, f, h, 0, 0), "matmul f32 x bf16", "bf16", NULL);
    pc_graph_free(g);

    g = pc_graph_new("v");
    h = pc_input(g, "h", PC_BF16, PC_SHAPE(4, 8));
    f = pc_input(g, "f", PC_F32, PC_SHAPE(8, 3));
    expect_refused(g, pc_matmul(g, h, f, 0, 0), "matmul bf16 x f32", "bf16", NULL);
    pc_graph_free(g);

    /* and the allowed ones build: bf16 reshape keeps bf16, the product is f32 */
    g = pc_graph_new("v");
    h = pc_input(g, "h", PC_BF16, PC_SHAPE(4, 8));
    pc_val h2 = pc_reshape(g, h, PC_SHAPE(8, 4));
    pc_val p = pc_matmul(g, h, h2, 0, 0);
    CU_ASSERT_PTR_NULL(pc_graph_error(g));
    CU_ASSERT_EQUAL(pc_val_dtype(g, h2), PC_BF16);
    CU_ASSERT_EQUAL(pc_val_dtype(g, p), PC_F32);
    pc_graph_free(g);
}

static CU_TestInfo tests[] = {
    {"f32->bf16 edge cases", test_scalar_edges},
    {"vector conversion == scalar on 1M patterns", test_vector_matches_scalar},
    {"cast f32<->bf16, ref and jit bit-exact", test_cast},
    {"bf16 x bf16 matmul vs double, jit vs ref", test_matmul},
    {"embedding with a bf16 table", test_embedding},
    {"autograd through base-bf16: dX = round(dY) W", test_autograd},
    {"verifier refuses bf16 misuse", test_verifier},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("bf16", tests)
