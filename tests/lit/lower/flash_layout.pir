// The Llama layout: q, k, v stored [B, S, H, D], transposed to [B, H, S, D] for attention, and
// the output transposed back and reshaped to [B, S, H*D] for the next projection. The attention
// kernels write their results through strides: o, d q, d k and d v are laid out [B, S, H, D], so
// the transposes after them are dense and the reshapes need no copy (0 copy instructions). The
// interpreter computes the unfused ops and agrees (last RUN).
// RUN: %peftc opt %s --passes=autograd -o %t.pir
// RUN: %peftc run %t.pir --backend=jit --dump-after=lower -o %t.safetensors 2>&1 | FileCheck %s
// RUN: %peftc run %t.pir --backend=ref -o %t.ref.safetensors
// RUN: %python %S/../Inputs/st_tool.py close %t.safetensors %t.ref.safetensors --rtol 2e-6 | FileCheck %s --check-prefix=SAME
// SAME: close: 4 tensors

// CHECK:      0 copy,
// CHECK:      %o = call.flash_attention {{.*}} -> [arena+{{[0-9]+}}:1536 strides=[192,8,24,1]] f32[2,3,8,8]
// CHECK:      call.flash_attention_grad {{.*}} -> [arena+{{[0-9]+}}:1536 strides=[192,8,24,1]], [arena+{{[0-9]+}}:1536 strides=[192,8,24,1]], [arena+{{[0-9]+}}:1536 strides=[192,8,24,1]] f32[2,3,8,8], f32[2,3,8,8], f32[2,3,8,8]

graph @flash_layout() -> (%loss: f32[] loss) {
  %w = param frozen f32[24,5] "w" init=normal(1)
  %qs = param trainable f32[2,8,3,8] "q" init=normal(1)
  %ks = param trainable f32[2,8,3,8] "k" init=normal(1)
  %vs = param trainable f32[2,8,3,8] "v" init=normal(1)
  %q = transpose %qs {perm=[0,2,1,3]} : f32[2,3,8,8]
  %k = transpose %ks {perm=[0,2,1,3]} : f32[2,3,8,8]
  %v = transpose %vs {perm=[0,2,1,3]} : f32[2,3,8,8]
  %s = matmul %q, %k {transpose_b=1} : f32[2,3,8,8]
  %sc = scale %s {alpha=0.35355339059327373} : f32[2,3,8,8]
  %m = causal_mask %sc : f32[2,3,8,8]
  %p = softmax %m : f32[2,3,8,8]
  %o = matmul %p, %v : f32[2,3,8,8]
  %ot = transpose %o {perm=[0,2,1,3]} : f32[2,8,3,8]
  %or = reshape %ot {shape=[2,8,24]} : f32[2,8,24]
  %y = matmul %or, %w : f32[2,8,5]
  %y2 = mul %y, %y : f32[2,8,5]
  %loss = sum %y2 : f32[]
}
