// A small batched product that only a sum_to over every batch axis reads (the weight gradient of
// a factor broadcast over the batch: LoKr's dA = sum_n dS[n] X[n]^T) is one product that sums
// the batch as it goes ("sum over batch"): no [B, M, N] buffer, no sum_to pass. Matrices over 64
// (here 72 rows) and products something else also reads keep the batch and the sum_to. The
// interpreter and the compiled backend agree (second RUN), over the fast K = 8 layout (%da), the
// element loop (%dw: 12 columns) and a product broadcasting a over an odd batch (%s).
// RUN: %peftc run %s --backend=jit --dump-after=lower -o %t.safetensors 2>&1 | FileCheck %s
// RUN: %peftc run %s --backend=ref -o %t.ref.safetensors
// RUN: %python %S/../Inputs/st_tool.py close %t.safetensors %t.ref.safetensors --rtol 1e-6 | FileCheck %s --check-prefix=SAME
// SAME: close: 6 tensors

// CHECK:      // lowered @batch_sums: 7 instructions (5 matmul, 0 kernel, 2 call, 0 copy, 0 view)
// CHECK-NEXT: %da = matmul.c %ds[param], %x[param] -> [arena+{{[0-9]+}}:128] (batch 512: 4x8x8, b^T, sum over batch, b_constant)
// CHECK-NEXT: %dw = matmul.c %y[param], %z[param] -> [arena+{{[0-9]+}}:576] (batch 5: 12x8x12, a^T, sum over batch, b_constant)
// CHECK-NEXT: %m = matmul.c %u[param], %w[param] -> [arena+{{[0-9]+}}:6912] (batch 3: 72x16x8, b_constant)
// CHECK-NEXT: %big = call.sum_to %m
// CHECK-NEXT: %s = matmul.c %a[param], %v[param] -> [arena+{{[0-9]+}}:896] (batch 7: 4x8x8, b_constant)
// CHECK-NEXT: %r = matmul.c %e[param], %e[param] -> [arena+{{[0-9]+}}:384] (batch 6: 4x8x4, b^T, b_constant)
// CHECK-NEXT: %dr = call.sum_to %r

graph @batch_sums() -> (%da: f32[4,8], %dw: f32[12,12], %big: f32[72,8], %s: f32[7,4,8], %r: f32[6,4,4], %dr: f32[4,4]) {
  %ds = param frozen f32[512,4,8] "ds" init=normal(1)
  %x = param frozen f32[512,8,8] "x" init=normal(1)
  %a = param frozen f32[4,8] "a" init=normal(0.5)
  %y = param frozen f32[5,8,12] "y" init=normal(1)
  %z = param frozen f32[5,8,12] "z" init=normal(1)
  %u = param frozen f32[3,72,16] "u" init=normal(1)
  %w = param frozen f32[3,16,8] "w" init=normal(1)
  %v = param frozen f32[7,8,8] "v" init=normal(1)
  %e = param frozen f32[6,4,8] "e" init=normal(1)
  %p = matmul %ds, %x {transpose_b=1} : f32[512,4,8]
  %da = sum_to %p {shape=[4,8]} : f32[4,8]
  %q = matmul %y, %z {transpose_a=1} : f32[5,12,12]
  %dw = sum_to %q {shape=[12,12]} : f32[12,12]
  %m = matmul %u, %w : f32[3,72,8]
  %big = sum_to %m {shape=[72,8]} : f32[72,8]
  %s = matmul %a, %v : f32[7,4,8]
  %r = matmul %e, %e {transpose_b=1} : f32[6,4,4]
  %dr = sum_to %r {shape=[4,4]} : f32[4,4]
}
