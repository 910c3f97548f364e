/* peftc public API: the C DSL that builds typed computation graphs.
 *
 * A pc_graph owns every value, name, attribute and constant it holds. Builder calls return a
 * pc_val handle (an index into the graph). Errors are sticky: the first failing call records a
 * message with its call site, returns PC_NONE, and every later call that receives PC_NONE
 * returns PC_NONE without a new message. Check pc_graph_error() once at the end. Nothing aborts.
 *
 *   pc_graph *g = pc_graph_new("train");
 *   pc_val x = pc_input(g, "x", PC_F32, PC_SHAPE(8, 64));
 *   pc_val w = pc_param(g, "w", "layers.0.w", PC_F32, PC_SHAPE(64, 64), PC_FROZEN);
 *   pc_val y = pc_matmul(g, x, w, 0, 1);
 */
#ifndef PEFTC_PEFTC_H
#define PEFTC_PEFTC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PC_MAX_RANK 6

typedef enum { PC_F32 = 0, PC_I32 = 1, PC_BF16 = 2 } pc_dtype;

typedef struct {
    int rank;
    int64_t dim[PC_MAX_RANK];
} pc_shape;

/* where a value was made: a DSL call site or an IR text position */
typedef struct {
    const char *file; /* interned in the graph, or a string literal from __FILE__ */
    int line;
    int col;
} pc_loc;

typedef int32_t pc_val;
#define PC_NONE ((pc_val)-1)

/* value flags */
enum {
    PC_INPUT = 1u << 0,     /* graph input, fed per call */
    PC_OUTPUT = 1u << 1,    /* graph output */
    PC_FROZEN = 1u << 2,    /* param that never gets a gradient */
    PC_TRAINABLE = 1u << 3, /* param updated by training */
    PC_CONST = 1u << 4,     /* constant with data in the graph */
    PC_LOSS = 1u << 5,      /* the scalar autograd differentiates */
    PC_STATE = 1u << 6,     /* persistent non-param state (optimizer moments) */
};

/* how a param or state value is initialised when no checkpoint provides it */
typedef enum {
    PC_INIT_NONE = 0,        /* must be loaded */
    PC_INIT_ZEROS,
    PC_INIT_ONES,
    PC_INIT_UNIFORM,         /* U(a, b) */
    PC_INIT_NORMAL,          /* N(0, a) */
    PC_INIT_KAIMING_UNIFORM, /* torch kaiming_uniform_(a=a): bound = sqrt(6/((1+a^2) fan_in)) */
} pc_init_kind;

typedef struct {
    pc_init_kind kind;
    double a, b;
} pc_init;

typedef struct pc_graph pc_graph;

/* ---- shapes ---- */
pc_shape pc_shape_make(int rank, const int64_t *dims);
#define PC_SHAPE(...)                                                                             \
    pc_shape_make((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})
#define PC_SCALAR pc_shape_make(0, NULL)
int64_t pc_shape_numel(pc_shape s);
int pc_shape_eq(pc_shape a, pc_shape b);

/* ---- graph ---- */
pc_graph *pc_graph_new(const char *name);
void pc_graph_free(pc_graph *g);
const char *pc_graph_error(const pc_graph *g); /* NULL when no error */
void pc_graph_clear_error(pc_graph *g);
int pc_graph_size(const pc_graph *g); /* number of values */

/* type and naming queries */
pc_dtype pc_val_dtype(const pc_graph *g, pc_val v);
pc_shape pc_val_shape(const pc_graph *g, pc_val v);
const char *pc_val_name(const pc_graph *g, pc_val v);
pc_val pc_lookup(const pc_graph *g, const char *name);  /* by SSA name, PC_NONE if absent */
pc_val pc_lookup_key(const pc_graph *g, const char *key); /* param/state by checkpoint key */
int pc_set_name(pc_graph *g, pc_val v, const char *name); /* 0 or -1 (taken / invalid) */

/* ---- leaves ----
 * Every builder has a *_at form taking the location; the macros pass the caller's
 * __FILE__/__LINE__. Names are SSA names (unique); `key` is the checkpoint name of a param. */
pc_val pc_input_at(pc_graph *g, pc_loc at, const char *name, pc_dtype dt, pc_shape s);
pc_val pc_param_at(pc_graph *g, pc_loc at, const char *name, const char *key, pc_dtype dt,
                   pc_shape s, unsigned flags, pc_init init);
pc_val pc_state_at(pc_graph *g, pc_loc at, const char *name, const char *key, pc_dtype dt,
                   pc_shape s, pc_init init);
/* copies numel(s) elements from data (float* for f32, int32_t* for i32) */
pc_val pc_const_at(pc_graph *g, pc_loc at, pc_dtype dt, pc_shape s, const void *data);
pc_val pc_scalar_at(pc_graph *g, pc_loc at, float value);
int pc_mark_output(pc_graph *g, pc_val v);
int pc_mark_loss(pc_graph *g, pc_val v); /* also marks it an output */
/* after a step, the value `next` is written back into param/state `target` */
int pc_add_update(pc_graph *g, pc_val target, pc_val next);

/* ---- ops (see ir/ops.def for the exact semantics) ---- */
pc_val pc_add_at(pc_graph *g, pc_loc at, pc_val a, pc_val b);
pc_val pc_sub_at(pc_graph *g, pc_loc at, pc_val a, pc_val b);
pc_val pc_mul_at(pc_graph *g, pc_loc at, pc_val a, pc_val b);
pc_val pc_div_at(pc_graph *g, pc_loc at, pc_val a, pc_val b);
pc_val pc_maximum_at(pc_graph *g, pc_loc at, pc_val a, pc_val b);
pc_val pc_minimum_at(pc_graph *g, pc_loc at, pc_val a, pc_val b);
pc_val pc_eq_at(pc_graph *g, pc_loc at, pc_val a, pc_val b);
pc_val pc_lt_at(pc_graph *g, pc_loc at, pc_val a, pc_val b);
pc_val pc_gt_at(pc_graph *g, pc_loc at, pc_val a, pc_val b);
pc_val pc_where_at(pc_graph *g, pc_loc at, pc_val cond, pc_val a, pc_val b);
pc_val pc_neg_at(pc_graph *g, pc_loc at, pc_val x);
pc_val pc_scale_at(pc_graph *g, pc_loc at, pc_val x, double alpha, double beta);
pc_val pc_exp_at(pc_graph *g, pc_loc at, pc_val x);
pc_val pc_log_at(pc_graph *g, pc_loc at, pc_val x);
pc_val pc_sqrt_at(pc_graph *g, pc_loc at, pc_val x);
pc_val pc_rsqrt_at(pc_graph *g, pc_loc at, pc_val x);
pc_val pc_square_at(pc_graph *g, pc_loc at, pc_val x);
pc_val pc_abs_at(pc_graph *g, pc_loc at, pc_val x);
pc_val pc_tanh_at(pc_graph *g, pc_loc at, pc_val x);
pc_val pc_sigmoid_at(pc_graph *g, pc_loc at, pc_val x);
pc_val pc_relu_at(pc_graph *g, pc_loc at, pc_val x);
pc_val pc_gelu_at(pc_graph *g, pc_loc at, pc_val x, int tanh_approx);
pc_val pc_silu_at(pc_graph *g, pc_loc at, pc_val x);
pc_val pc_cast_at(pc_graph *g, pc_loc at, pc_val x, pc_dtype to);
pc_val pc_dropout_at(pc_graph *g, pc_loc at, pc_val x, pc_val seed, double p, int64_t salt);
pc_val pc_sum_at(pc_graph *g, pc_loc at, pc_val x, int naxes, const int64_t *axes, int keepdim);
pc_val pc_mean_at(pc_graph *g, pc_loc at, pc_val x, int naxes, const int64_t *axes, int keepdim);
pc_val pc_max_at(pc_graph *g, pc_loc at, pc_val x, int naxes, const int64_t *axes, int keepdim);
pc_val pc_softmax_at(pc_graph *g, pc_loc at, pc_val x, int64_t axis);
pc_val pc_log_softmax_at(pc_graph *g, pc_loc at, pc_val x, int64_t axis);
pc_val pc_rmsnorm_at(pc_graph *g, pc_loc at, pc_val x, pc_val w, double eps);
pc_val pc_layernorm_at(pc_graph *g, pc_loc at, pc_val x, pc_val w, pc_val b, double eps);
pc_val pc_matmul_at(pc_graph *g, pc_loc at, pc_val a, pc_val b, int transpose_a, int transpose_b);
pc_val pc_kron_at(pc_graph *g, pc_loc at, pc_val a, pc_val b);
pc_val pc_reshape_at(pc_graph *g, pc_loc at, pc_val x, pc_shape s);
pc_val pc_transpose_at(pc_graph *g, pc_loc at, pc_val x, int n, const int64_t *perm);
pc_val pc_broadcast_at(pc_graph *g, pc_loc at, pc_val x, pc_shape s);
pc_val pc_sum_to_at(pc_graph *g, pc_loc at, pc_val x, pc_shape s);
pc_val pc_slice_at(pc_graph *g, pc_loc at, pc_val x, int64_t axis, int64_t start, int64_t end);
pc_val pc_pad_at(pc_graph *g, pc_loc at, pc_val x, int64_t axis, int64_t before, int64_t after);
pc_val pc_concat_at(pc_graph *g, pc_loc at, int n, const pc_val *xs, int64_t axis);
pc_val pc_embedding_at(pc_graph *g, pc_loc at, pc_val table, pc_val ids);
pc_val pc_embedding_grad_at(pc_graph *g, pc_loc at, pc_val ids, pc_val grad, int64_t rows);
pc_val pc_rope_at(pc_graph *g, pc_loc at, pc_val x, pc_val pos, double theta, int style, int inverse);
pc_val pc_causal_mask_at(pc_graph *g, pc_loc at, pc_val scores, double fill);
pc_val pc_cross_entropy_at(pc_graph *g, pc_loc at, pc_val logits, pc_val targets,
                           int64_t ignore_index, int reduction);

/* generic builder: op by registry name, attributes as "name=value" strings
 * (e.g. "transpose_b=1", "axes=[0,2]"); used by the parser and by user rewrites */
pc_val pc_op_at(pc_graph *g, pc_loc at, const char *op, int nin, const pc_val *in, int nattr,
                const char *const *attrs);

#define PC_HERE ((pc_loc){__FILE__, __LINE__, 0})
#define pc_input(g, ...) pc_input_at(g, PC_HERE, __VA_ARGS__)
#define pc_param(g, ...) pc_param_at(g, PC_HERE, __VA_ARGS__)
#define pc_state(g, ...) pc_state_at(g, PC_HERE, __VA_ARGS__)
#define pc_const(g, ...) pc_const_at(g, PC_HERE, __VA_ARGS__)
#define pc_scalar(g, ...) pc_scalar_at(g, PC_HERE, __VA_ARGS__)
#define pc_add(g, ...) pc_add_at(g, PC_HERE, __VA_ARGS__)
#define pc_sub(g, ...) pc_sub_at(g, PC_HERE, __VA_ARGS__)
#define pc_mul(g, ...) pc_mul_at(g, PC_HERE, __VA_ARGS__)
#define pc_div(g, ...) pc_div_at(g, PC_HERE, __VA_ARGS__)
#define pc_maximum(g, ...) pc_maximum_at(g, PC_HERE, __VA_ARGS__)
#define pc_minimum(g, ...) pc_minimum_at(g, PC_HERE, __VA_ARGS__)
#define pc_eq(g, ...) pc_eq_at(g, PC_HERE, __VA_ARGS__)
#define pc_lt(g, ...) pc_lt_at(g, PC_HERE, __VA_ARGS__)
#define pc_gt(g, ...) pc_gt_at(g, PC_HERE, __VA_ARGS__)
#define pc_where(g, ...) pc_where_at(g, PC_HERE, __VA_ARGS__)
#define pc_neg(g, ...) pc_neg_at(g, PC_HERE, __VA_ARGS__)
#define pc_scale(g, ...) pc_scale_at(g, PC_HERE, __VA_ARGS__)
#define pc_exp(g, ...) pc_exp_at(g, PC_HERE, __VA_ARGS__)
#define pc_log(g, ...) pc_log_at(g, PC_HERE, __VA_ARGS__)
#define pc_sqrt(g, ...) pc_sqrt_at(g, PC_HERE, __VA_ARGS__)
#define pc_rsqrt(g, ...) pc_rsqrt_at(g, PC_HERE, __VA_ARGS__)
#define pc_square(g, ...) pc_square_at(g, PC_HERE, __VA_ARGS__)
#define pc_abs(g, ...) pc_abs_at(g, PC_HERE, __VA_ARGS__)
#define pc_tanh(g, ...) pc_tanh_at(g, PC_HERE, __VA_ARGS__)
#define pc_sigmoid(g, ...) pc_sigmoid_at(g, PC_HERE, __VA_ARGS__)
#define pc_relu(g, ...) pc_relu_at(g, PC_HERE, __VA_ARGS__)
#define pc_gelu(g, ...) pc_gelu_at(g, PC_HERE, __VA_ARGS__)
#define pc_silu(g, ...) pc_silu_at(g, PC_HERE, __VA_ARGS__)
#define pc_cast(g, ...) pc_cast_at(g, PC_HERE, __VA_ARGS__)
#define pc_dropout(g, ...) pc_dropout_at(g, PC_HERE, __VA_ARGS__)
#define pc_sum(g, ...) pc_sum_at(g, PC_HERE, __VA_ARGS__)
#define pc_mean(g, ...) pc_mean_at(g, PC_HERE, __VA_ARGS__)
#define pc_max(g, ...) pc_max_at(g, PC_HERE, __VA_ARGS__)
#define pc_softmax(g, ...) pc_softmax_at(g, PC_HERE, __VA_ARGS__)
#define pc_log_softmax(g, ...) pc_log_softmax_at(g, PC_HERE, __VA_ARGS__)
#define pc_rmsnorm(g, ...) pc_rmsnorm_at(g, PC_HERE, __VA_ARGS__)
#define pc_layernorm(g, ...) pc_layernorm_at(g, PC_HERE, __VA_ARGS__)
#define pc_matmul(g, ...) pc_matmul_at(g, PC_HERE, __VA_ARGS__)
#define pc_kron(g, ...) pc_kron_at(g, PC_HERE, __VA_ARGS__)
#define pc_reshape(g, ...) pc_reshape_at(g, PC_HERE, __VA_ARGS__)
#define pc_transpose(g, ...) pc_transpose_at(g, PC_HERE, __VA_ARGS__)
#define pc_broadcast(g, ...) pc_broadcast_at(g, PC_HERE, __VA_ARGS__)
#define pc_sum_to(g, ...) pc_sum_to_at(g, PC_HERE, __VA_ARGS__)
#define pc_slice(g, ...) pc_slice_at(g, PC_HERE, __VA_ARGS__)
#define pc_pad(g, ...) pc_pad_at(g, PC_HERE, __VA_ARGS__)
#define pc_concat(g, ...) pc_concat_at(g, PC_HERE, __VA_ARGS__)
#define pc_embedding(g, ...) pc_embedding_at(g, PC_HERE, __VA_ARGS__)
#define pc_embedding_grad(g, ...) pc_embedding_grad_at(g, PC_HERE, __VA_ARGS__)
#define pc_rope(g, ...) pc_rope_at(g, PC_HERE, __VA_ARGS__)
#define pc_causal_mask(g, ...) pc_causal_mask_at(g, PC_HERE, __VA_ARGS__)
#define pc_cross_entropy(g, ...) pc_cross_entropy_at(g, PC_HERE, __VA_ARGS__)
#define pc_op(g, ...) pc_op_at(g, PC_HERE, __VA_ARGS__)

/* ---- text IR, verification, DOT ---- */
typedef struct {
    int elide_consts_over; /* print constants with more elements as `elided`; 0 = never elide */
    int show_locations;    /* append `// file:line` */
} pc_print_opts;

/* returns a malloc'd string (caller frees) */
char *pc_print(const pc_graph *g, pc_print_opts opts);
/* parses IR text; on failure returns NULL and writes "FILE:LINE:COL: error: ..." lines to *err
 * (malloc'd, caller frees) */
pc_graph *pc_parse(const char *text, size_t len, const char *filename, char **err);
/* checks every value; returns the number of errors and appends one "LOC: error: ..." line per
 * error to *err (malloc'd, caller frees; may be NULL when there are none) */
int pc_verify(const pc_graph *g, char **err);
char *pc_to_dot(const pc_graph *g);

#ifdef __cplusplus
}
#endif
#endif
