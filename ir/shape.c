/* Shape and dtype helpers. */
#include "ir.h"

#include <stdio.h>
#include <string.h>

pc_shape pc_shape_make(int rank, const int64_t *dims) {
    pc_shape s = {0};
    if (rank < 0) rank = 0;
    if (rank > PC_MAX_RANK) rank = PC_MAX_RANK + 1; /* kept invalid: callers check rank */
    s.rank = rank;
    for (int i = 0; i < rank && i < PC_MAX_RANK; i++) s.dim[i] = dims[i];
    return s;
}

int64_t pc_shape_numel(pc_shape s) {
    int64_t n = 1;
    for (int i = 0; i < s.rank && i < PC_MAX_RANK; i++) n *= s.dim[i];
    return n;
}

int pc_shape_eq(pc_shape a, pc_shape b) {
    if (a.rank != b.rank) return 0;
    for (int i = 0; i < a.rank && i < PC_MAX_RANK; i++)
        if (a.dim[i] != b.dim[i]) return 0;
    return 1;
}

int pc_broadcast_shapes(pc_shape a, pc_shape b, pc_shape *out) {
    pc_shape r = {0};
    r.rank = a.rank > b.rank ? a.rank : b.rank;
    for (int i = 0; i < r.rank; i++) {
        int ia = a.rank - r.rank + i, ib = b.rank - r.rank + i;
        int64_t da = ia >= 0 ? a.dim[ia] : 1, db = ib >= 0 ? b.dim[ib] : 1;
        if (da == db || db == 1) r.dim[i] = da;
        else if (da == 1) r.dim[i] = db;
        else return -1;
    }
    *out = r;
    return 0;
}

int64_t pc_norm_axis(int64_t axis, int rank) {
    if (axis < 0) axis += rank;
    if (axis < 0 || axis >= rank) return -1;
    return axis;
}

void pc_shape_str(pc_shape s, char *buf, size_t len) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, o < len ? len - o : 0, "[");
    for (int i = 0; i < s.rank && i < PC_MAX_RANK; i++)
        o += (size_t)snprintf(buf + o, o < len ? len - o : 0, "%s%lld", i ? "," : "", (long long)s.dim[i]);
    snprintf(buf + o, o < len ? len - o : 0, "]");
}

const char *pc_dtype_name(pc_dtype dt) {
    switch (dt) {
    case PC_F32: return "f32";
    case PC_I32: return "i32";
    case PC_BF16: return "bf16";
    }
    return "?";
}

size_t pc_dtype_size(pc_dtype dt) {
    switch (dt) {
    case PC_F32: return 4;
    case PC_I32: return 4;
    case PC_BF16: return 2;
    }
    return 0;
}
