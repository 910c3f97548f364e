// Update lines: the target must be a param or state, the new value of the same type, once.
// RUN: not %peftc opt %s 2>&1 | FileCheck %s

graph @g(%x: f32[2,3]) -> () {
  %p = param trainable f32[2,3] "p"
  %s = state f32[3] "s"
  %n = neg %x : f32[2,3]
// CHECK: {{.*}}bad_updates.pir:[[@LINE+1]]:10: error: update target '%n' is not a param or state
  update %n <- %x
// CHECK-NEXT: {{.*}}bad_updates.pir:[[@LINE+1]]:16: error: update of '%s' (f32[3]) with '%x' of a different type (f32[2,3])
  update %s <- %x
  update %p <- %n
// CHECK-NEXT: {{.*}}bad_updates.pir:[[@LINE+1]]:10: error: duplicate update of '%p'
  update %p <- %x
// CHECK-NEXT: {{.*}}bad_updates.pir:[[@LINE+1]]:13: error: expected '<-' in 'update %target <- %next', found '='
  update %s = %x
// CHECK-NOT: error
}
