/* Small string helpers shared by the runtime's readers. */
#ifndef PEFTC_RUNTIME_STRUTIL_H
#define PEFTC_RUNTIME_STRUTIL_H

#include <stdbool.h>

/* equal ignoring ASCII case only (Python's str.lower() on ASCII text; no locale) */
bool pc_ascii_ieq(const char *a, const char *b);

#endif
