// What the check lets through (backend/finite.h): infinities an op's attribute asks for
// (causal_mask {fill=-inf}, alone or fused into the softmax) and NaN/inf carried from operands
// that already hold them (x + a -inf mask, log_softmax of it). These runs succeed on the
// interpreter, where the check is on by default, and on the compiled backend with the flag.
// RUN: rm -rf %t && mkdir -p %t
// RUN: %peftc run %s --backend=ref -o %t/ref.safetensors
// RUN: %peftc run %s --backend=jit --check-finite -o %t/jit.safetensors
// RUN: %python %S/../Inputs/st_tool.py print %t/ref.safetensors q | FileCheck --check-prefix=Q %s
// RUN: %python %S/../Inputs/st_tool.py print %t/jit.safetensors q | FileCheck --check-prefix=Q %s
// Q: q: [{{[-0-9.e]+}}, -inf, -inf, {{[-0-9.e]+}}, {{[-0-9.e]+}}, -inf, {{[-0-9.e]+}}, {{[-0-9.e]+}}, {{[-0-9.e]+}}]

graph @masks() -> (%p: f32[2,3,3], %mx: f32[2,3], %q: f32[3,3], %l: f32[]) {
  %sc = param frozen f32[2,3,3] "sc" init=normal(1)
  %cm = causal_mask %sc {fill=-inf} : f32[2,3,3]
  %p = softmax %cm : f32[2,3,3]
  %cm2 = causal_mask %sc {fill=-inf} : f32[2,3,3]
  %mx = max %cm2 {axes=[-1]} : f32[2,3]
  %mxs = softmax %cm2 : f32[2,3,3]
  %m = const f32[3,3] [0, -inf, -inf, 0, 0, -inf, 0, 0, 0]
  %x = param frozen f32[3,3] "x" init=normal(1)
  %a = add %x, %m : f32[3,3]
  %e = exp %a : f32[3,3]
  %q = log_softmax %a : f32[3,3]
  %s = sum %e : f32[]
  %t = sum %mxs : f32[]
  %l = add %s, %t : f32[]
}
