// A malformed graph header stops the parse at the first problem.
// RUN: not %peftc opt %s 2>&1 | FileCheck %s

// CHECK: {{.*}}bad_header.pir:[[@LINE+2]]:7: error: expected '@' and the graph name, found 'g'
// CHECK-NOT: error
graph g(%x: f32[2]) -> () {
  %a = bogus %x : f32[2]
}
