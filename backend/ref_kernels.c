/* Reference kernels, part 1: elementwise ops, dropout, reductions, normalisations and the
 * optimizer ops. Conventions (f32 math in double, reductions in double, i32 wrapping and
 * saturating conversions) are described in ref_internal.h. */
#include "ref_internal.h"

#include "runtime/bf16.h"
#include "runtime/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers ---- */

/* double -> i32: truncate toward zero, saturate, NaN -> 0 */
static int32_t to_i32(double x) {
    if (isnan(x)) return 0;
    if (x >= 2147483647.0) return INT32_MAX;
    if (x <= -2147483648.0) return INT32_MIN;
    return (int32_t)x;
}

/* wrapping i32 arithmetic (no signed-overflow UB) */
static int32_t wrap_i32(uint32_t x) {
    int32_t r;
    memcpy(&r, &x, sizeof r);
    return r;
}

static float fmax_nan(float a, float b) { return (isnan(a) || a > b) ? a : b; }
static float fmin_nan(float a, float b) { return (isnan(a) || a < b) ? a : b; }

/* an iterator over the output shape with operands 1..nin broadcast into it */
static void iter_operands(const ref_kctx *k, ref_iter *it) {
    int64_t st[REF_MAX_OPS][PC_MAX_RANK] = {{0}};
    pc_shape os = k->node->shape;
    ref_contig_strides(os, st[0]);
    for (int i = 0; i < k->node->nin && i + 1 < REF_MAX_OPS; i++) ref_bcast_strides(ref_ishape(k, i), os, st[i + 1]);
    ref_iter_init(it, os, k->node->nin + 1, (const int64_t(*)[PC_MAX_RANK])st);
}

/* ---- binary elementwise ---- */

static int binary(const ref_kctx *k) {
    ref_iter it;
    iter_operands(k, &it);
    pc_opcode op = k->node->op;
    int last = it.rank - 1;
    int64_t sa = it.st[1][last], sb = it.st[2][last], n = it.len;
    if (k->node->dtype == PC_F32) {
        const float *a = ref_inf(k, 0), *b = ref_inf(k, 1);
        for (int64_t r = 0; r < it.nrows; r++, ref_iter_next(&it)) {
            float *o = ref_outf(k) + it.off[0];
            const float *pa = a + it.off[1], *pb = b + it.off[2];
            switch (op) {
            case PC_OP_add: for (int64_t j = 0; j < n; j++) o[j] = pa[j * sa] + pb[j * sb]; break;
            case PC_OP_sub: for (int64_t j = 0; j < n; j++) o[j] = pa[j * sa] - pb[j * sb]; break;
            case PC_OP_mul: for (int64_t j = 0; j < n; j++) o[j] = pa[j * sa] * pb[j * sb]; break;
            case PC_OP_div: for (int64_t j = 0; j < n; j++) o[j] = pa[j * sa] / pb[j * sb]; break;
            case PC_OP_maximum: for (int64_t j = 0; j < n; j++) o[j] = fmax_nan(pa[j * sa], pb[j * sb]); break;
            case PC_OP_minimum: for (int64_t j = 0; j < n; j++) o[j] = fmin_nan(pa[j * sa], pb[j * sb]); break;
            default: return ref_fail(k, "not a binary op");
            }
        }
        return 0;
    }
    if (k->node->dtype != PC_I32) return ref_fail(k, "unsupported dtype");
    const int32_t *a = ref_ini(k, 0), *b = ref_ini(k, 1);
    for (int64_t r = 0; r < it.nrows; r++, ref_iter_next(&it)) {
        int32_t *o = ref_outi(k) + it.off[0];
        const int32_t *pa = a + it.off[1], *pb = b + it.off[2];
        for (int64_t j = 0; j < n; j++) {
            int32_t x = pa[j * sa], y = pb[j * sb];
            switch (op) {
            case PC_OP_add: o[j] = wrap_i32((uint32_t)x + (uint32_t)y); break;
            case PC_OP_sub: o[j] = wrap_i32((uint32_t)x - (uint32_t)y); break;
            case PC_OP_mul: o[j] = wrap_i32((uint32_t)x * (uint32_t)y); break;
            case PC_OP_maximum: o[j] = x > y ? x : y; break;
            case PC_OP_minimum: o[j] = x < y ? x : y; break;
            default: return ref_fail(k, "%s is not defined on i32", pc_op_get(op)->name);
            }
        }
    }
    return 0;
}

int ref_add(const ref_kctx *k) { return binary(k); }
int ref_sub(const ref_kctx *k) { return binary(k); }
int ref_mul(const ref_kctx *k) { return binary(k); }
int ref_div(const ref_kctx *k) { return binary(k); }
int ref_maximum(const ref_kctx *k) { return binary(k); }
int ref_minimum(const ref_kctx *k) { return binary(k); }

/* comparisons: operands of one dtype, f32 result 1/0 */
static int compare(const ref_kctx *k) {
    ref_iter it;
    iter_operands(k, &it);
    pc_opcode op = k->node->op;
    int last = it.rank - 1;
    int64_t sa = it.st[1][last], sb = it.st[2][last], n = it.len;
    bool isf = ref_idtype(k, 0) == PC_F32;
    for (int64_t r = 0; r < it.nrows; r++, ref_iter_next(&it)) {
        float *o = ref_outf(k) + it.off[0];
        for (int64_t j = 0; j < n; j++) {
            double x, y;
            if (isf) x = ref_inf(k, 0)[it.off[1] + j * sa], y = ref_inf(k, 1)[it.off[2] + j * sb];
            else x = ref_ini(k, 0)[it.off[1] + j * sa], y = ref_ini(k, 1)[it.off[2] + j * sb];
            bool t = op == PC_OP_eq ? x == y : op == PC_OP_lt ? x < y : x > y;
            o[j] = t ? 1.0f : 0.0f;
        }
    }
    return 0;
}

int ref_eq(const ref_kctx *k) { return compare(k); }
int ref_lt(const ref_kctx *k) { return compare(k); }
int ref_gt(const ref_kctx *k) { return compare(k); }

/* where(cond, a, b): cond != 0 ? a : b; a and b are 4-byte elements of the result dtype */
int ref_where(const ref_kctx *k) {
    ref_iter it;
    iter_operands(k, &it);
    int last = it.rank - 1;
    int64_t sc = it.st[1][last], sa = it.st[2][last], sb = it.st[3][last], n = it.len;
    bool cf = ref_idtype(k, 0) == PC_F32;
    const uint32_t *a = k->in[1], *b = k->in[2];
    uint32_t *out = k->out;
    for (int64_t r = 0; r < it.nrows; r++, ref_iter_next(&it)) {
        for (int64_t j = 0; j < n; j++) {
            bool c = cf ? ref_inf(k, 0)[it.off[1] + j * sc] != 0.0f : ref_ini(k, 0)[it.off[1] + j * sc] != 0;
            out[it.off[0] + j] = c ? a[it.off[2] + j * sa] : b[it.off[3] + j * sb];
        }
    }
    return 0;
}

/* ---- unary elementwise ---- */

static double unary_f(pc_opcode op, double x, const pc_attr *a) {
    switch (op) {
    case PC_OP_neg: return -x;
    case PC_OP_scale: return a[0].f * x + a[1].f;
    case PC_OP_exp: return exp(x);
    case PC_OP_log: return log(x);
    case PC_OP_sqrt: return sqrt(x);
    case PC_OP_rsqrt: return 1.0 / sqrt(x);
    case PC_OP_square: return x * x;
    case PC_OP_abs: return fabs(x);
    case PC_OP_tanh: return tanh(x);
    case PC_OP_sigmoid: return 1.0 / (1.0 + exp(-x));
    case PC_OP_relu: return x < 0 ? 0.0 : x; /* NaN propagates */
    case PC_OP_gelu:
        if (a[0].i == 0) return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
        return 0.5 * x * (1.0 + tanh(sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
    case PC_OP_silu: return x / (1.0 + exp(-x));
    default: return NAN;
    }
}

static int unary(const ref_kctx *k) {
    int64_t n = pc_shape_numel(k->node->shape);
    pc_opcode op = k->node->op;
    const pc_attr *a = k->node->attr;
    if (k->node->dtype == PC_I32) {
        const int32_t *x = ref_ini(k, 0);
        int32_t *o = ref_outi(k);
        if (op == PC_OP_neg)
            for (int64_t i = 0; i < n; i++) o[i] = wrap_i32(0u - (uint32_t)x[i]);
        else if (op == PC_OP_scale)
            for (int64_t i = 0; i < n; i++) o[i] = to_i32(a[0].f * (double)x[i] + a[1].f);
        else
            return ref_fail(k, "%s is not defined on i32", pc_op_get(op)->name);
        return 0;
    }
    const float *x = ref_inf(k, 0);
    float *o = ref_outf(k);
    for (int64_t i = 0; i < n; i++) o[i] = (float)unary_f(op, (double)x[i], a);
    return 0;
}

int ref_neg(const ref_kctx *k) { return unary(k); }
int ref_scale(const ref_kctx *k) { return unary(k); }
int ref_exp(const ref_kctx *k) { return unary(k); }
int ref_log(const ref_kctx *k) { return unary(k); }
int ref_sqrt(const ref_kctx *k) { return unary(k); }
int ref_rsqrt(const ref_kctx *k) { return unary(k); }
int ref_square(const ref_kctx *k) { return unary(k); }
int ref_abs(const ref_kctx *k) { return unary(k); }
int ref_tanh(const ref_kctx *k) { return unary(k); }
int ref_sigmoid(const ref_kctx *k) { return unary(k); }
int ref_relu(const ref_kctx *k) { return unary(k); }
int ref_gelu(const ref_kctx *k) { return unary(k); }
int ref_silu(const ref_kctx *k) { return unary(k); }

/* the identity (autograd, not the executor, gives it its meaning) */
int ref_stop_gradient(const ref_kctx *k) {
    memcpy(k->out, k->in[0], (size_t)pc_shape_numel(k->node->shape) * pc_dtype_size(k->node->dtype));
    return 0;
}

int ref_cast(const ref_kctx *k) {
    int64_t n = pc_shape_numel(k->node->shape);
    pc_dtype from = ref_idtype(k, 0), to = k->node->dtype;
    if (from == to) {
        memcpy(k->out, k->in[0], (size_t)n * pc_dtype_size(to));
    } else if (from == PC_F32 && to == PC_I32) {
        for (int64_t i = 0; i < n; i++) ref_outi(k)[i] = to_i32((double)ref_inf(k, 0)[i]);
    } else if (from == PC_I32 && to == PC_F32) {
        for (int64_t i = 0; i < n; i++) ref_outf(k)[i] = (float)ref_ini(k, 0)[i];
    } else if (from == PC_F32 && to == PC_BF16) {
        pc_f32_to_bf16_n(ref_inf(k, 0), k->out, (size_t)n);
    } else if (from == PC_BF16 && to == PC_F32) {
        pc_bf16_to_f32_n(k->in[0], ref_outf(k), (size_t)n);
    } else {
        return ref_fail(k, "unsupported cast from %s to %s", pc_dtype_name(from), pc_dtype_name(to));
    }
    return 0;
}

int ref_dropout(const ref_kctx *k) {
    int64_t n = pc_shape_numel(k->node->shape);
    double p = ref_attr(k, 0)->f;
    uint64_t salt = (uint64_t)ref_attr(k, 1)->i;
    uint64_t seed = (uint64_t)(int64_t)ref_ini(k, 1)[0];
    const float *x = ref_inf(k, 0);
    float *o = ref_outf(k);
    if (!(p >= 0.0 && p < 1.0)) return ref_fail(k, "p = %g is outside [0, 1)", p);
    if (p == 0.0) {
        memcpy(o, x, (size_t)n * sizeof *o);
        return 0;
    }
    float scale = (float)(1.0 / (1.0 - p));
    for (int64_t i = 0; i < n; i++)
        o[i] = (double)pc_hash_uniform(seed, salt, (uint64_t)i) >= p ? x[i] * scale : 0.0f;
    return 0;
}

/* ---- reductions over an axis set ---- */

static unsigned reduce_mask(const pc_attr *axes, int rank) {
    if (axes->n == 0) return rank ? (1u << rank) - 1 : 0;
    unsigned m = 0;
    for (int i = 0; i < axes->n; i++) {
        int64_t ax = pc_norm_axis(axes->ints[i], rank);
        if (ax >= 0) m |= 1u << ax;
    }
    return m;
}

/* strides into the (keepdim) output for every input axis, 0 on reduced axes */
static void reduce_strides(pc_shape in, unsigned mask, int64_t st[PC_MAX_RANK]) {
    int64_t m = 1;
    for (int i = in.rank - 1; i >= 0; i--) {
        if (mask & (1u << i)) st[i] = 0;
        else {
            st[i] = m;
            m *= in.dim[i];
        }
    }
}

/* sums operand 0 into the nout outputs `it` maps it onto (operand offsets in it->off[0], output
 * offsets in it->off[1]), exactly: i32 in int64 then wrapped to 32 bits, f32 in double then
 * divided by div (i32 ignores div) */
static int sum_along(const ref_kctx *k, ref_iter *it, int64_t nout, double div) {
    int64_t so = it->st[1][it->rank - 1];
    if (k->node->dtype == PC_I32) {
        int64_t *acc = calloc((size_t)(nout ? nout : 1), sizeof *acc);
        if (!acc) return ref_fail(k, "out of memory");
        const int32_t *x = ref_ini(k, 0);
        for (int64_t r = 0; r < it->nrows; r++, ref_iter_next(it))
            for (int64_t j = 0; j < it->len; j++) acc[it->off[1] + j * so] += x[it->off[0] + j];
        for (int64_t i = 0; i < nout; i++) ref_outi(k)[i] = wrap_i32((uint32_t)(uint64_t)acc[i]);
        free(acc);
        return 0;
    }
    double *acc = calloc((size_t)(nout ? nout : 1), sizeof *acc);
    if (!acc) return ref_fail(k, "out of memory");
    const float *x = ref_inf(k, 0);
    for (int64_t r = 0; r < it->nrows; r++, ref_iter_next(it))
        for (int64_t j = 0; j < it->len; j++) acc[it->off[1] + j * so] += x[it->off[0] + j];
    for (int64_t i = 0; i < nout; i++) ref_outf(k)[i] = (float)(acc[i] / div);
    free(acc);
    return 0;
}

static int reduce(const ref_kctx *k) {
    pc_shape in = ref_ishape(k, 0);
    pc_opcode op = k->node->op;
    unsigned mask = reduce_mask(ref_attr(k, 0), in.rank);
    int64_t nout = pc_shape_numel(k->node->shape), count = 1;
    for (int i = 0; i < in.rank; i++)
        if (mask & (1u << i)) count *= in.dim[i];
    int64_t st[2][PC_MAX_RANK];
    ref_contig_strides(in, st[0]);
    reduce_strides(in, mask, st[1]);
    ref_iter it;
    ref_iter_init(&it, in, 2, (const int64_t(*)[PC_MAX_RANK])st);
    int last = it.rank - 1;
    int64_t so = it.st[1][last];
    if (op == PC_OP_max) {
        float *o = ref_outf(k);
        const float *x = ref_inf(k, 0);
        for (int64_t i = 0; i < nout; i++) o[i] = -INFINITY;
        for (int64_t r = 0; r < it.nrows; r++, ref_iter_next(&it))
            for (int64_t j = 0; j < it.len; j++) {
                float v = x[it.off[0] + j], *m = &o[it.off[1] + j * so];
                if (v > *m || isnan(v)) *m = isnan(*m) ? *m : v;
            }
        return 0;
    }
    /* mean over nothing is 0/0 = NaN, like torch */
    return sum_along(k, &it, nout, op == PC_OP_mean ? (double)count : 1.0);
}

int ref_sum(const ref_kctx *k) { return reduce(k); }
int ref_mean(const ref_kctx *k) { return reduce(k); }
int ref_max(const ref_kctx *k) { return reduce(k); }

/* sum_to: sums the axes along which `shape` was broadcast to the operand's shape */
int ref_sum_to(const ref_kctx *k) {
    pc_shape in = ref_ishape(k, 0), os = k->node->shape;
    int64_t nout = pc_shape_numel(os);
    int64_t st[2][PC_MAX_RANK];
    ref_contig_strides(in, st[0]);
    ref_bcast_strides(os, in, st[1]);
    ref_iter it;
    ref_iter_init(&it, in, 2, (const int64_t(*)[PC_MAX_RANK])st);
    return sum_along(k, &it, nout, 1.0);
}

/* ---- softmax family: [outer, n, inner] around the axis ---- */

/* exp(x) for x <= 0; below -746 the result underflows to 0 anyway, and libm's underflow path
 * is slow (masked attention scores hit it for half of their entries) */
static inline double exp_le0(double x) { return x < -746.0 ? 0.0 : exp(x); }

static int softmax_common(const ref_kctx *k, bool logsm) {
    pc_shape s = k->node->shape;
    int64_t ax = pc_norm_axis(ref_attr(k, 0)->i, s.rank);
    if (ax < 0) return ref_fail(k, "axis out of range");
    int64_t outer = 1, inner = 1, n = s.dim[ax];
    for (int i = 0; i < ax; i++) outer *= s.dim[i];
    for (int i = (int)ax + 1; i < s.rank; i++) inner *= s.dim[i];
    const float *x = ref_inf(k, 0);
    float *o = ref_outf(k);
    double *e = malloc((size_t)(n ? n : 1) * sizeof *e);
    if (!e) return ref_fail(k, "out of memory");
    for (int64_t a = 0; a < outer; a++)
        for (int64_t b = 0; b < inner; b++) {
            int64_t base = a * n * inner + b;
            double m = -INFINITY;
            for (int64_t j = 0; j < n; j++) {
                double v = x[base + j * inner];
                if (v > m || isnan(v)) m = v;
            }
            double sum = 0;
            for (int64_t j = 0; j < n; j++) {
                e[j] = exp_le0((double)x[base + j * inner] - m);
                sum += e[j];
            }
            double lse = log(sum);
            for (int64_t j = 0; j < n; j++)
                o[base + j * inner] = (float)(logsm ? (double)x[base + j * inner] - m - lse : e[j] / sum);
        }
    free(e);
    return 0;
}

int ref_softmax(const ref_kctx *k) { return softmax_common(k, false); }
int ref_log_softmax(const ref_kctx *k) { return softmax_common(k, true); }

/* ---- normalisations over the last axis ---- */

int ref_rmsnorm(const ref_kctx *k) {
    pc_shape s = k->node->shape;
    int64_t d = s.dim[s.rank - 1], rows = d ? pc_shape_numel(s) / d : 0;
    double eps = ref_attr(k, 0)->f;
    const float *x = ref_inf(k, 0), *w = ref_inf(k, 1);
    float *o = ref_outf(k);
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * d;
        double ss = 0;
        for (int64_t j = 0; j < d; j++) ss += (double)xr[j] * xr[j];
        double inv = 1.0 / sqrt(ss / (double)d + eps);
        for (int64_t j = 0; j < d; j++) o[r * d + j] = (float)((double)xr[j] * inv * w[j]);
    }
    return 0;
}

/* (x - mean) / sqrt(var + eps) * w + b with the biased variance */
int ref_layernorm(const ref_kctx *k) {
    pc_shape s = k->node->shape;
    int64_t d = s.dim[s.rank - 1], rows = d ? pc_shape_numel(s) / d : 0;
    double eps = ref_attr(k, 0)->f;
    const float *x = ref_inf(k, 0), *w = ref_inf(k, 1), *b = ref_inf(k, 2);
    float *o = ref_outf(k);
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * d;
        double mean = 0, var = 0;
        for (int64_t j = 0; j < d; j++) mean += xr[j];
        mean /= (double)d;
        for (int64_t j = 0; j < d; j++) var += ((double)xr[j] - mean) * ((double)xr[j] - mean);
        var /= (double)d;
        double inv = 1.0 / sqrt(var + eps);
        for (int64_t j = 0; j < d; j++) o[r * d + j] = (float)(((double)xr[j] - mean) * inv * w[j] + b[j]);
    }
    return 0;
}

/* ---- AdamW and gradient clipping (hp = f32[8], see ops.def) ---- */

typedef struct {
    double lr, b1, b2, eps, wd, t, max_norm;
} adam_hp;

static adam_hp read_hp(const float *hp) {
    return (adam_hp){hp[0], hp[1], hp[2], hp[3], hp[4], hp[5], hp[6]};
}

int ref_adamw_m(const ref_kctx *k) {
    int64_t n = pc_shape_numel(k->node->shape);
    adam_hp h = read_hp(ref_inf(k, 2));
    double gs = ref_inf(k, 3)[0];
    const float *m = ref_inf(k, 0), *g = ref_inf(k, 1);
    for (int64_t i = 0; i < n; i++) ref_outf(k)[i] = (float)(h.b1 * m[i] + (1.0 - h.b1) * gs * g[i]);
    return 0;
}

int ref_adamw_v(const ref_kctx *k) {
    int64_t n = pc_shape_numel(k->node->shape);
    adam_hp h = read_hp(ref_inf(k, 2));
    double gs = ref_inf(k, 3)[0];
    const float *v = ref_inf(k, 0), *g = ref_inf(k, 1);
    for (int64_t i = 0; i < n; i++) {
        double sg = gs * g[i];
        ref_outf(k)[i] = (float)(h.b2 * v[i] + (1.0 - h.b2) * sg * sg);
    }
    return 0;
}

int ref_adamw_p(const ref_kctx *k) {
    int64_t n = pc_shape_numel(k->node->shape);
    adam_hp h = read_hp(ref_inf(k, 3));
    const float *p = ref_inf(k, 0), *m = ref_inf(k, 1), *v = ref_inf(k, 2);
    double bc1 = 1.0 - pow(h.b1, h.t), bc2 = 1.0 - pow(h.b2, h.t);
    for (int64_t i = 0; i < n; i++) {
        double mhat = m[i] / bc1, vhat = v[i] / bc2;
        ref_outf(k)[i] = (float)(p[i] - h.lr * h.wd * p[i] - h.lr * mhat / (sqrt(vhat) + h.eps));
    }
    return 0;
}

int ref_clip_coef(const ref_kctx *k) {
    double sumsq = ref_inf(k, 0)[0], max_norm = ref_inf(k, 1)[6];
    double c = 1.0;
    if (max_norm > 0) {
        c = max_norm / (sqrt(sumsq) + 1e-6);
        if (c > 1.0) c = 1.0; /* a NaN norm stays NaN, like torch's clamp */
    }
    ref_outf(k)[0] = (float)c;
    return 0;
}
