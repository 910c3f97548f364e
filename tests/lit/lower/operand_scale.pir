// A scale read only by products (autograd's LoRA scaling of an adjoint, read by both gradient
// products, one of them through a transpose) is no kernel: it aliases its operand's buffer
// (view.scale) and each product carries the alpha. (h and b are states: no constant weights.) A scale that anything else reads stays a
// kernel output. The interpreter and the compiled backend agree (second RUN).
// RUN: %peftc run %s --backend=jit --dump-after=lower -o %t.safetensors 2>&1 | FileCheck %s
// RUN: %peftc run %s --backend=ref -o %t.ref.safetensors
// RUN: %python %S/../Inputs/st_tool.py close %t.safetensors %t.ref.safetensors --rtol 1e-6 | FileCheck %s --check-prefix=SAME
// SAME: close: 4 tensors

// CHECK:      // lowered @lora_grad: 4 instructions (3 matmul, 1 kernel, 0 call, 0 copy, 2 view)
// CHECK:      %ds = view.scale %dy[param] -> [param] f32[16,48]
// CHECK-NEXT: %dx = matmul.c %ds[param], %b[state] -> [arena+{{[0-9]+}}:256] (16x48x4, alpha=2)
// CHECK-NEXT: %dst = view.transpose %ds[param] -> [param strides=[1,48]] f32[48,16]
// CHECK-NEXT: %db = matmul.c %dst[param strides=[1,48]], %h[state] -> [arena+{{[0-9]+}}:768] (48x16x4, a^T, alpha=2)
// CHECK-NEXT: %e, %both = kernel.k0 %dy[param] -> [arena+{{[0-9]+}}:3072], [arena+{{[0-9]+}}:3072] f32[16,48] { %e = scale %dy {alpha=3}; %both = add %e, %dy }
// CHECK-NEXT: %de = matmul.c %e[arena+{{[0-9]+}}:3072], %b[state] -> [arena+{{[0-9]+}}:256] (16x48x4)

graph @lora_grad() -> (%dx: f32[16,4], %db: f32[48,4], %de: f32[16,4], %both: f32[16,48]) {
  %dy = param frozen f32[16,48] "dy" init=normal(1)
  %h = state f32[16,4] "h" init=normal(1)
  %b = state f32[48,4] "b" init=normal(0.5)
  %ds = scale %dy {alpha=2} : f32[16,48]
  %dx = matmul %ds, %b : f32[16,4]
  %dst = transpose %ds {perm=[1,0]} : f32[48,16]
  %db = matmul %dst, %h : f32[48,4]
  %e = scale %dy {alpha=3} : f32[16,48]
  %both = add %e, %dy : f32[16,48]
  %de = matmul %e, %b : f32[16,4]
}
