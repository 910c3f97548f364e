#!/usr/bin/env python3
"""Generate the PEFT-written DoRA fixture for stories260K.

Hugging Face PEFT itself wraps the transformers LlamaForCausalLM built by
gen_peft_adapter.build_hf (stories260K with the q/k rows permuted to HF order) with
LoraConfig(r=4, lora_alpha=8, use_dora=True, lora_dropout=0) on q, k, v, o, gate, up and
down, and writes, with its own save_pretrained:

  tests/data/peft_dora_stories260k/   adapter_config.json, adapter_model.safetensors:
                                      lora_A = 0.05 N(0,1), lora_B = 0.05 N(0,1) and
                                      lora_magnitude_vector = ||W + s BA||_row * (1 + 0.2 N(0,1))
                                      (so m differs from the row norms: f != 1); the rows of
                                      q_proj/k_proj lora_B and magnitudes stored in llama2.c
                                      row order
                                      expected.safetensors (ours): a fixed batch [2,16] with
                                      two ignored targets, PEFT's logits and loss (unmerged),
                                      the gradient of every adapter tensor (llama2.c rows),
                                      merge_and_unload's weights of layers 0 and 4 (llama2.c
                                      rows) and the merged model's logits

Before writing, the script checks: PEFT's own magnitude init equals the row norms of W (B = 0);
PEFT matches a llama2.c-convention model with DoRA written by hand (norm detached) on logits,
loss and every gradient; the gradients with the norm NOT detached differ clearly (so the
fixture's gradients prove the detach); merge_and_unload's weights equal
(m / ||W + dW||_row) (W + dW) and its logits the unmerged ones; the saved file loads back
with PeftModel.from_pretrained. See tests/golden/dora.md.

Usage (from the repository root):
    python3 tests/golden/gen_peft_dora.py [--out-dir tests/data] [--ckpt PATH]

Needs: torch, numpy, safetensors, transformers, peft. CPU, fp32, 1 thread.
"""
import os
import sys

# adapter_config.json lists target_modules from a Python set (hash order): pin the seed.
if __name__ == "__main__" and os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)
# PEFT looks the base model name up on the Hub when saving; there is nothing to find.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import copy
import json
import shutil
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open

warnings.filterwarnings("ignore", category=FutureWarning)
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_llama_lora as G  # noqa: E402  (checkpoint loader + llama2.c-convention model)
import gen_peft_adapter as A  # noqa: E402  (HF builder + q/k row permutations)
import gen_peft_ia3_prompt as I  # noqa: E402  (batch constants, loss, listing helpers)

import peft  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402

DEFAULT_OUT_DIR = os.path.join(G.REPO, "tests", "data")
DIR_NAME = "peft_dora_stories260k"
R, ALPHA = 4, 8
SCALE = ALPHA / R
TARGETS = A.TARGETS
INIT_SEED, AB_STD, M_STD = 2027, 0.05, 0.05
TOL = 1e-4
SIZE_LIMIT = 800 * 1024
MAG = "lora_magnitude_vector"


def key_of(l, name, parent, tensor):
    return f"base_model.model.model.layers.{l}.{parent}.{name}.{tensor}"


def rows_to_l2c(cfg, name, t):
    """output rows (lora_B [out,r], magnitude [out]) of q/k: HF -> llama2.c order"""
    h = A.qk_heads(cfg, name)
    if not h:
        return t
    return A.permute_to_l2c(t.reshape(t.shape[0], -1), h).reshape(t.shape)


def rows_to_hf(cfg, name, t):
    h = A.qk_heads(cfg, name)
    if not h:
        return t
    return A.permute_to_hf(t.reshape(t.shape[0], -1), h).reshape(t.shape)


def dora_params(pm, n_layers):
    """(layer, name, parent, {tensor: Parameter}) in gen_llama_lora's MODULES order"""
    for l, name, parent, mod in A.peft_lora_modules(pm, n_layers):
        yield l, name, parent, {"lora_A.weight": mod.lora_A["default"].weight,
                                "lora_B.weight": mod.lora_B["default"].weight,
                                MAG: mod.lora_magnitude_vector["default"].weight}


class DoraHand(nn.Module):
    """DoRA written by hand on a frozen W [out,in] (llama2.c rows):
    y = m / ||W + s B A||_row * (x W^T + s x A^T B^T), the norm detached (or not, to show
    that the detach changes the gradients)."""

    def __init__(self, weight, a, b, m, detach=True):
        super().__init__()
        self.weight = weight
        self.A, self.B, self.m = (nn.Parameter(t.detach().clone()) for t in (a, b, m))
        self.detach = detach

    def forward(self, x):
        norm = torch.linalg.norm(self.weight + SCALE * (self.B @ self.A), dim=1)
        f = self.m / (norm.detach() if self.detach else norm)
        return f * (F.linear(x, self.weight) + SCALE * F.linear(F.linear(x, self.A), self.B))


def hand_model(cfg, w, vals, detach):
    ref = G.Llama(cfg, w, R, ALPHA)
    ref.set_lora(False)
    src = {n: s for n, _, s in G.MODULES}
    for l, layer in enumerate(ref.layers):
        for name, parent, _ in G.MODULES:
            k = lambda t: vals[key_of(l, name, parent, t)]  # noqa: E731
            setattr(layer, name, DoraHand(w[src[name]][l], k("lora_A.weight"), k("lora_B.weight"), k(MAG), detach))
    return ref


def hand_grads(ref):
    out = {}
    for l, layer in enumerate(ref.layers):
        for name, parent, _ in G.MODULES:
            mod = getattr(layer, name)
            for t, p in (("lora_A.weight", mod.A), ("lora_B.weight", mod.B), (MAG, mod.m)):
                out[key_of(l, name, parent, t)] = p.grad.detach().clone()
    return out


def max_grad_diff(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", default=DEFAULT_OUT_DIR)
    ap.add_argument("--ckpt", default=None)
    args = ap.parse_args()

    torch.set_default_dtype(torch.float32)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)

    ckpt = args.ckpt or next((p for p in G.CKPT_CANDIDATES if os.path.exists(p)), None)
    assert ckpt, f"stories260K.bin not found in {G.CKPT_CANDIDATES}"
    cfg, w, ck_sha = G.load_llama2c(ckpt)
    assert ck_sha == G.CKPT_SHA256, ck_sha
    print(f"checkpoint {ckpt}; torch {torch.__version__}, transformers {transformers.__version__}, "
          f"peft {peft.__version__}")
    n_layers = cfg["n_layers"]
    src = {n: s for n, _, s in G.MODULES}

    gb = torch.Generator().manual_seed(I.BATCH_SEED)
    ids = torch.randint(0, I.VOCAB_DRAW, (I.BATCH, I.SEQ + 1), generator=gb)
    tokens = ids[:, :-1].contiguous().to(torch.int32)
    targets = ids[:, 1:].contiguous().clone()
    for b, t in I.IGNORED:
        targets[b, t] = I.IGNORE_INDEX
    targets = targets.to(torch.int32)

    pm = get_peft_model(A.build_hf(cfg, w), LoraConfig(
        task_type="CAUSAL_LM", r=R, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=TARGETS, use_dora=True))
    pm.eval()

    # PEFT's own init: B = 0, so m = the row norms of W (in HF rows; l2c rows after permuting)
    d_init = 0.0
    for l, name, parent, p in dora_params(pm, n_layers):
        assert torch.equal(p["lora_B.weight"], torch.zeros_like(p["lora_B.weight"]))
        m_l2c = rows_to_l2c(cfg, name, p[MAG].detach())
        d_init = max(d_init, (m_l2c - torch.linalg.norm(w[src[name]][l], dim=1)).abs().max().item())
    print(f"DoRA: PEFT's magnitude init vs the row norms of W (llama2.c rows): max |diff| {d_init:.3e}")
    assert d_init < 1e-5, d_init

    # A, B random, m = ||W + s BA|| (1 + 0.2 N): draws layer-major in MODULES order, A, B, m
    g = torch.Generator().manual_seed(INIT_SEED)
    hf, l2c = {}, {}
    with torch.no_grad():
        for l, name, parent, p in dora_params(pm, n_layers):
            p["lora_A.weight"].copy_(AB_STD * torch.randn(p["lora_A.weight"].shape, generator=g))
            p["lora_B.weight"].copy_(AB_STD * torch.randn(p["lora_B.weight"].shape, generator=g))
            wt = pm.base_model.model.model.layers[l]
            W = getattr(getattr(wt, parent), name).base_layer.weight
            norm = torch.linalg.norm(W + SCALE * (p["lora_B.weight"] @ p["lora_A.weight"]), dim=1)
            p[MAG].copy_(norm * (1.0 + M_STD * torch.randn(norm.shape, generator=g)))
            for t, v in p.items():
                k = key_of(l, name, parent, t)
                hf[k] = v.detach().clone()
                l2c[k] = rows_to_l2c(cfg, name, hf[k]) if t != "lora_A.weight" else hf[k].clone()
    assert len(hf) == 3 * 7 * n_layers
    trainable = sorted(k for k, p in pm.named_parameters() if p.requires_grad)
    assert len(trainable) == 3 * 7 * n_layers, trainable

    out_dir = os.path.join(args.out_dir, DIR_NAME)
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    with torch.no_grad():  # save llama2.c rows, then restore HF rows
        for l, name, parent, p in dora_params(pm, n_layers):
            for t, v in p.items():
                v.copy_(l2c[key_of(l, name, parent, t)])
    pm.save_pretrained(out_dir)
    with torch.no_grad():
        for l, name, parent, p in dora_params(pm, n_layers):
            for t, v in p.items():
                v.copy_(hf[key_of(l, name, parent, t)])

    # forward + backward through PEFT (unmerged)
    pm.zero_grad(set_to_none=True)
    logits = pm(input_ids=tokens.long(), use_cache=False).logits.float()
    loss = I.loss_of(logits, targets)
    loss.backward()
    out = {"tokens": tokens, "targets": targets, "logits": logits.detach().clone(),
           "loss": loss.detach().reshape(1).clone()}
    peft_grads = {}
    for l, name, parent, p in dora_params(pm, n_layers):
        for t, v in p.items():
            k = key_of(l, name, parent, t)
            gr = v.grad.detach().clone()
            peft_grads[k] = rows_to_l2c(cfg, name, gr) if t != "lora_A.weight" else gr
            out["grad." + k] = peft_grads[k]
    I.check_nonzero_grads(out)
    print(f"DoRA: loss {loss.item():.7f}")

    # the llama2.c-convention model with DoRA by hand (l2c rows)
    ref = hand_model(cfg, w, l2c, detach=True)
    ref_logits = ref(tokens.long())
    ref_loss = I.loss_of(ref_logits, targets)
    ref_loss.backward()
    d_logits = (ref_logits - logits).abs().max().item()
    d_loss = abs(ref_loss.item() - loss.item())
    hg = hand_grads(ref)
    d_grad = max_grad_diff(hg, peft_grads)
    gmax = max(v.abs().max().item() for v in peft_grads.values())
    print(f"  PEFT vs llama2.c-convention model + hand DoRA: logits max |diff| {d_logits:.3e}, loss |diff| "
          f"{d_loss:.3e}, gradients max |diff| {d_grad:.3e} (max |grad| {gmax:.3e})")
    assert d_logits <= TOL and d_loss <= 1e-5 and d_grad <= TOL * max(1.0, gmax)
    ref_nd = hand_model(cfg, w, l2c, detach=False)
    I.loss_of(ref_nd(tokens.long()), targets).backward()
    d_nodetach = max_grad_diff(hand_grads(ref_nd), peft_grads)
    print(f"  (the norm not detached: gradients differ by up to {d_nodetach:.3e})")
    assert d_nodetach > 100 * TOL * max(1.0, gmax), d_nodetach
    with torch.no_grad():
        base_logits = A.hf_logits(A.build_hf(cfg, w), tokens)
    d_dora = (base_logits - out["logits"]).abs().max().item()
    print(f"  (DoRA moves the logits by up to {d_dora:.3f})")
    assert d_dora > 1e-2

    # merge_and_unload on a deep copy
    merged_model = copy.deepcopy(pm).merge_and_unload()
    merged_model.eval()
    merged_logits = A.hf_logits(merged_model, tokens)
    d_merge = (merged_logits - out["logits"]).abs().max().item()
    print(f"  merged vs unmerged PEFT logits: max |diff| {d_merge:.3e}")
    assert d_merge <= TOL, d_merge
    out["merged_logits"] = merged_logits
    d_direct = 0.0
    for l in A.MERGED_LAYERS:
        for name, parent, _ in G.MODULES:
            wt = getattr(getattr(merged_model.model.layers[l], parent), name).weight.detach().clone()
            wt = rows_to_l2c(cfg, name, wt)
            k = lambda t: l2c[key_of(l, name, parent, t)]  # noqa: E731
            wsum = w[src[name]][l] + SCALE * (k("lora_B.weight") @ k("lora_A.weight"))
            want = (k(MAG) / torch.linalg.norm(wsum, dim=1)).unsqueeze(1) * wsum
            d_direct = max(d_direct, (wt - want).abs().max().item())
            out[f"merged.model.layers.{l}.{parent}.{name}.weight"] = wt
    print(f"  merged weights vs (m / ||W + dW||) (W + dW) in l2c rows: max |diff| {d_direct:.3e}")
    assert d_direct < 1e-6, d_direct

    meta = {
        "format": "peftc peft fixture v1", "generator": "tests/golden/gen_peft_dora.py",
        "checkpoint": "stories260K.bin", "checkpoint_sha256": ck_sha,
        "batch_seed": str(I.BATCH_SEED), "batch": str(I.BATCH), "seq": str(I.SEQ),
        "ignore_index": str(I.IGNORE_INDEX), "ignored_targets": ";".join(f"{b},{t}" for b, t in I.IGNORED),
        "loss": "mean cross-entropy of logits vs targets over the non-ignored targets",
        "torch_version": torch.__version__, "transformers_version": transformers.__version__,
        "peft_version": peft.__version__,
        "peft_type": "LORA", "use_dora": "true", "r": str(R), "lora_alpha": str(ALPHA), "lora_dropout": "0.0",
        "target_modules": ",".join(TARGETS),
        "init": f"A, B = {AB_STD} * randn, m = ||W + s BA||_row * (1 + {M_STD} * randn), "
                f"Generator().manual_seed({INIT_SEED}), layer-major, MODULES order, A, B, m",
        "adapter_row_order": "llama2.c (q/k lora_B and lora_magnitude_vector rows un-permuted)",
        "grad_row_order": "llama2.c (same as the stored tensors)",
        "merged_row_order": "llama2.c (q/k rows un-permuted from HF)",
        "merged_layers": ",".join(map(str, A.MERGED_LAYERS)),
        "logits_from": "PEFT LlamaForCausalLM (permuted q/k, HF-order adapter), unmerged, eval mode",
    }
    A.write_expected(os.path.join(out_dir, "expected.safetensors"), out, meta)

    # what PEFT wrote: keys (the magnitude without ".weight"), values, config; and it loads back
    with safe_open(os.path.join(out_dir, "adapter_model.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "pt"}, f.metadata()
        keys = sorted(f.keys())
        assert keys == sorted(l2c), keys
        for k in keys:
            assert torch.equal(f.get_tensor(k), l2c[k]), k
    with open(os.path.join(out_dir, "adapter_config.json")) as f:
        c = json.load(f)
    assert c["peft_type"] == "LORA" and c["use_dora"] is True and c["r"] == R and c["lora_alpha"] == ALPHA
    assert sorted(c["target_modules"]) == sorted(TARGETS)
    pm2 = PeftModel.from_pretrained(A.build_hf(cfg, w), out_dir)
    pm2.eval()
    with torch.no_grad():  # the file has llama2.c rows: back to HF rows to run it in HF
        for l, name, parent, p in dora_params(pm2, n_layers):
            for t, v in p.items():
                k = key_of(l, name, parent, t)
                assert torch.equal(v, l2c[k]), k
                v.copy_(rows_to_hf(cfg, name, v.detach().clone()) if t != "lora_A.weight" else v.detach().clone())
    d_load = (A.hf_logits(pm2, tokens) - out["logits"]).abs().max().item()
    print(f"  PeftModel.from_pretrained (q/k rows re-permuted to HF) vs saved logits: max |diff| {d_load:.3e}")
    assert d_load < 1e-6
    print(f"{out_dir}:")
    for fn in sorted(os.listdir(out_dir)):
        print(f"  {fn:28s} {os.path.getsize(os.path.join(out_dir, fn)):8d}  {A.sha(os.path.join(out_dir, fn))}")
    assert I.dir_size(out_dir) < SIZE_LIMIT, I.dir_size(out_dir)
    print("summary dora: " + json.dumps({"loss": loss.item(), "diffs": {
        "init": d_init, "hand_logits": d_logits, "hand_loss": d_loss, "hand_grad": d_grad,
        "no_detach_grad": d_nodetach, "merge": d_merge, "direct": d_direct, "load": d_load}}, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
