/* The reference interpreter's runtime behaviour across ops: errors, keep_all, zero-size tensors,
 * pc_init_fill, rank 6, and a stories260K-sized step's speed (tests/unit/ops_check.h). */
#include "ops_check.h"

static void t_errors(void) {
    /* unbound input */
    H *h = hnew();
    pc_val t = pc_input(h->g, "tokens", PC_I32, PC_SHAPE(8, 64));
    mo(h, pc_cast(h->g, t, PC_F32));
    CU_ASSERT_EQUAL(hrun(h), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(h->err, "%tokens (input i32[8,64]) is not bound"));
    CU_ASSERT_PTR_NOT_NULL(strstr(h->err, "test_ops_runtime.c:"));
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
    /* bf16 is a storage type: an elementwise op on it is refused when built (test_bf16.c has the rest) */
    h = hnew();
    uint16_t bf[4] = {0};
    pc_val xb = din(h, "xb", PC_BF16, PC_SHAPE(4), bf);
    mo(h, pc_add(h->g, xb, xb));
    CU_ASSERT_EQUAL(hrun(h), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(h->err, "operand 1 is bf16: add reads f32"));
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
    h->nan_ok = true; /* the mean over an empty axis is 0/0 */
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

static CU_TestInfo tests[] = {
    {"errors", t_errors},
    {"keep_all", t_keep_all},
    {"zero-size tensors", t_zero_size},
    {"pc_init_fill", t_init_fill},
    {"rank 6", t_rank6},
    {"speed", t_speed},
    CU_TEST_INFO_NULL,
};

PC_TEST_MAIN("ops_runtime", tests)
