// The backward of causal attention as autograd writes it (d p = d o v^T, d v = p^T d o, the
// softmax backward with its causal mask and scale, d q = g k, d k = g^T q) is one C kernel,
// flash_attention_grad, with three results: it recomputes the probabilities head by head, so
// neither p nor its gradient is ever stored (the forward is flash_attention). Here 6 queries
// attend to 10 keys (4 of them before the first query, as prefix tuning has them). The
// interpreter computes the unfused ops and agrees (last RUN).
// RUN: %peftc opt %s --passes=autograd -o %t.pir
// RUN: %peftc run %t.pir --backend=jit --dump-after=lower -o %t.safetensors 2>&1 | FileCheck %s
// RUN: %peftc run %t.pir --backend=ref -o %t.ref.safetensors
// RUN: %python %S/../Inputs/st_tool.py close %t.safetensors %t.ref.safetensors --rtol 2e-6 | FileCheck %s --check-prefix=SAME
// SAME: close: 4 tensors

// CHECK:      %o = call.flash_attention %q[param], %k[param], %v[param] -> [arena+{{[0-9]+}}:768] f32[2,2,6,8] {alpha=0.35355339059327373}
// CHECK-NOT:  softmax
// CHECK:      %grad.q, %grad.k, %grad.v = call.flash_attention_grad %q[param], %k[param], %v[param], %{{[0-9]+}}[arena+{{[0-9]+}}:768] -> [arena+{{[0-9]+}}:768], [arena+{{[0-9]+}}:1280], [arena+{{[0-9]+}}:1280] f32[2,2,6,8], f32[2,2,10,8], f32[2,2,10,8] {alpha=0.35355339059327373} {grad_alpha=0.35355339059327373}
// CHECK-NOT:  matmul

graph @flash() -> (%loss: f32[] loss) {
  %w = param frozen f32[2,2,6,8] "w" init=normal(1)
  %q = param trainable f32[2,2,6,8] "q" init=normal(1)
  %k = param trainable f32[2,2,10,8] "k" init=normal(1)
  %v = param trainable f32[2,2,10,8] "v" init=normal(1)
  %s = matmul %q, %k {transpose_b=1} : f32[2,2,6,10]
  %sc = scale %s {alpha=0.35355339059327373} : f32[2,2,6,10]
  %m = causal_mask %sc : f32[2,2,6,10]
  %p = softmax %m : f32[2,2,6,10]
  %o = matmul %p, %v : f32[2,2,6,8]
  %ow = mul %o, %w : f32[2,2,6,8]
  %loss = sum %ow : f32[]
}
