/* Growable string buffer used by the printer, the verifier and diagnostics. */
#include "ir.h"

#include <stdio.h>
#include <stdlib.h>

void pc_sb_vprintf(pc_strbuf *b, const char *fmt, va_list ap) {
    if (b->oom) return;
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) return;
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + (size_t)n + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) { b->oom = true; return; }
        b->s = s;
        b->cap = cap;
    }
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void pc_sb_printf(pc_strbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    pc_sb_vprintf(b, fmt, ap);
    va_end(ap);
}

char *pc_sb_take(pc_strbuf *b) {
    char *s = b->s;
    if (b->oom) { free(s); s = NULL; }
    else if (!s) s = calloc(1, 1);
    *b = (pc_strbuf){0};
    return s;
}
