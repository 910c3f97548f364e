// A NaN made out of infinities is a fault: a row that an additive mask (-inf) masks entirely
// gives softmax -inf - -inf. Both backends name the softmax, not the add that carried the mask.
// RUN: rm -rf %t && mkdir -p %t
// RUN: not %peftc run %s --backend=ref -o %t/ref.safetensors 2>&1 | FileCheck %s
// RUN: not %peftc run %s --backend=jit --check-finite -o %t/jit.safetensors 2>&1 | FileCheck %s
// CHECK: peftc run: non-finite value (nan at [1,0]) in %p = softmax %a : f32[2,3] at {{.*}}masked_row.pir:[[@LINE+7]]{{$}}
// RUN: not ls %t/ref.safetensors %t/jit.safetensors

graph @masked_row() -> (%p: f32[2,3]) {
  %x = param frozen f32[2,3] "x" init=normal(1)
  %m = const f32[2,3] [0, 0, -inf, -inf, -inf, -inf]
  %a = add %x, %m : f32[2,3]
  %p = softmax %a : f32[2,3]
}
