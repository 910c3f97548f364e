/* peftc public API: the C DSL that builds typed computation graphs.
 *
 * A pc_graph owns every value, name, attribute and constant it holds. Builder calls return a
 * pc_val handle (an index into the graph). Errors are sticky: the first failing call records a
 * message with its call site, returns PC_NONE, and every later call that receives PC_NONE
 * returns PC_NONE without a new message. Check pc_graph_error() once at the end. Nothing aborts.
 *
 * Every graph is SSA: each builder call makes one new value, typed (dtype + shape) by the op's
 * rules below at the moment it is built, so shape errors are reported at the call that makes
 * them. This header is the whole contract of the graph API: the op semantics summarised at each
 * builder are the ones the interpreter, the compiled backend and autograd implement.
 *
 *   pc_graph *g = pc_graph_new("train");
 *   pc_val x = pc_input(g, "x", PC_F32, PC_SHAPE(8, 64));
 *   pc_val w = pc_param(g, "w", "layers.0.w", PC_F32, PC_SHAPE(64, 64), PC_FROZEN,
 *                       (pc_init){PC_INIT_NONE, 0, 0});
 *   pc_val y = pc_matmul(g, x, w, 0, 1);
 */
#ifndef PEFTC_PEFTC_H
#define PEFTC_PEFTC_H

#include "peftc/types.h" /* pc_dtype, pc_shape, PC_MAX_RANK */

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* where a value was made: a DSL call site or an IR text position */
typedef struct {
    const char *file; /* interned in the graph, or a string literal from __FILE__ */
    int line;
    int col;
} pc_loc;

typedef int32_t pc_val;
#define PC_NONE ((pc_val)-1)

/* value flags: a bit set per value. The builders set them (pc_input -> PC_INPUT, pc_const ->
 * PC_CONST, pc_state -> PC_STATE, pc_mark_output -> PC_OUTPUT, pc_mark_loss -> PC_LOSS |
 * PC_OUTPUT). The only place a caller passes flags is pc_param's `flags`, which must contain
 * exactly one of PC_FROZEN and PC_TRAINABLE (other bits are ignored there). The text IR prints
 * them as `param frozen|trainable`, `state`, `const` and the header's `loss`. */
enum {
    PC_INPUT = 1u << 0,     /* graph input, fed per call */
    PC_OUTPUT = 1u << 1,    /* graph output */
    PC_FROZEN = 1u << 2,    /* param that never gets a gradient */
    PC_TRAINABLE = 1u << 3, /* param updated by training: autograd makes grad.<name> for it */
    PC_CONST = 1u << 4,     /* constant with data in the graph */
    PC_LOSS = 1u << 5,      /* the scalar autograd differentiates */
    PC_STATE = 1u << 6,     /* persistent non-param state (optimizer moments) */
};

/* How a param or state value is initialised when no checkpoint provides it. `a` and `b` are
 * the kind's parameters (unused ones are ignored); fan_in is the value's last dimension (1 for a
 * scalar). Random kinds are deterministic: element i draws from a hash of (the run's seed, the
 * value's checkpoint key (its index when it has none), i), so a keyed value's init does not
 * depend on graph order or on other values. Random kinds apply to f32 values only; an i32 value
 * takes ZEROS or ONES. Text IR: init=zeros | ones | uniform(a, b) | normal(a) |
 * kaiming_uniform(a). */
typedef enum {
    PC_INIT_NONE = 0,        /* no init: a checkpoint (or the caller) must provide the data */
    PC_INIT_ZEROS,           /* 0 */
    PC_INIT_ONES,            /* 1 */
    PC_INIT_UNIFORM,         /* U(a, b) */
    PC_INIT_NORMAL,          /* N(0, a^2): a is the standard deviation */
    PC_INIT_KAIMING_UNIFORM, /* torch kaiming_uniform_(w, a=a): U(-bound, bound) with
                              * bound = sqrt(6 / ((1 + a^2) fan_in)); LoRA A uses a = sqrt(5) */
} pc_init_kind;

typedef struct {
    pc_init_kind kind;
    double a, b;
} pc_init;

typedef struct pc_graph pc_graph;

/* ---- shapes ----
 * pc_shape_make copies rank dims (rank 0..PC_MAX_RANK; dims may be NULL for rank 0).
 * PC_SHAPE(8, 64) is [8, 64]; PC_SCALAR is the rank-0 shape []. */
pc_shape pc_shape_make(int rank, const int64_t *dims);
#define PC_SHAPE(...)                                                                             \
    pc_shape_make((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})
#define PC_SCALAR pc_shape_make(0, NULL)
int64_t pc_shape_numel(pc_shape s);    /* product of the dims (1 for a scalar) */
int pc_shape_eq(pc_shape a, pc_shape b); /* 1 when rank and dims agree, else 0 */

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
 * __FILE__/__LINE__. Names are SSA names (unique; NULL = a generated number); `key` is the
 * checkpoint name of a param or state (unique in the graph; NULL = none). pc_param's flags:
 * exactly one of PC_FROZEN / PC_TRAINABLE. Leaves may be f32, i32 or bf16; shapes up to
 * PC_MAX_RANK, no negative dims, at most 2^40 elements. */
pc_val pc_input_at(pc_graph *g, pc_loc at, const char *name, pc_dtype dt, pc_shape s);
pc_val pc_param_at(pc_graph *g, pc_loc at, const char *name, const char *key, pc_dtype dt,
                   pc_shape s, unsigned flags, pc_init init);
pc_val pc_state_at(pc_graph *g, pc_loc at, const char *name, const char *key, pc_dtype dt,
                   pc_shape s, pc_init init);
/* copies numel(s) elements from data (float* for f32, int32_t* for i32) */
pc_val pc_const_at(pc_graph *g, pc_loc at, pc_dtype dt, pc_shape s, const void *data);
pc_val pc_scalar_at(pc_graph *g, pc_loc at, float value);
/* these three return 0, or -1 with the graph's error set */
int pc_mark_output(pc_graph *g, pc_val v);
int pc_mark_loss(pc_graph *g, pc_val v); /* an f32 scalar; also marks it an output */
/* after a step, the value `next` (same dtype and shape) is written back into param/state
 * `target`; a target is updated at most once */
int pc_add_update(pc_graph *g, pc_val target, pc_val next);

/* ---- ops ----
 * Conventions for every op below:
 *   - Shapes are row-major. Binary and ternary elementwise ops broadcast numpy-style: trailing
 *     dims aligned, a dim of 1 (or a missing leading dim) stretches to the other operand's.
 *   - Axis arguments may be negative (counted from the end: -1 is the last axis).
 *   - Int "flag" arguments (keepdim, tanh_approx, transpose_*, inverse) treat nonzero as 1
 *     unless stated; enumerated ints (style, reduction, to) must be one of the listed values.
 *   - dtypes: f32 unless stated; "f32|i32" ops take either (operands of one dtype) and return
 *     it. bf16 is a storage type (frozen base weights, passes/base_bf16.c): only cast, matmul,
 *     embedding and reshape take it; every other op wants f32 (cast first).
 *   - The name in [brackets] is the op's registry name (for pc_op and the text IR), followed
 *     by its attributes in order, with their defaults when built through pc_op.
 *
 * Elementwise binary, broadcasting: a, b -> broadcast shape.
 *   [add] a+b, [sub] a-b, [mul] a*b, [maximum] max(a,b), [minimum] min(a,b): f32|i32.
 *   [div] a/b: f32.
 *   [eq] a==b, [lt] a<b, [gt] a>b: operands f32|i32 (one dtype); result f32 1.0 or 0.0
 *   (not differentiable).
 *   [where] cond != 0 ? a : b: cond f32|i32, a and b one dtype (f32|i32); all three broadcast. */
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

/* Elementwise unary: x -> same shape.
 *   [neg] -x: f32|i32.
 *   [scale alpha=1 beta=0] alpha*x + beta (an affine map, not only a multiply): f32|i32 (on
 *   i32, computed in double and converted back to i32).
 *   [exp] [log] [sqrt] [rsqrt] 1/sqrt(x) [square] x*x [abs] [tanh] [sigmoid] 1/(1+exp(-x))
 *   [relu] max(x,0) [silu] x*sigmoid(x): f32.
 *   [gelu approximate=0] tanh_approx 0: x*0.5*(1+erf(x/sqrt(2))) (torch approximate="none");
 *   1: the tanh form 0.5*x*(1+tanh(sqrt(2/pi)*(x+0.044715 x^3))) (torch approximate="tanh").
 *   [cast to=0] to PC_F32 (0), PC_I32 (1) or PC_BF16 (2); f32 -> i32 truncates toward zero,
 *   saturating at the i32 range (NaN -> 0); i32 -> f32 rounds to nearest; f32 -> bf16 rounds as
 *   the CPU's vcvtneps2bf16 does (nearest even, a denormal to a zero of its sign, NaN stays NaN);
 *   bf16 -> f32 is exact; bf16 <-> i32 is refused. Its gradient passes straight through between
 *   floats (the adjoint of a bf16 value is f32).
 *   [dropout p=0 salt=0] x f32, seed i32[] (a scalar value, usually a graph input fed per step):
 *   keeps each element with probability 1-p and scales kept ones by 1/(1-p); p in [0, 1),
 *   p = 0 is the identity. The keep mask is a pure function of (seed, salt, flat element
 *   index): give each dropout site its own salt so sites sharing a seed draw independent
 *   masks; the same (seed, salt) reproduces the mask (the backward is the same dropout of the
 *   gradient). There is no train/eval mode: an eval graph omits dropout or uses p = 0. */
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
/* [stop_gradient] x itself (f32|i32) with no gradient: autograd treats the result as a constant,
 * as torch's x.detach() (DoRA's weight norm). */
pc_val pc_stop_gradient_at(pc_graph *g, pc_loc at, pc_val x);

/* Reductions.
 *   [sum axes=[] keepdim=0] (f32|i32), [mean] and [max] (f32): over the naxes axes in `axes`
 *   (distinct, may be negative; naxes = 0 reduces every axis, giving a scalar). keepdim 1 keeps
 *   the reduced axes with extent 1, 0 drops them. max over an empty axis is an error.
 *   [softmax axis=-1], [log_softmax axis=-1]: along one axis, same shape as x.
 *   [rmsnorm eps=1e-5] x [..., D], w [D]: x * rsqrt(mean(x^2 over the last axis) + eps) * w.
 *   [layernorm eps=1e-5] x [..., D], w [D], b [D]: (x - mean) / sqrt(var + eps) * w + b over
 *   the last axis, var the biased (population) variance. eps >= 0. */
pc_val pc_sum_at(pc_graph *g, pc_loc at, pc_val x, int naxes, const int64_t *axes, int keepdim);
pc_val pc_mean_at(pc_graph *g, pc_loc at, pc_val x, int naxes, const int64_t *axes, int keepdim);
pc_val pc_max_at(pc_graph *g, pc_loc at, pc_val x, int naxes, const int64_t *axes, int keepdim);
pc_val pc_softmax_at(pc_graph *g, pc_loc at, pc_val x, int64_t axis);
pc_val pc_log_softmax_at(pc_graph *g, pc_loc at, pc_val x, int64_t axis);
pc_val pc_rmsnorm_at(pc_graph *g, pc_loc at, pc_val x, pc_val w, double eps);
pc_val pc_layernorm_at(pc_graph *g, pc_loc at, pc_val x, pc_val w, pc_val b, double eps);

/* Products.
 *   [matmul transpose_a=0 transpose_b=0] a [..., M, K] @ b [..., K, N] -> [..., M, N], ranks
 *   >= 2. transpose_a = 1 reads a as its last two axes swapped (a is stored [..., K, M]);
 *   transpose_b = 1 likewise for b (stored [..., N, K], e.g. a torch Linear weight [out, in]:
 *   y = matmul(x, w, 0, 1) is x @ w^T). The batch axes (all but the last two) broadcast.
 *   Operands are both f32 or both bf16; the result is f32 (bf16 products are exact in f32 and
 *   summed in f32, as oneDNN's bf16 matmul does).
 *   [kron] a [m, n], b [p, q] -> [m*p, n*q], out[i*p + k][j*q + l] = a[i][j] * b[k][l]. */
pc_val pc_matmul_at(pc_graph *g, pc_loc at, pc_val a, pc_val b, int transpose_a, int transpose_b);
pc_val pc_kron_at(pc_graph *g, pc_loc at, pc_val a, pc_val b);

/* Layout (any dtype; the result has x's dtype).
 *   [reshape shape] to s with the same element count, row-major order kept; one dim of s may
 *   be -1 (inferred).
 *   [transpose perm] n = rank(x) entries, a permutation of 0..n-1: result dim i = x dim
 *   perm[i].
 *   [broadcast shape] x to s by the broadcasting rule above.
 *   [sum_to shape] the adjoint of broadcast: sums x (a broadcast of s) down to s.
 *   [slice axis=0 start=0 end=0] elements [start, end) along axis, 0 <= start <= end <= dim.
 *   [pad axis=0 before=0 after=0] zeros: `before` before and `after` after along axis (the
 *   adjoint of slice).
 *   [concat axis=0] n >= 1 operands of one dtype and rank that agree outside axis, joined in
 *   order along axis. */
pc_val pc_reshape_at(pc_graph *g, pc_loc at, pc_val x, pc_shape s);
pc_val pc_transpose_at(pc_graph *g, pc_loc at, pc_val x, int n, const int64_t *perm);
pc_val pc_broadcast_at(pc_graph *g, pc_loc at, pc_val x, pc_shape s);
pc_val pc_sum_to_at(pc_graph *g, pc_loc at, pc_val x, pc_shape s);
pc_val pc_slice_at(pc_graph *g, pc_loc at, pc_val x, int64_t axis, int64_t start, int64_t end);
pc_val pc_pad_at(pc_graph *g, pc_loc at, pc_val x, int64_t axis, int64_t before, int64_t after);
pc_val pc_concat_at(pc_graph *g, pc_loc at, int n, const pc_val *xs, int64_t axis);

/* Model ops.
 *   [embedding] table f32|bf16 [rows, D], ids i32 [...] -> f32 [..., D]: row ids[...] of the table;
 *   an id outside [0, rows) is an execution error.
 *   [embedding_grad rows=0] ids i32 [...], grad f32 [..., D] -> f32 [rows, D]: scatter-add of
 *   grad rows into the rows named by ids (the adjoint of embedding); rows > 0. Not
 *   differentiable.
 *   [rope theta=10000 style=0 inverse=0] rotary position embedding. x f32 [..., S, H, D]
 *   (D even), pos i32 [S] or i32 with x's leading axes up to S (e.g. [B, S]); positions must
 *   be >= 0. Pair i (0 <= i < D/2) of each head is rotated by the angle
 *   pos * theta^(-2i/D). style 0: pairs (x[2i], x[2i+1]), llama2.c / Meta's interleaved
 *   layout; style 1: pairs (x[i], x[i + D/2]), Hugging Face's rotate_half layout. inverse 0
 *   rotates by +angle, 1 by -angle (the inverse, which is also the adjoint). theta > 0.
 *   [causal_mask fill=-1e30] scores f32 [..., Sq, Sk], Sk >= Sq: entry (i, j) becomes fill
 *   when key j > query i + (Sk - Sq) (the queries are the last Sq positions), else is kept.
 *   Use a large negative fill before a softmax.
 *   [cross_entropy ignore_index=-100 reduction=0] logits f32 [..., V], targets i32 [...]
 *   (logits' shape without its last axis). Per position: logsumexp(logits) - logits[target];
 *   a position whose target equals ignore_index contributes 0 and is not counted; every
 *   other target must be in [0, V) (else an execution error). reduction 0: the mean over
 *   counted positions, f32[] (0 when none is counted); 1: the sum, f32[]; 2: none, f32 [...]
 *   per position. */
pc_val pc_embedding_at(pc_graph *g, pc_loc at, pc_val table, pc_val ids);
pc_val pc_embedding_grad_at(pc_graph *g, pc_loc at, pc_val ids, pc_val grad, int64_t rows);
pc_val pc_rope_at(pc_graph *g, pc_loc at, pc_val x, pc_val pos, double theta, int style, int inverse);
/* llama3's RoPE frequency scaling (config.json "rope_scaling" with rope_type "llama3");
 * original_context 0 = none */
typedef struct {
    double factor, low_freq_factor, high_freq_factor;
    int original_context; /* original_max_position_embeddings */
} pc_rope_scaling;
/* rope with the frequencies scaled (sc NULL or sc->original_context 0: plain rope) */
pc_val pc_rope_scaled_at(pc_graph *g, pc_loc at, pc_val x, pc_val pos, double theta, int style, int inverse,
                         const pc_rope_scaling *sc);
pc_val pc_causal_mask_at(pc_graph *g, pc_loc at, pc_val scores, double fill);
pc_val pc_cross_entropy_at(pc_graph *g, pc_loc at, pc_val logits, pc_val targets,
                           int64_t ignore_index, int reduction);

/* Generic builder: op by registry name (the [bracketed] names above), attributes as
 * "name=value" strings (e.g. "transpose_b=1", "axes=[0,2]"); attributes not given take the
 * defaults listed above. Used by the parser and by user rewrites. It also reaches the ops that
 * have no typed builder, which autograd and the adamw pass emit:
 *   [cross_entropy_grad ignore_index=-100 reduction=0] (logits, targets, g) -> d logits:
 *   (softmax(logits) - onehot(target)) * scale, zero rows at ignored targets; g is f32[]
 *   (reductions 0 and 1; scale g/count or g) or the per-position f32 [...] (reduction 2).
 *   AdamW, with hp an f32[8] = lr, beta1, beta2, eps, weight_decay, step t (1-based), max
 *   gradient norm (<= 0: no clipping), reserved; gs an f32[] gradient scale:
 *   [adamw_m] (m, g, hp, gs) -> beta1*m + (1-beta1)*gs*g
 *   [adamw_v] (v, g, hp, gs) -> beta2*v + (1-beta2)*(gs*g)^2
 *   [adamw_p] (p, m', v', hp) -> p - lr*wd*p - lr*(m'/(1-beta1^t)) / (sqrt(v'/(1-beta2^t)) + eps)
 *   [clip_coef] (sumsq f32[], hp) -> f32[]: min(1, max_norm / (sqrt(sumsq) + 1e-6)), 1 when
 *   max_norm = hp[6] <= 0. */
pc_val pc_op_at(pc_graph *g, pc_loc at, const char *op, int nin, const pc_val *in, int nattr,
                const char *const *attrs);

/* The AdamW hyper-parameters: the f32[8] input %hp of every graph the adamw pass extends, in
 * this order (one graph serves every step; a trainer writes this struct before each run). */
typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
    float step;          /* t, 1-based (bias correction) */
    float max_grad_norm; /* clipping by global norm when the graph clips; <= 0: none */
    float reserved;
} pc_adamw_hp;
_Static_assert(sizeof(pc_adamw_hp) == 8 * sizeof(float), "pc_adamw_hp is the f32[8] %hp input");

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
#define pc_stop_gradient(g, ...) pc_stop_gradient_at(g, PC_HERE, __VA_ARGS__)
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
#define pc_rope_scaled(g, ...) pc_rope_scaled_at(g, PC_HERE, __VA_ARGS__)
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
