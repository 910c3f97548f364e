// bf16 is a storage type: only cast, matmul (bf16 x bf16 -> f32), embedding (a bf16 table) and
// reshape read it; anything else is refused at the op's location, with the way out.
// RUN: not %peftc opt %s 2>&1 | FileCheck %s

graph @g(%x: f32[2,2]) -> () {
  %w = param frozen bf16[2,2] "w"
  %b = cast %x {to=2} : bf16[2,2]
  %ok = matmul %b, %w : f32[2,2]
  %r = reshape %w {shape=[4]} : bf16[4]
// CHECK: {{.*}}bf16_errors.pir:[[@LINE+1]]:{{[0-9]+}}: error: {{.*}}operand 1 is bf16: add reads f32 (cast it first)
  %y = add %b, %b : f32[2,2]
// CHECK: {{.*}}bf16_errors.pir:[[@LINE+1]]:{{[0-9]+}}: error: {{.*}}operand 2 must be f32, got bf16
  %m = matmul %x, %w : f32[2,2]
// CHECK: {{.*}}bf16_errors.pir:[[@LINE+1]]:{{[0-9]+}}: error: {{.*}}cast between bf16 and i32: go through f32
  %z = cast %b {to=1} : i32[2,2]
// CHECK-NOT: error
}
