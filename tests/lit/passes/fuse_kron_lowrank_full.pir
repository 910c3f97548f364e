// fuse-kron, B = Ba Bb with a rank too large to pay: A [a1,a2] = [2,3], Ba [b1,r] = [6,4],
// Bb [r,b2] = [4,5], x [2,4,15]. Multiply-adds per row: rank r r·(a2·b2 + a1·a2 + a1·b1) = 132,
// A first a1·b2·(a2+b1) = 90 (B first 126), so the graph's own B [6,5] (%b) is used and x
// takes A first, y[n] = (A X[n]) Bᵀ, as in fuse_kron.pir. The fused graph computes the same
// loss and gradients.
// RUN: %peftc opt %s --passes=fuse-kron,dce --no-locations | FileCheck %s
// RUN: %peftc opt %s --passes=fuse-kron,dce,autograd --no-locations | FileCheck --check-prefix=GRAD %s
// RUN: %peftc opt %s --passes=autograd -o %t.plain.pir
// RUN: %peftc opt %s --passes=fuse-kron,dce,autograd -o %t.fused.pir
// RUN: %peftc run %t.plain.pir --backend=ref -o %t.plain.safetensors
// RUN: %peftc run %t.fused.pir --backend=ref -o %t.fused.safetensors
// RUN: %peftc run %t.fused.pir --backend=jit -o %t.fused.jit.safetensors
// RUN: %python %S/../Inputs/st_tool.py close %t.fused.safetensors %t.plain.safetensors | FileCheck --check-prefix=SAME %s
// RUN: %python %S/../Inputs/st_tool.py close %t.fused.jit.safetensors %t.plain.safetensors | FileCheck --check-prefix=SAME %s

// CHECK-NOT: = kron
// CHECK:      %b = matmul %ba, %bb : f32[6,5]
// CHECK-NEXT: %[[X3:[0-9]+]] = reshape %x {shape=[8,3,5]} : f32[8,3,5]
// CHECK-NEXT: %[[S:[0-9]+]] = matmul %a, %[[X3]] : f32[8,2,5]
// CHECK-NEXT: %[[S2:[0-9]+]] = reshape %[[S]] {shape=[16,5]} : f32[16,5]
// CHECK-NEXT: %[[V:[0-9]+]] = matmul %[[S2]], %b {transpose_b=1} : f32[16,6]
// CHECK-NEXT: %y = reshape %[[V]] {shape=[2,4,12]} : f32[2,4,12]
// CHECK-NOT: = kron
// CHECK-NOT: = matmul %ba, %bb

// GRAD: -> (%loss: f32[] loss, %grad.a: f32[2,3], %grad.ba: f32[6,4], %grad.bb: f32[4,5])
// GRAD-NOT: = kron
// GRAD-NOT: f32[12,15]

// SAME: ok: grad.a
// SAME: ok: grad.ba
// SAME: ok: grad.bb
// SAME: ok: loss
// SAME: close: 4 tensors
graph @lokr_lowrank_full() -> (%loss: f32[] loss) {
  %x = param frozen f32[2,4,15] "x" init=normal(1)
  %a = param trainable f32[2,3] "w1" init=normal(0.5)
  %ba = param trainable f32[6,4] "w2_a" init=normal(0.5)
  %bb = param trainable f32[4,5] "w2_b" init=normal(0.5)
  %b = matmul %ba, %bb : f32[6,5]
  %k = kron %a, %b : f32[12,15]
  %y = matmul %x, %k {transpose_b=1} : f32[2,4,12]
  %sq = square %y : f32[2,4,12]
  %loss = sum %sq : f32[]
}
