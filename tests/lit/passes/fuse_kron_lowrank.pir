// fuse-kron, B low rank: x (A ⊗ B)ᵀ with A [a1,a2] = [2,3], B = Ba Bb, Ba [b1,r] = [6,2],
// Bb [r,b2] = [2,5] (LoKr's lokr_w2_a · lokr_w2_b) and x [2,4,15] (N = 8 rows of a2·b2 = 15).
// Multiply-adds per row: B first a2·b1·(b2+a1) = 126, A first a1·b2·(a2+b1) = 90, rank r
// r·(a2·b2 + a1·a2 + a1·b1) = 66, so the rank-r order wins: U = X[N·a2, b2] Bbᵀ [24,2],
// V[n] = A U[n] [8,2,2] (A broadcast over N), Y = V[N·a1, r] Baᵀ [16,6]; only views in between.
// Neither B [6,5] nor A ⊗ B [12,15] is formed, in the forward or (after autograd) the backward,
// and no intermediate wider than r: no [N·a2, b1] = [24,6] nor [N, a1, b2] = [8,2,5].
// The fused graph computes the same loss and gradients, on the interpreter and the JIT.
// (fuse_kron_lowrank_full.pir: a rank too large to pay, B formed.)
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
// CHECK-NOT: f32[6,5]
// CHECK:      %[[X2:[0-9]+]] = reshape %x {shape=[24,5]} : f32[24,5]
// CHECK-NEXT: %[[U:[0-9]+]] = matmul %[[X2]], %bb {transpose_b=1} : f32[24,2]
// CHECK-NEXT: %[[U3:[0-9]+]] = reshape %[[U]] {shape=[8,3,2]} : f32[8,3,2]
// CHECK-NEXT: %[[V:[0-9]+]] = matmul %a, %[[U3]] : f32[8,2,2]
// CHECK-NEXT: %[[V2:[0-9]+]] = reshape %[[V]] {shape=[16,2]} : f32[16,2]
// CHECK-NEXT: %[[Y:[0-9]+]] = matmul %[[V2]], %ba {transpose_b=1} : f32[16,6]
// CHECK-NEXT: %y = reshape %[[Y]] {shape=[2,4,12]} : f32[2,4,12]
// CHECK-NOT: = transpose
// CHECK-NOT: = kron
// CHECK-NOT: f32[6,5]

// GRAD: -> (%loss: f32[] loss, %grad.a: f32[2,3], %grad.ba: f32[6,2], %grad.bb: f32[2,5])
// GRAD-NOT: = kron
// GRAD-NOT: f32[12,15]
// GRAD-NOT: f32[6,5]
// GRAD-NOT: f32[24,6]
// GRAD-NOT: f32[8,2,5]
// GRAD-NOT: f32[8,3,6]

// without the pass: B, the product and its gradient are formed
// PLAIN: %b = matmul %ba, %bb : f32[6,5]
// PLAIN: %k = kron %a, %b : f32[12,15]
// PLAIN: f32[12,15]

// SAME: ok: grad.a
// SAME: ok: grad.ba
// SAME: ok: grad.bb
// SAME: ok: loss
// SAME: close: 4 tensors
graph @lokr_lowrank() -> (%loss: f32[] loss) {
  %x = param frozen f32[2,4,15] "x" init=normal(1)
  %a = param trainable f32[2,3] "w1" init=normal(0.5)
  %ba = param trainable f32[6,2] "w2_a" init=normal(0.5)
  %bb = param trainable f32[2,5] "w2_b" init=normal(0.5)
  %b = matmul %ba, %bb : f32[6,5]
  %k = kron %a, %b : f32[12,15]
  %y = matmul %x, %k {transpose_b=1} : f32[2,4,12]
  %sq = square %y : f32[2,4,12]
  %loss = sum %sq : f32[]
}
