graph @bf(%ids: i32[4], %x: f32[4,8]) -> (%loss: f32[] loss) {
  %emb = param frozen bf16[16,8] "emb.weight"
  %w = param frozen f32[12,8] "blk.q_proj.weight"
  %a = param trainable f32[12,8] "a" init=normal(0.1)
  %e = embedding %emb, %ids : f32[4,8]
  %h = add %x, %e : f32[4,8]
  %hb = cast %h {to=2} : bf16[4,8]
  %r = reshape %emb {shape=[8,16]} : bf16[8,16]
  %y = matmul %h, %w {transpose_b=1} : f32[4,12]
  %z = matmul %hb, %r : f32[4,16]
  %ya = matmul %h, %a {transpose_b=1} : f32[4,12]
  %s = add %y, %ya : f32[4,12]
  %t = sum %s : f32[]
  %u = sum %z : f32[]
  %loss = add %t, %u : f32[]
}
