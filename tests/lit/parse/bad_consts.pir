// Constants need exactly numel values of the right kind; params need frozen|trainable, a key, a
// known init.
// RUN: not %peftc opt %s 2>&1 | FileCheck %s

graph @g() -> () {
// CHECK: {{.*}}bad_consts.pir:[[@LINE+1]]:21: error: const f32[3] needs 3 values, got 2
  %a = const f32[3] [1, 2]
// CHECK-NEXT: {{.*}}bad_consts.pir:[[@LINE+1]]:28: error: too many values for const f32[2] (expected 2)
  %b = const f32[2] [1, 2, 3]
// CHECK-NEXT: {{.*}}bad_consts.pir:[[@LINE+1]]:25: error: expected an integer for an i32 constant, found '2.5'
  %c = const i32[2] [1, 2.5]
// CHECK-NEXT: {{.*}}bad_consts.pir:[[@LINE+1]]:20: error: value 4294967296 is out of range for i32
  %d = const i32[] 4294967296
// CHECK-NEXT: {{.*}}bad_consts.pir:[[@LINE+1]]:14: error: expected 'frozen' or 'trainable' after 'param', found 'f32'
  %p = param f32[2] "k"
// CHECK-NEXT: {{.*}}bad_consts.pir:[[@LINE+1]]:37: error: unknown init 'gaussian'
  %q = param frozen f32[2] "q" init=gaussian(1)
// CHECK-NEXT: {{.*}}bad_consts.pir:[[@LINE+1]]:37: error: init uniform(a, b) takes 2 arguments, got 1
  %r = param frozen f32[2] "r" init=uniform(1)
  %s = param frozen f32[2] "s"
// CHECK-NEXT: {{.*}}bad_consts.pir:[[@LINE+1]]:21: error: key "s" is already used by '%s'
  %t = state f32[2] "s"
// CHECK-NEXT: {{.*}}bad_consts.pir:[[@LINE+1]]:28: error: unterminated string
  %u = param frozen f32[2] "no end
// CHECK-NOT: error
}
