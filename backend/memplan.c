/* Memory planning for the instruction IR, and its text dump.
 *
 * Liveness: a buffer lives from the first instruction that touches it to the last (views do not
 * count: their readers do); outputs and update values live to the end. Placement: greedy
 * best-fit by decreasing size (TFLite's "greedy by size"): each buffer takes the smallest gap
 * between the buffers already placed whose lifetimes overlap its own, or goes above them. */
#include "backend/lower.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN 64
static int64_t align_up(int64_t n) { return (n + ALIGN - 1) / ALIGN * ALIGN; }

static void touch(pc_lowered *l, int b, int i) {
    if (b < 0 || l->buf[b].kind != PC_BUF_ARENA) return;
    pc_lbuf *B = &l->buf[b];
    if (B->first < 0 || i < B->first) B->first = i;
    if (i > B->last) B->last = i;
}

static int by_size(const void *a, const void *b, void *arg) {
    const pc_lowered *l = arg;
    const pc_lbuf *x = &l->buf[*(const int *)a], *y = &l->buf[*(const int *)b];
    if (x->bytes != y->bytes) return x->bytes > y->bytes ? -1 : 1;
    if (x->first != y->first) return x->first < y->first ? -1 : 1;
    return *(const int *)a - *(const int *)b;
}
static int by_offset(const void *a, const void *b, void *arg) {
    const pc_lowered *l = arg;
    const pc_lbuf *x = &l->buf[*(const int *)a], *y = &l->buf[*(const int *)b];
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return 0;
}

static bool overlap(const pc_lbuf *a, const pc_lbuf *b) { return !(a->last < b->first || b->last < a->first); }

int pc_memplan(pc_lowered *l, char *err, size_t errlen) {
    /* scratch buffers of C kernels live only during their instruction */
    for (int i = 0; i < l->ninsns; i++) {
        pc_linsn *I = &l->insn[i];
        if (I->kind != PC_LI_CALL || I->scratch <= 0 || I->scratch_buf >= 0) continue;
        if (l->nbufs == l->capbufs) {
            int cap = l->capbufs ? 2 * l->capbufs : 64;
            pc_lbuf *nb = realloc(l->buf, (size_t)cap * sizeof *nb);
            if (!nb) { snprintf(err, errlen, "memplan: out of memory"); return -1; }
            l->buf = nb;
            l->capbufs = cap;
        }
        l->buf[l->nbufs] = (pc_lbuf){.kind = PC_BUF_ARENA, .owner = PC_NONE, .bytes = I->scratch};
        I->scratch_buf = l->nbufs++;
    }
    for (int b = 0; b < l->nbufs; b++) {
        l->buf[b].first = l->buf[b].last = -1;
        l->buf[b].offset = 0;
    }
    for (int i = 0; i < l->ninsns; i++) {
        const pc_linsn *I = &l->insn[i];
        if (I->kind == PC_LI_VIEW) continue;
        for (int k = 0; k < I->nin; k++) touch(l, I->in[k].view.buf, i);
        for (int k = 0; k < I->nout; k++) touch(l, I->out[k].view.buf, i);
        touch(l, I->scratch_buf, i);
    }
    int *order = malloc((size_t)(l->nbufs + 1) * sizeof *order);
    int *conf = malloc((size_t)(l->nbufs + 1) * sizeof *conf);
    int *placed = malloc((size_t)(l->nbufs + 1) * sizeof *placed);
    if (!order || !conf || !placed) {
        free(order), free(conf), free(placed);
        snprintf(err, errlen, "memplan: out of memory");
        return -1;
    }
    int n = 0;
    for (int b = 0; b < l->nbufs; b++) {
        pc_lbuf *B = &l->buf[b];
        if (B->kind != PC_BUF_ARENA) continue;
        if (B->pinned) {
            if (B->first < 0) B->first = 0;
            B->last = l->ninsns;
        }
        if (B->first >= 0) order[n++] = b;
    }
    qsort_r(order, (size_t)n, sizeof *order, by_size, l);
    int64_t arena = 0;
    int np = 0;
    for (int t = 0; t < n; t++) {
        pc_lbuf *B = &l->buf[order[t]];
        int nc = 0;
        for (int p = 0; p < np; p++)
            if (overlap(B, &l->buf[placed[p]])) conf[nc++] = placed[p];
        qsort_r(conf, (size_t)nc, sizeof *conf, by_offset, l);
        int64_t size = align_up(B->bytes), end = 0, best = -1, bestgap = INT64_MAX;
        for (int k = 0; k < nc; k++) {
            const pc_lbuf *Q = &l->buf[conf[k]];
            int64_t gap = Q->offset - end;
            if (gap >= size && gap < bestgap) best = end, bestgap = gap;
            if (Q->offset + align_up(Q->bytes) > end) end = Q->offset + align_up(Q->bytes);
        }
        B->offset = best >= 0 ? best : end;
        if (B->offset + size > arena) arena = B->offset + size;
        placed[np++] = order[t];
    }
    /* peak of simultaneously live bytes (the lower bound) and a check that nothing overlaps */
    int64_t peak = 0;
    for (int i = 0; i <= l->ninsns; i++) {
        int64_t live = 0;
        for (int t = 0; t < n; t++) {
            const pc_lbuf *B = &l->buf[order[t]];
            if (B->first <= i && i <= B->last) live += align_up(B->bytes);
        }
        if (live > peak) peak = live;
    }
    int rc = 0;
    for (int a = 0; a < n && !rc; a++)
        for (int b = a + 1; b < n && !rc; b++) {
            const pc_lbuf *A = &l->buf[order[a]], *B = &l->buf[order[b]];
            if (A->bytes && B->bytes && overlap(A, B) && A->offset < B->offset + B->bytes &&
                B->offset < A->offset + A->bytes) {
                snprintf(err, errlen, "memplan: internal error: buffers %d and %d overlap", order[a], order[b]);
                rc = -1;
            }
        }
    free(order);
    free(conf);
    free(placed);
    l->arena_bytes = arena;
    l->peak_bytes = peak;
    return rc;
}

/* ---- view geometry (shared with lower.c) ---- */

void pc_contig_strides(pc_shape s, int64_t st[PC_MAX_RANK]) {
    int64_t m = 1;
    for (int i = s.rank - 1; i >= 0; i--) {
        st[i] = m;
        m *= s.dim[i];
    }
}

bool pc_view_is_dense(pc_shape s, const int64_t st[PC_MAX_RANK]) {
    int64_t m = 1;
    if (pc_shape_numel(s) == 0) return true;
    for (int i = s.rank - 1; i >= 0; i--) {
        if (s.dim[i] != 1 && st[i] != m) return false;
        m *= s.dim[i];
    }
    return true;
}

/* numpy's no-copy reshape: strides for shape ns over the same elements, or false */
bool pc_reshape_strides(pc_shape os, const int64_t *ost, pc_shape ns, int64_t *nst) {
    int64_t od[PC_MAX_RANK], ostr[PC_MAX_RANK];
    int on = 0, nn = ns.rank;
    for (int i = 0; i < os.rank; i++)
        if (os.dim[i] != 1) {
            od[on] = os.dim[i];
            ostr[on++] = ost[i];
        }
    if (pc_shape_numel(ns) == 0) {
        pc_contig_strides(ns, nst);
        return true;
    }
    int oi = 0, oj = 1, ni = 0, nj = 1;
    while (ni < nn && oi < on) {
        int64_t np = ns.dim[ni], op = od[oi];
        while (np != op) {
            if (np < op) {
                if (nj >= nn) return false;
                np *= ns.dim[nj++];
            } else {
                if (oj >= on) return false;
                op *= od[oj++];
            }
        }
        for (int k = oi; k < oj - 1; k++)
            if (ostr[k] != od[k + 1] * ostr[k + 1]) return false;
        nst[nj - 1] = ostr[oj - 1];
        for (int k = nj - 1; k > ni; k--) nst[k - 1] = nst[k] * ns.dim[k];
        ni = nj++;
        oi = oj++;
    }
    for (int k = ni; k < nn; k++) nst[k] = 1; /* trailing ones */
    return true;
}

/* ---- text dump ---- */

static const char *kind_name(pc_buf_kind k) {
    switch (k) {
    case PC_BUF_INPUT: return "input";
    case PC_BUF_PARAM: return "param";
    case PC_BUF_STATE: return "state";
    case PC_BUF_CONST: return "const";
    default: return "arena";
    }
}

void pc_lref_str(const pc_lowered *l, const pc_lref *r, char *buf, size_t len) {
    size_t es = pc_dtype_size(r->dt);
    int64_t bytes = pc_shape_numel(r->shape) * (int64_t)es;
    if (r->view.buf < 0) { snprintf(buf, len, "none"); return; }
    const pc_lbuf *B = &l->buf[r->view.buf];
    int o;
    if (B->kind == PC_BUF_ARENA)
        o = snprintf(buf, len, "arena+%" PRId64 ":%" PRId64, B->offset + r->view.off * (int64_t)es, bytes);
    else if (r->view.off)
        o = snprintf(buf, len, "%s+%" PRId64, kind_name(B->kind), r->view.off * (int64_t)es);
    else
        o = snprintf(buf, len, "%s", kind_name(B->kind));
    if (!r->view.dense && o > 0 && (size_t)o < len) {
        o += snprintf(buf + o, len - (size_t)o, " strides=[");
        for (int i = 0; i < r->shape.rank && o > 0 && (size_t)o < len; i++)
            o += snprintf(buf + o, len - (size_t)o, "%s%" PRId64, i ? "," : "", r->view.st[i]);
        if (o > 0 && (size_t)o < len) snprintf(buf + o, len - (size_t)o, "]");
    }
}

static void put_ref(pc_strbuf *sb, const pc_lowered *l, const pc_lref *r, bool name) {
    char loc[256];
    pc_lref_str(l, r, loc, sizeof loc);
    if (name && r->v != PC_NONE) pc_sb_printf(sb, "%%%s[%s]", l->g->vals[r->v].name, loc);
    else pc_sb_printf(sb, "[%s]", loc);
}

static void put_type(pc_strbuf *sb, pc_dtype dt, pc_shape s) {
    char sh[96];
    pc_shape_str(s, sh, sizeof sh);
    pc_sb_printf(sb, "%s%s", pc_dtype_name(dt), sh);
}

/* non-default attributes: " {alpha=2, beta=1}" */
static void put_attrs(pc_strbuf *sb, pc_opcode op, const pc_attr *a) {
    const pc_op_info *info = pc_op_get(op);
    int shown = 0;
    for (int i = 0; i < info->nattrs; i++) {
        const pc_attr_spec *s = &info->attrs[i];
        bool dflt = s->kind == PC_ATTR_INT ? a[i].i == (int64_t)s->dflt
                    : s->kind == PC_ATTR_FLOAT ? a[i].f == s->dflt
                                               : a[i].n == 0;
        if (dflt) continue;
        pc_sb_printf(sb, "%s%s=", shown++ ? ", " : " {", s->name);
        if (s->kind == PC_ATTR_INT) pc_sb_printf(sb, "%" PRId64, a[i].i);
        else if (s->kind == PC_ATTR_FLOAT) pc_sb_printf(sb, "%.17g", a[i].f);
        else {
            pc_sb_printf(sb, "[");
            for (int k = 0; k < a[i].n; k++) pc_sb_printf(sb, "%s%" PRId64, k ? "," : "", a[i].ints[k]);
            pc_sb_printf(sb, "]");
        }
    }
    if (shown) pc_sb_printf(sb, "}");
}

static void put_ins(pc_strbuf *sb, const pc_lowered *l, const pc_linsn *I) {
    for (int k = 0; k < I->nin; k++) {
        pc_sb_printf(sb, k ? ", " : " ");
        put_ref(sb, l, &I->in[k], true);
    }
}

static void put_matmul(pc_strbuf *sb, const pc_lowered *l, const pc_linsn *I) {
    const pc_matmul_desc *d = &I->mm;
    int R = d->rank;
    pc_sb_printf(sb, "%%%s = matmul.%s", l->g->vals[I->v].name, I->mm_c ? "c" : "dnnl");
    put_ins(sb, l, I);
    pc_sb_printf(sb, " -> ");
    put_ref(sb, l, &I->out[0], false);
    pc_sb_printf(sb, " (");
    if (R > 2) {
        pc_sb_printf(sb, "batch ");
        for (int i = 0; i < R - 2; i++) pc_sb_printf(sb, "%s%" PRId64, i ? "x" : "", d->c_dims[i]);
        pc_sb_printf(sb, ": ");
    }
    pc_sb_printf(sb, "%" PRId64 "x%" PRId64 "x%" PRId64, d->a_dims[R - 2], d->a_dims[R - 1], d->b_dims[R - 1]);
    if (d->a_strides[R - 2] == 1 && d->a_dims[R - 2] > 1 && d->a_dims[R - 1] > 1) pc_sb_printf(sb, ", a^T");
    if (d->b_strides[R - 2] == 1 && d->b_dims[R - 2] > 1 && d->b_dims[R - 1] > 1) pc_sb_printf(sb, ", b^T");
    if (d->alpha != 1.0f) pc_sb_printf(sb, ", alpha=%g", (double)d->alpha);
    if (d->reduce_batch) pc_sb_printf(sb, ", sum over batch");
    if (d->accumulate) pc_sb_printf(sb, ", accumulate");
    if (d->b_constant) pc_sb_printf(sb, ", b_constant");
    if (I->mm_zero) pc_sb_printf(sb, ", empty");
    pc_sb_printf(sb, ")\n");
}

static void put_kernel(pc_strbuf *sb, const pc_lowered *l, const pc_linsn *I) {
    const pc_graph *g = l->g;
    for (int k = 0; k < I->nout; k++) pc_sb_printf(sb, "%s%%%s", k ? ", " : "", g->vals[I->out[k].v].name);
    pc_sb_printf(sb, " = kernel.k%d", I->group);
    put_ins(sb, l, I);
    pc_sb_printf(sb, " -> ");
    for (int k = 0; k < I->nout; k++) {
        if (k) pc_sb_printf(sb, ", ");
        put_ref(sb, l, &I->out[k], false);
    }
    pc_sb_printf(sb, " ");
    put_type(sb, g->vals[I->v].dtype, g->vals[I->v].shape);
    pc_sb_printf(sb, " {");
    for (int m = 0; m < I->nmembers; m++) {
        const pc_value *x = &g->vals[I->members[m]];
        pc_sb_printf(sb, "%s%%%s = %s", m ? "; " : " ", x->name, pc_op_get(x->op)->name);
        for (int k = 0; k < x->nin; k++) pc_sb_printf(sb, "%s%%%s", k ? ", " : " ", g->vals[x->in[k]].name);
        put_attrs(sb, x->op, x->attr);
    }
    pc_sb_printf(sb, " }\n");
}

char *pc_lowered_print(const pc_lowered *l) {
    const pc_graph *g = l->g;
    pc_strbuf sb = {0};
    int cnt[5] = {0};
    for (int i = 0; i < l->ninsns; i++) cnt[l->insn[i].kind]++;
    pc_sb_printf(&sb,
                 "// lowered @%s: %d instructions (%d matmul, %d kernel, %d call, %d copy, %d view), "
                 "arena %" PRId64 " bytes (peak live %" PRId64 "), %d accumulating matmuls\n",
                 g->name ? g->name : "?", l->ninsns - cnt[PC_LI_VIEW], cnt[PC_LI_MATMUL], cnt[PC_LI_KERNEL],
                 cnt[PC_LI_CALL], cnt[PC_LI_COPY], cnt[PC_LI_VIEW], l->arena_bytes, l->peak_bytes, l->naccumulate);
    for (int i = 0; i < l->ninsns; i++) {
        const pc_linsn *I = &l->insn[i];
        const pc_value *x = &g->vals[I->v];
        switch (I->kind) {
        case PC_LI_MATMUL: put_matmul(&sb, l, I); break;
        case PC_LI_KERNEL: put_kernel(&sb, l, I); break;
        case PC_LI_CALL:
            for (int k = 1; k < I->nout; k++) pc_sb_printf(&sb, "%%%s, ", g->vals[I->out[k - 1].v].name);
            pc_sb_printf(&sb, "%%%s = call.%s", g->vals[I->out[I->nout - 1].v].name,
                         I->call == PC_CALL_MASKED_SOFTMAX ? "causal_softmax"
                         : I->call == PC_CALL_SOFTMAX_GRAD ? (I->aux != PC_NONE ? "causal_softmax_grad" : "softmax_grad")
                         : I->call == PC_CALL_ATTN         ? "causal_attention_probs"
                         : I->call == PC_CALL_ATTN_GRAD    ? (I->aux != PC_NONE ? "causal_attention_probs_grad"
                                                                                : "attention_probs_grad")
                         : I->call == PC_CALL_FLASH        ? "flash_attention"
                         : I->call == PC_CALL_FLASH_GRAD   ? "flash_attention_grad"
                         : I->call == PC_CALL_MUL_SUM      ? "mul_sum_to"
                         : I->call == PC_CALL_RMSNORM_GRAD ? "rmsnorm_grad"
                                                           : pc_op_get(x->op)->name);
            put_ins(&sb, l, I);
            pc_sb_printf(&sb, " -> ");
            for (int k = 0; k < I->nout; k++) {
                if (k) pc_sb_printf(&sb, ", ");
                put_ref(&sb, l, &I->out[k], false);
            }
            pc_sb_printf(&sb, " ");
            if (I->nout > 1) /* each result's type (the flash backward's d k, d v may sum heads) */
                for (int k = 0; k < I->nout; k++) {
                    if (k) pc_sb_printf(&sb, ", ");
                    put_type(&sb, I->out[k].dt, I->out[k].shape);
                }
            else put_type(&sb, x->dtype, x->shape);
            if (I->call == PC_CALL_SOFTMAX_GRAD || I->call == PC_CALL_ATTN || I->call == PC_CALL_ATTN_GRAD ||
                I->call == PC_CALL_FLASH || I->call == PC_CALL_FLASH_GRAD) {
                if (I->alpha != 1.0) pc_sb_printf(&sb, " {alpha=%.17g}", I->alpha);
                if (I->call == PC_CALL_FLASH_GRAD && I->alpha2 != 1.0) pc_sb_printf(&sb, " {grad_alpha=%.17g}", I->alpha2);
            } else {
                put_attrs(&sb, x->op, x->attr);
                if (I->aux != PC_NONE) put_attrs(&sb, g->vals[I->aux].op, g->vals[I->aux].attr);
            }
            if (I->scratch_buf >= 0)
                pc_sb_printf(&sb, " scratch=[arena+%" PRId64 ":%" PRId64 "]", l->buf[I->scratch_buf].offset,
                             l->buf[I->scratch_buf].bytes);
            pc_sb_printf(&sb, "\n");
            break;
        case PC_LI_COPY:
        case PC_LI_VIEW:
            pc_sb_printf(&sb, "%%%s = %s", x->name, I->kind == PC_LI_COPY ? "copy" : "view.");
            if (I->kind == PC_LI_VIEW) pc_sb_printf(&sb, "%s", pc_op_get(x->op)->name);
            put_ins(&sb, l, I);
            pc_sb_printf(&sb, " -> ");
            put_ref(&sb, l, &I->out[0], false);
            pc_sb_printf(&sb, " ");
            put_type(&sb, I->out[0].dt, I->out[0].shape);
            pc_sb_printf(&sb, "\n");
            break;
        }
    }
    return pc_sb_take(&sb);
}
