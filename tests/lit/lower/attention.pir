// Causal attention: transposes are views (strided operands of the matmuls, no copies), the
// score scale is the matmul's alpha, causal_mask + softmax are one C kernel, and only the
// transpose back to [B,S,H,D] before the reshape is materialised (the reshape of a strided view
// cannot alias it). With head dim 16 and 8 keys the matmuls have N = 8 / 16 and run in the
// backend's C kernel. (q, k, v are states so that no operand counts as a constant weight.)
// RUN: %peftc run %s --backend=jit --dump-after=lower -o %t.safetensors 2>&1 | FileCheck %s

// CHECK:      // lowered @attn: 4 instructions (2 matmul, 0 kernel, 1 call, 1 copy, 8 view)
// CHECK:      %qt = view.transpose %q4[state] -> [state strides=[512,16,64,1]] f32[2,4,8,16]
// CHECK:      %sc = matmul.c %qt[{{.*}} strides=[512,16,64,1]], %kt[{{.*}} strides=[512,16,64,1]] -> [arena+{{[0-9]+}}:2048] (batch 2x4: 8x16x8, b^T, alpha=0.25)
// CHECK-NEXT: %p = call.causal_softmax %sc[arena+{{[0-9]+}}:2048] -> [arena+{{[0-9]+}}:2048] f32[2,4,8,8]
// CHECK-NEXT: %o = matmul.c %p[arena+{{[0-9]+}}:2048], %vt[{{.*}} strides=[512,16,64,1]] -> [arena+{{[0-9]+}}:4096] (batch 2x4: 8x8x16)
// CHECK-NEXT: %ot = view.transpose %o[arena+{{[0-9]+}}:4096] -> [arena+{{[0-9]+}}:4096 strides=[512,16,128,1]] f32[2,8,4,16]
// CHECK-NEXT: %ot = copy %ot[arena+{{[0-9]+}}:4096 strides=[512,16,128,1]] -> [arena+{{[0-9]+}}:4096] f32[2,8,4,16]
// CHECK-NEXT: %y = view.reshape %ot[{{.*}}] -> [arena+{{[0-9]+}}:4096] f32[2,8,64]

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
