/* backend/onednn.c: oneDNN matmul primitives against a naive double-precision reference. */
#include "backend/onednn.h"
#include "cu_main.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t s;
} rng_t;

static float rnd(rng_t *r) {
    r->s = r->s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(r->s >> 40) / (double)(1ULL << 24) * 2.0 - 1.0);
}

/* One operand: logical dims [..., R, C]; stored as [..., R, C] (or [..., C, R] when trans) with the
 * inner row padded to ld >= its length; batch dims dense over the padded matrices, or stride 0 when the
 * batch dim is 1 and zero_bstride is set. */
typedef struct {
    int64_t dims[PC_MM_MAX_RANK], strides[PC_MM_MAX_RANK];
    size_t n; /* elements to allocate */
} operand_t;

static void make_operand(operand_t *o, int rank, const int64_t *dims, int trans, int64_t pad, int zero_bstride) {
    int64_t R = dims[rank - 2], C = dims[rank - 1];
    int64_t rows = trans ? C : R, cols = trans ? R : C;
    int64_t ld = cols + pad;
    memcpy(o->dims, dims, sizeof(int64_t) * (size_t)rank);
    o->strides[rank - 2] = trans ? 1 : ld;
    o->strides[rank - 1] = trans ? ld : 1;
    int64_t s = rows * ld;
    for (int i = rank - 3; i >= 0; i--) {
        o->strides[i] = (dims[i] == 1 && zero_bstride) ? 0 : s;
        s *= dims[i];
    }
    o->n = (size_t)(s > 0 ? s : 1);
}

static float *alloc_fill(size_t n, rng_t *r) {
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = rnd(r);
    return p;
}

/* max over c of |got - ref| / (|alpha| * sum_k |a||b| + |c0|), the usual relative bound. */
static double check_ref(const pc_matmul_desc *m, const float *a, const float *b, const float *c0, const float *c) {
    int r = m->rank;
    int64_t M = m->c_dims[r - 2], N = m->c_dims[r - 1], K = m->a_dims[r - 1];
    int64_t nb = 1;
    for (int i = 0; i < r - 2; i++) nb *= m->c_dims[i];
    double worst = 0;
    for (int64_t bi = 0; bi < nb; bi++) {
        int64_t rem = bi, aoff = 0, boff = 0;
        for (int i = r - 3; i >= 0; i--) {
            int64_t idx = rem % m->c_dims[i];
            rem /= m->c_dims[i];
            if (m->a_dims[i] != 1) aoff += idx * m->a_strides[i];
            if (m->b_dims[i] != 1) boff += idx * m->b_strides[i];
        }
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double s = 0, mag = 0;
                for (int64_t k = 0; k < K; k++) {
                    double x = a[aoff + i * m->a_strides[r - 2] + k * m->a_strides[r - 1]];
                    double y = b[boff + k * m->b_strides[r - 2] + j * m->b_strides[r - 1]];
                    s += x * y;
                    mag += fabs(x * y);
                }
                size_t ci = (size_t)((bi * M + i) * N + j);
                double ref = m->alpha * s, scale = fabs(m->alpha) * mag;
                if (m->accumulate) {
                    ref += c0[ci];
                    scale += fabs(c0[ci]);
                }
                double e = fabs(c[ci] - ref) / (scale > 1e-30 ? scale : 1.0);
                if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
            }
    }
    return worst;
}

typedef struct {
    int rank;
    int64_t a_dims[PC_MM_MAX_RANK], b_dims[PC_MM_MAX_RANK];
    int a_trans, b_trans;
    int64_t a_pad, b_pad;
    int zero_bstride;
    float alpha;
    int accumulate, b_constant;
    int prepare; /* b_constant: 1 = prepare_b then run with b = NULL; 0 = run with b (on the fly) */
    int runs;    /* >= 1; runs > 1 use fresh buffers each time */
    int threads;
} case_t;

static int64_t max64(int64_t x, int64_t y) { return x > y ? x : y; }

static void run_case(const char *name, const case_t *t) {
    char err[512] = "";
    pc_dnnl *d = pc_dnnl_new(t->threads ? t->threads : 1, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    int r = t->rank;
    operand_t oa, ob;
    make_operand(&oa, r, t->a_dims, t->a_trans, t->a_pad, t->zero_bstride);
    make_operand(&ob, r, t->b_dims, t->b_trans, t->b_pad, t->zero_bstride);
    pc_matmul_desc m = {.rank = r, .alpha = t->alpha, .accumulate = t->accumulate, .b_constant = t->b_constant};
    memcpy(m.a_dims, oa.dims, sizeof oa.dims);
    memcpy(m.a_strides, oa.strides, sizeof oa.strides);
    memcpy(m.b_dims, ob.dims, sizeof ob.dims);
    memcpy(m.b_strides, ob.strides, sizeof ob.strides);
    size_t nc = 1;
    for (int i = 0; i < r - 2; i++) {
        m.c_dims[i] = (t->a_dims[i] == 0 || t->b_dims[i] == 0) ? 0 : max64(t->a_dims[i], t->b_dims[i]);
        nc *= (size_t)m.c_dims[i];
    }
    m.c_dims[r - 2] = t->a_dims[r - 2];
    m.c_dims[r - 1] = t->b_dims[r - 1];
    nc *= (size_t)(m.c_dims[r - 2] * m.c_dims[r - 1]);

    pc_dnnl_matmul *p = pc_dnnl_matmul_new(d, &m, err, sizeof err);
    if (!p) fprintf(stderr, "\n%s: %s\n", name, err);
    CU_ASSERT_PTR_NOT_NULL(p);
    if (!p) {
        pc_dnnl_free(d);
        return;
    }
    const char *impl = pc_dnnl_matmul_impl(p);
    CU_ASSERT(impl && impl[0]);

    rng_t rng = {(uint64_t)strlen(name) * 7919u + 17u};
    float *b = alloc_fill(ob.n, &rng);
    float *bcopy = malloc(ob.n * sizeof *bcopy);
    memcpy(bcopy, b, ob.n * sizeof *b);
    if (t->b_constant && t->prepare) {
        CU_ASSERT_EQUAL(pc_dnnl_matmul_prepare_b(p, b, err, sizeof err), 0);
    }
    int runs = t->runs > 0 ? t->runs : 1;
    double worst = 0;
    for (int it = 0; it < runs; it++) {
        float *a = alloc_fill(oa.n, &rng);
        float *c = alloc_fill(nc ? nc : 1, &rng);
        float *c0 = malloc((nc ? nc : 1) * sizeof *c0);
        memcpy(c0, c, (nc ? nc : 1) * sizeof *c);
        const float *barg = (t->b_constant && t->prepare) ? NULL : b;
        CU_ASSERT_EQUAL(pc_dnnl_matmul_run(p, a, barg, c), 0);
        double e = check_ref(&m, a, bcopy, c0, c);
        if (e > worst) worst = e;
        free(a);
        free(c);
        free(c0);
    }
    if (!(worst <= 1e-5)) fprintf(stderr, "\n%s: rel err %g (impl %s)\n", name, worst, impl);
    CU_ASSERT(worst <= 1e-5);
    free(b);
    free(bcopy);
    pc_dnnl_matmul_free(p);
    pc_dnnl_free(d);
}

#define DIMS(...) {__VA_ARGS__}

static void mm2(const char *name, int64_t M, int64_t K, int64_t N, int at, int bt, float alpha, int acc, int bc,
                int prep) {
    case_t t = {.rank = 2, .a_dims = DIMS(M, K), .b_dims = DIMS(K, N), .a_trans = at, .b_trans = bt,
                .alpha = alpha, .accumulate = acc, .b_constant = bc, .prepare = prep, .runs = 1};
    run_case(name, &t);
}

static void test_plain_2d(void) {
    mm2("plain 64x48x32", 64, 48, 32, 0, 0, 1.0f, 0, 0, 0);
    mm2("plain 128x768x96", 128, 768, 96, 0, 0, 1.0f, 0, 0, 0);
}

static void test_transposes(void) {
    static const int64_t shapes[][3] = {{17, 33, 9}, {64, 64, 64}, {1, 40, 24}, {30, 1, 20}, {20, 40, 1}};
    char name[64];
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int at = 0; at < 2; at++)
            for (int bt = 0; bt < 2; bt++) {
                snprintf(name, sizeof name, "trans a%d b%d %ldx%ldx%ld", at, bt, (long)shapes[s][0],
                         (long)shapes[s][1], (long)shapes[s][2]);
                mm2(name, shapes[s][0], shapes[s][1], shapes[s][2], at, bt, 1.0f, 0, 0, 0);
            }
}

static void test_padded_strides(void) {
    /* leading dimension larger than the row (a slice of a wider tensor) */
    for (int at = 0; at < 2; at++)
        for (int bt = 0; bt < 2; bt++) {
            case_t t = {.rank = 2, .a_dims = DIMS(24, 40), .b_dims = DIMS(40, 16), .a_trans = at, .b_trans = bt,
                        .a_pad = 7, .b_pad = 3, .alpha = 1.0f, .runs = 1};
            run_case("padded", &t);
        }
    case_t t3 = {.rank = 3, .a_dims = DIMS(3, 24, 40), .b_dims = DIMS(3, 40, 16), .a_pad = 5, .b_pad = 2,
                 .b_trans = 1, .alpha = 1.0f, .runs = 1};
    run_case("padded batched", &t3);
}

static void test_batched(void) {
    case_t t = {.rank = 4, .a_dims = DIMS(2, 3, 16, 24), .b_dims = DIMS(2, 3, 24, 8), .alpha = 1.0f, .runs = 1};
    run_case("batched", &t);
    for (int at = 0; at < 2; at++)
        for (int bt = 0; bt < 2; bt++) {
            case_t u = {.rank = 4, .a_dims = DIMS(2, 3, 7, 13), .b_dims = DIMS(2, 3, 13, 5), .a_trans = at,
                        .b_trans = bt, .alpha = 1.0f, .runs = 1};
            run_case("batched trans", &u);
        }
    case_t r5 = {.rank = 5, .a_dims = DIMS(2, 1, 3, 9, 11), .b_dims = DIMS(1, 2, 3, 11, 6), .alpha = 1.0f, .runs = 1};
    run_case("rank5 broadcast", &r5);
    case_t r6 = {.rank = 6, .a_dims = DIMS(2, 1, 2, 1, 5, 7), .b_dims = DIMS(2, 2, 1, 2, 7, 3), .alpha = 1.0f, .runs = 1};
    run_case("rank6 broadcast", &r6);
}

static void test_broadcast(void) {
    for (int z = 0; z < 2; z++) {
        case_t t = {.rank = 4, .a_dims = DIMS(2, 3, 16, 24), .b_dims = DIMS(1, 1, 24, 8), .zero_bstride = z,
                    .alpha = 1.0f, .runs = 1};
        run_case("broadcast b", &t);
        case_t u = {.rank = 4, .a_dims = DIMS(1, 3, 16, 24), .b_dims = DIMS(2, 1, 24, 8), .zero_bstride = z,
                    .alpha = 1.0f, .runs = 1};
        run_case("broadcast both", &u);
        case_t v = {.rank = 4, .a_dims = DIMS(1, 1, 16, 24), .b_dims = DIMS(2, 3, 24, 8), .zero_bstride = z,
                    .b_trans = 1, .alpha = 1.0f, .runs = 1};
        run_case("broadcast a", &v);
    }
}

static void test_alpha(void) {
    mm2("alpha 0.375", 33, 20, 17, 0, 0, 0.375f, 0, 0, 0);
    mm2("alpha -2 trans", 33, 20, 17, 1, 1, -2.0f, 0, 0, 0);
    mm2("alpha 0", 8, 8, 8, 0, 0, 0.0f, 0, 0, 0);
    case_t t = {.rank = 3, .a_dims = DIMS(2, 9, 10), .b_dims = DIMS(1, 10, 11), .alpha = 1.5f, .runs = 1};
    run_case("alpha batched", &t);
}

static void test_accumulate(void) {
    mm2("acc", 40, 24, 30, 0, 0, 1.0f, 1, 0, 0);
    mm2("acc alpha", 40, 24, 30, 0, 1, 2.0f, 1, 0, 0);
    mm2("acc alpha 0.25 b_const", 64, 64, 64, 0, 1, 0.25f, 1, 1, 1);
    case_t t = {.rank = 4, .a_dims = DIMS(2, 3, 8, 16), .b_dims = DIMS(1, 1, 16, 8), .alpha = 0.5f,
                .accumulate = 1, .runs = 2};
    run_case("acc batched broadcast", &t);
}

static void test_b_constant(void) {
    /* typical frozen linear weight: W stored [N, K] -> logical b [K, N] transposed */
    mm2("bconst prep 512x768x768^T", 512, 768, 768, 0, 1, 1.0f, 0, 1, 1);
    mm2("bconst prep 64x96x80", 64, 96, 80, 0, 0, 1.0f, 0, 1, 1);
    mm2("bconst on-the-fly", 64, 96, 80, 0, 1, 1.0f, 0, 1, 0);
    mm2("bconst small", 7, 13, 5, 1, 1, 1.0f, 0, 1, 1);
    case_t t = {.rank = 4, .a_dims = DIMS(2, 3, 16, 24), .b_dims = DIMS(1, 1, 24, 40), .b_trans = 1,
                .alpha = 1.0f, .b_constant = 1, .prepare = 1, .runs = 3};
    run_case("bconst broadcast", &t);
    case_t u = t;
    u.prepare = 0;
    run_case("bconst broadcast on-the-fly", &u);
}

static void test_b_constant_copy_semantics(void) {
    /* After prepare_b with a layout change, the caller's b buffer may be overwritten; without a layout
     * change p keeps the pointer. Either way, refreshing with prepare_b takes the new values. */
    char err[256];
    pc_dnnl *d = pc_dnnl_new(1, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    const int M = 32, K = 128, N = 96;
    pc_matmul_desc m = {.rank = 2, .a_dims = {M, K}, .a_strides = {K, 1}, .b_dims = {K, N}, .b_strides = {1, K},
                        .c_dims = {M, N}, .alpha = 1.0f, .b_constant = 1};
    pc_dnnl_matmul *p = pc_dnnl_matmul_new(d, &m, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    rng_t rng = {99};
    float *a = alloc_fill((size_t)M * K, &rng), *b = alloc_fill((size_t)K * N, &rng);
    float *c = calloc((size_t)M * N, sizeof *c);
    CU_ASSERT_EQUAL(pc_dnnl_matmul_run(p, a, NULL, c), -1); /* not prepared, no b */
    CU_ASSERT_EQUAL(pc_dnnl_matmul_prepare_b(p, b, err, sizeof err), 0);
    CU_ASSERT_EQUAL(pc_dnnl_matmul_run(p, a, NULL, c), 0);
    CU_ASSERT(check_ref(&m, a, b, NULL, c) <= 1e-5);
    for (int i = 0; i < K * N; i++) b[i] = rnd(&rng); /* new weights, refreshed by prepare_b */
    CU_ASSERT_EQUAL(pc_dnnl_matmul_prepare_b(p, b, err, sizeof err), 0);
    CU_ASSERT_EQUAL(pc_dnnl_matmul_run(p, a, NULL, c), 0);
    CU_ASSERT(check_ref(&m, a, b, NULL, c) <= 1e-5);
    free(a);
    free(b);
    free(c);
    pc_dnnl_matmul_free(p);
    pc_dnnl_free(d);
}

static void test_lora_shapes(void) {
    static const int64_t shapes[][3] = {{512, 64, 8}, {512, 8, 64}, {7, 13, 5}, {1, 1, 1}, {512, 768, 8},
                                        {512, 8, 768}, {3, 1, 2}, {1, 5, 1}};
    char name[64];
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        snprintf(name, sizeof name, "lora %ldx%ldx%ld", (long)M, (long)K, (long)N);
        mm2(name, M, K, N, 0, 0, 1.0f, 0, 0, 0);
        mm2(name, M, K, N, 0, 1, 2.0f, 1, 0, 0);      /* up-projection accumulating, scaled */
        mm2(name, M, K, N, 1, 0, 1.0f, 0, 0, 0);      /* x^T @ dy (weight-gradient shape) */
        mm2(name, M, K, N, 0, 1, 1.0f, 0, 1, 1);      /* frozen b */
        mm2(name, M, K, N, 0, 1, 0.5f, 1, 1, 0);      /* frozen b, on the fly, accumulate */
    }
}

static void zero_case(int64_t bsz, int64_t M, int64_t K, int64_t N, int acc, int bc) {
    char err[256];
    pc_dnnl *d = pc_dnnl_new(1, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    pc_matmul_desc m = {.rank = 3, .a_dims = {bsz, M, K}, .a_strides = {M * K, K, 1}, .b_dims = {1, K, N},
                        .b_strides = {K * N, N, 1}, .c_dims = {bsz, M, N}, .alpha = 3.0f, .accumulate = acc,
                        .b_constant = bc};
    pc_dnnl_matmul *p = pc_dnnl_matmul_new(d, &m, err, sizeof err);
    if (!p) fprintf(stderr, "\nzero case: %s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT(strstr(pc_dnnl_matmul_impl(p), "zero") != NULL);
    float a[64], b[64], c[64];
    for (int i = 0; i < 64; i++) a[i] = b[i] = 1.0f, c[i] = 5.0f;
    if (bc) CU_ASSERT_EQUAL(pc_dnnl_matmul_prepare_b(p, b, err, sizeof err), 0);
    CU_ASSERT_EQUAL(pc_dnnl_matmul_run(p, a, b, c), 0);
    int64_t nc = bsz * M * N;
    for (int64_t i = 0; i < nc; i++) CU_ASSERT_EQUAL(c[i], (K == 0 && !acc) ? 0.0f : 5.0f);
    for (int64_t i = nc; i < 64; i++) CU_ASSERT_EQUAL(c[i], 5.0f); /* nothing past c touched */
    pc_dnnl_matmul_free(p);
    pc_dnnl_free(d);
}

static void test_zero_size(void) {
    for (int acc = 0; acc < 2; acc++)
        for (int bc = 0; bc < 2; bc++) {
            zero_case(2, 3, 0, 4, acc, bc); /* K = 0: c = 0, or unchanged when accumulating */
            zero_case(2, 0, 5, 4, acc, bc);
            zero_case(2, 3, 5, 0, acc, bc);
            zero_case(0, 3, 5, 4, acc, bc);
        }
}

static void test_repeated_runs(void) {
    case_t t = {.rank = 2, .a_dims = DIMS(48, 40), .b_dims = DIMS(40, 56), .alpha = 1.0f, .runs = 5};
    run_case("repeat plain", &t);
    t.accumulate = 1;
    t.b_trans = 1;
    run_case("repeat acc", &t);
    /* different b pointers each run (not constant) */
    char err[256];
    pc_dnnl *d = pc_dnnl_new(1, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    pc_matmul_desc m = {.rank = 2, .a_dims = {20, 30}, .a_strides = {30, 1}, .b_dims = {30, 10}, .b_strides = {1, 30},
                        .c_dims = {20, 10}, .alpha = 1.0f};
    pc_dnnl_matmul *p = pc_dnnl_matmul_new(d, &m, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    rng_t rng = {5};
    for (int it = 0; it < 4; it++) {
        float *a = alloc_fill(600, &rng), *b = alloc_fill(300, &rng), *c = alloc_fill(200, &rng);
        CU_ASSERT_EQUAL(pc_dnnl_matmul_run(p, a, b, c), 0);
        CU_ASSERT(check_ref(&m, a, b, NULL, c) <= 1e-5);
        free(a);
        free(b);
        free(c);
    }
    pc_dnnl_matmul_free(p);
    pc_dnnl_free(d);
}

static void test_two_threads(void) {
    case_t t = {.rank = 2, .a_dims = DIMS(256, 192), .b_dims = DIMS(192, 160), .b_trans = 1, .alpha = 1.0f,
                .runs = 2, .threads = 2};
    run_case("2 threads", &t);
    t.b_constant = 1;
    t.prepare = 1;
    t.accumulate = 1;
    run_case("2 threads bconst acc", &t);
}

static void expect_error(const pc_matmul_desc *m, const char *needle) {
    char err[256] = "";
    pc_dnnl *d = pc_dnnl_new(1, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    pc_dnnl_matmul *p = pc_dnnl_matmul_new(d, m, err, sizeof err);
    CU_ASSERT_PTR_NULL(p);
    if (!strstr(err, needle)) fprintf(stderr, "\nerror message '%s' lacks '%s'\n", err, needle);
    CU_ASSERT(strstr(err, needle) != NULL);
    pc_dnnl_matmul_free(p);
    pc_dnnl_free(d);
}

static void test_errors(void) {
    pc_matmul_desc m = {.rank = 2, .a_dims = {8, 64}, .a_strides = {64, 1}, .b_dims = {32, 64}, .b_strides = {1, 32},
                        .c_dims = {8, 64}, .alpha = 1.0f};
    expect_error(&m, "[8,64]x[32,64]^T: K mismatch");
    m.b_dims[0] = 64;
    m.c_dims[1] = 63;
    expect_error(&m, "c dims [8,63]");
    pc_matmul_desc r = m;
    r.rank = 1;
    expect_error(&r, "rank 1");
    pc_matmul_desc bb = {.rank = 3, .a_dims = {2, 4, 4}, .a_strides = {16, 4, 1}, .b_dims = {3, 4, 4},
                         .b_strides = {16, 4, 1}, .c_dims = {3, 4, 4}, .alpha = 1.0f};
    expect_error(&bb, "batch axis 0");
    pc_matmul_desc ns = m;
    ns.c_dims[1] = 64;
    ns.a_strides[0] = -64;
    expect_error(&ns, "negative stride");
    pc_matmul_desc na = ns;
    na.a_strides[0] = 64;
    na.alpha = NAN;
    expect_error(&na, "alpha");

    char err[128];
    CU_ASSERT_PTR_NULL(pc_dnnl_matmul_new(NULL, &m, err, sizeof err));
    CU_ASSERT_EQUAL(pc_dnnl_matmul_run(NULL, NULL, NULL, NULL), -1);
    CU_ASSERT_EQUAL(pc_dnnl_matmul_prepare_b(NULL, NULL, err, sizeof err), -1);
    pc_dnnl_matmul_free(NULL);
    pc_dnnl_free(NULL);
    /* run with NULL operands fails cleanly */
    pc_dnnl *d = pc_dnnl_new(1, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    pc_dnnl_matmul *p = pc_dnnl_matmul_new(d, &ns, err, sizeof err);
    CU_ASSERT_PTR_NULL(p); /* ns has a negative stride */
    ns.a_strides[0] = 64;
    p = pc_dnnl_matmul_new(d, &ns, err, sizeof err); /* b: [64,64] strides {1,32}: overlapping rows */
    CU_ASSERT_PTR_NULL(p);
    CU_ASSERT(strstr(err, "[8,64]x[64,64]^T: dnnl_memory_desc_init_by_strides(b): invalid_arguments") != NULL);
    pc_dnnl_matmul_free(p);
    ns.b_strides[1] = 64;
    p = pc_dnnl_matmul_new(d, &ns, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    float x[64 * 64] = {0};
    CU_ASSERT_EQUAL(pc_dnnl_matmul_run(p, NULL, x, x), -1);
    CU_ASSERT_EQUAL(pc_dnnl_matmul_run(p, x, NULL, x), -1);
    CU_ASSERT_EQUAL(pc_dnnl_matmul_prepare_b(p, NULL, err, sizeof err), -1);
    pc_dnnl_matmul_free(p);
    pc_dnnl_free(d);
}

static void test_impl_string(void) {
    char err[256];
    pc_dnnl *d = pc_dnnl_new(1, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    pc_matmul_desc m = {.rank = 2, .a_dims = {64, 64}, .a_strides = {64, 1}, .b_dims = {64, 64}, .b_strides = {64, 1},
                        .c_dims = {64, 64}, .alpha = 1.0f};
    pc_dnnl_matmul *p = pc_dnnl_matmul_new(d, &m, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    printf("[impl %s] ", pc_dnnl_matmul_impl(p));
    CU_ASSERT(strlen(pc_dnnl_matmul_impl(p)) > 0);
    pc_dnnl_matmul_free(p);
    pc_dnnl_free(d);
}

static CU_TestInfo tests[] = {{"plain_2d", test_plain_2d},
                              {"transposes", test_transposes},
                              {"padded_strides", test_padded_strides},
                              {"batched", test_batched},
                              {"broadcast", test_broadcast},
                              {"alpha", test_alpha},
                              {"accumulate", test_accumulate},
                              {"b_constant", test_b_constant},
                              {"b_constant_copy_semantics", test_b_constant_copy_semantics},
                              {"lora_shapes", test_lora_shapes},
                              {"zero_size", test_zero_size},
                              {"repeated_runs", test_repeated_runs},
                              {"two_threads", test_two_threads},
                              {"errors", test_errors},
                              {"impl_string", test_impl_string},
                              CU_TEST_INFO_NULL};
PC_TEST_MAIN("onednn", tests)
