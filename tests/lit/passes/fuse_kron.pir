// fuse-kron: x (A ⊗ B)ᵀ with A [a,c] = [2,3], B [b,d] = [5,4] and x [2,4,12] (N = 8 rows of
// c·d = 12) becomes two GEMMs on a reshaped x, y[n] = (A X[n]) Bᵀ with X[n] = x[n] as [c, d]:
// A first, because its intermediate [N, a, d] (8·2·4) is smaller than B first's [N, c, b]
// (8·3·5; fuse_kron_bfirst.pir has the other case). The first product broadcasts A over the N
// rows; only views in between.
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
// CHECK:      %[[X3:[0-9]+]] = reshape %x {shape=[8,3,4]} : f32[8,3,4]
// CHECK-NEXT: %[[S:[0-9]+]] = matmul %a, %[[X3]] : f32[8,2,4]
// CHECK-NEXT: %[[S2:[0-9]+]] = reshape %[[S]] {shape=[16,4]} : f32[16,4]
// CHECK-NEXT: %[[V:[0-9]+]] = matmul %[[S2]], %b {transpose_b=1} : f32[16,5]
// CHECK-NEXT: %y = reshape %[[V]] {shape=[2,4,10]} : f32[2,4,10]
// CHECK-NOT: = transpose
// CHECK-NOT: = kron

// GRAD: -> (%loss: f32[] loss, %grad.a: f32[2,3], %grad.b: f32[5,4])
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
  %a = param trainable f32[2,3] "w1" init=normal(0.5)
  %b = param trainable f32[5,4] "w2" init=normal(0.5)
  %k = kron %a, %b : f32[10,12]
  %y = matmul %x, %k {transpose_b=1} : f32[2,4,10]
  %sq = square %y : f32[2,4,10]
  %loss = sum %sq : f32[]
}
