/* Numerical fault checks (backend/finite.h): scanning results, the rule, the message. */
#include "backend/finite.h"
#include "backend/lower.h"
#include "runtime/bf16.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* |x|'s bits: below 0x7f800000 finite, equal inf, above NaN */
#define ABS_BITS 0x7fffffffu
#define INF_BITS 0x7f800000u

static int kind_of(uint32_t a) { return a < INF_BITS ? 0 : a == INF_BITS ? PC_FIN_INF : PC_FIN_NAN; }

/* The common case is "all finite": one pass that ORs "exponent all ones" over vectors of 16
 * (GCC's vector extension: and, compare-equal, or, which every x86-64 level has; built for
 * AVX-512 / AVX2 / baseline and picked at load time), then a classifying pass only when something
 * is not finite. (A max of |x| needs an unsigned compare that baseline SSE2 lacks: 4x slower.) */
typedef int32_t v16i __attribute__((vector_size(64)));

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) static int scan_dense(const float *p,
                                                                                                     int64_t n) {
    const v16i ex = (v16i){0} + (int32_t)INF_BITS;
    v16i acc = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        v16i u;
        memcpy(&u, p + i, sizeof u);
        acc |= (u & ex) == ex;
    }
    int any = 0;
    for (int l = 0; l < 16; l++) any |= acc[l];
    for (; i < n; i++) {
        uint32_t u;
        memcpy(&u, p + i, sizeof u);
        any |= (u & INF_BITS) == INF_BITS;
    }
    if (!any) return 0;
    int kinds = 0;
    for (int64_t k = 0; k < n && kinds != (PC_FIN_NAN | PC_FIN_INF); k++) {
        uint32_t u;
        memcpy(&u, p + k, sizeof u);
        kinds |= kind_of(u & ABS_BITS);
    }
    return kinds;
}

/* walks shape s row by row (innermost axis) with strides st; calls row() per row start */
typedef struct {
    int rank;
    int64_t dim[PC_MAX_RANK], idx[PC_MAX_RANK], off;
    const int64_t *st;
} walk;

static bool walk_init(walk *w, pc_shape s, const int64_t *st) {
    memset(w, 0, sizeof *w);
    w->rank = s.rank;
    w->st = st;
    for (int i = 0; i < s.rank; i++) {
        w->dim[i] = s.dim[i];
        if (s.dim[i] == 0) return false;
    }
    return true;
}

/* advances to the next row; false after the last */
static bool walk_next(walk *w) {
    for (int d = w->rank - 2; d >= 0; d--) {
        if (++w->idx[d] < w->dim[d]) {
            w->off += w->st[d];
            return true;
        }
        w->off -= w->st[d] * (w->dim[d] - 1);
        w->idx[d] = 0;
    }
    return false;
}

int pc_fin_scan(const float *p, pc_shape s, const int64_t *st) {
    if (!p) return 0;
    if (!st || s.rank == 0 || pc_view_is_dense(s, st)) return scan_dense(p, pc_shape_numel(s));
    walk w;
    if (!walk_init(&w, s, st)) return 0;
    int64_t len = s.dim[s.rank - 1], inner = st[s.rank - 1];
    int kinds = 0;
    do {
        if (inner == 1) kinds |= scan_dense(p + w.off, len);
        else
            for (int64_t k = 0; k < len; k++) {
                uint32_t u;
                memcpy(&u, p + w.off + k * inner, sizeof u);
                kinds |= kind_of(u & ABS_BITS);
            }
    } while (kinds != (PC_FIN_NAN | PC_FIN_INF) && walk_next(&w));
    return kinds;
}

/* bf16 elements: the upper half of an f32, so the same exponent test on the widened bits */
static int scan_bf16(const uint16_t *p, int64_t n, int64_t stride) {
    int kinds = 0;
    for (int64_t k = 0; k < n; k++) kinds |= kind_of(((uint32_t)p[k * stride] << 16) & ABS_BITS);
    return kinds;
}

int pc_fin_scan_dt(const void *p, pc_dtype dt, pc_shape s, const int64_t *st) {
    if (dt == PC_F32) return pc_fin_scan(p, s, st);
    if (dt != PC_BF16 || !p) return 0;
    if (!st || s.rank == 0 || pc_view_is_dense(s, st)) return scan_bf16(p, pc_shape_numel(s), 1);
    walk w;
    if (!walk_init(&w, s, st)) return 0;
    int kinds = 0;
    do kinds |= scan_bf16((const uint16_t *)p + w.off, s.dim[s.rank - 1], st[s.rank - 1]);
    while (kinds != (PC_FIN_NAN | PC_FIN_INF) && walk_next(&w));
    return kinds;
}

int pc_fin_error_dt(const pc_graph *g, pc_val v, const void *p, pc_dtype dt, const int64_t *st, int kind,
                    const char *note, char *err, size_t errlen) {
    if (dt != PC_BF16) return pc_fin_error(g, v, p, st, kind, note, err, errlen);
    pc_shape s = g->vals[v].shape;
    int64_t n = pc_shape_numel(s);
    float *f = malloc((size_t)(n ? n : 1) * sizeof *f);
    if (!f) return pc_fin_error(g, v, NULL, NULL, kind, note, err, errlen);
    int64_t i = 0;
    walk w;
    int64_t dense[PC_MAX_RANK];
    pc_contig_strides(s, dense);
    if (n && walk_init(&w, s, st ? st : dense)) {
        do
            for (int64_t k = 0; k < s.dim[s.rank - 1]; k++)
                f[i++] = pc_bf16_to_f32(((const uint16_t *)p)[w.off + k * (st ? st : dense)[s.rank - 1]]);
        while (walk_next(&w));
    } else if (n) { /* a scalar */
        f[0] = pc_bf16_to_f32(*(const uint16_t *)p);
    }
    int rc = pc_fin_error(g, v, f, NULL, kind, note, err, errlen);
    free(f);
    return rc;
}

/* NaN / infinity in the op's float attributes (causal_mask's fill, scale's alpha and beta, ...):
 * an attribute that asks for a non-finite value makes producing it intended */
static int attr_kinds(const pc_value *x) {
    const pc_op_info *info = pc_op_get(x->op);
    int kinds = 0;
    for (int k = 0; info && k < info->nattrs && k < PC_MAX_ATTRS; k++) {
        if (info->attrs[k].kind != PC_ATTR_FLOAT) continue;
        uint32_t u;
        float f = (float)x->attr[k].f;
        memcpy(&u, &f, sizeof u);
        kinds |= kind_of(u & ABS_BITS);
    }
    return kinds;
}

int pc_fin_fault(const pc_value *x, int found, int operands) {
    int allowed = operands | attr_kinds(x);
    if ((found & PC_FIN_NAN) && !(allowed & PC_FIN_NAN)) return PC_FIN_NAN;
    if ((found & PC_FIN_INF) && !allowed) return PC_FIN_INF;
    return 0;
}

int pc_fin_check_leaf(const pc_graph *g, pc_val v, const void *data, char *err, size_t errlen) {
    const pc_value *x = &g->vals[v];
    if ((x->op != PC_OP_param && x->op != PC_OP_state) || x->dtype == PC_I32 || !data) return 0;
    int kinds = pc_fin_scan_dt(data, x->dtype, x->shape, NULL);
    if (!kinds) return 0;
    return pc_fin_error_dt(g, v, data, x->dtype, NULL, kinds & PC_FIN_NAN ? PC_FIN_NAN : PC_FIN_INF, NULL, err, errlen);
}

/* the first element of kind `kind`: its multi-index and value (false if none) */
static bool find_first(const float *p, pc_shape s, const int64_t *st, int kind, int64_t idx[PC_MAX_RANK], float *val) {
    int64_t cst[PC_MAX_RANK], m = 1;
    for (int i = s.rank - 1; i >= 0; i--) cst[i] = m, m *= s.dim[i];
    if (!st) st = cst;
    if (s.rank == 0) {
        uint32_t u;
        memcpy(&u, p, sizeof u);
        memcpy(val, p, sizeof *val);
        return kind_of(u & ABS_BITS) == kind;
    }
    walk w;
    if (!walk_init(&w, s, st)) return false;
    int64_t len = s.dim[s.rank - 1], inner = st[s.rank - 1];
    do {
        for (int64_t k = 0; k < len; k++) {
            uint32_t u;
            memcpy(&u, p + w.off + k * inner, sizeof u);
            if (kind_of(u & ABS_BITS) != kind) continue;
            memcpy(idx, w.idx, sizeof w.idx);
            idx[s.rank - 1] = k;
            memcpy(val, &u, sizeof *val);
            return true;
        }
    } while (walk_next(&w));
    return false;
}

int pc_fin_error(const pc_graph *g, pc_val v, const float *p, const int64_t *st, int kind, const char *note,
                 char *err, size_t errlen) {
    if (!err || !errlen) return -1;
    const pc_value *x = &g->vals[v];
    int64_t idx[PC_MAX_RANK] = {0};
    float val = 0;
    bool found = p && find_first(p, x->shape, st, kind, idx, &val);
    char what[160] = "", where[600] = "";
    int n = snprintf(what, sizeof what, "%s", !found ? (kind == PC_FIN_NAN ? "nan" : "inf")
                                              : isnan(val) ? "nan" : val < 0 ? "-inf" : "inf");
    if (found && x->shape.rank > 0) {
        n += snprintf(what + n, sizeof what - (size_t)n, " at [");
        for (int i = 0; i < x->shape.rank && n < (int)sizeof what - 24; i++)
            n += snprintf(what + n, sizeof what - (size_t)n, "%s%lld", i ? "," : "", (long long)idx[i]);
        snprintf(what + n, sizeof what - (size_t)n, "]");
    }
    if (x->loc.file) snprintf(where, sizeof where, " at %s:%d", x->loc.file, x->loc.line);
    char *line = pc_print_value(g, v);
    snprintf(err, errlen, "non-finite value (%s) in %s%s%s%s", what, line ? line : "?", where, note ? " " : "",
             note ? note : "");
    free(line);
    return -1;
}
