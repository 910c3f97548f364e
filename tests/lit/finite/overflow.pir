// Overflow to infinity from finite operands is a fault: a matmul (oneDNN on the compiled
// backend) whose products exceed f32, and an exp.
// RUN: rm -rf %t && mkdir -p %t
// RUN: not %peftc run %s --backend=ref -o %t/ref.safetensors 2>&1 | FileCheck %s
// RUN: not %peftc run %s --backend=jit --check-finite -o %t/jit.safetensors 2>&1 | FileCheck %s
// CHECK: peftc run: non-finite value (inf at [0,0]) in %y = matmul %x, %w : f32[2,5] at {{.*}}overflow.pir:[[@LINE+11]]{{$}}
// the exp comes first when the matmul is finite
// RUN: sed 's/init=uniform(1e19, 2e19)/init=uniform(1, 2)/' %s > %t/exp.pir
// RUN: not %peftc run %t/exp.pir --backend=ref -o %t/ref.safetensors 2>&1 | FileCheck --check-prefix=EXP %s
// RUN: not %peftc run %t/exp.pir --backend=jit --check-finite -o %t/jit.safetensors 2>&1 | FileCheck --check-prefix=EXP %s
// EXP: peftc run: non-finite value (inf at [1]) in %e = exp %z : f32[3] at {{.*}}exp.pir:[[@LINE+8]]{{$}}
// RUN: not ls %t/ref.safetensors %t/jit.safetensors

graph @overflow() -> (%y: f32[2,5], %e: f32[3]) {
  %x = param frozen f32[2,4] "x" init=uniform(1e19, 2e19)
  %w = param frozen f32[4,5] "w" init=uniform(1e19, 2e19)
  %y = matmul %x, %w : f32[2,5]
  %z = const f32[3] [1, 100, -100]
  %e = exp %z : f32[3]
}
