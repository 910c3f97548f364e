#!/usr/bin/env python3
"""PyTorch baseline of bench/bench_train.c: the same Llama, LoRA, data and steps in plain PyTorch.

The model is the architecture of frontend/llama.c (an exact port lives in
tests/golden/gen_llama_lora.py): RMSNorm (eps 1e-5), adjacent-pair RoPE (llama2.c), GQA,
SwiGLU, tied classifier for stories260K and an untied lm_head for mid/large. LoRA as PEFT does
it: y = x W^T + s * (x A^T) B^T, A kaiming-uniform(a=sqrt(5)), B zeros, s = alpha / r; base
weights requires_grad=False; AdamW(lr=1e-3) over the LoRA params only; cross-entropy on seeded
random token windows.

Weights and token batches come from the same counter-based generator as bench_train.c
(splitmix64 over a per-tensor seed, see `uniform` below), so both sides see identical base
weights and identical batches and must start at the same loss.

Usage:
    torch_llama_lora.py --config stories260k|mid|large [--steps N] [--warmup W] [--infer]
                        [--mode train|base|unmerged|merged|all] [--json] [--model PATH]
                        [--attn sdpa|naive] [--seed S] [--no-reexec] [--verbose]
                        [--compile] [--autocast off|bf16] [--mkl-avx512 LIB] [--no-trace]

--compile wraps forward + loss (train) or the forward (infer) in torch.compile (inductor); step 1
then includes the compilation, reported as compile_s = step 1 - median step. --autocast bf16 runs
them inside torch.autocast("cpu", dtype=torch.bfloat16); weights, LoRA params and AdamW stay f32.
The line's backend is torch-<mode>, mode = eager|compile [-avx512] [-bf16]. The last warm-up step
runs with MKL and oneDNN verbose on (isa_path.py) to record which GEMM kernels the step calls.

Prints one JSON line per run (--json) with the fields of bench_train.c plus the BLAS/ISA
PyTorch used. The script re-executes itself once with the benchmark environment: 1 thread
(OMP/MKL/OPENBLAS_NUM_THREADS=1), OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed (native
kernels), GLIBC_TUNABLES raising malloc's mmap/trim thresholds (toolchain.md §0.3), and, with
--mkl-avx512 LIB, LD_PRELOAD=LIB (bench/mkl_avx512.c: lets MKL take its AVX-512 code path on
AMD CPUs).
"""
import argparse
import contextlib
import json
import math
import os
import resource
import sys
import time

TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296"
REEXEC_MARK = "PEFTC_BENCH_TORCH_ENV"

CONFIGS = {
    # dim, hidden, layers, heads, kv heads, vocab, seq_len, tied, B, S, r, alpha, targets
    "stories260k": dict(dim=64, hidden_dim=172, n_layers=5, n_heads=8, n_kv_heads=4, vocab_size=512,
                        seq_len=512, tied=True, B=8, S=64, r=8, alpha=16.0,
                        targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                        from_file=True),
    "mid": dict(dim=256, hidden_dim=688, n_layers=4, n_heads=4, n_kv_heads=4, vocab_size=512, seq_len=128,
                tied=False, B=8, S=128, r=8, alpha=16.0, targets=["q_proj", "v_proj"], from_file=False),
    "large": dict(dim=768, hidden_dim=2048, n_layers=12, n_heads=12, n_kv_heads=12, vocab_size=8192,
                  seq_len=128, tied=False, B=4, S=128, r=8, alpha=16.0, targets=["q_proj", "v_proj"],
                  from_file=False),
}
PROJ = [("q_proj", "self_attn"), ("k_proj", "self_attn"), ("v_proj", "self_attn"), ("o_proj", "self_attn"),
        ("gate_proj", "mlp"), ("up_proj", "mlp"), ("down_proj", "mlp")]
INIT_STD = 0.02
LR, BETAS, EPS, WD = 1e-3, (0.9, 0.999), 1e-8, 0.01


# ---- environment ------------------------------------------------------------------------
def bench_env(args):
    env = dict(os.environ)
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(k, None)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", GLIBC_TUNABLES=TUNABLES)
    env.setdefault("OMP_WAIT_POLICY", "passive")
    if args.mkl_avx512:
        pre = env.get("LD_PRELOAD", "")
        if args.mkl_avx512 not in pre.split(":"):
            env["LD_PRELOAD"] = (os.path.abspath(args.mkl_avx512) + (":" + pre if pre else ""))
    env[REEXEC_MARK] = "1"
    return env


def maybe_reexec(args):
    if args.no_reexec or os.environ.get(REEXEC_MARK) == "1":
        return
    env = bench_env(args)
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


# ---- the generator shared with bench_train.c ---------------------------------------------
GOLDEN = 0x9E3779B97F4A7C15
M64 = (1 << 64) - 1


def fnv1a(s):
    h = 1469598103934665603
    for b in s.encode():
        h = ((h ^ b) * 1099511628211) & M64
    return h


def mix64(np, z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def counters(np, seed, first, n):
    """splitmix64 outputs for counters first+1 .. first+n (uint64 wrap-around)."""
    idx = np.arange(first + 1, first + n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return mix64(np, np.uint64(seed) + idx * np.uint64(GOLDEN))


def uniform_(np, out, seed, a, chunk=1 << 20):
    """out (float32 numpy view) <- (2u-1)*a, u = top 24 bits / 2^24, in chunks (no big temporaries)."""
    flat = out.reshape(-1)
    for s in range(0, flat.size, chunk):
        n = min(chunk, flat.size - s)
        z = counters(np, seed, s, n)
        u = (z >> np.uint64(40)).astype(np.float64) * (1.0 / 16777216.0)
        flat[s:s + n] = ((2.0 * u - 1.0) * a).astype(np.float32)


def tensor_seed(name, seed):
    return fnv1a(name) ^ (seed & M64)


def batch(np, torch, step, B, S, vocab, seed):
    """tokens/targets of step `step` (1-based): windows of S+1 ids, the same ids as bench_train.c"""
    n = B * (S + 1)
    z = counters(np, fnv1a("data") ^ seed, (step * B) * (S + 1), n)
    ids = (z % np.uint64(vocab)).astype(np.int64).reshape(B, S + 1)
    t = torch.from_numpy(ids)
    return t[:, :-1].contiguous(), t[:, 1:].contiguous()


# ---- weights ------------------------------------------------------------------------------
def l2c_names(c):
    names = [("model.embed_tokens.weight", (c["vocab_size"], c["dim"]))]
    d, h = c["dim"], c["hidden_dim"]
    kv = c["n_kv_heads"] * (d // c["n_heads"])
    per = [("input_layernorm", (d,)), ("self_attn.q_proj", (d, d)), ("self_attn.k_proj", (kv, d)),
           ("self_attn.v_proj", (kv, d)), ("self_attn.o_proj", (d, d)), ("post_attention_layernorm", (d,)),
           ("mlp.gate_proj", (h, d)), ("mlp.down_proj", (d, h)), ("mlp.up_proj", (h, d))]
    for l in range(c["n_layers"]):
        for n, s in per:
            names.append((f"model.layers.{l}.{n}.weight", s))
    names.append(("model.norm.weight", (d,)))
    if not c["tied"]:
        names.append(("lm_head.weight", (c["vocab_size"], d)))
    return names


def random_weights(np, torch, c, seed):
    """bench_train.c's random model: norms 1, everything else U(-a, a) with std INIT_STD"""
    a = INIT_STD * math.sqrt(3.0)
    w = {}
    for name, shape in l2c_names(c):
        t = torch.empty(shape, dtype=torch.float32)
        if len(shape) == 1:
            t.fill_(1.0)
        else:
            uniform_(np, t.numpy(), tensor_seed(name, seed), a)
        w[name] = t
    return w


def load_llama2c(np, torch, path):
    import struct
    with open(path, "rb") as f:
        raw = f.read()
    dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len = struct.unpack("<7i", raw[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    hd, kvd = dim // n_heads, n_kv_heads * (dim // n_heads)
    data = np.frombuffer(raw, dtype="<f4", offset=28)
    off = 0

    def take(*shape):
        nonlocal off
        n = int(np.prod(shape))
        a = torch.from_numpy(data[off:off + n].reshape(shape).copy())
        off += n
        return a

    c = dict(dim=dim, hidden_dim=hidden, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads,
             vocab_size=vocab, seq_len=seq_len, tied=shared)
    w = {"model.embed_tokens.weight": take(vocab, dim)}
    stacks = {}
    for key, shape in (("input_layernorm", (dim,)), ("self_attn.q_proj", (dim, dim)),
                       ("self_attn.k_proj", (kvd, dim)), ("self_attn.v_proj", (kvd, dim)),
                       ("self_attn.o_proj", (dim, dim)), ("post_attention_layernorm", (dim,)),
                       ("mlp.gate_proj", (hidden, dim)), ("mlp.down_proj", (dim, hidden)),
                       ("mlp.up_proj", (hidden, dim))):
        stacks[key] = take(n_layers, *shape)
    for l in range(n_layers):
        for key, st in stacks.items():
            w[f"model.layers.{l}.{key}.weight"] = st[l].clone()
    w["model.norm.weight"] = take(dim)
    take(seq_len, hd // 2)
    take(seq_len, hd // 2)
    if not shared:
        w["lm_head.weight"] = take(vocab, dim)
    return c, w


def lora_key(module, ab):
    return f"base_model.model.{module}.lora_{ab}.weight"


# ---- model --------------------------------------------------------------------------------
def build_model(torch, np, c, w, lora, seed, infer_adapter):
    import torch.nn as nn
    import torch.nn.functional as F

    class LoraLinear(nn.Module):
        def __init__(self, module, weight, use_lora):
            super().__init__()
            out_f, in_f = weight.shape
            self.weight = nn.Parameter(weight, requires_grad=False)
            self.lora_A = self.lora_B = None
            self.lora_on = use_lora
            if use_lora:
                r = lora["r"]
                self.scaling = lora["alpha"] / r
                if infer_adapter:  # a trained-looking adapter: B != 0 (same values as bench_train.c)
                    A = torch.empty(r, in_f)
                    B = torch.empty(out_f, r)
                    uniform_(np, A.numpy(), tensor_seed(lora_key(module, "A"), seed), 1.0 / math.sqrt(in_f))
                    uniform_(np, B.numpy(), tensor_seed(lora_key(module, "B"), seed), INIT_STD * math.sqrt(3.0))
                    self.lora_A = nn.Parameter(A, requires_grad=False)
                    self.lora_B = nn.Parameter(B, requires_grad=False)
                else:  # PEFT's init: A kaiming-uniform(a=sqrt(5)), B zeros
                    self.lora_A = nn.Parameter(torch.empty(r, in_f))
                    nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
                    self.lora_B = nn.Parameter(torch.zeros(out_f, r))

        def forward(self, x):
            y = F.linear(x, self.weight)
            if self.lora_on:
                y = y + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scaling
            return y

        @torch.no_grad()
        def merge(self):
            if self.lora_A is not None and self.lora_on:
                self.weight.add_((self.lora_B @ self.lora_A) * self.scaling)
                self.lora_on = False

    def apply_rope(x, cos, sin):  # x [B,S,H,hd]; adjacent pairs (2i, 2i+1)
        xr = x.reshape(*x.shape[:-1], -1, 2)
        x0, x1 = xr[..., 0], xr[..., 1]
        o0 = x0 * cos - x1 * sin
        o1 = x0 * sin + x1 * cos
        return torch.stack([o0, o1], dim=-1).flatten(-2)

    class Llama(nn.Module):
        def __init__(self):
            super().__init__()
            self.H, self.KVH = c["n_heads"], c["n_kv_heads"]
            self.hd = c["dim"] // c["n_heads"]
            self.eps = 1e-5
            self.tok = nn.Parameter(w["model.embed_tokens.weight"], requires_grad=False)
            self.norm = nn.Parameter(w["model.norm.weight"], requires_grad=False)
            self.layers = nn.ModuleList()
            for l in range(c["n_layers"]):
                layer = nn.Module()
                p = f"model.layers.{l}"
                layer.rms_att = nn.Parameter(w[f"{p}.input_layernorm.weight"], requires_grad=False)
                layer.rms_ffn = nn.Parameter(w[f"{p}.post_attention_layernorm.weight"], requires_grad=False)
                for name, parent in PROJ:
                    module = f"{p}.{parent}.{name}"
                    setattr(layer, name, LoraLinear(module, w[module + ".weight"],
                                                    lora is not None and name in lora["targets"]))
                self.layers.append(layer)
            self.lm_head = None if c["tied"] else LoraLinear("lm_head", w["lm_head.weight"], False)
            freqs = 1.0 / (10000.0 ** (torch.arange(0, self.hd, 2)[: self.hd // 2].float() / self.hd))
            ang = torch.outer(torch.arange(c["seq_len"], dtype=torch.float32), freqs)
            self.register_buffer("cos", torch.cos(ang), persistent=False)
            self.register_buffer("sin", torch.sin(ang), persistent=False)

        def attention(self, layer, x, cos, sin):
            B, S, _ = x.shape
            H, KVH, hd = self.H, self.KVH, self.hd
            q = apply_rope(layer.q_proj(x).view(B, S, H, hd), cos, sin)
            k = apply_rope(layer.k_proj(x).view(B, S, KVH, hd), cos, sin)
            v = layer.v_proj(x).view(B, S, KVH, hd)
            if KVH != H:  # query head h uses kv head h // rep (llama2.c)
                k = k.repeat_interleave(H // KVH, dim=2)
                v = v.repeat_interleave(H // KVH, dim=2)
            q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, S, hd]
            if ATTN == "sdpa":
                o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                sc = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
                sc = sc.masked_fill(torch.ones(S, S, dtype=torch.bool).triu(1), float("-inf"))
                o = F.softmax(sc, dim=-1) @ v
            return layer.o_proj(o.transpose(1, 2).reshape(B, S, H * hd))

        def forward(self, tokens):
            B, S = tokens.shape
            cos, sin = self.cos[:S][None, :, None, :], self.sin[:S][None, :, None, :]
            D = self.tok.shape[1]
            h = F.embedding(tokens, self.tok)
            for layer in self.layers:
                h = h + self.attention(layer, F.rms_norm(h, (D,), layer.rms_att, self.eps), cos, sin)
                n = F.rms_norm(h, (D,), layer.rms_ffn, self.eps)
                h = h + layer.down_proj(F.silu(layer.gate_proj(n)) * layer.up_proj(n))
            h = F.rms_norm(h, (D,), self.norm, self.eps)
            return h @ self.tok.t() if self.lm_head is None else self.lm_head(h)

        def lora_linears(self):
            for layer in self.layers:
                for name, _ in PROJ:
                    m = getattr(layer, name)
                    if m.lora_A is not None:
                        yield m

    return Llama()


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_now_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def matmul_gflop(c, B, S, lora, train):
    """analytic matmul FLOPs of one step, counted the way bench_train.c walks the graph"""
    T, D, F, V = B * S, c["dim"], c["hidden_dim"], c["vocab_size"]
    H, hd = c["n_heads"], c["dim"] // c["n_heads"]
    kv = c["n_kv_heads"] * hd
    r = lora["r"] if lora else 0
    tg = set(lora["targets"]) if lora else set()
    fl = 0
    rg = False  # does the residual stream depend on a trainable param?

    def linear(name, i, o, x_rg):
        nonlocal fl
        has = name in tg
        fl += 2 * T * i * o + (2 * T * i * r + 2 * T * r * o if has else 0)
        if train:
            if x_rg:
                fl += 2 * T * i * o + (2 * T * i * r if has else 0)
            if has:
                fl += 2 * T * r * o * 2 + 2 * T * i * r  # dB, d(xA^T), dA
        return x_rg or has

    for _ in range(c["n_layers"]):
        q = linear("q_proj", D, D, rg)
        k = linear("k_proj", D, kv, rg)
        v = linear("v_proj", D, kv, rg)
        att = 2 * B * H * S * S * hd
        fl += 2 * att
        s_rg = q or k
        if train:
            fl += att * (int(q) + int(k)) + att * (int(s_rg) + int(v))
        o = linear("o_proj", D, D, s_rg or v)
        rg = rg or o
        g = linear("gate_proj", D, F, rg)
        u = linear("up_proj", D, F, rg)
        d = linear("down_proj", F, D, rg or g or u)
        rg = rg or d
    fl += 2 * T * D * V * (2 if train and rg else 1)
    return fl / 1e9


# ---- runs ---------------------------------------------------------------------------------
def main():
    global ATTN
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=sorted(CONFIGS), default="stories260k")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--infer", action="store_true", help="forward only (modes base/unmerged/merged)")
    ap.add_argument("--mode", default=None, help="train | base | unmerged | merged | all (infer default)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--model", default=None, help="stories260K.bin (default: data/stories260K/ of the repo)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--attn", choices=["sdpa", "naive"], default="sdpa")
    ap.add_argument("--mkl-avx512", default=None, metavar="LIB",
                    help="LD_PRELOAD this library (bench/mkl_avx512.c) in the re-executed process")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile (inductor) the forward + loss (train) or the forward (infer)")
    ap.add_argument("--autocast", choices=["off", "bf16"], default="off",
                    help="bf16: torch.autocast('cpu', bfloat16) around forward + loss; weights, LoRA params "
                         "and AdamW stay f32")
    ap.add_argument("--no-trace", action="store_true", help="skip the MKL/oneDNN verbose trace of the last warm-up step")
    ap.add_argument("--no-reexec", action="store_true", help="run in the current environment as is")
    ap.add_argument("--verbose", action="store_true", help="every step's time on stderr")
    args = ap.parse_args()
    maybe_reexec(args)
    ATTN = args.attn

    import numpy as np
    import torch
    import torch.nn.functional as F
    from isa_path import blas_report, isa_summary, matmul_trace

    rss_import = rss_now_mib()  # what importing torch alone costs (part of every peak below)

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(args.seed)

    spec = dict(CONFIGS[args.config])
    B, S = spec.pop("B"), spec.pop("S")
    lora_cfg = {"r": spec.pop("r"), "alpha": spec.pop("alpha"), "targets": spec.pop("targets")}
    from_file = spec.pop("from_file")
    t0 = time.perf_counter()
    if from_file:
        path = args.model or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data",
                                          "stories260K", "stories260K.bin")
        c, w = load_llama2c(np, torch, path)
        for k in ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size"):
            assert c[k] == spec[k], f"{path}: {k} = {c[k]}, expected {spec[k]}"
    else:
        c = spec
        w = random_weights(np, torch, c, args.seed)
    load_s = time.perf_counter() - t0

    modes = [args.mode or "train"] if not args.infer else (
        ["base", "unmerged", "merged"] if args.mode in (None, "all") else [args.mode])
    rep = blas_report(torch)
    # the run's name: eager | eager-avx512 | compile | compile-bf16 | eager-bf16 (backend "torch-<name>")
    label = ("compile" if args.compile else "eager") + ("-avx512" if args.mkl_avx512 else "") + \
        ("-bf16" if args.autocast == "bf16" else "")
    amp = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.autocast == "bf16" else contextlib.nullcontext
    common = {"bench": "torch", "config": args.config, "backend": "torch-" + label, "torch_mode": label,
              "compiled": args.compile, "autocast": args.autocast, "mkl_shim": bool(args.mkl_avx512),
              "threads": torch.get_num_threads(),
              "B": B, "S": S, "tokens_per_step": B * S, "steps": args.steps, "warmup": args.warmup,
              "attn": ATTN, "load_s": round(load_s, 3), "rss_after_import_mib": round(rss_import, 1), **rep}
    V = c["vocab_size"]
    for mode in modes:
        train = mode == "train"
        lora = None if mode == "base" else lora_cfg
        t0 = time.perf_counter()
        # the random weights are shared by reference; merged mode gets its own copies of the targets
        ww = dict(w)
        if mode == "merged":
            ww = {k: (v.clone() if any(f".{t}." in k for t in lora_cfg["targets"]) else v) for k, v in w.items()}
        model = build_model(torch, np, c, ww, lora, args.seed, infer_adapter=not train)
        if mode == "merged":
            for m in model.lora_linears():
                m.merge()
        params = sum(p.numel() for p in model.parameters())
        trainable = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(trainable, lr=LR, betas=BETAS, eps=EPS, weight_decay=WD) if train else None

        def loss_of(tokens, targets):  # forward + loss under autocast (cross-entropy: f32 by autocast's rules)
            with amp():
                return F.cross_entropy(model(tokens).view(-1, V), targets.view(-1))

        def logits_of(tokens):
            with amp():
                return model(tokens)

        if args.compile:  # compiled at the first call (step 1); AdamW stays eager
            import torch._dynamo
            torch._dynamo.reset()
            from torch._dynamo.utils import counters
            cache0 = dict(counters["inductor"])
            loss_of, logits_of = torch.compile(loss_of), torch.compile(logits_of)
        setup_s = time.perf_counter() - t0

        def one_step(tokens, targets):
            if train:
                loss = loss_of(tokens, targets)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                return None, loss.item()
            with torch.inference_mode():
                return logits_of(tokens), None

        times, losses, faults0, first_s, calls, dnnl_isa = [], [], 0, None, None, None
        for step in range(1, args.warmup + args.steps + 1):
            tokens, targets = batch(np, torch, step, B, S, V, args.seed)
            if step == args.warmup + 1:
                ru = resource.getrusage(resource.RUSAGE_SELF)
                faults0, cpu0, wall0 = ru.ru_minflt, ru.ru_utime + ru.ru_stime, time.perf_counter()
            trace = step == args.warmup and not args.no_trace
            t1 = time.perf_counter()
            if trace:  # the last warm-up step, with MKL/oneDNN verbose on: which GEMM kernels the step calls
                (logits, lv), calls, dnnl_isa = matmul_trace(torch, lambda: one_step(tokens, targets))
            else:
                logits, lv = one_step(tokens, targets)
            dt = time.perf_counter() - t1
            if step == 1:
                first_s = dt
            if lv is None and step == 1:
                with torch.inference_mode(), amp():
                    lv = F.cross_entropy(logits.view(-1, V), targets.view(-1)).item()
            if lv is not None:
                losses.append(lv)
            del logits
            if step > args.warmup:
                times.append(dt)
            if args.verbose:
                print(f"torch: {args.config} {mode} step {step}: {dt * 1e3:.3f} ms", file=sys.stderr)
        ru = resource.getrusage(resource.RUSAGE_SELF)
        faults = (ru.ru_minflt - faults0) / max(1, len(times))
        # CPU / wall over the timed steps: well below 1 = descheduled or a shared vCPU (contention)
        cpu_util = (ru.ru_utime + ru.ru_stime - cpu0) / (time.perf_counter() - wall0)
        order = list(times)
        times.sort()
        med, best = times[len(times) // 2], times[0]
        gf = matmul_gflop(c, B, S, None if mode == "merged" else lora, train)
        out = dict(common, mode=mode, params=params, trainable=sum(p.numel() for p in trainable),
                   tokens_per_s_median=round(B * S / med, 1), tokens_per_s_best=round(B * S / best, 1),
                   ms_per_step_median=round(med * 1e3, 3), ms_per_step_best=round(best * 1e3, 3),
                   gflop_per_step=round(gf, 4), gflops=round(gf / med, 2), gflops_best=round(gf / best, 2),
                   peak_rss_mib=round(peak_rss_mib(), 1), setup_s=round(setup_s, 3),
                   minor_faults_per_step=round(faults, 1), cpu_util=round(cpu_util, 3),
                   loss_first=losses[0], loss_last=losses[-1], ms_steps=[round(t * 1e3, 3) for t in order],
                   first_step_ms=round(first_s * 1e3, 3), step_gemm_calls=calls, onednn_isa=dnnl_isa,
                   isa=isa_summary(rep, calls, bool(args.mkl_avx512)))
        if args.compile:  # compile time = what step 1 took beyond a steady step (trace + inductor + codegen)
            ind = {k: counters["inductor"].get(k, 0) - cache0.get(k, 0) for k in ("fxgraph_cache_hit", "fxgraph_cache_miss")}
            out.update(compile_s=round(first_s - med, 3), inductor_cache_hits=ind["fxgraph_cache_hit"],
                       inductor_cache_misses=ind["fxgraph_cache_miss"])
        if args.json:
            print(json.dumps(out), flush=True)
        else:
            print(f"torch-{label} {args.config} {mode}: {out['tokens_per_s_median']:.0f} tok/s (best "
                  f"{out['tokens_per_s_best']:.0f}), {out['ms_per_step_median']:.2f} ms/step, {out['gflops']:.1f} "
                  f"GFLOP/s, loss {out['loss_first']:.6f} -> {out['loss_last']:.6f}, peak RSS "
                  f"{out['peak_rss_mib']:.0f} MiB, compile {out.get('compile_s', '-')} s, {out['isa']}", flush=True)
        del model, opt


ATTN = "sdpa"

if __name__ == "__main__":
    main()
