// Outputs must name values of the body with the declared type; the loss must be a scalar f32.
// These are reported at the header, after the body was read.
// RUN: not %peftc opt %s 2>&1 | FileCheck %s

// CHECK: {{.*}}bad_outputs.pir:[[@LINE+4]]:28: error: output '%nope' is not defined
// CHECK-NEXT: {{.*}}bad_outputs.pir:[[@LINE+3]]:42: error: output '%y' is declared as f32[3] but defined as f32[2,3]
// CHECK-NEXT: {{.*}}bad_outputs.pir:[[@LINE+2]]:54: error: loss '%x' must be a scalar f32, got f32[2,3]
// CHECK-NOT: error
graph @g(%x: f32[2,3]) -> (%nope: f32[], %y: f32[3], %x: f32[2,3] loss) {
  %y = neg %x : f32[2,3]
}
