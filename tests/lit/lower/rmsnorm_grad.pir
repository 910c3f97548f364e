// rmsnorm's backward as autograd writes it (ir/grad.c: r = rsqrt(mean(x^2) + eps), xh = x r,
// d x = r (g w - xh mean(g w xh))) is one C kernel, rmsnorm_grad, reading x, w and g once per
// row: no square, no row means, no stored intermediates. Here x has rows of 24 (a vector and a
// tail). A trainable weight also reads xh (d w = sum g xh): that norm stays unfused. The
// interpreter computes the unfused ops and agrees (last RUN).
// RUN: %peftc opt %s --passes=autograd -o %t.pir
// RUN: %peftc run %t.pir --backend=jit --dump-after=lower -o %t.safetensors 2>&1 | FileCheck %s
// RUN: %peftc run %t.pir --backend=ref -o %t.ref.safetensors
// RUN: %python %S/../Inputs/st_tool.py close %t.safetensors %t.ref.safetensors --rtol 2e-6 | FileCheck %s --check-prefix=SAME
// SAME: close: 4 tensors

// the two row means of x2's backward, then x's whole backward in one call
// CHECK-COUNT-2: = call.mean
// CHECK-NOT:  = call.mean
// CHECK:      %grad.x = call.rmsnorm_grad %x[param], %w[param], %{{[0-9]+}}[arena+{{[0-9]+}}:1152] -> [arena+{{[0-9]+}}:1152] f32[3,4,24]
// CHECK-NOT:  = call.mean

graph @norms() -> (%loss: f32[] loss) {
  %x = param trainable f32[3,4,24] "x" init=normal(1)
  %w = param frozen f32[24] "w" init=normal(1)
  %x2 = param trainable f32[3,4,24] "x2" init=normal(1)
  %w2 = param trainable f32[24] "w2" init=normal(1)
  %c = param frozen f32[3,4,24] "c" init=normal(1)
  %y = rmsnorm %x, %w {eps=1e-05} : f32[3,4,24]
  %y2 = rmsnorm %x2, %w2 {eps=1e-05} : f32[3,4,24]
  %s = add %y, %y2 : f32[3,4,24]
  %m = mul %s, %c : f32[3,4,24]
  %p = mul %m, %s : f32[3,4,24]
  %loss = sum %p : f32[]
}
