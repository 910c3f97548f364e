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
"""
import os
import sys

PIN_HASH_SEED = True  # run as a script: peft_fixture_common re-executes it with PYTHONHASHSEED=0
import peft_fixture_common as C  # noqa: E402  (HF builder, row permutations, batch, loss, helpers)

import json  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import gen_llama_lora as G  # noqa: E402  (checkpoint loader + llama2.c-convention model)
from peft import LoraConfig, get_peft_model  # noqa: E402

DIR_NAME = "peft_dora_stories260k"
R, ALPHA = 4, 8
SCALE = ALPHA / R
TARGETS = [n for n, _, _ in G.MODULES]  # q,k,v,o,gate,up,down
INIT_SEED, AB_STD, M_STD = 2027, 0.05, 0.05
TOL = C.TOL
SIZE_LIMIT = 800 * 1024
MAG = "lora_magnitude_vector"


def key_of(l, name, parent, tensor):
    return f"base_model.model.model.layers.{l}.{parent}.{name}.{tensor}"


def rows_to_l2c(cfg, name, t):
    """output rows (lora_B [out,r], magnitude [out]) of q/k: HF -> llama2.c order"""
    h = C.qk_heads(cfg, name)
    if not h:
        return t
    return C.permute_to_l2c(t.reshape(t.shape[0], -1), h).reshape(t.shape)


def rows_to_hf(cfg, name, t):
    h = C.qk_heads(cfg, name)
    if not h:
        return t
    return C.permute_to_hf(t.reshape(t.shape[0], -1), h).reshape(t.shape)


def dora_params(pm, n_layers):
    """(layer, name, parent, {tensor: Parameter}) in gen_llama_lora's MODULES order"""
    for l, name, parent, mod in C.peft_lora_modules(pm, n_layers):
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
    ref = C.hand_llama(cfg, w)
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
    args, ckpt, cfg, w, ck_sha = C.start(__doc__)
    n_layers = cfg["n_layers"]
    src = {n: s for n, _, s in G.MODULES}
    ids, tokens, targets = C.make_batch()

    pm = get_peft_model(C.build_hf(cfg, w), LoraConfig(
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
    params = [(key_of(l, name, parent, t), v) for l, name, parent, p in dora_params(pm, n_layers) for t, v in p.items()]
    C.save_pretrained_as(pm, out_dir, params, l2c, hf)  # llama2.c rows in the file, HF rows in the model

    out, logits, loss = C.peft_forward_backward(pm, tokens, targets)
    peft_grads = {}
    for l, name, parent, p in dora_params(pm, n_layers):
        for t, v in p.items():
            k = key_of(l, name, parent, t)
            gr = v.grad.detach().clone()
            peft_grads[k] = rows_to_l2c(cfg, name, gr) if t != "lora_A.weight" else gr
            out["grad." + k] = peft_grads[k]
    C.check_nonzero_grads(out)
    print(f"DoRA: loss {loss.item():.7f}")

    # the llama2.c-convention model with DoRA by hand (l2c rows)
    ref = hand_model(cfg, w, l2c, detach=True)
    ref_logits = ref(tokens.long())
    ref_loss = C.loss_of(ref_logits, targets)
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
    C.loss_of(ref_nd(tokens.long()), targets).backward()
    d_nodetach = max_grad_diff(hand_grads(ref_nd), peft_grads)
    print(f"  (the norm not detached: gradients differ by up to {d_nodetach:.3e})")
    assert d_nodetach > 100 * TOL * max(1.0, gmax), d_nodetach
    C.check_moves_logits(cfg, w, tokens, out["logits"], "DoRA")

    merged_model, d_merge = C.merge_and_unload(pm, tokens, out)
    d_direct = 0.0
    for l, name, parent, _, key, wt in C.merged_weights(merged_model, cfg):
        k = lambda t: l2c[key_of(l, name, parent, t)]  # noqa: E731
        wsum = w[src[name]][l] + SCALE * (k("lora_B.weight") @ k("lora_A.weight"))
        want = (k(MAG) / torch.linalg.norm(wsum, dim=1)).unsqueeze(1) * wsum
        d_direct = max(d_direct, (wt - want).abs().max().item())
        out[key] = wt
    print(f"  merged weights vs (m / ||W + dW||) (W + dW) in l2c rows: max |diff| {d_direct:.3e}")
    assert d_direct < 1e-6, d_direct

    meta = dict(
        C.batch_meta("gen_peft_dora.py", ck_sha),
        peft_type="LORA", use_dora="true", r=str(R), lora_alpha=str(ALPHA), lora_dropout="0.0",
        target_modules=",".join(TARGETS),
        init=f"A, B = {AB_STD} * randn, m = ||W + s BA||_row * (1 + {M_STD} * randn), "
             f"Generator().manual_seed({INIT_SEED}), layer-major, MODULES order, A, B, m",
        **C.l2c_rows_meta("q/k lora_B and lora_magnitude_vector rows un-permuted",
                          "PEFT LlamaForCausalLM (permuted q/k, HF-order adapter), unmerged, eval mode"))
    C.write_expected(os.path.join(out_dir, "expected.safetensors"), out, meta)

    # what PEFT wrote: keys (the magnitude without ".weight"), values, config; and it loads back
    c = C.check_saved(out_dir, l2c)
    assert c["peft_type"] == "LORA" and c["use_dora"] is True and c["r"] == R and c["lora_alpha"] == ALPHA
    assert sorted(c["target_modules"]) == sorted(TARGETS)

    def to_hf_rows(pm2):  # the file has llama2.c rows: back to HF rows to run it in HF
        for l, name, parent, p in dora_params(pm2, n_layers):
            for t, v in p.items():
                k = key_of(l, name, parent, t)
                assert torch.equal(v, l2c[k]), k
                v.copy_(rows_to_hf(cfg, name, v.detach().clone()) if t != "lora_A.weight" else v.detach().clone())
    d_load = (C.reload_logits(cfg, w, out_dir, tokens, to_hf_rows) - out["logits"]).abs().max().item()
    print(f"  PeftModel.from_pretrained (q/k rows re-permuted to HF) vs saved logits: max |diff| {d_load:.3e}")
    assert d_load < 1e-6
    C.list_dir(out_dir, SIZE_LIMIT)
    print("summary dora: " + json.dumps({"loss": loss.item(), "diffs": {
        "init": d_init, "hand_logits": d_logits, "hand_loss": d_loss, "hand_grad": d_grad,
        "no_detach_grad": d_nodetach, "merge": d_merge, "direct": d_direct, "load": d_load}}, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
