// fuse-kron with an empty factor (b2 = 0: x [2,4,0], Bb [2,0]): the rows N are x's leading dims
// (8), not numel / (a2·b2), which divided by zero. The rank-r order costs 36 multiply-adds per
// row against A first's 0, so the graph's B [6,0] is used and A goes first; y is all zeros. The fused graph
// gives the plain graph's loss, and its training step runs on the interpreter and the JIT.
// RUN: %peftc opt %s --passes=fuse-kron,dce --no-locations | FileCheck %s
// RUN: %peftc opt %s --passes=fuse-kron,dce -o %t.fused.pir
// RUN: %peftc opt %s --passes=fuse-kron,dce,autograd -o %t.step.pir
// RUN: %peftc run %s --backend=ref -o %t.plain.safetensors
// RUN: %peftc run %t.fused.pir --backend=ref -o %t.fused.safetensors
// RUN: %peftc run %t.fused.pir --backend=jit -o %t.fused.jit.safetensors
// RUN: %peftc run %t.step.pir --backend=ref -o %t.step.safetensors
// RUN: %peftc run %t.step.pir --backend=jit -o %t.step.jit.safetensors
// RUN: %python %S/../Inputs/st_tool.py close %t.fused.safetensors %t.plain.safetensors | FileCheck --check-prefix=SAME %s
// RUN: %python %S/../Inputs/st_tool.py close %t.fused.jit.safetensors %t.plain.safetensors | FileCheck --check-prefix=SAME %s
// RUN: %python %S/../Inputs/st_tool.py close %t.step.jit.safetensors %t.step.safetensors | FileCheck --check-prefix=STEP %s

// CHECK-NOT: = kron
// CHECK:      %b = matmul %ba, %bb : f32[6,0]
// CHECK-NEXT: %[[X3:[0-9]+]] = reshape %x {shape=[8,3,0]} : f32[8,3,0]
// CHECK-NEXT: %[[S:[0-9]+]] = matmul %a, %[[X3]] : f32[8,2,0]
// CHECK-NEXT: %[[S2:[0-9]+]] = reshape %[[S]] {shape=[16,0]} : f32[16,0]
// CHECK-NEXT: %[[V:[0-9]+]] = matmul %[[S2]], %b {transpose_b=1} : f32[16,6]
// CHECK-NEXT: %y = reshape %[[V]] {shape=[2,4,12]} : f32[2,4,12]

// SAME: ok: loss
// SAME: close: 1 tensors
// STEP: ok: grad.a
// STEP: ok: grad.ba
// STEP: ok: grad.bb
// STEP: ok: loss
// STEP: close: 4 tensors
graph @lokr_empty() -> (%loss: f32[] loss) {
  %x = param frozen f32[2,4,0] "x" init=normal(1)
  %a = param trainable f32[2,3] "w1" init=normal(0.5)
  %ba = param trainable f32[6,2] "w2_a" init=normal(0.5)
  %bb = param trainable f32[2,0] "w2_b" init=normal(0.5)
  %b = matmul %ba, %bb : f32[6,0]
  %k = kron %a, %b : f32[12,0]
  %y = matmul %x, %k {transpose_b=1} : f32[2,4,12]
  %sq = square %y : f32[2,4,12]
  %loss = sum %sq : f32[]
}
