/* Lexer of the text IR parser: lines (code vs trailing comment), the cursor, identifiers, %/@
 * names, numbers, JSON-escaped strings, positions, and the per-line error reporting. Tokens
 * never extend past the end of the current line. See parse_internal.h. */
#include "parse_internal.h"

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ERRORS 50

/* ---- errors ---- */
static void vreport(parser *ps, size_t line, size_t col, const char *fmt, va_list ap) {
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

void parse_report_at(parser *ps, size_t line, size_t col, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vreport(ps, line, col, fmt, ap);
    va_end(ap);
}

int parse_error(parser *ps, size_t pos, const char *fmt, ...) {
    if (ps->failed) return -1;
    ps->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vreport(ps, ps->lno, pos - ps->ls + 1, fmt, ap);
    va_end(ap);
    return -1;
}

int parse_fail_silent(parser *ps) {
    ps->failed = true;
    return -1;
}

const char *lex_snip(const parser *ps, size_t a, size_t b, char *out, size_t outlen) {
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

/* ---- line helpers ---- */
void lex_start_line(parser *ps, size_t pos, size_t end) {
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
}

int lex_expect_eol(parser *ps, const char *after) {
    if (lex_at_end(ps)) return 0;
    char tmp[128];
    return parse_error(ps, ps->p, "unexpected '%s' after %s", lex_snip(ps, ps->p, ps->le, tmp, sizeof tmp), after);
}

pc_loc lex_text_loc(const parser *ps, size_t pos) {
    return (pc_loc){ps->file, ps->lno > INT_MAX ? INT_MAX : (int)ps->lno,
                    pos - ps->ls + 1 > INT_MAX ? INT_MAX : (int)(pos - ps->ls + 1)};
}

pc_loc lex_line_loc(parser *ps, size_t pos) {
    pc_loc at = lex_text_loc(ps, pos);
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
    char *f = lex_scratch(ps, colon - a);
    if (!f) return at;
    memcpy(f, ps->t + a, colon - a);
    f[colon - a] = 0;
    return (pc_loc){f, (int)line, 0};
}

/* ---- the cursor ---- */
void lex_skip_ws(parser *ps) {
    while (ps->p < ps->le && is_ws(ps->t[ps->p])) ps->p++;
}
bool lex_at_end(parser *ps) {
    lex_skip_ws(ps);
    return ps->p >= ps->le;
}

const char *lex_found(parser *ps, char *buf, size_t n) {
    if (ps->p >= ps->le) return "end of line";
    size_t e = ps->p;
    if (is_namec(ps->t[e]) || ps->t[e] == '%' || ps->t[e] == '@') {
        e++;
        while (e < ps->le && is_namec(ps->t[e])) e++;
    } else e++;
    char tmp[128];
    lex_snip(ps, ps->p, e, tmp, sizeof tmp);
    snprintf(buf, n, "'%s'", tmp);
    return buf;
}

bool lex_accept(parser *ps, char c) {
    lex_skip_ws(ps);
    if (lex_peek(ps) == c) { ps->p++; return true; }
    return false;
}

int lex_expect(parser *ps, char c, const char *what) {
    if (lex_accept(ps, c)) return 0;
    char buf[160];
    return parse_error(ps, ps->p, "expected %s, found %s", what, lex_found(ps, buf, sizeof buf));
}

size_t lex_ident_len(const parser *ps) {
    size_t e = ps->p;
    if (e >= ps->le || !is_alpha(ps->t[e])) return 0;
    while (e < ps->le && (is_alpha(ps->t[e]) || is_digit(ps->t[e]))) e++;
    return e - ps->p;
}

bool lex_ident_is(const parser *ps, size_t n, const char *kw) {
    return strlen(kw) == n && memcmp(ps->t + ps->p, kw, n) == 0;
}

bool lex_accept_kw(parser *ps, const char *kw) {
    lex_skip_ws(ps);
    size_t n = lex_ident_len(ps);
    if (n && lex_ident_is(ps, n, kw)) { ps->p += n; return true; }
    return false;
}

char *lex_scratch(parser *ps, size_t n) {
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

char *lex_sigil_name(parser *ps, char sigil, const char *what) {
    lex_skip_ws(ps);
    char buf[160];
    if (lex_peek(ps) != sigil) {
        parse_error(ps, ps->p, "expected %s, found %s", what, lex_found(ps, buf, sizeof buf));
        return NULL;
    }
    size_t s = ++ps->p;
    while (ps->p < ps->le && is_namec(ps->t[ps->p])) ps->p++;
    if (ps->p == s) {
        parse_error(ps, s - 1, "expected a name after '%c' (letters, digits, '_', '.', '-'), found %s", sigil,
                    lex_found(ps, buf, sizeof buf));
        return NULL;
    }
    char *n = malloc(ps->p - s + 1);
    if (!n) { parse_error(ps, s, "out of memory"); return NULL; }
    memcpy(n, ps->t + s, ps->p - s);
    n[ps->p - s] = 0;
    return n;
}

/* ---- numbers ---- */
int lex_number(parser *ps, num_tok *nt, const char *what) {
    lex_skip_ws(ps);
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
        if (!digits) return parse_error(ps, s, "expected %s, found %s", what, lex_found(ps, buf, sizeof buf));
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
        return parse_error(ps, s, "malformed number '%s'", lex_snip(ps, s, e, tmp, sizeof tmp));
    }
    if (e - s > MAX_NUMBER_LEN) return parse_error(ps, s, "number too long");
    memcpy(nt->text, ps->t + s, e - s);
    nt->text[e - s] = 0;
    nt->a = s;
    nt->b = e;
    ps->p = e;
    return 0;
}

int lex_number_double(parser *ps, const char *what, double *out) {
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

char *lex_string(parser *ps, const char *what) {
    lex_skip_ws(ps);
    char buf[160];
    if (lex_peek(ps) != '"') {
        parse_error(ps, ps->p, "expected %s, found %s", what, lex_found(ps, buf, sizeof buf));
        return NULL;
    }
    size_t start = ps->p++;
    pc_strbuf sb = {0};
    pc_sb_printf(&sb, "%s", "");
    for (;;) {
        if (ps->p >= ps->le) {
            parse_error(ps, start, "unterminated string");
            goto fail;
        }
        unsigned char c = (unsigned char)ps->t[ps->p];
        if (c == '"') { ps->p++; break; }
        if (c < 0x20 || c == 0x7f) {
            parse_error(ps, ps->p, "control character \\x%02x in string (use an escape)", c);
            goto fail;
        }
        if (c != '\\') {
            pc_sb_printf(&sb, "%c", c);
            ps->p++;
            continue;
        }
        size_t epos = ps->p++;
        char e = lex_peek(ps);
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
                if (h < 0) { parse_error(ps, epos, "bad \\u escape in string (\\uXXXX)"); goto fail; }
                u = u * 16 + (unsigned)h;
                ps->p++;
            }
            if (u == 0 || (u >= 0xd800 && u <= 0xdfff)) {
                parse_error(ps, epos, "\\u%04x is not allowed in a string", u);
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
            parse_error(ps, epos, "unknown escape in string");
            goto fail;
        }
    }
    {
        char *s = pc_sb_take(&sb);
        if (!s) parse_error(ps, start, "out of memory");
        return s;
    }
fail:
    free(pc_sb_take(&sb));
    return NULL;
}
