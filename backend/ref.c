/* The reference interpreter core: per-value buffers, binding, initialisation, scheduling,
 * freeing after last use, and updates. Kernels live in ref_kernels*.c (see ref_internal.h for
 * the numerical conventions). */
#include "ref_internal.h"

#include "backend/finite.h"

#include "runtime/rng.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- messages ---- */

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

void ref_describe(const pc_graph *g, pc_val v, char *buf, size_t len) {
    const pc_value *x = &g->vals[v];
    const pc_op_info *info = pc_op_get(x->op);
    char sh[96];
    pc_shape_str(x->shape, sh, sizeof sh);
    if (x->key)
        snprintf(buf, len, "%%%s (%s %s%s \"%s\")", x->name ? x->name : "?", info ? info->name : "?",
                 pc_dtype_name(x->dtype), sh, x->key);
    else
        snprintf(buf, len, "%%%s (%s %s%s)", x->name ? x->name : "?", info ? info->name : "?",
                 pc_dtype_name(x->dtype), sh);
}

static void loc_prefix(const pc_value *x, char *buf, size_t len) {
    if (x->loc.file) snprintf(buf, len, "%s:%d: ", x->loc.file, x->loc.line);
    else buf[0] = 0;
}

/* "FILE:LINE: error: %name (op type): message" */
static void value_error(const pc_graph *g, pc_val v, char *err, size_t errlen, const char *sep, const char *fmt,
                        va_list ap) {
    if (!err || !errlen) return;
    char where[512], what[512], msg[768];
    loc_prefix(&g->vals[v], where, sizeof where);
    ref_describe(g, v, what, sizeof what);
    vsnprintf(msg, sizeof msg, fmt, ap);
    snprintf(err, errlen, "%serror: %s%s%s", where, what, sep, msg);
}

static int verr(const pc_graph *g, pc_val v, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int verr(const pc_graph *g, pc_val v, char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    value_error(g, v, err, errlen, " ", fmt, ap);
    va_end(ap);
    return -1;
}

int ref_fail(const ref_kctx *k, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    value_error(k->g, k->v, k->err, k->errlen, ": ", fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- iteration helpers (shared by the kernels) ---- */

void ref_contig_strides(pc_shape s, int64_t st[PC_MAX_RANK]) {
    int64_t m = 1;
    for (int i = s.rank - 1; i >= 0; i--) {
        st[i] = m;
        m *= s.dim[i];
    }
}

void ref_bcast_strides(pc_shape in, pc_shape out, int64_t st[PC_MAX_RANK]) {
    int64_t cs[PC_MAX_RANK];
    ref_contig_strides(in, cs);
    for (int i = 0; i < out.rank; i++) {
        int j = in.rank - out.rank + i;
        st[i] = (j < 0 || in.dim[j] == 1) ? 0 : cs[j];
    }
}

void ref_iter_init(ref_iter *it, pc_shape out, int nop, const int64_t st[][PC_MAX_RANK]) {
    memset(it, 0, sizeof *it);
    it->nop = nop;
    if (out.rank == 0) {
        it->rank = 1;
        it->dim[0] = 1;
        for (int k = 0; k < nop; k++) it->st[k][0] = 0;
    } else {
        it->rank = out.rank;
        for (int i = 0; i < out.rank; i++) it->dim[i] = out.dim[i];
        for (int k = 0; k < nop; k++)
            for (int i = 0; i < out.rank; i++) it->st[k][i] = st[k][i];
    }
    it->len = it->dim[it->rank - 1];
    it->nrows = 1;
    for (int i = 0; i < it->rank - 1; i++) it->nrows *= it->dim[i];
    if (it->len == 0) it->nrows = 0;
}

void ref_iter_next(ref_iter *it) {
    for (int d = it->rank - 2; d >= 0; d--) {
        if (++it->idx[d] < it->dim[d]) {
            for (int k = 0; k < it->nop; k++) it->off[k] += it->st[k][d];
            return;
        }
        it->idx[d] = 0;
        for (int k = 0; k < it->nop; k++) it->off[k] -= it->st[k][d] * (it->dim[d] - 1);
    }
}

/* ---- leaves never reach a kernel ---- */
static int leaf_kernel(const ref_kctx *k) { return ref_fail(k, "a leaf is not executed by a kernel"); }
int ref_input(const ref_kctx *k) { return leaf_kernel(k); }
int ref_param(const ref_kctx *k) { return leaf_kernel(k); }
int ref_state(const ref_kctx *k) { return leaf_kernel(k); }
int ref_const(const ref_kctx *k) { return leaf_kernel(k); }

typedef int (*ref_kernel_fn)(const ref_kctx *k);
static const ref_kernel_fn kernels[PC_OP_COUNT] = {
#define OP(id, name, nin, fusion, diff, attrs) [PC_OP_##id] = ref_##id,
#include "ops.def"
#undef OP
};

int ref_run_kernel(const ref_kctx *k) { return kernels[k->node->op](k); }

/* ---- init ---- */

void pc_init_fill(float *dst, int64_t n, pc_init init, int64_t fan_in, uint64_t seed, uint64_t stream) {
    if (!dst || n <= 0) return;
    switch (init.kind) {
    case PC_INIT_NONE:
    case PC_INIT_ZEROS:
        for (int64_t i = 0; i < n; i++) dst[i] = 0.0f;
        break;
    case PC_INIT_ONES:
        for (int64_t i = 0; i < n; i++) dst[i] = 1.0f;
        break;
    case PC_INIT_UNIFORM:
        for (int64_t i = 0; i < n; i++)
            dst[i] = (float)(init.a + (init.b - init.a) * (double)pc_hash_uniform(seed, stream, (uint64_t)i));
        break;
    case PC_INIT_NORMAL:
        for (int64_t i = 0; i < n; i++) dst[i] = (float)(init.a * pc_hash_normal(seed, stream, (uint64_t)i));
        break;
    case PC_INIT_KAIMING_UNIFORM: {
        /* torch.nn.init.kaiming_uniform_(w, a): gain = sqrt(2 / (1 + a^2)),
         * std = gain / sqrt(fan_in), bound = sqrt(3) * std, U(-bound, bound) */
        double fi = fan_in > 0 ? (double)fan_in : 1.0;
        double gain = sqrt(2.0 / (1.0 + init.a * init.a));
        double bound = sqrt(3.0) * gain / sqrt(fi);
        for (int64_t i = 0; i < n; i++)
            dst[i] = (float)(-bound + 2.0 * bound * (double)pc_hash_uniform(seed, stream, (uint64_t)i));
        break;
    }
    }
}

/* the init stream of a param/state: a hash of its checkpoint key (stable under graph rewrites),
 * or its value index when it has no key */
static uint64_t init_stream(const pc_graph *g, pc_val v) {
    const char *key = g->vals[v].key;
    if (!key) return (uint64_t)v;
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *key; key++) h = (h ^ (unsigned char)*key) * 1099511628211ull;
    return h;
}

static size_t value_bytes(const pc_value *x) {
    return (size_t)pc_shape_numel(x->shape) * pc_dtype_size(x->dtype);
}

static void *alloc_bytes(size_t n) { return malloc(n ? n : 1); }

static int init_leaf(pc_ref *r, pc_val v, char *err, size_t errlen) {
    const pc_graph *g = r->g;
    const pc_value *x = &g->vals[v];
    int64_t n = pc_shape_numel(x->shape);
    void *buf = alloc_bytes(value_bytes(x));
    if (!buf) return verr(g, v, err, errlen, "could not be allocated (%zu bytes)", value_bytes(x));
    int64_t fan_in = x->shape.rank ? x->shape.dim[x->shape.rank - 1] : 1;
    if (x->dtype == PC_F32) {
        pc_init_fill(buf, n, x->init, fan_in, r->seed, init_stream(g, v));
    } else if (x->init.kind == PC_INIT_ZEROS || x->init.kind == PC_INIT_ONES) {
        int32_t fill = x->init.kind == PC_INIT_ONES;
        for (int64_t i = 0; i < n; i++) ((int32_t *)buf)[i] = fill;
    } else {
        free(buf);
        return verr(g, v, err, errlen, "has an init that only applies to f32 (an i32 value takes zeros or ones)");
    }
    r->init[v] = buf;
    return 0;
}

/* ---- lifecycle ---- */

static bool is_leaf(pc_opcode op) {
    return op == PC_OP_input || op == PC_OP_param || op == PC_OP_state || op == PC_OP_const;
}

/* Checks that the graph is well formed enough to execute safely: operands precede their users
 * and every node's type is what inference gives (a parsed graph may not have been verified). */
static int check_graph(const pc_graph *g, char *err, size_t errlen) {
    for (pc_val v = 0; v < g->nvals; v++) {
        const pc_value *x = &g->vals[v];
        if ((int)x->op < 0 || x->op >= PC_OP_COUNT) {
            set_err(err, errlen, "value %d has an unknown op %d", v, (int)x->op);
            return -1;
        }
        if (x->shape.rank < 0 || x->shape.rank > PC_MAX_RANK) {
            set_err(err, errlen, "value %d has rank %d", v, x->shape.rank);
            return -1;
        }
        for (int i = 0; i < x->shape.rank; i++)
            if (x->shape.dim[i] < 0) return verr(g, v, err, errlen, "has a negative dimension");
        if (x->dtype != PC_F32 && x->dtype != PC_I32 && x->dtype != PC_BF16)
            return verr(g, v, err, errlen, "has an unknown dtype %d", (int)x->dtype);
        if (is_leaf(x->op)) continue;
        const pc_op_info *info = pc_op_get(x->op);
        if (info->nin >= 0 ? x->nin != info->nin : x->nin < 1)
            return verr(g, v, err, errlen, "has %d operands", x->nin);
        for (int i = 0; i < x->nin; i++)
            if (x->in[i] < 0 || x->in[i] >= v)
                return verr(g, v, err, errlen, "operand %d is not an earlier value (the graph is not in topological order)", i + 1);
        pc_dtype dt;
        pc_shape s;
        char msg[256];
        if (pc_infer(g, x->op, x->nin, x->in, x->attr, &dt, &s, msg, sizeof msg))
            return verr(g, v, err, errlen, "is ill-typed: %s", msg);
        if (dt != x->dtype || !pc_shape_eq(s, x->shape)) {
            char a[96], b[96];
            pc_shape_str(s, a, sizeof a);
            pc_shape_str(x->shape, b, sizeof b);
            return verr(g, v, err, errlen, "is declared %s%s but its operands give %s%s", pc_dtype_name(x->dtype), b,
                        pc_dtype_name(dt), a);
        }
    }
    for (int i = 0; i < g->nupdates; i++) {
        pc_update u = g->updates[i];
        if (u.target < 0 || u.target >= g->nvals || u.next < 0 || u.next >= g->nvals) {
            set_err(err, errlen, "update %d refers to a missing value", i);
            return -1;
        }
        const pc_value *t = &g->vals[u.target], *n = &g->vals[u.next];
        if ((t->op != PC_OP_param && t->op != PC_OP_state) || t->dtype != n->dtype || !pc_shape_eq(t->shape, n->shape))
            return verr(g, u.target, err, errlen, "cannot be updated with %%%s", n->name ? n->name : "?");
    }
    for (int i = 0; i < g->noutputs; i++)
        if (g->outputs[i] < 0 || g->outputs[i] >= g->nvals) {
            set_err(err, errlen, "output %d refers to a missing value", i);
            return -1;
        }
    return 0;
}

pc_ref *pc_ref_new(const pc_graph *g, char *err, size_t errlen) {
    if (!g) { set_err(err, errlen, "no graph"); return NULL; }
    if (g->error) { set_err(err, errlen, "the graph has an error: %s", g->error); return NULL; }
    if (check_graph(g, err, errlen)) return NULL;
    pc_ref *r = calloc(1, sizeof *r);
    if (!r) { set_err(err, errlen, "out of memory"); return NULL; }
    r->g = g;
    r->n = g->nvals;
    size_t n = (size_t)(g->nvals ? g->nvals : 1);
    r->data = calloc(n, sizeof *r->data);
    r->owned = calloc(n, sizeof *r->owned);
    r->bound = calloc(n, sizeof *r->bound);
    r->init = calloc(n, sizeof *r->init);
    r->last_use = malloc(n * sizeof *r->last_use);
    r->keep = calloc(n, sizeof *r->keep);
    r->maxin = 1;
    r->check_finite = true;
    for (int v = 0; v < g->nvals; v++)
        if (g->vals[v].nin > r->maxin) r->maxin = g->vals[v].nin;
    r->inbuf = calloc((size_t)r->maxin, sizeof *r->inbuf);
    if (!r->data || !r->owned || !r->bound || !r->init || !r->last_use || !r->keep || !r->inbuf) {
        pc_ref_free(r);
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    for (int v = 0; v < g->nvals; v++) {
        r->last_use[v] = -1;
        if (is_leaf(g->vals[v].op)) r->keep[v] = true;
    }
    for (int v = 0; v < g->nvals; v++)
        for (int i = 0; i < g->vals[v].nin; i++) r->last_use[g->vals[v].in[i]] = v;
    for (int i = 0; i < g->noutputs; i++) r->keep[g->outputs[i]] = true;
    for (int i = 0; i < g->nupdates; i++) r->keep[g->updates[i].next] = true;
    return r;
}

/* frees the computed buffers of the last run */
static void release_run(pc_ref *r) {
    for (int v = 0; v < r->n; v++) {
        if (r->owned[v]) free(r->data[v]);
        r->owned[v] = false;
        r->data[v] = NULL;
    }
    r->ran = false;
}

void pc_ref_free(pc_ref *r) {
    if (!r) return;
    if (r->data && r->owned) release_run(r);
    if (r->init)
        for (int v = 0; v < r->n; v++) free(r->init[v]);
    free(r->data);
    free(r->owned);
    free(r->bound);
    free(r->init);
    free(r->last_use);
    free(r->keep);
    free(r->inbuf);
    free(r);
}

int pc_ref_bind(pc_ref *r, pc_val v, void *data) {
    if (!r || v < 0 || v >= r->n) return -1;
    pc_opcode op = r->g->vals[v].op;
    if (op != PC_OP_input && op != PC_OP_param && op != PC_OP_state) return -1;
    r->bound[v] = data;
    if (data && r->init[v]) { /* the caller's memory replaces an earlier initialisation */
        free(r->init[v]);
        r->init[v] = NULL;
    }
    r->data[v] = r->bound[v] ? r->bound[v] : r->init[v];
    return 0;
}

void pc_ref_set_seed(pc_ref *r, uint64_t seed) {
    if (r) r->seed = seed;
}

void pc_ref_keep_all(pc_ref *r, int keep) {
    if (r) r->keep_all = keep != 0;
}

void pc_ref_check_finite(pc_ref *r, int on) {
    if (r) r->check_finite = on != 0;
}

/* v's result against the rule of backend/finite.h; its operands are scanned only when the
 * result is not finite (they are still in memory: operands are freed after this) */
static int check_result(const pc_ref *r, pc_val v, char *err, size_t errlen) {
    const pc_graph *g = r->g;
    const pc_value *x = &g->vals[v];
    int found = pc_fin_scan_dt(r->data[v], x->dtype, x->shape, NULL);
    if (!found) return 0;
    int operands = 0;
    for (int i = 0; i < x->nin; i++)
        operands |= pc_fin_scan_dt(r->data[x->in[i]], g->vals[x->in[i]].dtype, g->vals[x->in[i]].shape, NULL);
    int kind = pc_fin_fault(x, found, operands);
    return kind ? pc_fin_error_dt(g, v, r->data[v], x->dtype, NULL, kind, NULL, err, errlen) : 0;
}

/* makes a leaf's data available */
static int prepare_leaf(pc_ref *r, pc_val v, char *err, size_t errlen) {
    const pc_graph *g = r->g;
    const pc_value *x = &g->vals[v];
    switch (x->op) {
    case PC_OP_input:
        if (!r->bound[v]) return verr(g, v, err, errlen, "is not bound");
        r->data[v] = r->bound[v];
        return 0;
    case PC_OP_param:
    case PC_OP_state:
        if (r->bound[v]) { r->data[v] = r->bound[v]; return 0; }
        if (!r->init[v]) {
            if (x->init.kind == PC_INIT_NONE) return verr(g, v, err, errlen, "is not bound and has no init");
            if (init_leaf(r, v, err, errlen)) return -1;
        }
        r->data[v] = r->init[v];
        return 0;
    case PC_OP_const:
        if (!x->data) return verr(g, v, err, errlen, "has no data (the constant was elided)");
        r->data[v] = x->data;
        return 0;
    default:
        return verr(g, v, err, errlen, "is not a leaf");
    }
}

int pc_ref_run(pc_ref *r, char *err, size_t errlen) {
    if (!r) { set_err(err, errlen, "no interpreter"); return -1; }
    const pc_graph *g = r->g;
    if (g->nvals != r->n) { set_err(err, errlen, "the graph changed after pc_ref_new"); return -1; }
    release_run(r);
    for (pc_val v = 0; v < r->n; v++) {
        const pc_value *x = &g->vals[v];
        if (is_leaf(x->op)) {
            if (prepare_leaf(r, v, err, errlen)) goto fail;
            if (r->check_finite && pc_fin_check_leaf(g, v, r->data[v], err, errlen)) goto fail;
            continue;
        }
        for (int i = 0; i < x->nin; i++) {
            if (!r->data[x->in[i]]) { verr(g, v, err, errlen, "operand %d is not available", i + 1); goto fail; }
            r->inbuf[i] = r->data[x->in[i]];
        }
        size_t bytes = value_bytes(x);
        void *out = alloc_bytes(bytes);
        if (!out) { verr(g, v, err, errlen, "could not be allocated (%zu bytes)", bytes); goto fail; }
        r->data[v] = out;
        r->owned[v] = true;
        ref_kctx k = {g, v, x, out, r->inbuf, err, errlen};
        if (kernels[x->op](&k)) goto fail;
        if (r->check_finite && x->dtype != PC_I32 && check_result(r, v, err, errlen)) goto fail;
        if (r->keep_all) continue;
        if (r->last_use[v] < 0 && !r->keep[v]) { /* nobody reads it */
            free(out);
            r->data[v] = NULL;
            r->owned[v] = false;
        }
        /* free operands at their last use */
        for (int i = 0; i < x->nin; i++) {
            pc_val u = x->in[i];
            if (r->last_use[u] == v && !r->keep[u] && r->owned[u]) {
                free(r->data[u]);
                r->data[u] = NULL;
                r->owned[u] = false;
            }
        }
    }
    r->ran = true;
    return 0;
fail:
    release_run(r);
    return -1;
}

const void *pc_ref_data(const pc_ref *r, pc_val v) {
    if (!r || v < 0 || v >= r->n) return NULL;
    if (r->data[v]) return r->data[v];
    /* a leaf is readable before a run too */
    if (r->bound[v]) return r->bound[v];
    if (r->init[v]) return r->init[v];
    return NULL;
}

int pc_ref_apply_updates(pc_ref *r) {
    if (!r || !r->ran) return -1;
    const pc_graph *g = r->g;
    /* a new value that is itself a leaf may be another update's target: snapshot those first */
    void **tmp = calloc((size_t)(g->nupdates ? g->nupdates : 1), sizeof *tmp);
    if (!tmp) return -1;
    int rc = 0;
    for (int i = 0; i < g->nupdates; i++) {
        pc_update u = g->updates[i];
        const void *src = r->data[u.next];
        if (!src) { rc = -1; goto done; }
        if (is_leaf(g->vals[u.next].op)) {
            size_t bytes = value_bytes(&g->vals[u.next]);
            if (!(tmp[i] = alloc_bytes(bytes))) { rc = -1; goto done; }
            memcpy(tmp[i], src, bytes);
        }
    }
    for (int i = 0; i < g->nupdates; i++) {
        pc_update u = g->updates[i];
        void *dst = r->bound[u.target] ? r->bound[u.target] : r->init[u.target];
        if (!dst) { rc = -1; continue; }
        const void *src = tmp[i] ? tmp[i] : r->data[u.next];
        memmove(dst, src, value_bytes(&g->vals[u.target]));
    }
done:
    for (int i = 0; i < g->nupdates; i++) free(tmp[i]);
    free(tmp);
    return rc;
}
