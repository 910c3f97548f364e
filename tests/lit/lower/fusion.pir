// Elementwise chains of one shape become one kernel; a value used outside its group is a kernel
// output, everything else stays in registers. The rmsnorm backward's row reduction (a C kernel)
// splits the chain into three kernels: before the mean, the [16,1] part, and after it.
// RUN: %peftc run %s --backend=jit --dump-after=lower -o %t.safetensors 2>&1 | FileCheck %s

// CHECK:      // lowered @fuse: 5 instructions (0 matmul, 3 kernel, 2 call, 0 copy, 0 view)
// CHECK-NEXT: %h, %sq = kernel.k0 %g[param], %u[param] -> [arena+{{[0-9]+}}:2048], [arena+{{[0-9]+}}:2048] f32[16,32] { %s = silu %g; %h = mul %s, %u; %sq = square %h }
// CHECK-NEXT: %ms = call.mean %sq[arena+{{[0-9]+}}:2048] -> [arena+{{[0-9]+}}:64] f32[16,1] {axes=[-1], keepdim=1}
// CHECK-NEXT: %r = kernel.k1 %ms[arena+{{[0-9]+}}:64] -> [arena+{{[0-9]+}}:64] f32[16,1] { %e = scale %ms {beta=1.0000000000000001e-05}; %r = rsqrt %e }
// CHECK-NEXT: %y = kernel.k2 %h[arena+{{[0-9]+}}:2048], %r[arena+{{[0-9]+}}:64], %x[param] -> [arena+{{[0-9]+}}:2048] f32[16,32] { %n = mul %h, %r; %y = add %n, %x }
// CHECK-NEXT: %loss = call.sum %y[arena+{{[0-9]+}}:2048] -> [arena+{{[0-9]+}}:4] f32[]

graph @fuse() -> (%y: f32[16,32], %loss: f32[]) {
  %g = param frozen f32[16,32] "g" init=normal(1)
  %u = param frozen f32[16,32] "u" init=normal(1)
  %x = param frozen f32[16,32] "x" init=normal(1)
  %s = silu %g : f32[16,32]
  %h = mul %s, %u : f32[16,32]
  %sq = square %h : f32[16,32]
  %ms = mean %sq {axes=[-1], keepdim=1} : f32[16,1]
  %e = scale %ms {beta=1e-5} : f32[16,1]
  %r = rsqrt %e : f32[16,1]
  %n = mul %h, %r : f32[16,32]
  %y = add %n, %x : f32[16,32]
  %loss = sum %y : f32[]
}
