/* Recognising the frontend's linear convention (frontend/linear.h) in any graph: used by the
 * adapter rewrites (passes/) and by the frontend itself. */
#include "ir.h"

#include <string.h>

#define WEIGHT_SUFFIX ".weight"

/* does any embedding op use p as its table? */
static int is_embedding_table(const pc_graph *g, pc_val p) {
    for (int i = 0; i < g->nvals; i++)
        if (g->vals[i].op == PC_OP_embedding && g->vals[i].nin >= 1 && g->vals[i].in[0] == p) return 1;
    return 0;
}

pc_val pc_linear_weight(const pc_graph *g, pc_val mm) {
    if (!g || !pc_valid(g, mm)) return PC_NONE;
    const pc_value *v = pc_v(g, mm);
    if (v->op != PC_OP_matmul || v->nin != 2) return PC_NONE;
    if (pc_attr_i(g, mm, "transpose_a") != 0 || pc_attr_i(g, mm, "transpose_b") != 1) return PC_NONE;
    pc_val w = v->in[1];
    if (!pc_valid(g, w)) return PC_NONE;
    const pc_value *wv = pc_v(g, w);
    if (wv->op != PC_OP_param || !wv->key || wv->shape.rank != 2) return PC_NONE;
    size_t n = strlen(wv->key), s = sizeof WEIGHT_SUFFIX - 1;
    if (n <= s || strcmp(wv->key + n - s, WEIGHT_SUFFIX) != 0) return PC_NONE;
    if (is_embedding_table(g, w)) return PC_NONE;
    return w;
}

const char *pc_linear_module(const pc_graph *g, pc_val mm, char *buf, size_t len) {
    pc_val w = pc_linear_weight(g, mm);
    if (w == PC_NONE || !buf) return NULL;
    const char *key = pc_v(g, w)->key;
    size_t n = strlen(key) - (sizeof WEIGHT_SUFFIX - 1);
    if (n + 1 > len) return NULL;
    memcpy(buf, key, n);
    buf[n] = 0;
    return buf;
}
