/* Private to the text IR parser: its state, and the lexer (ir/parse_lex.c) the parser proper
 * (ir/parse.c) reads tokens with. The lexer works on one line at a time, [ls, le) of the text,
 * with a cursor p; errors are reported "FILE:LINE:COL: error: MSG", the first one per line. */
#ifndef PEFTC_IR_PARSE_INTERNAL_H
#define PEFTC_IR_PARSE_INTERNAL_H

#include "ir.h"

#include <stdbool.h>
#include <stddef.h>

#define MAX_NUMBER_LEN 512

/* a graph output named in the header, resolved once the body has been read */
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
} parser;

/* ---- errors ---- */
void parse_report_at(parser *ps, size_t line, size_t col, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* first error of the current line, at byte offset pos of the text; returns -1 */
int parse_error(parser *ps, size_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* fail the line without a message (an operand comes from a line that already failed); -1 */
int parse_fail_silent(parser *ps);
/* quotes text[a, b) for a message: non-printable bytes as \xNN, long text cut */
const char *lex_snip(const parser *ps, size_t a, size_t b, char *out, size_t outlen);

/* ---- lines ---- */
/* makes text[pos, end) (end at the '\n' or the end of the text) the current line: splits off a
 * trailing "//" comment outside strings and trailing blanks, resets the cursor and `failed` */
void lex_start_line(parser *ps, size_t pos, size_t end);
/* 0 when only blanks remain on the line, else reports what follows `after` */
int lex_expect_eol(parser *ps, const char *after);
/* the IR text position of offset pos on the current line */
pc_loc lex_text_loc(const parser *ps, size_t pos);
/* the location of a value defined at text offset pos: a trailing "// file:line" comment, or the
 * IR text position */
pc_loc lex_line_loc(parser *ps, size_t pos);
char *lex_scratch(parser *ps, size_t n); /* ps->scratch with room for n + 1 bytes; NULL on OOM */

/* ---- characters and the cursor ---- */
static inline bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }
static inline bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static inline bool is_digit(char c) { return c >= '0' && c <= '9'; }
static inline bool is_namec(char c) { return is_alpha(c) || is_digit(c) || c == '.' || c == '-'; }
static inline char lex_peek(const parser *ps) { return ps->p < ps->le ? ps->t[ps->p] : 0; }

void lex_skip_ws(parser *ps);
bool lex_at_end(parser *ps); /* skips blanks */
/* the rest of the token at p, for "found 'x'" messages */
const char *lex_found(parser *ps, char *buf, size_t n);
bool lex_accept(parser *ps, char c);
int lex_expect(parser *ps, char c, const char *what);

/* ---- tokens ---- */
/* identifier [A-Za-z_][A-Za-z0-9_]* ; returns its length (0 = none) without consuming */
size_t lex_ident_len(const parser *ps);
bool lex_ident_is(const parser *ps, size_t n, const char *kw);
/* accepts the keyword kw when it is the whole next identifier */
bool lex_accept_kw(parser *ps, const char *kw);
/* "%name" or "@name": returns a malloc'd copy of the name (without sigil) or NULL on error */
char *lex_sigil_name(parser *ps, char sigil, const char *what);

typedef struct {
    size_t a, b;  /* token extent */
    bool integer; /* no '.', exponent, inf or nan */
    char text[MAX_NUMBER_LEN + 1];
} num_tok;
int lex_number(parser *ps, num_tok *nt, const char *what);
int lex_number_double(parser *ps, const char *what, double *out);
/* "..." with JSON escapes; returns a malloc'd string or NULL after reporting */
char *lex_string(parser *ps, const char *what);

#endif
