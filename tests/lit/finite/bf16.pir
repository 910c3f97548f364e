// bf16 values are checked like f32 ones: a finite f32 that rounds to infinity in bf16 is the
// cast's fault (3.4e38 is above bf16's largest finite value, 3.39e38), named by both backends
// (the product that reads the infinity, and a NaN in a bf16 weight, pass it on as an operand's).
// RUN: rm -rf %t && mkdir -p %t
// RUN: not %peftc run %s --backend=ref -o %t/ref.safetensors 2>&1 | FileCheck %s
// RUN: not %peftc run %s --backend=jit --check-finite -o %t/jit.safetensors 2>&1 | FileCheck %s
// CHECK: peftc run: non-finite value (inf at [0,3]) in %b = cast %s {to=2} : bf16[2,4] at {{.*}}bf16.pir:[[@LINE+7]]{{$}}
// RUN: not ls %t/ref.safetensors %t/jit.safetensors

graph @bf16_overflow() -> (%y: f32[2,3]) {
  %x = const f32[2,4] [1, 2, 3, 4, 1, 1, 1, 1]
  %w = const bf16[3,4] [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
  %s = scale %x {alpha=8.5e+37} : f32[2,4]
  %b = cast %s {to=2} : bf16[2,4]
  %y = matmul %b, %w {transpose_b=1} : f32[2,3]
}
