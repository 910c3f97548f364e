/* peftc: the command-line driver with the built-in adapter methods. Each verb lives in its own
 * file (tools/cli_main.c lists them). */
#include "tools/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    /* libgomp (oneDNN's thread pool) reads its wait policy once, at load time: a spinning pool
     * collapses when this machine packs both vCPUs onto one, so make it passive by re-executing
     * ourselves with the variable set (the user's own setting wins). */
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 0);
        execv("/proc/self/exe", argv);
        /* exec failed (no /proc): go on with the default policy */
    }
    pc_registry *reg = pc_registry_new();
    if (!reg) { fprintf(stderr, "peftc: out of memory\n"); return 1; }
    int rc = pc_cli_main(reg, argc, argv);
    pc_registry_free(reg);
    return rc;
}
