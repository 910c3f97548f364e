/* Pass error messages. See pass_error.h. */
#include "passes/pass_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int pc_pass_errorf(char *err, size_t errlen, pc_loc at, const char *pass, const char *fmt, ...) {
    pc_strbuf b = {0};
    if (at.file) pc_sb_printf(&b, "%s:%d: ", at.file, at.line);
    pc_sb_printf(&b, "error: %s: ", pass);
    va_list ap;
    va_start(ap, fmt);
    pc_sb_vprintf(&b, fmt, ap);
    va_end(ap);
    char *m = pc_sb_take(&b);
    if (m) snprintf(err, errlen, "%s", m);
    else snprintf(err, errlen, "error: %s: out of memory", pass);
    free(m);
    return -1;
}
