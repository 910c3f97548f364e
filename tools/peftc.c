/* peftc: the command-line driver with the built-in adapter methods. Each verb lives in its own
 * file (tools/cli_main.c lists them). */
#include "tools/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* libgomp (oneDNN's thread pool) reads OMP_WAIT_POLICY once, in its constructor, before main: a
 * spinning pool collapses when this machine packs both vCPUs onto one, so the default here is
 * passive. setenv cannot reach that constructor (libc's own initialiser resets environ after
 * .preinit_array runs), and re-executing ourselves hid the program from valgrind and debuggers;
 * so the executable provides getenv, which the dynamic linker binds libgomp's lookup to: it is
 * libc's lookup with one default added. The user's own setting wins. */
extern char **environ;
char *getenv(const char *name) {
    size_t n = strlen(name);
    for (char **e = environ; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') return *e + n + 1;
    return strcmp(name, "OMP_WAIT_POLICY") == 0 ? (char *)"passive" : NULL;
}

int main(int argc, char **argv) {
    pc_registry *reg = pc_registry_new();
    if (!reg) { fprintf(stderr, "peftc: out of memory\n"); return 1; }
    int rc = pc_cli_main(reg, argc, argv);
    pc_registry_free(reg);
    return rc;
}
