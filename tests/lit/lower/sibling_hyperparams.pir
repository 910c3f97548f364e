// A sibling never joins through an optimizer op's hyper-parameter vector: adamw_m's f32[8] %hp
// has the shape of an f32[8] parameter, and %z reads it whole, but %hp stays a kernel input and
// the update its own kernel (backend/kernel_desc.c: pc_kernel_hp_operand).
// RUN: %peftc run %s --backend=jit --dump-after=lower -o %t.safetensors 2>&1 | FileCheck %s

// CHECK:      // lowered @hp: 2 instructions (0 matmul, 2 kernel, 0 call, 0 copy, 0 view)
// CHECK-NEXT: %z = kernel.k0 %hp[param], %x[param] -> [arena+{{[0-9]+}}:32] f32[8] { %z = mul %hp, %x }
// CHECK-NEXT: %mn = kernel.k1 %m[state], %g[param], %hp[param], %gs[param] -> [arena+{{[0-9]+}}:32] f32[8] { %mn = adamw_m %m, %g, %hp, %gs }

graph @hp() -> (%z: f32[8], %mn: f32[8]) {
  %hp = param frozen f32[8] "hp" init=normal(1)
  %x = param frozen f32[8] "x" init=normal(1)
  %g = param frozen f32[8] "g" init=normal(1)
  %gs = param frozen f32[] "gs" init=ones
  %m = state f32[8] "m" init=zeros
  %z = mul %hp, %x : f32[8]
  %mn = adamw_m %m, %g, %hp, %gs : f32[8]
}
