// A sum_to whose operand is a product a * b that nothing else reads (autograd's gradient of a
// broadcast factor: LoHa's Khatri-Rao rows, IA3's vector) is one C kernel reading a and b
// through their views ("mul_sum_to"): no buffer for the product, no second pass. The reduced
// axis may be the innermost (%da1, a dot per result; %row with a broadcast scalar and an odd
// tail), a middle one (%da2, %db1), the outer one (%db2), or several (%dl, IA3's sum over
// tokens; %mix an outer and the inner one); %tr reads a transposed view (the strided loop); %e
// sums nothing (zeros). A product something else also reads
// (%kept) stays a kernel and a sum_to. The interpreter and the compiled backend agree.
// RUN: %peftc run %s --backend=jit --dump-after=lower -o %t.safetensors 2>&1 | FileCheck %s
// RUN: %peftc run %s --backend=ref -o %t.ref.safetensors
// RUN: %python %S/../Inputs/st_tool.py close %t.safetensors %t.ref.safetensors --rtol 1e-6 | FileCheck %s --check-prefix=SAME
// SAME: close: 11 tensors

// CHECK:      // lowered @mul_sums: {{[0-9]+}} instructions ({{[0-9]+}} matmul, 1 kernel, 10 call,
// CHECK:      %da1 = call.mul_sum_to %du[param], %a2b[param strides=[8,0,1]] -> [arena+{{[0-9]+}}:1536] f32[48,8,1]
// CHECK:      %da2 = call.mul_sum_to %du[param], %a1b[param strides=[8,1,0]] -> [arena+{{[0-9]+}}:1536] f32[48,1,8]
// CHECK:      %db1 = call.mul_sum_to %dv[param], %b2b[param strides=[0,40,1]] -> [arena+{{[0-9]+}}:1280] f32[8,1,40]
// CHECK:      %db2 = call.mul_sum_to %dv[param], %b1b[param strides=[40,0,1]] -> [arena+{{[0-9]+}}:1280] f32[1,8,40]
// CHECK:      %dl = call.mul_sum_to %dy[param], %x[param] -> [arena+{{[0-9]+}}:96] f32[24]
// CHECK:      %row = call.mul_sum_to %xr[param], %wb[param strides=[1,0]] -> [arena+{{[0-9]+}}:24] f32[6,1]
// CHECK:      %tr = call.mul_sum_to %pt[param strides=[1,9]], %q[param] -> [arena+{{[0-9]+}}:28] f32[1,7]
// CHECK:      %mix = call.mul_sum_to %u3[param], %v3[param] -> [arena+{{[0-9]+}}:16] f32[1,4,1]
// CHECK:      %e = call.mul_sum_to %z0[param], %z1[param] -> [arena+{{[0-9]+}}:16] f32[4]
// CHECK:      %kept = kernel
// CHECK-NEXT: %ks = call.sum_to %kept

graph @mul_sums() -> (%da1: f32[48,8,1], %da2: f32[48,1,8], %db1: f32[8,1,40], %db2: f32[1,8,40], %dl: f32[24], %row: f32[6,1], %tr: f32[1,7], %mix: f32[1,4,1], %e: f32[4], %kept: f32[2,5,24], %ks: f32[24]) {
  %du = param frozen f32[48,8,8] "du" init=normal(1)
  %a1 = param frozen f32[48,8] "a1" init=normal(1)
  %a2 = param frozen f32[48,8] "a2" init=normal(1)
  %dv = param frozen f32[8,8,40] "dv" init=normal(1)
  %b1 = param frozen f32[8,40] "b1" init=normal(1)
  %b2 = param frozen f32[8,40] "b2" init=normal(1)
  %dy = param frozen f32[2,5,24] "dy" init=normal(1)
  %x = param frozen f32[2,5,24] "x" init=normal(1)
  %xr = param frozen f32[6,19] "xr" init=normal(1)
  %w = param frozen f32[6] "w" init=normal(1)
  %p = param frozen f32[7,9] "p" init=normal(1)
  %q = param frozen f32[9,7] "q" init=normal(1)
  %a2r = reshape %a2 {shape=[48,1,8]} : f32[48,1,8]
  %a2b = broadcast %a2r {shape=[48,8,8]} : f32[48,8,8]
  %m1 = mul %du, %a2b : f32[48,8,8]
  %da1 = sum_to %m1 {shape=[48,8,1]} : f32[48,8,1]
  %a1r = reshape %a1 {shape=[48,8,1]} : f32[48,8,1]
  %a1b = broadcast %a1r {shape=[48,8,8]} : f32[48,8,8]
  %m2 = mul %du, %a1b : f32[48,8,8]
  %da2 = sum_to %m2 {shape=[48,1,8]} : f32[48,1,8]
  %b2r = reshape %b2 {shape=[1,8,40]} : f32[1,8,40]
  %b2b = broadcast %b2r {shape=[8,8,40]} : f32[8,8,40]
  %m3 = mul %dv, %b2b : f32[8,8,40]
  %db1 = sum_to %m3 {shape=[8,1,40]} : f32[8,1,40]
  %b1r = reshape %b1 {shape=[8,1,40]} : f32[8,1,40]
  %b1b = broadcast %b1r {shape=[8,8,40]} : f32[8,8,40]
  %m4 = mul %dv, %b1b : f32[8,8,40]
  %db2 = sum_to %m4 {shape=[1,8,40]} : f32[1,8,40]
  %m5 = mul %dy, %x : f32[2,5,24]
  %dl = sum_to %m5 {shape=[24]} : f32[24]
  %wr = reshape %w {shape=[6,1]} : f32[6,1]
  %wb = broadcast %wr {shape=[6,19]} : f32[6,19]
  %m6 = mul %xr, %wb : f32[6,19]
  %row = sum_to %m6 {shape=[6,1]} : f32[6,1]
  %pt = transpose %p {perm=[1,0]} : f32[9,7]
  %m7 = mul %pt, %q : f32[9,7]
  %tr = sum_to %m7 {shape=[1,7]} : f32[1,7]
  %u3 = param frozen f32[3,4,5] "u3" init=normal(1)
  %v3 = param frozen f32[3,4,5] "v3" init=normal(1)
  %m8 = mul %u3, %v3 : f32[3,4,5]
  %mix = sum_to %m8 {shape=[1,4,1]} : f32[1,4,1]
  %z0 = param frozen f32[0,4] "z0" init=normal(1)
  %z1 = param frozen f32[0,4] "z1" init=normal(1)
  %m9 = mul %z0, %z1 : f32[0,4]
  %e = sum_to %m9 {shape=[4]} : f32[4]
  %kept = mul %dy, %dy : f32[2,5,24]
  %ks = sum_to %kept {shape=[24]} : f32[24]
}
