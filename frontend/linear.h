/* The linear-layer convention of the frontends: how an nn.Linear looks in the graph IR.
 *
 * A linear named `module` (a Hugging Face module path such as "model.layers.0.self_attn.q_proj")
 * is exactly
 *
 *   %<module>   = param frozen f32[out, in] "<module>.weight"        (no init: it must be loaded)
 *   %y          = matmul %x, %<module> transpose_b                    x [..., in] -> [..., out]
 *   %<module>.bias = param frozen f32[out] "<module>.bias"           (only with bias)
 *   %y'         = add %y, %<module>.bias
 *
 * Adapter rewrites find modules through pc_linear_module(): a matmul (transpose_a = 0,
 * transpose_b = 1) whose second operand is a rank-2 param whose key ends in ".weight", the module
 * name being the key without ".weight". A param that also serves as an embedding table (the
 * tied classifier `logits = h · E^T` against model.embed_tokens.weight) is not a linear:
 * PEFT's all-linear excludes the output layer, and an adapter on E would change the input
 * embedding too. */
#ifndef PEFTC_FRONTEND_LINEAR_H
#define PEFTC_FRONTEND_LINEAR_H

#include "peftc/peftc.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* y = x W^T (+ b). x must be f32 [..., in] with rank >= 2. If the graph already holds a param
 * with key "<module>.weight" of the same type it is reused (weights shared between two uses);
 * a different type is an error. Sticky-error semantics as every builder: PC_NONE on failure. */
pc_val pc_linear_at(pc_graph *g, pc_loc at, pc_val x, const char *module, int64_t in, int64_t out,
                    int bias);
#define pc_linear(g, ...) pc_linear_at(g, PC_HERE, __VA_ARGS__)

/* If `matmul_node` is a linear per the convention above, writes its module name into buf
 * (len bytes) and returns buf; otherwise (or if buf is too small) returns NULL. */
const char *pc_linear_module(const pc_graph *g, pc_val matmul_node, char *buf, size_t len);

/* The weight param of a linear matmul (PC_NONE if not a linear). */
pc_val pc_linear_weight(const pc_graph *g, pc_val matmul_node);

#ifdef __cplusplus
}
#endif
#endif
