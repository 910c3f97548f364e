/* peftc: the command-line driver with the built-in adapter methods. Each verb lives in its own
 * file (tools/cli_main.c lists them). */
#include "tools/cli.h"
#include "tools/omp_wait_default.h" /* getenv: a passive OpenMP pool by default */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    pc_registry *reg = pc_registry_new();
    if (!reg) { fprintf(stderr, "peftc: out of memory\n"); return 1; }
    int rc = pc_cli_main(reg, argc, argv);
    pc_registry_free(reg);
    return rc;
}
