// Grouped kv heads as a batch axis (the Llama frontend's form): 2 kv heads, each shared by 3
// query heads, q [1,2,3,6,8] against k, v [1,2,1,10,8]. The attention kernels read k and v in
// place (no copy per query head) and flash_attention_grad writes d k and d v already summed over
// the heads that share them: autograd's sum_to is absorbed, so no [1,2,3,10,8] gradient is
// stored. The interpreter computes the unfused ops and agrees (last RUN).
// RUN: %peftc opt %s --passes=autograd -o %t.pir
// RUN: %peftc run %t.pir --backend=jit --dump-after=lower -o %t.safetensors 2>&1 | FileCheck %s
// RUN: %peftc run %t.pir --backend=ref -o %t.ref.safetensors
// RUN: %python %S/../Inputs/st_tool.py close %t.safetensors %t.ref.safetensors --rtol 2e-6 | FileCheck %s --check-prefix=SAME
// SAME: close: 4 tensors

// CHECK:      (0 matmul, 2 kernel, 3 call, 0 copy,
// CHECK:      %o = call.flash_attention %q[param], %k[param], %v[param]
// CHECK:      call.flash_attention_grad %q[param], %k[param], %v[param], %{{[0-9]+}}[arena+{{[0-9]+}}:1152] -> [arena+{{[0-9]+}}:1152], [arena+{{[0-9]+}}:640], [arena+{{[0-9]+}}:640] f32[1,2,3,6,8], f32[1,2,1,10,8], f32[1,2,1,10,8]
// CHECK-NOT:  sum_to
// CHECK-NOT:  matmul

graph @flash_grouped() -> (%loss: f32[] loss) {
  %w = param frozen f32[1,2,3,6,8] "w" init=normal(1)
  %q = param trainable f32[1,2,3,6,8] "q" init=normal(1)
  %k = param trainable f32[1,2,1,10,8] "k" init=normal(1)
  %v = param trainable f32[1,2,1,10,8] "v" init=normal(1)
  %s = matmul %q, %k {transpose_b=1} : f32[1,2,3,6,10]
  %sc = scale %s {alpha=0.35355339059327373} : f32[1,2,3,6,10]
  %m = causal_mask %sc : f32[1,2,3,6,10]
  %p = softmax %m : f32[1,2,3,6,10]
  %o = matmul %p, %v : f32[1,2,3,6,8]
  %ow = mul %o, %w : f32[1,2,3,6,8]
  %loss = sum %ow : f32[]
}
