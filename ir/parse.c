/* Text IR parser: a hand-written line lexer and recursive-descent parser for the format that
 * ir/print.c writes. It never reads past `len` (the text need not be NUL-terminated), reports
 * the first error of each line as "FILE:LINE:COL: error: MSG" and continues with the next line
 * (at most MAX_ERRORS), and creates nodes with their declared types (pc_node_raw): type
 * checking is pc_verify's job. */
#include "ir.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ERRORS 50
#define MAX_NUMBER_LEN 512
#define NUMEL_LIMIT (1ll << 40)

typedef struct {
    char *name;
    pc_dtype dt;
    pc_shape shape;
    bool loss;
    size_t line, col;
} pending_out;

typedef struct {
    const char *t; /* the whole text */
    size_t len;
    const char *file;
    pc_strbuf errs;
    int nerr;
    bool stop;
    pc_graph *g;
    /* current line: [ls, le) is the code (no trailing comment, no trailing blanks) */
    size_t lno, ls, le, p;
    size_t cs, ce; /* trailing comment text [cs, ce), cs == ce when none */
    bool failed;   /* the current line already reported (or silently inherited) an error */
    /* values defined by lines that failed: uses of them fail silently */
    unsigned char *bad;
    size_t badcap;
    pending_out *outs;
    int nouts, capouts;
    char *scratch; /* reusable buffer for names / file names */
    size_t scap;
    pc_val *keys; /* open-addressing hash of the params/states by checkpoint key */
    size_t nkeys, capkeys;
} P;

/* ---- errors ---- */
static void vreport(P *ps, size_t line, size_t col, const char *fmt, va_list ap) {
    if (ps->stop) return;
    if (ps->nerr == MAX_ERRORS) {
        pc_sb_printf(&ps->errs, "%s:%zu:%zu: error: too many errors, giving up\n", ps->file, line, col);
        ps->stop = true;
        return;
    }
    pc_sb_printf(&ps->errs, "%s:%zu:%zu: error: ", ps->file, line, col);
    pc_sb_vprintf(&ps->errs, fmt, ap);
    pc_sb_printf(&ps->errs, "\n");
    ps->nerr++;
}

static void report_at(P *ps, size_t line, size_t col, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void report_at(P *ps, size_t line, size_t col, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vreport(ps, line, col, fmt, ap);
    va_end(ap);
}

/* first error of the current line, at byte offset pos of the text */
static int perr(P *ps, size_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int perr(P *ps, size_t pos, const char *fmt, ...) {
    if (ps->failed) return -1;
    ps->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vreport(ps, ps->lno, pos - ps->ls + 1, fmt, ap);
    va_end(ap);
    return -1;
}

/* fail the line without a message (an operand comes from a line that already failed) */
static int pfail_silent(P *ps) {
    ps->failed = true;
    return -1;
}

/* quotes text[a, b) for a message: non-printable bytes as \xNN, long text cut */
static const char *snip(const P *ps, size_t a, size_t b, char *out, size_t outlen) {
    size_t o = 0;
    for (size_t i = a; i < b && o + 8 < outlen; i++) {
        unsigned char c = (unsigned char)ps->t[i];
        if (o > 40) { memcpy(out + o, "...", 3); o += 3; break; }
        if (c >= 0x20 && c < 0x7f && c != '\'') out[o++] = (char)c;
        else o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
    }
    out[o] = 0;
    return out;
}

/* ---- lexing helpers on the current line ---- */
static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }
static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_namec(char c) { return is_alpha(c) || is_digit(c) || c == '.' || c == '-'; }

static void skip_ws(P *ps) {
    while (ps->p < ps->le && is_ws(ps->t[ps->p])) ps->p++;
}
static bool at_end(P *ps) {
    skip_ws(ps);
    return ps->p >= ps->le;
}
static char peek(const P *ps) { return ps->p < ps->le ? ps->t[ps->p] : 0; }

/* the rest of the token at p, for "found 'x'" messages */
static const char *found(P *ps, char *buf, size_t n) {
    if (ps->p >= ps->le) return "end of line";
    size_t e = ps->p;
    if (is_namec(ps->t[e]) || ps->t[e] == '%' || ps->t[e] == '@') {
        e++;
        while (e < ps->le && is_namec(ps->t[e])) e++;
    } else e++;
    char tmp[128];
    snip(ps, ps->p, e, tmp, sizeof tmp);
    snprintf(buf, n, "'%s'", tmp);
    return buf;
}

static bool accept(P *ps, char c) {
    skip_ws(ps);
    if (peek(ps) == c) { ps->p++; return true; }
    return false;
}

static int expect(P *ps, char c, const char *what) {
    if (accept(ps, c)) return 0;
    char buf[160];
    return perr(ps, ps->p, "expected %s, found %s", what, found(ps, buf, sizeof buf));
}

/* identifier [A-Za-z_][A-Za-z0-9_]* ; returns its length (0 = none) without consuming */
static size_t ident_len(const P *ps) {
    size_t e = ps->p;
    if (e >= ps->le || !is_alpha(ps->t[e])) return 0;
    while (e < ps->le && (is_alpha(ps->t[e]) || is_digit(ps->t[e]))) e++;
    return e - ps->p;
}

static bool ident_is(const P *ps, size_t n, const char *kw) {
    return strlen(kw) == n && memcmp(ps->t + ps->p, kw, n) == 0;
}

/* accepts the keyword kw when it is the whole next identifier */
static bool accept_kw(P *ps, const char *kw) {
    skip_ws(ps);
    size_t n = ident_len(ps);
    if (n && ident_is(ps, n, kw)) { ps->p += n; return true; }
    return false;
}

static char *scratch(P *ps, size_t n) {
    if (n + 1 > ps->scap) {
        size_t cap = ps->scap ? ps->scap : 256;
        while (cap < n + 1) cap *= 2;
        char *s = realloc(ps->scratch, cap);
        if (!s) return NULL;
        ps->scratch = s;
        ps->scap = cap;
    }
    return ps->scratch;
}

/* "%name" or "@name": returns a malloc'd copy of the name (without sigil) or NULL on error */
static char *lex_sigil_name(P *ps, char sigil, const char *what) {
    skip_ws(ps);
    char buf[160];
    if (peek(ps) != sigil) {
        perr(ps, ps->p, "expected %s, found %s", what, found(ps, buf, sizeof buf));
        return NULL;
    }
    size_t s = ++ps->p;
    while (ps->p < ps->le && is_namec(ps->t[ps->p])) ps->p++;
    if (ps->p == s) {
        perr(ps, s - 1, "expected a name after '%c' (letters, digits, '_', '.', '-'), found %s", sigil,
             found(ps, buf, sizeof buf));
        return NULL;
    }
    char *n = malloc(ps->p - s + 1);
    if (!n) { perr(ps, s, "out of memory"); return NULL; }
    memcpy(n, ps->t + s, ps->p - s);
    n[ps->p - s] = 0;
    return n;
}

/* ---- poisoned values ---- */
static void mark_bad(P *ps, pc_val v) {
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
static bool is_bad(const P *ps, pc_val v) { return v >= 0 && (size_t)v < ps->badcap && ps->bad[v]; }

/* a line that failed after naming its value defines a placeholder, so that later lines using
 * the name do not report a second, misleading "undefined value" */
static void poison_name(P *ps, const char *name, pc_loc at) {
    if (!name || pc_lookup(ps->g, name) != PC_NONE || ps->g->error) return;
    pc_val v = pc_node_raw(ps->g, at, name, PC_OP_input, 0, NULL, NULL, PC_F32, (pc_shape){0});
    if (v == PC_NONE) { pc_graph_clear_error(ps->g); return; }
    mark_bad(ps, v);
}

/* a use of %name: the value, or PC_NONE after reporting (or silently, for a poisoned value) */
static pc_val use_value(P *ps, const char *what) {
    skip_ws(ps);
    size_t pos = ps->p;
    char *n = lex_sigil_name(ps, '%', what);
    if (!n) return PC_NONE;
    pc_val v = pc_lookup(ps->g, n);
    if (v == PC_NONE) perr(ps, pos, "use of undefined value '%%%s'", n);
    else if (is_bad(ps, v)) { pfail_silent(ps); v = PC_NONE; }
    free(n);
    return v;
}

/* ---- types ---- */
static int parse_type(P *ps, pc_dtype *dt, pc_shape *s) {
    skip_ws(ps);
    size_t start = ps->p, n = 0;
    while (start + n < ps->le && (is_alpha(ps->t[start + n]) || is_digit(ps->t[start + n]))) n++;
    char buf[160], tmp[128];
    if (n == 0) return perr(ps, start, "expected a type such as f32[2,3], found %s", found(ps, buf, sizeof buf));
    if (n == 3 && !memcmp(ps->t + start, "f32", 3)) *dt = PC_F32;
    else if (n == 3 && !memcmp(ps->t + start, "i32", 3)) *dt = PC_I32;
    else if (n == 4 && !memcmp(ps->t + start, "bf16", 4)) *dt = PC_BF16;
    else return perr(ps, start, "unknown dtype '%s' (f32, i32, bf16)", snip(ps, start, start + n, tmp, sizeof tmp));
    ps->p = start + n;
    if (peek(ps) != '[')
        return perr(ps, ps->p, "malformed type: expected '[' after '%s', found %s", pc_dtype_name(*dt),
                    found(ps, buf, sizeof buf));
    ps->p++;
    *s = (pc_shape){0};
    int rank = 0;
    double numel = 1;
    if (!accept(ps, ']')) {
        for (;;) {
            skip_ws(ps);
            size_t dpos = ps->p;
            if (!is_digit(peek(ps)))
                return perr(ps, dpos, "malformed type: expected a dimension, found %s", found(ps, buf, sizeof buf));
            int64_t d = 0;
            while (is_digit(peek(ps))) {
                int dig = ps->t[ps->p] - '0';
                if (d > (INT64_MAX - dig) / 10) {
                    while (is_digit(peek(ps))) ps->p++;
                    return perr(ps, dpos, "dimension %s overflows", snip(ps, dpos, ps->p, tmp, sizeof tmp));
                }
                d = d * 10 + dig;
                ps->p++;
            }
            if (rank < PC_MAX_RANK) s->dim[rank] = d;
            rank++;
            numel *= (double)d;
            if (accept(ps, ']')) break;
            if (!accept(ps, ','))
                return perr(ps, ps->p, "malformed type: expected ',' or ']', found %s", found(ps, buf, sizeof buf));
        }
    }
    if (rank > PC_MAX_RANK) return perr(ps, start, "rank %d exceeds the maximum rank %d", rank, PC_MAX_RANK);
    s->rank = rank;
    if (numel > (double)NUMEL_LIMIT) {
        char sh[192];
        pc_shape_str(*s, sh, sizeof sh);
        return perr(ps, start, "type %s%s is too large (%.0f elements, limit 2^40)", pc_dtype_name(*dt), sh, numel);
    }
    return 0;
}

static const char *type_str(pc_dtype dt, pc_shape s, char *buf, size_t n) {
    char sh[192];
    pc_shape_str(s, sh, sizeof sh);
    snprintf(buf, n, "%s%s", pc_dtype_name(dt), sh);
    return buf;
}

/* ---- numbers ---- */
typedef struct {
    size_t a, b;  /* token extent */
    bool integer; /* no '.', exponent, inf or nan */
    char text[MAX_NUMBER_LEN + 1];
} num_tok;

static int lex_number(P *ps, num_tok *nt, const char *what) {
    skip_ws(ps);
    size_t s = ps->p, e = s;
    char buf[160];
    if (e < ps->le && (ps->t[e] == '-' || ps->t[e] == '+')) e++;
    nt->integer = true;
    if (e + 3 <= ps->le && (!memcmp(ps->t + e, "inf", 3) || !memcmp(ps->t + e, "nan", 3))) {
        e += 3;
        nt->integer = false;
    } else {
        size_t digits = 0;
        while (e < ps->le && is_digit(ps->t[e])) e++, digits++;
        if (e < ps->le && ps->t[e] == '.') {
            e++;
            nt->integer = false;
            while (e < ps->le && is_digit(ps->t[e])) e++, digits++;
        }
        if (!digits) return perr(ps, s, "expected %s, found %s", what, found(ps, buf, sizeof buf));
        if (e < ps->le && (ps->t[e] == 'e' || ps->t[e] == 'E')) {
            size_t x = e + 1;
            if (x < ps->le && (ps->t[x] == '-' || ps->t[x] == '+')) x++;
            if (x < ps->le && is_digit(ps->t[x])) {
                while (x < ps->le && is_digit(ps->t[x])) x++;
                e = x;
                nt->integer = false;
            }
        }
    }
    if (e < ps->le && (is_namec(ps->t[e]) || ps->t[e] == '+')) {
        while (e < ps->le && (is_namec(ps->t[e]) || ps->t[e] == '+')) e++;
        char tmp[128];
        return perr(ps, s, "malformed number '%s'", snip(ps, s, e, tmp, sizeof tmp));
    }
    if (e - s > MAX_NUMBER_LEN) return perr(ps, s, "number too long");
    memcpy(nt->text, ps->t + s, e - s);
    nt->text[e - s] = 0;
    nt->a = s;
    nt->b = e;
    ps->p = e;
    return 0;
}

static int number_double(P *ps, const char *what, double *out) {
    num_tok nt;
    if (lex_number(ps, &nt, what)) return -1;
    *out = strtod(nt.text, NULL);
    return 0;
}

/* ---- strings ---- */
static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* "..." with JSON escapes; returns a malloc'd string or NULL after reporting */
static char *parse_string(P *ps, const char *what) {
    skip_ws(ps);
    char buf[160];
    if (peek(ps) != '"') {
        perr(ps, ps->p, "expected %s, found %s", what, found(ps, buf, sizeof buf));
        return NULL;
    }
    size_t start = ps->p++;
    pc_strbuf sb = {0};
    pc_sb_printf(&sb, "%s", "");
    for (;;) {
        if (ps->p >= ps->le) {
            perr(ps, start, "unterminated string");
            goto fail;
        }
        unsigned char c = (unsigned char)ps->t[ps->p];
        if (c == '"') { ps->p++; break; }
        if (c < 0x20 || c == 0x7f) {
            perr(ps, ps->p, "control character \\x%02x in string (use an escape)", c);
            goto fail;
        }
        if (c != '\\') {
            pc_sb_printf(&sb, "%c", c);
            ps->p++;
            continue;
        }
        size_t epos = ps->p++;
        char e = peek(ps);
        ps->p++;
        switch (e) {
        case '"': pc_sb_printf(&sb, "\""); break;
        case '\\': pc_sb_printf(&sb, "\\"); break;
        case '/': pc_sb_printf(&sb, "/"); break;
        case 'b': pc_sb_printf(&sb, "\b"); break;
        case 'f': pc_sb_printf(&sb, "\f"); break;
        case 'n': pc_sb_printf(&sb, "\n"); break;
        case 'r': pc_sb_printf(&sb, "\r"); break;
        case 't': pc_sb_printf(&sb, "\t"); break;
        case 'u': {
            unsigned u = 0;
            for (int k = 0; k < 4; k++) {
                int h = ps->p < ps->le ? hexval(ps->t[ps->p]) : -1;
                if (h < 0) { perr(ps, epos, "bad \\u escape in string (\\uXXXX)"); goto fail; }
                u = u * 16 + (unsigned)h;
                ps->p++;
            }
            if (u == 0 || (u >= 0xd800 && u <= 0xdfff)) {
                perr(ps, epos, "\\u%04x is not allowed in a string", u);
                goto fail;
            }
            if (u < 0x80) pc_sb_printf(&sb, "%c", (char)u);
            else if (u < 0x800) pc_sb_printf(&sb, "%c%c", (char)(0xc0 | (u >> 6)), (char)(0x80 | (u & 0x3f)));
            else
                pc_sb_printf(&sb, "%c%c%c", (char)(0xe0 | (u >> 12)), (char)(0x80 | ((u >> 6) & 0x3f)),
                             (char)(0x80 | (u & 0x3f)));
            break;
        }
        default:
            perr(ps, epos, "unknown escape in string");
            goto fail;
        }
    }
    {
        char *s = pc_sb_take(&sb);
        if (!s) perr(ps, start, "out of memory");
        return s;
    }
fail:
    free(pc_sb_take(&sb));
    return NULL;
}

/* ---- line helpers ---- */
static int expect_eol(P *ps, const char *after) {
    if (at_end(ps)) return 0;
    char tmp[128];
    return perr(ps, ps->p, "unexpected '%s' after %s", snip(ps, ps->p, ps->le, tmp, sizeof tmp), after);
}

/* the location of a value defined at text offset pos: a trailing "// file:line" comment, or the
 * IR text position */
static pc_loc line_loc(P *ps, size_t pos) {
    pc_loc at = {ps->file, ps->lno > INT_MAX ? INT_MAX : (int)ps->lno,
                 pos - ps->ls + 1 > INT_MAX ? INT_MAX : (int)(pos - ps->ls + 1)};
    size_t a = ps->cs, b = ps->ce;
    while (a < b && is_ws(ps->t[a])) a++;
    while (b > a && is_ws(ps->t[b - 1])) b--;
    size_t colon = SIZE_MAX;
    for (size_t i = b; i > a; i--)
        if (ps->t[i - 1] == ':') { colon = i - 1; break; }
    if (colon == SIZE_MAX || colon == a || colon + 1 == b) return at; /* need "file:line" */
    long long line = 0;
    for (size_t i = colon + 1; i < b; i++) {
        if (!is_digit(ps->t[i])) return at;
        line = line * 10 + (ps->t[i] - '0');
        if (line > INT_MAX) return at;
    }
    for (size_t i = a; i < colon; i++)
        if (ps->t[i] == 0) return at;
    char *f = scratch(ps, colon - a);
    if (!f) return at;
    memcpy(f, ps->t + a, colon - a);
    f[colon - a] = 0;
    return (pc_loc){f, (int)line, 0};
}

/* ---- leaves ---- */
static int parse_init(P *ps, pc_init *init) {
    *init = (pc_init){PC_INIT_NONE, 0, 0};
    if (at_end(ps)) return 0;
    char buf[160], tmp[128];
    if (!accept_kw(ps, "init")) return perr(ps, ps->p, "expected 'init=...' or end of line, found %s", found(ps, buf, sizeof buf));
    if (expect(ps, '=', "'=' after 'init'")) return -1;
    skip_ws(ps);
    size_t kpos = ps->p, n = ident_len(ps);
    int nargs;
    if (n && ident_is(ps, n, "zeros")) init->kind = PC_INIT_ZEROS, nargs = 0;
    else if (n && ident_is(ps, n, "ones")) init->kind = PC_INIT_ONES, nargs = 0;
    else if (n && ident_is(ps, n, "uniform")) init->kind = PC_INIT_UNIFORM, nargs = 2;
    else if (n && ident_is(ps, n, "normal")) init->kind = PC_INIT_NORMAL, nargs = 1;
    else if (n && ident_is(ps, n, "kaiming_uniform")) init->kind = PC_INIT_KAIMING_UNIFORM, nargs = 1;
    else {
        size_t e = ps->p;
        while (e < ps->le && !is_ws(ps->t[e]) && ps->t[e] != '(') e++;
        return perr(ps, kpos, "unknown init '%s' (zeros, ones, uniform(a, b), normal(std), kaiming_uniform(a))",
                    snip(ps, ps->p, e, tmp, sizeof tmp));
    }
    ps->p += n;
    static const char *const usage[] = {"", "zeros", "ones", "uniform(a, b)", "normal(std)", "kaiming_uniform(a)"};
    if (nargs == 0) {
        skip_ws(ps);
        if (peek(ps) == '(') return perr(ps, ps->p, "init %s takes no arguments", usage[init->kind]);
        return 0;
    }
    if (!accept(ps, '('))
        return perr(ps, ps->p, "init %s needs %d argument%s: %s", usage[init->kind], nargs, nargs > 1 ? "s" : "",
                    usage[init->kind]);
    double args[2] = {0, 0};
    int got = 0;
    for (;;) {
        skip_ws(ps);
        if (got == 0 && peek(ps) == ')') { ps->p++; break; }
        double x;
        if (number_double(ps, "a number", &x)) return -1;
        if (got < 2) args[got] = x;
        got++;
        if (accept(ps, ')')) break;
        if (!accept(ps, ',')) return perr(ps, ps->p, "expected ',' or ')' in init, found %s", found(ps, buf, sizeof buf));
    }
    if (got != nargs)
        return perr(ps, kpos, "init %s takes %d argument%s, got %d", usage[init->kind], nargs, nargs > 1 ? "s" : "", got);
    init->a = args[0];
    init->b = args[1];
    return 0;
}

static uint16_t float_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0; /* NaN */
    u += 0x7fffu + ((u >> 16) & 1u);                    /* round to nearest even */
    return (uint16_t)(u >> 16);
}

/* one constant element into data[i] */
static int const_elem(P *ps, pc_dtype dt, void *data, int64_t i) {
    num_tok nt;
    if (lex_number(ps, &nt, "a number")) return -1;
    if (dt == PC_I32) {
        if (!nt.integer) return perr(ps, nt.a, "expected an integer for an i32 constant, found '%s'", nt.text);
        errno = 0;
        long long x = strtoll(nt.text, NULL, 10);
        if (errno || x < INT32_MIN || x > INT32_MAX) return perr(ps, nt.a, "value %s is out of range for i32", nt.text);
        ((int32_t *)data)[i] = (int32_t)x;
        return 0;
    }
    float f = strtof(nt.text, NULL);
    if (isinf(f) && !strstr(nt.text, "inf")) return perr(ps, nt.a, "value %s is out of range for %s", nt.text, pc_dtype_name(dt));
    if (dt == PC_F32) ((float *)data)[i] = f;
    else ((uint16_t *)data)[i] = float_to_bf16(f);
    return 0;
}

static int parse_const_data(P *ps, pc_dtype dt, pc_shape s, void **out) {
    *out = NULL;
    skip_ws(ps);
    char buf[160], ty[192];
    int64_t numel = pc_shape_numel(s);
    size_t esz = pc_dtype_size(dt);
    type_str(dt, s, ty, sizeof ty);
    size_t n = ident_len(ps);
    if (n && ident_is(ps, n, "elided")) { ps->p += n; return 0; }
    if (peek(ps) != '[') {
        if (ps->p >= ps->le) return perr(ps, ps->p, "expected the constant's value, 'elided' or a list, found end of line");
        size_t pos = ps->p;
        if (numel != 1) {
            num_tok nt;
            if (lex_number(ps, &nt, "the constant's value ('elided', a number or a list)")) return -1;
            return perr(ps, pos, "const %s needs a list of %lld values, got a single number", ty, (long long)numel);
        }
        void *d = malloc(esz);
        if (!d) return perr(ps, pos, "out of memory");
        if (const_elem(ps, dt, d, 0)) { free(d); return -1; }
        *out = d;
        return 0;
    }
    size_t lpos = ps->p++;
    int64_t cap = numel < 1024 ? (numel > 0 ? numel : 1) : 1024, got = 0;
    char *d = malloc((size_t)cap * esz);
    if (!d) return perr(ps, lpos, "out of memory");
    if (!accept(ps, ']')) {
        for (;;) {
            skip_ws(ps);
            if (got == numel) {
                free(d);
                return perr(ps, ps->p, "too many values for const %s (expected %lld)", ty, (long long)numel);
            }
            if (got == cap) {
                cap = cap * 2 < numel ? cap * 2 : numel;
                char *nd = realloc(d, (size_t)cap * esz);
                if (!nd) { free(d); return perr(ps, ps->p, "out of memory"); }
                d = nd;
            }
            if (const_elem(ps, dt, d, got)) { free(d); return -1; }
            got++;
            if (accept(ps, ']')) break;
            if (!accept(ps, ',')) {
                free(d);
                if (ps->p >= ps->le) return perr(ps, ps->p, "unterminated list: expected ',' or ']', found end of line");
                return perr(ps, ps->p, "expected ',' or ']' in the value list, found %s", found(ps, buf, sizeof buf));
            }
        }
    }
    if (got != numel) {
        free(d);
        return perr(ps, lpos, "const %s needs %lld values, got %lld", ty, (long long)numel, (long long)got);
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

static pc_val find_key(const P *ps, const char *key) {
    if (!ps->capkeys) return PC_NONE;
    for (size_t h = hash_key(key) & (ps->capkeys - 1);; h = (h + 1) & (ps->capkeys - 1)) {
        pc_val v = ps->keys[h];
        if (v == PC_NONE) return PC_NONE;
        if (strcmp(ps->g->vals[v].key, key) == 0) return v;
    }
}

static int add_key(P *ps, pc_val v) {
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

static int check_key(P *ps, size_t pos, const char *key) {
    pc_val other = find_key(ps, key);
    if (other != PC_NONE) return perr(ps, pos, "key \"%s\" is already used by '%%%s'", key, ps->g->vals[other].name);
    return 0;
}

/* defines a leaf value; takes ownership of key and data */
static pc_val define_leaf(P *ps, pc_loc at, const char *name, pc_opcode op, pc_dtype dt, pc_shape s,
                          unsigned flags, char *key, pc_init init, void *data) {
    pc_val v = pc_node_raw(ps->g, at, name, op, 0, NULL, NULL, dt, s);
    if (v == PC_NONE) { free(key); free(data); return PC_NONE; }
    pc_value *x = pc_v(ps->g, v);
    x->flags = flags;
    x->key = key;
    x->init = init;
    x->data = data;
    if (key && add_key(ps, v)) {
        perr(ps, ps->ls, "out of memory");
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

static int parse_attrs(P *ps, pc_opcode op, pc_attr attrs[PC_MAX_ATTRS]) {
    const pc_op_info *info = pc_op_get(op);
    unsigned seen = 0;
    char buf[160], tmp[128], msg[256];
    if (accept(ps, '}')) return 0;
    for (;;) {
        skip_ws(ps);
        size_t npos = ps->p, n = ident_len(ps);
        if (!n) return perr(ps, npos, "expected an attribute name, found %s", found(ps, buf, sizeof buf));
        int k = -1;
        for (int i = 0; i < info->nattrs; i++)
            if (ident_is(ps, n, info->attrs[i].name)) k = i;
        snip(ps, npos, npos + n, tmp, sizeof tmp);
        if (k < 0) {
            if (info->nattrs == 0) return perr(ps, npos, "unknown attribute '%s': %s has no attributes", tmp, info->name);
            return perr(ps, npos, "unknown attribute '%s' for %s", tmp, info->name);
        }
        if (seen & (1u << k)) return perr(ps, npos, "duplicate attribute '%s'", tmp);
        seen |= 1u << k;
        ps->p += n;
        if (expect(ps, '=', "'=' after the attribute name")) return -1;
        skip_ws(ps);
        size_t vpos = ps->p, e = ps->p;
        if (peek(ps) == '[') {
            while (e < ps->le && ps->t[e] != ']') e++;
            if (e >= ps->le) return perr(ps, vpos, "unterminated list value of attribute '%s'", tmp);
            e++;
        } else {
            while (e < ps->le && !is_ws(ps->t[e]) && ps->t[e] != ',' && ps->t[e] != '}') e++;
        }
        if (e == vpos) return perr(ps, vpos, "expected a value for attribute '%s', found %s", tmp, found(ps, buf, sizeof buf));
        if (e - vpos > 400) return perr(ps, vpos, "value of attribute '%s' is too long", tmp);
        char text[512];
        size_t o = 0;
        memcpy(text, info->attrs[k].name, strlen(info->attrs[k].name));
        o = strlen(info->attrs[k].name);
        text[o++] = '=';
        for (size_t i = vpos; i < e; i++) {
            char c = ps->t[i];
            if (is_ws(c)) continue;
            if (c == 0 || (unsigned char)c >= 0x7f || (unsigned char)c < 0x20) {
                return perr(ps, vpos, "bad value for attribute '%s' of %s: '%s'", tmp, info->name,
                            snip(ps, vpos, e, buf, sizeof buf));
            }
            text[o++] = c;
        }
        text[o] = 0;
        if (info->attrs[k].kind != PC_ATTR_FLOAT && !ints_fit(text + strlen(info->attrs[k].name) + 1))
            return perr(ps, vpos, "value of attribute '%s' is out of range: '%s'", tmp, snip(ps, vpos, e, buf, sizeof buf));
        if (pc_attr_parse(op, attrs, text, msg, sizeof msg)) return perr(ps, vpos, "%s", msg);
        ps->p = e;
        if (accept(ps, '}')) return 0;
        if (!accept(ps, ',')) {
            if (ps->p >= ps->le) return perr(ps, ps->p, "expected ',' or '}' in the attributes, found end of line");
            return perr(ps, ps->p, "expected ',' or '}' in the attributes, found %s", found(ps, buf, sizeof buf));
        }
    }
}

/* ---- lines ---- */
static void parse_value_line(P *ps) {
    size_t npos = ps->p;
    char *name = lex_sigil_name(ps, '%', "a value name");
    if (!name) return;
    pc_loc at = line_loc(ps, npos);
    char buf[160], tmp[128];
    pc_val v = PC_NONE;
    pc_val *ins = NULL;
    if (pc_lookup(ps->g, name) != PC_NONE) {
        pc_val prev = pc_lookup(ps->g, name);
        const pc_value *pv = pc_v(ps->g, prev);
        if (pv->loc.file && pv->loc.line)
            perr(ps, npos, "redefinition of value '%%%s' (first defined at %s:%d)", name, pv->loc.file, pv->loc.line);
        else perr(ps, npos, "redefinition of value '%%%s'", name);
        free(name);
        return;
    }
    if (expect(ps, '=', "'=' after the value name")) goto out;
    skip_ws(ps);
    size_t opos = ps->p, n = ident_len(ps);
    if (!n) { perr(ps, opos, "expected an op name, found %s", found(ps, buf, sizeof buf)); goto out; }
    pc_dtype dt;
    pc_shape s;
    if (ident_is(ps, n, "param") || ident_is(ps, n, "state")) {
        bool is_param = ident_is(ps, n, "param");
        unsigned flags = PC_STATE;
        ps->p += n;
        if (is_param) {
            if (accept_kw(ps, "frozen")) flags = PC_FROZEN;
            else if (accept_kw(ps, "trainable")) flags = PC_TRAINABLE;
            else { perr(ps, ps->p, "expected 'frozen' or 'trainable' after 'param', found %s", found(ps, buf, sizeof buf)); goto out; }
        }
        if (parse_type(ps, &dt, &s)) goto out;
        skip_ws(ps);
        size_t kpos = ps->p;
        char *key = parse_string(ps, "a quoted checkpoint key");
        if (!key) goto out;
        pc_init init;
        if (check_key(ps, kpos, key) || parse_init(ps, &init) || expect_eol(ps, "the param")) { free(key); goto out; }
        v = define_leaf(ps, at, name, is_param ? PC_OP_param : PC_OP_state, dt, s, flags, key, init, NULL);
    } else if (ident_is(ps, n, "const")) {
        ps->p += n;
        if (parse_type(ps, &dt, &s)) goto out;
        void *data;
        if (parse_const_data(ps, dt, s, &data)) goto out;
        if (expect_eol(ps, "the constant")) { free(data); goto out; }
        v = define_leaf(ps, at, name, PC_OP_const, dt, s, PC_CONST, NULL, (pc_init){0}, data);
    } else {
        snip(ps, opos, opos + n, tmp, sizeof tmp);
        int code = -1;
        if (n < 64) {
            char opname[64];
            memcpy(opname, ps->t + opos, n);
            opname[n] = 0;
            code = pc_op_find(opname);
        }
        if (code < 0) { perr(ps, opos, "unknown op '%s'", tmp); goto out; }
        if (code == PC_OP_input) { perr(ps, opos, "inputs are declared in the graph header"); goto out; }
        const pc_op_info *info = pc_op_get((pc_opcode)code);
        ps->p += n;
        int nin = 0, cap = 0;
        skip_ws(ps);
        if (peek(ps) == '%') {
            for (;;) {
                pc_val x = use_value(ps, "an operand");
                if (x == PC_NONE) goto out;
                if (nin == cap) {
                    cap = cap ? 2 * cap : 4;
                    pc_val *ni = realloc(ins, (size_t)cap * sizeof *ni);
                    if (!ni) { perr(ps, ps->p, "out of memory"); goto out; }
                    ins = ni;
                }
                ins[nin++] = x;
                if (!accept(ps, ',')) break;
                skip_ws(ps);
                if (peek(ps) != '%') {
                    perr(ps, ps->p, "expected an operand after ',', found %s", found(ps, buf, sizeof buf));
                    goto out;
                }
            }
        }
        if (info->nin >= 0 ? nin != info->nin : nin < 1) {
            if (info->nin >= 0)
                perr(ps, opos, "%s takes %d operand%s, got %d", info->name, info->nin, info->nin == 1 ? "" : "s", nin);
            else perr(ps, opos, "%s takes at least 1 operand, got 0", info->name);
            goto out;
        }
        pc_attr attrs[PC_MAX_ATTRS];
        pc_attr_defaults((pc_opcode)code, attrs);
        if (accept(ps, '{') && parse_attrs(ps, (pc_opcode)code, attrs)) goto out;
        skip_ws(ps);
        if (peek(ps) != ':') {
            if (ps->p >= ps->le) perr(ps, ps->p, "missing ': TYPE' result type annotation at end of line");
            else perr(ps, ps->p, "expected ': TYPE' (the result type), found %s", found(ps, buf, sizeof buf));
            goto out;
        }
        ps->p++;
        if (parse_type(ps, &dt, &s) || expect_eol(ps, "the result type")) goto out;
        v = pc_node_raw(ps->g, at, name, (pc_opcode)code, nin, ins, attrs, dt, s);
    }
    if (v == PC_NONE && !ps->failed) {
        perr(ps, npos, "%s", ps->g->error ? ps->g->error : "cannot define the value");
        ps->stop = true;
    }
out:
    if (ps->failed && v == PC_NONE) poison_name(ps, name, at);
    free(ins);
    free(name);
}

static void parse_update_line(P *ps) {
    skip_ws(ps);
    size_t tpos = ps->p;
    pc_val t = use_value(ps, "the updated param or state ('%name')");
    if (t == PC_NONE) return;
    skip_ws(ps);
    char buf[160], t1[200], t2[200];
    if (!(ps->p + 2 <= ps->le && ps->t[ps->p] == '<' && ps->t[ps->p + 1] == '-')) {
        perr(ps, ps->p, "expected '<-' in 'update %%target <- %%next', found %s", found(ps, buf, sizeof buf));
        return;
    }
    ps->p += 2;
    skip_ws(ps);
    size_t npos = ps->p;
    pc_val nx = use_value(ps, "the new value ('%name')");
    if (nx == PC_NONE || expect_eol(ps, "the update")) return;
    pc_graph *g = ps->g;
    pc_value *tv = pc_v(g, t), *nv = pc_v(g, nx);
    if (tv->op != PC_OP_param && tv->op != PC_OP_state) {
        perr(ps, tpos, "update target '%%%s' is not a param or state", tv->name);
        return;
    }
    if (tv->dtype != nv->dtype || !pc_shape_eq(tv->shape, nv->shape)) {
        perr(ps, npos, "update of '%%%s' (%s) with '%%%s' of a different type (%s)", tv->name,
             type_str(tv->dtype, tv->shape, t1, sizeof t1), nv->name, type_str(nv->dtype, nv->shape, t2, sizeof t2));
        return;
    }
    for (int i = 0; i < g->nupdates; i++)
        if (g->updates[i].target == t) {
            perr(ps, tpos, "duplicate update of '%%%s'", tv->name);
            return;
        }
    if (g->nupdates == g->capupd) {
        int cap = g->capupd ? 2 * g->capupd : 8;
        pc_update *u = realloc(g->updates, (size_t)cap * sizeof *u);
        if (!u) { perr(ps, tpos, "out of memory"); ps->stop = true; return; }
        g->updates = u;
        g->capupd = cap;
    }
    g->updates[g->nupdates++] = (pc_update){t, nx};
}

static void parse_body_line(P *ps) {
    skip_ws(ps);
    char c = peek(ps);
    if (c == '%') { parse_value_line(ps); return; }
    size_t n = ident_len(ps);
    if (n && ident_is(ps, n, "update")) {
        ps->p += n;
        parse_update_line(ps);
        return;
    }
    char buf[160];
    perr(ps, ps->p, "expected a value definition ('%%name = ...'), 'update' or '}', found %s", found(ps, buf, sizeof buf));
}

static const char header_usage[] = "'graph @name(%in: TYPE, ...) -> (%out: TYPE, ...) {'";

static int parse_header(P *ps) {
    char buf[160];
    if (!accept_kw(ps, "graph"))
        return perr(ps, ps->p, "expected the graph header %s, found %s", header_usage, found(ps, buf, sizeof buf));
    char *gname = lex_sigil_name(ps, '@', "'@' and the graph name");
    if (!gname) return -1;
    ps->g = pc_graph_new(gname);
    free(gname);
    if (!ps->g) return perr(ps, ps->p, "out of memory");
    if (expect(ps, '(', "'(' and the graph inputs")) return -1;
    if (!accept(ps, ')')) {
        for (;;) {
            skip_ws(ps);
            size_t npos = ps->p;
            char *name = lex_sigil_name(ps, '%', "an input ('%name: TYPE')");
            if (!name) return -1;
            pc_dtype dt;
            pc_shape s;
            if (pc_lookup(ps->g, name) != PC_NONE) {
                perr(ps, npos, "redefinition of value '%%%s'", name);
                free(name);
                return -1;
            }
            if (expect(ps, ':', "':' and the input type") || parse_type(ps, &dt, &s)) { free(name); return -1; }
            pc_loc at = {ps->file, ps->lno > INT_MAX ? INT_MAX : (int)ps->lno,
                         npos - ps->ls + 1 > INT_MAX ? INT_MAX : (int)(npos - ps->ls + 1)};
            pc_val v = define_leaf(ps, at, name, PC_OP_input, dt, s, PC_INPUT, NULL, (pc_init){0}, NULL);
            free(name);
            if (v == PC_NONE) return perr(ps, npos, "cannot define the input");
            if (accept(ps, ')')) break;
            if (!accept(ps, ',')) return perr(ps, ps->p, "expected ',' or ')' after an input, found %s", found(ps, buf, sizeof buf));
        }
    }
    skip_ws(ps);
    if (!(ps->p + 2 <= ps->le && ps->t[ps->p] == '-' && ps->t[ps->p + 1] == '>'))
        return perr(ps, ps->p, "expected '->' and the graph outputs, found %s", found(ps, buf, sizeof buf));
    ps->p += 2;
    if (expect(ps, '(', "'(' and the graph outputs")) return -1;
    if (!accept(ps, ')')) {
        for (;;) {
            skip_ws(ps);
            size_t npos = ps->p;
            char *name = lex_sigil_name(ps, '%', "an output ('%name: TYPE')");
            if (!name) return -1;
            pending_out o = {name, PC_F32, {0}, false, ps->lno, npos - ps->ls + 1};
            if (expect(ps, ':', "':' and the output type") || parse_type(ps, &o.dt, &o.shape)) { free(name); return -1; }
            o.loss = accept_kw(ps, "loss");
            if (ps->nouts == ps->capouts) {
                int cap = ps->capouts ? 2 * ps->capouts : 4;
                pending_out *no = realloc(ps->outs, (size_t)cap * sizeof *no);
                if (!no) { free(name); return perr(ps, npos, "out of memory"); }
                ps->outs = no;
                ps->capouts = cap;
            }
            ps->outs[ps->nouts++] = o;
            if (accept(ps, ')')) break;
            if (!accept(ps, ','))
                return perr(ps, ps->p, "expected ',' or ')' after an output, found %s", found(ps, buf, sizeof buf));
        }
    }
    if (expect(ps, '{', "'{' at the end of the graph header")) return -1;
    return expect_eol(ps, "'{'");
}

/* binds the header's outputs to the values of the body */
static void resolve_outputs(P *ps) {
    pc_graph *g = ps->g;
    char t1[200], t2[200];
    for (int k = 0; k < ps->nouts && !ps->stop; k++) {
        pending_out *o = &ps->outs[k];
        pc_val v = pc_lookup(g, o->name);
        if (v == PC_NONE) {
            report_at(ps, o->line, o->col, "output '%%%s' is not defined", o->name);
            continue;
        }
        if (is_bad(ps, v)) continue;
        pc_value *x = pc_v(g, v);
        bool dup = false;
        for (int j = 0; j < k; j++) dup = dup || strcmp(ps->outs[j].name, o->name) == 0;
        if (dup) {
            report_at(ps, o->line, o->col, "output '%%%s' is listed twice", o->name);
            continue;
        }
        if (x->dtype != o->dt || !pc_shape_eq(x->shape, o->shape)) {
            report_at(ps, o->line, o->col, "output '%%%s' is declared as %s but defined as %s", o->name,
                      type_str(o->dt, o->shape, t1, sizeof t1), type_str(x->dtype, x->shape, t2, sizeof t2));
            continue;
        }
        if (o->loss && (x->dtype != PC_F32 || x->shape.rank != 0)) {
            report_at(ps, o->line, o->col, "loss '%%%s' must be a scalar f32, got %s", o->name,
                      type_str(x->dtype, x->shape, t1, sizeof t1));
            continue;
        }
        if (pc_mark_output(g, v)) {
            report_at(ps, o->line, o->col, "out of memory");
            return;
        }
        if (o->loss) x->flags |= PC_LOSS;
    }
}

enum { ST_HEADER, ST_BODY, ST_AFTER };

pc_graph *pc_parse(const char *text, size_t len, const char *filename, char **err) {
    P ps_ = {0}, *ps = &ps_;
    ps->t = text ? text : "";
    ps->len = text ? len : 0;
    ps->file = filename ? filename : "<input>";
    int state = ST_HEADER;
    size_t pos = 0, eof_line = 1, eof_col = 1;
    while (pos < ps->len && !ps->stop) {
        const char *nl = memchr(ps->t + pos, '\n', ps->len - pos);
        size_t end = nl ? (size_t)(nl - ps->t) : ps->len;
        ps->lno++;
        ps->ls = ps->p = pos;
        ps->failed = false;
        /* split off a trailing comment: "//" outside a string */
        size_t code_end = end;
        bool in_str = false;
        for (size_t i = pos; i < end; i++) {
            char c = ps->t[i];
            if (in_str) {
                if (c == '\\') i++;
                else if (c == '"') in_str = false;
            } else if (c == '"') in_str = true;
            else if (c == '/' && i + 1 < end && ps->t[i + 1] == '/') { code_end = i; break; }
        }
        ps->cs = code_end < end ? code_end + 2 : end;
        ps->ce = end;
        while (code_end > pos && is_ws(ps->t[code_end - 1])) code_end--;
        ps->le = code_end;
        eof_line = nl ? ps->lno + 1 : ps->lno;
        eof_col = nl ? 1 : end - pos + 1;
        pos = nl ? end + 1 : end;
        if (at_end(ps)) continue; /* blank or comment-only line */
        switch (state) {
        case ST_HEADER:
            if (parse_header(ps)) ps->stop = true;
            else state = ST_BODY;
            break;
        case ST_BODY:
            if (peek(ps) == '}') {
                ps->p++;
                char tmp[128];
                if (!at_end(ps)) perr(ps, ps->p, "unexpected '%s' after the closing '}'", snip(ps, ps->p, ps->le, tmp, sizeof tmp));
                state = ST_AFTER;
                break;
            }
            parse_body_line(ps);
            break;
        case ST_AFTER: {
            char tmp[128];
            perr(ps, ps->p, "unexpected text after the end of the graph: '%s'", snip(ps, ps->p, ps->le, tmp, sizeof tmp));
            ps->stop = true;
            break;
        }
        }
    }
    if (!ps->stop) {
        if (state == ST_HEADER)
            report_at(ps, eof_line, eof_col, "expected the graph header %s, found end of input", header_usage);
        else if (state == ST_BODY)
            report_at(ps, eof_line, eof_col, "missing '}' at the end of the graph");
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
