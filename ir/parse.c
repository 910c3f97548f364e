/* Text IR parser: a recursive-descent parser for the format that ir/print.c writes, on the line
 * lexer of ir/parse_lex.c. It never reads past `len` (the text need not be NUL-terminated), reports
 * the first error of each line as "FILE:LINE:COL: error: MSG" and continues with the next line
 * (at most MAX_ERRORS, parse_lex.c), and creates nodes with their declared types (pc_node_raw): type
 * checking is pc_verify's job. */
#include "parse_internal.h"
#include "runtime/bf16.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NUMEL_LIMIT (1ll << 40)

/* ---- poisoned values ---- */
static void mark_bad(parser *ps, pc_val v) {
    if (v < 0) return;
    if ((size_t)v >= ps->badcap) {
        size_t cap = ps->badcap ? ps->badcap : 64;
        while (cap <= (size_t)v) cap *= 2;
        unsigned char *b = realloc(ps->bad, cap);
        if (!b) return;
        memset(b + ps->badcap, 0, cap - ps->badcap);
        ps->bad = b;
        ps->badcap = cap;
    }
    ps->bad[v] = 1;
}
static bool is_bad(const parser *ps, pc_val v) { return v >= 0 && (size_t)v < ps->badcap && ps->bad[v]; }

/* a line that failed after naming its value defines a placeholder, so that later lines using
 * the name do not report a second, misleading "undefined value" */
static void poison_name(parser *ps, const char *name, pc_loc at) {
    if (!name || pc_lookup(ps->g, name) != PC_NONE || ps->g->error) return;
    pc_val v = pc_node_raw(ps->g, at, name, PC_OP_input, 0, NULL, NULL, PC_F32, (pc_shape){0});
    if (v == PC_NONE) { pc_graph_clear_error(ps->g); return; }
    mark_bad(ps, v);
}

/* a use of %name: the value, or PC_NONE after reporting (or silently, for a poisoned value) */
static pc_val use_value(parser *ps, const char *what) {
    lex_skip_ws(ps);
    size_t pos = ps->p;
    char *n = lex_sigil_name(ps, '%', what);
    if (!n) return PC_NONE;
    pc_val v = pc_lookup(ps->g, n);
    if (v == PC_NONE) parse_error(ps, pos, "use of undefined value '%%%s'", n);
    else if (is_bad(ps, v)) { parse_fail_silent(ps); v = PC_NONE; }
    free(n);
    return v;
}

/* ---- types ---- */
static int parse_type(parser *ps, pc_dtype *dt, pc_shape *s) {
    lex_skip_ws(ps);
    size_t start = ps->p, n = 0;
    while (start + n < ps->le && (is_alpha(ps->t[start + n]) || is_digit(ps->t[start + n]))) n++;
    char buf[160], tmp[128];
    if (n == 0) return parse_error(ps, start, "expected a type such as f32[2,3], found %s", lex_found(ps, buf, sizeof buf));
    if (n == 3 && !memcmp(ps->t + start, "f32", 3)) *dt = PC_F32;
    else if (n == 3 && !memcmp(ps->t + start, "i32", 3)) *dt = PC_I32;
    else if (n == 4 && !memcmp(ps->t + start, "bf16", 4)) *dt = PC_BF16;
    else return parse_error(ps, start, "unknown dtype '%s' (f32, i32, bf16)", lex_snip(ps, start, start + n, tmp, sizeof tmp));
    ps->p = start + n;
    if (lex_peek(ps) != '[')
        return parse_error(ps, ps->p, "malformed type: expected '[' after '%s', found %s", pc_dtype_name(*dt),
                           lex_found(ps, buf, sizeof buf));
    ps->p++;
    *s = (pc_shape){0};
    int rank = 0;
    double numel = 1;
    if (!lex_accept(ps, ']')) {
        for (;;) {
            lex_skip_ws(ps);
            size_t dpos = ps->p;
            if (!is_digit(lex_peek(ps)))
                return parse_error(ps, dpos, "malformed type: expected a dimension, found %s", lex_found(ps, buf, sizeof buf));
            int64_t d = 0;
            while (is_digit(lex_peek(ps))) {
                int dig = ps->t[ps->p] - '0';
                if (d > (INT64_MAX - dig) / 10) {
                    while (is_digit(lex_peek(ps))) ps->p++;
                    return parse_error(ps, dpos, "dimension %s overflows", lex_snip(ps, dpos, ps->p, tmp, sizeof tmp));
                }
                d = d * 10 + dig;
                ps->p++;
            }
            if (rank < PC_MAX_RANK) s->dim[rank] = d;
            rank++;
            numel *= (double)d;
            if (lex_accept(ps, ']')) break;
            if (!lex_accept(ps, ','))
                return parse_error(ps, ps->p, "malformed type: expected ',' or ']', found %s", lex_found(ps, buf, sizeof buf));
        }
    }
    if (rank > PC_MAX_RANK) return parse_error(ps, start, "rank %d exceeds the maximum rank %d", rank, PC_MAX_RANK);
    s->rank = rank;
    if (numel > (double)NUMEL_LIMIT) {
        char sh[192];
        pc_shape_str(*s, sh, sizeof sh);
        return parse_error(ps, start, "type %s%s is too large (%.0f elements, limit 2^40)", pc_dtype_name(*dt), sh, numel);
    }
    return 0;
}

static const char *type_str(pc_dtype dt, pc_shape s, char *buf, size_t n) {
    char sh[192];
    pc_shape_str(s, sh, sizeof sh);
    snprintf(buf, n, "%s%s", pc_dtype_name(dt), sh);
    return buf;
}

/* ---- leaves ---- */
static int parse_init(parser *ps, pc_init *init) {
    *init = (pc_init){PC_INIT_NONE, 0, 0};
    if (lex_at_end(ps)) return 0;
    char buf[160], tmp[128];
    if (!lex_accept_kw(ps, "init")) return parse_error(ps, ps->p, "expected 'init=...' or end of line, found %s", lex_found(ps, buf, sizeof buf));
    if (lex_expect(ps, '=', "'=' after 'init'")) return -1;
    lex_skip_ws(ps);
    size_t kpos = ps->p, n = lex_ident_len(ps);
    int nargs;
    if (n && lex_ident_is(ps, n, "zeros")) init->kind = PC_INIT_ZEROS, nargs = 0;
    else if (n && lex_ident_is(ps, n, "ones")) init->kind = PC_INIT_ONES, nargs = 0;
    else if (n && lex_ident_is(ps, n, "uniform")) init->kind = PC_INIT_UNIFORM, nargs = 2;
    else if (n && lex_ident_is(ps, n, "normal")) init->kind = PC_INIT_NORMAL, nargs = 1;
    else if (n && lex_ident_is(ps, n, "kaiming_uniform")) init->kind = PC_INIT_KAIMING_UNIFORM, nargs = 1;
    else {
        size_t e = ps->p;
        while (e < ps->le && !is_ws(ps->t[e]) && ps->t[e] != '(') e++;
        return parse_error(ps, kpos, "unknown init '%s' (zeros, ones, uniform(a, b), normal(std), kaiming_uniform(a))",
                           lex_snip(ps, ps->p, e, tmp, sizeof tmp));
    }
    ps->p += n;
    static const char *const usage[] = {"", "zeros", "ones", "uniform(a, b)", "normal(std)", "kaiming_uniform(a)"};
    if (nargs == 0) {
        lex_skip_ws(ps);
        if (lex_peek(ps) == '(') return parse_error(ps, ps->p, "init %s takes no arguments", usage[init->kind]);
        return 0;
    }
    if (!lex_accept(ps, '('))
        return parse_error(ps, ps->p, "init %s needs %d argument%s: %s", usage[init->kind], nargs, nargs > 1 ? "s" : "",
                           usage[init->kind]);
    double args[2] = {0, 0};
    int got = 0;
    for (;;) {
        lex_skip_ws(ps);
        if (got == 0 && lex_peek(ps) == ')') { ps->p++; break; }
        double x;
        if (lex_number_double(ps, "a number", &x)) return -1;
        if (got < 2) args[got] = x;
        got++;
        if (lex_accept(ps, ')')) break;
        if (!lex_accept(ps, ',')) return parse_error(ps, ps->p, "expected ',' or ')' in init, found %s", lex_found(ps, buf, sizeof buf));
    }
    if (got != nargs)
        return parse_error(ps, kpos, "init %s takes %d argument%s, got %d", usage[init->kind], nargs, nargs > 1 ? "s" : "", got);
    init->a = args[0];
    init->b = args[1];
    return 0;
}

/* one constant element into data[i] */
static int const_elem(parser *ps, pc_dtype dt, void *data, int64_t i) {
    num_tok nt;
    if (lex_number(ps, &nt, "a number")) return -1;
    if (dt == PC_I32) {
        if (!nt.integer) return parse_error(ps, nt.a, "expected an integer for an i32 constant, found '%s'", nt.text);
        errno = 0;
        long long x = strtoll(nt.text, NULL, 10);
        if (errno || x < INT32_MIN || x > INT32_MAX) return parse_error(ps, nt.a, "value %s is out of range for i32", nt.text);
        ((int32_t *)data)[i] = (int32_t)x;
        return 0;
    }
    float f = strtof(nt.text, NULL);
    if (isinf(f) && !strstr(nt.text, "inf")) return parse_error(ps, nt.a, "value %s is out of range for %s", nt.text, pc_dtype_name(dt));
    if (dt == PC_F32) ((float *)data)[i] = f;
    else ((uint16_t *)data)[i] = pc_f32_to_bf16(f);
    return 0;
}

static int parse_const_data(parser *ps, pc_dtype dt, pc_shape s, void **out) {
    *out = NULL;
    lex_skip_ws(ps);
    char buf[160], ty[192];
    int64_t numel = pc_shape_numel(s);
    size_t esz = pc_dtype_size(dt);
    type_str(dt, s, ty, sizeof ty);
    size_t n = lex_ident_len(ps);
    if (n && lex_ident_is(ps, n, "elided")) { ps->p += n; return 0; }
    if (lex_peek(ps) != '[') {
        if (ps->p >= ps->le) return parse_error(ps, ps->p, "expected the constant's value, 'elided' or a list, found end of line");
        size_t pos = ps->p;
        if (numel != 1) {
            num_tok nt;
            if (lex_number(ps, &nt, "the constant's value ('elided', a number or a list)")) return -1;
            return parse_error(ps, pos, "const %s needs a list of %lld values, got a single number", ty, (long long)numel);
        }
        void *d = malloc(esz);
        if (!d) return parse_error(ps, pos, "out of memory");
        if (const_elem(ps, dt, d, 0)) { free(d); return -1; }
        *out = d;
        return 0;
    }
    size_t lpos = ps->p++;
    int64_t cap = numel < 1024 ? (numel > 0 ? numel : 1) : 1024, got = 0;
    char *d = malloc((size_t)cap * esz);
    if (!d) return parse_error(ps, lpos, "out of memory");
    if (!lex_accept(ps, ']')) {
        for (;;) {
            lex_skip_ws(ps);
            if (got == numel) {
                free(d);
                return parse_error(ps, ps->p, "too many values for const %s (expected %lld)", ty, (long long)numel);
            }
            if (got == cap) {
                cap = cap * 2 < numel ? cap * 2 : numel;
                char *nd = realloc(d, (size_t)cap * esz);
                if (!nd) { free(d); return parse_error(ps, ps->p, "out of memory"); }
                d = nd;
            }
            if (const_elem(ps, dt, d, got)) { free(d); return -1; }
            got++;
            if (lex_accept(ps, ']')) break;
            if (!lex_accept(ps, ',')) {
                free(d);
                if (ps->p >= ps->le) return parse_error(ps, ps->p, "unterminated list: expected ',' or ']', found end of line");
                return parse_error(ps, ps->p, "expected ',' or ']' in the value list, found %s", lex_found(ps, buf, sizeof buf));
            }
        }
    }
    if (got != numel) {
        free(d);
        return parse_error(ps, lpos, "const %s needs %lld values, got %lld", ty, (long long)numel, (long long)got);
    }
    *out = d;
    return 0;
}

/* ---- checkpoint keys (pc_lookup_key is a linear scan) ---- */
static uint64_t hash_key(const char *s) {
    uint64_t h = 1469598103934665603ull;
    while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

static pc_val find_key(const parser *ps, const char *key) {
    if (!ps->capkeys) return PC_NONE;
    for (size_t h = hash_key(key) & (ps->capkeys - 1);; h = (h + 1) & (ps->capkeys - 1)) {
        pc_val v = ps->keys[h];
        if (v == PC_NONE) return PC_NONE;
        if (strcmp(ps->g->vals[v].key, key) == 0) return v;
    }
}

static int add_key(parser *ps, pc_val v) {
    if (2 * (ps->nkeys + 1) > ps->capkeys) {
        size_t cap = ps->capkeys ? 2 * ps->capkeys : 64;
        pc_val *k = malloc(cap * sizeof *k);
        if (!k) return -1;
        for (size_t i = 0; i < cap; i++) k[i] = PC_NONE;
        for (size_t i = 0; i < ps->capkeys; i++) {
            pc_val x = ps->keys[i];
            if (x == PC_NONE) continue;
            size_t h = hash_key(ps->g->vals[x].key) & (cap - 1);
            while (k[h] != PC_NONE) h = (h + 1) & (cap - 1);
            k[h] = x;
        }
        free(ps->keys);
        ps->keys = k;
        ps->capkeys = cap;
    }
    size_t h = hash_key(ps->g->vals[v].key) & (ps->capkeys - 1);
    while (ps->keys[h] != PC_NONE) h = (h + 1) & (ps->capkeys - 1);
    ps->keys[h] = v;
    ps->nkeys++;
    return 0;
}

static int check_key(parser *ps, size_t pos, const char *key) {
    pc_val other = find_key(ps, key);
    if (other != PC_NONE) return parse_error(ps, pos, "key \"%s\" is already used by '%%%s'", key, ps->g->vals[other].name);
    return 0;
}

/* defines a leaf value; takes ownership of key and data */
static pc_val define_leaf(parser *ps, pc_loc at, const char *name, pc_opcode op, pc_dtype dt, pc_shape s,
                          unsigned flags, char *key, pc_init init, void *data) {
    pc_val v = pc_node_raw(ps->g, at, name, op, 0, NULL, NULL, dt, s);
    if (v == PC_NONE) { free(key); free(data); return PC_NONE; }
    pc_value *x = pc_v(ps->g, v);
    x->flags = flags;
    x->key = key;
    x->init = init;
    x->data = data;
    if (key && add_key(ps, v)) {
        parse_error(ps, ps->ls, "out of memory");
        ps->stop = true;
    }
    return v;
}

/* ---- attributes ---- */
/* INT and INTS values must fit in int64 (strtoll in pc_attr_parse saturates silently) */
static bool ints_fit(const char *v) {
    for (const char *s = v; *s;) {
        if (is_digit(*s)) {
            errno = 0;
            char *e;
            (void)strtoll(s, &e, 10);
            if (errno == ERANGE) return false;
            s = e;
        } else s++;
    }
    return true;
}

static int parse_attrs(parser *ps, pc_opcode op, pc_attr attrs[PC_MAX_ATTRS]) {
    const pc_op_info *info = pc_op_get(op);
    unsigned seen = 0;
    char buf[160], tmp[128], msg[256];
    if (lex_accept(ps, '}')) return 0;
    for (;;) {
        lex_skip_ws(ps);
        size_t npos = ps->p, n = lex_ident_len(ps);
        if (!n) return parse_error(ps, npos, "expected an attribute name, found %s", lex_found(ps, buf, sizeof buf));
        int k = -1;
        for (int i = 0; i < info->nattrs; i++)
            if (lex_ident_is(ps, n, info->attrs[i].name)) k = i;
        lex_snip(ps, npos, npos + n, tmp, sizeof tmp);
        if (k < 0) {
            if (info->nattrs == 0) return parse_error(ps, npos, "unknown attribute '%s': %s has no attributes", tmp, info->name);
            return parse_error(ps, npos, "unknown attribute '%s' for %s", tmp, info->name);
        }
        if (seen & (1u << k)) return parse_error(ps, npos, "duplicate attribute '%s'", tmp);
        seen |= 1u << k;
        ps->p += n;
        if (lex_expect(ps, '=', "'=' after the attribute name")) return -1;
        lex_skip_ws(ps);
        size_t vpos = ps->p, e = ps->p;
        if (lex_peek(ps) == '[') {
            while (e < ps->le && ps->t[e] != ']') e++;
            if (e >= ps->le) return parse_error(ps, vpos, "unterminated list value of attribute '%s'", tmp);
            e++;
        } else {
            while (e < ps->le && !is_ws(ps->t[e]) && ps->t[e] != ',' && ps->t[e] != '}') e++;
        }
        if (e == vpos) return parse_error(ps, vpos, "expected a value for attribute '%s', found %s", tmp, lex_found(ps, buf, sizeof buf));
        if (e - vpos > 400) return parse_error(ps, vpos, "value of attribute '%s' is too long", tmp);
        char text[512];
        size_t o = 0;
        memcpy(text, info->attrs[k].name, strlen(info->attrs[k].name));
        o = strlen(info->attrs[k].name);
        text[o++] = '=';
        for (size_t i = vpos; i < e; i++) {
            char c = ps->t[i];
            if (is_ws(c)) continue;
            if (c == 0 || (unsigned char)c >= 0x7f || (unsigned char)c < 0x20) {
                return parse_error(ps, vpos, "bad value for attribute '%s' of %s: '%s'", tmp, info->name,
                                   lex_snip(ps, vpos, e, buf, sizeof buf));
            }
            text[o++] = c;
        }
        text[o] = 0;
        if (info->attrs[k].kind != PC_ATTR_FLOAT && !ints_fit(text + strlen(info->attrs[k].name) + 1))
            return parse_error(ps, vpos, "value of attribute '%s' is out of range: '%s'", tmp, lex_snip(ps, vpos, e, buf, sizeof buf));
        if (pc_attr_parse(op, attrs, text, msg, sizeof msg)) return parse_error(ps, vpos, "%s", msg);
        ps->p = e;
        if (lex_accept(ps, '}')) return 0;
        if (!lex_accept(ps, ',')) {
            if (ps->p >= ps->le) return parse_error(ps, ps->p, "expected ',' or '}' in the attributes, found end of line");
            return parse_error(ps, ps->p, "expected ',' or '}' in the attributes, found %s", lex_found(ps, buf, sizeof buf));
        }
    }
}

/* ---- lines ---- */
static void parse_value_line(parser *ps) {
    size_t npos = ps->p;
    char *name = lex_sigil_name(ps, '%', "a value name");
    if (!name) return;
    pc_loc at = lex_line_loc(ps, npos);
    char buf[160], tmp[128];
    pc_val v = PC_NONE;
    pc_val *ins = NULL;
    if (pc_lookup(ps->g, name) != PC_NONE) {
        pc_val prev = pc_lookup(ps->g, name);
        const pc_value *pv = pc_v(ps->g, prev);
        if (pv->loc.file && pv->loc.line)
            parse_error(ps, npos, "redefinition of value '%%%s' (first defined at %s:%d)", name, pv->loc.file, pv->loc.line);
        else parse_error(ps, npos, "redefinition of value '%%%s'", name);
        free(name);
        return;
    }
    if (lex_expect(ps, '=', "'=' after the value name")) goto out;
    lex_skip_ws(ps);
    size_t opos = ps->p, n = lex_ident_len(ps);
    if (!n) { parse_error(ps, opos, "expected an op name, found %s", lex_found(ps, buf, sizeof buf)); goto out; }
    pc_dtype dt;
    pc_shape s;
    if (lex_ident_is(ps, n, "param") || lex_ident_is(ps, n, "state")) {
        bool is_param = lex_ident_is(ps, n, "param");
        unsigned flags = PC_STATE;
        ps->p += n;
        if (is_param) {
            if (lex_accept_kw(ps, "frozen")) flags = PC_FROZEN;
            else if (lex_accept_kw(ps, "trainable")) flags = PC_TRAINABLE;
            else { parse_error(ps, ps->p, "expected 'frozen' or 'trainable' after 'param', found %s", lex_found(ps, buf, sizeof buf)); goto out; }
        }
        if (parse_type(ps, &dt, &s)) goto out;
        lex_skip_ws(ps);
        size_t kpos = ps->p;
        char *key = lex_string(ps, "a quoted checkpoint key");
        if (!key) goto out;
        pc_init init;
        if (check_key(ps, kpos, key) || parse_init(ps, &init) || lex_expect_eol(ps, "the param")) { free(key); goto out; }
        v = define_leaf(ps, at, name, is_param ? PC_OP_param : PC_OP_state, dt, s, flags, key, init, NULL);
    } else if (lex_ident_is(ps, n, "const")) {
        ps->p += n;
        if (parse_type(ps, &dt, &s)) goto out;
        void *data;
        if (parse_const_data(ps, dt, s, &data)) goto out;
        if (lex_expect_eol(ps, "the constant")) { free(data); goto out; }
        v = define_leaf(ps, at, name, PC_OP_const, dt, s, PC_CONST, NULL, (pc_init){0}, data);
    } else {
        lex_snip(ps, opos, opos + n, tmp, sizeof tmp);
        int code = -1;
        if (n < 64) {
            char opname[64];
            memcpy(opname, ps->t + opos, n);
            opname[n] = 0;
            code = pc_op_find(opname);
        }
        if (code < 0) { parse_error(ps, opos, "unknown op '%s'", tmp); goto out; }
        if (code == PC_OP_input) { parse_error(ps, opos, "inputs are declared in the graph header"); goto out; }
        const pc_op_info *info = pc_op_get((pc_opcode)code);
        ps->p += n;
        int nin = 0, cap = 0;
        lex_skip_ws(ps);
        if (lex_peek(ps) == '%') {
            for (;;) {
                pc_val x = use_value(ps, "an operand");
                if (x == PC_NONE) goto out;
                if (nin == cap) {
                    cap = cap ? 2 * cap : 4;
                    pc_val *ni = realloc(ins, (size_t)cap * sizeof *ni);
                    if (!ni) { parse_error(ps, ps->p, "out of memory"); goto out; }
                    ins = ni;
                }
                ins[nin++] = x;
                if (!lex_accept(ps, ',')) break;
                lex_skip_ws(ps);
                if (lex_peek(ps) != '%') {
                    parse_error(ps, ps->p, "expected an operand after ',', found %s", lex_found(ps, buf, sizeof buf));
                    goto out;
                }
            }
        }
        if (info->nin >= 0 ? nin != info->nin : nin < 1) {
            if (info->nin >= 0)
                parse_error(ps, opos, "%s takes %d operand%s, got %d", info->name, info->nin, info->nin == 1 ? "" : "s", nin);
            else parse_error(ps, opos, "%s takes at least 1 operand, got 0", info->name);
            goto out;
        }
        pc_attr attrs[PC_MAX_ATTRS];
        pc_attr_defaults((pc_opcode)code, attrs);
        if (lex_accept(ps, '{') && parse_attrs(ps, (pc_opcode)code, attrs)) goto out;
        lex_skip_ws(ps);
        if (lex_peek(ps) != ':') {
            if (ps->p >= ps->le) parse_error(ps, ps->p, "missing ': TYPE' result type annotation at end of line");
            else parse_error(ps, ps->p, "expected ': TYPE' (the result type), found %s", lex_found(ps, buf, sizeof buf));
            goto out;
        }
        ps->p++;
        if (parse_type(ps, &dt, &s) || lex_expect_eol(ps, "the result type")) goto out;
        v = pc_node_raw(ps->g, at, name, (pc_opcode)code, nin, ins, attrs, dt, s);
    }
    if (v == PC_NONE && !ps->failed) {
        parse_error(ps, npos, "%s", ps->g->error ? ps->g->error : "cannot define the value");
        ps->stop = true;
    }
out:
    if (ps->failed && v == PC_NONE) poison_name(ps, name, at);
    free(ins);
    free(name);
}

static void parse_update_line(parser *ps) {
    lex_skip_ws(ps);
    size_t tpos = ps->p;
    pc_val t = use_value(ps, "the updated param or state ('%name')");
    if (t == PC_NONE) return;
    lex_skip_ws(ps);
    char buf[160], t1[200], t2[200];
    if (!(ps->p + 2 <= ps->le && ps->t[ps->p] == '<' && ps->t[ps->p + 1] == '-')) {
        parse_error(ps, ps->p, "expected '<-' in 'update %%target <- %%next', found %s", lex_found(ps, buf, sizeof buf));
        return;
    }
    ps->p += 2;
    lex_skip_ws(ps);
    size_t npos = ps->p;
    pc_val nx = use_value(ps, "the new value ('%name')");
    if (nx == PC_NONE || lex_expect_eol(ps, "the update")) return;
    pc_graph *g = ps->g;
    pc_value *tv = pc_v(g, t), *nv = pc_v(g, nx);
    if (tv->op != PC_OP_param && tv->op != PC_OP_state) {
        parse_error(ps, tpos, "update target '%%%s' is not a param or state", tv->name);
        return;
    }
    if (tv->dtype != nv->dtype || !pc_shape_eq(tv->shape, nv->shape)) {
        parse_error(ps, npos, "update of '%%%s' (%s) with '%%%s' of a different type (%s)", tv->name,
                    type_str(tv->dtype, tv->shape, t1, sizeof t1), nv->name, type_str(nv->dtype, nv->shape, t2, sizeof t2));
        return;
    }
    for (int i = 0; i < g->nupdates; i++)
        if (g->updates[i].target == t) {
            parse_error(ps, tpos, "duplicate update of '%%%s'", tv->name);
            return;
        }
    if (g->nupdates == g->capupd) {
        int cap = g->capupd ? 2 * g->capupd : 8;
        pc_update *u = realloc(g->updates, (size_t)cap * sizeof *u);
        if (!u) { parse_error(ps, tpos, "out of memory"); ps->stop = true; return; }
        g->updates = u;
        g->capupd = cap;
    }
    g->updates[g->nupdates++] = (pc_update){t, nx};
}

static void parse_body_line(parser *ps) {
    lex_skip_ws(ps);
    char c = lex_peek(ps);
    if (c == '%') { parse_value_line(ps); return; }
    size_t n = lex_ident_len(ps);
    if (n && lex_ident_is(ps, n, "update")) {
        ps->p += n;
        parse_update_line(ps);
        return;
    }
    char buf[160];
    parse_error(ps, ps->p, "expected a value definition ('%%name = ...'), 'update' or '}', found %s", lex_found(ps, buf, sizeof buf));
}

static const char header_usage[] = "'graph @name(%in: TYPE, ...) -> (%out: TYPE, ...) {'";

static int parse_header(parser *ps) {
    char buf[160];
    if (!lex_accept_kw(ps, "graph"))
        return parse_error(ps, ps->p, "expected the graph header %s, found %s", header_usage, lex_found(ps, buf, sizeof buf));
    char *gname = lex_sigil_name(ps, '@', "'@' and the graph name");
    if (!gname) return -1;
    ps->g = pc_graph_new(gname);
    free(gname);
    if (!ps->g) return parse_error(ps, ps->p, "out of memory");
    if (lex_expect(ps, '(', "'(' and the graph inputs")) return -1;
    if (!lex_accept(ps, ')')) {
        for (;;) {
            lex_skip_ws(ps);
            size_t npos = ps->p;
            char *name = lex_sigil_name(ps, '%', "an input ('%name: TYPE')");
            if (!name) return -1;
            pc_dtype dt;
            pc_shape s;
            if (pc_lookup(ps->g, name) != PC_NONE) {
                parse_error(ps, npos, "redefinition of value '%%%s'", name);
                free(name);
                return -1;
            }
            if (lex_expect(ps, ':', "':' and the input type") || parse_type(ps, &dt, &s)) { free(name); return -1; }
            pc_val v = define_leaf(ps, lex_text_loc(ps, npos), name, PC_OP_input, dt, s, PC_INPUT, NULL, (pc_init){0}, NULL);
            free(name);
            if (v == PC_NONE) return parse_error(ps, npos, "cannot define the input");
            if (lex_accept(ps, ')')) break;
            if (!lex_accept(ps, ',')) return parse_error(ps, ps->p, "expected ',' or ')' after an input, found %s", lex_found(ps, buf, sizeof buf));
        }
    }
    lex_skip_ws(ps);
    if (!(ps->p + 2 <= ps->le && ps->t[ps->p] == '-' && ps->t[ps->p + 1] == '>'))
        return parse_error(ps, ps->p, "expected '->' and the graph outputs, found %s", lex_found(ps, buf, sizeof buf));
    ps->p += 2;
    if (lex_expect(ps, '(', "'(' and the graph outputs")) return -1;
    if (!lex_accept(ps, ')')) {
        for (;;) {
            lex_skip_ws(ps);
            size_t npos = ps->p;
            char *name = lex_sigil_name(ps, '%', "an output ('%name: TYPE')");
            if (!name) return -1;
            pending_out o = {name, PC_F32, {0}, false, ps->lno, npos - ps->ls + 1};
            if (lex_expect(ps, ':', "':' and the output type") || parse_type(ps, &o.dt, &o.shape)) { free(name); return -1; }
            o.loss = lex_accept_kw(ps, "loss");
            if (ps->nouts == ps->capouts) {
                int cap = ps->capouts ? 2 * ps->capouts : 4;
                pending_out *no = realloc(ps->outs, (size_t)cap * sizeof *no);
                if (!no) { free(name); return parse_error(ps, npos, "out of memory"); }
                ps->outs = no;
                ps->capouts = cap;
            }
            ps->outs[ps->nouts++] = o;
            if (lex_accept(ps, ')')) break;
            if (!lex_accept(ps, ','))
                return parse_error(ps, ps->p, "expected ',' or ')' after an output, found %s", lex_found(ps, buf, sizeof buf));
        }
    }
    if (lex_expect(ps, '{', "'{' at the end of the graph header")) return -1;
    return lex_expect_eol(ps, "'{'");
}

/* binds the header's outputs to the values of the body */
static void resolve_outputs(parser *ps) {
    pc_graph *g = ps->g;
    char t1[200], t2[200];
    for (int k = 0; k < ps->nouts && !ps->stop; k++) {
        pending_out *o = &ps->outs[k];
        pc_val v = pc_lookup(g, o->name);
        if (v == PC_NONE) {
            parse_report_at(ps, o->line, o->col, "output '%%%s' is not defined", o->name);
            continue;
        }
        if (is_bad(ps, v)) continue;
        pc_value *x = pc_v(g, v);
        bool dup = false;
        for (int j = 0; j < k; j++) dup = dup || strcmp(ps->outs[j].name, o->name) == 0;
        if (dup) {
            parse_report_at(ps, o->line, o->col, "output '%%%s' is listed twice", o->name);
            continue;
        }
        if (x->dtype != o->dt || !pc_shape_eq(x->shape, o->shape)) {
            parse_report_at(ps, o->line, o->col, "output '%%%s' is declared as %s but defined as %s", o->name,
                            type_str(o->dt, o->shape, t1, sizeof t1), type_str(x->dtype, x->shape, t2, sizeof t2));
            continue;
        }
        if (o->loss && (x->dtype != PC_F32 || x->shape.rank != 0)) {
            parse_report_at(ps, o->line, o->col, "loss '%%%s' must be a scalar f32, got %s", o->name,
                            type_str(x->dtype, x->shape, t1, sizeof t1));
            continue;
        }
        if (pc_mark_output(g, v)) {
            parse_report_at(ps, o->line, o->col, "out of memory");
            return;
        }
        if (o->loss) x->flags |= PC_LOSS;
    }
}

enum { ST_HEADER, ST_BODY, ST_AFTER };

pc_graph *pc_parse(const char *text, size_t len, const char *filename, char **err) {
    parser ps_ = {0}, *ps = &ps_;
    ps->t = text ? text : "";
    ps->len = text ? len : 0;
    ps->file = filename ? filename : "<input>";
    int state = ST_HEADER;
    size_t pos = 0, eof_line = 1, eof_col = 1;
    while (pos < ps->len && !ps->stop) {
        const char *nl = memchr(ps->t + pos, '\n', ps->len - pos);
        size_t end = nl ? (size_t)(nl - ps->t) : ps->len;
        lex_start_line(ps, pos, end);
        eof_line = nl ? ps->lno + 1 : ps->lno;
        eof_col = nl ? 1 : end - pos + 1;
        pos = nl ? end + 1 : end;
        if (lex_at_end(ps)) continue; /* blank or comment-only line */
        switch (state) {
        case ST_HEADER:
            if (parse_header(ps)) ps->stop = true;
            else state = ST_BODY;
            break;
        case ST_BODY:
            if (lex_peek(ps) == '}') {
                ps->p++;
                char tmp[128];
                if (!lex_at_end(ps)) parse_error(ps, ps->p, "unexpected '%s' after the closing '}'", lex_snip(ps, ps->p, ps->le, tmp, sizeof tmp));
                state = ST_AFTER;
                break;
            }
            parse_body_line(ps);
            break;
        case ST_AFTER: {
            char tmp[128];
            parse_error(ps, ps->p, "unexpected text after the end of the graph: '%s'", lex_snip(ps, ps->p, ps->le, tmp, sizeof tmp));
            ps->stop = true;
            break;
        }
        }
    }
    if (!ps->stop) {
        if (state == ST_HEADER)
            parse_report_at(ps, eof_line, eof_col, "expected the graph header %s, found end of input", header_usage);
        else if (state == ST_BODY)
            parse_report_at(ps, eof_line, eof_col, "missing '}' at the end of the graph");
    }
    if (ps->g && state != ST_HEADER && !ps->stop) resolve_outputs(ps);

    for (int k = 0; k < ps->nouts; k++) free(ps->outs[k].name);
    free(ps->outs);
    free(ps->bad);
    free(ps->scratch);
    free(ps->keys);
    char *msgs = pc_sb_take(&ps->errs);
    if (ps->nerr || !ps->g) {
        pc_graph_free(ps->g);
        if (err) *err = msgs;
        else free(msgs);
        return NULL;
    }
    free(msgs);
    if (err) *err = NULL;
    return ps->g;
}

