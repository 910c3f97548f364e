/* JSON Lines: one JSON value per non-blank line, and the "PATH:LINE: reason" messages every
 * JSONL dataset reader gives (runtime/cls_data.h, runtime/task_data.h). */
#ifndef PEFTC_RUNTIME_JSONL_H
#define PEFTC_RUNTIME_JSONL_H

#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>

/* "path:line: reason" into err; returns -1 */
int pc_line_errf(char *err, size_t errlen, const char *path, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
int pc_line_verrf(char *err, size_t errlen, const char *path, int line, const char *fmt, va_list ap);

/* Calls fn once per non-blank line of text[0..len) (lines of only spaces, tabs and CRs are
 * skipped) with the line's 1-based number and its parsed value (borrowed for the call). A line
 * that is not JSON is an error "path:line: not a JSON object: <parser's reason>". Stops at the
 * first nonzero fn result and returns it (fn writes its own message); 0 when every line passed. */
typedef int (*pc_jsonl_fn)(void *ctx, int line, json_t *value);
int pc_jsonl_each(const char *path, const char *text, size_t len, pc_jsonl_fn fn, void *ctx, char *err,
                  size_t errlen);

#endif
