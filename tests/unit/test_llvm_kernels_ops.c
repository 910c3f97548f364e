/* The LLVM kernel backend, op by op: each elementwise op compiled by the JIT against the reference
 * interpreter (tests/unit/kernel_check.h), and the math helpers swept against libm over wide
 * ranges (every f32 when PEFTC_EXHAUSTIVE=1). */
#include "kernel_check.h"

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
        {PC_OP_stop_gradient, "stop_gradient", FILL_SPECIAL, -5, 5, EXACT, 0, 0},
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
        {PC_OP_stop_gradient, "stop_gradient_i32", FILL_INTFULL, 0, 0, EXACT, 0, 0},
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
    {"math_sweep", test_math_sweep},
    {"cleanup", test_cleanup},
    CU_TEST_INFO_NULL,
};

PC_TEST_MAIN("llvm_kernels_ops", tests)
