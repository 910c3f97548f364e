/* The LLVM kernel backend beyond single ops: fused chains, layouts, rank 0 and empty shapes,
 * multi-kernel modules, error messages, AOT objects and IR text, and throughput and compile times
 * (tests/unit/kernel_check.h). */
#include "kernel_check.h"

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

/* rows shorter than a vector under longer loops (LoHa's Khatri-Rao rows, w1_a[o, i] w2_a[o, j]):
 * exact, and after -O3 contiguous vector rows, not an outer loop vectorized into scatters */
static void test_short_rows(void) {
    tcase t;
    tc_init(&t);
    rseed(11);
    pc_shape s = PC_SHAPE(48, 8, 8);
    pc_val a = tc_leaf(&t, PC_F32, PC_SHAPE(48, 8, 1), FILL_UNIFORM, -2, 2);
    pc_val b = tc_leaf(&t, PC_F32, PC_SHAPE(48, 1, 8), FILL_UNIFORM, -2, 2);
    tc_out(&t, pc_mul(t.g, a, b));
    tc_run(&t, s, EXACT, "khatri_rao_rows");
    char err[512];
    char *ir = pc_llvm_kernel_ir_o3(&t.k, "khatri_rao_rows", err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ir);
    CU_ASSERT_PTR_NULL(strstr(ir, "scatter"));
    CU_ASSERT(strstr(ir, "store <8 x float>") || strstr(ir, "store <16 x float>")); /* a row, or two in zmm */
    free(ir);
    tc_free(&t);
    /* a row of 3 (SLP's tail) and a transposed operand under the same loops */
    tc_init(&t);
    pc_val x = tc_leaf(&t, PC_F32, PC_SHAPE(20, 5, 3), FILL_UNIFORM, -2, 2);
    pc_val y = tc_leaf(&t, PC_F32, PC_SHAPE(3, 5, 20), FILL_UNIFORM, -2, 2);
    tc_out(&t, pc_add(t.g, x, pc_transpose(t.g, y, 3, (int64_t[]){2, 1, 0})));
    tc_run(&t, PC_SHAPE(20, 5, 3), EXACT, "rows_of_3");
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
    {"fused_chain", test_fused_chain},
    {"layouts", test_layouts},
    {"short_rows", test_short_rows},
    {"rank0_and_empty", test_rank0_and_empty},
    {"multi_kernel_module", test_multi_kernel_module},
    {"errors", test_errors},
    {"object_and_ir", test_object_and_ir},
    {"throughput", test_throughput},
    {"cleanup", test_cleanup},
    CU_TEST_INFO_NULL,
};

PC_TEST_MAIN("llvm_kernels_fused", tests)
