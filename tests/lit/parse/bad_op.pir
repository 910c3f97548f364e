// An unknown op is reported at the op name, with the file, line and column.
// RUN: not %peftc opt %s 2>&1 | FileCheck %s

graph @g(%x: f32[2,3], %w: f32[3,4]) -> () {
// CHECK: {{.*}}bad_op.pir:[[@LINE+1]]:8: error: unknown op 'matmull'
  %y = matmull %x, %w : f32[2,4]
// CHECK-NOT: error
}
