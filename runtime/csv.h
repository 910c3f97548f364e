/* RFC 4180 CSV records from a text in memory, one record at a time: comma separator, fields in
 * double quotes with "" for a quote (they may hold commas and line breaks), records ended by
 * CRLF, LF or CR (or the end of the text), a UTF-8 BOM at the start skipped. Blank lines are
 * skipped, as pandas' read_csv does (so a one-column file cannot hold an empty unquoted field). A
 * quote inside an unquoted field is an ordinary byte (Python's csv module and pandas read it so);
 * anything but a separator or a line end after a closing quote is an error. */
#ifndef PEFTC_RUNTIME_CSV_H
#define PEFTC_RUNTIME_CSV_H

#include <stddef.h>

typedef struct {
    const char *name; /* for messages */
    const char *p, *end;
    int line;         /* 1-based line of p */
    /* the current record: field i is buf + off[i], NUL-terminated, len[i] bytes (may hold NULs) */
    char *buf;
    size_t *off, *len, nf;
    size_t bcap, fcap;
    int rec_line;     /* the line where the current record starts */
} pc_csv;

/* text[0..n) must outlive the reader; name stands for it in messages */
void pc_csv_init(pc_csv *c, const char *name, const char *text, size_t n);
/* Reads the next record: 1 when there is one, 0 at the end of the text, -1 with "NAME:LINE:
 * reason" in err (an unterminated quoted field, bytes after a closing quote, out of memory). */
int pc_csv_next(pc_csv *c, char *err, size_t errlen);
/* field i of the current record (i < c->nf); len optional */
static inline const char *pc_csv_field(const pc_csv *c, size_t i, size_t *len) {
    if (len) *len = c->len[i];
    return c->buf + c->off[i];
}
void pc_csv_free(pc_csv *c);

#endif
