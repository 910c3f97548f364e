// adapt{config=FILE[,mode=train|eval]}: an adapter config applied to the linears of a
// hand-written graph. A linear is a matmul {transpose_b=1} against a rank-2 param keyed
// "<module>.weight" (frontend/linear.h); target_modules match the module names. The configs
// target q_proj, k_proj, v_proj and up_proj, but only q_proj and up_proj are linears here:
// %kx has no transpose_b and %vx's param key does not end in ".weight".
// RUN: %peftc opt %s --passes='adapt{config=%S/../Inputs/adapt_lora_config.json}' --no-locations | FileCheck --check-prefix=LORA %s
// RUN: %peftc opt %s --passes='adapt{config=%S/../Inputs/adapt_lora_config.json,mode=train}' --no-locations | FileCheck --check-prefix=LORA %s

// LoRA r=4, alpha=8: y = x W^T + 2 (x A^T) B^T, keys in PEFT's format, A trainable (kaiming),
// B trainable (zeros); the second linear reads the first one's adapted output
// LORA:      %h = matmul %x, %q {transpose_b=1} : f32[8,12]
// LORA-NEXT: %blk.q_proj.lora_A = param trainable f32[4,16] "base_model.model.blk.q_proj.lora_A.weight" init=kaiming_uniform({{.*}})
// LORA-NEXT: %blk.q_proj.lora_B = param trainable f32[12,4] "base_model.model.blk.q_proj.lora_B.weight" init=zeros
// LORA-NEXT: %[[D1:[0-9]+]] = matmul %x, %blk.q_proj.lora_A {transpose_b=1} : f32[8,4]
// LORA-NEXT: %[[U1:[0-9]+]] = matmul %[[D1]], %blk.q_proj.lora_B {transpose_b=1} : f32[8,12]
// LORA-NEXT: %[[S1:[0-9]+]] = scale %[[U1]] {alpha=2} : f32[8,12]
// LORA-NEXT: %[[Q:[0-9]+]] = add %h, %[[S1]] : f32[8,12]
// LORA-NEXT: %kx = matmul %x, %k : f32[8,12]
// LORA-NEXT: %vx = matmul %x, %v {transpose_b=1} : f32[8,12]
// LORA-NEXT: %hk = add %[[Q]], %kx : f32[8,12]
// LORA-NEXT: %hv = add %hk, %vx : f32[8,12]
// LORA-NEXT: %y = matmul %hv, %u {transpose_b=1} : f32[8,16]
// LORA-NEXT: %blk.up_proj.lora_A = param trainable f32[4,12] "base_model.model.blk.up_proj.lora_A.weight" init=kaiming_uniform({{.*}})
// LORA-NEXT: %blk.up_proj.lora_B = param trainable f32[16,4] "base_model.model.blk.up_proj.lora_B.weight" init=zeros
// LORA-NEXT: %[[D2:[0-9]+]] = matmul %hv, %blk.up_proj.lora_A {transpose_b=1} : f32[8,4]
// LORA-NEXT: %[[U2:[0-9]+]] = matmul %[[D2]], %blk.up_proj.lora_B {transpose_b=1} : f32[8,16]
// LORA-NEXT: %[[S2:[0-9]+]] = scale %[[U2]] {alpha=2} : f32[8,16]
// LORA-NEXT: %[[Y:[0-9]+]] = add %y, %[[S2]] : f32[8,16]
// LORA-NEXT: %loss = sum %[[Y]] : f32[]
// LORA-NOT: k_proj.lora
// LORA-NOT: v_proj.lora

// the adapted graph differentiates: gradients for the four adapter params only
// RUN: %peftc opt %s --passes='adapt{config=%S/../Inputs/adapt_lora_config.json},autograd' --no-locations | FileCheck --check-prefix=GRAD %s
// GRAD: graph @two() -> (%loss: f32[] loss, %grad.blk.q_proj.lora_A: f32[4,16], %grad.blk.q_proj.lora_B: f32[12,4], %grad.blk.up_proj.lora_A: f32[4,12], %grad.blk.up_proj.lora_B: f32[16,4]) {

// mode=eval: the same rewrite with the adapter params frozen (they are loaded, not trained)
// RUN: %peftc opt %s --passes='adapt{config=%S/../Inputs/adapt_lora_config.json,mode=eval}' --no-locations | FileCheck --check-prefix=EVAL %s
// EVAL: %blk.q_proj.lora_A = param frozen f32[4,16] "base_model.model.blk.q_proj.lora_A.weight"
// EVAL: %blk.q_proj.lora_B = param frozen f32[12,4] "base_model.model.blk.q_proj.lora_B.weight"
// EVAL: scale {{%[0-9]+}} {alpha=2} : f32[8,12]
// EVAL: %blk.up_proj.lora_A = param frozen f32[4,12] "base_model.model.blk.up_proj.lora_A.weight"
// EVAL: %blk.up_proj.lora_B = param frozen f32[16,4] "base_model.model.blk.up_proj.lora_B.weight"
// EVAL: scale {{%[0-9]+}} {alpha=2} : f32[8,16]
// EVAL-NOT: trainable
// nothing to differentiate then
// RUN: %peftc opt %s --passes='adapt{config=%S/../Inputs/adapt_lora_config.json,mode=eval},autograd' --no-locations | FileCheck --check-prefix=EVALGRAD %s
// EVALGRAD: graph @two() -> (%loss: f32[] loss) {
// EVALGRAD-NOT: grad

// (IA)^3: q_proj scaled at its output (ia3_l [out,1]), up_proj, a feed-forward module, at its
// input (ia3_l [1,in]); init ones. The unscaled up_proj product is left for dce.
// RUN: %peftc opt %s --passes='adapt{config=%S/../Inputs/adapt_ia3_config.json}' --no-locations | FileCheck --check-prefix=IA3 %s
// IA3:      %h = matmul %x, %q {transpose_b=1} : f32[8,12]
// IA3-NEXT: %blk.q_proj.ia3_l = param trainable f32[12,1] "base_model.model.blk.q_proj.ia3_l" init=ones
// IA3-NEXT: %[[L1:[0-9]+]] = reshape %blk.q_proj.ia3_l {shape=[12]} : f32[12]
// IA3-NEXT: %[[Q:[0-9]+]] = mul %h, %[[L1]] : f32[8,12]
// IA3-NEXT: %kx = matmul %x, %k : f32[8,12]
// IA3-NEXT: %vx = matmul %x, %v {transpose_b=1} : f32[8,12]
// IA3-NEXT: %hk = add %[[Q]], %kx : f32[8,12]
// IA3-NEXT: %hv = add %hk, %vx : f32[8,12]
// IA3-NEXT: %y = matmul %hv, %u {transpose_b=1} : f32[8,16]
// IA3-NEXT: %blk.up_proj.ia3_l = param trainable f32[1,12] "base_model.model.blk.up_proj.ia3_l" init=ones
// IA3-NEXT: %[[L2:[0-9]+]] = reshape %blk.up_proj.ia3_l {shape=[12]} : f32[12]
// IA3-NEXT: %[[X2:[0-9]+]] = mul %hv, %[[L2]] : f32[8,12]
// IA3-NEXT: %[[Y:[0-9]+]] = matmul %[[X2]], %u {transpose_b=1} : f32[8,16]
// IA3-NEXT: %loss = sum %[[Y]] : f32[]
// IA3-NOT: k_proj.ia3_l
// IA3-NOT: v_proj.ia3_l
// RUN: %peftc opt %s --passes='adapt{config=%S/../Inputs/adapt_ia3_config.json},dce' --no-locations | FileCheck --check-prefix=IA3DCE %s
// IA3DCE-NOT: %y = matmul
// IA3DCE: "base_model.model.blk.up_proj.ia3_l"
// IA3DCE: matmul {{%[0-9]+}}, %u {transpose_b=1} : f32[8,16]
// IA3DCE-NOT: %y = matmul

// errors: exit 1, a message naming the pass and the cause, no output file
// RUN: not %peftc opt %s --passes='adapt{config=%S/../Inputs/adapt_prompt_config.json}' -o %t.never.pir 2>&1 | FileCheck --check-prefix=PROMPT %s
// PROMPT: pass adapt: prompt_tuning rewrites sites only model builders emit (embeddings, positions, attention, head): apply it through a model verb (peftc train/eval/dump)
// RUN: not %peftc opt %s --passes='adapt{config=%S/../Inputs/does_not_exist.json}' -o %t.never.pir 2>&1 | FileCheck --check-prefix=MISSING %s
// MISSING: pass adapt: {{.*}}does_not_exist.json: cannot open: No such file or directory
// RUN: not %peftc opt %s --passes='adapt{config=%S/../Inputs/adapt_lora_config.json,rank=8}' -o %t.never.pir 2>&1 | FileCheck --check-prefix=OPTION %s
// OPTION: pass adapt: bad option 'rank=8' (adapt takes config=FILE,mode=train|eval)
// RUN: not %peftc opt %s --passes='adapt{config=%S/../Inputs/adapt_lora_config.json,mode=infer}' -o %t.never.pir 2>&1 | FileCheck --check-prefix=MODE %s
// MODE: pass adapt: option mode: expected train or eval, got 'infer'
// RUN: not %peftc opt %s --passes=adapt -o %t.never.pir 2>&1 | FileCheck --check-prefix=NOCONFIG %s
// NOCONFIG: pass adapt: adapt needs {config=FILE}
// RUN: not %peftc opt %s --passes='adapt{config=%s}' -o %t.never.pir 2>&1 | FileCheck --check-prefix=NOTJSON %s
// NOTJSON: pass adapt: {{.*}}adapt.pir:1:1: invalid JSON
// RUN: not ls %t.never.pir

graph @two() -> (%loss: f32[] loss) {
  %x = param frozen f32[8,16] "x" init=normal(1)
  %q = param frozen f32[12,16] "blk.q_proj.weight" init=normal(0.2)
  %u = param frozen f32[16,12] "blk.up_proj.weight" init=normal(0.2)
  %k = param frozen f32[16,12] "blk.k_proj.weight" init=normal(0.2)
  %v = param frozen f32[12,16] "blk.v_proj.w" init=normal(0.2)
  %h = matmul %x, %q {transpose_b=1} : f32[8,12]
  %kx = matmul %x, %k : f32[8,12]
  %vx = matmul %x, %v {transpose_b=1} : f32[8,12]
  %hk = add %h, %kx : f32[8,12]
  %hv = add %hk, %vx : f32[8,12]
  %y = matmul %hv, %u {transpose_b=1} : f32[8,16]
  %loss = sum %y : f32[]
}
