// With --steps the message names the step, counted from 0: the state %s grows 1e15-fold per run
// (1e15, 1e30, then 1e45 overflows in step 2); the runs before it are fine.
// RUN: rm -rf %t && mkdir -p %t
// RUN: %peftc run %s --steps 2 --backend=ref -o %t/two.safetensors
// RUN: not %peftc run %s --steps 5 --backend=ref -o %t/ref.safetensors 2>&1 | FileCheck %s
// RUN: not %peftc run %s --steps 5 --backend=jit --check-finite -o %t/jit.safetensors 2>&1 | FileCheck %s
// CHECK: peftc run: step 2: non-finite value (inf) in %s2 = scale %s {alpha=1e+15} : f32[] at {{.*}}steps.pir:[[@LINE+5]]{{$}}
// RUN: not ls %t/ref.safetensors %t/jit.safetensors

graph @steps() -> (%s2: f32[]) {
  %s = state f32[] "s" init=ones
  %s2 = scale %s {alpha=1e15} : f32[]
  update %s <- %s2
}
