// fuse-kron, B first: x (A ⊗ B)ᵀ with A [a,c] = [5,4], B [b,d] = [2,3] and x [2,4,12] (N = 8
// rows of c·d = 12) becomes y[n] = A (X[n] Bᵀ) with X[n] = x[n] as [c, d]: the intermediate
// [N, c, b] (8·4·2) is smaller than A first's [N, a, d] (8·5·3). The second product broadcasts
// A over the N rows; only views in between.
// no [a·b, c·d] = [10,12] product is left, in the forward or (after autograd) the backward.
// The fused graph computes the same loss and gradients, on the interpreter and the JIT.
// RUN: %peftc opt %s --passes=fuse-kron,dce --no-locations | FileCheck %s
// RUN: %peftc opt %s --passes=fuse-kron,dce,autograd --no-locations | FileCheck --check-prefix=GRAD %s
// RUN: %peftc opt %s --passes=autograd --no-locations | FileCheck --check-prefix=PLAIN %s
// RUN: %peftc opt %s --passes=autograd -o %t.plain.pir
// RUN: %peftc opt %s --passes=fuse-kron,dce,autograd -o %t.fused.pir
// RUN: %peftc run %t.plain.pir --backend=ref -o %t.plain.safetensors
// RUN: %peftc run %t.fused.pir --backend=ref -o %t.fused.safetensors
// RUN: %peftc run %t.fused.pir --backend=jit -o %t.fused.jit.safetensors
// RUN: %python %S/../Inputs/st_tool.py close %t.fused.safetensors %t.plain.safetensors | FileCheck --check-prefix=SAME %s
// RUN: %python %S/../Inputs/st_tool.py close %t.fused.jit.safetensors %t.plain.safetensors | FileCheck --check-prefix=SAME %s

// CHECK-NOT: = kron
// CHECK:      %[[X2:[0-9]+]] = reshape %x {shape=[32,3]} : f32[32,3]
// CHECK-NEXT: %[[U:[0-9]+]] = matmul %[[X2]], %b {transpose_b=1} : f32[32,2]
// CHECK-NEXT: %[[U3:[0-9]+]] = reshape %[[U]] {shape=[8,4,2]} : f32[8,4,2]
// CHECK-NEXT: %[[V:[0-9]+]] = matmul %a, %[[U3]] : f32[8,5,2]
// CHECK-NEXT: %y = reshape %[[V]] {shape=[2,4,10]} : f32[2,4,10]
// CHECK-NOT: = transpose
// CHECK-NOT: = kron

// GRAD: -> (%loss: f32[] loss, %grad.a: f32[5,4], %grad.b: f32[2,3])
// GRAD-NOT: = kron
// GRAD-NOT: f32[10,12]

// without the pass: the product and its gradient are [10,12]
// PLAIN: %k = kron %a, %b : f32[10,12]
// PLAIN: f32[10,12]

// SAME: ok: grad.a
// SAME: ok: grad.b
// SAME: ok: loss
// SAME: close: 3 tensors
graph @lokr_linear() -> (%loss: f32[] loss) {
  %x = param frozen f32[2,4,12] "x" init=normal(1)
  %a = param trainable f32[5,4] "w1" init=normal(0.5)
  %b = param trainable f32[2,3] "w2" init=normal(0.5)
  %k = kron %a, %b : f32[10,12]
  %y = matmul %x, %k {transpose_b=1} : f32[2,4,10]
  %sq = square %y : f32[2,4,10]
  %loss = sum %sq : f32[]
}
