// The arena holds only what is live at once: a chain of [64,64] values (16 KiB each) alternates
// between two buffers, and the two outputs (kept to the end) reuse them. The ops here are exact,
// so both backends write identical files.
// RUN: %peftc run %s --backend=jit --dump-after=lower -o %t.jit.safetensors 2>&1 | FileCheck %s
// RUN: %peftc run %s --backend=ref -o %t.ref.safetensors
// RUN: cmp %t.jit.safetensors %t.ref.safetensors

// CHECK:      // lowered @plan: 6 instructions (0 matmul, 1 kernel, 4 call, 1 copy, 1 view), arena 32768 bytes (peak live 32768)
// CHECK-NEXT: %b = call.causal_mask %a[param] -> [arena+[[X:[0-9]+]]:16384] f32[64,64] {fill=0}
// CHECK-NEXT: %c = call.causal_mask %b[arena+[[X]]:16384] -> [arena+[[Y:[0-9]+]]:16384] f32[64,64] {fill=1}
// CHECK-NEXT: %d = call.causal_mask %c[arena+[[Y]]:16384] -> [arena+[[X]]:16384] f32[64,64] {fill=2}
// CHECK-NEXT: %e = call.causal_mask %d[arena+[[X]]:16384] -> [arena+[[Y]]:16384] f32[64,64] {fill=3}
// CHECK-NEXT: %t = view.transpose %e[arena+[[Y]]:16384] -> [arena+[[Y]]:16384 strides=[1,64]] f32[64,64]
// CHECK-NEXT: %t = copy %t[arena+[[Y]]:16384 strides=[1,64]] -> [arena+[[X]]:16384] f32[64,64]
// CHECK-NEXT: %f = kernel.k0 %a[param] -> [arena+[[Y]]:16384] f32[64,64] { %f = sub %a, %a }

graph @plan() -> (%t: f32[64,64], %f: f32[64,64]) {
  %a = param frozen f32[64,64] "a" init=normal(1)
  %b = causal_mask %a {fill=0} : f32[64,64]
  %c = causal_mask %b {fill=1} : f32[64,64]
  %d = causal_mask %c {fill=2} : f32[64,64]
  %e = causal_mask %d {fill=3} : f32[64,64]
  %t = transpose %e {perm=[1,0]} : f32[64,64]
  %f = sub %a, %a : f32[64,64]
}
