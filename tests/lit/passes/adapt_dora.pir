// adapt with a DoRA config (LoRA + use_dora) on IR text: the magnitude param (PEFT's key, no
// ".weight"), f = m / stop_gradient(||W + 2 B A||_row), y = f h + x Aᵀ (2 f ⊙ B)ᵀ (PEFT's
// h + (f - 1) h + 2 f (x Aᵀ Bᵀ) with f moved onto B, as dora.c computes it without dropout).
// Autograd stops at the stop_gradient: the magnitude's gradient divides by the detached norm
// and nothing differentiates the norm (no gradient reaches its square or sqrt).
// RUN: %peftc opt %s --passes='adapt{config=%S/../Inputs/adapt_dora_config.json}' --no-locations | FileCheck --check-prefix=DORA %s
// RUN: %peftc opt %s --passes='adapt{config=%S/../Inputs/adapt_dora_config.json},autograd' --no-locations | FileCheck --check-prefix=GRAD %s
// RUN: %peftc opt %s --passes='adapt{config=%S/../Inputs/adapt_dora_config.json},autograd' --no-locations | FileCheck --check-prefix=NOGRAD %s

// DORA:      %h = matmul %x, %q {transpose_b=1} : f32[8,12]
// DORA-NEXT: %blk.q_proj.lora_A = param trainable f32[4,16] "base_model.model.blk.q_proj.lora_A.weight" init=kaiming_uniform({{.*}})
// DORA-NEXT: %blk.q_proj.lora_B = param trainable f32[12,4] "base_model.model.blk.q_proj.lora_B.weight" init=zeros
// DORA-NEXT: %blk.q_proj.lora_magnitude_vector = param trainable f32[12] "base_model.model.blk.q_proj.lora_magnitude_vector" init=ones
// DORA-NEXT: %[[BA:[0-9]+]] = matmul %blk.q_proj.lora_B, %blk.q_proj.lora_A : f32[12,16]
// DORA-NEXT: %[[SBA:[0-9]+]] = scale %[[BA]] {alpha=2} : f32[12,16]
// DORA-NEXT: %[[WS:[0-9]+]] = add %q, %[[SBA]] : f32[12,16]
// DORA-NEXT: %[[SQ:[0-9]+]] = square %[[WS]] : f32[12,16]
// DORA-NEXT: %[[SS:[0-9]+]] = sum %[[SQ]] {axes=[1]} : f32[12]
// DORA-NEXT: %[[N:[0-9]+]] = sqrt %[[SS]] : f32[12]
// DORA-NEXT: %[[NS:[0-9]+]] = stop_gradient %[[N]] : f32[12]
// DORA-NEXT: %[[F:[0-9]+]] = div %blk.q_proj.lora_magnitude_vector, %[[NS]] : f32[12]
// DORA-NEXT: %[[F2:[0-9]+]] = reshape %[[F]] {shape=[12,1]} : f32[12,1]
// DORA-NEXT: %[[FB:[0-9]+]] = mul %[[F2]], %blk.q_proj.lora_B : f32[12,4]
// DORA-NEXT: %[[SFB:[0-9]+]] = scale %[[FB]] {alpha=2} : f32[12,4]
// DORA-NEXT: %[[FH:[0-9]+]] = mul %h, %[[F]] : f32[8,12]
// DORA-NEXT: %[[D:[0-9]+]] = matmul %x, %blk.q_proj.lora_A {transpose_b=1} : f32[8,4]
// DORA-NEXT: %[[U:[0-9]+]] = matmul %[[D]], %[[SFB]] {transpose_b=1} : f32[8,12]
// DORA-NEXT: %[[Y:[0-9]+]] = add %[[FH]], %[[U]] : f32[8,12]
// DORA-NEXT: %loss = sum %[[Y]] : f32[]

// GRAD: %[[NS:[0-9]+]] = stop_gradient
// GRAD: %grad.blk.q_proj.lora_A = matmul
// GRAD: %grad.blk.q_proj.lora_B = mul
// GRAD: %grad.blk.q_proj.lora_magnitude_vector = div %{{[0-9]+}}, %[[NS]] : f32[12]
// NOGRAD: %loss = sum
// NOGRAD-NOT: sqrt
// NOGRAD-NOT: square

graph @g(%x: f32[8,16]) -> (%loss: f32[] loss) {
  %q = param frozen f32[12,16] "blk.q_proj.weight"
  %h = matmul %x, %q {transpose_b=1} : f32[8,12]
  %loss = sum %h : f32[]
}
