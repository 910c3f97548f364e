// A file with only comments (and blank lines) has no graph: the error is at the end of input.
// RUN: not %peftc opt %s 2>&1 | FileCheck %s
// RUN: not %peftc opt - < /dev/null 2>&1 | FileCheck %s --check-prefix=EMPTY

// EMPTY: <stdin>:1:1: error: expected the graph header 'graph @name(%in: TYPE, ...) -> (%out: TYPE, ...) {', found end of input
// CHECK: {{.*}}empty.pir:[[@LINE+1]]:1: error: expected the graph header {{.*}}, found end of input
