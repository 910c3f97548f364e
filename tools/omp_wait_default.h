/* Defines getenv for an executable: include it from exactly one file of each program that links
 * oneDNN (the peftc CLI, the generated main.c of a standalone executable).
 *
 * libgomp (oneDNN's thread pool) reads OMP_WAIT_POLICY once, in its constructor, before main: a
 * spinning pool collapses when this machine packs both vCPUs onto one, so the default here is
 * passive. setenv cannot reach that constructor (libc's own initialiser resets environ after
 * .preinit_array runs), and re-executing ourselves hid the program from valgrind and debuggers;
 * so the executable provides getenv, which the dynamic linker binds libgomp's lookup to: it is
 * libc's lookup with one default added. The user's own setting wins. */
#ifndef PEFTC_TOOLS_OMP_WAIT_DEFAULT_H
#define PEFTC_TOOLS_OMP_WAIT_DEFAULT_H

#include <stddef.h>
#include <string.h>

extern char **environ;
char *getenv(const char *name);
char *getenv(const char *name) {
    size_t n = strlen(name);
    for (char **e = environ; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') return *e + n + 1;
    return strcmp(name, "OMP_WAIT_POLICY") == 0 ? (char *)"passive" : NULL;
}

#endif
