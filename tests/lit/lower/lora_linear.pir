// A linear with a LoRA branch lowers to three matmuls: the frozen base weight is a constant
// operand (prepared once in oneDNN's layout), the rank-4 down-projection runs in the backend's C
// kernel for narrow outputs (N = 4/8/16), and the scaled up-projection accumulates into the base
// output's buffer (alpha = the LoRA scale, oneDNN sum post-op): no elementwise pass.
// RUN: %peftc run %s --backend=jit --dump-after=lower -o %t.safetensors 2>&1 | FileCheck %s

// CHECK:      // lowered @lora: 3 instructions (3 matmul, 0 kernel, 0 call, 0 copy, 0 view), arena {{[0-9]+}} bytes (peak live {{[0-9]+}}), 1 accumulating matmuls
// CHECK-NEXT: %base = matmul.dnnl %x[param], %w[param] -> [arena+[[BASE:[0-9]+]]:3072] (16x32x48, b^T, b_constant)
// CHECK-NEXT: %down = matmul.c %x[param], %a[param] -> [arena+[[DOWN:[0-9]+]]:256] (16x32x4, b^T)
// CHECK-NEXT: %y = matmul.dnnl %down[arena+[[DOWN]]:256], %b[param] -> [arena+[[BASE]]:3072] (16x4x48, b^T, alpha=2, accumulate)
// CHECK-NOT:  kernel

graph @lora() -> (%y: f32[16,48]) {
  %x = param frozen f32[16,32] "x" init=normal(1)
  %w = param frozen f32[48,32] "w" init=normal(0.2)
  %a = param trainable f32[4,32] "a" init=normal(0.1)
  %b = param trainable f32[48,4] "b" init=normal(0.1)
  %base = matmul %x, %w {transpose_b=1} : f32[16,48]
  %down = matmul %x, %a {transpose_b=1} : f32[16,4]
  %up = matmul %down, %b {transpose_b=1} : f32[16,48]
  %s = scale %up {alpha=2} : f32[16,48]
  %y = add %base, %s : f32[16,48]
}
