// base-bf16: frozen rank-2 weights that only products and embeddings read become bf16, and each
// product reads its other operand through one cast to bf16 shared by all its readers (the q and
// k products of %h share %h.bf16). Left in f32: a weight also read by something else (%n, whose
// row norms DoRA-style code takes), a param with an init (random inits are f32), the trainable
// adapter %a, and the product of two f32 values.
// RUN: %peftc opt %s --passes=base-bf16 --no-locations | FileCheck %s
// RUN: %peftc opt %s --passes=base-bf16 -o %t.pir
// RUN: %peftc opt %t.pir --passes=verify --no-locations | FileCheck %s
// RUN: %peftc opt %s --passes=base-bf16,autograd --no-locations | FileCheck --check-prefix=GRAD %s

// CHECK:      %emb = param frozen bf16[16,8] "emb.weight"
// CHECK-NEXT: %q = param frozen bf16[12,8] "q.weight"
// CHECK-NEXT: %k = param frozen bf16[12,8] "k.weight"
// CHECK-NEXT: %n = param frozen f32[12,8] "n.weight"
// CHECK-NEXT: %r = param frozen f32[12,8] "r.weight" init=normal(0.1)
// CHECK-NEXT: %a = param trainable f32[12,8] "a" init=normal(0.1)
// CHECK-NEXT: %h = embedding %emb, %ids : f32[4,8]
// CHECK-NEXT: %h.bf16 = cast %h {to=2} : bf16[4,8]
// CHECK-NEXT: %yq = matmul %h.bf16, %q {transpose_b=1} : f32[4,12]
// CHECK-NEXT: %yk = matmul %h.bf16, %k {transpose_b=1} : f32[4,12]
// CHECK-NEXT: %yn = matmul %h, %n {transpose_b=1} : f32[4,12]
// CHECK-NEXT: %nn = mul %n, %n : f32[12,8]
// CHECK-NEXT: %yr = matmul %h, %r {transpose_b=1} : f32[4,12]
// CHECK-NEXT: %ya = matmul %h, %a {transpose_b=1} : f32[4,12]
// CHECK-NOT:  bf16

// the adapter's gradient flows through the f32 path; the bf16 products need no rounding of an
// adjoint here (nothing trainable lies below them)
// GRAD: %grad.a = matmul
// GRAD-NOT: cast

graph @bf(%ids: i32[4]) -> (%loss: f32[] loss) {
  %emb = param frozen f32[16,8] "emb.weight"
  %q = param frozen f32[12,8] "q.weight"
  %k = param frozen f32[12,8] "k.weight"
  %n = param frozen f32[12,8] "n.weight"
  %r = param frozen f32[12,8] "r.weight" init=normal(0.1)
  %a = param trainable f32[12,8] "a" init=normal(0.1)
  %h = embedding %emb, %ids : f32[4,8]
  %yq = matmul %h, %q {transpose_b=1} : f32[4,12]
  %yk = matmul %h, %k {transpose_b=1} : f32[4,12]
  %yn = matmul %h, %n {transpose_b=1} : f32[4,12]
  %nn = mul %n, %n : f32[12,8]
  %yr = matmul %h, %r {transpose_b=1} : f32[4,12]
  %ya = matmul %h, %a {transpose_b=1} : f32[4,12]
  %s1 = add %yq, %yk : f32[4,12]
  %s2 = add %s1, %yn : f32[4,12]
  %s3 = add %s2, %yr : f32[4,12]
  %s4 = add %s3, %ya : f32[4,12]
  %t = sum %s4 : f32[]
  %u = sum %nn : f32[]
  %loss = add %t, %u : f32[]
}
