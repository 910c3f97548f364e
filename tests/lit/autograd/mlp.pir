// An MLP whose frozen first layer carries a LoRA branch, with a trainable head: autograd emits
// gradients for the LoRA factors and the head only. %x is an input, so nothing flows back
// through the frozen %w1 at all (no dW1, and no dX either).
// RUN: %peftc opt %s --passes=autograd | FileCheck %s
// RUN: %peftc opt %s --passes=autograd | FileCheck %s --check-prefix=FROZEN
// The printed result parses back (round trip through the text format).
// RUN: %peftc opt %s --passes=autograd | %peftc opt - | FileCheck %s
// RUN: %peftc opt %s --passes=autograd,adamw | FileCheck %s --check-prefix=ADAMW
// RUN: not %peftc opt %s --passes=autograd,autograd 2>&1 | FileCheck %s --check-prefix=TWICE
// RUN: not %peftc opt %s --passes=adamw 2>&1 | FileCheck %s --check-prefix=NOGRAD

// CHECK-LABEL: graph @mlp(%x: f32[4,8], %t: i32[4]) -> (%loss: f32[] loss, %grad.lora_a: f32[2,8], %grad.lora_b: f32[16,2], %grad.w2: f32[5,16]) {
// CHECK:      %loss = cross_entropy %logits, %t : f32[]
// CHECK-NEXT: %[[SEED:[0-9]+]] = const f32[] 1
// CHECK-NEXT: %[[DLOGITS:[0-9]+]] = cross_entropy_grad %logits, %t, %[[SEED]] : f32[4,5]
// CHECK-DAG:  %[[DACT:[0-9]+]] = matmul %[[DLOGITS]], %w2 : f32[4,16]
// CHECK-DAG:  %grad.w2 = matmul %[[DLOGITS]], %act {transpose_a=1} : f32[5,16]
// gelu (erf form): dh = dact * (Phi(h) + h phi(h))
// CHECK:      exp
// CHECK:      %[[DH:[0-9]+]] = mul %[[DACT]], %{{[0-9]+}} : f32[4,16]
// the add passes dh to both operands; the frozen base matmul stops it
// CHECK-DAG:  %[[DDOWN:[0-9]+]] = matmul %[[DH]], %lora_b : f32[4,2]
// CHECK-DAG:  %grad.lora_b = matmul %[[DH]], %down {transpose_a=1} : f32[16,2]
// CHECK:      %grad.lora_a = matmul %[[DDOWN]], %x {transpose_a=1} : f32[2,8]
// CHECK-NEXT: {{^[}]$}}

// FROZEN-NOT: grad.w1
// FROZEN:     %loss = cross_entropy
// FROZEN-NOT: %w1
// FROZEN-NOT: f32[16,8]
// FROZEN-NOT: embedding_grad
// FROZEN:     {{^[}]$}}

// ADAMW-LABEL: graph @mlp(%x: f32[4,8], %t: i32[4], %hp: f32[8]) -> (%loss: f32[] loss, %grad.lora_a: f32[2,8], %grad.lora_b: f32[16,2], %grad.w2: f32[5,16]) {
// ADAMW:      %grad.lora_a = matmul
// ADAMW-NEXT: %[[GS:[0-9]+]] = const f32[] 1
// ADAMW-NEXT: %adam_m.lora_a = state f32[2,8] "mlp.w1.lora_A.adam_m" init=zeros
// ADAMW-NEXT: %adam_v.lora_a = state f32[2,8] "mlp.w1.lora_A.adam_v" init=zeros
// ADAMW-NEXT: %[[MA:[0-9]+]] = adamw_m %adam_m.lora_a, %grad.lora_a, %hp, %[[GS]] : f32[2,8]
// ADAMW-NEXT: %[[VA:[0-9]+]] = adamw_v %adam_v.lora_a, %grad.lora_a, %hp, %[[GS]] : f32[2,8]
// ADAMW-NEXT: %[[PA:[0-9]+]] = adamw_p %lora_a, %[[MA]], %[[VA]], %hp : f32[2,8]
// ADAMW:      %adam_m.lora_b = state f32[16,2] "mlp.w1.lora_B.adam_m" init=zeros
// ADAMW:      %[[PB:[0-9]+]] = adamw_p %lora_b, %{{[0-9]+}}, %{{[0-9]+}}, %hp : f32[16,2]
// ADAMW:      %adam_m.w2 = state f32[5,16] "mlp.w2.adam_m" init=zeros
// ADAMW:      %[[PW:[0-9]+]] = adamw_p %w2, %{{[0-9]+}}, %{{[0-9]+}}, %hp : f32[5,16]
// ADAMW-NOT:  adam_m.w1
// ADAMW:      update %lora_a <- %[[PA]]
// ADAMW-NEXT: update %adam_m.lora_a <- %[[MA]]
// ADAMW-NEXT: update %adam_v.lora_a <- %[[VA]]
// ADAMW-NEXT: update %lora_b <- %[[PB]]
// ADAMW:      update %w2 <- %[[PW]]
// ADAMW-NOT:  update %w1
// ADAMW:      {{^[}]$}}

// TWICE: error: autograd: the graph already has gradient output %grad.lora_a (autograd ran)
// NOGRAD: error: adamw: trainable param %lora_a has no gradient output (run autograd first)


graph @mlp(%x: f32[4,8], %t: i32[4]) -> (%loss: f32[] loss) {
  %w1 = param frozen f32[16,8] "mlp.w1"
  %lora_a = param trainable f32[2,8] "mlp.w1.lora_A" init=normal(0.01)
  %lora_b = param trainable f32[16,2] "mlp.w1.lora_B" init=zeros
  %w2 = param trainable f32[5,16] "mlp.w2" init=normal(0.02)
  %base = matmul %x, %w1 {transpose_b=1} : f32[4,16]
  %down = matmul %x, %lora_a {transpose_b=1} : f32[4,2]
  %up = matmul %down, %lora_b {transpose_b=1} : f32[4,16]
  %h = add %base, %up : f32[4,16]
  %act = gelu %h : f32[4,16]
  %logits = matmul %act, %w2 {transpose_b=1} : f32[4,5]
  %loss = cross_entropy %logits, %t : f32[]
}
