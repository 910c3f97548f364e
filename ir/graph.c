/* The graph container: values, names, sticky errors, and the generic node builder. */
#include "ir.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *dupstr(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

pc_graph *pc_graph_new(const char *name) {
    pc_graph *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->name = dupstr(name ? name : "main");
    if (!g->name) { free(g); return NULL; }
    return g;
}

void pc_graph_free(pc_graph *g) {
    if (!g) return;
    for (int i = 0; i < g->nvals; i++) {
        free(g->vals[i].in);
        free(g->vals[i].name);
        free(g->vals[i].key);
        free(g->vals[i].data);
    }
    free(g->vals);
    free(g->outputs);
    free(g->updates);
    for (int i = 0; i < g->nfiles; i++) free(g->files[i]);
    free(g->files);
    free(g->name_index);
    free(g->error);
    free(g->name);
    free(g);
}

const char *pc_graph_error(const pc_graph *g) { return g ? g->error : "no graph"; }
int pc_graph_size(const pc_graph *g) { return g ? g->nvals : 0; }
void pc_graph_clear_error(pc_graph *g) { free(g->error); g->error = NULL; }

pc_val pc_fail(pc_graph *g, pc_loc at, const char *fmt, ...) {
    if (!g || g->error) return PC_NONE;
    pc_strbuf b = {0};
    if (at.file) {
        pc_sb_printf(&b, "%s:%d:", at.file, at.line);
        if (at.col) pc_sb_printf(&b, "%d:", at.col);
        pc_sb_printf(&b, " ");
    }
    pc_sb_printf(&b, "error: ");
    va_list ap;
    va_start(ap, fmt);
    pc_sb_vprintf(&b, fmt, ap);
    va_end(ap);
    g->error = pc_sb_take(&b);
    return PC_NONE;
}

const char *pc_intern_file(pc_graph *g, const char *file) {
    if (!file) return NULL;
    for (int i = g->nfiles - 1; i >= 0; i--)
        if (strcmp(g->files[i], file) == 0) return g->files[i];
    char **f = realloc(g->files, (size_t)(g->nfiles + 1) * sizeof *f);
    if (!f) return NULL;
    g->files = f;
    if (!(f[g->nfiles] = dupstr(file))) return NULL;
    return f[g->nfiles++];
}

/* ---- name index ---- */
static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

static int index_insert(pc_graph *g, pc_val v) {
    if (2 * (g->nvals + 1) > g->nindex) {
        int n = g->nindex ? g->nindex * 2 : 64;
        while (2 * (g->nvals + 1) > n) n *= 2;
        pc_val *idx = malloc((size_t)n * sizeof *idx);
        if (!idx) return -1;
        for (int i = 0; i < n; i++) idx[i] = PC_NONE;
        free(g->name_index);
        g->name_index = idx;
        g->nindex = n;
        for (int i = 0; i < g->nvals; i++) {
            if (i == v || !g->vals[i].name) continue;
            uint64_t h = hash_str(g->vals[i].name) & (uint64_t)(n - 1);
            while (idx[h] != PC_NONE) h = (h + 1) & (uint64_t)(n - 1);
            idx[h] = i;
        }
    }
    uint64_t h = hash_str(g->vals[v].name) & (uint64_t)(g->nindex - 1);
    while (g->name_index[h] != PC_NONE) h = (h + 1) & (uint64_t)(g->nindex - 1);
    g->name_index[h] = v;
    return 0;
}

pc_val pc_lookup(const pc_graph *g, const char *name) {
    if (!g || !name || !g->nindex) return PC_NONE;
    uint64_t h = hash_str(name) & (uint64_t)(g->nindex - 1);
    while (g->name_index[h] != PC_NONE) {
        pc_val v = g->name_index[h];
        if (g->vals[v].name && strcmp(g->vals[v].name, name) == 0) return v;
        h = (h + 1) & (uint64_t)(g->nindex - 1);
    }
    return PC_NONE;
}

pc_val pc_lookup_key(const pc_graph *g, const char *key) {
    for (int i = 0; g && key && i < g->nvals; i++)
        if (g->vals[i].key && strcmp(g->vals[i].key, key) == 0) return i;
    return PC_NONE;
}

static bool valid_name(const char *s) {
    if (!s || !*s) return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '.' && *s != '-') return false;
    return true;
}

int pc_set_name(pc_graph *g, pc_val v, const char *name) {
    if (!pc_valid(g, v) || !valid_name(name)) return -1;
    pc_val other = pc_lookup(g, name);
    if (other == v) return 0;
    if (other != PC_NONE) return -1;
    char *n = dupstr(name);
    if (!n) return -1;
    /* the old name stays in the hash table pointing at v; lookups compare strings, so rebuild */
    free(g->vals[v].name);
    g->vals[v].name = n;
    free(g->name_index);
    g->name_index = NULL;
    g->nindex = 0;
    for (int i = 0; i < g->nvals; i++)
        if (g->vals[i].name && index_insert(g, i) != 0) return -1;
    return 0;
}

/* appends a blank value; name NULL = automatic number */
static pc_val new_value(pc_graph *g, pc_loc at, const char *name) {
    if (g->nvals == g->cap) {
        int cap = g->cap ? g->cap * 2 : 64;
        pc_value *v = realloc(g->vals, (size_t)cap * sizeof *v);
        if (!v) return pc_fail(g, at, "out of memory");
        g->vals = v;
        g->cap = cap;
    }
    char buf[32];
    if (name) {
        if (!valid_name(name))
            return pc_fail(g, at, "invalid value name '%s' (letters, digits, '_', '.', '-')", name);
        if (pc_lookup(g, name) != PC_NONE)
            return pc_fail(g, at, "value name '%%%s' is already defined", name);
    } else {
        do snprintf(buf, sizeof buf, "%d", g->next_auto++);
        while (pc_lookup(g, buf) != PC_NONE);
        name = buf;
    }
    pc_val id = g->nvals;
    pc_value *v = &g->vals[id];
    memset(v, 0, sizeof *v);
    v->name = dupstr(name);
    v->loc = at;
    v->loc.file = pc_intern_file(g, at.file);
    if (!v->name) return pc_fail(g, at, "out of memory");
    g->nvals++;
    if (index_insert(g, id) != 0) {
        free(v->name);
        g->nvals--;
        return pc_fail(g, at, "out of memory");
    }
    return id;
}

pc_dtype pc_val_dtype(const pc_graph *g, pc_val v) { return pc_valid(g, v) ? g->vals[v].dtype : PC_F32; }
pc_shape pc_val_shape(const pc_graph *g, pc_val v) { return pc_valid(g, v) ? g->vals[v].shape : (pc_shape){0}; }
const char *pc_val_name(const pc_graph *g, pc_val v) { return pc_valid(g, v) ? g->vals[v].name : NULL; }

/* ---- leaves ---- */
static int check_type(pc_graph *g, pc_loc at, pc_dtype dt, pc_shape s) {
    if (dt != PC_F32 && dt != PC_I32 && dt != PC_BF16) { pc_fail(g, at, "unknown dtype %d", (int)dt); return -1; }
    if (s.rank < 0 || s.rank > PC_MAX_RANK) {
        pc_fail(g, at, "rank %d exceeds the maximum rank %d", s.rank, PC_MAX_RANK);
        return -1;
    }
    double numel = 1;
    for (int i = 0; i < s.rank; i++) {
        if (s.dim[i] < 0) { pc_fail(g, at, "negative dimension %lld", (long long)s.dim[i]); return -1; }
        numel *= (double)s.dim[i];
    }
    if (numel > (double)(1ll << 40)) {
        pc_fail(g, at, "tensor of %.0f elements is too large (limit 2^40)", numel);
        return -1;
    }
    return 0;
}

static pc_val leaf(pc_graph *g, pc_loc at, pc_opcode op, const char *name, pc_dtype dt, pc_shape s,
                   unsigned flags) {
    if (!g || g->error) return PC_NONE;
    if (check_type(g, at, dt, s)) return PC_NONE;
    pc_val id = new_value(g, at, name);
    if (id == PC_NONE) return PC_NONE;
    pc_value *v = pc_v(g, id);
    v->op = op;
    v->dtype = dt;
    v->shape = s;
    v->flags = flags;
    pc_attr_defaults(op, v->attr);
    return id;
}

pc_val pc_input_at(pc_graph *g, pc_loc at, const char *name, pc_dtype dt, pc_shape s) {
    return leaf(g, at, PC_OP_input, name, dt, s, PC_INPUT);
}

static pc_val keyed_leaf(pc_graph *g, pc_loc at, pc_opcode op, const char *name, const char *key,
                         pc_dtype dt, pc_shape s, unsigned flags, pc_init init) {
    if (g && !g->error && key && pc_lookup_key(g, key) != PC_NONE)
        return pc_fail(g, at, "key \"%s\" is already used by another param or state", key);
    pc_val id = leaf(g, at, op, name, dt, s, flags);
    if (id == PC_NONE) return PC_NONE;
    pc_value *v = pc_v(g, id);
    v->init = init;
    if (key && !(v->key = dupstr(key))) return pc_fail(g, at, "out of memory");
    return id;
}

pc_val pc_param_at(pc_graph *g, pc_loc at, const char *name, const char *key, pc_dtype dt,
                   pc_shape s, unsigned flags, pc_init init) {
    unsigned kind = flags & (PC_FROZEN | PC_TRAINABLE);
    if (kind != PC_FROZEN && kind != PC_TRAINABLE)
        return pc_fail(g, at, "param '%s' must be exactly one of frozen or trainable", name ? name : "?");
    return keyed_leaf(g, at, PC_OP_param, name, key, dt, s, kind, init);
}

pc_val pc_state_at(pc_graph *g, pc_loc at, const char *name, const char *key, pc_dtype dt,
                   pc_shape s, pc_init init) {
    return keyed_leaf(g, at, PC_OP_state, name, key, dt, s, PC_STATE, init);
}

pc_val pc_const_at(pc_graph *g, pc_loc at, pc_dtype dt, pc_shape s, const void *data) {
    pc_val id = leaf(g, at, PC_OP_const, NULL, dt, s, PC_CONST);
    if (id == PC_NONE) return PC_NONE;
    if (data) {
        size_t n = (size_t)pc_shape_numel(s) * pc_dtype_size(dt);
        void *d = malloc(n ? n : 1);
        if (!d) return pc_fail(g, at, "out of memory");
        memcpy(d, data, n);
        pc_v(g, id)->data = d;
    }
    return id;
}

pc_val pc_scalar_at(pc_graph *g, pc_loc at, float value) {
    return pc_const_at(g, at, PC_F32, pc_shape_make(0, NULL), &value);
}

static int push_output(pc_graph *g, pc_val v) {
    for (int i = 0; i < g->noutputs; i++)
        if (g->outputs[i] == v) return 0;
    if (g->noutputs == g->capout) {
        int cap = g->capout ? 2 * g->capout : 8;
        pc_val *o = realloc(g->outputs, (size_t)cap * sizeof *o);
        if (!o) return -1;
        g->outputs = o;
        g->capout = cap;
    }
    g->outputs[g->noutputs++] = v;
    return 0;
}

int pc_mark_output(pc_graph *g, pc_val v) {
    if (!g || g->error || !pc_valid(g, v)) return -1;
    if (push_output(g, v)) { pc_fail(g, pc_v(g, v)->loc, "out of memory"); return -1; }
    pc_v(g, v)->flags |= PC_OUTPUT;
    return 0;
}

int pc_mark_loss(pc_graph *g, pc_val v) {
    if (!g || g->error || !pc_valid(g, v)) return -1;
    pc_value *x = pc_v(g, v);
    if (x->dtype != PC_F32 || x->shape.rank != 0) {
        pc_fail(g, x->loc, "loss %%%s must be a scalar f32, got %s rank %d", x->name,
                pc_dtype_name(x->dtype), x->shape.rank);
        return -1;
    }
    x->flags |= PC_LOSS;
    return pc_mark_output(g, v);
}

int pc_add_update(pc_graph *g, pc_val target, pc_val next) {
    if (!g || g->error || !pc_valid(g, target) || !pc_valid(g, next)) return -1;
    pc_value *t = pc_v(g, target), *n = pc_v(g, next);
    if (t->op != PC_OP_param && t->op != PC_OP_state) {
        pc_fail(g, n->loc, "update target %%%s is not a param or state", t->name);
        return -1;
    }
    if (t->dtype != n->dtype || !pc_shape_eq(t->shape, n->shape)) {
        pc_fail(g, n->loc, "update of %%%s: the new value %%%s has a different type", t->name, n->name);
        return -1;
    }
    for (int i = 0; i < g->nupdates; i++)
        if (g->updates[i].target == target) {
            pc_fail(g, n->loc, "%%%s is updated twice", t->name);
            return -1;
        }
    if (g->nupdates == g->capupd) {
        int cap = g->capupd ? 2 * g->capupd : 8;
        pc_update *u = realloc(g->updates, (size_t)cap * sizeof *u);
        if (!u) { pc_fail(g, n->loc, "out of memory"); return -1; }
        g->updates = u;
        g->capupd = cap;
    }
    g->updates[g->nupdates++] = (pc_update){target, next};
    return 0;
}

/* ---- attributes ---- */
void pc_attr_defaults(pc_opcode op, pc_attr out[PC_MAX_ATTRS]) {
    memset(out, 0, sizeof(pc_attr) * PC_MAX_ATTRS);
    const pc_op_info *info = pc_op_get(op);
    for (int i = 0; info && i < info->nattrs; i++) {
        out[i].i = pc_f2i(info->attrs[i].dflt);
        out[i].f = info->attrs[i].dflt;
    }
}

static int attr_index(pc_opcode op, const char *name) {
    const pc_op_info *info = pc_op_get(op);
    for (int i = 0; info && i < info->nattrs; i++)
        if (strcmp(info->attrs[i].name, name) == 0) return i;
    return -1;
}

const pc_attr *pc_attr_get(const pc_graph *g, pc_val v, const char *name) {
    int i = attr_index(g->vals[v].op, name);
    return i < 0 ? NULL : &g->vals[v].attr[i];
}

int64_t pc_attr_i(const pc_graph *g, pc_val v, const char *name) {
    const pc_attr *a = pc_attr_get(g, v, name);
    return a ? a->i : 0;
}

double pc_attr_f(const pc_graph *g, pc_val v, const char *name) {
    const pc_attr *a = pc_attr_get(g, v, name);
    return a ? a->f : 0.0;
}

static int parse_int(const char *s, int64_t *out, const char **end) {
    char *e;
    errno = 0;
    long long x = strtoll(s, &e, 10);
    if (e == s || errno == ERANGE) return -1;
    *out = x;
    *end = e;
    return 0;
}

int pc_attr_parse(pc_opcode op, pc_attr attrs[PC_MAX_ATTRS], const char *text, char *err, size_t errlen) {
    const pc_op_info *info = pc_op_get(op);
    const char *eq = strchr(text, '=');
    size_t nlen = eq ? (size_t)(eq - text) : strlen(text);
    char name[64];
    if (nlen == 0 || nlen >= sizeof name) {
        snprintf(err, errlen, "malformed attribute '%s'", text);
        return -1;
    }
    memcpy(name, text, nlen);
    name[nlen] = 0;
    int i = attr_index(op, name);
    if (i < 0) {
        snprintf(err, errlen, "op '%s' has no attribute '%s'", info ? info->name : "?", name);
        return -1;
    }
    if (!eq) {
        snprintf(err, errlen, "attribute '%s' needs a value (%s=...)", name, name);
        return -1;
    }
    const char *s = eq + 1, *end;
    pc_attr *a = &attrs[i];
    switch (info->attrs[i].kind) {
    case PC_ATTR_INT:
        if (parse_int(s, &a->i, &end) || *end) goto bad;
        a->f = (double)a->i;
        return 0;
    case PC_ATTR_FLOAT: {
        char *e;
        double x = strtod(s, &e);
        if (e == s || *e || !isfinite(x)) {
            /* -inf/inf are meaningful fills; strtod accepts them, only NaN is refused */
            if (e != s && !*e && !isnan(x)) { a->f = x; a->i = 0; return 0; }
            goto bad;
        }
        a->f = x;
        a->i = pc_f2i(x);
        return 0;
    }
    case PC_ATTR_INTS:
        if (*s != '[') goto bad;
        s++;
        a->n = 0;
        while (*s == ' ') s++;
        if (*s == ']') return s[1] ? (snprintf(err, errlen, "trailing text after attribute '%s'", name), -1) : 0;
        for (;;) {
            if (a->n == PC_MAX_INTS) {
                snprintf(err, errlen, "attribute '%s' has more than %d entries", name, PC_MAX_INTS);
                return -1;
            }
            while (*s == ' ') s++;
            if (parse_int(s, &a->ints[a->n++], &end)) goto bad;
            s = end;
            while (*s == ' ') s++;
            if (*s == ']') { s++; break; }
            if (*s != ',') goto bad;
            s++;
        }
        if (*s) goto bad;
        return 0;
    }
bad:
    snprintf(err, errlen, "bad value for attribute '%s' of %s: '%s'", name, info->name, eq + 1);
    return -1;
}

/* ---- nodes ---- */
pc_val pc_node(pc_graph *g, pc_loc at, pc_opcode op, int nin, const pc_val *in, const pc_attr *attrs) {
    if (!g || g->error) return PC_NONE;
    const pc_op_info *info = pc_op_get(op);
    if (!info || info->fusion == PC_FUSE_SOURCE) return pc_fail(g, at, "not a computing op");
    if (info->nin >= 0 ? nin != info->nin : nin < 1)
        return pc_fail(g, at, "%s takes %d operand%s, got %d", info->name, info->nin,
                       info->nin == 1 ? "" : "s", nin);
    for (int i = 0; i < nin; i++)
        if (!pc_valid(g, in[i])) return pc_fail(g, at, "operand %d of %s is not a value", i + 1, info->name);
    pc_attr a[PC_MAX_ATTRS];
    if (attrs) memcpy(a, attrs, sizeof a);
    else pc_attr_defaults(op, a);
    pc_dtype dt;
    pc_shape s;
    char msg[256];
    if (pc_infer(g, op, nin, in, a, &dt, &s, msg, sizeof msg))
        return pc_fail(g, at, "%s: %s", info->name, msg);
    pc_val *ins = malloc((size_t)nin * sizeof *ins);
    if (!ins) return pc_fail(g, at, "out of memory");
    memcpy(ins, in, (size_t)nin * sizeof *ins);
    pc_val id = new_value(g, at, NULL);
    if (id == PC_NONE) { free(ins); return PC_NONE; }
    pc_value *v = pc_v(g, id);
    v->op = op;
    v->dtype = dt;
    v->shape = s;
    v->nin = nin;
    v->in = ins;
    memcpy(v->attr, a, sizeof a);
    return id;
}

pc_val pc_op_at(pc_graph *g, pc_loc at, const char *op, int nin, const pc_val *in, int nattr,
                const char *const *attrs) {
    if (!g || g->error) return PC_NONE;
    int code = op ? pc_op_find(op) : -1;
    if (code < 0) return pc_fail(g, at, "unknown op '%s'", op ? op : "(null)");
    pc_attr a[PC_MAX_ATTRS];
    pc_attr_defaults((pc_opcode)code, a);
    char msg[256];
    for (int i = 0; i < nattr; i++)
        if (pc_attr_parse((pc_opcode)code, a, attrs[i], msg, sizeof msg)) return pc_fail(g, at, "%s", msg);
    return pc_node(g, at, (pc_opcode)code, nin, in, a);
}

pc_val pc_node_raw(pc_graph *g, pc_loc at, const char *name, pc_opcode op, int nin, const pc_val *in,
                   const pc_attr *attrs, pc_dtype dt, pc_shape shape) {
    if (!g || g->error) return PC_NONE;
    for (int i = 0; i < nin; i++)
        if (!pc_valid(g, in[i])) return pc_fail(g, at, "operand %d is not a value", i + 1);
    pc_val *ins = NULL;
    if (nin > 0) {
        if (!(ins = malloc((size_t)nin * sizeof *ins))) return pc_fail(g, at, "out of memory");
        memcpy(ins, in, (size_t)nin * sizeof *ins);
    }
    pc_val id = new_value(g, at, name);
    if (id == PC_NONE) { free(ins); return PC_NONE; }
    pc_value *v = pc_v(g, id);
    v->op = op;
    v->dtype = dt;
    v->shape = shape;
    v->nin = nin;
    v->in = ins;
    if (attrs) memcpy(v->attr, attrs, sizeof v->attr);
    else pc_attr_defaults(op, v->attr);
    return id;
}
