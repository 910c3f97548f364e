#!/usr/bin/env python3
"""Generate the PEFT-written LoHa fixture tests/data/peft_loha_stories260k/.

Hugging Face PEFT itself wraps the transformers LlamaForCausalLM built by
gen_peft_adapter.build_hf (stories260K, q/k rows permuted to HF order) with
LoHaConfig(r=4, alpha=8, target_modules = q,k,v,o,gate,up,down,
rank_pattern={"down_proj": 2}, alpha_pattern={"v_proj": 4}), so per-module r and
alpha are exercised too. Every hada_* tensor (w2_b included, so ΔW != 0) is
overwritten with 0.12 N(0,1) values (torch.Generator seed 2027, layer-major,
modules in q,k,v,o,gate,up,down order, tensors w1_a, w1_b, w2_a, w2_b). PEFT's
save_pretrained writes the directory with the q_proj/k_proj output rows
(the rows of hada_w1_a AND hada_w2_a: ΔW's row i is
(w1_a[i] w1_b) ⊙ (w2_a[i] w2_b)) un-permuted to llama2.c order.

expected.safetensors (ours): the batch [2,16] of gen_peft_ia3_prompt.py (seed 42,
two ignored targets), PEFT's logits and loss, the gradient of all 140 hada_*
tensors (q/k w*_a gradients in llama2.c row order), merge_and_unload's weights of
layers 0 and 4 (llama2.c row order) and the merged model's logits. Every number is
cross-checked against gen_llama_lora's llama2.c-convention model with LoHa applied
by hand (ΔW = ((w1_a w1_b) ⊙ (w2_a w2_b)) alpha/r, y = base(x) + x ΔWᵀ), and the
saved directory is loaded back with PeftModel.from_pretrained. tests/golden/loha.md
has the numbers.

Usage (from the repository root):
    /work/venv-golden/bin/python tests/golden/gen_peft_loha.py [--out-dir tests/data] [--ckpt PATH]

Needs: torch, numpy, safetensors, transformers, peft (0.21.2). CPU, fp32, 1 thread.
"""
import os
import sys

# adapter_config.json lists target_modules from a Python set (hash order): pin the seed.
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
import gen_peft_ia3_prompt as P  # noqa: E402  (batch, loss, to_l2c/to_hf, helpers)

import peft  # noqa: E402
import transformers  # noqa: E402
from peft import LoHaConfig, PeftModel, get_peft_model  # noqa: E402

DIR_NAME = "peft_loha_stories260k"
TARGETS = [n for n, _, _ in G.MODULES]  # q,k,v,o,gate,up,down
R, ALPHA = 4, 8
RANK_PATTERN = {"down_proj": 2}
ALPHA_PATTERN = {"v_proj": 4}
FACTORS = ["hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"]
ROW_FACTORS = ("hada_w1_a", "hada_w2_a")  # their rows are the module's output rows
SEED, STD = 2027, 0.12
MERGED_LAYERS = (0, 4)
TOL = 1e-4
SIZE_LIMIT = 1024 * 1024  # the merged weights of two layers are most of it


def r_alpha(name):
    return RANK_PATTERN.get(name, R), ALPHA_PATTERN.get(name, ALPHA)


def key_of(l, name, parent, t):
    return f"base_model.model.model.layers.{l}.{parent}.{name}.{t}"


def rows_l2c(cfg, name, t, tensor):
    return P.to_l2c(cfg, name, t) if tensor in ROW_FACTORS else t


def rows_hf(cfg, name, t, tensor):
    return P.to_hf(cfg, name, t) if tensor in ROW_FACTORS else t


def loha_params(pm, n_layers):
    """(layer, name, parent, tensor, key, Parameter), layer-major, MODULES order, FACTORS order."""
    for l, name, parent, mod in A.peft_lora_modules(pm, n_layers):
        for t in FACTORS:
            yield l, name, parent, t, key_of(l, name, parent, t), getattr(mod, t)["default"]


class LoHaHand(nn.Module):
    """LoHa by hand on a gen_llama_lora.LoraLinear with LoRA off: y = base(x) + x ΔWᵀ."""

    def __init__(self, base, f, scale):
        super().__init__()
        self.base, self.scale = base, scale
        self.f = nn.ParameterList([nn.Parameter(f[t].detach().clone()) for t in FACTORS])

    def delta(self):
        w1a, w1b, w2a, w2b = self.f
        return ((w1a @ w1b) * (w2a @ w2b)) * self.scale

    def forward(self, x):
        return self.base(x) + F.linear(x, self.delta())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", default=P.DEFAULT_OUT_DIR)
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

    gb = torch.Generator().manual_seed(P.BATCH_SEED)
    ids = torch.randint(0, P.VOCAB_DRAW, (P.BATCH, P.SEQ + 1), generator=gb)
    tokens = ids[:, :-1].contiguous().to(torch.int32)
    targets = ids[:, 1:].contiguous().clone()
    for b, t in P.IGNORED:
        targets[b, t] = P.IGNORE_INDEX
    targets = targets.to(torch.int32)

    pm = get_peft_model(A.build_hf(cfg, w), LoHaConfig(
        task_type="CAUSAL_LM", target_modules=TARGETS, r=R, alpha=ALPHA,
        rank_pattern=RANK_PATTERN, alpha_pattern=ALPHA_PATTERN))
    pm.eval()
    # PEFT's init: w2_b = 0 (ΔW = 0), the rest kaiming
    for *_, t, key, p in loha_params(pm, n_layers):
        assert (p.abs().max() == 0) == (t == "hada_w2_b"), key
    g = torch.Generator().manual_seed(SEED)
    v_hf, v_l2c = {}, {}
    with torch.no_grad():
        for l, name, parent, t, key, p in loha_params(pm, n_layers):
            r, _ = r_alpha(name)
            assert p.shape[0 if t.endswith("_b") else 1] == r, (key, p.shape)
            p.copy_(STD * torch.randn(p.shape, generator=g))
            v_hf[key] = p.detach().clone()
            v_l2c[key] = rows_l2c(cfg, name, v_hf[key], t)
    assert len(v_hf) == 4 * 7 * n_layers
    trainable = [k for k, p in pm.named_parameters() if p.requires_grad]
    assert len(trainable) == len(v_hf) and all(".hada_w" in k for k in trainable), trainable

    out_dir = os.path.join(args.out_dir, DIR_NAME)
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    with torch.no_grad():
        for *_, key, p in loha_params(pm, n_layers):
            p.copy_(v_l2c[key])
    pm.save_pretrained(out_dir)
    with torch.no_grad():
        for *_, key, p in loha_params(pm, n_layers):
            p.copy_(v_hf[key])

    # forward + backward through PEFT (unmerged)
    pm.zero_grad(set_to_none=True)
    logits = pm(input_ids=tokens.long(), use_cache=False).logits.float()
    loss = P.loss_of(logits, targets)
    loss.backward()
    out = {"tokens": tokens, "targets": targets, "logits": logits.detach().clone(),
           "loss": loss.detach().reshape(1).clone()}
    for l, name, parent, t, key, p in loha_params(pm, n_layers):
        out["grad." + key] = rows_l2c(cfg, name, p.grad.detach().clone(), t)
    P.check_nonzero_grads(out)
    print(f"LoHa: loss {loss.item():.7f}")

    # the llama2.c-convention model with LoHa by hand, l2c order
    ref = G.Llama(cfg, w, 4, 8)
    ref.set_lora(False)
    for l, layer in enumerate(ref.layers):
        for name, parent, _ in G.MODULES:
            r, a = r_alpha(name)
            f = {t: v_l2c[key_of(l, name, parent, t)] for t in FACTORS}
            setattr(layer, name, LoHaHand(getattr(layer, name), f, a / r))
    ref_logits = ref(tokens.long())
    ref_loss = P.loss_of(ref_logits, targets)
    ref_loss.backward()
    d_logits = (ref_logits - logits).abs().max().item()
    print(f"  PEFT vs llama2.c-convention model + hand LoHa (l2c order): logits max |diff| {d_logits:.3e}, "
          f"loss |diff| {abs(ref_loss.item() - loss.item()):.3e}")
    assert d_logits <= TOL, d_logits
    d_grad = 0.0
    for l, layer in enumerate(ref.layers):
        for name, parent, _ in G.MODULES:
            for i, t in enumerate(FACTORS):
                gr = getattr(layer, name).f[i].grad
                d_grad = max(d_grad, (gr - out["grad." + key_of(l, name, parent, t)]).abs().max().item())
    gmax = max(v.abs().max().item() for k, v in out.items() if k.startswith("grad."))
    print(f"  gradients vs hand model: max |diff| {d_grad:.3e} (max |grad| {gmax:.3e})")
    assert d_grad <= TOL * max(1.0, gmax), d_grad
    with torch.no_grad():
        base_logits = A.hf_logits(A.build_hf(cfg, w), tokens)
    d_loha = (base_logits - out["logits"]).abs().max().item()
    print(f"  (LoHa moves the logits by up to {d_loha:.3f})")
    assert d_loha > 1e-2

    # merge_and_unload on a deep copy
    merged_model = copy.deepcopy(pm).merge_and_unload()
    merged_model.eval()
    merged_logits = A.hf_logits(merged_model, tokens)
    d_merge = (merged_logits - out["logits"]).abs().max().item()
    print(f"  merged vs unmerged PEFT logits: max |diff| {d_merge:.3e}")
    assert d_merge <= TOL, d_merge
    out["merged_logits"] = merged_logits
    d_direct, moved = 0.0, 0.0
    src_of = {n: s for n, _, s in G.MODULES}
    for l in MERGED_LAYERS:
        for name, parent, _ in G.MODULES:
            wt = getattr(getattr(merged_model.model.layers[l], parent), name).weight.detach().clone()
            wt = P.to_l2c(cfg, name, wt)
            with torch.no_grad():
                hand = getattr(ref.layers[l], name)
                want = w[src_of[name]][l] + hand.delta()
            d_direct = max(d_direct, (wt - want).abs().max().item())
            moved = max(moved, (wt - w[src_of[name]][l]).abs().max().item())
            out[f"merged.model.layers.{l}.{parent}.{name}.weight"] = wt
    print(f"  merged weights vs W + ΔW in l2c order: max |diff| {d_direct:.3e} (ΔW up to {moved:.3f})")
    assert d_direct < 1e-6, d_direct
    assert moved > 1e-3

    meta = {"format": "peftc peft fixture v1", "generator": "tests/golden/gen_peft_loha.py",
            "checkpoint": "stories260K.bin", "checkpoint_sha256": ck_sha,
            "batch_seed": str(P.BATCH_SEED), "batch": str(P.BATCH), "seq": str(P.SEQ),
            "ignore_index": str(P.IGNORE_INDEX),
            "ignored_targets": ";".join(f"{b},{t}" for b, t in P.IGNORED),
            "loss": "mean cross-entropy of logits vs targets over the non-ignored targets",
            "torch_version": torch.__version__, "transformers_version": transformers.__version__,
            "peft_version": peft.__version__,
            "peft_type": "LOHA", "target_modules": ",".join(TARGETS), "r": str(R), "alpha": str(ALPHA),
            "rank_pattern": json.dumps(RANK_PATTERN), "alpha_pattern": json.dumps(ALPHA_PATTERN),
            "loha_init": f"{STD} * randn, Generator().manual_seed({SEED}), layer-major, "
                         "q,k,v,o,gate,up,down, w1_a,w1_b,w2_a,w2_b",
            "adapter_row_order": "llama2.c (q/k hada_w1_a and hada_w2_a rows un-permuted)",
            "grad_row_order": "llama2.c (same as the stored tensors)",
            "merged_row_order": "llama2.c (q/k rows un-permuted from HF)",
            "merged_layers": ",".join(map(str, MERGED_LAYERS)),
            "logits_from": "PEFT LlamaForCausalLM (permuted q/k, HF-order factors), unmerged"}
    A.write_expected(os.path.join(out_dir, "expected.safetensors"), out, meta)

    # what PEFT wrote: keys, values, config; and it loads back
    with safe_open(os.path.join(out_dir, "adapter_model.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "pt"}, f.metadata()
        keys = sorted(f.keys())
        assert keys == sorted(v_l2c), keys
        for k in keys:
            assert torch.equal(f.get_tensor(k), v_l2c[k]), k
            assert out["grad." + k].shape == v_l2c[k].shape, k
    with open(os.path.join(out_dir, "adapter_config.json")) as f:
        c = json.load(f)
    assert c["peft_type"] == "LOHA" and sorted(c["target_modules"]) == sorted(TARGETS)
    assert c["r"] == R and c["alpha"] == ALPHA and c["rank_pattern"] == RANK_PATTERN
    assert c["alpha_pattern"] == ALPHA_PATTERN
    pm2 = PeftModel.from_pretrained(A.build_hf(cfg, w), out_dir)
    pm2.eval()
    with torch.no_grad():  # the file is in l2c order: permute q/k rows back to HF to run it in HF
        for l, name, parent, t, key, p in loha_params(pm2, n_layers):
            assert torch.equal(p, v_l2c[key]), key
            p.copy_(rows_hf(cfg, name, p.detach().clone(), t))
    d_load = (A.hf_logits(pm2, tokens) - out["logits"]).abs().max().item()
    print(f"  PeftModel.from_pretrained (q/k rows re-permuted to HF) vs saved logits: max |diff| {d_load:.3e}")
    assert d_load < 1e-6
    print(f"{out_dir}:")
    for fn in sorted(os.listdir(out_dir)):
        p = os.path.join(out_dir, fn)
        print(f"  {fn:28s} {os.path.getsize(p):8d}  {A.sha(p)}")
    assert P.dir_size(out_dir) < SIZE_LIMIT, P.dir_size(out_dir)
    print("summary loha: " + json.dumps({"loss": loss.item(), "diffs": {
        "hand": d_logits, "grad": d_grad, "merge": d_merge, "direct": d_direct, "load": d_load}}, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
