// fuse-lowrank: the LoRA down-projections of q, k and v read the same activation and become
// one GEMM over the concatenated A's; the fused graph differentiates and computes the same.
// RUN: %peftc opt %s --passes=fuse-lowrank --no-locations | FileCheck %s
// RUN: %peftc opt %s --passes=fuse-lowrank,autograd --no-locations | FileCheck --check-prefix=GRAD %s
// RUN: %peftc run %s --backend=ref -o %t.plain.safetensors
// RUN: %peftc opt %s --passes=fuse-lowrank -o %t.fused.pir
// RUN: %peftc run %t.fused.pir --backend=ref -o %t.fused.safetensors
// RUN: %peftc run %t.fused.pir --backend=jit -o %t.fused.jit.safetensors
// RUN: cmp %t.plain.safetensors %t.fused.safetensors

// CHECK: concat %aq, %ak, %av : f32[12,16]
// CHECK-NEXT: matmul %x, {{%[0-9]+}} {transpose_b=1} : f32[8,12]
// CHECK-NEXT: %dq = slice {{%[0-9]+}} {axis=-1, end=4} : f32[8,4]
// CHECK-NEXT: %dk = slice {{%[0-9]+}} {axis=-1, start=4, end=8} : f32[8,4]
// CHECK-NEXT: %dv = slice {{%[0-9]+}} {axis=-1, start=8, end=12} : f32[8,4]
// CHECK-NOT: matmul %x, %a

// GRAD: -> (%loss: f32[] loss, %grad.aq: f32[4,16], %grad.ak: f32[4,16], %grad.av: f32[4,16])
graph @qkv() -> (%loss: f32[] loss) {
  %x = param frozen f32[8,16] "x" init=normal(1)
  %aq = param trainable f32[4,16] "q.lora_A.weight" init=normal(0.3)
  %ak = param trainable f32[4,16] "k.lora_A.weight" init=normal(0.3)
  %av = param trainable f32[4,16] "v.lora_A.weight" init=normal(0.3)
  %dq = matmul %x, %aq {transpose_b=1} : f32[8,4]
  %dk = matmul %x, %ak {transpose_b=1} : f32[8,4]
  %dv = matmul %x, %av {transpose_b=1} : f32[8,4]
  %s1 = mul %dq, %dk : f32[8,4]
  %s2 = mul %s1, %dv : f32[8,4]
  %loss = sum %s2 : f32[]
}
