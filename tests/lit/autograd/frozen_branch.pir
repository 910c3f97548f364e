// Frozen weights feeding trainable branches: a frozen token embedding with a trainable soft prompt
// concatenated in front (prompt tuning), a frozen projection scaled by a trainable IA3 vector,
// and a frozen output head. The frozen weights pass gradients to their inputs (through %w and
// %head) but no gradient of a frozen weight appears: no embedding_grad of the table, no
// [10,4] or [4,4] result, no grad.emb / grad.w / grad.head.
// RUN: %peftc opt %s --passes=autograd | FileCheck %s
// RUN: %peftc opt %s --passes=autograd | FileCheck %s --check-prefix=FROZEN
// RUN: %peftc opt %s --passes=autograd | %peftc opt - | FileCheck %s
// RUN: %peftc opt %s --passes=autograd,adamw | FileCheck %s --check-prefix=ADAMW

graph @prompt(%ids: i32[2,3], %t: i32[2,5]) -> (%loss: f32[] loss) {
  %emb = param frozen f32[10,4] "tok_embeddings.weight"
  %prompt = param trainable f32[2,4] "prompt_encoder.embedding.weight" init=normal(0.02)
  %w = param frozen f32[4,4] "layers.0.w"
  %ia3 = param trainable f32[4] "layers.0.w.ia3_l" init=ones
  %head = param frozen f32[10,4] "output.weight"
  %e = embedding %emb, %ids : f32[2,3,4]
  %p = broadcast %prompt {shape=[2,2,4]} : f32[2,2,4]
  %x = concat %p, %e {axis=1} : f32[2,5,4]
  %h = matmul %x, %w {transpose_b=1} : f32[2,5,4]
  %hs = mul %h, %ia3 : f32[2,5,4]
  %a = silu %hs : f32[2,5,4]
  %logits = matmul %a, %head {transpose_b=1} : f32[2,5,10]
  %loss = cross_entropy %logits, %t {ignore_index=0} : f32[]
}

// CHECK-LABEL: graph @prompt(%ids: i32[2,3], %t: i32[2,5]) -> (%loss: f32[] loss, %grad.prompt: f32[2,4], %grad.ia3: f32[4]) {
// CHECK:      %loss = cross_entropy %logits, %t {ignore_index=0} : f32[]
// CHECK-NEXT: %[[SEED:[0-9]+]] = const f32[] 1
// the loss attributes carry over to the gradient
// CHECK-NEXT: %[[DL:[0-9]+]] = cross_entropy_grad %logits, %t, %[[SEED]] {ignore_index=0} : f32[2,5,10]
// CHECK-NEXT: %[[DA:[0-9]+]] = matmul %[[DL]], %head : f32[2,5,4]
// silu
// CHECK:      sigmoid %hs
// CHECK:      %[[DHS:[0-9]+]] = mul %[[DA]], %{{[0-9]+}} : f32[2,5,4]
// the IA3 vector: reduce the broadcast back to [4]
// CHECK-DAG:  %[[DH:[0-9]+]] = mul %[[DHS]], %ia3 : f32[2,5,4]
// CHECK-DAG:  %grad.ia3 = sum_to %{{[0-9]+}} {shape=[4]} : f32[4]
// dX through the frozen %w
// CHECK:      %[[DX:[0-9]+]] = matmul %[[DH]], %w : f32[2,5,4]
// the prompt's part of the concat, then the broadcast reduced back
// CHECK-NEXT: %[[DP:[0-9]+]] = slice %[[DX]] {axis=1, end=2} : f32[2,2,4]
// CHECK-NEXT: %grad.prompt = sum_to %[[DP]] {shape=[2,4]} : f32[2,4]
// CHECK-NEXT: {{^[}]$}}

// FROZEN-NOT: grad.emb
// FROZEN-NOT: grad.w
// FROZEN-NOT: grad.head
// FROZEN:     %loss = cross_entropy
// FROZEN-NOT: embedding_grad
// FROZEN-NOT: f32[10,4]
// FROZEN-NOT: f32[4,4]
// FROZEN-NOT: %emb
// FROZEN-NOT: %e,
// FROZEN:     {{^[}]$}}

// ADAMW-LABEL: graph @prompt(%ids: i32[2,3], %t: i32[2,5], %hp: f32[8]) -> (%loss: f32[] loss, %grad.prompt: f32[2,4], %grad.ia3: f32[4]) {
// ADAMW:      %adam_m.prompt = state f32[2,4] "prompt_encoder.embedding.weight.adam_m" init=zeros
// ADAMW-NEXT: %adam_v.prompt = state f32[2,4] "prompt_encoder.embedding.weight.adam_v" init=zeros
// ADAMW:      %adam_m.ia3 = state f32[4] "layers.0.w.ia3_l.adam_m" init=zeros
// ADAMW-NEXT: %adam_v.ia3 = state f32[4] "layers.0.w.ia3_l.adam_v" init=zeros
// ADAMW-NOT:  state
// ADAMW:      update %prompt <-
// ADAMW-NEXT: update %adam_m.prompt <-
// ADAMW-NEXT: update %adam_v.prompt <-
// ADAMW-NEXT: update %ia3 <-
// ADAMW-NEXT: update %adam_m.ia3 <-
// ADAMW-NEXT: update %adam_v.ia3 <-
// ADAMW-NEXT: {{^[}]$}}
