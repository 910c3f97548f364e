/* RFC 4180 CSV records. */
#include "runtime/csv.h"
#include "runtime/fileio.h"

#include <stdlib.h>
#include <string.h>

void pc_csv_init(pc_csv *c, const char *name, const char *text, size_t n) {
    *c = (pc_csv){.name = name, .p = text, .end = text + n, .line = 1};
    if (n >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) c->p += 3;
}

void pc_csv_free(pc_csv *c) {
    free(c->buf);
    free(c->off);
    free(c->len);
    *c = (pc_csv){0};
}

/* line breaks in s[0..n): LF, and CR not followed by LF (looked up in the whole text) */
static int count_lines(const pc_csv *c, const char *s, size_t n) {
    int k = 0;
    for (size_t i = 0; i < n; i++)
        k += s[i] == '\n' || (s[i] == '\r' && !(s + i + 1 < c->end && s[i + 1] == '\n'));
    return k;
}

static int put(pc_csv *c, size_t *bn, const char *s, size_t n) {
    if (*bn + n + 1 > c->bcap) {
        size_t cap = c->bcap ? c->bcap : 256;
        while (cap < *bn + n + 1) cap *= 2;
        char *b = realloc(c->buf, cap);
        if (!b) return -1;
        c->buf = b, c->bcap = cap;
    }
    memcpy(c->buf + *bn, s, n);
    *bn += n;
    return 0;
}

static int end_field(pc_csv *c, size_t *bn, size_t start) {
    if (c->nf == c->fcap) {
        size_t cap = c->fcap ? c->fcap * 2 : 16;
        size_t *o = realloc(c->off, cap * sizeof *o);
        if (!o) return -1;
        c->off = o;
        size_t *l = realloc(c->len, cap * sizeof *l);
        if (!l) return -1;
        c->len = l, c->fcap = cap;
    }
    c->off[c->nf] = start;
    c->len[c->nf++] = *bn - start;
    return put(c, bn, "", 1);
}

static size_t span(const char *p, const char *end) {
    const char *q = p;
    while (q < end && *q != ',' && *q != '\n' && *q != '\r') q++;
    return (size_t)(q - p);
}

int pc_csv_next(pc_csv *c, char *err, size_t errlen) {
    while (c->p < c->end && (*c->p == '\n' || *c->p == '\r')) { /* blank lines */
        c->line += count_lines(c, c->p, 1);
        c->p++;
    }
    if (c->p == c->end) return 0;
    c->rec_line = c->line;
    c->nf = 0;
    size_t bn = 0;
    for (;;) {
        size_t start = bn;
        if (c->p < c->end && *c->p == '"') {
            int qline = c->line;
            c->p++;
            for (;;) {
                const char *q = memchr(c->p, '"', (size_t)(c->end - c->p));
                if (!q)
                    return pc_errf(err, errlen, "%s:%d: unterminated quoted field (field %zu)", c->name, qline,
                                   c->nf + 1);
                c->line += count_lines(c, c->p, (size_t)(q - c->p));
                if (put(c, &bn, c->p, (size_t)(q - c->p))) goto oom;
                c->p = q + 1;
                if (c->p < c->end && *c->p == '"') { /* "" */
                    if (put(c, &bn, "\"", 1)) goto oom;
                    c->p++;
                    continue;
                }
                break;
            }
            if (span(c->p, c->end))
                return pc_errf(err, errlen,
                               "%s:%d: field %zu: text after its closing quote (a quote inside a quoted field is "
                               "written \"\")",
                               c->name, c->line, c->nf + 1);
        } else {
            size_t n = span(c->p, c->end);
            if (put(c, &bn, c->p, n)) goto oom;
            c->p += n;
        }
        if (end_field(c, &bn, start)) goto oom;
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            continue;
        }
        if (c->p < c->end) { /* CRLF, LF or CR */
            c->line++;
            c->p += *c->p == '\r' && c->p + 1 < c->end && c->p[1] == '\n' ? 2 : 1;
        }
        return 1;
    }
oom:
    return pc_errf(err, errlen, "%s:%d: out of memory", c->name, c->rec_line);
}
