// Several syntax errors in one file: one error per bad line, parsing goes on with the next line.
// RUN: not %peftc opt %s 2>&1 | FileCheck %s

graph @g(%x: f32[2,3]) -> () {
// CHECK: {{.*}}bad_syntax.pir:[[@LINE+1]]:15: error: expected an operand after ','
  %a = add %x,
// CHECK-NEXT: {{.*}}bad_syntax.pir:[[@LINE+1]]:18: error: missing ': TYPE' result type annotation
  %b = add %x, %x
// CHECK-NEXT: {{.*}}bad_syntax.pir:[[@LINE+1]]:20: error: unknown attribute 'foo' for softmax
  %c = softmax %x {foo=1} : f32[2,3]
// CHECK-NEXT: {{.*}}bad_syntax.pir:[[@LINE+1]]:25: error: bad value for attribute 'axis' of softmax: 'one'
  %d = softmax %x {axis=one} : f32[2,3]
// CHECK-NEXT: {{.*}}bad_syntax.pir:[[@LINE+1]]:8: error: add takes 2 operands, got 1
  %e = add %x : f32[2,3]
// CHECK-NEXT: {{.*}}bad_syntax.pir:[[@LINE+1]]:3: error: redefinition of value '%x'
  %x = neg %x : f32[2,3]
// CHECK-NEXT: {{.*}}bad_syntax.pir:[[@LINE+1]]:17: error: unknown dtype 'f64'
  %f = neg %x : f64[2,3]
// CHECK-NEXT: {{.*}}bad_syntax.pir:[[@LINE+1]]:3: error: expected a value definition ('%name = ...'), 'update' or '}', found 'return'
  return %x
// CHECK-NEXT: {{.*}}bad_syntax.pir:[[@LINE+1]]:26: error: unexpected 'extra' after the result type
  %g = neg %x : f32[2,3] extra
// CHECK-NOT: error
}
