// A scale of a product read through a reshape (LoKr's delta after fuse-kron: the Kronecker
// product's last GEMM, viewed back to [..., out], times alpha/r) is the product's alpha, and the
// add into the base output accumulates it there: no kernel, no buffer of its own. Attention
// scores scaled through a reshape take the alpha too, but stay out of the fused attention
// kernels (their shapes are the product's): a product, then the masked softmax.
// RUN: %peftc run %s --backend=jit --dump-after=lower -o %t.safetensors 2>&1 | FileCheck %s
// RUN: %peftc run %s --backend=ref -o %t.ref.safetensors
// RUN: %python %S/../Inputs/st_tool.py close %t.safetensors %t.ref.safetensors --rtol 1e-6 | FileCheck %s --check-prefix=SAME
// SAME: close: 2 tensors

// CHECK:      // lowered @kron_delta: 5 instructions (4 matmul, 0 kernel, 1 call, 0 copy, 2 view)
// CHECK:      %base = matmul.dnnl %x[param], %w[param] -> [arena+[[OUT:[0-9]+]]:320] (8x12x10, b^T, b_constant)
// CHECK-NEXT: %y = matmul.dnnl %s2[arena+{{[0-9]+}}:256], %b[param] -> [arena+[[OUT]]:320] (16x4x5, b^T, alpha=2, accumulate, b_constant)
// CHECK-NEXT: %sc = matmul.c %q[param], %k[param] -> [arena+{{[0-9]+}}:1536] (batch 2x3: 8x4x8, b^T, alpha=0.5, b_constant)
// CHECK-NEXT: %p = call.causal_softmax %sc

graph @kron_delta() -> (%y: f32[2,4,10], %p: f32[6,8,8]) {
  %x = param frozen f32[2,4,12] "x" init=normal(1)
  %w = param frozen f32[10,12] "w" init=normal(0.3)
  %a = param frozen f32[2,3] "a" init=normal(0.5)
  %b = param frozen f32[5,4] "b" init=normal(0.5)
  %q = param frozen f32[2,3,8,4] "q" init=normal(1)
  %k = param frozen f32[2,3,8,4] "k" init=normal(1)
  %x3 = reshape %x {shape=[8,3,4]} : f32[8,3,4]
  %s = matmul %a, %x3 : f32[8,2,4]
  %s2 = reshape %s {shape=[16,4]} : f32[16,4]
  %v = matmul %s2, %b {transpose_b=1} : f32[16,5]
  %v3 = reshape %v {shape=[2,4,10]} : f32[2,4,10]
  %d = scale %v3 {alpha=2} : f32[2,4,10]
  %base = matmul %x, %w {transpose_b=1} : f32[2,4,10]
  %y = add %base, %d : f32[2,4,10]
  %qk = matmul %q, %k {transpose_b=1} : f32[2,3,8,8]
  %qk3 = reshape %qk {shape=[6,8,8]} : f32[6,8,8]
  %sc = scale %qk3 {alpha=0.5} : f32[6,8,8]
  %cm = causal_mask %sc : f32[6,8,8]
  %p = softmax %cm {axis=-1} : f32[6,8,8]
}
