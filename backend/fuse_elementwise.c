/* fuse-elementwise: groups elementwise ops into kernels (an analysis used by the lowering).
 *
 * Values are visited in order. An elementwise value joins the groups of its operands that have
 * its shape and are still open; a group closes (is "sealed") as soon as a value outside it uses
 * one of its members. The kernel of a group runs at the position of its last member, so sealing
 * guarantees that every outside user of a member comes after the kernel, and every operand of a
 * member (computed before the member) comes before it. Operands may broadcast into the shape.
 * A value none of whose operands is in an open group may join an open group of its shape that
 * reads one of its operands of that shape too (siblings: the SwiGLU backward's d up = d h silu(g)
 * and d g's chain both read d h), if no op outside the kernels runs between that group's last
 * member and the value: the shared operand is then read once, and moving the kernel later
 * crosses nothing. */
#include "backend/lower.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    pc_val *m; /* members in value order */
    int n, cap;
    bool sealed, dead;
} grp;

typedef struct {
    const pc_graph *g;
    const bool *live;
    int *gof;       /* per value: current group or -1 */
    int *ustart;    /* users CSR */
    pc_val *users;
    bool *pinned;   /* outputs and update values */
    int *barriers;  /* per value: live non-elementwise ops before it (leaves excluded) */
    grp *gr;
    int ngr, capgr;
} fctx;

static bool in_set(int gid, const int *set, int nset) {
    for (int i = 0; i < nset; i++)
        if (set[i] == gid) return true;
    return false;
}

/* is value u inside the union of groups `set` plus the new value v? */
static bool inside(const fctx *c, pc_val u, pc_val v, const int *set, int nset) {
    return u == v || (c->gof[u] >= 0 && in_set(c->gof[u], set, nset));
}

/* counts inputs and an upper bound of outputs of the union (set + v); checks the limits */
static bool fits(const fctx *c, pc_val v, const int *set, int nset) {
    const pc_graph *g = c->g;
    int ninsn = 1;
    for (int i = 0; i < nset; i++) ninsn += c->gr[set[i]].n;
    if (ninsn > PC_K_MAX_INSNS) return false;
    pc_val ins[PC_K_MAX_IN + 1];
    int nins = 0, nouts = 0;
    for (int i = 0; i <= nset; i++) {
        int cnt = i < nset ? c->gr[set[i]].n : 1;
        for (int j = 0; j < cnt; j++) {
            pc_val m = i < nset ? c->gr[set[i]].m[j] : v;
            const pc_value *x = &g->vals[m];
            for (int k = 0; k < x->nin; k++) {
                pc_val o = x->in[k];
                if (inside(c, o, v, set, nset)) continue;
                bool seen = false;
                for (int t = 0; t < nins; t++) seen = seen || ins[t] == o;
                if (seen) continue;
                if (nins == PC_K_MAX_IN) return false;
                ins[nins++] = o;
            }
            bool out = c->pinned[m];
            for (int k = c->ustart[m]; k < c->ustart[m + 1] && !out; k++)
                out = !inside(c, c->users[k], v, set, nset);
            if (out && ++nouts > PC_K_MAX_OUT) return false;
        }
    }
    return true;
}

static int add_member(fctx *c, int gid, pc_val v) {
    grp *G = &c->gr[gid];
    if (G->n == G->cap) {
        int cap = G->cap ? 2 * G->cap : 8;
        pc_val *m = realloc(G->m, (size_t)cap * sizeof *m);
        if (!m) return -1;
        G->m = m;
        G->cap = cap;
    }
    G->m[G->n++] = v;
    c->gof[v] = gid;
    return 0;
}

static int new_group(fctx *c) {
    if (c->ngr == c->capgr) {
        int cap = c->capgr ? 2 * c->capgr : 64;
        grp *n = realloc(c->gr, (size_t)cap * sizeof *n);
        if (!n) return -1;
        c->gr = n;
        c->capgr = cap;
    }
    memset(&c->gr[c->ngr], 0, sizeof c->gr[c->ngr]);
    return c->ngr++;
}

/* moves every member of group `from` into `to` (members stay sorted: both are merged) */
static int merge_into(fctx *c, int to, int from) {
    grp *F = &c->gr[from];
    for (int i = 0; i < F->n; i++)
        if (add_member(c, to, F->m[i])) return -1;
    grp *T = &c->gr[to];
    /* insertion sort keeps value order (groups are small) */
    for (int i = 1; i < T->n; i++) {
        pc_val x = T->m[i];
        int j = i - 1;
        for (; j >= 0 && T->m[j] > x; j--) T->m[j + 1] = T->m[j];
        T->m[j + 1] = x;
    }
    free(F->m);
    F->m = NULL;
    F->n = F->cap = 0;
    F->dead = true;
    return 0;
}

static bool fusable_value(const pc_graph *g, pc_val v) {
    const pc_value *x = &g->vals[v];
    if (!pc_fusable_op(x->op) || x->dtype == PC_BF16) return false;
    for (int k = 0; k < x->nin; k++)
        if (g->vals[x->in[k]].dtype == PC_BF16) return false;
    return true;
}

/* places v: joins open same-shape operand groups (all of them if the union fits, else the
 * largest that fits alone), or starts a new group */
static int place(fctx *c, pc_val v) {
    const pc_graph *g = c->g;
    const pc_value *x = &g->vals[v];
    int cand[8], ncand = 0;
    int hp = pc_kernel_hp_operand(x->op);
    for (int k = 0; k < x->nin && ncand < 8; k++) {
        int gid = c->gof[x->in[k]];
        if (gid < 0 || c->gr[gid].sealed || in_set(gid, cand, ncand)) continue;
        if (hp >= 0 && c->gof[x->in[hp]] == gid) continue;
        pc_val m0 = c->gr[gid].m[0];
        if (!pc_shape_eq(g->vals[m0].shape, x->shape)) continue;
        cand[ncand++] = gid;
    }
    for (int k = 0; k < x->nin && ncand == 0; k++) { /* no operand group: siblings sharing a whole operand */
        if (k == hp || !pc_shape_eq(g->vals[x->in[k]].shape, x->shape)) continue;
        for (int u = c->ustart[x->in[k]]; u < c->ustart[x->in[k] + 1] && ncand < 8; u++) {
            pc_val w = c->users[u];
            int gid = w < v ? c->gof[w] : -1;
            if (gid < 0 || c->gr[gid].sealed || in_set(gid, cand, ncand)) continue;
            if (hp >= 0 && c->gof[x->in[hp]] == gid) continue; /* the hyper-parameters stay an input */
            const grp *G = &c->gr[gid];
            if (!pc_shape_eq(g->vals[G->m[0]].shape, x->shape) || c->barriers[v] != c->barriers[G->m[G->n - 1]])
                continue;
            cand[ncand++] = gid;
        }
    }
    int chosen[8], nchosen = 0;
    if (ncand && fits(c, v, cand, ncand)) {
        memcpy(chosen, cand, sizeof cand);
        nchosen = ncand;
    } else {
        int best = -1;
        for (int i = 0; i < ncand; i++)
            if (fits(c, v, &cand[i], 1) && (best < 0 || c->gr[cand[i]].n > c->gr[cand[best]].n)) best = i;
        if (best >= 0) chosen[nchosen++] = cand[best];
    }
    int gid;
    if (nchosen == 0) {
        /* a lone op must fit on its own (an op has at most 4 operands) */
        if ((gid = new_group(c)) < 0) return -1;
    } else {
        gid = chosen[0];
        for (int i = 1; i < nchosen; i++)
            if (merge_into(c, gid, chosen[i])) return -1;
    }
    return add_member(c, gid, v);
}

int pc_fuse_elementwise(const pc_graph *g, const bool *exclude, const bool *live, pc_fusion *f, char *err,
                        size_t errlen) {
    memset(f, 0, sizeof *f);
    int n = g->nvals;
    fctx c = {.g = g, .live = live};
    size_t nn = (size_t)(n ? n : 1);
    c.gof = malloc(nn * sizeof *c.gof);
    c.ustart = calloc(nn + 1, sizeof *c.ustart);
    c.pinned = calloc(nn, sizeof *c.pinned);
    c.barriers = calloc(nn + 1, sizeof *c.barriers);
    int nusers = 0;
    for (pc_val v = 0; v < n; v++) nusers += g->vals[v].nin;
    c.users = malloc((size_t)(nusers ? nusers : 1) * sizeof *c.users);
    int *fill = calloc(nn + 1, sizeof *fill);
    int rc = -1;
    if (!c.gof || !c.ustart || !c.pinned || !c.barriers || !c.users || !fill) goto oom;
    for (pc_val v = 0; v < n; v++) {
        bool op = (!live || live[v]) && g->vals[v].nin > 0 && (!fusable_value(g, v) || (exclude && exclude[v]));
        c.barriers[v + 1] = c.barriers[v] + op;
    }
    /* users of each live value (CSR), counting a value once per operand slot */
    for (pc_val v = 0; v < n; v++) {
        c.gof[v] = -1;
        if (live && !live[v]) continue;
        for (int k = 0; k < g->vals[v].nin; k++) c.ustart[g->vals[v].in[k] + 1]++;
    }
    for (int v = 0; v < n; v++) c.ustart[v + 1] += c.ustart[v];
    for (pc_val v = 0; v < n; v++) {
        if (live && !live[v]) continue;
        for (int k = 0; k < g->vals[v].nin; k++) {
            pc_val o = g->vals[v].in[k];
            c.users[c.ustart[o] + fill[o]++] = v;
        }
    }
    for (int i = 0; i < g->noutputs; i++) c.pinned[g->outputs[i]] = true;
    for (int i = 0; i < g->nupdates; i++) c.pinned[g->updates[i].next] = true;

    for (pc_val v = 0; v < n; v++) {
        if (live && !live[v]) continue;
        const pc_value *x = &g->vals[v];
        if (fusable_value(g, v) && !(exclude && exclude[v]) && place(&c, v)) goto oom;
        /* an outside user seals the groups of its operands */
        for (int k = 0; k < x->nin; k++) {
            int gid = c.gof[x->in[k]];
            if (gid >= 0 && gid != c.gof[v]) c.gr[gid].sealed = true;
        }
    }

    /* compact: live groups in order of their first member */
    int *remap = malloc((size_t)(c.ngr ? c.ngr : 1) * sizeof *remap);
    f->group = malloc(nn * sizeof *f->group);
    if (!remap || !f->group) { free(remap); goto oom; }
    int ng = 0;
    for (int i = 0; i < c.ngr; i++) remap[i] = -1;
    for (pc_val v = 0; v < n; v++) {
        int gid = c.gof[v];
        if (gid >= 0 && remap[gid] < 0) remap[gid] = ng++;
        f->group[v] = gid >= 0 ? remap[gid] : -1;
    }
    free(remap);
    f->ngroups = ng;
    f->last = calloc((size_t)(ng ? ng : 1), sizeof *f->last);
    f->nmembers = calloc((size_t)(ng ? ng : 1), sizeof *f->nmembers);
    if (!f->last || !f->nmembers) goto oom;
    for (pc_val v = 0; v < n; v++)
        if (f->group[v] >= 0) {
            f->last[f->group[v]] = v;
            f->nmembers[f->group[v]]++;
        }
    rc = 0;
    goto done;
oom:
    snprintf(err, errlen, "fuse-elementwise: out of memory");
    pc_fusion_free(f);
done:
    for (int i = 0; i < c.ngr; i++) free(c.gr[i].m);
    free(c.gr);
    free(c.gof);
    free(c.ustart);
    free(c.pinned);
    free(c.barriers);
    free(c.users);
    free(fill);
    return rc;
}

void pc_fusion_free(pc_fusion *f) {
    if (!f) return;
    free(f->group);
    free(f->last);
    free(f->nmembers);
    memset(f, 0, sizeof *f);
}
