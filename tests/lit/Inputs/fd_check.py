#!/usr/bin/env python3
"""Finite-difference check of `peftc opt --passes=autograd` through `peftc run` (stdlib only).

usage: fd_check.py PEFTC GRAPH.pir WORKDIR [--samples N] [--tol T]

Writes random values for every input and param of GRAPH (integer inputs -- targets, positions --
small non-negative ids), differentiates the graph with `peftc opt --passes=autograd`, runs it
with `peftc run` to get the loss and every
grad.<param>, then for N sampled elements of each trainable param re-runs the forward graph
with the element moved by +-h and compares the central difference with the gradient.
Prints one line per param and "fd check: N passed, M failed"; exits 1 on any failure.
"""
import os
import random
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from st_tool import read_st, write_st  # noqa: E402  (the lit helpers' safetensors I/O)


def parse_type(t):
    m = re.fullmatch(r"(f32|i32)\[([0-9,]*)\]", t)
    dims = [int(d) for d in m.group(2).split(",") if d] if m.group(2) else []
    return m.group(1), dims


def numel(dims):
    n = 1
    for d in dims:
        n *= d
    return n


def leaves(text):
    """(inputs [(name, dtype, dims)], params [(name, kind, dtype, dims)])"""
    head = re.search(r"graph @\S+?\((.*?)\)\s*->", text)
    inputs = []
    for m in re.finditer(r"%([\w.-]+): ((?:f32|i32)\[[0-9,]*\])", head.group(1)):
        inputs.append((m.group(1),) + parse_type(m.group(2)))
    params = []
    for m in re.finditer(r"^\s*%([\w.-]+) = param (frozen|trainable) ((?:f32|i32)\[[0-9,]*\])", text, re.M):
        params.append((m.group(1), m.group(2)) + parse_type(m.group(3)))
    return inputs, params


def run(peftc, graph, inputs, work, tag):
    ip, op = os.path.join(work, tag + ".in.st"), os.path.join(work, tag + ".out.st")
    write_st(ip, {k: (dt.upper(), dims, vals) for k, (dt, dims, vals) in inputs.items()})
    subprocess.run([peftc, "run", graph, "--inputs", ip, "-o", op], check=True)
    return read_st(op)


def main():
    peftc, graph, work = sys.argv[1], sys.argv[2], sys.argv[3]
    samples = int(sys.argv[sys.argv.index("--samples") + 1]) if "--samples" in sys.argv else 6
    tol = float(sys.argv[sys.argv.index("--tol") + 1]) if "--tol" in sys.argv else 2e-3
    os.makedirs(work, exist_ok=True)
    text = open(graph).read()
    inputs, params = leaves(text)
    rng = random.Random(1234)
    # integer inputs are targets/positions: keep them below the smallest trailing dimension of
    # any f32 value they could index (logits' vocabulary) -- the caller's graphs use small ranges
    int_hi = min([d[-1] for _, dt, d in inputs if dt == "f32" and d] + [4])
    values = {}
    for name, dt, dims in inputs:
        if dt == "f32":
            values[name] = (dt, dims, [rng.uniform(-1, 1) for _ in range(numel(dims))])
        else:
            values[name] = (dt, dims, [i % int_hi for i in range(numel(dims))] if "pos" in name
                            else [rng.randrange(int_hi) for _ in range(numel(dims))])
    for name, kind, dt, dims in params:
        values[name] = (dt, dims, [rng.uniform(-0.5, 0.5) for _ in range(numel(dims))])
    grad_graph = os.path.join(work, "grad.pir")
    subprocess.run([peftc, "opt", graph, "--passes=autograd", "-o", grad_graph], check=True)
    base = run(peftc, grad_graph, values, work, "base")
    loss_name = re.search(r"->\s*\(.*?%([\w.-]+): f32\[\] loss", text).group(1)
    passed = failed = 0
    h = 1e-2
    for name, kind, dt, dims in params:
        if kind != "trainable":
            if "grad." + name in base:
                print("FAIL: frozen %s got a gradient" % name)
                failed += 1
            continue
        g = base["grad." + name]
        worst = 0.0
        for k in rng.sample(range(numel(dims)), min(samples, numel(dims))):
            losses = []
            for sgn in (1, -1):
                v = dict(values)
                vals = list(values[name][2])
                vals[k] += sgn * h
                v[name] = (dt, dims, vals)
                losses.append(run(peftc, graph, v, work, "fd")[loss_name][0])
            fd = (losses[0] - losses[1]) / (2 * h)
            worst = max(worst, abs(fd - g[k]) / max(1.0, abs(fd)))
        ok = worst <= tol
        passed += ok
        failed += not ok
        print("%s: grad.%s worst rel err %.2e" % ("ok" if ok else "FAIL", name, worst))
    print("fd check: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
