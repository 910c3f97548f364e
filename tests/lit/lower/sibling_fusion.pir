// Siblings: an elementwise value with no operand in an open kernel joins an open kernel that reads
// one of its operands of its own shape, so that operand is read once (the SwiGLU backward's
// d u = d h * s and d g = d h * u * sigmoid'(g) share d h). An operand shared only as a broadcast
// (%c) does not join kernels, nor does one whose sibling kernel ended before another op (%m).
// RUN: %peftc run %s --backend=jit --dump-after=lower -o %t.safetensors 2>&1 | FileCheck %s

// CHECK:      // lowered @siblings: 5 instructions (1 matmul, 4 kernel, 0 call, 0 copy, 0 view)
// CHECK-NEXT: %du, %dg = kernel.k0 %dh[param], %u[param], %s[param], %g[param] -> [arena+{{[0-9]+}}:2048], [arena+{{[0-9]+}}:2048] f32[16,32] { %a = mul %dh, %u; %du = mul %dh, %s; %sg = sigmoid %g; %dg = mul %a, %sg }
// CHECK-NEXT: %p = kernel.k1 %x[param], %c[param] -> [arena+{{[0-9]+}}:2048] f32[16,32] { %p = mul %x, %c }
// CHECK-NEXT: %q = kernel.k2 %y[param], %c[param] -> [arena+{{[0-9]+}}:2048] f32[16,32] { %q = mul %y, %c }
// CHECK-NEXT: %m = matmul.dnnl %g[param], %w[param]
// CHECK-NEXT: %t = kernel.k3 %dh[param], %m[arena+{{[0-9]+}}:2048] -> [arena+{{[0-9]+}}:2048] f32[16,32] { %t = mul %dh, %m }

graph @siblings() -> (%du: f32[16,32], %dg: f32[16,32], %p: f32[16,32], %q: f32[16,32], %t: f32[16,32]) {
  %dh = param frozen f32[16,32] "dh" init=normal(1)
  %g = param frozen f32[16,32] "g" init=normal(1)
  %u = param frozen f32[16,32] "u" init=normal(1)
  %s = param frozen f32[16,32] "s" init=normal(1)
  %x = param frozen f32[16,32] "x" init=normal(1)
  %y = param frozen f32[16,32] "y" init=normal(1)
  %w = param frozen f32[32,32] "w" init=normal(1)
  %c = param frozen f32[1,32] "c" init=normal(1)
  %a = mul %dh, %u : f32[16,32]
  %du = mul %dh, %s : f32[16,32]
  %sg = sigmoid %g : f32[16,32]
  %dg = mul %a, %sg : f32[16,32]
  %p = mul %x, %c : f32[16,32]
  %q = mul %y, %c : f32[16,32]
  %m = matmul %g, %w : f32[16,32]
  %t = mul %dh, %m : f32[16,32]
}
