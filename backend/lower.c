/* Lowering: graph IR -> instruction IR (see backend/lower.h).
 *
 * Decisions per value, made before emission:
 *   - dead values (reaching no output and no update) are not computed;
 *   - scale(matmul) with a single use becomes the matmul's alpha;
 *   - add(X, [scale](matmul)) accumulates the matmul into X's buffer (oneDNN sum post-op) when
 *     nothing reads that buffer afterwards (checked against the positions where instructions
 *     actually run, which fusion moves: a kernel runs at its last member);
 *   - softmax(causal_mask(x)) over the last axis is one C kernel; so is the softmax backward
 *     (backend/lower_match.c has these patterns);
 *   - a scale read only by products aliases its operand and the products carry its alpha;
 *   - elementwise ops are grouped by fuse-elementwise;
 *   - reshape/transpose/broadcast/slice are views (strided aliases), materialised only where a
 *     consumer needs dense data. */
#include "backend/lower.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/lower_internal.h"

static int fail_oom(lctx *c) {
    snprintf(c->err, c->errlen, "lower: out of memory");
    return -1;
}

/* ---- small helpers ---- */

static bool is_leaf(pc_opcode op) {
    return op == PC_OP_input || op == PC_OP_param || op == PC_OP_state || op == PC_OP_const;
}
static bool is_view_op(pc_opcode op) {
    return op == PC_OP_reshape || op == PC_OP_transpose || op == PC_OP_broadcast || op == PC_OP_slice;
}

static pc_lview dense_view(int buf, pc_shape s) {
    pc_lview v = {.buf = buf, .off = 0, .dense = true};
    pc_contig_strides(s, v.st);
    return v;
}

/* ---- buffers and instructions ---- */

static int new_buf(lctx *c, pc_buf_kind kind, pc_val owner, int64_t bytes) {
    pc_lowered *l = c->l;
    if (l->nbufs == l->capbufs) {
        int cap = l->capbufs ? 2 * l->capbufs : 256;
        pc_lbuf *b = realloc(l->buf, (size_t)cap * sizeof *b);
        if (!b) return fail_oom(c);
        l->buf = b;
        l->capbufs = cap;
    }
    l->buf[l->nbufs] = (pc_lbuf){.kind = kind, .owner = owner, .bytes = bytes, .first = -1, .last = -1};
    return l->nbufs++;
}

static pc_linsn *new_insn(lctx *c, pc_li_kind kind, pc_val v, int nin, int nout) {
    pc_lowered *l = c->l;
    if (l->ninsns == l->capinsns) {
        int cap = l->capinsns ? 2 * l->capinsns : 256;
        pc_linsn *n = realloc(l->insn, (size_t)cap * sizeof *n);
        if (!n) { fail_oom(c); return NULL; }
        l->insn = n;
        l->capinsns = cap;
    }
    pc_linsn *I = &l->insn[l->ninsns];
    memset(I, 0, sizeof *I);
    I->kind = kind;
    I->v = v;
    I->nin = nin;
    I->nout = nout;
    I->scratch_buf = -1;
    I->aux = I->aux2 = PC_NONE;
    I->alpha = 1.0;
    I->in = calloc((size_t)(nin ? nin : 1), sizeof *I->in);
    I->out = calloc((size_t)(nout ? nout : 1), sizeof *I->out);
    if (!I->in || !I->out) {
        free(I->in);
        free(I->out);
        fail_oom(c);
        return NULL;
    }
    l->ninsns++;
    return I;
}

static int64_t vbytes(const pc_value *x) { return pc_shape_numel(x->shape) * (int64_t)pc_dtype_size(x->dtype); }

static pc_lref ref_of(const lctx *c, pc_val v) {
    const pc_value *x = &c->g->vals[v];
    return (pc_lref){.v = v, .dt = x->dtype, .shape = x->shape, .view = c->l->view[v]};
}

/* a fresh dense arena buffer holding value v */
static int alloc_value(lctx *c, pc_val v) {
    int b = new_buf(c, PC_BUF_ARENA, v, vbytes(&c->g->vals[v]));
    if (b < 0) return -1;
    c->l->view[v] = dense_view(b, c->g->vals[v].shape);
    if (c->pinned[v]) c->l->buf[b].pinned = true;
    return b;
}

/* copies value v's strided view into a new dense buffer; returns the buffer */
static int emit_copy(lctx *c, pc_val v) {
    const pc_value *x = &c->g->vals[v];
    if (pc_dtype_size(x->dtype) != 4) { /* the copy kernel moves 4-byte elements */
        snprintf(c->err, c->errlen, "%%%s: a strided %s view cannot be materialised", x->name, pc_dtype_name(x->dtype));
        return -1;
    }
    int b = new_buf(c, PC_BUF_ARENA, v, vbytes(x));
    if (b < 0) return -1;
    pc_linsn *I = new_insn(c, PC_LI_COPY, v, 1, 1);
    if (!I) return -1;
    I->in[0] = ref_of(c, v);
    I->out[0] = (pc_lref){.v = v, .dt = x->dtype, .shape = x->shape, .view = dense_view(b, x->shape)};
    return b;
}

/* a dense reference to v, materialising it once if its view is strided */
static int dense_ref(lctx *c, pc_val v, pc_lref *r) {
    *r = ref_of(c, v);
    if (r->view.dense) return 0;
    if (c->mat[v] < 0 && (c->mat[v] = emit_copy(c, v)) < 0) return -1;
    r->view = dense_view(c->mat[v], r->shape);
    return 0;
}

/* ---- analysis ---- */

static void mark_live(lctx *c) {
    const pc_graph *g = c->g;
    bool *live = c->l->live;
    for (int i = 0; i < g->noutputs; i++) live[g->outputs[i]] = true;
    for (int i = 0; i < g->nupdates; i++) live[g->updates[i].target] = live[g->updates[i].next] = true;
    for (pc_val v = c->n - 1; v >= 0; v--)
        if (live[v])
            for (int k = 0; k < g->vals[v].nin; k++) live[g->vals[v].in[k]] = true;
    for (pc_val v = 0; v < c->n; v++)
        if (live[v])
            for (int k = 0; k < g->vals[v].nin; k++) c->nuse[g->vals[v].in[k]]++;
    c->ustart[0] = 0;
    for (pc_val v = 0; v < c->n; v++) c->ustart[v + 1] = c->ustart[v] + c->nuse[v];
    int *fill = c->mat; /* scratch: mat is initialised later */
    for (pc_val v = 0; v < c->n; v++) fill[v] = 0;
    for (pc_val v = 0; v < c->n; v++)
        if (live[v])
            for (int k = 0; k < g->vals[v].nin; k++) {
                pc_val o = g->vals[v].in[k];
                c->users[c->ustart[o] + fill[o]++] = v;
            }
    for (int i = 0; i < g->noutputs; i++) c->pinned[g->outputs[i]] = true;
    for (int i = 0; i < g->nupdates; i++) c->pinned[g->updates[i].next] = true;
}


/* the chain from X through reshapes to the value that last wrote its buffer; PC_NONE if the
 * chain passes through anything else or ends at a leaf */
static pc_val write_source(const lctx *c, pc_val x) {
    const pc_graph *g = c->g;
    while (g->vals[x].op == PC_OP_reshape && c->kind[x] == D_VIEW) x = g->vals[x].in[0];
    if (is_leaf(g->vals[x].op) || c->kind[x] == D_VIEW || c->kind[x] == D_ABSORBED || c->kind[x] == D_DEAD ||
        c->kind[x] == D_SCALED_ALIAS)
        return PC_NONE;
    return x;
}

static void compute_roots(lctx *c) {
    const pc_graph *g = c->g;
    for (pc_val v = 0; v < c->n; v++) {
        c->root[v] = v;
        if (c->kind[v] == D_VIEW || c->kind[v] == D_SCALED_ALIAS) c->root[v] = c->root[g->vals[v].in[0]];
        else if (c->kind[v] == D_MM_ACC) c->root[v] = c->root[c->accx[v]];
    }
}

static void classify(lctx *c) {
    const pc_graph *g = c->g;
    for (pc_val v = 0; v < c->n; v++) {
        const pc_value *x = &g->vals[v];
        if (!c->l->live[v]) c->kind[v] = D_DEAD;
        else if (is_leaf(x->op)) c->kind[v] = D_LEAF;
        else if (is_view_op(x->op)) c->kind[v] = D_VIEW;
        else if (x->op == PC_OP_matmul && x->dtype == PC_F32) c->kind[v] = D_MATMUL;
        else if (pc_fusable_op(x->op)) c->kind[v] = D_GROUP;
        else c->kind[v] = D_CALL;
        c->absorber[v] = PC_NONE;
    }
    /* scale(matmul) -> alpha; also through a reshape (a matmul's result is dense, so the
     * product can write the scale's shape directly: LoKr's fused Kronecker product, passes/kron.c) */
    for (pc_val v = 0; v < c->n; v++) {
        const pc_value *x = &g->vals[v];
        if (c->kind[v] != D_GROUP || x->op != PC_OP_scale || x->dtype != PC_F32 || x->attr[1].f != 0.0) continue;
        pc_val m = x->in[0], view = PC_NONE;
        if (g->vals[m].op == PC_OP_reshape && c->kind[m] == D_VIEW && single_use(c, m)) view = m, m = g->vals[m].in[0];
        if (c->kind[m] != D_MATMUL || !single_use(c, m)) continue;
        c->kind[v] = D_MM_SCALE;
        c->mmv[v] = m;
        c->alpha[v] = x->attr[0].f;
        c->kind[m] = D_ABSORBED;
        c->absorber[m] = v;
        if (view != PC_NONE) c->kind[view] = D_ABSORBED, c->absorber[view] = v;
    }
    /* add(X, Y) with Y a matmul (or a scaled one) of the same shape -> accumulate into X */
    for (pc_val v = 0; v < c->n; v++) {
        const pc_value *x = &g->vals[v];
        if (c->kind[v] != D_GROUP || x->op != PC_OP_add || x->dtype != PC_F32) continue;
        for (int side = 1; side >= 0; side--) {
            pc_val y = x->in[side], xx = x->in[1 - side];
            if (y == xx || !single_use(c, y) || !pc_shape_eq(g->vals[y].shape, x->shape) ||
                !pc_shape_eq(g->vals[xx].shape, x->shape))
                continue;
            pc_val m;
            double alpha = 1.0;
            if (c->kind[y] == D_MATMUL) m = y;
            else if (c->kind[y] == D_MM_SCALE) m = c->mmv[y], alpha = c->alpha[y];
            else continue;
            if (write_source(c, xx) == PC_NONE) continue;
            c->kind[v] = D_MM_ACC;
            c->mmv[v] = m;
            c->alpha[v] = alpha;
            c->accx[v] = xx;
            c->kind[y] = D_ABSORBED;
            c->absorber[y] = v;
            if (m != y) c->absorber[m] = v;
            break;
        }
    }
    /* softmax(causal_mask(x)) over the last axis */
    for (pc_val v = 0; v < c->n; v++) {
        const pc_value *x = &g->vals[v];
        if (c->kind[v] != D_CALL || x->op != PC_OP_softmax) continue;
        pc_val m = x->in[0];
        if (g->vals[m].op != PC_OP_causal_mask || c->kind[m] != D_CALL || !single_use(c, m)) continue;
        if (pc_norm_axis(x->attr[0].i, x->shape.rank) != x->shape.rank - 1) continue;
        c->kind[v] = D_MSOFTMAX;
        c->mmv[v] = m;
        c->kind[m] = D_ABSORBED;
        c->absorber[m] = v;
    }
    for (pc_val v = 0; v < c->n; v++) pc_lower_match_batch_sum(c, v);
    for (pc_val v = 0; v < c->n; v++) pc_lower_match_mul_sum(c, v);
    for (pc_val v = 0; v < c->n; v++) pc_lower_match_rmsnorm_grad(c, v);
    for (pc_val v = 0; v < c->n; v++) pc_lower_match_softmax_grad(c, v);
    for (pc_val v = 0; v < c->n; v++) pc_lower_match_attention(c, v);
    for (pc_val v = 0; v < c->n; v++) pc_lower_match_flash(c, v);
    for (pc_val v = 0; v < c->n; v++) pc_lower_match_operand_scale(c, v);
}

/* where the instruction computing v runs */
static pc_val run_pos(const lctx *c, pc_val v) {
    while (c->kind[v] == D_ABSORBED) v = c->absorber[v];
    if (c->kind[v] == D_GROUP && c->l->fusion.group[v] >= 0) return c->l->fusion.last[c->l->fusion.group[v]];
    return v;
}

/* reverts an accumulation that is not safe; returns true if v's accumulation is fine */
static bool acc_safe(const lctx *c, pc_val v) {
    const pc_graph *g = c->g;
    pc_val r = c->root[v], src = write_source(c, c->accx[v]);
    if (src == PC_NONE || is_leaf(g->vals[r].op)) return false;
    /* the matmul must not read the buffer it accumulates into */
    pc_val m = c->mmv[v];
    for (int k = 0; k < 2; k++)
        if (c->root[g->vals[m].in[k]] == r) return false;
    for (pc_val w = 0; w < v; w++) {
        if (c->root[w] != r || c->kind[w] == D_DEAD) continue;
        if (c->pinned[w]) return false;
        if (c->kind[w] == D_MM_ACC && w > src) return false; /* another write since X */
        for (int k = c->ustart[w]; k < c->ustart[w + 1]; k++) {
            pc_val u = c->users[k];
            if (u == v) continue;
            if (c->kind[u] == D_VIEW ? u > v : run_pos(c, u) >= v) return false;
        }
    }
    return true;
}

static void revert_acc(lctx *c, pc_val v) {
    const pc_graph *g = c->g;
    pc_val y = g->vals[v].in[0] == c->accx[v] ? g->vals[v].in[1] : g->vals[v].in[0];
    pc_val m = c->mmv[v];
    c->kind[v] = D_GROUP;
    if (y == m) {
        c->kind[m] = D_MATMUL;
        c->absorber[m] = PC_NONE;
    } else {
        c->kind[y] = D_MM_SCALE;
        c->absorber[y] = PC_NONE;
        c->absorber[m] = y;
    }
}

static int run_fusion(lctx *c) {
    bool *ex = calloc((size_t)c->n + 1, sizeof *ex);
    if (!ex) return fail_oom(c);
    for (pc_val v = 0; v < c->n; v++) /* bf16 conversions run as C kernels (the LLVM kernels are f32/i32) */
        ex[v] = c->kind[v] != D_GROUP || c->g->vals[v].dtype == PC_BF16 ||
                (c->g->vals[v].nin > 0 && c->g->vals[c->g->vals[v].in[0]].dtype == PC_BF16);
    pc_fusion_free(&c->l->fusion);
    int rc = pc_fuse_elementwise(c->g, ex, c->l->live, &c->l->fusion, c->err, c->errlen);
    free(ex);
    return rc;
}

/* fusion and accumulation interact (a kernel runs late); iterate until every accumulation is safe */
static int plan(lctx *c) {
    for (int iter = 0; iter < 64; iter++) {
        compute_roots(c);
        if (run_fusion(c)) return -1;
        bool changed = false;
        for (pc_val v = 0; v < c->n; v++)
            if (c->kind[v] == D_MM_ACC && !acc_safe(c, v)) {
                revert_acc(c, v);
                changed = true;
                break; /* one at a time: reverting can make others safe */
            }
        if (!changed) return 0;
    }
    /* give up on accumulation entirely */
    for (pc_val v = 0; v < c->n; v++)
        if (c->kind[v] == D_MM_ACC) revert_acc(c, v);
    compute_roots(c);
    return run_fusion(c);
}


/* ---- emission ---- */

static int emit_leaf(lctx *c, pc_val v) {
    const pc_value *x = &c->g->vals[v];
    pc_buf_kind k = x->op == PC_OP_input ? PC_BUF_INPUT
                    : x->op == PC_OP_param ? PC_BUF_PARAM
                    : x->op == PC_OP_state ? PC_BUF_STATE
                                           : PC_BUF_CONST;
    int b = new_buf(c, k, v, vbytes(x));
    if (b < 0) return -1;
    c->l->view[v] = dense_view(b, x->shape);
    return 0;
}

/* a pinned value must be dense (pc_compiled_data returns one pointer) */
static int pin_value(lctx *c, pc_val v) {
    pc_lview *vw = &c->l->view[v];
    if (!vw->dense) {
        int b = emit_copy(c, v);
        if (b < 0) return -1;
        *vw = dense_view(b, c->g->vals[v].shape);
    }
    if (c->l->buf[vw->buf].kind == PC_BUF_ARENA) c->l->buf[vw->buf].pinned = true;
    return 0;
}

static int emit_view(lctx *c, pc_val v) {
    const pc_graph *g = c->g;
    const pc_value *x = &g->vals[v];
    pc_val o = x->in[0];
    pc_shape os = g->vals[o].shape;
    pc_lview ov = c->l->view[o], nv = {.buf = ov.buf, .off = ov.off};
    switch (x->op) {
    case PC_OP_reshape:
        if (ov.dense) pc_contig_strides(x->shape, nv.st);
        else if (!pc_reshape_strides(os, ov.st, x->shape, nv.st)) {
            if (c->mat[o] < 0 && (c->mat[o] = emit_copy(c, o)) < 0) return -1;
            nv = dense_view(c->mat[o], x->shape);
        }
        break;
    case PC_OP_transpose:
        for (int i = 0; i < x->shape.rank; i++) nv.st[i] = ov.st[x->attr[0].ints[i]];
        break;
    case PC_OP_broadcast:
        for (int i = 0; i < x->shape.rank; i++) {
            int j = i - (x->shape.rank - os.rank);
            nv.st[i] = (j < 0 || os.dim[j] == 1) ? 0 : ov.st[j];
        }
        break;
    case PC_OP_slice: {
        int64_t ax = pc_norm_axis(x->attr[0].i, os.rank);
        memcpy(nv.st, ov.st, sizeof nv.st);
        if (pc_shape_numel(x->shape) > 0) nv.off += x->attr[1].i * ov.st[ax];
        break;
    }
    default:
        snprintf(c->err, c->errlen, "lower: %s is not a view", pc_op_get(x->op)->name);
        return -1;
    }
    nv.dense = pc_view_is_dense(x->shape, nv.st);
    c->l->view[v] = nv;
    pc_linsn *I = new_insn(c, PC_LI_VIEW, v, 1, 1);
    if (!I) return -1;
    I->in[0] = ref_of(c, o);
    I->out[0] = ref_of(c, v);
    /* a strided output is copied right away, so that its source need not live to the end */
    return c->pinned[v] ? pin_value(c, v) : 0;
}

/* v shares its operand's buffer and view (match_operand_scale: its readers apply the alpha) */
static int emit_alias(lctx *c, pc_val v) {
    pc_val o = c->g->vals[v].in[0];
    c->l->view[v] = c->l->view[o];
    pc_linsn *I = new_insn(c, PC_LI_VIEW, v, 1, 1);
    if (!I) return -1;
    I->in[0] = ref_of(c, o);
    I->out[0] = ref_of(c, v);
    return 0;
}

static int need_mem(lctx *c, pc_val user, pc_val o) {
    if (c->l->view[o].buf >= 0) return 0;
    snprintf(c->err, c->errlen, "lower: internal error: operand %%%s of %%%s is not in memory", c->g->vals[o].name,
             c->g->vals[user].name);
    return -1;
}

static int emit_kernel(lctx *c, int gid) {
    const pc_graph *g = c->g;
    const pc_fusion *f = &c->l->fusion;
    pc_val last = f->last[gid];
    int nm = f->nmembers[gid];
    pc_val *mem = malloc((size_t)nm * sizeof *mem);
    int *idx = malloc((size_t)(last + 1) * sizeof *idx); /* member -> insn index */
    pc_kernel_desc *kd = calloc(1, sizeof *kd);
    pc_val ins[PC_K_MAX_IN], outs[PC_K_MAX_OUT];
    int nins = 0, nouts = 0, k = 0;
    if (!mem || !idx || !kd) goto oom;
    for (pc_val v = 0; v <= last; v++) {
        idx[v] = -1;
        if (f->group[v] == gid) idx[v] = k, mem[k++] = v;
    }
    pc_shape S = g->vals[last].shape;
    kd->rank = S.rank;
    for (int i = 0; i < S.rank; i++) kd->dim[i] = S.dim[i];
    for (int m = 0; m < nm; m++) {
        const pc_value *x = &g->vals[mem[m]];
        pc_kinsn *K = &kd->insn[m];
        K->op = x->op;
        K->nin = x->nin;
        K->dtype = x->dtype;
        memcpy(K->attr, x->attr, sizeof K->attr);
        for (int t = 0; t < x->nin; t++) {
            pc_val o = x->in[t];
            if (o <= last && idx[o] >= 0) { K->in[t] = -idx[o] - 1; continue; }
            int at = 0;
            while (at < nins && ins[at] != o) at++;
            if (at == nins) {
                if (nins == PC_K_MAX_IN || need_mem(c, mem[m], o)) goto bad;
                ins[nins++] = o;
                const pc_value *ox = &g->vals[o];
                pc_kinput *ki = &kd->input[at];
                ki->dtype = ox->dtype;
                for (int i = 0; i < S.rank; i++) {
                    int j = i - (S.rank - ox->shape.rank);
                    ki->stride[i] = (j < 0 || ox->shape.dim[j] == 1) ? 0 : c->l->view[o].st[j];
                }
            }
            K->in[t] = at;
        }
        bool out = c->pinned[mem[m]];
        for (int u = c->ustart[mem[m]]; u < c->ustart[mem[m] + 1] && !out; u++)
            out = f->group[c->users[u]] != gid;
        if (out) {
            if (nouts == PC_K_MAX_OUT) goto bad;
            kd->output[nouts] = m;
            outs[nouts++] = mem[m];
        }
    }
    kd->ninputs = nins;
    kd->ninsns = nm;
    kd->noutputs = nouts;
    free(idx);
    idx = NULL;
    pc_linsn *I = new_insn(c, PC_LI_KERNEL, last, nins, nouts);
    if (!I) goto fail;
    I->kd = kd;
    I->group = gid;
    I->members = mem;
    I->nmembers = nm;
    for (int i = 0; i < nins; i++) I->in[i] = ref_of(c, ins[i]);
    for (int i = 0; i < nouts; i++) {
        if (alloc_value(c, outs[i]) < 0) return -1;
        I->out[i] = ref_of(c, outs[i]);
    }
    return 0;
bad:
    if (!c->err[0]) snprintf(c->err, c->errlen, "lower: internal error: fused group of %%%s exceeds the kernel limits", g->vals[last].name);
    goto fail;
oom:
    fail_oom(c);
fail:
    free(mem);
    free(idx);
    free(kd);
    return -1;
}

/* matrix axes (rM, rK) of a view usable by oneDNN: row- or column-major, strides normalised
 * for size-1 axes */
static bool mat_layout(pc_shape s, int64_t *st, int rM, int rK) {
    int64_t M = s.dim[rM], K = s.dim[rK];
    if (M == 1) st[rM] = st[rK] == 1 ? K : 1;
    if (K == 1) st[rK] = st[rM] == 1 ? M : 1;
    if (M == 1 && K == 1) st[rM] = st[rK] = 1;
    return (st[rK] == 1 && st[rM] >= K) || (st[rM] == 1 && st[rK] >= M);
}

/* one operand of a matmul as desc dims/strides of rank R (batch broadcast as dims 1) */
static void mm_operand(const pc_lref *r, int tr, int R, int64_t *dims, int64_t *strides) {
    pc_shape s = r->shape;
    int64_t st[PC_MAX_RANK];
    memcpy(st, r->view.st, sizeof st);
    int a0 = s.rank - 2, a1 = s.rank - 1; /* stored axes */
    int rM = tr ? a1 : a0, rK = tr ? a0 : a1;
    mat_layout(s, st, rM, rK);
    dims[R - 2] = s.dim[rM];
    dims[R - 1] = s.dim[rK];
    strides[R - 2] = st[rM];
    strides[R - 1] = st[rK];
    int64_t ext = 1;
    for (int i = R - 2; i < R; i++)
        if (dims[i] * strides[i] > ext) ext = dims[i] * strides[i];
    for (int i = R - 3; i >= 0; i--) {
        int j = i - (R - s.rank);
        dims[i] = j < 0 ? 1 : s.dim[j];
        if (dims[i] > 1 && st[j] == 0) dims[i] = 1;
        if (dims[i] == 1) strides[i] = ext;
        else {
            strides[i] = st[j];
            if (dims[i] * strides[i] > ext) ext = dims[i] * strides[i];
        }
    }
}

static bool is_update_target(const pc_graph *g, pc_val v) {
    for (int i = 0; i < g->nupdates; i++)
        if (g->updates[i].target == v) return true;
    return false;
}

static int emit_matmul(lctx *c, pc_val v) {
    const pc_graph *g = c->g;
    int kind = c->kind[v];
    pc_val m = kind == D_MATMUL ? v : c->mmv[v];
    const pc_value *x = &g->vals[m];
    int ta = x->attr[0].i != 0, tb = x->attr[1].i != 0;
    pc_lref ra, rb;
    double op_alpha = 1.0;
    for (int t = 0; t < 2; t++) {
        pc_val o = x->in[t];
        op_alpha *= pc_lower_operand_alpha(c, o);
        if (need_mem(c, m, o)) return -1;
        pc_lref r = ref_of(c, o);
        int tr = t == 0 ? ta : tb, a0 = r.shape.rank - 2, a1 = r.shape.rank - 1;
        int64_t st[PC_MAX_RANK];
        memcpy(st, r.view.st, sizeof st);
        bool ok = mat_layout(r.shape, st, tr ? a1 : a0, tr ? a0 : a1);
        for (int i = 0; i < a0 && ok; i++) ok = !(r.shape.dim[i] > 1 && st[i] == 0); /* no stride-0 batch */
        if (!ok && dense_ref(c, o, &r)) return -1;
        if (t == 0) ra = r;
        else rb = r;
    }
    pc_linsn *I = new_insn(c, PC_LI_MATMUL, v, 2, 1);
    if (!I) return -1;
    if (kind == D_MM_ACC) {
        c->l->view[v] = c->l->view[c->accx[v]];
        c->l->naccumulate++;
        if (c->pinned[v]) c->l->buf[c->l->view[v].buf].pinned = true;
    } else if (alloc_value(c, v) < 0) return -1;
    I->in[0] = ra;
    I->in[1] = rb;
    I->out[0] = ref_of(c, v);
    pc_matmul_desc *d = &I->mm;
    pc_shape os = g->vals[m].shape; /* the product's: a D_MM_SUM's result is its [M, N] */
    int R = os.rank;
    d->rank = R;
    mm_operand(&ra, ta, R, d->a_dims, d->a_strides);
    mm_operand(&rb, tb, R, d->b_dims, d->b_strides);
    for (int i = 0; i < R; i++) d->c_dims[i] = os.dim[i];
    d->alpha = (float)((kind == D_MATMUL ? 1.0 : c->alpha[v]) * op_alpha);
    d->accumulate = kind == D_MM_ACC;
    d->reduce_batch = kind == D_MM_SUM;
    d->bf16 = ra.dt == PC_BF16; /* both operands (the verifier's rule); c is f32 */
    /* weights shared by every batch: fold the batch axes of a into M when its layout allows */
    bool bbatch = false;
    for (int i = 0; i < R - 2; i++) bbatch = bbatch || d->b_dims[i] != 1;
    if (R > 2 && !bbatch && !ta && !d->reduce_batch) {
        pc_shape as = ra.shape;
        int64_t m_all = 1, inner = -1, sM = d->a_strides[R - 2];
        bool ok = true;
        for (int i = as.rank - 2; i >= 0 && ok; i--) { /* axes [0 .. rank-2] merge into one */
            if (as.dim[i] == 1) continue;
            if (inner < 0) sM = ra.view.st[i];
            else if (ra.view.st[i] != inner) ok = false;
            inner = ra.view.st[i] * as.dim[i];
            m_all *= as.dim[i];
        }
        if (ok && (d->a_strides[R - 1] == 1 || m_all == d->a_dims[R - 2])) {
            d->rank = 2;
            d->a_dims[0] = m_all, d->a_dims[1] = d->a_dims[R - 1];
            d->a_strides[0] = sM, d->a_strides[1] = d->a_strides[R - 1];
            d->b_dims[0] = d->b_dims[R - 2], d->b_dims[1] = d->b_dims[R - 1];
            d->b_strides[0] = d->b_strides[R - 2], d->b_strides[1] = d->b_strides[R - 1];
            d->c_dims[0] = m_all, d->c_dims[1] = os.dim[R - 1];
        }
    }
    int64_t work = 1;
    for (int i = 0; i < d->rank; i++) work *= d->c_dims[i];
    I->mm_zero = work == 0 || d->a_dims[d->rank - 1] == 0;
    int bb = rb.view.buf;
    const pc_lbuf *B = &c->l->buf[bb];
    d->b_constant = B->kind == PC_BUF_CONST ||
                    (B->kind == PC_BUF_PARAM && (g->vals[B->owner].flags & PC_FROZEN) && !is_update_target(g, B->owner));
    return 0;
}

/* whether v may write its result over operand o's buffer: o owns a dense arena buffer of v's
 * size that nothing else shares (no views, no accumulation into it), o is not an output or an
 * update, and every other user of o runs before v */
static bool overwritable(const lctx *c, pc_val o, pc_val v) {
    const pc_graph *g = c->g;
    const pc_lview *w = &c->l->view[o];
    if (w->buf < 0 || !w->dense || w->off != 0 || c->pinned[o] || c->pinned[v] || c->root[o] != o) return false;
    const pc_lbuf *B = &c->l->buf[w->buf];
    if (B->kind != PC_BUF_ARENA || B->owner != o || B->bytes != vbytes(&g->vals[v]) || c->mat[o] >= 0) return false;
    if (g->vals[o].dtype != g->vals[v].dtype) return false;
    for (pc_val u = 0; u < c->n; u++)
        if (u != o && c->root[u] == o) return false;
    for (int k = c->ustart[o]; k < c->ustart[o + 1]; k++) {
        pc_val u = c->users[k];
        if (u != v && (c->kind[u] == D_VIEW || run_pos(c, u) >= v)) return false;
    }
    return true;
}

/* v, just allocated, read only through a transpose that keeps the last axis (the attention
 * kernels' [.., H, S, D] results, read as [.., S, H, D]): laid out in the transpose's order, so
 * that the transpose is dense and the reshape after it no copy. For kernels that write through
 * their results' strides. */
static void transposed_layout(lctx *c, pc_val v) {
    const pc_graph *g = c->g;
    if (!single_use(c, v) || c->ustart[v + 1] <= c->ustart[v]) return;
    pc_val t = c->users[c->ustart[v]];
    const pc_value *tx = &g->vals[t];
    int R = tx->shape.rank;
    if (tx->op != PC_OP_transpose || c->kind[t] != D_VIEW || tx->attr[0].ints[R - 1] != R - 1) return;
    int64_t st[PC_MAX_RANK];
    pc_contig_strides(tx->shape, st);
    pc_lview *w = &c->l->view[v];
    for (int i = 0; i < R; i++) w->st[tx->attr[0].ints[i]] = st[i];
    w->dense = pc_view_is_dense(g->vals[v].shape, w->st);
}

static int emit_call(lctx *c, pc_val v) {
    const pc_graph *g = c->g;
    const pc_value *x = &g->vals[v];
    pc_call_form f;
    pc_lower_call_form(c, v, &f);
    pc_lref *refs = malloc((size_t)(f.nin ? f.nin : 1) * sizeof *refs);
    if (!refs) return fail_oom(c);
    for (int k = 0; k < f.nin; k++) {
        pc_val o = f.ins[k];
        if (need_mem(c, v, o)) { free(refs); return -1; }
        if (k >= f.nin - f.nstrided) refs[k] = ref_of(c, o);
        else if (dense_ref(c, o, &refs[k])) { free(refs); return -1; }
    }
    pc_linsn *I = new_insn(c, PC_LI_CALL, v, f.nin, f.nout);
    if (!I) { free(refs); return -1; }
    memcpy(I->in, refs, (size_t)f.nin * sizeof *refs);
    free(refs);
    I->call = f.ck;
    I->aux = f.aux, I->alpha = f.alpha;
    I->aux2 = f.aux2, I->alpha2 = f.alpha2;
    I->outmask = f.outmask;
    if (f.ck == PC_CALL_OP && x->op == PC_OP_cross_entropy_grad && overwritable(c, x->in[0], v)) {
        /* d logits over the logits (the kernel reads each row before writing it) */
        c->l->view[v] = c->l->view[x->in[0]];
        c->l->buf[c->l->view[v].buf].owner = v;
        I->out[0] = ref_of(c, v);
        return 0;
    }
    for (int k = 0; k < f.nout; k++) {
        if (alloc_value(c, f.out[k]) < 0) return -1;
        if (f.ck == PC_CALL_FLASH || f.ck == PC_CALL_FLASH_GRAD) transposed_layout(c, f.out[k]);
        I->out[k] = ref_of(c, f.out[k]);
    }
    return 0;
}

static int emit_all(lctx *c) {
    const pc_graph *g = c->g;
    for (pc_val v = 0; v < c->n; v++) {
        int rc = 0;
        switch (c->kind[v]) {
        case D_DEAD: case D_ABSORBED: continue;
        case D_LEAF: rc = emit_leaf(c, v); break;
        case D_VIEW: rc = emit_view(c, v); break;
        case D_SCALED_ALIAS: rc = emit_alias(c, v); break;
        case D_GROUP: {
            int gid = c->l->fusion.group[v];
            if (gid < 0) rc = emit_call(c, v);
            else if (c->l->fusion.last[gid] == v) rc = emit_kernel(c, gid);
            break;
        }
        case D_MATMUL: case D_MM_SCALE: case D_MM_ACC: case D_MM_SUM: rc = emit_matmul(c, v); break;
        default: rc = emit_call(c, v); break;
        }
        if (rc) return -1;
    }
    /* outputs and update values: dense and alive to the end */
    for (int i = 0; i < g->noutputs; i++)
        if (pin_value(c, g->outputs[i])) return -1;
    for (int i = 0; i < g->nupdates; i++)
        if (pin_value(c, g->updates[i].next)) return -1;
    return 0;
}

void pc_lowered_free(pc_lowered *l) {
    if (!l) return;
    for (int i = 0; i < l->ninsns; i++) {
        free(l->insn[i].in);
        free(l->insn[i].out);
        free(l->insn[i].kd);
        free(l->insn[i].members);
    }
    free(l->insn);
    free(l->buf);
    free(l->view);
    free(l->live);
    pc_fusion_free(&l->fusion);
    free(l);
}

pc_lowered *pc_lower(const pc_graph *g, char *err, size_t errlen) {
    pc_lowered *l = calloc(1, sizeof *l);
    lctx c = {.g = g, .l = l, .n = g->nvals, .err = err, .errlen = errlen};
    size_t n = (size_t)g->nvals + 1;
    if (errlen) err[0] = 0;
    if (!l) { snprintf(err, errlen, "lower: out of memory"); return NULL; }
    l->g = g;
    l->view = calloc(n, sizeof *l->view);
    l->live = calloc(n, sizeof *l->live);
    c.kind = calloc(n, sizeof *c.kind);
    c.nuse = calloc(n, sizeof *c.nuse);
    c.pinned = calloc(n, sizeof *c.pinned);
    c.mmv = calloc(n, sizeof *c.mmv);
    c.alpha = calloc(n, sizeof *c.alpha);
    c.accx = calloc(n, sizeof *c.accx);
    c.absorber = calloc(n, sizeof *c.absorber);
    c.prod = calloc(n, sizeof *c.prod);
    c.fl = calloc(4 * n, sizeof *c.fl);
    c.root = calloc(n, sizeof *c.root);
    c.mat = calloc(n, sizeof *c.mat);
    c.ustart = calloc(n + 1, sizeof *c.ustart);
    int nusers = 0;
    for (pc_val v = 0; v < g->nvals; v++) nusers += g->vals[v].nin;
    c.users = calloc((size_t)nusers + 1, sizeof *c.users);
    int rc = -1;
    if (!l->view || !l->live || !c.kind || !c.nuse || !c.pinned || !c.mmv || !c.alpha || !c.accx || !c.absorber || !c.prod || !c.fl ||
        !c.root || !c.mat || !c.ustart || !c.users) {
        fail_oom(&c);
        goto done;
    }
    for (pc_val v = 0; v < g->nvals; v++) l->view[v].buf = -1;
    mark_live(&c);
    classify(&c);
    if (plan(&c)) goto done;
    for (pc_val v = 0; v < g->nvals; v++) c.mat[v] = -1;
    rc = emit_all(&c);
done:
    free(c.kind);
    free(c.nuse);
    free(c.pinned);
    free(c.mmv);
    free(c.alpha);
    free(c.accx);
    free(c.absorber);
    free(c.prod);
    free(c.fl);
    free(c.root);
    free(c.mat);
    free(c.ustart);
    free(c.users);
    if (rc) {
        pc_lowered_free(l);
        return NULL;
    }
    return l;
}
