/* A program built against an installed peftc (tests/install/run.sh builds it twice: through
 * find_package(peftc) with CMakeLists.txt beside it, and through pkg-config). It uses the public
 * API only (<peftc/peftc.h>, <peftc/adapter.h>). Without arguments it builds, verifies and prints
 * a small graph and looks LoRA up in the registry; with arguments it is the peftc command line
 * (pc_cli_main), as a program that registers its own methods would be. */
#include <peftc/adapter.h>
#include <peftc/peftc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int graph_demo(void) {
    pc_graph *g = pc_graph_new("user");
    pc_val x = pc_input(g, "x", PC_F32, PC_SHAPE(2, 3));
    pc_val w = pc_param(g, "w", "layer.weight", PC_F32, PC_SHAPE(4, 3), PC_TRAINABLE,
                        (pc_init){PC_INIT_KAIMING_UNIFORM, 2.2360679775, 0});
    pc_val y = pc_matmul(g, x, w, 0, 1);
    pc_val loss = pc_mean(g, pc_square(g, y), 2, (int64_t[]){0, 1}, 0);
    if (pc_graph_error(g) || pc_mark_loss(g, loss)) {
        fprintf(stderr, "graph: %s\n", pc_graph_error(g));
        pc_graph_free(g);
        return 1;
    }
    char *err = NULL;
    int nerr = pc_verify(g, &err);
    char *text = nerr ? NULL : pc_print(g, (pc_print_opts){0});
    if (nerr || !text || !strstr(text, "matmul")) {
        fprintf(stderr, "verify: %s\n", err ? err : "no IR");
        free(err);
        free(text);
        pc_graph_free(g);
        return 1;
    }
    fputs(text, stdout);
    free(text);
    pc_graph_free(g);
    return 0;
}

int main(int argc, char **argv) {
    pc_registry *reg = pc_registry_new();
    if (!reg) return 1;
    int rc;
    if (argc > 1) rc = pc_cli_main(reg, argc, argv);
    else if ((rc = graph_demo()) == 0) {
        const pc_adapter_method *m = pc_registry_find(reg, "LORA");
        printf("%d methods, LORA is %s\n", pc_registry_count(reg), m ? m->name : "missing");
        rc = m ? 0 : 1;
    }
    pc_registry_free(reg);
    return rc;
}
