/* Matmul, layout, model and optimizer ops of ir/ops.def through the reference interpreter,
 * against naive double-precision references (tests/unit/ops_check.h). The last test checks that
 * every non-leaf op of the registry ran here or is one test_ops_elementwise.c covers. */
#include "ops_check.h"

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
    CU_ASSERT_PTR_NOT_NULL(strstr(h->err, "test_ops_structured.c:"));
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
    CU_ASSERT_PTR_NOT_NULL(strstr(h->err, "test_ops_structured.c:"));
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
        CU_ASSERT_PTR_NOT_NULL(strstr(h->err, "test_ops_structured.c:"));
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

/* ---------------------------------------------------------------- registry coverage */

static void t_coverage(void) {
    int missing = 0;
    for (int op = 0; op < PC_OP_COUNT; op++) {
        const pc_op_info *info = pc_op_get((pc_opcode)op);
        if (info->fusion == PC_FUSE_SOURCE) continue;
        if (!g_covered[op] && !ops_elementwise_covers(info->name)) {
            printf("\n  op '%s' has no test in test_ops_structured.c or test_ops_elementwise.c", info->name);
            missing++;
        }
    }
    CU_ASSERT_EQUAL(missing, 0);
}

static CU_TestInfo tests[] = {
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
    {"every op covered", t_coverage},
    CU_TEST_INFO_NULL,
};

PC_TEST_MAIN("ops_structured", tests)
