/* The linear-layer convention (see linear.h). */
#include "frontend/linear.h"

#include "ir.h"

#include <stdio.h>
#include <string.h>

static const char WEIGHT_SUFFIX[] = ".weight";

/* get-or-create a frozen, loaded param by key */
static pc_val frozen_param(pc_graph *g, pc_loc at, const char *name, const char *key, pc_shape s) {
    pc_val p = pc_lookup_key(g, key);
    if (p == PC_NONE) return pc_param_at(g, at, name, key, PC_F32, s, PC_FROZEN, (pc_init){0});
    const pc_value *v = pc_v(g, p);
    if (v->op != PC_OP_param || v->dtype != PC_F32 || !pc_shape_eq(v->shape, s)) {
        char a[96], b[96];
        pc_shape_str(v->shape, a, sizeof a);
        pc_shape_str(s, b, sizeof b);
        return pc_fail(g, at, "key \"%s\" is already used by %%%s %s %s, wanted a param f32%s", key,
                       v->name, pc_dtype_name(v->dtype), a, b);
    }
    return p;
}

pc_val pc_linear_at(pc_graph *g, pc_loc at, pc_val x, const char *module, int64_t in, int64_t out,
                    int bias) {
    if (!g || pc_graph_error(g)) return PC_NONE;
    if (!module || !*module) return pc_fail(g, at, "linear: empty module name");
    if (!pc_valid(g, x)) return pc_fail(g, at, "linear %s: the input is not a value", module);
    if (in <= 0 || out <= 0)
        return pc_fail(g, at, "linear %s: in (%lld) and out (%lld) must be positive", module,
                       (long long)in, (long long)out);
    pc_shape xs = pc_val_shape(g, x);
    if (pc_val_dtype(g, x) != PC_F32 || xs.rank < 2 || xs.dim[xs.rank - 1] != in) {
        char b[96];
        pc_shape_str(xs, b, sizeof b);
        return pc_fail(g, at, "linear %s: input must be f32[..., %lld] of rank >= 2, got %s%s", module,
                       (long long)in, pc_dtype_name(pc_val_dtype(g, x)), b);
    }
    size_t n = strlen(module);
    char key[512], bname[512];
    if (n + sizeof WEIGHT_SUFFIX > sizeof key) return pc_fail(g, at, "linear: module name too long");
    snprintf(key, sizeof key, "%s%s", module, WEIGHT_SUFFIX);
    pc_val w = frozen_param(g, at, module, key, pc_shape_make(2, (int64_t[]){out, in}));
    pc_val y = pc_matmul_at(g, at, x, w, 0, 1);
    if (bias) {
        snprintf(key, sizeof key, "%s.bias", module);
        snprintf(bname, sizeof bname, "%s.bias", module);
        pc_val b = frozen_param(g, at, bname, key, pc_shape_make(1, (int64_t[]){out}));
        y = pc_add_at(g, at, y, b);
    }
    return y;
}

/* pc_linear_weight / pc_linear_module live in ir/linear.c: passes recognise linears too, and
 * passes may not depend on the frontend. */
