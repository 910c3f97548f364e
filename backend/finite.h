/* Numerical faults, named: the first NaN or infinity an op produces stops the run with an error
 * that names the op, its result, its origin and the element (docs/design.md, "Numerical
 * faults"). Shared by the reference interpreter (on by default: it is the oracle) and the
 * compiled backend (on with pc_exec_opts.check_finite: it costs a pass over every result).
 *
 * The rule. Params and states (weights, optimizer moments) must be finite when a run starts:
 * nothing legitimate puts NaN or infinity there. Inputs and constants are the caller's data and
 * may hold infinities on purpose (an additive -inf mask); they are not checked. The f32 result
 * of every op is checked, and is a fault when
 *   - it holds a NaN and neither an operand nor a float attribute of the op holds one, or
 *   - it holds ±inf and every operand and float attribute is finite.
 * So a value that merely carries a NaN or infinity along (x + mask where the mask holds -inf) is
 * not reported again: the op that made it was, or it came from the caller. An op whose attribute
 * asks for infinity (causal_mask {fill=-inf}, scale {beta=-inf}) may produce it; a NaN made out of
 * infinities (-inf - -inf in a softmax over a fully masked row) is still a fault.
 *
 * The message: "non-finite value (KIND at [i,j,...]) in LINE at FILE:LINE", KIND nan, inf or
 * -inf, the index of the first such element in row-major order (omitted for a scalar), LINE the
 * op as the IR printer prints it (pc_print_value), then the op's origin as the printer's
 * `// file:line` shows it (omitted when the value has none). Callers prefix where it happened
 * ("step 17: ") as they prefix any run error. */
#ifndef PEFTC_BACKEND_FINITE_H
#define PEFTC_BACKEND_FINITE_H

#include "ir/ir.h"

#include <stddef.h>
#include <stdint.h>

enum { PC_FIN_NAN = 1, PC_FIN_INF = 2 };

/* The kinds (PC_FIN_* bits) present among the f32 elements of shape s at p, read with element
 * strides st (NULL = dense row-major). 0 = all finite. */
int pc_fin_scan(const float *p, pc_shape s, const int64_t *st);

/* the same over a tensor of dtype dt: f32 or bf16 (0 for any other) */
int pc_fin_scan_dt(const void *p, pc_dtype dt, pc_shape s, const int64_t *st);

/* The kind to report (PC_FIN_NAN or PC_FIN_INF) when x's result holds the kinds `found` and its
 * operands together hold `operands`; 0 when that is no fault (see the rule above). */
int pc_fin_fault(const pc_value *x, int found, int operands);

/* The check of a leaf: 0 unless v is an f32 param or state whose data (dense) holds a NaN or
 * infinity; then -1 with the message naming the first NaN (else the first infinity). */
int pc_fin_check_leaf(const pc_graph *g, pc_val v, const void *data, char *err, size_t errlen);

/* Formats the message for the first element of kind `kind` of value v (data p, strides st or
 * NULL) into err, followed by note when not NULL; returns -1. */
int pc_fin_error(const pc_graph *g, pc_val v, const float *p, const int64_t *st, int kind, const char *note,
                 char *err, size_t errlen);

/* pc_fin_error over a tensor of dtype dt (bf16 elements are reported as their f32 values) */
int pc_fin_error_dt(const pc_graph *g, pc_val v, const void *p, pc_dtype dt, const int64_t *st, int kind,
                    const char *note, char *err, size_t errlen);

#endif
