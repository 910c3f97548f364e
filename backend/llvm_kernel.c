/* LLVM IR generation for fused elementwise kernels (pc_kernel_desc, backend/kernel.h), the
 * host target machine, the O3 pipeline, AOT object emission and IR dumps. The ORC/LLJIT side
 * lives in llvm_jit.c; the transcendental functions in llvm_kernel_math.c.
 *
 * Each kernel NAME becomes
 *     void NAME(ptr %args)                          ; args[i]: inputs in order, then outputs
 *         -> loads the pointers and calls
 *     internal void NAME.body(ptr noalias %in0, ..., ptr noalias %out0, ...)   ; alwaysinline
 * so that after inlining the vectorizer sees distinct noalias pointers (no runtime alias
 * checks). Contract: an output buffer must not overlap any input or other output (inputs may
 * share memory with each other). In-place updates need a separate output buffer.
 *
 * The body is a nest of do-while loops over the iteration space after dropping size-1 axes and
 * merging adjacent axes that are contiguous for every strided input (outputs are dense, so
 * the innermost loop is unit-stride for them). Inputs whose strides are all 0 are loaded once
 * before the loops. Trip counts are compile-time constants; an empty space returns at once.
 * The f32[8] hyper-parameters of adamw_* / clip_coef must be a kernel input; they are read at
 * fixed offsets from its base pointer (its strides are ignored). Dropout's index is the
 * element's row-major index in the iteration space.
 *
 * Numerics (the reference interpreter evaluates f32 math in double and rounds once):
 *   bit-identical to the reference: add sub mul div (f32 and i32, i32 wraps), maximum minimum
 *     (NaN-propagating like the reference), eq lt gt, where, neg, scale (in double), sqrt,
 *     square, abs, relu, cast (saturating, NaN -> 0), dropout (same hash, same mask),
 *     adamw_m adamw_v adamw_p clip_coef (in double; the bias corrections call libm pow once per
 *     kernel call, so an AOT object needs -lm);
 *   rsqrt: 1/sqrt in f32, <= 1 ulp;
 *   exp, log, tanh 1 ulp; sigmoid 2; silu, gelu 3 (llvm_kernel_math.c).
 * No fast-math flags are used (no contraction) outside the math helpers' explicit llvm.fma. */
#include "backend/kernel.h"

#include "runtime/rng.h"

#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>
#include <llvm-c/DebugInfo.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* shared with llvm_kernel_math.c and llvm_jit.c (keep the prototypes in sync) */
LLVMValueRef pc_llvm_math(LLVMBuilderRef b, LLVMModuleRef m, pc_opcode op, int64_t approx, LLVMValueRef x);
LLVMTargetMachineRef pc_llvm_host_tm(char *err, size_t errlen);
LLVMModuleRef pc_llvm_build_module(LLVMContextRef c, LLVMTargetMachineRef tm, const pc_kernel_desc *k,
                                   const char *const *names, int nk, char *err, size_t errlen);
int pc_llvm_optimize(LLVMModuleRef m, LLVMTargetMachineRef tm, char *err, size_t errlen);

#define NPARAM (PC_K_MAX_IN + PC_K_MAX_OUT)

typedef struct {
    LLVMContextRef c;
    LLVMModuleRef m;
    LLVMBuilderRef b;
    LLVMTypeRef f32, f64, i1, i32, i64, ptr, voidt;
    const pc_kernel_desc *k;
    const char *name;
    char *err;
    size_t errlen;
    LLVMValueRef fn; /* NAME.body */
    pc_dtype vdt[PC_K_MAX_INSNS]; /* result dtype of each insn (validated) */
    bool is_value[PC_K_MAX_IN];   /* input read elementwise */
    bool uniform[PC_K_MAX_IN];    /* ... with all strides 0: loaded once */
    /* the iteration space after collapsing */
    int rank;
    int64_t dim[PC_MAX_RANK], ost[PC_MAX_RANK];
    int64_t st[PC_K_MAX_IN][PC_MAX_RANK];
    LLVMValueRef param[NPARAM];
    LLVMValueRef uni[PC_K_MAX_IN];
    LLVMValueRef aux[PC_K_MAX_INSNS][6]; /* per-insn invariants computed before the loops */
    LLVMValueRef in_val[PC_K_MAX_IN];
    LLVMValueRef val[PC_K_MAX_INSNS];
} kg;

static int kfail(kg *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int kfail(kg *g, const char *fmt, ...) {
    if (!g->err || !g->errlen) return -1;
    int n = snprintf(g->err, g->errlen, "kernel %s: ", g->name ? g->name : "?");
    if (n < 0) n = 0;
    if ((size_t)n < g->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g->err + n, g->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- validation ---- */

static pc_dtype odt(const kg *g, int ref) { return ref >= 0 ? g->k->input[ref].dtype : g->vdt[-ref - 1]; }

static int check_insn(kg *g, int i) {
    const pc_kinsn *in = &g->k->insn[i];
    pc_opcode op = in->op;
    if ((int)op < 0 || op >= PC_OP_COUNT) return kfail(g, "insn %d: invalid opcode %d", i, (int)op);
    const pc_op_info *info = pc_op_get(op);
    if (!pc_fusable_op(op))
        return kfail(g, "insn %d: %s is not supported in a fused elementwise kernel", i, info->name);
    if (in->nin != info->nin) return kfail(g, "insn %d (%s): %d operands, expected %d", i, info->name, in->nin, info->nin);
    for (int j = 0; j < in->nin; j++) {
        int r = in->in[j];
        if (r >= 0 ? r >= g->k->ninputs : -r - 1 >= i)
            return kfail(g, "insn %d (%s): operand %d refers to %s %d, which does not exist (yet)", i, info->name, j,
                         r >= 0 ? "input" : "insn", r >= 0 ? r : -r - 1);
    }
    int hp = pc_kernel_hp_operand(op);
    if (hp >= 0 && in->in[hp] < 0)
        return kfail(g, "insn %d (%s): the hyper-parameters (operand %d) must be a kernel input", i, info->name, hp);
    pc_dtype d[4] = {PC_F32, PC_F32, PC_F32, PC_F32};
    for (int j = 0; j < in->nin; j++) d[j] = odt(g, in->in[j]);
    pc_dtype res = PC_F32;
    bool ok = true;
    switch (op) {
    case PC_OP_add: case PC_OP_sub: case PC_OP_mul: case PC_OP_maximum: case PC_OP_minimum:
        ok = d[0] == d[1] && (d[0] == PC_F32 || d[0] == PC_I32);
        res = d[0];
        break;
    case PC_OP_div: ok = d[0] == PC_F32 && d[1] == PC_F32; res = PC_F32; break;
    case PC_OP_eq: case PC_OP_lt: case PC_OP_gt:
        ok = d[0] == d[1] && (d[0] == PC_F32 || d[0] == PC_I32);
        res = PC_F32;
        break;
    case PC_OP_where:
        ok = (d[0] == PC_F32 || d[0] == PC_I32) && d[1] == d[2] && (d[1] == PC_F32 || d[1] == PC_I32);
        res = d[1];
        break;
    case PC_OP_neg: case PC_OP_scale: case PC_OP_stop_gradient: ok = d[0] == PC_F32 || d[0] == PC_I32; res = d[0]; break;
    case PC_OP_cast:
        ok = (d[0] == PC_F32 || d[0] == PC_I32) && (in->attr[0].i == PC_F32 || in->attr[0].i == PC_I32);
        res = (pc_dtype)in->attr[0].i;
        break;
    case PC_OP_dropout:
        ok = d[0] == PC_F32 && d[1] == PC_I32;
        res = PC_F32;
        if (!(in->attr[0].f >= 0.0 && in->attr[0].f < 1.0))
            return kfail(g, "insn %d (dropout): p = %g is outside [0, 1)", i, in->attr[0].f);
        break;
    case PC_OP_gelu:
        if (in->attr[0].i != 0 && in->attr[0].i != 1)
            return kfail(g, "insn %d (gelu): approximate must be 0 or 1", i);
        ok = d[0] == PC_F32;
        res = PC_F32;
        break;
    default: /* unary f32 math, adamw_*, clip_coef: all operands f32 */
        for (int j = 0; j < in->nin; j++) ok = ok && d[j] == PC_F32;
        res = PC_F32;
        break;
    }
    if (!ok) {
        char buf[64] = "";
        for (int j = 0; j < in->nin; j++) {
            size_t l = strlen(buf);
            snprintf(buf + l, sizeof buf - l, "%s%s", j ? ", " : "", pc_dtype_name(d[j]));
        }
        return kfail(g, "insn %d (%s): unsupported operand dtypes (%s)", i, info->name, buf);
    }
    if (in->dtype != res)
        return kfail(g, "insn %d (%s): result dtype %s, expected %s", i, info->name, pc_dtype_name(in->dtype),
                     pc_dtype_name(res));
    g->vdt[i] = res;
    return 0;
}

static bool is_c_ident(const char *s) {
    if (!s || !*s || (*s >= '0' && *s <= '9')) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return true;
}

static int check_desc(kg *g) {
    const pc_kernel_desc *k = g->k;
    if (k->rank < 0 || k->rank > PC_MAX_RANK) return kfail(g, "rank %d is out of range", k->rank);
    for (int a = 0; a < k->rank; a++)
        if (k->dim[a] < 0) return kfail(g, "dimension %d is negative (%lld)", a, (long long)k->dim[a]);
    if (k->ninputs < 0 || k->ninputs > PC_K_MAX_IN) return kfail(g, "%d inputs (at most %d)", k->ninputs, PC_K_MAX_IN);
    if (k->noutputs < 0 || k->noutputs > PC_K_MAX_OUT)
        return kfail(g, "%d outputs (at most %d)", k->noutputs, PC_K_MAX_OUT);
    if (k->ninsns < 0 || k->ninsns > PC_K_MAX_INSNS)
        return kfail(g, "%d instructions (at most %d)", k->ninsns, PC_K_MAX_INSNS);
    for (int i = 0; i < k->ninputs; i++)
        if (k->input[i].dtype != PC_F32 && k->input[i].dtype != PC_I32)
            return kfail(g, "input %d has dtype %s; the LLVM backend supports f32 and i32", i,
                         pc_dtype_name(k->input[i].dtype));
    for (int i = 0; i < k->ninsns; i++)
        if (check_insn(g, i)) return -1;
    for (int o = 0; o < k->noutputs; o++)
        if (k->output[o] < 0 || k->output[o] >= k->ninsns)
            return kfail(g, "output %d refers to insn %d, which does not exist", o, k->output[o]);
    memset(g->is_value, 0, sizeof g->is_value);
    for (int i = 0; i < k->ninsns; i++) {
        int hp = pc_kernel_hp_operand(k->insn[i].op);
        for (int j = 0; j < k->insn[i].nin; j++)
            if (k->insn[i].in[j] >= 0 && j != hp) g->is_value[k->insn[i].in[j]] = true;
    }
    return 0;
}

/* ---- iteration space ---- */

/* drops size-1 axes and merges an axis into the next inner one when every value-input is
 * contiguous across them; returns false for an empty space */
static bool collapse(kg *g) {
    const pc_kernel_desc *k = g->k;
    int r = 0;
    for (int a = 0; a < k->rank; a++) {
        if (k->dim[a] == 0) return false;
        if (k->dim[a] == 1) continue;
        bool merge = r > 0;
        for (int i = 0; merge && i < k->ninputs; i++)
            if (g->is_value[i] && g->st[i][r - 1] != k->input[i].stride[a] * k->dim[a]) merge = false;
        if (merge) {
            g->dim[r - 1] *= k->dim[a];
            for (int i = 0; i < k->ninputs; i++) g->st[i][r - 1] = k->input[i].stride[a];
        } else {
            g->dim[r] = k->dim[a];
            for (int i = 0; i < k->ninputs; i++) g->st[i][r] = k->input[i].stride[a];
            r++;
        }
    }
    g->rank = r;
    int64_t m = 1;
    for (int a = r - 1; a >= 0; a--) {
        g->ost[a] = m;
        m *= g->dim[a];
    }
    for (int i = 0; i < k->ninputs; i++) {
        g->uniform[i] = true;
        for (int a = 0; a < r; a++)
            if (g->st[i][a] != 0) g->uniform[i] = false;
    }
    return true;
}

/* ---- IR helpers ---- */

static LLVMTypeRef ltype(const kg *g, pc_dtype d) { return d == PC_I32 ? g->i32 : g->f32; }
static LLVMValueRef ci64(kg *g, uint64_t v) { return LLVMConstInt(g->i64, v, 0); }
static LLVMValueRef cf(kg *g, double v) { return LLVMConstReal(g->f32, v); }
static LLVMValueRef cd(kg *g, double v) { return LLVMConstReal(g->f64, v); }

static LLVMValueRef intr(kg *g, const char *name, LLVMTypeRef *ovl, unsigned novl, LLVMValueRef *args, unsigned n) {
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMValueRef f = LLVMGetIntrinsicDeclaration(g->m, id, ovl, novl);
    LLVMTypeRef ft = LLVMIntrinsicGetType(g->c, id, ovl, novl);
    return LLVMBuildCall2(g->b, ft, f, args, n, "");
}
static LLVMValueRef intr1(kg *g, const char *name, LLVMValueRef x) {
    LLVMTypeRef t = LLVMTypeOf(x);
    return intr(g, name, &t, 1, &x, 1);
}

static void add_attr(kg *g, LLVMValueRef fn, unsigned idx, const char *name) {
    unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
    LLVMAddAttributeAtIndex(fn, idx, LLVMCreateEnumAttribute(g->c, kind, 0));
}

static LLVMValueRef fpext(kg *g, LLVMValueRef x) { return LLVMBuildFPExt(g->b, x, g->f64, ""); }
static LLVMValueRef fptrunc(kg *g, LLVMValueRef x) { return LLVMBuildFPTrunc(g->b, x, g->f32, ""); }

/* double -> i32: truncation toward zero, saturating, NaN -> 0 (the reference's to_i32) */
static LLVMValueRef sat_i32(kg *g, LLVMValueRef x) {
    LLVMTypeRef t[2] = {g->i32, LLVMTypeOf(x)};
    return intr(g, "llvm.fptosi.sat", t, 2, &x, 1);
}

/* runtime/rng.h pc_mix64 on i64 */
static LLVMValueRef mix64(kg *g, LLVMValueRef z) {
    LLVMBuilderRef b = g->b;
    z = LLVMBuildAdd(b, z, ci64(g, 0x9e3779b97f4a7c15ull), "");
    z = LLVMBuildMul(b, LLVMBuildXor(b, z, LLVMBuildLShr(b, z, ci64(g, 30), ""), ""), ci64(g, 0xbf58476d1ce4e5b9ull), "");
    z = LLVMBuildMul(b, LLVMBuildXor(b, z, LLVMBuildLShr(b, z, ci64(g, 27), ""), ""), ci64(g, 0x94d049bb133111ebull), "");
    return LLVMBuildXor(b, z, LLVMBuildLShr(b, z, ci64(g, 31), ""), "");
}

/* hp[k] of the hyper-parameter input of insn i, as double (emitted before the loops) */
static LLVMValueRef load_hp(kg *g, int i, int k) {
    int h = g->k->insn[i].in[pc_kernel_hp_operand(g->k->insn[i].op)];
    LLVMValueRef idx = ci64(g, (uint64_t)k);
    LLVMValueRef p = LLVMBuildInBoundsGEP2(g->b, g->f32, g->param[h], &idx, 1, "");
    LLVMValueRef v = LLVMBuildLoad2(g->b, g->f32, p, "");
    LLVMSetAlignment(v, 4);
    return fpext(g, v);
}

/* loop-invariant parts of the optimizer ops, in the order the reference evaluates them */
static void emit_invariants(kg *g) {
    for (int i = 0; i < g->k->ninsns; i++) {
        LLVMValueRef *a = g->aux[i];
        LLVMTypeRef d = g->f64;
        switch (g->k->insn[i].op) {
        case PC_OP_adamw_m: /* b1, 1 - b1 */
            a[0] = load_hp(g, i, 1);
            a[1] = LLVMBuildFSub(g->b, cd(g, 1.0), a[0], "");
            break;
        case PC_OP_adamw_v: /* b2, 1 - b2 */
            a[0] = load_hp(g, i, 2);
            a[1] = LLVMBuildFSub(g->b, cd(g, 1.0), a[0], "");
            break;
        case PC_OP_adamw_p: { /* lr, lr*wd, 1 - b1^t, 1 - b2^t, eps */
            LLVMValueRef lr = load_hp(g, i, 0), b1 = load_hp(g, i, 1), b2 = load_hp(g, i, 2);
            LLVMValueRef eps = load_hp(g, i, 3), wd = load_hp(g, i, 4), t = load_hp(g, i, 5);
            LLVMValueRef p1[2] = {b1, t}, p2[2] = {b2, t};
            a[0] = lr;
            a[1] = LLVMBuildFMul(g->b, lr, wd, "");
            a[2] = LLVMBuildFSub(g->b, cd(g, 1.0), intr(g, "llvm.pow", &d, 1, p1, 2), "");
            a[3] = LLVMBuildFSub(g->b, cd(g, 1.0), intr(g, "llvm.pow", &d, 1, p2, 2), "");
            a[4] = eps;
            break;
        }
        case PC_OP_clip_coef: a[0] = load_hp(g, i, 6); break;
        default: break;
        }
    }
}

static LLVMValueRef opv(kg *g, int ref) { return ref >= 0 ? g->in_val[ref] : g->val[-ref - 1]; }

static LLVMValueRef emit_insn(kg *g, int i, LLVMValueRef flat) {
    const pc_kinsn *in = &g->k->insn[i];
    LLVMBuilderRef b = g->b;
    LLVMValueRef x = opv(g, in->in[0]), y = in->nin > 1 ? opv(g, in->in[1]) : NULL;
    bool f = odt(g, in->in[0]) == PC_F32;
    switch (in->op) {
    case PC_OP_add: return f ? LLVMBuildFAdd(b, x, y, "") : LLVMBuildAdd(b, x, y, "");
    case PC_OP_sub: return f ? LLVMBuildFSub(b, x, y, "") : LLVMBuildSub(b, x, y, "");
    case PC_OP_mul: return f ? LLVMBuildFMul(b, x, y, "") : LLVMBuildMul(b, x, y, "");
    case PC_OP_div: return LLVMBuildFDiv(b, x, y, "");
    case PC_OP_maximum: case PC_OP_minimum: {
        bool mx = in->op == PC_OP_maximum;
        LLVMValueRef c;
        if (f) /* (isnan(a) || a > b) ? a : b */
            c = LLVMBuildOr(b, LLVMBuildFCmp(b, LLVMRealUNO, x, x, ""),
                            LLVMBuildFCmp(b, mx ? LLVMRealOGT : LLVMRealOLT, x, y, ""), "");
        else
            c = LLVMBuildICmp(b, mx ? LLVMIntSGT : LLVMIntSLT, x, y, "");
        return LLVMBuildSelect(b, c, x, y, "");
    }
    case PC_OP_eq: case PC_OP_lt: case PC_OP_gt: {
        LLVMValueRef c;
        if (f)
            c = LLVMBuildFCmp(b, in->op == PC_OP_eq ? LLVMRealOEQ : in->op == PC_OP_lt ? LLVMRealOLT : LLVMRealOGT, x, y, "");
        else
            c = LLVMBuildICmp(b, in->op == PC_OP_eq ? LLVMIntEQ : in->op == PC_OP_lt ? LLVMIntSLT : LLVMIntSGT, x, y, "");
        return LLVMBuildSelect(b, c, cf(g, 1.0), cf(g, 0.0), "");
    }
    case PC_OP_where: {
        LLVMValueRef c = f ? LLVMBuildFCmp(b, LLVMRealUNE, x, cf(g, 0.0), "")
                           : LLVMBuildICmp(b, LLVMIntNE, x, LLVMConstInt(g->i32, 0, 0), "");
        return LLVMBuildSelect(b, c, y, opv(g, in->in[2]), "");
    }
    case PC_OP_stop_gradient: return x;
    case PC_OP_neg: return f ? LLVMBuildFNeg(b, x, "") : LLVMBuildSub(b, LLVMConstInt(g->i32, 0, 0), x, "");
    case PC_OP_scale: { /* alpha * x + beta in double, rounded once (i32: saturating) */
        LLVMValueRef xd = f ? fpext(g, x) : LLVMBuildSIToFP(b, x, g->f64, "");
        LLVMValueRef r = LLVMBuildFAdd(b, LLVMBuildFMul(b, cd(g, in->attr[0].f), xd, ""), cd(g, in->attr[1].f), "");
        return f ? fptrunc(g, r) : sat_i32(g, r);
    }
    case PC_OP_sqrt: return intr1(g, "llvm.sqrt", x);
    case PC_OP_rsqrt: return LLVMBuildFDiv(b, cf(g, 1.0), intr1(g, "llvm.sqrt", x), "");
    case PC_OP_square: return LLVMBuildFMul(b, x, x, "");
    case PC_OP_abs: return intr1(g, "llvm.fabs", x);
    case PC_OP_relu: return LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOLT, x, cf(g, 0.0), ""), cf(g, 0.0), x, "");
    case PC_OP_exp: case PC_OP_log: case PC_OP_tanh: case PC_OP_sigmoid: case PC_OP_silu: case PC_OP_gelu:
        return pc_llvm_math(b, g->m, in->op, in->attr[0].i, x);
    case PC_OP_cast:
        if (in->dtype == odt(g, in->in[0])) return x;
        return in->dtype == PC_I32 ? sat_i32(g, x) : LLVMBuildSIToFP(b, x, g->f32, "");
    case PC_OP_dropout: {
        double p = in->attr[0].f;
        if (p == 0.0) return x;
        /* keep iff (h >> 40) * 2^-24 >= p  <=>  (h >> 40) >= ceil(p * 2^24) */
        uint64_t thr = (uint64_t)ceil(p * 16777216.0);
        uint64_t ks = pc_mix64((uint64_t)in->attr[1].i);
        LLVMValueRef seed = LLVMBuildSExt(b, y, g->i64, "");
        LLVMValueRef h = mix64(g, LLVMBuildXor(b, mix64(g, LLVMBuildXor(b, seed, ci64(g, ks), "")), flat, ""));
        LLVMValueRef keep = LLVMBuildICmp(b, LLVMIntUGE, LLVMBuildLShr(b, h, ci64(g, 40), ""), ci64(g, thr), "");
        LLVMValueRef sx = LLVMBuildFMul(b, x, LLVMConstReal(g->f32, (double)(float)(1.0 / (1.0 - p))), "");
        return LLVMBuildSelect(b, keep, sx, cf(g, 0.0), "");
    }
    case PC_OP_adamw_m: { /* b1*m + (1-b1)*gs*g */
        LLVMValueRef *a = g->aux[i];
        LLVMValueRef gs = fpext(g, opv(g, in->in[3]));
        LLVMValueRef t = LLVMBuildFMul(b, LLVMBuildFMul(b, a[1], gs, ""), fpext(g, y), "");
        return fptrunc(g, LLVMBuildFAdd(b, LLVMBuildFMul(b, a[0], fpext(g, x), ""), t, ""));
    }
    case PC_OP_adamw_v: { /* sg = gs*g; b2*v + (1-b2)*sg*sg */
        LLVMValueRef *a = g->aux[i];
        LLVMValueRef sg = LLVMBuildFMul(b, fpext(g, opv(g, in->in[3])), fpext(g, y), "");
        LLVMValueRef t = LLVMBuildFMul(b, LLVMBuildFMul(b, a[1], sg, ""), sg, "");
        return fptrunc(g, LLVMBuildFAdd(b, LLVMBuildFMul(b, a[0], fpext(g, x), ""), t, ""));
    }
    case PC_OP_adamw_p: { /* p - lr*wd*p - lr*(m/bc1) / (sqrt(v/bc2) + eps) */
        LLVMValueRef *a = g->aux[i];
        LLVMValueRef p = fpext(g, x), m = fpext(g, y), v = fpext(g, opv(g, in->in[2]));
        LLVMValueRef mhat = LLVMBuildFDiv(b, m, a[2], ""), vhat = LLVMBuildFDiv(b, v, a[3], "");
        LLVMValueRef den = LLVMBuildFAdd(b, intr1(g, "llvm.sqrt", vhat), a[4], "");
        LLVMValueRef r = LLVMBuildFSub(b, p, LLVMBuildFMul(b, a[1], p, ""), "");
        r = LLVMBuildFSub(b, r, LLVMBuildFDiv(b, LLVMBuildFMul(b, a[0], mhat, ""), den, ""), "");
        return fptrunc(g, r);
    }
    case PC_OP_clip_coef: { /* max_norm > 0 ? min(1, max_norm / (sqrt(sumsq) + 1e-6)) : 1 */
        LLVMValueRef mn = g->aux[i][0];
        LLVMValueRef c = LLVMBuildFDiv(b, mn, LLVMBuildFAdd(b, intr1(g, "llvm.sqrt", fpext(g, x)), cd(g, 1e-6), ""), "");
        c = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, c, cd(g, 1.0), ""), cd(g, 1.0), c, "");
        c = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, mn, cd(g, 0.0), ""), c, cd(g, 1.0), "");
        return fptrunc(g, c);
    }
    default: return NULL; /* rejected by check_insn */
    }
}

/* the innermost body: loads, the SSA program, stores */
static void emit_body(kg *g, LLVMValueRef *inoff, LLVMValueRef ooff) {
    const pc_kernel_desc *k = g->k;
    for (int j = 0; j < k->ninputs; j++) {
        if (!g->is_value[j]) continue;
        if (g->uniform[j]) {
            g->in_val[j] = g->uni[j];
            continue;
        }
        LLVMTypeRef t = ltype(g, k->input[j].dtype);
        LLVMValueRef p = LLVMBuildInBoundsGEP2(g->b, t, g->param[j], &inoff[j], 1, "");
        g->in_val[j] = LLVMBuildLoad2(g->b, t, p, "");
        LLVMSetAlignment(g->in_val[j], 4);
    }
    for (int i = 0; i < k->ninsns; i++) g->val[i] = emit_insn(g, i, ooff);
    for (int o = 0; o < k->noutputs; o++) {
        int i = k->output[o];
        LLVMValueRef p = LLVMBuildInBoundsGEP2(g->b, ltype(g, g->vdt[i]), g->param[k->ninputs + o], &ooff, 1, "");
        LLVMSetAlignment(LLVMBuildStore(g->b, g->val[i], p), 4);
    }
}

/* !llvm.loop !{self, !{"llvm.loop.vectorize.enable", false}} on a loop's latch branch */
static void no_vectorize(kg *g, LLVMValueRef br) {
    LLVMMetadataRef flag[2] = {LLVMMDStringInContext2(g->c, "llvm.loop.vectorize.enable", 26),
                               LLVMValueAsMetadata(LLVMConstInt(LLVMInt1TypeInContext(g->c), 0, 0))};
    LLVMMetadataRef tmp = LLVMTemporaryMDNode(g->c, NULL, 0);
    LLVMMetadataRef ops[2] = {tmp, LLVMMDNodeInContext2(g->c, flag, 2)};
    LLVMMetadataRef loop = LLVMMDNodeInContext2(g->c, ops, 2);
    LLVMMetadataReplaceAllUsesWith(tmp, loop);
    LLVMSetMetadata(br, LLVMGetMDKindIDInContext(g->c, "llvm.loop", 9), LLVMMetadataAsValue(g->c, loop));
}

static void emit_loops(kg *g, int lvl, LLVMValueRef *inoff, LLVMValueRef ooff) {
    if (lvl == g->rank) {
        emit_body(g, inoff, ooff);
        return;
    }
    LLVMBuilderRef b = g->b;
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(b);
    LLVMBasicBlockRef loop = LLVMAppendBasicBlockInContext(g->c, g->fn, "loop");
    LLVMBuildBr(b, loop);
    LLVMPositionBuilderAtEnd(b, loop);
    LLVMValueRef i = LLVMBuildPhi(b, g->i64, "i");
    LLVMValueRef noff[PC_K_MAX_IN];
    for (int j = 0; j < g->k->ninputs; j++) {
        noff[j] = inoff[j];
        if (g->is_value[j] && !g->uniform[j] && g->st[j][lvl] != 0)
            noff[j] = LLVMBuildNSWAdd(b, inoff[j], LLVMBuildNSWMul(b, i, ci64(g, (uint64_t)g->st[j][lvl]), ""), "");
    }
    LLVMValueRef no = LLVMBuildNSWAdd(b, ooff, LLVMBuildNSWMul(b, i, ci64(g, (uint64_t)g->ost[lvl]), ""), "");
    emit_loops(g, lvl + 1, noff, no);
    LLVMValueRef next = LLVMBuildNUWAdd(b, i, ci64(g, 1), "");
    LLVMSetNSW(next, 1);
    LLVMValueRef more = LLVMBuildICmp(b, LLVMIntNE, next, ci64(g, (uint64_t)g->dim[lvl]), "");
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(b);
    LLVMBasicBlockRef exit = LLVMAppendBasicBlockInContext(g->c, g->fn, "exit");
    LLVMValueRef br = LLVMBuildCondBr(b, more, loop, exit);
    /* Under an innermost loop shorter than a vector the loop vectorizer takes an outer loop
     * instead (the inner ones fully unrolled) and writes with scatters: 3x slower than the SLP
     * vectorizer's contiguous rows, which it gets once the outer loops are left alone. */
    if (lvl < g->rank - 1 && g->dim[g->rank - 1] < 16) no_vectorize(g, br);
    LLVMValueRef inv[2] = {ci64(g, 0), next};
    LLVMBasicBlockRef inb[2] = {pre, latch};
    LLVMAddIncoming(i, inv, inb, 2);
    LLVMPositionBuilderAtEnd(b, exit);
}

static int build_kernel(kg *g) {
    const pc_kernel_desc *k = g->k;
    if (check_desc(g)) return -1;
    int np = k->ninputs + k->noutputs;
    LLVMTypeRef pts[NPARAM];
    for (int i = 0; i < np; i++) pts[i] = g->ptr;
    if (LLVMGetNamedFunction(g->m, g->name)) return kfail(g, "the name is used twice");
    size_t nl = strlen(g->name);
    char *bname = malloc(nl + 6);
    if (!bname) return kfail(g, "out of memory");
    memcpy(bname, g->name, nl);
    memcpy(bname + nl, ".body", 6);
    g->fn = LLVMAddFunction(g->m, bname, LLVMFunctionType(g->voidt, pts, (unsigned)np, 0));
    free(bname);
    LLVMSetLinkage(g->fn, LLVMInternalLinkage);
    add_attr(g, g->fn, LLVMAttributeFunctionIndex, "alwaysinline");
    add_attr(g, g->fn, LLVMAttributeFunctionIndex, "nounwind");
    for (int i = 0; i < np; i++) {
        g->param[i] = LLVMGetParam(g->fn, (unsigned)i);
        add_attr(g, g->fn, (unsigned)i + 1, "noalias");
        add_attr(g, g->fn, (unsigned)i + 1, "nocapture");
        if (i < k->ninputs) add_attr(g, g->fn, (unsigned)i + 1, "readonly");
        char nm[16];
        snprintf(nm, sizeof nm, i < k->ninputs ? "in%d" : "out%d", i < k->ninputs ? i : i - k->ninputs);
        LLVMSetValueName2(g->param[i], nm, strlen(nm));
    }
    LLVMPositionBuilderAtEnd(g->b, LLVMAppendBasicBlockInContext(g->c, g->fn, "entry"));
    if (collapse(g)) {
        for (int j = 0; j < k->ninputs; j++)
            if (g->is_value[j] && g->uniform[j]) {
                g->uni[j] = LLVMBuildLoad2(g->b, ltype(g, k->input[j].dtype), g->param[j], "");
                LLVMSetAlignment(g->uni[j], 4);
            }
        emit_invariants(g);
        LLVMValueRef zero[PC_K_MAX_IN];
        for (int j = 0; j < PC_K_MAX_IN; j++) zero[j] = ci64(g, 0);
        emit_loops(g, 0, zero, ci64(g, 0));
    }
    LLVMBuildRetVoid(g->b);

    /* the entry point: void NAME(ptr args) */
    LLVMTypeRef ft = LLVMFunctionType(g->voidt, &g->ptr, 1, 0);
    LLVMValueRef fn = LLVMAddFunction(g->m, g->name, ft);
    add_attr(g, fn, LLVMAttributeFunctionIndex, "nounwind");
    add_attr(g, fn, 1, "nocapture");
    add_attr(g, fn, 1, "readonly");
    LLVMValueRef args = LLVMGetParam(fn, 0);
    LLVMSetValueName2(args, "args", 4);
    LLVMPositionBuilderAtEnd(g->b, LLVMAppendBasicBlockInContext(g->c, fn, "entry"));
    LLVMValueRef ps[NPARAM];
    for (int i = 0; i < np; i++) {
        LLVMValueRef idx = ci64(g, (uint64_t)i);
        LLVMValueRef p = LLVMBuildInBoundsGEP2(g->b, g->ptr, args, &idx, 1, "");
        ps[i] = LLVMBuildLoad2(g->b, g->ptr, p, "");
        LLVMSetAlignment(ps[i], 8);
    }
    LLVMBuildCall2(g->b, LLVMGlobalGetValueType(g->fn), g->fn, ps, (unsigned)np, "");
    LLVMBuildRetVoid(g->b);
    return 0;
}

/* adds target-cpu / target-features to every defined function, and vectors as wide as the target
 * has: LLVM tunes Intel AVX-512 cores (this VM reports "rocketlake") to prefer 256 bits, which
 * left the compute-bound kernels at half width (silu * mul of 88k floats: 43 us in ymm, 35 us in
 * zmm); without AVX-512 the legal width caps it at 256 */
static void set_target_attrs(LLVMContextRef c, LLVMModuleRef m, LLVMTargetMachineRef tm) {
    char *cpu = LLVMGetTargetMachineCPU(tm), *feat = LLVMGetTargetMachineFeatureString(tm);
    LLVMAttributeRef a1 = LLVMCreateStringAttribute(c, "target-cpu", 10, cpu, (unsigned)strlen(cpu));
    LLVMAttributeRef a2 = LLVMCreateStringAttribute(c, "target-features", 15, feat, (unsigned)strlen(feat));
    LLVMAttributeRef a3 = LLVMCreateStringAttribute(c, "prefer-vector-width", 19, "512", 3);
    for (LLVMValueRef f = LLVMGetFirstFunction(m); f; f = LLVMGetNextFunction(f)) {
        if (LLVMIsDeclaration(f)) continue;
        LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex, a1);
        LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex, a2);
        LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex, a3);
    }
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(feat);
}

LLVMModuleRef pc_llvm_build_module(LLVMContextRef c, LLVMTargetMachineRef tm, const pc_kernel_desc *k,
                                   const char *const *names, int nk, char *err, size_t errlen) {
    if (nk < 0 || (nk > 0 && (!k || !names))) {
        set_err(err, errlen, "invalid kernel list");
        return NULL;
    }
    for (int i = 0; i < nk; i++) {
        if (!is_c_ident(names[i])) {
            set_err(err, errlen, "kernel name '%s' is not a C identifier", names[i] ? names[i] : "(null)");
            return NULL;
        }
        for (int j = 0; j < i; j++)
            if (!strcmp(names[i], names[j])) {
                set_err(err, errlen, "kernel name '%s' is used twice", names[i]);
                return NULL;
            }
    }
    LLVMModuleRef m = LLVMModuleCreateWithNameInContext("peftc_kernels", c);
    if (tm) {
        char *triple = LLVMGetTargetMachineTriple(tm);
        LLVMSetTarget(m, triple);
        LLVMDisposeMessage(triple);
        LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
        char *dl = LLVMCopyStringRepOfTargetData(td);
        LLVMSetDataLayout(m, dl);
        LLVMDisposeMessage(dl);
        LLVMDisposeTargetData(td);
    } else {
        char *triple = LLVMGetDefaultTargetTriple();
        LLVMSetTarget(m, triple);
        LLVMDisposeMessage(triple);
    }
    kg *g = calloc(1, sizeof *g);
    if (!g) {
        set_err(err, errlen, "out of memory");
        LLVMDisposeModule(m);
        return NULL;
    }
    g->c = c;
    g->m = m;
    g->b = LLVMCreateBuilderInContext(c);
    g->f32 = LLVMFloatTypeInContext(c);
    g->f64 = LLVMDoubleTypeInContext(c);
    g->i1 = LLVMInt1TypeInContext(c);
    g->i32 = LLVMInt32TypeInContext(c);
    g->i64 = LLVMInt64TypeInContext(c);
    g->ptr = LLVMPointerTypeInContext(c, 0);
    g->voidt = LLVMVoidTypeInContext(c);
    g->err = err;
    g->errlen = errlen;
    int rc = 0;
    for (int i = 0; i < nk && !rc; i++) {
        g->k = &k[i];
        g->name = names[i];
        rc = build_kernel(g);
    }
    LLVMDisposeBuilder(g->b);
    free(g);
    if (rc) {
        LLVMDisposeModule(m);
        return NULL;
    }
    if (tm) set_target_attrs(c, m, tm);
    char *msg = NULL;
    if (LLVMVerifyModule(m, LLVMReturnStatusAction, &msg)) {
        set_err(err, errlen, "LLVM module verification failed: %s", msg ? msg : "");
        LLVMDisposeMessage(msg);
        LLVMDisposeModule(m);
        return NULL;
    }
    LLVMDisposeMessage(msg);
    return m;
}

/* ---- target machine, optimisation, object emission, IR text ---- */

LLVMTargetMachineRef pc_llvm_host_tm(char *err, size_t errlen) {
    if (LLVMInitializeNativeTarget() || LLVMInitializeNativeAsmPrinter()) {
        set_err(err, errlen, "LLVM: the native target is not available");
        return NULL;
    }
    char *triple = LLVMGetDefaultTargetTriple();
    LLVMTargetRef t;
    char *msg = NULL;
    if (LLVMGetTargetFromTriple(triple, &t, &msg)) {
        set_err(err, errlen, "LLVM: no target for %s: %s", triple, msg ? msg : "");
        LLVMDisposeMessage(msg);
        LLVMDisposeMessage(triple);
        return NULL;
    }
    char *cpu = LLVMGetHostCPUName(), *feat = LLVMGetHostCPUFeatures();
    LLVMTargetMachineRef tm = LLVMCreateTargetMachine(t, triple, cpu, feat, LLVMCodeGenLevelAggressive, LLVMRelocPIC,
                                                      LLVMCodeModelDefault);
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(feat);
    if (!tm) set_err(err, errlen, "LLVM: cannot create a target machine for %s", triple);
    LLVMDisposeMessage(triple);
    return tm;
}

int pc_llvm_optimize(LLVMModuleRef m, LLVMTargetMachineRef tm, char *err, size_t errlen) {
    LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
    LLVMErrorRef e = LLVMRunPasses(m, "default<O3>", tm, opts);
    LLVMDisposePassBuilderOptions(opts);
    if (e) {
        char *msg = LLVMGetErrorMessage(e);
        set_err(err, errlen, "LLVM optimisation failed: %s", msg);
        LLVMDisposeErrorMessage(msg);
        return -1;
    }
    return 0;
}

int pc_llvm_emit_object(const pc_kernel_desc *k, const char *const *names, int nk, const char *path, char *err,
                        size_t errlen) {
    if (!path) {
        set_err(err, errlen, "no output path");
        return -1;
    }
    LLVMTargetMachineRef tm = pc_llvm_host_tm(err, errlen);
    if (!tm) return -1;
    LLVMContextRef c = LLVMContextCreate();
    int rc = -1;
    LLVMModuleRef m = pc_llvm_build_module(c, tm, k, names, nk, err, errlen);
    if (m && !pc_llvm_optimize(m, tm, err, errlen)) {
        char *msg = NULL, *p = strdup(path);
        if (!p) {
            set_err(err, errlen, "out of memory");
        } else if (LLVMTargetMachineEmitToFile(tm, m, p, LLVMObjectFile, &msg)) {
            set_err(err, errlen, "cannot write %s: %s", path, msg ? msg : "");
        } else {
            rc = 0;
        }
        free(p);
        LLVMDisposeMessage(msg);
    }
    if (m) LLVMDisposeModule(m);
    LLVMContextDispose(c);
    LLVMDisposeTargetMachine(tm);
    return rc;
}

/* the module's IR text, before (tm NULL) or after -O3 for tm */
static char *kernel_ir(const pc_kernel_desc *k, const char *name, LLVMTargetMachineRef tm, char *err, size_t errlen) {
    LLVMContextRef c = LLVMContextCreate();
    LLVMModuleRef m = pc_llvm_build_module(c, tm, k, &name, 1, err, errlen);
    char *out = NULL;
    if (m && (!tm || pc_llvm_optimize(m, tm, err, errlen) == 0)) {
        char *s = LLVMPrintModuleToString(m);
        out = strdup(s);
        LLVMDisposeMessage(s);
        if (!out) set_err(err, errlen, "out of memory");
    }
    if (m) LLVMDisposeModule(m);
    LLVMContextDispose(c);
    return out;
}

char *pc_llvm_kernel_ir(const pc_kernel_desc *k, const char *name, char *err, size_t errlen) {
    return kernel_ir(k, name, NULL, err, errlen);
}

char *pc_llvm_kernel_ir_o3(const pc_kernel_desc *k, const char *name, char *err, size_t errlen) {
    LLVMTargetMachineRef tm = pc_llvm_host_tm(err, errlen);
    if (!tm) return NULL;
    char *out = kernel_ir(k, name, tm, err, errlen);
    LLVMDisposeTargetMachine(tm);
    return out;
}
