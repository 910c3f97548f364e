/* Error messages of the graph passes, in one format: "FILE:LINE: error: PASS: MESSAGE". */
#ifndef PEFTC_PASSES_PASS_ERROR_H
#define PEFTC_PASSES_PASS_ERROR_H

#include "ir/ir.h"

#include <stddef.h>

/* writes the message into err (the "FILE:LINE: " prefix only when at.file is set); returns -1 so
 * passes can `return pc_pass_errorf(...)` */
int pc_pass_errorf(char *err, size_t errlen, pc_loc at, const char *pass, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

#endif
