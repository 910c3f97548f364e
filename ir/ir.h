/* Internal graph IR: the structures behind pc_graph and the op registry. */
#ifndef PEFTC_IR_H
#define PEFTC_IR_H

#include "peftc/peftc.h"

#include <stdarg.h>
#include <stdbool.h>

/* ---- op registry (generated from ir/ops.def) ---- */
typedef enum {
#define OP(id, name, nin, fusion, diff, attrs) PC_OP_##id,
#include "ops.def"
#undef OP
    PC_OP_COUNT
} pc_opcode;

typedef enum { PC_FUSE_ELEMENTWISE, PC_FUSE_REDUCTION, PC_FUSE_MATMUL, PC_FUSE_SHAPE,
               PC_FUSE_OPAQUE, PC_FUSE_SOURCE } pc_fusion_class;

typedef enum { PC_ATTR_INT, PC_ATTR_FLOAT, PC_ATTR_INTS } pc_attr_kind;

#define PC_MAX_ATTRS 8
#define PC_MAX_INTS 8 /* longest int-list attribute (perm, shape: rank <= 6) */

typedef struct {
    const char *name;
    pc_attr_kind kind;
    double dflt; /* INT and FLOAT defaults; INTS default to the empty list */
} pc_attr_spec;

typedef struct {
    const char *name;
    int nin; /* -1 = variadic */
    pc_fusion_class fusion;
    bool differentiable; /* has a gradient rule (ir/grad.c) */
    int nattrs;
    const pc_attr_spec *attrs;
    bool constant_grad; /* no gradient by definition: autograd treats the result as a constant */
} pc_op_info;

const pc_op_info *pc_op_get(pc_opcode op);
int pc_op_find(const char *name); /* opcode or -1 */

/* one attribute value; which member is live follows the op's schema */
typedef struct {
    int64_t i;
    double f;
    int n; /* INTS length */
    int64_t ints[PC_MAX_INTS];
} pc_attr;

/* ---- values: every node produces exactly one value ---- */
typedef struct {
    pc_opcode op;
    pc_dtype dtype;
    pc_shape shape;
    int nin;
    pc_val *in; /* owned */
    pc_attr attr[PC_MAX_ATTRS];
    char *name; /* SSA name without '%', owned, unique */
    char *key;  /* checkpoint key of a param/state, owned, or NULL */
    unsigned flags;
    pc_init init;
    void *data; /* constant payload (numel elements) or NULL if elided; owned */
    pc_loc loc;
} pc_value;

typedef struct {
    pc_val target; /* param or state */
    pc_val next;
} pc_update;

struct pc_graph {
    char *name;
    pc_value *vals;
    int nvals, cap;
    pc_val *outputs; /* in declaration order */
    int noutputs, capout;
    pc_update *updates;
    int nupdates, capupd;
    char **files; /* interned location file names */
    int nfiles;
    char *error; /* first sticky error, "file:line: error: msg" */
    int next_auto; /* counter for automatic SSA names */
    pc_val *name_index; /* open-addressing hash: SSA name -> value, capacity nindex (power of 2) */
    int nindex;
};

/* ---- builder internals ---- */
static inline pc_value *pc_v(const pc_graph *g, pc_val v) { return &g->vals[v]; }
static inline bool pc_valid(const pc_graph *g, pc_val v) { return v >= 0 && v < g->nvals; }

/* record a sticky error (only the first is kept); always returns PC_NONE */
pc_val pc_fail(pc_graph *g, pc_loc at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
const char *pc_intern_file(pc_graph *g, const char *file);

/* appends a node after inferring its type; attrs are given in schema order (NULL = defaults).
 * Returns PC_NONE (and sets the sticky error) when an operand is invalid or inference fails. */
pc_val pc_node(pc_graph *g, pc_loc at, pc_opcode op, int nin, const pc_val *in, const pc_attr *attrs);
/* appends a node with a given type and no inference or checks beyond operand validity (the
 * parser uses it so that one bad line does not hide the errors of later lines; the verifier
 * then re-infers every node). name NULL = automatic. */
pc_val pc_node_raw(pc_graph *g, pc_loc at, const char *name, pc_opcode op, int nin, const pc_val *in,
                   const pc_attr *attrs, pc_dtype dt, pc_shape shape);
/* copies value v of src into dst with operands remapped through map (src id -> dst id); keeps
 * the name when free, the location, flags (minus output/loss), key, init and data */
pc_val pc_copy_value(pc_graph *dst, const pc_graph *src, pc_val v, const pc_val *map);
/* re-marks src's outputs (and loss) and updates in dst through map */
int pc_copy_outputs(pc_graph *dst, const pc_graph *src, const pc_val *map);
/* the end of a pass that rebuilt *gp as *ng through map: g's outputs and updates copied into *ng,
 * which then replaces *gp (the old graph freed, *ng set to NULL): 0; or -1 with "PASS: <the new
 * graph's error>" in err, both graphs left to the caller */
int pc_rebuild_commit(pc_graph **gp, pc_graph **ng, const pc_val *map, const char *pass, char *err, size_t errlen);
/* the linear convention of frontend/linear.h: the weight param of a linear matmul (PC_NONE if
 * mm is not one; a param that is also an embedding table is not a linear), and its module name */
pc_val pc_linear_weight(const pc_graph *g, pc_val mm);
const char *pc_linear_module(const pc_graph *g, pc_val mm, char *buf, size_t len);
/* double -> int64 without undefined behaviour: truncates, saturates, NaN -> 0 (the .i shadow
 * of FLOAT attributes) */
static inline int64_t pc_f2i(double x) {
    if (!(x == x)) return 0;
    if (x >= 9.2e18) return INT64_MAX;
    if (x <= -9.2e18) return INT64_MIN;
    return (int64_t)x;
}
/* attribute by name (schema checked; a wrong name is a programming error and returns the default) */
int64_t pc_attr_i(const pc_graph *g, pc_val v, const char *name);
double pc_attr_f(const pc_graph *g, pc_val v, const char *name);
const pc_attr *pc_attr_get(const pc_graph *g, pc_val v, const char *name);
/* default attribute values of an op, in schema order */
void pc_attr_defaults(pc_opcode op, pc_attr out[PC_MAX_ATTRS]);
/* parse "name=value" into the slot of the op's schema; returns 0 or -1 with a message in err */
int pc_attr_parse(pc_opcode op, pc_attr attrs[PC_MAX_ATTRS], const char *text, char *err, size_t errlen);

/* ---- shape inference (ir/infer.c) ----
 * Fills *dt and *shape for op applied to the operand types; on failure returns -1 and writes
 * a human message ("operand 2 of matmul: ...") to err. Used by the builder and the verifier. */
int pc_infer(const pc_graph *g, pc_opcode op, int nin, const pc_val *in, const pc_attr *attrs,
             pc_dtype *dt, pc_shape *shape, char *err, size_t errlen);

/* ---- small shape helpers (ir/shape.c) ---- */
int pc_broadcast_shapes(pc_shape a, pc_shape b, pc_shape *out); /* 0 or -1 */
int64_t pc_norm_axis(int64_t axis, int rank);                    /* -1 if out of range */
void pc_shape_str(pc_shape s, char *buf, size_t len);            /* "[8,64]" */
const char *pc_dtype_name(pc_dtype dt);                          /* "f32" */
size_t pc_dtype_size(pc_dtype dt);

/* ---- growable string buffer (ir/strbuf.c) ---- */
typedef struct {
    char *s;
    size_t len, cap;
    bool oom;
} pc_strbuf;
void pc_sb_printf(pc_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pc_sb_vprintf(pc_strbuf *b, const char *fmt, va_list ap);
char *pc_sb_take(pc_strbuf *b); /* returns the string (never NULL unless OOM); resets b */

/* one value as the text IR prints it, without indent, location or newline, e.g.
 * "%y = matmul %x, %w {transpose_b=1} : f32[2,4]" (malloc'd; for messages) */
char *pc_print_value(const pc_graph *g, pc_val v);

#endif
