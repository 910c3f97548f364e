// --check-finite names the op that produced the first NaN, its value, the element and its origin
// (the IR printer's `// file:line`), on the reference interpreter (always on there) and on the
// compiled backend (on with the flag). Compiled, sqrt and scale are one fused kernel whose result
// is %y; the kernel's ops are re-run one by one to name sqrt, as the interpreter does.
// RUN: rm -rf %t && mkdir -p %t
// RUN: not %peftc run %s --backend=ref -o %t/ref.safetensors 2>&1 | FileCheck %s
// RUN: not %peftc run %s --backend=jit --check-finite -o %t/jit.safetensors 2>&1 | FileCheck %s
// RUN: not %peftc run %s --backend=ref --check-finite -o %t/ref2.safetensors 2>&1 | FileCheck %s
// CHECK: peftc run: non-finite value (nan at [1,0]) in %s = sqrt %x : f32[2,2] at {{.*}}nan_fused.pir:[[@LINE+13]]{{$}}
// nothing is written after a fault
// RUN: not ls %t/ref.safetensors %t/jit.safetensors %t/ref2.safetensors
// the compiled backend does not check by default: the NaN reaches the output
// RUN: %peftc run %s --backend=jit -o %t/unchecked.safetensors
// RUN: %python %S/../Inputs/st_tool.py print %t/unchecked.safetensors y | FileCheck --check-prefix=UNCHECKED %s
// UNCHECKED: y: [2.0, 4.0, nan, 6.0]
// the fused kernel, for the record
// RUN: %peftc run %s --backend=jit --dump-after=lower -o %t/dump.safetensors 2>&1 | FileCheck --check-prefix=LOWER %s
// LOWER: %y = kernel.k0 %x[const] -> {{.*}} { %s = sqrt %x; %y = scale %s {alpha=2} }

graph @nan_fused() -> (%y: f32[2,2]) {
  %x = const f32[2,2] [1, 4, -1, 9]
  %s = sqrt %x : f32[2,2]
  %y = scale %s {alpha=2} : f32[2,2]
}
