#!/usr/bin/env python3
"""Generate the golden LoRA fixture tests/data/golden_llama_lora.safetensors.

A small PyTorch Llama written exactly like karpathy/llama2.c model.py
(adjacent-pair RoPE, GQA, SwiGLU, tied classifier) is loaded from the
stories260K llama2.c legacy checkpoint, checked against the greedy oracle
data/stories260K/reference_greedy.txt, then LoRA (r=4, alpha=8) is put on all
seven projections of every layer. For one fixed batch the script records the
logits, the loss, the gradients of every lora_A/lora_B, and a 10-step AdamW
trajectory (losses and final A/B).

Usage (from the repository root):
    python3 tests/golden/gen_llama_lora.py [--out tests/data/golden_llama_lora.safetensors]

Needs: torch, numpy, safetensors. CPU only, fp32, 1 thread, deterministic.
See tests/golden/README.md for the fixture's layout.
"""
import argparse
import hashlib
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
CKPT_CANDIDATES = [
    os.path.join(REPO, "data", "stories260K", "stories260K.bin"),
    "/work/shared/data/stories260K/stories260K.bin",
]
CKPT_SHA256 = "b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696"
DEFAULT_OUT = os.path.join(REPO, "tests", "data", "golden_llama_lora.safetensors")

# ---- fixture parameters (all recorded in the file's metadata) --------------
RMS_EPS = 1e-5
ROPE_THETA = 10000.0
LORA_R = 4
LORA_ALPHA = 8
LORA_INIT_STD = 0.05
LORA_SEED = 1234          # torch.Generator seed for lora_A / lora_B init
BATCH_SEED = 42           # torch.Generator seed for the token batch
BATCH, SEQ = 2, 16
VOCAB_DRAW = 512          # ids drawn uniformly from [0, 512)
IGNORE_INDEX = -100
IGNORED = [(0, 3), (1, 0), (1, 15)]  # (batch, position) of targets set to -100
LR, BETA1, BETA2, ADAM_EPS, WEIGHT_DECAY = 1e-2, 0.9, 0.999, 1e-8, 0.01
STEPS = 10
ORACLE_TOL = 1e-4

# HF/PEFT module names in the order used for init draws and in the file.
# (peft name, parent ("self_attn" | "mlp"), llama2.c weight name)
MODULES = [
    ("q_proj", "self_attn", "wq"),
    ("k_proj", "self_attn", "wk"),
    ("v_proj", "self_attn", "wv"),
    ("o_proj", "self_attn", "wo"),
    ("gate_proj", "mlp", "w1"),
    ("up_proj", "mlp", "w3"),
    ("down_proj", "mlp", "w2"),
]


# ---- checkpoint ------------------------------------------------------------
def load_llama2c(path):
    with open(path, "rb") as f:
        raw = f.read()
    dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len = struct.unpack("<7i", raw[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    hd = dim // n_heads
    kv_dim = n_kv_heads * hd
    data = np.frombuffer(raw, dtype="<f4", offset=28)
    off = 0

    def take(*shape):
        nonlocal off
        n = int(np.prod(shape))
        a = data[off:off + n].reshape(shape).copy()
        off += n
        return torch.from_numpy(a)

    w = {}
    w["tok"] = take(vocab, dim)
    w["rms_att"] = take(n_layers, dim)
    w["wq"] = take(n_layers, dim, dim)
    w["wk"] = take(n_layers, kv_dim, dim)
    w["wv"] = take(n_layers, kv_dim, dim)
    w["wo"] = take(n_layers, dim, dim)
    w["rms_ffn"] = take(n_layers, dim)
    w["w1"] = take(n_layers, hidden, dim)
    w["w2"] = take(n_layers, dim, hidden)
    w["w3"] = take(n_layers, hidden, dim)
    w["rms_final"] = take(dim)
    w["freq_cis_real"] = take(seq_len, hd // 2)
    w["freq_cis_imag"] = take(seq_len, hd // 2)
    if not shared:
        w["wcls"] = take(vocab, dim)
    assert off == data.size, "trailing data in checkpoint"
    cfg = dict(dim=dim, hidden_dim=hidden, n_layers=n_layers, n_heads=n_heads,
               n_kv_heads=n_kv_heads, vocab_size=vocab, seq_len=seq_len, shared=shared)
    return cfg, w, hashlib.sha256(raw).hexdigest()


# ---- model (llama2.c model.py semantics) -----------------------------------
class LoraLinear(nn.Module):
    """y = x W^T + s * (x A^T) B^T, W frozen, A [r,in], B [out,r] trainable."""

    def __init__(self, weight, r, alpha):
        super().__init__()
        out_f, in_f = weight.shape
        self.weight = nn.Parameter(weight.clone(), requires_grad=False)
        self.lora_A = nn.Parameter(torch.zeros(r, in_f))
        self.lora_B = nn.Parameter(torch.zeros(out_f, r))
        self.scaling = alpha / r
        self.lora_enabled = True

    def forward(self, x):
        y = F.linear(x, self.weight)
        if self.lora_enabled:
            y = y + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scaling
        return y


def rmsnorm(x, w):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + RMS_EPS)).type_as(x) * w


def precompute_rope(head_dim, end):
    # llama2.c model.py precompute_freqs_cis: freq_i = theta^(-2i/head_dim)
    freqs = 1.0 / (ROPE_THETA ** (torch.arange(0, head_dim, 2)[: head_dim // 2].float() / head_dim))
    t = torch.arange(end, dtype=torch.float32)
    ang = torch.outer(t, freqs).float()
    return torch.cos(ang), torch.sin(ang)


def apply_rope(x, cos, sin):
    # x: [B, S, H, hd]; rotate ADJACENT pairs (2i, 2i+1) (llama2.c convention)
    xr = x.float().reshape(*x.shape[:-1], -1, 2)
    x0, x1 = xr[..., 0], xr[..., 1]
    c = cos[None, :, None, :]
    s = sin[None, :, None, :]
    o0 = x0 * c - x1 * s
    o1 = x0 * s + x1 * c
    return torch.stack([o0, o1], dim=-1).flatten(-2).type_as(x)


class Llama(nn.Module):
    def __init__(self, cfg, w, r, alpha):
        super().__init__()
        self.cfg = cfg
        self.n_heads = cfg["n_heads"]
        self.n_kv_heads = cfg["n_kv_heads"]
        self.head_dim = cfg["dim"] // cfg["n_heads"]
        self.tok = nn.Parameter(w["tok"].clone(), requires_grad=False)
        self.rms_final = nn.Parameter(w["rms_final"].clone(), requires_grad=False)
        self.layers = nn.ModuleList()
        for l in range(cfg["n_layers"]):
            layer = nn.Module()
            layer.rms_att = nn.Parameter(w["rms_att"][l].clone(), requires_grad=False)
            layer.rms_ffn = nn.Parameter(w["rms_ffn"][l].clone(), requires_grad=False)
            for name, _, src in MODULES:
                setattr(layer, name, LoraLinear(w[src][l], r, alpha))
            self.layers.append(layer)
        cos, sin = precompute_rope(self.head_dim, cfg["seq_len"])
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def lora_modules(self):
        for l, layer in enumerate(self.layers):
            for name, parent, _ in MODULES:
                yield l, name, parent, getattr(layer, name)

    def set_lora(self, enabled):
        for *_, m in self.lora_modules():
            m.lora_enabled = enabled

    def attention(self, layer, x, cos, sin):
        B, S, _ = x.shape
        H, KVH, hd = self.n_heads, self.n_kv_heads, self.head_dim
        q = layer.q_proj(x).view(B, S, H, hd)
        k = layer.k_proj(x).view(B, S, KVH, hd)
        v = layer.v_proj(x).view(B, S, KVH, hd)
        q = apply_rope(q, cos, sin)
        k = apply_rope(k, cos, sin)
        rep = H // KVH  # query head h uses kv head h // rep
        k = k.repeat_interleave(rep, dim=2)
        v = v.repeat_interleave(rep, dim=2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, S, hd]
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
        mask = torch.full((S, S), float("-inf")).triu(1)
        att = F.softmax(scores.float() + mask, dim=-1).type_as(q)
        out = (att @ v).transpose(1, 2).reshape(B, S, H * hd)
        return layer.o_proj(out)

    def forward(self, tokens):
        B, S = tokens.shape
        cos, sin = self.rope_cos[:S], self.rope_sin[:S]  # positions 0..S-1
        h = F.embedding(tokens, self.tok)
        for layer in self.layers:
            h = h + self.attention(layer, rmsnorm(h, layer.rms_att), cos, sin)
            n = rmsnorm(h, layer.rms_ffn)
            h = h + layer.down_proj(F.silu(layer.gate_proj(n)) * layer.up_proj(n))
        h = rmsnorm(h, self.rms_final)
        return h @ self.tok.t()  # tied classifier


# ---- oracle ----------------------------------------------------------------
def read_oracle(path):
    rec = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, *vals = line.split()
            rec[key] = vals
    tokens = [int(v) for v in rec.pop("tokens")]
    logits = {}
    for key, vals in rec.items():
        assert key.startswith("logits_pos"), key
        logits[int(key[len("logits_pos"):])] = torch.tensor([float(v) for v in vals])
    return tokens, logits


@torch.no_grad()
def check_oracle(model, oracle_path):
    model.set_lora(False)
    want, want_logits = read_oracle(oracle_path)
    assert want[0] == 1, "oracle must start with BOS"
    seq = [1]
    while len(seq) < len(want):
        logits = model(torch.tensor([seq]))[0, -1]
        seq.append(int(torch.argmax(logits)))
    assert seq == want, f"greedy mismatch:\n got  {seq}\n want {want}"
    all_logits = model(torch.tensor([want]))[0]
    worst = 0.0
    for pos, ref in want_logits.items():
        d = (all_logits[pos] - ref).abs().max().item()
        assert d < ORACLE_TOL, f"logits at pos {pos} differ by {d}"
        worst = max(worst, d)
    model.set_lora(True)
    print(f"oracle: greedy {len(want)} ids match; logits at positions "
          f"{sorted(want_logits)} match, max |diff| = {worst:.3e}")


# ---- output ----------------------------------------------------------------
def canonicalize_header(path):
    """safetensors writes __metadata__ in hash-map order, which changes from run
    to run. Rewrite the JSON header with sorted keys (offsets are relative to the
    end of the header, so the data section is untouched) so that the file is
    byte-for-byte reproducible."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + raw[8 + n:])


# ---- main ------------------------------------------------------------------
def key_of(l, name, parent, ab):
    return f"base_model.model.model.layers.{l}.{parent}.{name}.lora_{ab}.weight"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--ckpt", default=None, help="stories260K.bin (default: data/ then /work/shared)")
    args = ap.parse_args()

    torch.set_default_dtype(torch.float32)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)

    ckpt = args.ckpt or next((p for p in CKPT_CANDIDATES if os.path.exists(p)), None)
    assert ckpt, f"stories260K.bin not found in {CKPT_CANDIDATES}"
    cfg, w, sha = load_llama2c(ckpt)
    assert sha == CKPT_SHA256, f"unexpected checkpoint sha256 {sha}"
    print(f"checkpoint: {ckpt}\nconfig: {cfg}")

    model = Llama(cfg, w, LORA_R, LORA_ALPHA)
    # the file's RoPE tables must agree with the formula (llama2.c convention)
    S_max = cfg["seq_len"]
    assert (model.rope_cos - w["freq_cis_real"][:S_max]).abs().max() < 1e-5
    assert (model.rope_sin - w["freq_cis_imag"][:S_max]).abs().max() < 1e-5

    oracle = os.path.join(os.path.dirname(ckpt), "reference_greedy.txt")
    check_oracle(model, oracle)

    # LoRA init: A, B ~ N(0, std^2), layer-major, MODULES order, A then B
    g = torch.Generator().manual_seed(LORA_SEED)
    with torch.no_grad():
        for _, _, _, m in model.lora_modules():
            m.lora_A.copy_(torch.randn(m.lora_A.shape, generator=g) * LORA_INIT_STD)
            m.lora_B.copy_(torch.randn(m.lora_B.shape, generator=g) * LORA_INIT_STD)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(trainable) == 2 * len(MODULES) * cfg["n_layers"]

    # fixed batch
    gb = torch.Generator().manual_seed(BATCH_SEED)
    ids = torch.randint(0, VOCAB_DRAW, (BATCH, SEQ + 1), generator=gb)
    tokens = ids[:, :-1].contiguous()
    targets = ids[:, 1:].contiguous().clone()
    for b, t in IGNORED:
        targets[b, t] = IGNORE_INDEX

    def loss_of(logits):
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                               ignore_index=IGNORE_INDEX, reduction="mean")

    out = {"tokens": tokens.to(torch.int32), "targets": targets.to(torch.int32)}
    for l, name, parent, m in model.lora_modules():
        out[key_of(l, name, parent, "A")] = m.lora_A.detach().clone()
        out[key_of(l, name, parent, "B")] = m.lora_B.detach().clone()

    # forward + backward
    logits = model(tokens)
    loss = loss_of(logits)
    loss.backward()
    out["logits"] = logits.detach().clone()
    out["loss"] = loss.detach().reshape(1).clone()
    max_grad = 0.0
    for l, name, parent, m in model.lora_modules():
        for ab, p in (("A", m.lora_A), ("B", m.lora_B)):
            out["grad." + key_of(l, name, parent, ab)] = p.grad.detach().clone()
            max_grad = max(max_grad, p.grad.abs().max().item())
    # sanity: no LoRA gradient is identically zero (A and B both non-zero)
    for k, v in out.items():
        if k.startswith("grad."):
            assert v.abs().max() > 0, k

    # 10 AdamW steps on the same batch (first step reuses the gradient above)
    opt = torch.optim.AdamW(trainable, lr=LR, betas=(BETA1, BETA2), eps=ADAM_EPS,
                            weight_decay=WEIGHT_DECAY, foreach=False, fused=False)
    losses = []
    for step in range(STEPS):
        if step > 0:
            opt.zero_grad(set_to_none=True)
            loss = loss_of(model(tokens))
            loss.backward()
        losses.append(loss.item())
        opt.step()
    with torch.no_grad():
        final_loss = loss_of(model(tokens))
    out["losses"] = torch.tensor(losses, dtype=torch.float32)
    out["final_loss"] = final_loss.detach().reshape(1).clone()
    for l, name, parent, m in model.lora_modules():
        out["final." + key_of(l, name, parent, "A")] = m.lora_A.detach().clone()
        out["final." + key_of(l, name, parent, "B")] = m.lora_B.detach().clone()

    out = {k: v.contiguous() for k, v in out.items()}
    meta = {
        "format": "peftc golden llama lora v1",
        "generator": "tests/golden/gen_llama_lora.py",
        "checkpoint": "stories260K.bin",
        "checkpoint_sha256": sha,
        "r": str(LORA_R),
        "lora_alpha": str(LORA_ALPHA),
        "scaling": repr(LORA_ALPHA / LORA_R),
        "lora_dropout": "0.0",
        "target_modules": ",".join(n for n, _, _ in MODULES),
        "init_std": repr(LORA_INIT_STD),
        "lora_seed": str(LORA_SEED),
        "batch_seed": str(BATCH_SEED),
        "batch": str(BATCH),
        "seq": str(SEQ),
        "ignore_index": str(IGNORE_INDEX),
        "ignored_targets": ";".join(f"{b},{t}" for b, t in IGNORED),
        "rms_eps": repr(RMS_EPS),
        "rope_theta": repr(ROPE_THETA),
        "rope": "adjacent-pair (llama2.c)",
        "optimizer": "torch.optim.AdamW (decoupled weight decay)",
        "lr": repr(LR),
        "beta1": repr(BETA1),
        "beta2": repr(BETA2),
        "eps": repr(ADAM_EPS),
        "weight_decay": repr(WEIGHT_DECAY),
        "steps": str(STEPS),
        "loss_shape": "[1]",
        "torch_version": torch.__version__,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_file(out, args.out, metadata=meta)
    canonicalize_header(args.out)
    back = load_file(args.out)
    assert back.keys() == out.keys()
    assert all(torch.equal(back[k], out[k]) for k in out)
    with safe_open(args.out, "pt") as f:
        assert f.metadata() == meta

    size = os.path.getsize(args.out)
    print(f"wrote {args.out} ({size} bytes, {len(out)} tensors)")
    print(f"loss = {out['loss'].item():.7f}")
    print("losses = [" + ", ".join(f"{x:.6f}" for x in losses) + "]")
    print(f"final_loss (after {STEPS} steps) = {final_loss.item():.6f}")
    print(f"max |grad| over all lora_A/lora_B = {max_grad:.6e}")
    assert size < 1 << 20


if __name__ == "__main__":
    sys.exit(main())
