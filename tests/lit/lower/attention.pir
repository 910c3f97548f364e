// Causal attention: transposes are views (strided operands, no copies), and q k^T, its scale,
// the causal mask, the softmax and the product with v are one C kernel (flash_attention: the
// probabilities are computed head by head and never stored). The kernel writes o through
// strides, laid out [B,S,H,D] as the transpose back reads it, so that transpose is dense and
// the reshape after it aliases it: no copy at all.
// The interpreter computes the unfused ops and agrees (second RUN). (q, k, v are states so that
// no operand counts as a constant weight.)
// RUN: %peftc run %s --backend=jit --dump-after=lower -o %t.safetensors 2>&1 | FileCheck %s
// RUN: %peftc run %s --backend=ref -o %t.ref.safetensors
// RUN: %python %S/../Inputs/st_tool.py close %t.safetensors %t.ref.safetensors --rtol 1e-6 | FileCheck %s --check-prefix=SAME
// SAME: close: 1 tensors

// CHECK:      // lowered @attn: 1 instructions (0 matmul, 0 kernel, 1 call, 0 copy, 8 view)
// CHECK:      %qt = view.transpose %q4[state] -> [state strides=[512,16,64,1]] f32[2,4,8,16]
// CHECK:      %o = call.flash_attention %qt[state strides=[512,16,64,1]], %kt[state strides=[512,16,64,1]], %vt[state strides=[512,16,64,1]] -> [arena+{{[0-9]+}}:4096 strides=[512,16,64,1]] f32[2,4,8,16] {alpha=0.25} scratch=[arena+{{[0-9]+}}:{{[0-9]+}}]
// CHECK-NEXT: %ot = view.transpose %o[arena+{{[0-9]+}}:4096 strides=[512,16,64,1]] -> [arena+{{[0-9]+}}:4096] f32[2,8,4,16]
// CHECK-NEXT: %y = view.reshape %ot[arena+{{[0-9]+}}:4096] -> [arena+{{[0-9]+}}:4096] f32[2,8,64]

graph @attn() -> (%y: f32[2,8,64]) {
  %q = state f32[2,8,64] "q" init=normal(1)
  %k = state f32[2,8,64] "k" init=normal(1)
  %v = state f32[2,8,64] "v" init=normal(1)
  %q4 = reshape %q {shape=[2,8,4,16]} : f32[2,8,4,16]
  %k4 = reshape %k {shape=[2,8,4,16]} : f32[2,8,4,16]
  %v4 = reshape %v {shape=[2,8,4,16]} : f32[2,8,4,16]
  %qt = transpose %q4 {perm=[0,2,1,3]} : f32[2,4,8,16]
  %kt = transpose %k4 {perm=[0,2,1,3]} : f32[2,4,8,16]
  %vt = transpose %v4 {perm=[0,2,1,3]} : f32[2,4,8,16]
  %s = matmul %qt, %kt {transpose_b=1} : f32[2,4,8,8]
  %sc = scale %s {alpha=0.25} : f32[2,4,8,8]
  %m = causal_mask %sc : f32[2,4,8,8]
  %p = softmax %m : f32[2,4,8,8]
  %o = matmul %p, %vt : f32[2,4,8,16]
  %ot = transpose %o {perm=[0,2,1,3]} : f32[2,8,4,16]
  %y = reshape %ot {shape=[2,8,64]} : f32[2,8,64]
}
