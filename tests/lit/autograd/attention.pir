// An attention block with frozen q/k/v/o projections, LoRA on q and v, rope, scaled q k^T, causal
// mask, softmax, rmsnorm and a frozen output head. The gradient flows through the frozen weights
// (dX) but never produces their dW; the key path (frozen %wk only) gets no adjoint at all.
// RUN: %peftc opt %s --passes=autograd | FileCheck %s
// RUN: %peftc opt %s --passes=autograd | FileCheck %s --check-prefix=FROZEN
// RUN: %peftc opt %s --passes=autograd | %peftc opt - | FileCheck %s
// RUN: %peftc opt %s --passes=autograd,adamw-clip | FileCheck %s --check-prefix=CLIP

// CHECK-LABEL: graph @attn(%x: f32[1,4,8], %pos: i32[4], %t: i32[1,4]) -> (%loss: f32[] loss, %grad.qa: f32[2,8], %grad.qb: f32[8,2], %grad.va: f32[2,8], %grad.vb: f32[8,2], %grad.norm: f32[8]) {
// CHECK:      %loss = cross_entropy %logits, %t : f32[]
// CHECK-NEXT: %[[SEED:[0-9]+]] = const f32[] 1
// CHECK-NEXT: %[[DLOGITS:[0-9]+]] = cross_entropy_grad %logits, %t, %[[SEED]] : f32[1,4,6]
// the frozen head passes dX only
// CHECK-NEXT: %[[DN:[0-9]+]] = matmul %[[DLOGITS]], %out : f32[1,4,8]
// rmsnorm: both x and the weight
// CHECK:      rsqrt
// CHECK:      %grad.norm = sum_to %{{[0-9]+}} {shape=[8]} : f32[8]
// CHECK-NEXT: %[[DO2:[0-9]+]] = matmul %{{[0-9]+}}, %wo : f32[1,4,8]
// attention: dP = dO V^T, dV = P^T dO, softmax, causal mask (masked entries get 0), scale
// CHECK:      matmul %{{[0-9]+}}, %v4 {transpose_b=1} : f32[1,2,4,4]
// CHECK:      matmul %p, %{{[0-9]+}} {transpose_a=1} : f32[1,2,4,4]
// CHECK:      %[[DMASK:[0-9]+]] = causal_mask %{{[0-9]+}} {fill=0} : f32[1,2,4,4]
// CHECK-NEXT: %[[DS:[0-9]+]] = scale %[[DMASK]] {alpha=0.5} : f32[1,2,4,4]
// only q needs a gradient: dQ = dS K
// CHECK-NEXT: %[[DQ4:[0-9]+]] = matmul %[[DS]], %k4 : f32[1,2,4,4]
// CHECK:      %[[DQ3:[0-9]+]] = transpose %[[DQ4]] {perm=[0,2,1,3]} : f32[1,4,2,4]
// CHECK-NEXT: %[[DQ2:[0-9]+]] = rope %[[DQ3]], %pos {inverse=1} : f32[1,4,2,4]
// LoRA factors: the batch is flattened into the rows, one GEMM per weight gradient
// CHECK-DAG:  %grad.vb = matmul %{{[0-9]+}}, %{{[0-9]+}} {transpose_a=1} : f32[8,2]
// CHECK-DAG:  %grad.va = matmul %{{[0-9]+}}, %{{[0-9]+}} {transpose_a=1} : f32[2,8]
// CHECK-DAG:  %grad.qb = matmul %{{[0-9]+}}, %{{[0-9]+}} {transpose_a=1} : f32[8,2]
// CHECK-DAG:  %grad.qa = matmul %{{[0-9]+}}, %{{[0-9]+}} {transpose_a=1} : f32[2,8]
// CHECK:      {{^[}]$}}

// FROZEN-NOT: grad.w
// FROZEN-NOT: grad.out
// FROZEN:     %loss = cross_entropy
// no dW of any frozen matrix ([8,8] or [6,8]), no adjoint of the key path: the one inverse rope
// is that of q
// FROZEN-NOT: f32[8,8]
// FROZEN-NOT: f32[6,8]
// FROZEN-NOT: %wk
// FROZEN-NOT: %wq
// FROZEN-NOT: %wv
// FROZEN-NOT: rope
// FROZEN:     rope %{{[0-9]+}}, %pos {inverse=1}
// FROZEN-NOT: f32[8,8]
// FROZEN-NOT: f32[6,8]
// FROZEN-NOT: %wk
// FROZEN-NOT: %wq
// FROZEN-NOT: %wv
// FROZEN-NOT: rope
// FROZEN:     {{^[}]$}}

// CLIP-LABEL: graph @attn(%x: f32[1,4,8], %pos: i32[4], %t: i32[1,4], %hp: f32[8]) ->
// gradient scale: clip_coef of the sum of squares of every gradient, in param order
// CLIP:      %[[SQ:[0-9]+]] = square %grad.qa : f32[2,8]
// CLIP-NEXT: %[[S0:[0-9]+]] = sum %[[SQ]] : f32[]
// CLIP:      square %grad.qb
// CLIP:      square %grad.va
// CLIP:      square %grad.vb
// CLIP:      square %grad.norm
// CLIP-NEXT: %[[S4:[0-9]+]] = sum %{{[0-9]+}} : f32[]
// CLIP-NEXT: %[[SS:[0-9]+]] = add %{{[0-9]+}}, %[[S4]] : f32[]
// CLIP-NEXT: %[[GS:[0-9]+]] = clip_coef %[[SS]], %hp : f32[]
// CLIP:      adamw_m %adam_m.qa, %grad.qa, %hp, %[[GS]] : f32[2,8]
// CLIP:      adamw_v %adam_v.norm, %grad.norm, %hp, %[[GS]] : f32[8]
// CLIP-NOT:  adam_m.w
// CLIP:      update %qa <-
// CLIP:      update %norm <-
// CLIP-NOT:  update %w

graph @attn(%x: f32[1,4,8], %pos: i32[4], %t: i32[1,4]) -> (%loss: f32[] loss) {
  %wq = param frozen f32[8,8] "layers.0.attention.wq"
  %wk = param frozen f32[8,8] "layers.0.attention.wk"
  %wv = param frozen f32[8,8] "layers.0.attention.wv"
  %wo = param frozen f32[8,8] "layers.0.attention.wo"
  %qa = param trainable f32[2,8] "layers.0.attention.wq.lora_A" init=normal(0.01)
  %qb = param trainable f32[8,2] "layers.0.attention.wq.lora_B" init=zeros
  %va = param trainable f32[2,8] "layers.0.attention.wv.lora_A" init=normal(0.01)
  %vb = param trainable f32[8,2] "layers.0.attention.wv.lora_B" init=zeros
  %norm = param trainable f32[8] "layers.0.ffn_norm" init=ones
  %out = param frozen f32[6,8] "output"
  %q0 = matmul %x, %wq {transpose_b=1} : f32[1,4,8]
  %qd = matmul %x, %qa {transpose_b=1} : f32[1,4,2]
  %qu = matmul %qd, %qb {transpose_b=1} : f32[1,4,8]
  %q1 = add %q0, %qu : f32[1,4,8]
  %k1 = matmul %x, %wk {transpose_b=1} : f32[1,4,8]
  %v0 = matmul %x, %wv {transpose_b=1} : f32[1,4,8]
  %vd = matmul %x, %va {transpose_b=1} : f32[1,4,2]
  %vu = matmul %vd, %vb {transpose_b=1} : f32[1,4,8]
  %v1 = add %v0, %vu : f32[1,4,8]
  %q2 = reshape %q1 {shape=[1,4,2,4]} : f32[1,4,2,4]
  %k2 = reshape %k1 {shape=[1,4,2,4]} : f32[1,4,2,4]
  %v2 = reshape %v1 {shape=[1,4,2,4]} : f32[1,4,2,4]
  %q3 = rope %q2, %pos : f32[1,4,2,4]
  %k3 = rope %k2, %pos : f32[1,4,2,4]
  %q4 = transpose %q3 {perm=[0,2,1,3]} : f32[1,2,4,4]
  %k4 = transpose %k3 {perm=[0,2,1,3]} : f32[1,2,4,4]
  %v4 = transpose %v2 {perm=[0,2,1,3]} : f32[1,2,4,4]
  %s = matmul %q4, %k4 {transpose_b=1} : f32[1,2,4,4]
  %s1 = scale %s {alpha=0.5} : f32[1,2,4,4]
  %s2 = causal_mask %s1 : f32[1,2,4,4]
  %p = softmax %s2 : f32[1,2,4,4]
  %o = matmul %p, %v4 : f32[1,2,4,4]
  %o1 = transpose %o {perm=[0,2,1,3]} : f32[1,4,2,4]
  %o2 = reshape %o1 {shape=[1,4,8]} : f32[1,4,8]
  %o3 = matmul %o2, %wo {transpose_b=1} : f32[1,4,8]
  %r = add %x, %o3 : f32[1,4,8]
  %n = rmsnorm %r, %norm : f32[1,4,8]
  %logits = matmul %n, %out {transpose_b=1} : f32[1,4,6]
  %loss = cross_entropy %logits, %t : f32[]
}
