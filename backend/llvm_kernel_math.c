/* Vectorizable f32 math for the LLVM kernels (backend/llvm_kernel.c).
 *
 * LLVM's llvm.exp / llvm.log / tanh calls do not vectorize without a vector math library, so
 * every transcendental is emitted as plain IR (range reduction + polynomial, branch-free
 * selects) in an internal `alwaysinline` helper function (pc.exp.f32, pc.log.f32, ...). O3
 * inlines the helpers into the kernel loop and the loop vectorizer turns them into zmm code.
 *
 * Accuracy against libm in double rounded once to f32 (what the reference interpreter
 * computes), worst case over every f32 input (PEFTC_EXHAUSTIVE=1 tests/unit/test_llvm_kernels):
 *   exp 1 ulp, log 1 ulp, tanh 1 ulp, sigmoid 2 ulp, silu 3 ulp, gelu (erf) 3 ulp,
 *   gelu (tanh) 3 ulp; special values (NaN, +-inf, 0, denormal inputs and results) follow libm.
 *   exp: clamp to [-104, 89], k = round(x/ln2), r = x - k ln2 (fma Cody-Waite), degree-6
 *        polynomial, 2^k applied in two exact steps (denormal results rounded once).
 *   log: x = 2^e m, m in [sqrt(1/2), sqrt(2)), log1p(m - 1) by a degree-10 polynomial.
 *   tanh: odd polynomial below 0.625, 1 - 2/(e^2|x| + 1) above.
 *   sigmoid/silu: e = exp(-|x|) (scaled by 2^64 so that x e is rounded once when denormal),
 *        1/(1+e) or e/(1+e) with one division.
 *   gelu erf: 0.5 x erfc(-x/sqrt2); erfc(a) = t exp(-a^2 + G(t)), t = 2/(2+a), G a degree-10
 *        polynomial (fit error 2e-8); a and a^2 as f32 (hi, lo) pairs and the rounding error
 *        of t folded back into the exponent, so the accuracy holds in the far negative tail,
 *        where the reference's 1 + erf itself cancels (it is worse than this for x < -5).
 *   gelu tanh: x sigmoid(2u), 2u = c1 x + c2 x^3 as an f32 (hi, lo) pair: no cancellation.
 * Polynomial coefficients were fitted (Lawson minimax, relative error) in double and rounded
 * to f32; every step is plain f32 (llvm.fma where exactness matters; no fast-math flags).
 * Cost per 16 floats (zmm, Zen 5): exp ~26 instructions, gelu erf ~80 (compute-bound at about
 * 2 Gelem/s per core; exp, sigmoid and silu kernels run at memory bandwidth). */
#include "backend/kernel.h"

#include <llvm-c/Core.h>

#include <math.h>
#include <string.h>

/* shared with llvm_kernel.c (keep the prototypes in sync) */
LLVMValueRef pc_llvm_math(LLVMBuilderRef b, LLVMModuleRef m, pc_opcode op, int64_t approx, LLVMValueRef x);

typedef struct {
    LLVMContextRef c;
    LLVMModuleRef m;
    LLVMBuilderRef b;
    LLVMTypeRef f32, i32;
} mb;

static LLVMValueRef cf(mb *e, float v) { return LLVMConstReal(e->f32, (double)v); }
static LLVMValueRef ci(mb *e, int v) { return LLVMConstInt(e->i32, (unsigned long long)(long long)v, 1); }

static LLVMValueRef intr(mb *e, const char *name, LLVMTypeRef ty, LLVMValueRef *args, unsigned n) {
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMValueRef f = LLVMGetIntrinsicDeclaration(e->m, id, &ty, 1);
    LLVMTypeRef ft = LLVMIntrinsicGetType(e->c, id, &ty, 1);
    return LLVMBuildCall2(e->b, ft, f, args, n, "");
}
static LLVMValueRef fma3(mb *e, LLVMValueRef a, LLVMValueRef x, LLVMValueRef c) {
    LLVMValueRef args[3] = {a, x, c};
    return intr(e, "llvm.fma", LLVMTypeOf(a), args, 3);
}
static LLVMValueRef un(mb *e, const char *name, LLVMValueRef x) { return intr(e, name, LLVMTypeOf(x), &x, 1); }
static LLVMValueRef m_add(mb *e, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFAdd(e->b, a, b, ""); }
static LLVMValueRef m_sub(mb *e, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFSub(e->b, a, b, ""); }
static LLVMValueRef m_mul(mb *e, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFMul(e->b, a, b, ""); }
static LLVMValueRef m_div(mb *e, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFDiv(e->b, a, b, ""); }
static LLVMValueRef fcmp(mb *e, LLVMRealPredicate p, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildFCmp(e->b, p, a, b, "");
}
static LLVMValueRef sel(mb *e, LLVMValueRef c, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildSelect(e->b, c, a, b, ""); }

/* c[0] + x*(c[1] + x*(... c[n-1])) */
static LLVMValueRef horner(mb *e, LLVMValueRef x, const float *c, int n) {
    LLVMValueRef acc = cf(e, c[n - 1]);
    for (int i = n - 2; i >= 0; i--) acc = fma3(e, acc, x, cf(e, c[i]));
    return acc;
}

/* clamp to [lo, hi]; NaN becomes lo (the callers restore NaN at the end) */
static LLVMValueRef clamp(mb *e, LLVMValueRef x, LLVMValueRef lo, LLVMValueRef hi) {
    x = sel(e, fcmp(e, LLVMRealOGE, x, lo), x, lo);
    return sel(e, fcmp(e, LLVMRealOLE, x, hi), x, hi);
}

/* e^r (|r| <= ln2/2 + tiny) times 2^(k + bias), k + bias in [-252, 128]: two exact
 * power-of-two scalings, so that denormal results are rounded once and 2^128 overflows */
static const float EXP_Q[5] = {0.49999994f, 0.166665211f, 0.041668389f, 0.00836870726f, 0.00138145941f};

static LLVMValueRef exp_core(mb *e, LLVMValueRef r, LLVMValueRef kf, int bias) {
    LLVMValueRef q = horner(e, r, EXP_Q, 5);
    LLVMValueRef p = m_add(e, fma3(e, m_mul(e, r, r), q, r), cf(e, 1.0f)); /* 1 + (r + r^2 q) */
    LLVMValueRef k = LLVMBuildFPToSI(e->b, kf, e->i32, "");
    if (bias) k = LLVMBuildAdd(e->b, k, ci(e, bias), "");
    LLVMValueRef k1 = LLVMBuildAShr(e->b, k, ci(e, 1), "");
    LLVMValueRef k2 = LLVMBuildSub(e->b, k, k1, "");
    LLVMValueRef s1 = LLVMBuildBitCast(e->b, LLVMBuildShl(e->b, LLVMBuildAdd(e->b, k1, ci(e, 127), ""), ci(e, 23), ""), e->f32, "");
    LLVMValueRef s2 = LLVMBuildBitCast(e->b, LLVMBuildShl(e->b, LLVMBuildAdd(e->b, k2, ci(e, 127), ""), ci(e, 23), ""), e->f32, "");
    return m_mul(e, m_mul(e, p, s1), s2);
}

/* Cody-Waite reduction of hi + lo (lo may be NULL): *kf = round(hi / ln2), returns
 * r = hi + lo - kf ln2; the fma makes hi - kf ln2_hi exact before its single rounding */
static LLVMValueRef exp_reduce(mb *e, LLVMValueRef hi, LLVMValueRef lo, LLVMValueRef *kf) {
    *kf = un(e, "llvm.roundeven", m_mul(e, hi, cf(e, 1.44269504f)));
    LLVMValueRef r = fma3(e, *kf, cf(e, -0.693147182f), hi);
    if (lo) r = m_add(e, r, lo);
    return fma3(e, *kf, cf(e, 1.90465421e-09f), r); /* ln2 - 0.693147182f */
}

/* begins an internal alwaysinline helper `name` of type float(float); returns NULL if it exists */
static LLVMValueRef begin_fn(mb *e, const char *name, LLVMValueRef *fn) {
    *fn = LLVMGetNamedFunction(e->m, name);
    if (*fn) return NULL;
    LLVMTypeRef ft = LLVMFunctionType(e->f32, &e->f32, 1, 0);
    *fn = LLVMAddFunction(e->m, name, ft);
    LLVMSetLinkage(*fn, LLVMInternalLinkage);
    const char *attrs[] = {"alwaysinline", "nounwind", "willreturn", "nosync", "nofree"};
    for (size_t i = 0; i < sizeof attrs / sizeof *attrs; i++) {
        unsigned kind = LLVMGetEnumAttributeKindForName(attrs[i], strlen(attrs[i]));
        LLVMAddAttributeAtIndex(*fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(e->c, kind, 0));
    }
    LLVMPositionBuilderAtEnd(e->b, LLVMAppendBasicBlockInContext(e->c, *fn, "entry"));
    return LLVMGetParam(*fn, 0);
}

static LLVMValueRef call1(LLVMBuilderRef b, LLVMValueRef fn, LLVMValueRef x) {
    return LLVMBuildCall2(b, LLVMGlobalGetValueType(fn), fn, &x, 1, "");
}

static LLVMValueRef nan_passthrough(mb *e, LLVMValueRef x, LLVMValueRef res) {
    return sel(e, fcmp(e, LLVMRealUNO, x, x), x, res);
}

/* ---- exp(x) ---- */
static LLVMValueRef get_exp(mb *e) {
    LLVMValueRef fn, x = begin_fn(e, "pc.exp.f32", &fn);
    if (!x) return fn;
    LLVMValueRef kf, xc = clamp(e, x, cf(e, -104.0f), cf(e, 89.0f));
    LLVMValueRef r = exp_reduce(e, xc, NULL, &kf);
    LLVMBuildRet(e->b, nan_passthrough(e, x, exp_core(e, r, kf, 0)));
    return fn;
}

/* ---- exp(x) * 2^64 for x <= 0: normal down to x = -131, so that products with it (silu,
 * gelu) are rounded once when the final result is denormal; exactly 0 below x = -150 ---- */
#define SCALE_UP 64
static LLVMValueRef scale_down(mb *e, LLVMValueRef v) { return m_mul(e, v, cf(e, 0x1p-64f)); }

static LLVMValueRef get_exps(mb *e) {
    LLVMValueRef fn, x = begin_fn(e, "pc.exps.f32", &fn);
    if (!x) return fn;
    LLVMValueRef kf, xc = clamp(e, x, cf(e, -150.0f), cf(e, 0.0f));
    LLVMValueRef r = exp_reduce(e, xc, NULL, &kf);
    LLVMBuildRet(e->b, nan_passthrough(e, x, exp_core(e, r, kf, SCALE_UP)));
    return fn;
}

/* ---- log(x) ---- */
static const float LOG_P[8] = {0.333333313f, -0.250008196f, 0.200012267f, -0.166233584f,
                               0.142017633f, -0.131601721f, 0.127615288f, -0.0763446614f};

static LLVMValueRef get_log(mb *e) {
    LLVMValueRef fn, x = begin_fn(e, "pc.log.f32", &fn);
    if (!x) return fn;
    LLVMBuilderRef b = e->b;
    LLVMValueRef den = fcmp(e, LLVMRealOLT, x, cf(e, 0x1p-126f));
    LLVMValueRef xs = sel(e, den, m_mul(e, x, cf(e, 0x1p23f)), x);
    LLVMValueRef eb = sel(e, den, ci(e, -23), ci(e, 0));
    LLVMValueRef ix = LLVMBuildSub(b, LLVMBuildBitCast(b, xs, e->i32, ""), ci(e, 0x3f3504f3), ""); /* sqrt(1/2) */
    LLVMValueRef ex = LLVMBuildAdd(b, LLVMBuildAShr(b, ix, ci(e, 23), ""), eb, "");
    LLVMValueRef mbits = LLVMBuildAdd(b, LLVMBuildAnd(b, ix, ci(e, 0x7fffff), ""), ci(e, 0x3f3504f3), "");
    LLVMValueRef f = m_sub(e, LLVMBuildBitCast(b, mbits, e->f32, ""), cf(e, 1.0f)); /* m in [sqrt(1/2), sqrt(2)) */
    LLVMValueRef ef = LLVMBuildSIToFP(b, ex, e->f32, "");
    LLVMValueRef f2 = m_mul(e, f, f);
    LLVMValueRef y = fma3(e, m_mul(e, f2, f), horner(e, f, LOG_P, 8), m_mul(e, f2, cf(e, -0.5f)));
    LLVMValueRef lo = m_add(e, f, fma3(e, ef, cf(e, -2.12194440e-4f), y));
    LLVMValueRef res = fma3(e, ef, cf(e, 0.693359375f), lo); /* ln2 = 0.693359375 - 2.12194440e-4 */
    /* x <= 0, inf, NaN */
    LLVMValueRef ok = LLVMBuildAnd(b, fcmp(e, LLVMRealOGT, x, cf(e, 0.0f)), fcmp(e, LLVMRealOLT, x, cf(e, INFINITY)), "");
    LLVMValueRef special = sel(e, fcmp(e, LLVMRealOEQ, x, cf(e, 0.0f)), cf(e, -INFINITY),
                               sel(e, fcmp(e, LLVMRealOLT, x, cf(e, 0.0f)), cf(e, NAN), x));
    LLVMBuildRet(b, sel(e, ok, res, special));
    return fn;
}

/* ---- tanh(x): odd polynomial for |x| < 0.625, 1 - 2/(e^2|x| + 1) above ---- */
static const float TANH_P[5] = {-0.333332807f, 0.133314416f, -0.0537397265f, 0.0206391234f, -0.00570502831f};

static LLVMValueRef get_tanh(mb *e) {
    LLVMValueRef ex = get_exp(e);
    LLVMValueRef fn, x = begin_fn(e, "pc.tanh.f32", &fn);
    if (!x) return fn;
    LLVMValueRef a = un(e, "llvm.fabs", x);
    LLVMValueRef z = m_mul(e, x, x);
    LLVMValueRef small = fma3(e, m_mul(e, x, z), horner(e, z, TANH_P, 5), x);
    LLVMValueRef ea = call1(e->b, ex, m_mul(e, a, cf(e, 2.0f)));
    LLVMValueRef t = m_sub(e, cf(e, 1.0f), m_div(e, cf(e, 2.0f), m_add(e, ea, cf(e, 1.0f))));
    LLVMValueRef cs[2] = {t, x};
    LLVMValueRef big = intr(e, "llvm.copysign", e->f32, cs, 2);
    LLVMBuildRet(e->b, sel(e, fcmp(e, LLVMRealOLT, a, cf(e, 0.625f)), small, big));
    return fn;
}

/* sigmoid(y) (silu, gelu: x sigmoid(y)) from es = e^-|y| 2^64, with one division:
 * y >= 0: x / (1 + e);  y < 0: (x es / (1 + e)) 2^-64 */
static LLVMValueRef sig_tail(mb *e, LLVMValueRef x, LLVMValueRef ylt0, LLVMValueRef es) {
    LLVMValueRef d = m_add(e, scale_down(e, es), cf(e, 1.0f));
    LLVMValueRef num = x ? sel(e, ylt0, m_mul(e, x, es), x) : sel(e, ylt0, es, cf(e, 1.0f));
    LLVMValueRef q = m_div(e, num, d);
    return sel(e, ylt0, scale_down(e, q), q);
}

static LLVMValueRef get_sigmoid(mb *e, int silu) {
    LLVMValueRef ex = get_exps(e);
    LLVMValueRef fn, x = begin_fn(e, silu ? "pc.silu.f32" : "pc.sigmoid.f32", &fn);
    if (!x) return fn;
    LLVMValueRef es = call1(e->b, ex, LLVMBuildFNeg(e->b, un(e, "llvm.fabs", x), ""));
    LLVMBuildRet(e->b, sig_tail(e, silu ? x : NULL, fcmp(e, LLVMRealOLT, x, cf(e, 0.0f)), es));
    return fn;
}

/* exact products as (hi, lo) pairs */
static void two_prod(mb *e, LLVMValueRef a, LLVMValueRef b, LLVMValueRef *hi, LLVMValueRef *lo) {
    *hi = m_mul(e, a, b);
    *lo = fma3(e, a, b, LLVMBuildFNeg(e->b, *hi, ""));
}
/* a + b = s + err exactly (Knuth's TwoSum) */
static void two_sum(mb *e, LLVMValueRef a, LLVMValueRef b, LLVMValueRef *s, LLVMValueRef *err) {
    *s = m_add(e, a, b);
    LLVMValueRef bb = m_sub(e, *s, a);
    *err = m_add(e, m_sub(e, a, m_sub(e, *s, bb)), m_sub(e, b, bb));
}

/* ---- gelu, erf form: 0.5 x E, E = erfc(a) (x < 0) or 2 - erfc(a), a = |x|/sqrt(2);
 * erfc(a) = t exp(-a^2 + G(t)), t = 2/(2+a), G a degree-10 polynomial in u = K1 t + K0
 * (fitted on a in [0, 12]; |G - log(erfcx(a)/t)| < 2e-8). a and a^2 are carried as f32
 * (hi, lo) pairs so that exp(-a^2) keeps its relative accuracy up to a^2 ~ 100. ---- */
static const float ERFC_G[11] = {-0.574876249f, 0.585602045f, 0.01932404f, -0.0319056995f,
                                 -0.00176908821f, 0.0043099327f, -0.000188239719f, -0.000681474165f,
                                 0.000132905509f, 7.72403e-05f, -2.53288963e-05f};

static LLVMValueRef get_gelu_erf(mb *e) {
    LLVMValueRef fn, x = begin_fn(e, "pc.gelu_erf.f32", &fn);
    if (!x) return fn;
    const double c = 0.70710678118654752440;
    const float ch = (float)c, cl = (float)(c - (double)ch);
    /* |x| clamped to 20 (gelu(-20) underflows: e^-200 2^64 -> 0; gelu(20) = 20); NaN -> 20,
     * restored by x */
    LLVMValueRef ax = un(e, "llvm.fabs", x);
    ax = sel(e, fcmp(e, LLVMRealOLT, ax, cf(e, 20.0f)), ax, cf(e, 20.0f));
    LLVMValueRef ah, al, sh, sl;
    two_prod(e, ax, cf(e, ch), &ah, &al);
    al = fma3(e, ax, cf(e, cl), al);
    two_prod(e, ah, ah, &sh, &sl);
    sl = fma3(e, m_add(e, ah, ah), al, sl); /* a^2 = sh + sl */
    /* t = 1/(1 + a/2) rounded; rho = the relative error of t, folded back into the exponent as
     * rho (1 + t G'(t)) (a linear fit of that factor is enough) */
    LLVMValueRef dh, dl;
    two_sum(e, cf(e, 1.0f), m_mul(e, ah, cf(e, 0.5f)), &dh, &dl);
    dl = fma3(e, al, cf(e, 0.5f), dl);
    LLVMValueRef t = m_div(e, cf(e, 1.0f), dh);
    LLVMValueRef nt = LLVMBuildFNeg(e->b, t, "");
    LLVMValueRef rho = fma3(e, nt, dl, fma3(e, nt, dh, cf(e, 1.0f)));
    LLVMValueRef g = horner(e, fma3(e, t, cf(e, 2.33333325f), cf(e, -1.33333337f)), ERFC_G, 11);
    /* exp(g - sh - sl) 2^64 */
    LLVMValueRef nsh = LLVMBuildFNeg(e->b, sh, "");
    LLVMValueRef kf = un(e, "llvm.roundeven", m_mul(e, m_add(e, g, nsh), cf(e, 1.44269504f)));
    /* r = (-sh - kf ln2_hi) + g - kf ln2_lo - sl, the first difference exact before rounding */
    LLVMValueRef r = fma3(e, kf, cf(e, -0.693147182f), nsh);
    r = m_add(e, r, g);
    r = fma3(e, kf, cf(e, 1.90465421e-09f), r);
    r = m_sub(e, r, sl);
    r = fma3(e, rho, fma3(e, t, cf(e, 1.35707088f), cf(e, 0.97913012f)), r);
    LLVMValueRef erfcs = m_mul(e, t, exp_core(e, r, kf, SCALE_UP)); /* erfc(a) 2^64 */
    LLVMValueRef hx = m_mul(e, x, cf(e, 0.5f));
    LLVMValueRef neg = scale_down(e, m_mul(e, hx, erfcs));
    LLVMValueRef pos = m_mul(e, hx, m_sub(e, cf(e, 2.0f), scale_down(e, erfcs)));
    LLVMBuildRet(e->b, sel(e, fcmp(e, LLVMRealOLT, x, cf(e, 0.0f)), neg, pos));
    return fn;
}

/* ---- gelu, tanh form: 0.5 x (1 + tanh(u)) = x sigmoid(y), y = 2u = c1 x + c2 x^3 carried
 * as an f32 (hi, lo) pair (no cancellation for x << 0, and exp(-|y|) stays accurate) ---- */
static LLVMValueRef get_gelu_tanh(mb *e) {
    LLVMValueRef fn, x = begin_fn(e, "pc.gelu_tanh.f32", &fn);
    if (!x) return fn;
    const double c1 = 2.0 * 0.79788456080286535588, c2 = c1 * 0.044715;
    const float c1h = (float)c1, c1l = (float)(c1 - (double)c1h);
    const float c2h = (float)c2, c2l = (float)(c2 - (double)c2h);
    /* x clamped to [-20, 20]: sigmoid(y) is exactly 1 or underflows beyond; NaN -> -20 */
    LLVMValueRef xc = clamp(e, x, cf(e, -20.0f), cf(e, 20.0f));
    LLVMValueRef qh, ql, wh, wl, vh, vl, yh, yl;
    two_prod(e, xc, xc, &qh, &ql);
    two_prod(e, cf(e, c2h), qh, &wh, &wl);
    wl = m_add(e, wl, fma3(e, cf(e, c2h), ql, m_mul(e, cf(e, c2l), qh))); /* c2 x^2 = wh + wl */
    two_sum(e, cf(e, c1h), wh, &vh, &vl);
    vl = m_add(e, vl, m_add(e, wl, cf(e, c1l))); /* c1 + c2 x^2 = vh + vl */
    two_prod(e, xc, vh, &yh, &yl);
    yl = fma3(e, xc, vl, yl); /* y = yh + yl */
    LLVMValueRef ylt0 = fcmp(e, LLVMRealOLT, xc, cf(e, 0.0f));
    LLVMValueRef nh = LLVMBuildFNeg(e->b, un(e, "llvm.fabs", yh), "");
    nh = sel(e, fcmp(e, LLVMRealOGE, nh, cf(e, -150.0f)), nh, cf(e, -150.0f)); /* e^-150 2^64 -> 0 */
    LLVMValueRef nl = sel(e, ylt0, yl, LLVMBuildFNeg(e->b, yl, "")); /* -|y| = nh + nl */
    LLVMValueRef kf, r = exp_reduce(e, nh, nl, &kf);
    LLVMValueRef es = exp_core(e, r, kf, SCALE_UP);
    LLVMBuildRet(e->b, sig_tail(e, x, ylt0, es));
    return fn;
}

/* Emits op(x) for a transcendental op at b's position (x: float); NULL for other ops. */
LLVMValueRef pc_llvm_math(LLVMBuilderRef b, LLVMModuleRef m, pc_opcode op, int64_t approx, LLVMValueRef x) {
    mb e;
    e.m = m;
    e.c = LLVMGetModuleContext(m);
    e.f32 = LLVMFloatTypeInContext(e.c);
    e.i32 = LLVMInt32TypeInContext(e.c);
    e.b = LLVMCreateBuilderInContext(e.c);
    LLVMValueRef fn = NULL;
    switch (op) {
    case PC_OP_exp: fn = get_exp(&e); break;
    case PC_OP_log: fn = get_log(&e); break;
    case PC_OP_tanh: fn = get_tanh(&e); break;
    case PC_OP_sigmoid: fn = get_sigmoid(&e, 0); break;
    case PC_OP_silu: fn = get_sigmoid(&e, 1); break;
    case PC_OP_gelu: fn = approx ? get_gelu_tanh(&e) : get_gelu_erf(&e); break;
    default: break;
    }
    LLVMDisposeBuilder(e.b);
    return fn ? call1(b, fn, x) : NULL;
}
