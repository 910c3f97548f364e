/* Gradient rules: the vector-Jacobian product of every differentiable op, built from existing ops.
 *
 * Each rule appends nodes to the graph (located at the forward node, so dumps and errors point to
 * the forward source) and never hand-loops over data: a rule is a small composite of ops.def ops,
 * so every backend that runs the forward ops also runs the backward. */
#ifndef PEFTC_IR_GRAD_H
#define PEFTC_IR_GRAD_H

#include "ir.h"

#include <stdbool.h>

/* the dtype of an adjoint: gradients are f32, also those of bf16 values (a cast's result fed to a
 * product), so rounding happens only where a product reads its operands */
static inline pc_dtype pc_adjoint_dtype(pc_dtype dt) { return dt == PC_BF16 ? PC_F32 : dt; }

/* For node v with adjoint gv (same shape as v, dtype pc_adjoint_dtype of v's), appends nodes computing the adjoint of
 * each operand i with need[i] true and writes it to out[i] (exactly operand i's shape), or
 * PC_NONE when the operand has no gradient (integer operands, dropout seeds, embedding ids, rope
 * positions, cross-entropy targets, where's condition, cast to/from i32). out[] has v's operand
 * count and is always fully written. Returns 0, or -1 with the graph's sticky error set (a
 * non-differentiable op, a malformed adjoint, or a builder failure).
 *
 * Ties: maximum/minimum split the gradient evenly between equal operands (as PyTorch does);
 * max over axes splits it evenly between all maximal elements; abs and relu have gradient 0 at 0. */
int pc_grad(pc_graph *g, pc_val v, pc_val gv, const bool *need, pc_val *out);

/* Ops without a gradient by definition (ops.def differentiable = 2: comparisons, whose derivative
 * is zero wherever it exists, and stop_gradient): autograd treats their results as constants
 * instead of asking for a rule. */
bool pc_grad_is_constant_op(pc_opcode op);

#endif
