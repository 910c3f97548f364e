/* JSON Lines reading and line-numbered messages (see jsonl.h). */
#include "runtime/jsonl.h"
#include "runtime/fileio.h"

#include <stdio.h>
#include <string.h>

int pc_line_verrf(char *err, size_t errlen, const char *path, int line, const char *fmt, va_list ap) {
    char reason[768];
    vsnprintf(reason, sizeof reason, fmt, ap);
    return pc_errf(err, errlen, "%s:%d: %s", path, line, reason);
}

int pc_line_errf(char *err, size_t errlen, const char *path, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    pc_line_verrf(err, errlen, path, line, fmt, ap);
    va_end(ap);
    return -1;
}

int pc_jsonl_each(const char *path, const char *text, size_t len, pc_jsonl_fn fn, void *ctx, char *err,
                  size_t errlen) {
    const char *p = text, *end = text + len;
    for (int line = 1; p < end; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *e = nl ? nl : end;
        const char *q = p;
        while (q < e && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
        if (q < e) {
            json_error_t je;
            json_t *o = json_loadb(p, (size_t)(e - p), 0, &je);
            if (!o) return pc_line_errf(err, errlen, path, line, "not a JSON object: %s", je.text);
            int rc = fn(ctx, line, o);
            json_decref(o);
            if (rc) return rc;
        }
        p = nl ? nl + 1 : end;
    }
    return 0;
}
