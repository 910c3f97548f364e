// The closing brace: text after it is an error; a missing one is reported at the end of input.
// RUN: not %peftc opt %s 2>&1 | FileCheck %s
// RUN: head -n 7 %s > %t.pir
// RUN: not %peftc opt %t.pir 2>&1 | FileCheck %s --check-prefix=MISSING

graph @g(%x: f32[2]) -> () {
  %a = neg %x : f32[2]
}
// MISSING: {{.*}}.pir:8:1: error: missing '}' at the end of the graph
// CHECK: {{.*}}bad_structure.pir:[[@LINE+1]]:1: error: unexpected text after the end of the graph: 'graph @h() -> () {'
graph @h() -> () {
}
// CHECK-NOT: error
