// The verifier re-infers every node: a declared type that disagrees with inference is an error
// at the value's position; every bad node is reported, later ones checked against the declared
// types of earlier ones.
// RUN: not %peftc opt %s 2>&1 | FileCheck %s

graph @g(%x: f32[2,3], %i: i32[2,3], %w: f32[4,3]) -> () {
// CHECK: {{.*}}bad_shape.pir:[[@LINE+1]]:3: error: %a: declared type f32[2,4] but add infers f32[2,3]
  %a = add %x, %x : f32[2,4]
// CHECK-NEXT: {{.*}}bad_shape.pir:[[@LINE+1]]:3: error: %b: matmul: contraction dimensions differ: [2,3] x [4,3] (3 vs 4)
  %b = matmul %x, %w : f32[2,3]
// CHECK-NEXT: {{.*}}bad_shape.pir:[[@LINE+1]]:3: error: %c: add: operand dtypes differ (f32, i32)
  %c = add %x, %i : f32[2,3]
  %ok = matmul %x, %w {transpose_b=1} : f32[2,4]
// CHECK-NEXT: model.c:42: error: %d: declared type f32[2] but neg infers f32[2,4]
  %d = neg %ok : f32[2]   // model.c:42
// CHECK-NOT: error
}
