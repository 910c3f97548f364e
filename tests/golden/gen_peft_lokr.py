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

Needs: torch, safetensors, transformers, peft (0.21). CPU, fp32, 1 thread.
"""
import os
import sys

if __name__ == "__main__" and os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)
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
import gen_llama_lora as G  # noqa: E402
import gen_peft_adapter as A  # noqa: E402
import gen_peft_ia3_prompt as P  # noqa: E402  (batch, loss, helpers)

import peft  # noqa: E402
import transformers  # noqa: E402
from peft import LoKrConfig, PeftModel, get_peft_model  # noqa: E402
from peft.tuners.lokr.layer import factorization  # noqa: E402

DEFAULT_OUT_DIR = os.path.join(G.REPO, "tests", "data")
DIR_NAME = "peft_lokr_stories260k"
HF_DIR_NAME = "peft_lokr_stories260k_hf"
TARGETS = [m[0] for m in G.MODULES]
R, ALPHA = 4, 8
RANK_PATTERN = {"q_proj": 2}
ALPHA_PATTERN = {"down_proj": 4}
SEED, STD = 2027, 0.12
HEAD_DIM = 8
TOL = 1e-4
MERGED_LAYERS = (0, 4)
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
    if A.qk_heads(cfg, name) and t in ROW_TENSORS:
        assert x.shape[0] % HEAD_DIM == 0, (name, t, x.shape)
        return A.permute_to_l2c(x, x.shape[0] // HEAD_DIM)
    return x


def to_hf(cfg, name, t, x):
    if A.qk_heads(cfg, name) and t in ROW_TENSORS:
        return A.permute_to_hf(x, x.shape[0] // HEAD_DIM)
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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", default=DEFAULT_OUT_DIR)
    ap.add_argument("--ckpt", default=None)
    args = ap.parse_args()
    torch.set_default_dtype(torch.float32)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)

    print("factorization:", " ".join(f"{d},{f}->{factorization(d, f)}" for d, f in FACTOR_CASES))
    ckpt = args.ckpt or next((p for p in G.CKPT_CANDIDATES if os.path.exists(p)), None)
    assert ckpt, f"stories260K.bin not found in {G.CKPT_CANDIDATES}"
    cfg, w, ck_sha = G.load_llama2c(ckpt)
    assert ck_sha == G.CKPT_SHA256, ck_sha
    assert cfg["dim"] // cfg["n_heads"] == HEAD_DIM
    print(f"checkpoint {ckpt}; torch {torch.__version__}, transformers {transformers.__version__}, "
          f"peft {peft.__version__}")
    n_layers = cfg["n_layers"]

    gb = torch.Generator().manual_seed(P.BATCH_SEED)
    ids = torch.randint(0, P.VOCAB_DRAW, (P.BATCH, P.SEQ + 1), generator=gb)
    tokens = ids[:, :-1].contiguous().to(torch.int32)
    targets = ids[:, 1:].contiguous().clone()
    for b, t in P.IGNORED:
        targets[b, t] = P.IGNORE_INDEX
    targets = targets.to(torch.int32)

    lcfg = LoKrConfig(task_type="CAUSAL_LM", target_modules=TARGETS, r=R, alpha=ALPHA, decompose_both=True,
                      rank_pattern=dict(RANK_PATTERN), alpha_pattern=dict(ALPHA_PATTERN))
    pm = get_peft_model(A.build_hf(cfg, w), lcfg)
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
    for d in (out_dir, hf_dir):
        if os.path.isdir(d):
            shutil.rmtree(d)
    pm.save_pretrained(hf_dir)
    os.remove(os.path.join(hf_dir, "README.md"))
    with torch.no_grad():
        for l, name, parent, t, p in lokr_tensors(pm, n_layers):
            p.copy_(l2c[key_of(l, parent, name, t)])
    pm.save_pretrained(out_dir)
    os.remove(os.path.join(out_dir, "README.md"))
    with torch.no_grad():
        for l, name, parent, t, p in lokr_tensors(pm, n_layers):
            p.copy_(hf[key_of(l, parent, name, t)])

    # PEFT forward + backward (unmerged, HF model)
    pm.zero_grad(set_to_none=True)
    logits = pm(input_ids=tokens.long(), use_cache=False).logits.float()
    loss = P.loss_of(logits, targets)
    loss.backward()
    out = {"tokens": tokens, "targets": targets, "logits": logits.detach().clone(),
           "loss": loss.detach().reshape(1).clone()}
    for l, name, parent, t, p in lokr_tensors(pm, n_layers):
        out["grad." + key_of(l, parent, name, t)] = to_l2c(cfg, name, t, p.grad.detach().clone())
    P.check_nonzero_grads(out)
    print(f"LoKr: loss {loss.item():.7f}")
    with torch.no_grad():
        base_logits = A.hf_logits(A.build_hf(cfg, w), tokens)
    d_lokr = (base_logits - out["logits"]).abs().max().item()
    print(f"  (LoKr moves the logits by up to {d_lokr:.3f})")
    assert d_lokr > 1e-2

    # the llama2.c-convention model with LoKr by hand, from the l2c-order tensors
    ref = G.Llama(cfg, w, 4, 8)
    ref.set_lora(False)
    for l, layer in enumerate(ref.layers):
        for name, parent, _ in G.MODULES:
            pre = key_of(l, parent, name, "")
            ts = {k[len(pre):]: v for k, v in l2c.items() if k.startswith(pre)}
            setattr(layer, name, LoKrHand(getattr(layer, name), ts, scale[(l, name)]))
    ref_logits = ref(tokens.long())
    ref_loss = P.loss_of(ref_logits, targets)
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

    # merge_and_unload
    merged_model = copy.deepcopy(pm).merge_and_unload()
    merged_model.eval()
    merged_logits = A.hf_logits(merged_model, tokens)
    d_merge = (merged_logits - out["logits"]).abs().max().item()
    print(f"  merged vs unmerged PEFT logits: max |diff| {d_merge:.3e}")
    assert d_merge <= TOL
    out["merged_logits"] = merged_logits
    src_of = {n: s for n, _, s in G.MODULES}
    d_direct = 0.0
    for l in MERGED_LAYERS:
        for name, parent, _ in G.MODULES:
            wt = getattr(getattr(merged_model.model.layers[l], parent), name).weight.detach().clone()
            h = A.qk_heads(cfg, name)
            wt = A.permute_to_l2c(wt, h) if h else wt
            hand = getattr(ref.layers[l], name)
            with torch.no_grad():
                dw = torch.kron(hand.factor(1), hand.factor(2)) * hand.scale
            d_direct = max(d_direct, (wt - (w[src_of[name]][l] + dw)).abs().max().item())
            out[f"merged.model.layers.{l}.{parent}.{name}.weight"] = wt
    print(f"  merged weights vs W + kron(w1, w2) s in l2c order: max |diff| {d_direct:.3e}")
    assert d_direct < 1e-6

    meta = {"format": "peftc peft fixture v1", "generator": "tests/golden/gen_peft_lokr.py",
            "checkpoint": "stories260K.bin", "checkpoint_sha256": ck_sha,
            "batch_seed": str(P.BATCH_SEED), "batch": str(P.BATCH), "seq": str(P.SEQ),
            "ignore_index": str(P.IGNORE_INDEX),
            "ignored_targets": ";".join(f"{b},{t}" for b, t in P.IGNORED),
            "loss": "mean cross-entropy of logits vs targets over the non-ignored targets",
            "peft_type": "LOKR", "r": str(R), "alpha": str(ALPHA), "decompose_both": "true",
            "rank_pattern": json.dumps(RANK_PATTERN), "alpha_pattern": json.dumps(ALPHA_PATTERN),
            "factor_init": f"{STD} * randn, Generator().manual_seed({SEED}), layer-major, q..down, sorted tensors",
            "adapter_row_order": "llama2.c (q/k lokr_w2 / lokr_w2_a rows un-permuted per head)",
            "merged_layers": ",".join(map(str, MERGED_LAYERS)),
            "logits_from": "PEFT LlamaForCausalLM (permuted q/k, HF-order factors), unmerged",
            "torch_version": torch.__version__, "transformers_version": transformers.__version__,
            "peft_version": peft.__version__}
    A.write_expected(os.path.join(out_dir, "expected.safetensors"), out, meta)

    # what PEFT wrote, and that it loads back (both orders)
    for d, want in ((out_dir, l2c), (hf_dir, hf)):
        with safe_open(os.path.join(d, "adapter_model.safetensors"), "pt") as f:
            assert f.metadata() == {"format": "pt"}, f.metadata()
            assert sorted(f.keys()) == sorted(want), sorted(f.keys())[:4]
            for k in f.keys():
                assert torch.equal(f.get_tensor(k), want[k]), k
        with open(os.path.join(d, "adapter_config.json")) as f:
            c = json.load(f)
        assert c["peft_type"] == "LOKR" and sorted(c["target_modules"]) == sorted(TARGETS)
        assert c["rank_pattern"] == RANK_PATTERN and c["alpha_pattern"] == ALPHA_PATTERN
    pm2 = PeftModel.from_pretrained(A.build_hf(cfg, w), hf_dir)
    pm2.eval()
    d_load = (A.hf_logits(pm2, tokens) - out["logits"]).abs().max().item()
    print(f"  PeftModel.from_pretrained({HF_DIR_NAME}) vs saved logits: max |diff| {d_load:.3e}")
    assert d_load < 1e-6
    for d in (out_dir, hf_dir):
        P.list_dir(d)
    print("summary: " + json.dumps({"loss": loss.item(), "hand": d_logits, "grad": d_grad, "merge": d_merge,
                                    "direct": d_direct, "load": d_load}, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
