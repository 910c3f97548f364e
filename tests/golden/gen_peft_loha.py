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
from peft import LoHaConfig, get_peft_model  # noqa: E402

DIR_NAME = "peft_loha_stories260k"
TARGETS = [n for n, _, _ in G.MODULES]  # q,k,v,o,gate,up,down
R, ALPHA = 4, 8
RANK_PATTERN = {"down_proj": 2}
ALPHA_PATTERN = {"v_proj": 4}
FACTORS = ["hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"]
ROW_FACTORS = ("hada_w1_a", "hada_w2_a")  # their rows are the module's output rows
SEED, STD = 2027, 0.12
SIZE_LIMIT = 1024 * 1024  # the merged weights of two layers are most of it


def r_alpha(name):
    return RANK_PATTERN.get(name, R), ALPHA_PATTERN.get(name, ALPHA)


def key_of(l, name, parent, t):
    return f"base_model.model.model.layers.{l}.{parent}.{name}.{t}"


def rows_l2c(cfg, name, t, tensor):
    return C.to_l2c(cfg, name, t) if tensor in ROW_FACTORS else t


def rows_hf(cfg, name, t, tensor):
    return C.to_hf(cfg, name, t) if tensor in ROW_FACTORS else t


def loha_params(pm, n_layers):
    """(layer, name, parent, tensor, key, Parameter), layer-major, MODULES order, FACTORS order."""
    for l, name, parent, mod in C.peft_lora_modules(pm, n_layers):
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
    args, ckpt, cfg, w, ck_sha = C.start(__doc__)
    n_layers = cfg["n_layers"]
    ids, tokens, targets = C.make_batch()

    pm = get_peft_model(C.build_hf(cfg, w), LoHaConfig(
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
    C.save_pretrained_as(pm, out_dir, [(key, p) for *_, key, p in loha_params(pm, n_layers)], v_l2c, v_hf)

    out, logits, loss = C.peft_forward_backward(pm, tokens, targets)
    for l, name, parent, t, key, p in loha_params(pm, n_layers):
        out["grad." + key] = rows_l2c(cfg, name, p.grad.detach().clone(), t)
    C.check_nonzero_grads(out)
    print(f"LoHa: loss {loss.item():.7f}")

    # the llama2.c-convention model with LoHa by hand, l2c order
    ref = C.hand_llama(cfg, w)
    for l, layer in enumerate(ref.layers):
        for name, parent, _ in G.MODULES:
            r, a = r_alpha(name)
            f = {t: v_l2c[key_of(l, name, parent, t)] for t in FACTORS}
            setattr(layer, name, LoHaHand(getattr(layer, name), f, a / r))
    ref_logits = ref(tokens.long())
    ref_loss = C.loss_of(ref_logits, targets)
    ref_loss.backward()
    d_logits = C.check_hand(ref_logits, ref_loss, logits, loss, "LoHa (l2c order)")
    d_grad = C.check_hand_grads(((getattr(layer, name).f[i].grad, key_of(l, name, parent, t))
                                 for l, layer in enumerate(ref.layers) for name, parent, _ in G.MODULES
                                 for i, t in enumerate(FACTORS)), out)
    C.check_moves_logits(cfg, w, tokens, out["logits"], "LoHa")

    merged_model, d_merge = C.merge_and_unload(pm, tokens, out)
    d_direct, _ = C.check_merged_delta(merged_model, cfg, w, ref, out)

    meta = dict(C.batch_meta("gen_peft_loha.py", ck_sha),
                peft_type="LOHA", target_modules=",".join(TARGETS), r=str(R), alpha=str(ALPHA),
                rank_pattern=json.dumps(RANK_PATTERN), alpha_pattern=json.dumps(ALPHA_PATTERN),
                loha_init=f"{STD} * randn, Generator().manual_seed({SEED}), layer-major, "
                          "q,k,v,o,gate,up,down, w1_a,w1_b,w2_a,w2_b",
                **C.l2c_rows_meta("q/k hada_w1_a and hada_w2_a rows un-permuted",
                                  "PEFT LlamaForCausalLM (permuted q/k, HF-order factors), unmerged"))
    C.write_expected(os.path.join(out_dir, "expected.safetensors"), out, meta)

    # what PEFT wrote: keys, values, config; and it loads back
    c = C.check_saved(out_dir, v_l2c)
    assert all(out["grad." + k].shape == v.shape for k, v in v_l2c.items())
    assert c["peft_type"] == "LOHA" and sorted(c["target_modules"]) == sorted(TARGETS)
    assert c["r"] == R and c["alpha"] == ALPHA and c["rank_pattern"] == RANK_PATTERN
    assert c["alpha_pattern"] == ALPHA_PATTERN

    def to_hf_rows(pm2):  # the file is in l2c order: permute q/k rows back to HF to run it in HF
        for l, name, parent, t, key, p in loha_params(pm2, n_layers):
            assert torch.equal(p, v_l2c[key]), key
            p.copy_(rows_hf(cfg, name, p.detach().clone(), t))
    d_load = (C.reload_logits(cfg, w, out_dir, tokens, to_hf_rows) - out["logits"]).abs().max().item()
    print(f"  PeftModel.from_pretrained (q/k rows re-permuted to HF) vs saved logits: max |diff| {d_load:.3e}")
    assert d_load < 1e-6
    C.list_dir(out_dir, SIZE_LIMIT)
    print("summary loha: " + json.dumps({"loss": loss.item(), "diffs": {
        "hand": d_logits, "grad": d_grad, "merge": d_merge, "direct": d_direct, "load": d_load}}, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
