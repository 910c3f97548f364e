// Print -> parse -> print is a fixed point, with and without locations, and through stdin.
// RUN: %peftc opt %s > %t.1
// RUN: %peftc opt %t.1 > %t.2
// RUN: diff %t.1 %t.2
// RUN: FileCheck %s < %t.1
// RUN: %peftc opt %s --no-locations > %t.3
// RUN: %peftc opt - --no-locations < %t.3 > %t.4
// RUN: diff %t.3 %t.4
// RUN: FileCheck %s --check-prefix=NOLOC < %t.3
// RUN: %peftc opt %s | %peftc opt - | %peftc opt - | FileCheck %s

// CHECK-LABEL: graph @rt.block-0(%x: f32[2,8,64], %pos: i32[8], %hp: f32[8]) -> (%loss: f32[] loss, %y: f32[2,8,128]) {
// CHECK-NEXT:   %wq = param frozen f32[64,64] "layers.0.attention.wq"  // llama.c:88
// CHECK-NEXT:   %a = param trainable f32[4,64] "layers.0.attention.wq.lora_A" init=kaiming_uniform(2.23606797749979)  // {{.*}}roundtrip.pir:[[@LINE+32]]
// CHECK-NEXT:   %b = param trainable f32[64,4] "layers.0.attention.wq.lora_B" init=zeros  // {{.*}}roundtrip.pir:{{[0-9]+$}}
// CHECK-NEXT:   %m = state f32[64,4] "layers.0.attention.wq.lora_B.m" init=uniform(-0.5, 0.25)  // {{.*}}roundtrip.pir:{{[0-9]+$}}
// CHECK-NEXT:   %n = param frozen f32[64] "layers.0.attention_norm.weight" init=normal(0.02)  // {{.*}}roundtrip.pir:{{[0-9]+$}}
// CHECK-NEXT:   %s = const f32[] 0.125  // {{.*}}roundtrip.pir:{{[0-9]+$}}
// CHECK-NEXT:   %v = const i32[3] [1, -2, 3]  // {{.*}}roundtrip.pir:{{[0-9]+$}}
// CHECK-NEXT:   %f = const f32[4] [inf, -inf, nan, -0]  // {{.*}}roundtrip.pir:{{[0-9]+$}}
// CHECK-NEXT:   %big = const f32[4096] elided  // {{.*}}roundtrip.pir:{{[0-9]+$}}
// CHECK-NEXT:   %h = rmsnorm %x, %n {eps=1e-06} : f32[2,8,64]  // model.c:12
// CHECK-NEXT:   %q0 = matmul %h, %wq {transpose_b=1} : f32[2,8,64]  // llama.c:91
// CHECK-NEXT:   %d = matmul %h, %a {transpose_b=1} : f32[2,8,4]  // {{.*}}roundtrip.pir:{{[0-9]+$}}
// CHECK-NEXT:   %u = matmul %d, %b {transpose_b=1} : f32[2,8,64]  // {{.*}}roundtrip.pir:{{[0-9]+$}}
// CHECK-NEXT:   %q = add %q0, %u : f32[2,8,64]  // {{.*}}roundtrip.pir:{{[0-9]+$}}
// CHECK-NEXT:   %q4 = reshape %q {shape=[2,8,4,16]} : f32[2,8,4,16]  // {{.*}}roundtrip.pir:{{[0-9]+$}}
// CHECK-NEXT:   %r = rope %q4, %pos {theta=5e+05, style=1} : f32[2,8,4,16]  // {{.*}}roundtrip.pir:{{[0-9]+$}}
// CHECK-NEXT:   %t = transpose %r {perm=[0,2,1,3]} : f32[2,4,8,16]  // {{.*}}roundtrip.pir:{{[0-9]+$}}
// CHECK-NEXT:   %sc = matmul %t, %t {transpose_b=1} : f32[2,4,8,8]  // {{.*}}roundtrip.pir:{{[0-9]+$}}
// CHECK-NEXT:   %cm = causal_mask %sc {fill=-inf} : f32[2,4,8,8]  // {{.*}}roundtrip.pir:{{[0-9]+$}}
// CHECK-NEXT:   %p = softmax %cm : f32[2,4,8,8]  // {{.*}}roundtrip.pir:{{[0-9]+$}}
// CHECK-NEXT:   %y = concat %q, %u {axis=-1} : f32[2,8,128]  // {{.*}}roundtrip.pir:{{[0-9]+$}}
// CHECK-NEXT:   %loss = mean %p : f32[]  // {{.*}}roundtrip.pir:{{[0-9]+$}}
// CHECK-NEXT:   %m.next = scale %m {alpha=0.9, beta=0.001} : f32[64,4]  // {{.*}}roundtrip.pir:{{[0-9]+$}}
// CHECK-NEXT:   update %m <- %m.next
// CHECK-NEXT: }

// NOLOC:      %wq = param frozen f32[64,64] "layers.0.attention.wq"{{$}}
// NOLOC:      %big = const f32[4096] elided{{$}}
// NOLOC:      %r = rope %q4, %pos {theta=5e+05, style=1} : f32[2,8,4,16]{{$}}
// NOLOC-NOT:  //

graph @rt.block-0(%x: f32[2,8,64], %pos: i32[8], %hp: f32[8]) -> (%loss: f32[] loss, %y: f32[2,8,128]) {
  %wq = param frozen f32[64,64] "layers.0.attention.wq"        // llama.c:88
  %a = param trainable f32[4,64] "layers.0.attention.wq.lora_A" init=kaiming_uniform(2.2360679774997898)
  %b = param trainable f32[64,4] "layers.0.attention.wq.lora_B" init=zeros
  %m = state f32[64,4] "layers.0.attention.wq.lora_B.m" init=uniform(-0.5, 0.25)
  %n = param frozen f32[64] "layers.0.attention_norm.weight" init=normal(2e-2)
  %s = const f32[] 0.125
  %v = const i32[3] [1, -2, 3]
  %f = const f32[4] [inf, -inf, nan, -0.0]
  %big = const f32[4096] elided
  %h = rmsnorm %x, %n {eps=0.000001} : f32[2,8,64]  // model.c:12
  %q0 = matmul %h, %wq {transpose_b=1} : f32[2,8,64]  // llama.c:91
  %d = matmul %h, %a {transpose_b=1} : f32[2,8,4]
  %u = matmul %d, %b {transpose_b = 1} : f32[2,8,64]
  %q = add %q0, %u : f32[2,8,64]
  %q4 = reshape %q {shape=[2, 8, 4, 16]} : f32[2,8,4,16]
  %r = rope %q4, %pos {style=1, theta=500000.0} : f32[2,8,4,16]
  %t = transpose %r {perm=[0,2,1,3]} : f32[2,4,8,16]
  %sc = matmul %t, %t {transpose_a=0, transpose_b=1} : f32[2,4,8,8]
  %cm = causal_mask %sc {fill=-inf} : f32[2,4,8,8]
  %p = softmax %cm {axis=-1} : f32[2,4,8,8]
  %y = concat %q, %u {axis=-1} : f32[2,8,128]
  %loss = mean %p : f32[]
  %m.next = scale %m {beta=1e-3, alpha=0.9} : f32[64,4]
  update %m <- %m.next
}
