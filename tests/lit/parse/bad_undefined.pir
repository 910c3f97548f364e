// Uses of undefined values (including a use before the definition) are reported at the use;
// a line that failed does not cause further errors where its value is used.
// RUN: not %peftc opt %s 2>&1 | FileCheck %s

graph @g(%x: f32[2,3]) -> (%z: f32[2,3]) {
// CHECK: {{.*}}bad_undefined.pir:[[@LINE+1]]:16: error: use of undefined value '%later'
  %a = add %x, %later : f32[2,3]
  %later = neg %x : f32[2,3]
// CHECK-NEXT: {{.*}}bad_undefined.pir:[[@LINE+1]]:12: error: use of undefined value '%nope'
  %b = neg %nope : f32[2,3]
  %z = add %a, %b : f32[2,3]
// CHECK-NOT: error
}
