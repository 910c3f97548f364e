#!/usr/bin/env python3
"""Generate the PEFT-written LoKr fixtures for stories260K (see tests/golden/lokr.md).

Hugging Face PEFT itself (LoKrConfig, peft_type LOKR) wraps the transformers
LlamaForCausalLM built by gen_peft_adapter.build_hf (stories260K with the q/k rows
permuted to HF order): r=4, alpha=8 on q,k,v,o,gate,up,down, decompose_both=True,
rank_pattern {"q_proj": 2}, alpha_pattern {"down_proj": 4}. That gives every factor
layout PEFT has for linears:

  q_proj    r=2: lokr_w1_a [8,2] + lokr_w1_b [2,8], lokr_w2_a [8,2] + lokr_w2_b [2,8]
  k_proj    lokr_w1 [4,8], lokr_w2 [8,8]            (full-rank w2, out 32 = 4*8)
  v_proj    lokr_w1 [4,8], lokr_w2 [8,8]
  o_proj    lokr_w1 [8,8], lokr_w2 [8,8]
  gate/up   lokr_w1 [4,8], lokr_w2_a [43,4] + lokr_w2_b [4,8]   (172 = 4*43)
  down_proj lokr_w1 [8,4], lokr_w2_a [8,4] + lokr_w2_b [4,43], alpha 4

Every factor gets seeded 0.12 N(0,1) values (so dW != 0), layer-major, module order
q..down, tensors in sorted key order. Written:

  tests/data/peft_lokr_stories260k/     PEFT's save_pretrained with the q/k lokr_w2
                                        (lokr_w2_a) rows in llama2.c order, plus
                                        expected.safetensors (ours): a fixed batch [2,16]
                                        with two ignored targets, PEFT's logits and loss,
                                        the gradient of every LoKr tensor (l2c rows),
                                        merge_and_unload's weights of layers 0 and 4 (l2c
                                        rows) and the merged model's logits
  tests/data/peft_lokr_stories260k_hf/  PEFT's save_pretrained untouched (HF row order), for
                                        `--hf-qk-rows`

Row orders: dW's output row i*b+j is w1 row i times w2 row j. HF's q/k order permutes the
rows inside each head (size 8 here); with b = 8 for q (64 = 8*8) and k (32 = 4*8) every head
lies inside one block of b rows, so the HF order is exactly a permutation of w2's rows (w2_a's
when low rank) and w1 is untouched. The PEFT numbers are therefore PEFT's own, on the HF model,
and they are cross-checked against gen_llama_lora's llama2.c-convention model with LoKr applied
by hand (dW = kron(w1, w2) * alpha/r) from the l2c-order file.

Usage (from the repository root):
    /work/venv-golden/bin/python tests/golden/gen_peft_lokr.py [--out-dir tests/data] [--ckpt PATH]
"""
import os
import sys

PIN_HASH_SEED = True  # run as a script: peft_fixture_common re-executes it with PYTHONHASHSEED=0
import peft_fixture_common as C  # noqa: E402  (HF builder, row permutations, batch, loss, helpers)

import json  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import gen_llama_lora as G  # noqa: E402
from peft import LoKrConfig, get_peft_model  # noqa: E402
from peft.tuners.lokr.layer import factorization  # noqa: E402

DIR_NAME = "peft_lokr_stories260k"
HF_DIR_NAME = "peft_lokr_stories260k_hf"
TARGETS = [m[0] for m in G.MODULES]
R, ALPHA = 4, 8
RANK_PATTERN = {"q_proj": 2}
ALPHA_PATTERN = {"down_proj": 4}
SEED, STD = 2027, 0.12
HEAD_DIM = 8
TOL = C.TOL
SIZE_LIMIT = 600 * 1024
ROW_TENSORS = ("lokr_w2", "lokr_w2_a")  # the tensors whose rows follow q/k's row order

# the factorization table checked here and in tests/unit/test_peft_lokr.c
FACTOR_CASES = [(4096, -1), (3072, -1), (1024, -1), (768, -1), (2304, -1), (11008, -1), (127, -1),
                (3072, 4), (1024, 4), (256, -1), (128, -1), (128, 4), (64, -1), (32, -1), (172, -1),
                (3072, 5), (64, 16), (172, 2), (1, -1), (12, -3)]


def lokr_tensors(pm, n_layers):
    """(layer, name, parent, tensor name, Parameter) layer-major, module order, tensors sorted."""
    layers = pm.base_model.model.model.layers
    for l in range(n_layers):
        for name, parent, _ in G.MODULES:
            mod = getattr(getattr(layers[l], parent), name)
            for t in sorted(mod.adapter_layer_names):
                d = getattr(mod, t)
                if "default" in d:
                    yield l, name, parent, t, d["default"]


def key_of(l, parent, name, t):
    return f"base_model.model.model.layers.{l}.{parent}.{name}.{t}"


def to_l2c(cfg, name, t, x):
    """q/k rows of w2 (w2_a) HF -> llama2.c: the per-head permutation on blocks of HEAD_DIM rows."""
    if C.qk_heads(cfg, name) and t in ROW_TENSORS:
        assert x.shape[0] % HEAD_DIM == 0, (name, t, x.shape)
        return C.permute_to_l2c(x, x.shape[0] // HEAD_DIM)
    return x


def to_hf(cfg, name, t, x):
    if C.qk_heads(cfg, name) and t in ROW_TENSORS:
        return C.permute_to_hf(x, x.shape[0] // HEAD_DIM)
    return x


class LoKrHand(nn.Module):
    """LoKr by hand on a gen_llama_lora.LoraLinear (LoRA off): y = x W^T + x (kron(w1, w2) s)^T."""

    def __init__(self, base, tensors, scale):
        super().__init__()
        self.base, self.scale = base, scale
        self.p = nn.ParameterDict({k: nn.Parameter(v.detach().clone()) for k, v in tensors.items()})

    def factor(self, i):
        p = self.p
        return p[f"lokr_w{i}"] if f"lokr_w{i}" in p else p[f"lokr_w{i}_a"] @ p[f"lokr_w{i}_b"]

    def forward(self, x):
        dw = torch.kron(self.factor(1), self.factor(2)) * self.scale
        return self.base(x) + F.linear(x, dw)


def main():
    args, ckpt, cfg, w, ck_sha = C.start(__doc__)
    print("factorization:", " ".join(f"{d},{f}->{factorization(d, f)}" for d, f in FACTOR_CASES))
    assert cfg["dim"] // cfg["n_heads"] == HEAD_DIM
    n_layers = cfg["n_layers"]
    ids, tokens, targets = C.make_batch()

    lcfg = LoKrConfig(task_type="CAUSAL_LM", target_modules=TARGETS, r=R, alpha=ALPHA, decompose_both=True,
                      rank_pattern=dict(RANK_PATTERN), alpha_pattern=dict(ALPHA_PATTERN))
    pm = get_peft_model(C.build_hf(cfg, w), lcfg)
    pm.eval()
    g = torch.Generator().manual_seed(SEED)
    hf, l2c, scale = {}, {}, {}
    with torch.no_grad():
        for l, name, parent, t, p in lokr_tensors(pm, n_layers):
            p.copy_(STD * torch.randn(p.shape, generator=g))
            k = key_of(l, parent, name, t)
            hf[k] = p.detach().clone()
            l2c[k] = to_l2c(cfg, name, t, hf[k])
    layers = pm.base_model.model.model.layers
    for l in range(n_layers):
        for name, parent, _ in G.MODULES:
            scale[(l, name)] = getattr(getattr(layers[l], parent), name).scaling["default"]
    shapes = {k.split("layers.0.")[1]: list(v.shape) for k, v in hf.items() if ".layers.0." in k}
    print("layer 0 tensors:", json.dumps(shapes))
    trainable = [k for k, p in pm.named_parameters() if p.requires_grad]
    assert len(trainable) == len(hf), (len(trainable), len(hf))

    out_dir = os.path.join(args.out_dir, DIR_NAME)
    hf_dir = os.path.join(args.out_dir, HF_DIR_NAME)
    params = [(key_of(l, parent, name, t), p) for l, name, parent, t, p in lokr_tensors(pm, n_layers)]
    C.save_pretrained_as(pm, hf_dir, params, hf, hf)
    os.remove(os.path.join(hf_dir, "README.md"))
    C.save_pretrained_as(pm, out_dir, params, l2c, hf)
    os.remove(os.path.join(out_dir, "README.md"))

    out, logits, loss = C.peft_forward_backward(pm, tokens, targets)
    for l, name, parent, t, p in lokr_tensors(pm, n_layers):
        out["grad." + key_of(l, parent, name, t)] = to_l2c(cfg, name, t, p.grad.detach().clone())
    C.check_nonzero_grads(out)
    print(f"LoKr: loss {loss.item():.7f}")
    C.check_moves_logits(cfg, w, tokens, out["logits"], "LoKr")

    # the llama2.c-convention model with LoKr by hand, from the l2c-order tensors
    ref = C.hand_llama(cfg, w)
    for l, layer in enumerate(ref.layers):
        for name, parent, _ in G.MODULES:
            pre = key_of(l, parent, name, "")
            ts = {k[len(pre):]: v for k, v in l2c.items() if k.startswith(pre)}
            setattr(layer, name, LoKrHand(getattr(layer, name), ts, scale[(l, name)]))
    ref_logits = ref(tokens.long())
    ref_loss = C.loss_of(ref_logits, targets)
    ref_loss.backward()
    d_logits = (ref_logits - logits).abs().max().item()
    d_grad, gmax = 0.0, 0.0
    for l, layer in enumerate(ref.layers):
        for name, parent, _ in G.MODULES:
            for t, p in getattr(layer, name).p.items():
                want = out["grad." + key_of(l, parent, name, t)]
                d_grad = max(d_grad, (p.grad - want).abs().max().item())
                gmax = max(gmax, want.abs().max().item())
    print(f"  PEFT vs llama2.c-convention model + hand LoKr (l2c rows): logits max |diff| {d_logits:.3e}, "
          f"loss |diff| {abs(ref_loss.item() - loss.item()):.3e}, grads max |diff| {d_grad:.3e} "
          f"(max |grad| {gmax:.3e})")
    assert d_logits <= TOL and d_grad <= TOL * max(1.0, gmax)

    merged_model, d_merge = C.merge_and_unload(pm, tokens, out)
    d_direct = 0.0
    for l, name, parent, src, key, wt in C.merged_weights(merged_model, cfg):
        hand = getattr(ref.layers[l], name)
        with torch.no_grad():
            dw = torch.kron(hand.factor(1), hand.factor(2)) * hand.scale
        d_direct = max(d_direct, (wt - (w[src][l] + dw)).abs().max().item())
        out[key] = wt
    print(f"  merged weights vs W + kron(w1, w2) s in l2c order: max |diff| {d_direct:.3e}")
    assert d_direct < 1e-6

    meta = dict(C.batch_meta("gen_peft_lokr.py", ck_sha),
                peft_type="LOKR", r=str(R), alpha=str(ALPHA), decompose_both="true",
                rank_pattern=json.dumps(RANK_PATTERN), alpha_pattern=json.dumps(ALPHA_PATTERN),
                factor_init=f"{STD} * randn, Generator().manual_seed({SEED}), layer-major, q..down, sorted tensors",
                adapter_row_order="llama2.c (q/k lokr_w2 / lokr_w2_a rows un-permuted per head)",
                merged_layers=",".join(map(str, C.MERGED_LAYERS)),
                logits_from="PEFT LlamaForCausalLM (permuted q/k, HF-order factors), unmerged")
    C.write_expected(os.path.join(out_dir, "expected.safetensors"), out, meta)

    # what PEFT wrote, and that it loads back (both orders)
    for d, want in ((out_dir, l2c), (hf_dir, hf)):
        c = C.check_saved(d, want)
        assert c["peft_type"] == "LOKR" and sorted(c["target_modules"]) == sorted(TARGETS)
        assert c["rank_pattern"] == RANK_PATTERN and c["alpha_pattern"] == ALPHA_PATTERN
    d_load = (C.reload_logits(cfg, w, hf_dir, tokens) - out["logits"]).abs().max().item()
    print(f"  PeftModel.from_pretrained({HF_DIR_NAME}) vs saved logits: max |diff| {d_load:.3e}")
    assert d_load < 1e-6
    for d in (out_dir, hf_dir):
        C.list_dir(d, SIZE_LIMIT)
    print("summary: " + json.dumps({"loss": loss.item(), "hand": d_logits, "grad": d_grad, "merge": d_merge,
                                    "direct": d_direct, "load": d_load}, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
