/* oneDNN 2.6 (C API) matmul primitives: created once, executed many times.
 *
 * c = alpha * op(a) @ op(b) [+ c]  in f32. a and b are described by logical dims and arbitrary
 * (non-negative) element strides, so transposes, leading-dimension padding and broadcast batch dims
 * (size 1 in a or b) need no copies; c is dense row-major.
 *
 * Mapping onto oneDNN:
 *   - a, b: dnnl_memory_desc_init_by_strides (strides of size-1 dims are normalised, see norm_strides);
 *     c: dense row-major. alpha != 1: output scales with mask 0 (applied to the product before the
 *     post-ops, so accumulate gives c = alpha*a@b + c). accumulate: sum post-op with scale 1.
 *   - scratchpad mode `user`: the scratchpad is allocated once in pc_dnnl_matmul_new, so run performs
 *     no allocation (run = set data handles + execute + dnnl_stream_wait).
 *   - b_constant: the primitive is created with weights format `any`. If oneDNN picks a layout different
 *     from b's plain strided one (usually a blocked layout), an internal buffer in that layout and a
 *     reorder primitive are created once in pc_dnnl_matmul_new.
 *       pc_dnnl_matmul_prepare_b(p, b): reorders b into the internal buffer (b may then be freed); when no
 *         reorder is needed it keeps the POINTER b (b must then stay alive and unchanged). It may be called
 *         again to refresh the weights (no allocation). Afterwards run ignores its b argument (may be NULL).
 *       Not prepared: run reorders its b argument on the fly into the internal buffer on every call
 *         (correct, no allocation, but it costs a reorder per call); b must then be non-NULL.
 *   - zero-size problems (a batch dim, M, N or K = 0) create no oneDNN primitive: run does nothing,
 *     except K = 0 without accumulate, where it writes c = 0 (the empty sum).
 *
 * Threads: oneDNN here uses OpenMP (libgomp, pulled in by libdnnl). omp_set_num_threads cannot be linked
 * directly (libgomp is only an indirect dependency: "DSO missing from command line"), so it is looked up
 * with dlsym(RTLD_DEFAULT) in pc_dnnl_new. The thread count is an OpenMP ICV of the CALLING thread, so it
 * is re-applied (only when omp_get_max_threads differs) before creating primitives and in every run:
 * primitives may be created and run from any thread. This changes that thread's OpenMP ICV (process
 * state owned by libgomp; documented side effect).
 * Wait policy: libgomp reads OMP_WAIT_POLICY / OMP_NUM_THREADS / GOMP_SPINCOUNT once, in its load-time
 * constructor, i.e. before main. pc_dnnl_new still does setenv("OMP_WAIT_POLICY", "passive", 0) as the
 * header promises, but that only reaches child processes: for THIS process the variable must be in the
 * environment at start (e.g. main re-executes itself, as the torch baseline script does). Verified with
 * omp_display_env: setenv in main (and even from .preinit_array, because libc's initialiser resets
 * environ afterwards) leaves GOMP_SPINCOUNT at 300000 instead of 0. With threads = 1 the policy is
 * irrelevant (oneDNN runs inline, no pool threads).
 *
 * A pc_dnnl_matmul is not reentrant: run sets data handles on its memory objects. Use one per thread.
 * Errors from run (which has no error buffer in the API) are printed to stderr with the shapes. */
#include "backend/onednn.h"

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include <dlfcn.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pc_dnnl {
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    int threads; /* <= 0: leave OpenMP's default */
    void (*omp_set_num_threads)(int);
    int (*omp_get_max_threads)(void);
};

struct pc_dnnl_matmul {
    pc_dnnl *d;
    char shape[200]; /* "[8,64]x[64,64]^T" for messages */
    char impl[128];
    int zero_size; /* no primitive: some dim is 0 */
    int k_zero;
    int accumulate;
    size_t c_bytes;

    dnnl_primitive_t mm;
    dnnl_memory_t a_mem, b_mem, c_mem, scratch_mem;
    dnnl_exec_arg_t args[4];
    int nargs;

    int b_constant;
    int b_reorder; /* weights layout differs from b's strided layout: internal buffer + reorder */
    int b_prepared;
    const void *b_kept; /* prepared, no reorder: the caller's constant b */
    dnnl_primitive_t reorder;
    dnnl_memory_t b_user_mem; /* b's plain strided layout (reorder source) */
    dnnl_memory_t b_int_mem;  /* internal buffer in the primitive's layout (owned by oneDNN) */
    dnnl_memory_t r_scratch_mem;
    dnnl_exec_arg_t rargs[3];
    int nrargs;
    struct pc_dnnl_wcache *wcache; /* b_int_mem's buffer lives there (pc_dnnl_matmul_share_b) */
    dnnl_memory_desc_t w_md;       /* the reordered layout */
};

typedef struct {
    const void *src;
    dnnl_memory_desc_t md;
    void *buf;
    size_t bytes;
} wc_entry;

struct pc_dnnl_wcache {
    wc_entry *e;
    int n, cap;
};

pc_dnnl_wcache *pc_dnnl_wcache_new(void) { return calloc(1, sizeof(pc_dnnl_wcache)); }

void pc_dnnl_wcache_free(pc_dnnl_wcache *c) {
    if (!c) return;
    for (int i = 0; i < c->n; i++) free(c->e[i].buf);
    free(c->e);
    free(c);
}

size_t pc_dnnl_wcache_bytes(const pc_dnnl_wcache *c) {
    size_t b = 0;
    for (int i = 0; c && i < c->n; i++) b += c->e[i].bytes;
    return b;
}

/* the buffer for (src, md), made on first use (zeroed: first touch now) */
static void *wcache_buf(pc_dnnl_wcache *c, const void *src, const dnnl_memory_desc_t *md) {
    for (int i = 0; i < c->n; i++)
        if (c->e[i].src == src && dnnl_memory_desc_equal(&c->e[i].md, md)) return c->e[i].buf;
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 64;
        wc_entry *e = realloc(c->e, (size_t)cap * sizeof *e);
        if (!e) return NULL;
        c->e = e, c->cap = cap;
    }
    size_t bytes = dnnl_memory_desc_get_size(md), alloc = (bytes + 63) / 64 * 64;
    void *buf = aligned_alloc(64, alloc ? alloc : 64);
    if (!buf) return NULL;
    memset(buf, 0, alloc ? alloc : 64);
    c->e[c->n++] = (wc_entry){src, *md, buf, bytes};
    return buf;
}

static void pc_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void pc_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static const char *st_str(dnnl_status_t st) {
    const char *s = dnnl_status2str(st);
    return s ? s : "unknown status";
}

/* Apply the thread count to the calling thread's OpenMP ICV (no-op when already right). */
static void apply_threads(const pc_dnnl *d) {
    if (d->threads <= 0 || !d->omp_set_num_threads) return;
    if (d->omp_get_max_threads && d->omp_get_max_threads() == d->threads) return;
    d->omp_set_num_threads(d->threads);
}

pc_dnnl *pc_dnnl_new(int threads, char *err, size_t errlen) {
    /* Harmless when already set; reaches child processes (see the header comment of this file). */
    setenv("OMP_WAIT_POLICY", "passive", 0);
    pc_dnnl *d = calloc(1, sizeof *d);
    if (!d) {
        pc_err(err, errlen, "oneDNN: out of memory");
        return NULL;
    }
    d->threads = threads;
    if (threads > 0) {
        const dnnl_version_t *v = dnnl_version();
        if (v && v->cpu_runtime == DNNL_RUNTIME_OMP) {
            /* resolved from libgomp, already loaded as a dependency of libdnnl */
            void *fs = dlsym(RTLD_DEFAULT, "omp_set_num_threads");
            void *fg = dlsym(RTLD_DEFAULT, "omp_get_max_threads");
            if (fs) memcpy(&d->omp_set_num_threads, &fs, sizeof fs);
            if (fg) memcpy(&d->omp_get_max_threads, &fg, sizeof fg);
        }
        if (!d->omp_set_num_threads) {
            /* Only effective if the runtime has not read its environment yet. */
            char buf[16];
            snprintf(buf, sizeof buf, "%d", threads);
            setenv("OMP_NUM_THREADS", buf, 0);
        }
        apply_threads(d);
    }
    dnnl_status_t st = dnnl_engine_create(&d->eng, dnnl_cpu, 0);
    if (st != dnnl_success) {
        pc_err(err, errlen, "oneDNN: dnnl_engine_create(cpu, 0): %s", st_str(st));
        d->eng = NULL;
        pc_dnnl_free(d);
        return NULL;
    }
    st = dnnl_stream_create(&d->stream, d->eng, dnnl_stream_default_flags);
    if (st != dnnl_success) {
        pc_err(err, errlen, "oneDNN: dnnl_stream_create: %s", st_str(st));
        d->stream = NULL;
        pc_dnnl_free(d);
        return NULL;
    }
    return d;
}

void pc_dnnl_version(char *buf, size_t len) {
    const dnnl_version_t *v = dnnl_version();
    if (!v) {
        snprintf(buf, len, "unknown");
        return;
    }
    const char *rt = v->cpu_runtime == DNNL_RUNTIME_OMP   ? "OpenMP"
                     : v->cpu_runtime == DNNL_RUNTIME_TBB ? "TBB"
                     : v->cpu_runtime == DNNL_RUNTIME_SEQ ? "sequential"
                                                          : "other runtime";
    if (v->hash && *v->hash && strcmp(v->hash, "N/A") != 0)
        snprintf(buf, len, "%d.%d.%d (commit %.12s, %s)", v->major, v->minor, v->patch, v->hash, rt);
    else snprintf(buf, len, "%d.%d.%d (%s)", v->major, v->minor, v->patch, rt);
}

void pc_dnnl_free(pc_dnnl *d) {
    if (!d) return;
    if (d->stream) dnnl_stream_destroy(d->stream);
    if (d->eng) dnnl_engine_destroy(d->eng);
    free(d);
}

/* ---- descriptors ------------------------------------------------------------------------------ */

static int fmt_dims(char *buf, size_t len, int rank, const int64_t *dims, const int64_t *strides) {
    size_t n = 0;
    int w = snprintf(buf, len, "[");
    if (w < 0) return -1;
    n += (size_t)w;
    for (int i = 0; i < rank && n < len; i++) {
        w = snprintf(buf + n, len - n, "%s%" PRId64, i ? "," : "", dims[i]);
        if (w < 0) return -1;
        n += (size_t)w;
    }
    if (n < len) {
        const char *suffix = "]";
        if (strides && rank >= 2) {
            if (strides[rank - 1] == 1 || dims[rank - 1] <= 1)
                suffix = "]";
            else if (strides[rank - 2] == 1 || dims[rank - 2] <= 1)
                suffix = "]^T";
            else
                suffix = "](strided)";
        }
        w = snprintf(buf + n, len - n, "%s", suffix);
        if (w < 0) return -1;
        n += (size_t)w;
    }
    return (int)n;
}

static void fmt_shape(char *buf, size_t len, const pc_matmul_desc *m, int rank) {
    char a[90], b[90];
    fmt_dims(a, sizeof a, rank, m->a_dims, m->a_strides);
    fmt_dims(b, sizeof b, rank, m->b_dims, m->b_strides);
    snprintf(buf, len, "%s%s%s", a, "x", b);
}

/* Strides of size-1 dims do not address anything; give them the value a dense layout with the same
 * order of the other dims would have (the largest extent), so that oneDNN recognises plain layouts
 * (e.g. a transposed [1,K] or a broadcast batch dim given stride 0). */
static void norm_strides(int rank, const int64_t *dims, const int64_t *in, dnnl_dims_t out) {
    int64_t ext = 1;
    for (int i = 0; i < rank; i++)
        if (dims[i] > 1 && in[i] * dims[i] > ext) ext = in[i] * dims[i];
    for (int i = 0; i < rank; i++) out[i] = dims[i] == 1 ? ext : in[i];
}

static int validate(const pc_matmul_desc *m, const char *shape, char *err, size_t errlen) {
    int r = m->rank;
    if (m->reduce_batch) {
        pc_err(err, errlen, "oneDNN matmul %s: a sum over the batch is not a oneDNN matmul", shape);
        return -1;
    }
    if (r < 2 || r > PC_MM_MAX_RANK) {
        pc_err(err, errlen, "oneDNN matmul: rank %d outside [2,%d]", r, PC_MM_MAX_RANK);
        return -1;
    }
    for (int i = 0; i < r; i++) {
        if (m->a_dims[i] < 0 || m->b_dims[i] < 0 || m->c_dims[i] < 0) {
            pc_err(err, errlen, "oneDNN matmul %s: negative dim at axis %d", shape, i);
            return -1;
        }
        if (m->a_strides[i] < 0 || m->b_strides[i] < 0) {
            pc_err(err, errlen, "oneDNN matmul %s: negative stride at axis %d (unsupported)", shape, i);
            return -1;
        }
    }
    for (int i = 0; i < r - 2; i++) {
        int64_t a = m->a_dims[i], b = m->b_dims[i], c = m->c_dims[i];
        if ((a != c && a != 1) || (b != c && b != 1) || (c != (a > b ? a : b) && !(c == 0))) {
            pc_err(err, errlen,
                   "oneDNN matmul %s: batch axis %d: a=%" PRId64 " b=%" PRId64 " c=%" PRId64
                   " (each of a, b must equal c or be 1)",
                   shape, i, a, b, c);
            return -1;
        }
    }
    if (m->a_dims[r - 1] != m->b_dims[r - 2]) {
        pc_err(err, errlen, "oneDNN matmul %s: K mismatch (a has %" PRId64 ", b has %" PRId64 ")", shape,
               m->a_dims[r - 1], m->b_dims[r - 2]);
        return -1;
    }
    if (m->c_dims[r - 2] != m->a_dims[r - 2] || m->c_dims[r - 1] != m->b_dims[r - 1]) {
        char c[90];
        fmt_dims(c, sizeof c, r, m->c_dims, NULL);
        pc_err(err, errlen, "oneDNN matmul %s: c dims %s, expected [...,%" PRId64 ",%" PRId64 "]", shape, c,
               m->a_dims[r - 2], m->b_dims[r - 1]);
        return -1;
    }
    if (!isfinite(m->alpha)) {
        pc_err(err, errlen, "oneDNN matmul %s: alpha is not finite", shape);
        return -1;
    }
    return 0;
}

/* ---- creation --------------------------------------------------------------------------------- */

#define CHECK(call, what)                                                                         \
    do {                                                                                          \
        dnnl_status_t st_ = (call);                                                               \
        if (st_ != dnnl_success) {                                                                \
            pc_err(err, errlen, "oneDNN matmul %s: %s: %s", p->shape, what, st_str(st_));         \
            goto fail;                                                                            \
        }                                                                                         \
    } while (0)

static int make_scratch(pc_dnnl_matmul *p, const_dnnl_primitive_desc_t pd, dnnl_memory_t *mem,
                        const char *what, char *err, size_t errlen) {
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    if (!smd || dnnl_memory_desc_get_size(smd) == 0) return 0;
    CHECK(dnnl_memory_create(mem, smd, p->d->eng, DNNL_MEMORY_ALLOCATE), what);
    void *h = NULL;
    CHECK(dnnl_memory_get_data_handle(*mem, &h), what);
    if (h) memset(h, 0, dnnl_memory_desc_get_size(smd)); /* first touch now, not in run */
    return 1;
fail:
    *mem = NULL;
    return -1;
}

pc_dnnl_matmul *pc_dnnl_matmul_new(pc_dnnl *d, const pc_matmul_desc *m, char *err, size_t errlen) {
    if (!d || !m) {
        pc_err(err, errlen, "oneDNN matmul: NULL %s", d ? "descriptor" : "pc_dnnl");
        return NULL;
    }
    char shape[200];
    int rank = m->rank >= 2 && m->rank <= PC_MM_MAX_RANK ? m->rank : 2;
    fmt_shape(shape, sizeof shape, m, rank);
    if (validate(m, shape, err, errlen)) return NULL;

    pc_dnnl_matmul *p = calloc(1, sizeof *p);
    if (!p) {
        pc_err(err, errlen, "oneDNN matmul %s: out of memory", shape);
        return NULL;
    }
    p->d = d;
    memcpy(p->shape, shape, sizeof shape);
    p->accumulate = m->accumulate != 0;
    p->b_constant = m->b_constant != 0;

    int64_t c_elems = 1;
    int any_zero = 0;
    for (int i = 0; i < rank; i++) {
        c_elems *= m->c_dims[i];
        if (m->a_dims[i] == 0 || m->b_dims[i] == 0 || m->c_dims[i] == 0) any_zero = 1;
    }
    p->c_bytes = (size_t)c_elems * sizeof(float);
    if (any_zero) {
        p->zero_size = 1;
        p->k_zero = m->a_dims[rank - 1] == 0 && c_elems > 0;
        snprintf(p->impl, sizeof p->impl, "none (zero-size)");
        return p;
    }

    dnnl_primitive_attr_t attr = NULL, rattr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL, rpd = NULL;

    apply_threads(d);

    dnnl_dims_t ad, as, bd, bs, cd;
    for (int i = 0; i < rank; i++) {
        ad[i] = m->a_dims[i];
        bd[i] = m->b_dims[i];
        cd[i] = m->c_dims[i];
    }
    norm_strides(rank, m->a_dims, m->a_strides, as);
    norm_strides(rank, m->b_dims, m->b_strides, bs);
    dnnl_memory_desc_t a_md, b_md, b_plain_md, c_md;
    dnnl_data_type_t ab_dt = m->bf16 ? dnnl_bf16 : dnnl_f32; /* c is f32 either way */
    CHECK(dnnl_memory_desc_init_by_strides(&a_md, rank, ad, ab_dt, as), "dnnl_memory_desc_init_by_strides(a)");
    CHECK(dnnl_memory_desc_init_by_strides(&b_plain_md, rank, bd, ab_dt, bs),
          "dnnl_memory_desc_init_by_strides(b)");
    static const dnnl_format_tag_t dense[PC_MM_MAX_RANK + 1] = {
        dnnl_format_tag_undef, dnnl_a, dnnl_ab, dnnl_abc, dnnl_abcd, dnnl_abcde, dnnl_abcdef};
    CHECK(dnnl_memory_desc_init_by_tag(&c_md, rank, cd, dnnl_f32, dense[rank]), "dnnl_memory_desc_init_by_tag(c)");
    if (p->b_constant)
        CHECK(dnnl_memory_desc_init_by_tag(&b_md, rank, bd, ab_dt, dnnl_format_tag_any),
              "dnnl_memory_desc_init_by_tag(b, any)");
    else
        b_md = b_plain_md;

    dnnl_matmul_desc_t mmd;
    CHECK(dnnl_matmul_desc_init(&mmd, &a_md, &b_md, NULL, &c_md), "dnnl_matmul_desc_init");
    CHECK(dnnl_primitive_attr_create(&attr), "dnnl_primitive_attr_create");
    CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user),
          "dnnl_primitive_attr_set_scratchpad_mode");
    if (m->alpha != 1.0f) {
        float alpha = m->alpha;
        CHECK(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha), "dnnl_primitive_attr_set_output_scales");
    }
    if (p->accumulate) {
        CHECK(dnnl_post_ops_create(&po), "dnnl_post_ops_create");
        CHECK(dnnl_post_ops_append_sum(po, 1.0f), "dnnl_post_ops_append_sum");
        CHECK(dnnl_primitive_attr_set_post_ops(attr, po), "dnnl_primitive_attr_set_post_ops");
    }
    CHECK(dnnl_primitive_desc_create(&pd, &mmd, attr, d->eng, NULL), "dnnl_primitive_desc_create");
    const char *impl = NULL;
    CHECK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl), "dnnl_query_impl_info_str");
    snprintf(p->impl, sizeof p->impl, "%s", impl ? impl : "?");

    const dnnl_memory_desc_t *w_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    if (!w_md) {
        pc_err(err, errlen, "oneDNN matmul %s: dnnl_query_weights_md returned NULL", p->shape);
        goto fail;
    }
    p->b_reorder = p->b_constant && !dnnl_memory_desc_equal(w_md, &b_plain_md);

    CHECK(dnnl_memory_create(&p->a_mem, &a_md, d->eng, DNNL_MEMORY_NONE), "dnnl_memory_create(a)");
    CHECK(dnnl_memory_create(&p->c_mem, &c_md, d->eng, DNNL_MEMORY_NONE), "dnnl_memory_create(c)");
    if (p->b_reorder) {
        p->w_md = *w_md;
        CHECK(dnnl_memory_create(&p->b_int_mem, w_md, d->eng, DNNL_MEMORY_ALLOCATE), "dnnl_memory_create(b internal)");
        CHECK(dnnl_memory_create(&p->b_user_mem, &b_plain_md, d->eng, DNNL_MEMORY_NONE), "dnnl_memory_create(b)");
        CHECK(dnnl_primitive_attr_create(&rattr), "dnnl_primitive_attr_create(reorder)");
        CHECK(dnnl_primitive_attr_set_scratchpad_mode(rattr, dnnl_scratchpad_mode_user),
              "dnnl_primitive_attr_set_scratchpad_mode(reorder)");
        CHECK(dnnl_reorder_primitive_desc_create(&rpd, &b_plain_md, d->eng, w_md, d->eng, rattr),
              "dnnl_reorder_primitive_desc_create(b)");
        CHECK(dnnl_primitive_create(&p->reorder, rpd), "dnnl_primitive_create(reorder b)");
        p->rargs[0] = (dnnl_exec_arg_t){DNNL_ARG_FROM, p->b_user_mem};
        p->rargs[1] = (dnnl_exec_arg_t){DNNL_ARG_TO, p->b_int_mem};
        p->nrargs = 2;
        int s = make_scratch(p, rpd, &p->r_scratch_mem, "reorder scratchpad", err, errlen);
        if (s < 0) goto fail;
        if (s) p->rargs[p->nrargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->r_scratch_mem};
        p->b_mem = p->b_int_mem;
    } else {
        CHECK(dnnl_memory_create(&p->b_mem, w_md, d->eng, DNNL_MEMORY_NONE), "dnnl_memory_create(b)");
    }
    CHECK(dnnl_primitive_create(&p->mm, pd), "dnnl_primitive_create");
    p->args[0] = (dnnl_exec_arg_t){DNNL_ARG_SRC, p->a_mem};
    p->args[1] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, p->b_mem};
    p->args[2] = (dnnl_exec_arg_t){DNNL_ARG_DST, p->c_mem};
    p->nargs = 3;
    int s = make_scratch(p, pd, &p->scratch_mem, "scratchpad", err, errlen);
    if (s < 0) goto fail;
    if (s) p->args[p->nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->scratch_mem};

    dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_desc_destroy(rpd);
    dnnl_primitive_attr_destroy(attr);
    dnnl_primitive_attr_destroy(rattr);
    dnnl_post_ops_destroy(po);
    return p;

fail:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (rattr) dnnl_primitive_attr_destroy(rattr);
    if (po) dnnl_post_ops_destroy(po);
    pc_dnnl_matmul_free(p);
    return NULL;
}

void pc_dnnl_matmul_free(pc_dnnl_matmul *p) {
    if (!p) return;
    if (p->mm) dnnl_primitive_destroy(p->mm);
    if (p->reorder) dnnl_primitive_destroy(p->reorder);
    if (p->a_mem) dnnl_memory_destroy(p->a_mem);
    if (p->c_mem) dnnl_memory_destroy(p->c_mem);
    if (p->scratch_mem) dnnl_memory_destroy(p->scratch_mem);
    if (p->r_scratch_mem) dnnl_memory_destroy(p->r_scratch_mem);
    if (p->b_user_mem) dnnl_memory_destroy(p->b_user_mem);
    if (p->b_int_mem)
        dnnl_memory_destroy(p->b_int_mem); /* b_mem aliases it */
    else if (p->b_mem)
        dnnl_memory_destroy(p->b_mem);
    free(p);
}

/* ---- execution -------------------------------------------------------------------------------- */

#define RUN_CHECK(call, what)                                                                          \
    do {                                                                                               \
        dnnl_status_t st_ = (call);                                                                    \
        if (st_ != dnnl_success) {                                                                     \
            run_fail(p, err, errlen, what, st_str(st_));                                               \
            return -1;                                                                                 \
        }                                                                                              \
    } while (0)

static void run_fail(const pc_dnnl_matmul *p, char *err, size_t errlen, const char *what, const char *why) {
    if (err)
        pc_err(err, errlen, "oneDNN matmul %s: %s: %s", p->shape, what, why);
    else
        fprintf(stderr, "peftc: oneDNN matmul %s: %s: %s\n", p->shape, what, why);
}

static int reorder_b(pc_dnnl_matmul *p, const void *b, char *err, size_t errlen) {
    apply_threads(p->d);
    RUN_CHECK(dnnl_memory_set_data_handle(p->b_user_mem, (void *)b), "dnnl_memory_set_data_handle(b)");
    RUN_CHECK(dnnl_primitive_execute(p->reorder, p->d->stream, p->nrargs, p->rargs),
              "dnnl_primitive_execute(reorder b)");
    RUN_CHECK(dnnl_stream_wait(p->d->stream), "dnnl_stream_wait(reorder b)");
    return 0;
}

int pc_dnnl_matmul_share_b(pc_dnnl_matmul *p, pc_dnnl_wcache *c, char *err, size_t errlen) {
    if (!p || !c || !p->b_reorder || p->wcache) return 0;
    /* the buffer oneDNN allocated (never touched) goes; the cache's comes at prepare */
    dnnl_memory_t m = NULL;
    dnnl_status_t st = dnnl_memory_create(&m, &p->w_md, p->d->eng, DNNL_MEMORY_NONE);
    if (st != dnnl_success) {
        pc_err(err, errlen, "oneDNN matmul %s: dnnl_memory_create(b shared): %s", p->shape, st_str(st));
        return -1;
    }
    dnnl_memory_destroy(p->b_int_mem);
    p->b_int_mem = p->b_mem = m;
    p->args[1].memory = m;
    p->rargs[1].memory = m;
    p->wcache = c;
    return 0;
}

int pc_dnnl_matmul_prepare_b(pc_dnnl_matmul *p, const void *b, char *err, size_t errlen) {
    if (!p) {
        pc_err(err, errlen, "oneDNN matmul: prepare_b on NULL");
        return -1;
    }
    if (p->zero_size) return 0;
    if (!b) {
        pc_err(err, errlen, "oneDNN matmul %s: prepare_b: b is NULL", p->shape);
        return -1;
    }
    if (p->b_reorder) {
        if (p->wcache) {
            void *buf = wcache_buf(p->wcache, b, &p->w_md);
            if (!buf) {
                pc_err(err, errlen, "oneDNN matmul %s: out of memory for the reordered weights", p->shape);
                return -1;
            }
            RUN_CHECK(dnnl_memory_set_data_handle(p->b_int_mem, buf), "dnnl_memory_set_data_handle(b shared)");
        }
        if (reorder_b(p, b, err, errlen)) return -1;
    } else {
        p->b_kept = b;
    }
    p->b_prepared = 1;
    return 0;
}

int pc_dnnl_matmul_run(pc_dnnl_matmul *p, const void *a, const void *b, float *c) {
    char *err = NULL;
    size_t errlen = 0;
    if (!p) {
        fprintf(stderr, "peftc: oneDNN matmul: run on NULL\n");
        return -1;
    }
    if (p->zero_size) {
        if (p->k_zero && !p->accumulate) {
            if (!c) {
                run_fail(p, err, errlen, "run", "c is NULL");
                return -1;
            }
            memset(c, 0, p->c_bytes);
        }
        return 0;
    }
    if (!a || !c) {
        run_fail(p, err, errlen, "run", !a ? "a is NULL" : "c is NULL");
        return -1;
    }
    apply_threads(p->d);
    if (p->b_reorder) {
        if (!p->b_prepared) {
            if (!b) {
                run_fail(p, err, errlen, "run", "b is NULL and pc_dnnl_matmul_prepare_b was not called");
                return -1;
            }
            if (p->wcache ? pc_dnnl_matmul_prepare_b(p, b, err, errlen) : reorder_b(p, b, err, errlen)) return -1;
        }
    } else {
        const void *bb = p->b_prepared ? p->b_kept : b;
        if (!bb) {
            run_fail(p, err, errlen, "run", "b is NULL");
            return -1;
        }
        RUN_CHECK(dnnl_memory_set_data_handle(p->b_mem, (void *)bb), "dnnl_memory_set_data_handle(b)");
    }
    RUN_CHECK(dnnl_memory_set_data_handle(p->a_mem, (void *)a), "dnnl_memory_set_data_handle(a)");
    RUN_CHECK(dnnl_memory_set_data_handle(p->c_mem, c), "dnnl_memory_set_data_handle(c)");
    RUN_CHECK(dnnl_primitive_execute(p->mm, p->d->stream, p->nargs, p->args), "dnnl_primitive_execute");
    RUN_CHECK(dnnl_stream_wait(p->d->stream), "dnnl_stream_wait");
    return 0;
}

const char *pc_dnnl_matmul_impl(const pc_dnnl_matmul *p) { return p ? p->impl : "(null)"; }
