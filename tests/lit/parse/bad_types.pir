// Types: dimension overflow, too many elements, rank above 6, malformed types.
// RUN: not %peftc opt %s 2>&1 | FileCheck %s

graph @g() -> () {
// CHECK: {{.*}}bad_types.pir:[[@LINE+1]]:18: error: dimension 99999999999999999999 overflows
  %a = const f32[99999999999999999999] elided
// CHECK-NEXT: {{.*}}bad_types.pir:[[@LINE+1]]:14: error: type f32[1048576,1048576,2] is too large (2199023255552 elements, limit 2^40)
  %b = const f32[1048576,1048576,2] elided
// CHECK-NEXT: {{.*}}bad_types.pir:[[@LINE+1]]:14: error: rank 7 exceeds the maximum rank 6
  %c = const f32[1,1,1,1,1,1,1] elided
// CHECK-NEXT: {{.*}}bad_types.pir:[[@LINE+1]]:17: error: malformed type: expected '[' after 'f32', found '('
  %d = const f32(2) elided
// CHECK-NEXT: {{.*}}bad_types.pir:[[@LINE+1]]:18: error: malformed type: expected a dimension, found '-2'
  %e = const f32[-2] elided
// CHECK-NOT: error
}
