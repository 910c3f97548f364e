/* Graphviz export: one node per value, edges operand -> user, dashed update edges. */
#include "ir.h"

#include <stdio.h>
#include <stdlib.h>

/* text inside a DOT double-quoted string */
static void put_escaped(pc_strbuf *b, const char *s) {
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\') pc_sb_printf(b, "\\%c", *p);
        else if (*p == '\n') pc_sb_printf(b, "\\n");
        else if (*p < 0x20 || *p == 0x7f) pc_sb_printf(b, "?");
        else pc_sb_printf(b, "%c", *p);
    }
}

char *pc_to_dot(const pc_graph *g) {
    pc_strbuf b = {0};
    pc_sb_printf(&b, "digraph \"");
    put_escaped(&b, g ? g->name : "null");
    pc_sb_printf(&b, "\" {\n  rankdir=TB;\n  node [fontname=\"monospace\", fontsize=10];\n"
                     "  edge [arrowsize=0.6];\n");
    for (int i = 0; g && i < g->nvals; i++) {
        const pc_value *v = &g->vals[i];
        const pc_op_info *info = pc_op_get(v->op);
        char sh[192];
        pc_shape s = v->shape;
        if (s.rank < 0) s.rank = 0;
        pc_shape_str(s, sh, sizeof sh);
        const char *kind = info ? info->name : "?";
        const char *style;
        switch (v->op) {
        case PC_OP_input: style = "shape=invhouse, style=filled, fillcolor=\"#cde4ff\""; break;
        case PC_OP_param:
            if (v->flags & PC_TRAINABLE) {
                kind = "param trainable";
                style = "shape=box, style=\"filled,bold\", color=\"#b35900\", fillcolor=\"#ffc080\"";
            } else {
                kind = "param frozen";
                style = "shape=box, style=filled, fillcolor=\"#d9d9d9\"";
            }
            break;
        case PC_OP_state: style = "shape=box, style=\"filled,dashed\", fillcolor=\"#e8dcff\""; break;
        case PC_OP_const: style = "shape=note, style=filled, fillcolor=\"#fff7c0\""; break;
        default: style = "shape=ellipse"; break;
        }
        pc_sb_printf(&b, "  v%d [label=\"%%", i);
        put_escaped(&b, v->name);
        pc_sb_printf(&b, "\\n%s\\n%s%s", kind, pc_dtype_name(v->dtype), sh);
        if (v->key) {
            pc_sb_printf(&b, "\\n\\\"");
            put_escaped(&b, v->key);
            pc_sb_printf(&b, "\\\"");
        }
        pc_sb_printf(&b, "\", %s", style);
        if (v->flags & PC_LOSS) pc_sb_printf(&b, ", peripheries=2, color=red, fontcolor=red");
        else if (v->flags & PC_OUTPUT) pc_sb_printf(&b, ", peripheries=2");
        if (v->loc.file) {
            pc_sb_printf(&b, ", tooltip=\"");
            put_escaped(&b, v->loc.file);
            pc_sb_printf(&b, ":%d\"", v->loc.line);
        }
        pc_sb_printf(&b, "];\n");
    }
    for (int i = 0; g && i < g->nvals; i++) {
        const pc_value *v = &g->vals[i];
        for (int k = 0; k < v->nin && v->in; k++) {
            if (!pc_valid(g, v->in[k])) continue;
            pc_sb_printf(&b, "  v%d -> v%d", (int)v->in[k], i);
            if (v->nin > 1) pc_sb_printf(&b, " [taillabel=\"%d\", labelfontsize=8]", k + 1);
            pc_sb_printf(&b, ";\n");
        }
    }
    for (int k = 0; g && k < g->nupdates; k++) {
        pc_val t = g->updates[k].target, n = g->updates[k].next;
        if (!pc_valid(g, t) || !pc_valid(g, n)) continue;
        pc_sb_printf(&b, "  v%d -> v%d [style=dashed, color=\"#b35900\", label=\"update\", constraint=false];\n",
                     (int)n, (int)t);
    }
    pc_sb_printf(&b, "}\n");
    return pc_sb_take(&b);
}
