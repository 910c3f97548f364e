/* A growable, always NUL-terminated byte buffer for building text (JSON, messages).
 *
 * Out of memory is sticky: after the first failed allocation every append is a no-op and `oom`
 * stays true, so callers append freely and check once at the end. Zero-initialise to start
 * (`pc_textbuf b = {0};`); the text is `b.p` (NULL while empty), its length `b.n`; free(b.p). */
#ifndef PEFTC_RUNTIME_TEXTBUF_H
#define PEFTC_RUNTIME_TEXTBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char *p;
    size_t n, cap;
    bool oom;
} pc_textbuf;

void pc_tb_putn(pc_textbuf *b, const char *s, size_t n); /* s may hold NUL bytes */
void pc_tb_puts(pc_textbuf *b, const char *s);
void pc_tb_printf(pc_textbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
