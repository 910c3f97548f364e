/* The op table, generated from ops.def. */
#include "ir.h"

#include <string.h>

#define ATTRS_NONE 0, NULL
#define ATTRS(...)                                                                                \
    (int)(sizeof((const pc_attr_spec[]){__VA_ARGS__}) / sizeof(pc_attr_spec)),                   \
        (const pc_attr_spec[]) { __VA_ARGS__ }
#define A(n, kind, d) {#n, PC_ATTR_##kind, (double)(d)}

static const pc_op_info op_table[PC_OP_COUNT] = {
#define OP(id, nm, n, fusion, diff, attrs) [PC_OP_##id] = {nm, n, PC_FUSE_##fusion, (diff) == 1, attrs, (diff) == 2},
#include "ops.def"
#undef OP
};

const pc_op_info *pc_op_get(pc_opcode op) {
    if ((int)op < 0 || op >= PC_OP_COUNT) return NULL;
    return &op_table[op];
}

int pc_op_find(const char *name) {
    for (int i = 0; i < PC_OP_COUNT; i++)
        if (strcmp(op_table[i].name, name) == 0) return i;
    return -1;
}
