// A trailing "// file:line" comment sets a value's origin (kept through dumps); any other
// comment is just a comment and the origin is the position in this file. Constants with more
// than --elide=N elements print as `elided`.
// RUN: %peftc opt %s | FileCheck %s
// RUN: %peftc opt %s --elide=2 | FileCheck %s --check-prefix=ELIDE
// RUN: %peftc opt %s --elide=0 | %peftc opt - --elide=0 | FileCheck %s --check-prefix=KEEP

graph @g(%x: f32[4]) -> (%z: f32[4]) {
// CHECK: %c = const f32[4] [1, 2.5, -3, 4]  // {{.*}}locations.pir:[[@LINE+1]]
  %c = const f32[4] [1, 2.5, -3, 4]  // TODO: a note, not a location
// CHECK-NEXT: %y = mul %x, %c : f32[4]  // src/model.c:123
  %y = mul %x, %c : f32[4]  // src/model.c:123
// CHECK-NEXT: %k = param frozen f32[] "a//b \"c\""  // {{.*}}locations.pir:[[@LINE+1]]
  %k = param frozen f32[] "a//b \"c\""
// CHECK-NEXT: %z = add %y, %k : f32[4]  // {{.*}}locations.pir:[[@LINE+1]]
  %z = add %y, %k : f32[4]
}
// ELIDE: %c = const f32[4] elided
// KEEP: %c = const f32[4] [1, 2.5, -3, 4]  // {{.*}}locations.pir:10
