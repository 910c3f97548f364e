/* The compiled backend: lowering + memory plan at creation, then runs that walk a fixed schedule
 * over one arena with oneDNN matmuls, LLVM JIT kernels and C kernels (see backend/compiled.h).
 *
 * Every pointer an instruction uses is resolved ahead of time: arena pointers once at creation,
 * pointers into bound / initialised / constant leaf memory whenever a binding changes (a list of
 * patches). A run therefore does no allocation and no lookup. */
#include "backend/compiled_internal.h"

#include "backend/kernel.h"
#include "backend/onednn.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

typedef struct {
    pc_li_kind kind;
    const pc_linsn *li;
    bool skip;             /* nothing to compute (empty) */
    bool small;            /* MATMUL in C (pc_ck_gemm_small) */
    /* MATMUL */
    pc_dnnl_matmul *mm;
    void *a, *b, *c;
    int64_t c_bytes;
    const void *prepared;  /* b_constant: the b pointer the primitive was prepared for */
    /* KERNEL */
    pc_kernel_fn fn;
    void **args;
    /* CALL */
    pc_ck_fn cfn;
    pc_ckctx ck;
    void **inp;
    const char *name;
    /* COPY */
    void *src, *dst;
    /* profile */
    double t, tmin; /* total and fastest call: the machine is shared, the minimum is the cost */
    int64_t calls;
} cinsn;

typedef struct {
    void **slot;
    int buf;
    int64_t off; /* bytes */
} patch;

struct pc_compiled {
    const pc_graph *g;
    pc_lowered *l;
    pc_dnnl *dnnl;
    const pc_kernel_provider *kp; /* where the fused kernels come from */
    void *kernels;                /* the provider's handle owning them */
    uint8_t *arena;
    void **bound, **init; /* per value */
    void **base;          /* per buffer */
    uint64_t seed;
    bool dirty, ran, prof;
    pc_arena *shared; /* the arena is this one's, not owned (pc_exec_opts.arena) */
    uint8_t *bufkinds;    /* --check-finite: per buffer, the PC_FIN_* kinds of this run (else NULL) */
    cinsn *ins;
    int nins;
    patch *patches;
    int npatches, cappatches;
    void **upd_tmp;       /* per update: snapshot room when its value lives in leaf memory */
    double **tables;      /* rope tables */
    int ntables;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* "FILE:LINE: error: %name (op type) message", like the reference interpreter */
static int verr(const pc_graph *g, pc_val v, char *err, size_t errlen, const char *msg) {
    char what[512], where[512] = "";
    const pc_value *x = &g->vals[v];
    if (x->loc.file) snprintf(where, sizeof where, "%s:%d: ", x->loc.file, x->loc.line);
    ref_describe(g, v, what, sizeof what);
    set_err(err, errlen, "%serror: %s %s", where, what, msg);
    return -1;
}

static size_t value_bytes(const pc_value *x) { return (size_t)pc_shape_numel(x->shape) * pc_dtype_size(x->dtype); }

/* ---- pointers ---- */

/* a pointer resolve() fills: buffer b at byte offset off (arena buffers too: a shared arena may
 * move when it grows) */
static int patch_at(pc_compiled *c, void **slot, int b, int64_t off) {
    if (c->npatches == c->cappatches) {
        int cap = c->cappatches ? 2 * c->cappatches : 256;
        patch *p = realloc(c->patches, (size_t)cap * sizeof *p);
        if (!p) return -1;
        c->patches = p;
        c->cappatches = cap;
    }
    c->patches[c->npatches++] = (patch){slot, b, off};
    *slot = NULL;
    return 0;
}

static int add_patch(pc_compiled *c, void **slot, const pc_lref *r) {
    return patch_at(c, slot, r->view.buf, r->view.off * (int64_t)pc_dtype_size(r->dt));
}

static uint64_t init_stream(const pc_graph *g, pc_val v) { /* as backend/ref.c */
    const char *key = g->vals[v].key;
    if (!key) return (uint64_t)v;
    uint64_t h = 1469598103934665603ull;
    for (; *key; key++) h = (h ^ (unsigned char)*key) * 1099511628211ull;
    return h;
}

static int init_leaf(pc_compiled *c, pc_val v, char *err, size_t errlen) {
    const pc_graph *g = c->g;
    const pc_value *x = &g->vals[v];
    int64_t n = pc_shape_numel(x->shape);
    size_t bytes = value_bytes(x);
    void *buf = malloc(bytes ? bytes : 1);
    if (!buf) return verr(g, v, err, errlen, "could not be allocated");
    int64_t fan_in = x->shape.rank ? x->shape.dim[x->shape.rank - 1] : 1;
    if (x->dtype == PC_F32) {
        pc_init_fill(buf, n, x->init, fan_in, c->seed, init_stream(g, v));
    } else if (x->init.kind == PC_INIT_ZEROS || x->init.kind == PC_INIT_ONES) {
        for (int64_t i = 0; i < n; i++) ((int32_t *)buf)[i] = x->init.kind == PC_INIT_ONES;
    } else {
        free(buf);
        return verr(g, v, err, errlen, "has an init that only applies to f32 (an i32 value takes zeros or ones)");
    }
    c->init[v] = buf;
    return 0;
}

/* the memory of every leaf (as the reference prepares it), then every patch */
static int resolve(pc_compiled *c, char *err, size_t errlen) {
    const pc_graph *g = c->g;
    for (pc_val v = 0; v < g->nvals; v++) {
        const pc_value *x = &g->vals[v];
        if (x->op == PC_OP_input && !c->bound[v]) return verr(g, v, err, errlen, "is not bound");
        if ((x->op == PC_OP_param || x->op == PC_OP_state) && !c->bound[v] && !c->init[v]) {
            if (x->init.kind == PC_INIT_NONE) return verr(g, v, err, errlen, "is not bound and has no init");
            if (init_leaf(c, v, err, errlen)) return -1;
        }
        if (x->op == PC_OP_const && !x->data) return verr(g, v, err, errlen, "has no data (the constant was elided)");
    }
    for (int b = 0; b < c->l->nbufs; b++) {
        const pc_lbuf *B = &c->l->buf[b];
        if (B->kind == PC_BUF_ARENA) c->base[b] = c->arena + B->offset;
        else if (B->kind == PC_BUF_CONST) c->base[b] = g->vals[B->owner].data;
        else c->base[b] = c->bound[B->owner] ? c->bound[B->owner] : c->init[B->owner];
    }
    for (int i = 0; i < c->npatches; i++) *c->patches[i].slot = (uint8_t *)c->base[c->patches[i].buf] + c->patches[i].off;
    for (int i = 0; i < c->nins; i++) {
        cinsn *ci = &c->ins[i];
        if (ci->kind != PC_LI_MATMUL || !ci->mm || !ci->li->mm.b_constant || ci->prepared == ci->b) continue;
        if (pc_dnnl_matmul_prepare_b(ci->mm, ci->b, err, errlen)) return -1;
        ci->prepared = ci->b;
    }
    c->dirty = false;
    return 0;
}

/* ---- small matmuls (N = 4, 8 or 16: one vector per row of C) ----
 * oneDNN's kernels vectorize over N and waste most of a vector on LoRA ranks and head dims; here
 * each row of C is one vector, rows go in blocks of 8 so that a row of B is loaded once per block,
 * and A and B take any strides (transposed views included). f32 accumulation, k ascending. */
#define GEMM_N(NN, VT)                                                                             \
    INL VT brow##NN(const float *b, int64_t sbn) {                                                 \
        VT v;                                                                                      \
        if (sbn == 1) memcpy(&v, b, sizeof v);                                                     \
        else                                                                                       \
            for (int j = 0; j < NN; j++) v[j] = b[j * sbn];                                        \
        return v;                                                                                  \
    }                                                                                              \
    INL void crow##NN(float *c, VT v, float alpha, int acc) {                                      \
        VT o = v * alpha;                                                                          \
        if (acc) {                                                                                 \
            VT old;                                                                                \
            memcpy(&old, c, sizeof old);                                                           \
            o += old;                                                                              \
        }                                                                                          \
        memcpy(c, &o, sizeof o);                                                                   \
    }                                                                                              \
    PC_HOT static void gemm_n##NN(float *c, const float *a, int64_t sam, int64_t sak, const float *b, int64_t sbk, \
                                  int64_t sbn, int64_t M, int64_t K, float alpha, int acc) {        \
        int64_t i = 0;                                                                             \
        for (; i + 8 <= M; i += 8) {                                                               \
            VT c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0}, c4 = {0}, c5 = {0}, c6 = {0}, c7 = {0};        \
            const float *ai = a + i * sam;                                                         \
            for (int64_t k = 0; k < K; k++) {                                                      \
                VT bk = brow##NN(b + k * sbk, sbn);                                                \
                const float *ak = ai + k * sak;                                                    \
                c0 += ak[0] * bk, c1 += ak[sam] * bk, c2 += ak[2 * sam] * bk, c3 += ak[3 * sam] * bk; \
                c4 += ak[4 * sam] * bk, c5 += ak[5 * sam] * bk, c6 += ak[6 * sam] * bk, c7 += ak[7 * sam] * bk; \
            }                                                                                      \
            float *ci = c + i * NN;                                                                \
            crow##NN(ci, c0, alpha, acc), crow##NN(ci + NN, c1, alpha, acc);                       \
            crow##NN(ci + 2 * NN, c2, alpha, acc), crow##NN(ci + 3 * NN, c3, alpha, acc);          \
            crow##NN(ci + 4 * NN, c4, alpha, acc), crow##NN(ci + 5 * NN, c5, alpha, acc);          \
            crow##NN(ci + 6 * NN, c6, alpha, acc), crow##NN(ci + 7 * NN, c7, alpha, acc);          \
        }                                                                                          \
        for (; i < M; i++) {                                                                       \
            VT ci = {0};                                                                           \
            for (int64_t k = 0; k < K; k++) ci += a[i * sam + k * sak] * brow##NN(b + k * sbk, sbn); \
            crow##NN(c + i * NN, ci, alpha, acc);                                                  \
        }                                                                                          \
    }
GEMM_N(4, v4f)
GEMM_N(8, v8f)
GEMM_N(16, v16f)

/* the same when A's columns are contiguous (a transposed operand): vectors run along M, 16 rows
 * of C per block, one accumulator per column; the block is transposed on the way out */
#define GEMM_T(NN)                                                                                 \
    PC_HOT static void gemm_t##NN(float *c, const float *a, int64_t sak, const float *b, int64_t sbk, int64_t sbn, \
                                  int64_t M, int64_t K, float alpha, int acc) {                     \
        for (int64_t i = 0; i + 16 <= M; i += 16) {                                                \
            v16f cc[NN];                                                                           \
            for (int j = 0; j < NN; j++) cc[j] = (v16f){0};                                        \
            for (int64_t k = 0; k < K; k++) {                                                      \
                v16f ak = ld16(a + i + k * sak);                                                   \
                const float *bk = b + k * sbk;                                                     \
                for (int j = 0; j < NN; j++) cc[j] += ak * bk[j * sbn];                            \
            }                                                                                      \
            for (int l = 0; l < 16; l++) {                                                         \
                float *cr = c + (i + l) * NN;                                                      \
                for (int j = 0; j < NN; j++) cr[j] = alpha * cc[j][l] + (acc ? cr[j] : 0.0f);     \
            }                                                                                      \
        }                                                                                          \
    }
GEMM_T(4)
GEMM_T(8)
GEMM_T(16)

bool pc_ck_gemm_small_ok(const pc_matmul_desc *d) {
    int64_t n = d->b_dims[d->rank - 1];
    return !d->bf16 && (d->reduce_batch || n == 4 || n == 8 || n == 16 || pc_ck_gemm_at_ok(d));
}

/* any width, one element at a time: the sums over a batch (reduce_batch) of widths the vector
 * loops do not take; the lowering only forms them for matrices of at most 64 x 64 */
static void gemm_any(float *c, const float *a, int64_t sam, int64_t sak, const float *b, int64_t sbk, int64_t sbn,
                     int64_t M, int64_t K, int64_t N, float alpha, int acc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            float s = 0.0f;
            for (int64_t k = 0; k < K; k++) s += a[i * sam + k * sak] * b[k * sbk + j * sbn];
            c[i * N + j] = alpha * s + (acc ? c[i * N + j] : 0.0f);
        }
}

void pc_ck_gemm_small(const pc_matmul_desc *d, const float *a, const float *b, float *c) {
    if (pc_ck_gemm_batched(d, a, b, c)) return; /* tiny products batched (compiled_gemm_batched.c) */
    if (pc_ck_gemm_at_ok(d)) { /* weight gradients (compiled_gemm_at.c) */
        pc_ck_gemm_at(d, a, b, c);
        return;
    }
    if (pc_ck_gemm_pairs(d, a, b, c)) return; /* rank-8 products, two k per lane */
    int R = d->rank;
    int64_t M = d->a_dims[R - 2], K = d->a_dims[R - 1], N = d->b_dims[R - 1], nb = 1, idx[PC_MM_MAX_RANK] = {0};
    for (int i = 0; i < R - 2; i++) nb *= d->c_dims[i];
    for (int64_t t = 0; t < nb; t++) {
        int64_t ao = 0, bo = 0, rem = t;
        for (int i = R - 3; i >= 0; i--) { /* batch index -> offsets (broadcast dims read index 0) */
            idx[i] = rem % d->c_dims[i];
            rem /= d->c_dims[i];
            if (d->a_dims[i] > 1) ao += idx[i] * d->a_strides[i];
            if (d->b_dims[i] > 1) bo += idx[i] * d->b_strides[i];
        }
        float *ct = d->reduce_batch ? c : c + t * M * N; /* a sum over the batch adds each product in */
        int acc = d->accumulate || (d->reduce_batch && t > 0);
        const float *at = a + ao, *bt = b + bo;
        int64_t sam = d->a_strides[R - 2], sak = d->a_strides[R - 1], sbk = d->b_strides[R - 2], sbn = d->b_strides[R - 1];
        if (N != 4 && N != 8 && N != 16) {
            gemm_any(ct, at, sam, sak, bt, sbk, sbn, M, K, N, d->alpha, acc);
            continue;
        }
        float pack[4096]; /* rows of B gathered once (b^T operands: LoRA A, weights) */
        if (sbn != 1 && K * N <= 4096 && M > 8) {
            for (int64_t k = 0; k < K; k++)
                for (int64_t j = 0; j < N; j++) pack[k * N + j] = bt[k * sbk + j * sbn];
            bt = pack, sbk = N, sbn = 1;
        }
        int64_t m0 = 0;
        if (sam == 1 && M >= 16) { /* columns of A contiguous: 16-row blocks along M */
            m0 = M / 16 * 16;
            if (N == 4) gemm_t4(ct, at, sak, bt, sbk, sbn, m0, K, d->alpha, acc);
            else if (N == 8) gemm_t8(ct, at, sak, bt, sbk, sbn, m0, K, d->alpha, acc);
            else gemm_t16(ct, at, sak, bt, sbk, sbn, m0, K, d->alpha, acc);
        }
        float *cr = ct + m0 * N;
        const float *ar = at + m0 * sam;
        if (N == 4) gemm_n4(cr, ar, sam, sak, bt, sbk, sbn, M - m0, K, d->alpha, acc);
        else if (N == 8) gemm_n8(cr, ar, sam, sak, bt, sbk, sbn, M - m0, K, d->alpha, acc);
        else gemm_n16(cr, ar, sam, sak, bt, sbk, sbn, M - m0, K, d->alpha, acc);
    }
}

/* ---- creation ---- */

/* A zeroed arena. From 2 MiB up it is 2 MiB aligned and asks for transparent huge pages (granted
 * where the kernel's THP mode is madvise or always): a train step's arena holds megabytes of
 * activations (stories260K 14 MB: 3,500 pages of 4 KiB, more than the second-level TLB holds).
 * Measured on stories260K, 6 interleaved runs each: 54.1k -> 56.9k tokens/s (median). */
static void *arena_alloc(size_t bytes) {
    const size_t huge = (size_t)2 << 20;
    void *p;
    if (bytes >= huge) {
        size_t n = (bytes + huge - 1) / huge * huge;
        p = aligned_alloc(huge, n);
#ifdef MADV_HUGEPAGE
        if (p) (void)madvise(p, n, MADV_HUGEPAGE);
#endif
    } else
        p = aligned_alloc(64, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

/* Whether a frozen (b_constant) weight gets a reordered copy in oneDNN's blocked layout. The copy
 * is a second resident copy of the weight (the caller's stays bound), so it is kept only where the
 * plain layout is measurably slower. Measured on the large bench config (1 thread, M = 512):
 * a row-major b (W used un-transposed, the input gradient of a linear) with K, N <= 1024 runs at
 * the blocked speed (plain/blocked 0.998..1.006 on 768x768: oneDNN reads it without a copy);
 * transposed b (the forward of a linear) and larger row-major b are 2..8 % slower plain. */
static bool keep_blocked(const pc_matmul_desc *d) {
    int R = d->rank;
    bool row_major = d->b_strides[R - 1] == 1 || d->b_dims[R - 1] <= 1;
    return !(row_major && d->b_dims[R - 2] <= 1024 && d->b_dims[R - 1] <= 1024);
}

static int build_matmul(pc_compiled *c, cinsn *ci, char *err, size_t errlen) {
    const pc_linsn *I = ci->li;
    ci->c_bytes = pc_shape_numel(I->out[0].shape) * 4;
    if (add_patch(c, &ci->a, &I->in[0]) || add_patch(c, &ci->b, &I->in[1]) || add_patch(c, &ci->c, &I->out[0]))
        return -1;
    if (I->mm_zero) return 0;
    if (I->mm_c) {
        ci->small = true;
        return 0;
    }
    pc_matmul_desc d = I->mm;
    if (d.b_constant && !keep_blocked(&d)) d.b_constant = 0; /* plain weights: no reordered copy */
    if (!(ci->mm = pc_dnnl_matmul_new(c->dnnl, &d, err, errlen))) return -1;
    if (d.b_constant && c->shared) { /* one reordered copy per weight for all the run's executors */
        if (!c->shared->weights && !(c->shared->weights = pc_dnnl_wcache_new())) {
            set_err(err, errlen, "out of memory");
            return -1;
        }
        if (pc_dnnl_matmul_share_b(ci->mm, c->shared->weights, err, errlen)) return -1;
    }
    return 0;
}

/* rope over constant positions: the cos/sin table is computed once, and no scratch is needed */
static const double *rope_table(pc_compiled *c, pc_linsn *I) {
    const pc_graph *g = c->g;
    if (g->vals[I->v].op != PC_OP_rope || I->call != PC_CALL_OP) return NULL;
    const pc_lbuf *B = &c->l->buf[I->in[1].view.buf];
    const int32_t *pos = B->kind == PC_BUF_CONST ? (const int32_t *)g->vals[B->owner].data : NULL;
    double **t = pos ? realloc(c->tables, (size_t)(c->ntables + 1) * sizeof *t) : NULL;
    if (!t) return NULL;
    c->tables = t;
    if (!(t[c->ntables] = pc_ck_rope_table(g, I->v, pos + I->in[1].view.off))) return NULL;
    I->scratch = 0;
    return t[c->ntables++];
}

static int build_call(pc_compiled *c, cinsn *ci, pc_ck_fn fn, const char *name, const double *table) {
    const pc_linsn *I = ci->li;
    const pc_graph *g = c->g;
    ci->cfn = fn;
    ci->name = name;
    if (!(ci->inp = calloc((size_t)I->nin + 1, sizeof *ci->inp))) return -1;
    ci->ck.k = (ref_kctx){g, I->v, &g->vals[I->v], NULL, (const void *const *)ci->inp, NULL, 0};
    for (int k = 0; k < I->nin; k++)
        if (add_patch(c, &ci->inp[k], &I->in[k])) return -1;
    if (add_patch(c, &ci->ck.k.out, &I->out[0])) return -1;
    for (int k = 1; k < I->nout && k <= 2; k++)
        if (add_patch(c, &ci->ck.outs[k - 1], &I->out[k])) return -1;
    if (I->aux2 != PC_NONE) ci->ck.mask2 = &g->vals[I->aux2];
    ci->ck.alpha2 = I->alpha2;
    if (I->scratch_buf >= 0 && patch_at(c, (void **)&ci->ck.scratch, I->scratch_buf, 0)) return -1;
    if (I->aux != PC_NONE) ci->ck.mask = &g->vals[I->aux];
    ci->ck.alpha = I->alpha;
    ci->ck.table = table;
    ci->ck.li = I;
    return 0;
}

static int build_kernels(pc_compiled *c, const pc_exec_opts *o, char *err, size_t errlen) {
    int nk = 0;
    for (int i = 0; i < c->nins; i++) nk += c->ins[i].kind == PC_LI_KERNEL;
    if (!nk) return 0;
    pc_kernel_desc *uniq = calloc((size_t)nk, sizeof *uniq);
    int *which = calloc((size_t)c->nins, sizeof *which);
    char (*names)[PC_KERNEL_NAME_MAX] = calloc((size_t)nk, sizeof *names);
    const char **np = calloc((size_t)nk, sizeof *np);
    pc_kernel_fn *fns = calloc((size_t)nk, sizeof *fns);
    int nu = 0, rc = -1;
    if (!uniq || !which || !names || !np || !fns) goto done;
    /* identical kernels (the same layer repeated) are compiled once; a kernel is named after its
     * fingerprint, so the names are the same in every process (an AOT executable's table) */
    for (int i = 0; i < c->nins; i++) {
        cinsn *ci = &c->ins[i];
        if (ci->kind != PC_LI_KERNEL) continue;
        const pc_kernel_desc *kd = ci->li->kd;
        char name[PC_KERNEL_NAME_MAX];
        pc_kernel_name(kd, name);
        int u = 0;
        while (u < nu && strcmp(names[u], name) != 0) u++;
        if (u == nu) {
            uniq[nu] = *kd;
            memcpy(names[nu], name, sizeof name);
            np[nu] = names[nu];
            nu++;
        }
        which[i] = u;
        const pc_linsn *I = ci->li;
        if (!(ci->args = calloc((size_t)(I->nin + I->nout), sizeof *ci->args))) goto done;
        for (int k = 0; k < I->nin; k++)
            if (add_patch(c, &ci->args[k], &I->in[k])) goto done;
        for (int k = 0; k < I->nout; k++)
            if (add_patch(c, &ci->args[I->nin + k], &I->out[k])) goto done;
        int64_t work = 1;
        for (int d = 0; d < kd->rank; d++) work *= kd->dim[d];
        ci->skip = work == 0;
    }
    c->kp = o && o->kernels ? o->kernels : pc_kernel_provider_default();
    if (!(c->kernels = c->kp->compile(c->kp, uniq, np, nu, fns, err, errlen))) goto done;
    for (int i = 0; i < c->nins; i++)
        if (c->ins[i].kind == PC_LI_KERNEL) c->ins[i].fn = fns[which[i]];
    rc = 0;
done:
    if (rc && !err[0]) set_err(err, errlen, "out of memory");
    free(names);
    free(np);
    free(uniq);
    free(which);
    free(fns);
    return rc;
}

pc_compiled *pc_compiled_new(const pc_graph *g, const pc_exec_opts *o, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    pc_ref *check = pc_ref_new(g, err, errlen); /* the reference's well-formedness checks */
    if (!check) return NULL;
    pc_ref_free(check);
    pc_compiled *c = calloc(1, sizeof *c);
    if (!c) { set_err(err, errlen, "out of memory"); return NULL; }
    c->g = g;
    c->dirty = true;
    if (!(c->l = pc_lower(g, err, errlen))) goto fail;
    pc_lowered *l = c->l;
    pc_ck_fn *cfns = calloc((size_t)l->ninsns + 1, sizeof *cfns);
    const char **cnames = calloc((size_t)l->ninsns + 1, sizeof *cnames);
    const double **tabs = calloc((size_t)l->ninsns + 1, sizeof *tabs);
    if (!cfns || !cnames || !tabs) { free(cfns); free(cnames); free(tabs); goto oom; }
    for (int i = 0; i < l->ninsns; i++) {
        pc_linsn *I = &l->insn[i];
        I->mm_c = I->kind == PC_LI_MATMUL && !I->mm_zero && pc_ck_gemm_small_ok(&I->mm);
    }
    for (int i = 0; i < l->ninsns; i++)
        if (l->insn[i].kind == PC_LI_CALL) {
            cfns[i] = pc_ck_select(g, &l->insn[i], &l->insn[i].scratch, &cnames[i]);
            tabs[i] = rope_table(c, &l->insn[i]);
        }
    if (pc_memplan(l, err, errlen)) { free(cfns); free(cnames); free(tabs); goto fail; }
    if (o && o->dump_after && strcmp(o->dump_after, "lower") == 0) {
        char *text = pc_lowered_print(l);
        fputs(text ? text : "(out of memory)\n", stderr);
        free(text);
    }
    /* the arena is allocated and touched once: first-touch page faults are slow here */
    size_t abytes = (size_t)(l->arena_bytes + 64 + 63) / 64 * 64;
    if (o && o->arena) { /* shared: grown to this graph's size (the others re-resolve on their next run) */
        c->shared = o->arena;
        if (o->arena->size < abytes) {
            void *grown = arena_alloc(abytes);
            if (grown) {
                free(o->arena->base);
                o->arena->base = grown;
                o->arena->size = abytes;
            }
        }
        c->arena = o->arena->size >= abytes ? o->arena->base : NULL;
    } else {
        c->arena = arena_alloc(abytes);
    }
    size_t nv = (size_t)g->nvals + 1;
    c->bound = calloc(nv, sizeof *c->bound);
    c->init = calloc(nv, sizeof *c->init);
    c->base = calloc((size_t)l->nbufs + 1, sizeof *c->base);
    c->upd_tmp = calloc((size_t)g->nupdates + 1, sizeof *c->upd_tmp);
    for (int i = 0; i < l->ninsns; i++) c->nins += l->insn[i].kind != PC_LI_VIEW;
    c->ins = calloc((size_t)c->nins + 1, sizeof *c->ins);
    if (o && o->check_finite > 0) c->bufkinds = calloc((size_t)l->nbufs + 1, 1);
    if (!c->arena || !c->bound || !c->init || !c->base || !c->upd_tmp || !c->ins || (o && o->check_finite > 0 && !c->bufkinds)) { free(cfns); free(cnames); free(tabs); goto oom; }
    int threads = o && o->threads > 0 ? o->threads : 1;
    int k = 0, rc = 0;
    for (int i = 0; i < l->ninsns && !rc; i++) {
        const pc_linsn *I = &l->insn[i];
        if (I->kind == PC_LI_VIEW) continue;
        cinsn *ci = &c->ins[k++];
        ci->kind = I->kind;
        ci->li = I;
        switch (I->kind) {
        case PC_LI_MATMUL:
            if (!c->dnnl && !I->mm_zero && !(c->dnnl = pc_dnnl_new(threads, err, errlen))) rc = -1;
            else rc = build_matmul(c, ci, err, errlen);
            break;
        case PC_LI_CALL: rc = build_call(c, ci, cfns[i], cnames[i], tabs[i]); break;
        case PC_LI_COPY: rc = add_patch(c, &ci->src, &I->in[0]) || add_patch(c, &ci->dst, &I->out[0]); break;
        default: break;
        }
    }
    free(cfns);
    free(cnames);
    free(tabs);
    if (rc) goto fail;
    if (build_kernels(c, o, err, errlen)) goto fail;
    for (int i = 0; i < g->nupdates; i++) { /* room to snapshot values that live in leaf memory */
        pc_val nx = g->updates[i].next;
        if (l->buf[l->view[nx].buf].kind != PC_BUF_ARENA) {
            size_t b = value_bytes(&g->vals[nx]);
            if (!(c->upd_tmp[i] = malloc(b ? b : 1))) goto oom;
        }
    }
    return c;
oom:
    set_err(err, errlen, "out of memory");
fail:
    if (err && errlen && !err[0]) set_err(err, errlen, "compiling the graph failed");
    pc_compiled_free(c);
    return NULL;
}

void pc_compiled_free(pc_compiled *c) {
    if (!c) return;
    for (int i = 0; i < c->nins; i++) {
        pc_dnnl_matmul_free(c->ins[i].mm);
        free(c->ins[i].args);
        free(c->ins[i].inp);
    }
    free(c->ins);
    if (c->kernels) c->kp->release(c->kp, c->kernels);
    pc_dnnl_free(c->dnnl);
    if (c->init)
        for (pc_val v = 0; v < c->g->nvals; v++) free(c->init[v]);
    if (c->upd_tmp)
        for (int i = 0; i < c->g->nupdates; i++) free(c->upd_tmp[i]);
    for (int i = 0; i < c->ntables; i++) free(c->tables[i]);
    free(c->tables);
    free(c->upd_tmp);
    free(c->init);
    free(c->bound);
    free(c->base);
    free(c->bufkinds);
    free(c->patches);
    if (!c->shared) free(c->arena);
    pc_lowered_free(c->l);
    free(c);
}

int pc_compiled_bind(pc_compiled *c, pc_val v, void *data) {
    if (!c || v < 0 || v >= c->g->nvals) return -1;
    pc_opcode op = c->g->vals[v].op;
    if (op != PC_OP_input && op != PC_OP_param && op != PC_OP_state) return -1;
    if (c->bound[v] != data) c->dirty = true;
    c->bound[v] = data;
    if (op == PC_OP_param && data) {
        /* (re)binding a param announces new contents: matmuls that prepared (reordered) a
         * constant operand from this memory must prepare it again */
        const uint8_t *lo = data, *hi = lo + pc_shape_numel(c->g->vals[v].shape) * (int64_t)pc_dtype_size(c->g->vals[v].dtype);
        for (int i = 0; i < c->nins; i++) {
            const uint8_t *p = c->ins[i].prepared;
            if (p && p >= lo && p < hi) c->ins[i].prepared = NULL, c->dirty = true;
        }
    }
    if (data && c->init[v]) { /* the caller's memory replaces an earlier initialisation */
        free(c->init[v]);
        c->init[v] = NULL;
        c->dirty = true;
    }
    return 0;
}

void pc_compiled_set_seed(pc_compiled *c, uint64_t seed) {
    if (c) c->seed = seed;
}

/* ---- running ---- */

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int exec_insn(const pc_compiled *c, cinsn *ci, char *err, size_t errlen) {
    switch (ci->kind) {
    case PC_LI_MATMUL:
        if (ci->small) {
            pc_ck_gemm_small(&ci->li->mm, ci->a, ci->b, ci->c);
            return 0;
        }
        if (!ci->mm) {
            if (!ci->li->mm.accumulate) memset(ci->c, 0, (size_t)ci->c_bytes);
            return 0;
        }
        if (pc_dnnl_matmul_run(ci->mm, ci->a, ci->b, ci->c))
            return verr(c->g, ci->li->v, err, errlen, "failed in the oneDNN matmul");
        return 0;
    case PC_LI_KERNEL:
        if (!ci->skip) ci->fn(ci->args);
        return 0;
    case PC_LI_CALL:
        ci->ck.k.err = err;
        ci->ck.k.errlen = errlen;
        return ci->cfn(&ci->ck);
    case PC_LI_COPY: {
        const pc_lref *r = &ci->li->in[0];
        pc_ck_copy(ci->dst, ci->src, r->shape.rank, r->shape.dim, r->view.st);
        return 0;
    }
    default:
        return 0;
    }
}

/* runs one instruction, then (--check-finite) judges its results */
static int exec_one(const pc_compiled *c, cinsn *ci, char *err, size_t errlen) {
    if (exec_insn(c, ci, err, errlen)) return -1;
    return c->bufkinds && !ci->skip ? pc_cfin_check(c->g, c->base, ci->li, c->bufkinds, err, errlen) : 0;
}

int pc_compiled_run(pc_compiled *c, char *err, size_t errlen) {
    if (!c) { set_err(err, errlen, "no compiled graph"); return -1; }
    c->ran = false;
    if (c->shared && c->arena != c->shared->base) c->arena = c->shared->base, c->dirty = true; /* it grew */
    if (c->dirty && resolve(c, err, errlen)) return -1;
    if (c->bufkinds) {
        memset(c->bufkinds, 0, (size_t)c->l->nbufs);
        if (pc_cfin_check_leaves(c->g, c->bound, c->init, err, errlen)) return -1;
    }
    if (!c->prof) {
        for (int i = 0; i < c->nins; i++)
            if (exec_one(c, &c->ins[i], err, errlen)) return -1;
    } else {
        for (int i = 0; i < c->nins; i++) {
            double t0 = now_s();
            if (exec_one(c, &c->ins[i], err, errlen)) return -1;
            double dt = now_s() - t0;
            c->ins[i].t += dt;
            if (!c->ins[i].calls++ || dt < c->ins[i].tmin) c->ins[i].tmin = dt;
        }
    }
    c->ran = true;
    return 0;
}

const void *pc_compiled_data(const pc_compiled *c, pc_val v) {
    if (!c || v < 0 || v >= c->g->nvals) return NULL;
    const pc_value *x = &c->g->vals[v];
    if (x->op == PC_OP_input || x->op == PC_OP_param || x->op == PC_OP_state)
        return c->bound[v] ? c->bound[v] : c->init[v];
    if (x->op == PC_OP_const) return x->data;
    const pc_lview *vw = &c->l->view[v];
    if (!c->ran || vw->buf < 0) return NULL;
    const pc_lbuf *B = &c->l->buf[vw->buf];
    if (B->kind == PC_BUF_ARENA && !B->pinned) return NULL; /* reused by later instructions */
    return (const uint8_t *)c->base[vw->buf] + vw->off * (int64_t)pc_dtype_size(x->dtype);
}

int pc_compiled_apply_updates(pc_compiled *c) {
    if (!c || !c->ran) return -1;
    const pc_graph *g = c->g;
    for (int i = 0; i < g->nupdates; i++)
        if (c->upd_tmp[i]) {
            const void *src = pc_compiled_data(c, g->updates[i].next);
            if (!src) return -1;
            memcpy(c->upd_tmp[i], src, value_bytes(&g->vals[g->updates[i].next]));
        }
    int rc = 0;
    for (int i = 0; i < g->nupdates; i++) {
        pc_update u = g->updates[i];
        void *dst = c->bound[u.target] ? c->bound[u.target] : c->init[u.target];
        const void *src = c->upd_tmp[i] ? c->upd_tmp[i] : pc_compiled_data(c, u.next);
        if (!dst || !src) { rc = -1; continue; }
        memmove(dst, src, value_bytes(&g->vals[u.target]));
    }
    return rc;
}

/* ---- profile ---- */

void pc_compiled_set_profile(pc_compiled *c, int on) {
    if (!c) return;
    c->prof = on != 0;
    for (int i = 0; i < c->nins; i++) c->ins[i].t = c->ins[i].tmin = 0, c->ins[i].calls = 0;
}

const pc_lowered *pc_compiled_lowered(const pc_compiled *c) { return c ? c->l : NULL; }

void pc_compiled_profile_report(const pc_compiled *c, FILE *f) {
    if (!c) return;
    enum { MAXROWS = 96 };
    const char *names[MAXROWS];
    char store[MAXROWS][48];
    double t[MAXROWS] = {0}, kind_t[5] = {0}, total = 0, mtotal = 0;
    int64_t n[MAXROWS] = {0}, kind_n[5] = {0}, runs = 0;
    int nrows = 0;
    static const char *const kn[5] = {"matmul", "kernel", "call", "copy", "view"};
    for (int i = 0; i < c->nins; i++) {
        const cinsn *ci = &c->ins[i];
        /* per run: the fastest call of each instruction */
        kind_t[ci->kind] += ci->tmin * (double)ci->calls;
        kind_n[ci->kind] += ci->calls;
        total += ci->tmin * (double)ci->calls;
        mtotal += ci->t;
        if (ci->calls > runs) runs = ci->calls;
        const char *name = ci->kind == PC_LI_CALL ? ci->name : kn[ci->kind];
        char sig[48];
        if (ci->kind == PC_LI_MATMUL) { /* matmuls by shape */
            const pc_matmul_desc *d = &ci->li->mm;
            int64_t b = 1;
            for (int k = 0; k < d->rank - 2; k++) b *= d->c_dims[k];
            snprintf(sig, sizeof sig, "mm %lldx%lldx%lld%s%s", (long long)d->a_dims[d->rank - 2],
                     (long long)d->a_dims[d->rank - 1], (long long)d->b_dims[d->rank - 1],
                     d->reduce_batch ? " summed" : b > 1 ? " batched" : "", d->accumulate ? " acc" : "");
            name = sig;
        }
        int r = 0;
        while (r < nrows && strcmp(names[r], name) != 0) r++;
        if (r == nrows) {
            if (nrows == MAXROWS) continue;
            snprintf(store[nrows], sizeof store[nrows], "%s", name);
            names[nrows] = store[nrows];
            nrows++;
        }
        t[r] += ci->tmin * (double)ci->calls;
        n[r] += ci->calls;
    }
    if (!runs) runs = 1;
    fprintf(f, "    profile over %lld runs: %.3f ms per run (sum of each instruction's fastest call; mean %.3f ms)\n",
            (long long)runs, 1e3 * total / (double)runs, 1e3 * mtotal / (double)runs);
    for (int k = 0; k < 4; k++)
        fprintf(f, "      %-8s %6.3f ms  %5.1f%%  (%lld instructions per run)\n", kn[k], 1e3 * kind_t[k] / (double)runs,
                total > 0 ? 100 * kind_t[k] / total : 0.0, (long long)(kind_n[k] / runs));
    for (int a = 0; a < nrows; a++) /* selection sort, largest first */
        for (int b = a + 1; b < nrows; b++)
            if (t[b] > t[a]) {
                double tt = t[a]; t[a] = t[b]; t[b] = tt;
                int64_t nn = n[a]; n[a] = n[b]; n[b] = nn;
                const char *s = names[a]; names[a] = names[b]; names[b] = s;
            }
    for (int r = 0; r < nrows; r++)
        fprintf(f, "        %-28s %6.3f ms  %5.1f%%  x%lld\n", names[r], 1e3 * t[r] / (double)runs,
                total > 0 ? 100 * t[r] / total : 0.0, (long long)(n[r] / runs));
    /* the slowest single instructions */
    enum { NTOP = 12 };
    int top[NTOP], ntop = 0;
    for (int i = 0; i < c->nins; i++) {
        if (ntop == NTOP && c->ins[top[NTOP - 1]].tmin >= c->ins[i].tmin) continue;
        int at = ntop < NTOP ? ntop++ : NTOP - 1;
        top[at] = i;
        for (; at > 0 && c->ins[top[at]].tmin > c->ins[top[at - 1]].tmin; at--) {
            int tt = top[at]; top[at] = top[at - 1]; top[at - 1] = tt;
        }
    }
    for (int k = 0; k < ntop; k++) {
        const cinsn *ci = &c->ins[top[k]];
        const pc_matmul_desc *d = &ci->li->mm;
        fprintf(f, "      %8.1f us  %-8s %%%s", 1e6 * ci->tmin, kn[ci->kind], c->g->vals[ci->li->v].name);
        if (ci->kind == PC_LI_MATMUL)
            fprintf(f, " (rank %d, %lldx%lldx%lld, batch %lld, %s)", d->rank, (long long)d->a_dims[d->rank - 2],
                    (long long)d->a_dims[d->rank - 1], (long long)d->b_dims[d->rank - 1],
                    (long long)(d->rank > 2 ? d->c_dims[0] * (d->rank > 3 ? d->c_dims[1] : 1) : 1),
                    ci->mm ? pc_dnnl_matmul_impl(ci->mm) : ci->small ? "C" : "-");
        fprintf(f, "\n");
    }
}
