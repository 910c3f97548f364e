/* The graph verifier: structural checks and re-inference of every node's declared type.
 * Reports every error (not just the first), one "LOC: error: msg" line each. */
#include "ir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const pc_graph *g;
    pc_strbuf b;
    int n;
} V;

static void verr(V *vs, pc_loc at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void verr(V *vs, pc_loc at, const char *fmt, ...) {
    if (at.file) {
        pc_sb_printf(&vs->b, "%s:%d:", at.file, at.line);
        if (at.col) pc_sb_printf(&vs->b, "%d:", at.col);
        pc_sb_printf(&vs->b, " ");
    }
    pc_sb_printf(&vs->b, "error: ");
    va_list ap;
    va_start(ap, fmt);
    pc_sb_vprintf(&vs->b, fmt, ap);
    va_end(ap);
    pc_sb_printf(&vs->b, "\n");
    vs->n++;
}

static const char *vname(const pc_graph *g, pc_val v) {
    return pc_valid(g, v) && g->vals[v].name ? g->vals[v].name : "?";
}

static const char *type_str(pc_dtype dt, pc_shape s, char *buf, size_t n) {
    char sh[192];
    if (s.rank < 0) s.rank = 0;
    pc_shape_str(s, sh, sizeof sh);
    snprintf(buf, n, "%s%s", pc_dtype_name(dt), sh);
    return buf;
}

/* 0 if dtype and shape are well formed; otherwise writes why */
static int type_problem(pc_dtype dt, pc_shape s, char *msg, size_t n) {
    if (dt != PC_F32 && dt != PC_I32 && dt != PC_BF16) { snprintf(msg, n, "unknown dtype %d", (int)dt); return -1; }
    if (s.rank < 0 || s.rank > PC_MAX_RANK) {
        snprintf(msg, n, "rank %d is outside 0..%d", s.rank, PC_MAX_RANK);
        return -1;
    }
    double numel = 1;
    for (int i = 0; i < s.rank; i++) {
        if (s.dim[i] < 0) { snprintf(msg, n, "negative dimension %lld", (long long)s.dim[i]); return -1; }
        numel *= (double)s.dim[i];
    }
    if (numel > (double)(1ll << 40)) { snprintf(msg, n, "%.0f elements is too large (limit 2^40)", numel); return -1; }
    return 0;
}

static const pc_graph *sort_graph; /* qsort has no context argument */
static int by_name(const void *a, const void *b) {
    const char *x = sort_graph->vals[*(const pc_val *)a].name, *y = sort_graph->vals[*(const pc_val *)b].name;
    int c = strcmp(x, y);
    return c ? c : (*(const pc_val *)a > *(const pc_val *)b) - (*(const pc_val *)a < *(const pc_val *)b);
}
static int by_key(const void *a, const void *b) {
    const char *x = sort_graph->vals[*(const pc_val *)a].key, *y = sort_graph->vals[*(const pc_val *)b].key;
    int c = strcmp(x, y);
    return c ? c : (*(const pc_val *)a > *(const pc_val *)b) - (*(const pc_val *)a < *(const pc_val *)b);
}

static bool valid_name(const char *s) {
    if (!s || !*s) return false;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '-'))
            return false;
    }
    return true;
}

/* names unique, keys unique among params/states */
static void check_unique(V *vs) {
    const pc_graph *g = vs->g;
    pc_val *ix = malloc((size_t)(g->nvals ? g->nvals : 1) * sizeof *ix);
    if (!ix) { verr(vs, (pc_loc){0}, "out of memory while verifying"); return; }
    int m = 0;
    for (int i = 0; i < g->nvals; i++)
        if (g->vals[i].name) ix[m++] = i;
    sort_graph = g;
    qsort(ix, (size_t)m, sizeof *ix, by_name);
    for (int k = 1; k < m; k++)
        if (strcmp(g->vals[ix[k]].name, g->vals[ix[k - 1]].name) == 0)
            verr(vs, g->vals[ix[k]].loc, "value name '%%%s' is defined twice", g->vals[ix[k]].name);
    m = 0;
    for (int i = 0; i < g->nvals; i++)
        if ((g->vals[i].op == PC_OP_param || g->vals[i].op == PC_OP_state) && g->vals[i].key && g->vals[i].key[0])
            ix[m++] = i;
    qsort(ix, (size_t)m, sizeof *ix, by_key);
    for (int k = 1; k < m; k++)
        if (strcmp(g->vals[ix[k]].key, g->vals[ix[k - 1]].key) == 0)
            verr(vs, g->vals[ix[k]].loc, "%%%s: key \"%s\" is already used by %%%s", vname(g, ix[k]),
                 g->vals[ix[k]].key, vname(g, ix[k - 1]));
    free(ix);
}

static void check_init(V *vs, const pc_value *x) {
    if ((int)x->init.kind < PC_INIT_NONE || x->init.kind > PC_INIT_KAIMING_UNIFORM)
        verr(vs, x->loc, "%%%s: unknown init kind %d", x->name, (int)x->init.kind);
}

static void check_value(V *vs, pc_val i, const bool *type_ok) {
    const pc_graph *g = vs->g;
    const pc_value *x = &g->vals[i];
    const char *nm = x->name ? x->name : "?";
    char msg[320], t1[200], t2[200];
    if (!x->name) verr(vs, x->loc, "value #%d has no name", (int)i);
    else if (!valid_name(x->name)) verr(vs, x->loc, "value name '%%%s' is not valid (letters, digits, '_', '.', '-')", nm);
    const pc_op_info *info = pc_op_get(x->op);
    if (!info) {
        verr(vs, x->loc, "%%%s: invalid opcode %d", nm, (int)x->op);
        return;
    }
    if (!type_ok[i]) {
        type_problem(x->dtype, x->shape, msg, sizeof msg);
        verr(vs, x->loc, "%%%s: bad type: %s", nm, msg);
    }
    if (info->fusion == PC_FUSE_SOURCE) {
        if (x->nin != 0) verr(vs, x->loc, "%%%s: %s takes no operands, has %d", nm, info->name, x->nin);
        switch (x->op) {
        case PC_OP_input:
            if (!(x->flags & PC_INPUT)) verr(vs, x->loc, "input %%%s lacks the input flag", nm);
            break;
        case PC_OP_param: {
            unsigned k = x->flags & (PC_FROZEN | PC_TRAINABLE);
            if (!x->key || !x->key[0]) verr(vs, x->loc, "param %%%s has no checkpoint key", nm);
            if (k != PC_FROZEN && k != PC_TRAINABLE)
                verr(vs, x->loc, "param %%%s must be exactly one of frozen or trainable", nm);
            check_init(vs, x);
            break;
        }
        case PC_OP_state:
            if (!x->key || !x->key[0]) verr(vs, x->loc, "state %%%s has no checkpoint key", nm);
            check_init(vs, x);
            break;
        default: /* const: data may be NULL (elided) */
            break;
        }
        return;
    }
    /* computing op */
    if (info->nin >= 0 ? x->nin != info->nin : x->nin < 1) {
        if (info->nin >= 0)
            verr(vs, x->loc, "%%%s: %s takes %d operand%s, got %d", nm, info->name, info->nin, info->nin == 1 ? "" : "s",
                 x->nin);
        else verr(vs, x->loc, "%%%s: %s takes at least 1 operand, got %d", nm, info->name, x->nin);
        return;
    }
    if (x->nin > 0 && !x->in) {
        verr(vs, x->loc, "%%%s: operand list is missing", nm);
        return;
    }
    bool ok = true;
    for (int k = 0; k < x->nin; k++) {
        pc_val o = x->in[k];
        if (!pc_valid(g, o)) {
            verr(vs, x->loc, "%%%s: operand %d of %s is not a value (index %d)", nm, k + 1, info->name, (int)o);
            ok = false;
        } else if (o >= i) {
            verr(vs, x->loc, "%%%s: operand %d of %s (%%%s) is not defined before its use", nm, k + 1, info->name,
                 vname(g, o));
            ok = false;
        } else if (!type_ok[o]) {
            ok = false; /* reported at the operand */
        }
    }
    for (int k = 0; k < info->nattrs && k < PC_MAX_ATTRS; k++)
        if (info->attrs[k].kind == PC_ATTR_INTS && (x->attr[k].n < 0 || x->attr[k].n > PC_MAX_INTS)) {
            verr(vs, x->loc, "%%%s: attribute '%s' has %d entries", nm, info->attrs[k].name, x->attr[k].n);
            ok = false;
        }
    if (!ok) return;
    pc_dtype dt;
    pc_shape s;
    if (pc_infer(g, x->op, x->nin, x->in, x->attr, &dt, &s, msg, sizeof msg)) {
        verr(vs, x->loc, "%%%s: %s: %s", nm, info->name, msg);
        return;
    }
    if (type_ok[i] && (dt != x->dtype || !pc_shape_eq(s, x->shape)))
        verr(vs, x->loc, "%%%s: declared type %s but %s infers %s", nm, type_str(x->dtype, x->shape, t1, sizeof t1),
             info->name, type_str(dt, s, t2, sizeof t2));
}

int pc_verify(const pc_graph *g, char **err) {
    V vs_ = {g, {0}, 0}, *vs = &vs_;
    if (!g) {
        verr(vs, (pc_loc){0}, "no graph");
    } else {
        bool *type_ok = malloc((size_t)(g->nvals ? g->nvals : 1) * sizeof *type_ok);
        if (!type_ok) {
            verr(vs, (pc_loc){0}, "out of memory while verifying");
        } else {
            char msg[200], t1[200];
            for (int i = 0; i < g->nvals; i++)
                type_ok[i] = type_problem(g->vals[i].dtype, g->vals[i].shape, msg, sizeof msg) == 0;
            for (int i = 0; i < g->nvals; i++) check_value(vs, i, type_ok);
            check_unique(vs);

            /* outputs and the loss */
            for (int k = 0; k < g->noutputs; k++) {
                pc_val o = g->outputs[k];
                if (!pc_valid(g, o)) {
                    verr(vs, (pc_loc){0}, "output %d refers to no value (index %d)", k + 1, (int)o);
                    continue;
                }
                for (int j = 0; j < k; j++)
                    if (g->outputs[j] == o) verr(vs, g->vals[o].loc, "output %%%s is listed twice", vname(g, o));
            }
            for (int i = 0; i < g->nvals; i++) {
                const pc_value *x = &g->vals[i];
                if (!(x->flags & PC_LOSS)) continue;
                if (x->dtype != PC_F32 || x->shape.rank != 0)
                    verr(vs, x->loc, "loss %%%s must be a scalar f32, got %s", vname(g, i),
                         type_str(x->dtype, x->shape, t1, sizeof t1));
                bool is_out = false;
                for (int k = 0; k < g->noutputs; k++) is_out = is_out || g->outputs[k] == i;
                if (!is_out) verr(vs, x->loc, "loss %%%s is not a graph output", vname(g, i));
            }

            /* updates */
            for (int k = 0; k < g->nupdates; k++) {
                pc_val t = g->updates[k].target, n = g->updates[k].next;
                if (!pc_valid(g, t) || !pc_valid(g, n)) {
                    verr(vs, pc_valid(g, n) ? g->vals[n].loc : (pc_loc){0}, "update %d refers to no value", k + 1);
                    continue;
                }
                const pc_value *tv = &g->vals[t], *nv = &g->vals[n];
                if (tv->op != PC_OP_param && tv->op != PC_OP_state)
                    verr(vs, nv->loc, "update %%%s <- %%%s: the target is not a param or state", vname(g, t), vname(g, n));
                else if (tv->dtype != nv->dtype || !pc_shape_eq(tv->shape, nv->shape)) {
                    char t2[200];
                    verr(vs, nv->loc, "update %%%s <- %%%s: type %s differs from the target's %s", vname(g, t),
                         vname(g, n), type_str(nv->dtype, nv->shape, t1, sizeof t1),
                         type_str(tv->dtype, tv->shape, t2, sizeof t2));
                }
                for (int j = 0; j < k; j++)
                    if (g->updates[j].target == t) {
                        verr(vs, nv->loc, "update %%%s <- %%%s: %%%s is updated twice", vname(g, t), vname(g, n),
                             vname(g, t));
                        break;
                    }
            }
            free(type_ok);
        }
    }
    char *s = pc_sb_take(&vs->b);
    if (vs->n == 0 || !err) {
        free(s);
        return vs->n;
    }
    if (*err && s) {
        pc_strbuf all = {0};
        pc_sb_printf(&all, "%s%s", *err, s);
        char *joined = pc_sb_take(&all);
        if (joined) {
            free(*err);
            free(s);
            *err = joined;
        } else free(s);
    } else if (s) {
        *err = s;
    }
    return vs->n;
}
