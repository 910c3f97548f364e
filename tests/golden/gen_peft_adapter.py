#!/usr/bin/env python3
"""Generate the PEFT-written LoRA fixtures tests/data/peft_lora_stories260k{,_l2c}/.

stories260K (llama2.c checkpoint) is loaded into a Hugging Face transformers
LlamaForCausalLM, with the q/k rows permuted per head the way llama2.c's
export.py does for HF (HF RoPE rotates halves, llama2.c adjacent pairs). The
HF model is checked against the llama2.c-convention PyTorch model of
gen_llama_lora.py (same logits to 1e-4). Then Hugging Face PEFT itself
(get_peft_model + LoraConfig r=4, alpha=8, all seven projections) wraps it, all
lora_A/lora_B get seeded N(0, 0.05^2) values, and PEFT's save_pretrained writes:

  tests/data/peft_lora_stories260k/       the adapter in HF row order (exact PEFT bytes)
  tests/data/peft_lora_stories260k_l2c/   the same adapter with the q_proj/k_proj lora_B
                                          rows un-permuted to llama2.c order (also written
                                          by PEFT's save_pretrained)

plus, in each directory, expected.safetensors (ours, not PEFT's): fixed token ids,
the unmerged logits, and merge_and_unload's weights of layers 0 and 4 with the q/k rows
in llama2.c order. See tests/golden/README.md.

Usage (from the repository root):
    python3 tests/golden/gen_peft_adapter.py [--out-dir tests/data] [--ckpt PATH]
"""
import os
import sys

PIN_HASH_SEED = True  # run as a script: peft_fixture_common re-executes it with PYTHONHASHSEED=0
import peft_fixture_common as C  # noqa: E402
# what check_peft_interop.py and older notes take from this module
from peft_fixture_common import (  # noqa: E402,F401
    build_hf, hf_logits, peft_lora_modules, permute_to_hf, permute_to_l2c, qk_heads, sha, write_expected)

import filecmp  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402

import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402

import gen_llama_lora as G  # noqa: E402  (checkpoint loader + llama2.c-convention model)
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402

REPO = G.REPO
DEFAULT_OUT_DIR = C.DEFAULT_OUT_DIR
HF_DIR_NAME = "peft_lora_stories260k"
L2C_DIR_NAME = "peft_lora_stories260k_l2c"

LORA_R, LORA_ALPHA = 4, 8
LORA_INIT_STD = 0.05
LORA_SEED = 2024      # torch.Generator seed for the lora_A / lora_B values
TOKENS_SEED = 7       # torch.Generator seed for the 15 ids after BOS
SEQ = 16
MERGED_LAYERS = C.MERGED_LAYERS
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
BASE_NAME = C.BASE_NAME


def main():
    args, ckpt, cfg, w, ck_sha = C.start(__doc__)
    n_layers = cfg["n_layers"]

    # the permutations are inverse to each other
    x = torch.randn(64, 5)
    assert torch.equal(permute_to_l2c(permute_to_hf(x, 8), 8), x)
    assert torch.equal(permute_to_l2c(permute_to_hf(x[:32], 4), 4), x[:32])

    # fixed tokens: BOS then 15 seeded ids
    g = torch.Generator().manual_seed(TOKENS_SEED)
    tokens = torch.cat([torch.tensor([1]), torch.randint(0, cfg["vocab_size"], (SEQ - 1,), generator=g)])
    tokens = tokens.view(1, SEQ).to(torch.int32)

    # 1. the llama2.c-convention model (oracle-checked) vs HF with permuted q/k rows
    ref = G.Llama(cfg, w, LORA_R, LORA_ALPHA)
    G.check_oracle(ref, os.path.join(os.path.dirname(ckpt), "reference_greedy.txt"))
    ref.set_lora(False)
    with torch.no_grad():
        ref_base = ref(tokens.long())
    hf = build_hf(cfg, w)
    d = (hf_logits(hf, tokens) - ref_base).abs().max().item()
    print(f"HF LlamaForCausalLM (permuted q/k) vs llama2.c-convention model, no LoRA: max |diff| {d:.3e}")
    assert d < 1e-4, d
    # and without the permutation HF is wrong (the trap is real)
    hf_bad = build_hf(cfg, w)
    with torch.no_grad():
        for l in range(n_layers):
            a = hf_bad.model.layers[l].self_attn
            a.q_proj.weight.copy_(w["wq"][l])
            a.k_proj.weight.copy_(w["wk"][l])
    d_bad = (hf_logits(hf_bad, tokens) - ref_base).abs().max().item()
    print(f"  (unpermuted q/k rows in HF: max |diff| {d_bad:.3e})")
    assert d_bad > 1e-2
    del hf_bad

    # 2. PEFT LoRA on the HF model, seeded non-zero A and B (HF row order)
    lcfg = LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, target_modules=TARGETS, lora_dropout=0.0,
                      task_type="CAUSAL_LM")
    pm = get_peft_model(hf, lcfg)
    pm.eval()
    gl = torch.Generator().manual_seed(LORA_SEED)
    A_hf, B_hf = {}, {}
    with torch.no_grad():
        for l, name, parent, m in peft_lora_modules(pm, n_layers):
            a, b = m.lora_A["default"].weight, m.lora_B["default"].weight
            a.copy_(torch.randn(a.shape, generator=gl) * LORA_INIT_STD)
            b.copy_(torch.randn(b.shape, generator=gl) * LORA_INIT_STD)
            A_hf[l, name] = a.detach().clone()
            B_hf[l, name] = b.detach().clone()
            assert m.scaling["default"] == LORA_ALPHA / LORA_R
    n_lora = sum(1 for k, _ in pm.named_parameters() if "lora_" in k)
    assert n_lora == 2 * 7 * n_layers, n_lora

    out_hf = os.path.join(args.out_dir, HF_DIR_NAME)
    out_l2c = os.path.join(args.out_dir, L2C_DIR_NAME)
    for d_ in (out_hf, out_l2c):
        if os.path.isdir(d_):
            shutil.rmtree(d_)
    pm.save_pretrained(out_hf)
    peft_logits = hf_logits(pm, tokens)

    # 3. the same adapter in llama2.c row order: only q/k lora_B rows change
    A_l2c = dict(A_hf)
    B_l2c = {k: (permute_to_l2c(v, qk_heads(cfg, k[1])) if qk_heads(cfg, k[1]) else v) for k, v in B_hf.items()}
    with torch.no_grad():
        for l, name, parent, m in peft_lora_modules(pm, n_layers):
            m.lora_B["default"].weight.copy_(B_l2c[l, name])
    pm.save_pretrained(out_l2c)  # PEFT writes it too (the model is "wrong" for HF, the bytes are right)
    with torch.no_grad():
        for l, name, parent, m in peft_lora_modules(pm, n_layers):
            m.lora_B["default"].weight.copy_(B_hf[l, name])
    assert torch.equal(hf_logits(pm, tokens), peft_logits)

    # llama2.c-convention model + the l2c-order LoRA
    ref.set_lora(True)
    with torch.no_grad():
        for l, name, parent, m in ref.lora_modules():
            m.lora_A.copy_(A_l2c[l, name])
            m.lora_B.copy_(B_l2c[l, name])
        ref_logits = ref(tokens.long())
    d = (peft_logits - ref_logits).abs().max().item()
    print(f"PEFT model (HF order) vs llama2.c-convention model + l2c-order LoRA: max |diff| {d:.3e}")
    assert d < 1e-4, d
    d_lora = (peft_logits - ref_base).abs().max().item()
    print(f"  (LoRA changes the logits by up to {d_lora:.3f})")
    assert d_lora > 1e-2

    # 4. merge_and_unload (PEFT), q/k rows back to llama2.c order
    merged_model = pm.merge_and_unload()
    merged_model.eval()
    d = (hf_logits(merged_model, tokens) - peft_logits).abs().max().item()
    print(f"merged vs unmerged PEFT logits: max |diff| {d:.3e}")
    assert d < 1e-4, d
    merged = {}
    scaling = LORA_ALPHA / LORA_R
    for l in MERGED_LAYERS:
        for name, parent, src in G.MODULES:
            key = f"model.layers.{l}.{parent}.{name}.weight"
            wt = getattr(getattr(merged_model.model.layers[l], parent), name).weight.detach().clone()
            h = qk_heads(cfg, name)
            if h:
                wt = permute_to_l2c(wt, h)
            direct = w[src][l] + scaling * (B_l2c[l, name] @ A_l2c[l, name])
            dd = (wt - direct).abs().max().item()
            assert dd < 1e-6, (key, dd)
            merged["merged." + key] = wt

    # 5. expected.safetensors in both directories
    peft_files = ["adapter_config.json", "adapter_model.safetensors"]
    assert filecmp.cmp(os.path.join(out_hf, "adapter_config.json"),
                       os.path.join(out_l2c, "adapter_config.json"), shallow=False)
    meta_common = {
        **C.fixture_meta("gen_peft_adapter.py", ck_sha),
        "r": str(LORA_R), "lora_alpha": str(LORA_ALPHA), "scaling": repr(scaling),
        "init_std": repr(LORA_INIT_STD), "lora_seed": str(LORA_SEED), "tokens_seed": str(TOKENS_SEED),
        "merged_layers": ",".join(map(str, MERGED_LAYERS)),
        "merged_row_order": "llama2.c (q/k rows un-permuted from HF)",
    }
    e_hf = {"tokens": tokens, "logits": peft_logits, **merged}
    write_expected(os.path.join(out_hf, "expected.safetensors"), e_hf, {
        **meta_common, "adapter_row_order": "hf (q/k lora_B rows permuted, rotate-halves RoPE)",
        "logits_from": "PEFT LlamaForCausalLM (permuted q/k), unmerged"})
    e_l2c = {"tokens": tokens, "logits": ref_logits, **merged}
    write_expected(os.path.join(out_l2c, "expected.safetensors"), e_l2c, {
        **meta_common, "adapter_row_order": "llama2.c (q/k lora_B rows un-permuted, adjacent-pair RoPE)",
        "logits_from": "gen_llama_lora.Llama (llama2.c convention) + LoRA, unmerged"})
    d = (e_hf["logits"] - e_l2c["logits"]).abs().max().item()
    print(f"expected logits, HF dir vs l2c dir: max |diff| {d:.3e}")
    assert d < 1e-4

    # 6. read back what PEFT wrote
    for d_, B in ((out_hf, B_hf), (out_l2c, B_l2c)):
        with safe_open(os.path.join(d_, "adapter_model.safetensors"), "pt") as f:
            assert f.metadata() == {"format": "pt"}, f.metadata()
            keys = set(f.keys())
            assert len(keys) == 2 * 7 * n_layers, len(keys)
            for l, name, parent, _ in G.Llama.lora_modules(ref):
                ka = G.key_of(l, name, parent, "A")
                kb = G.key_of(l, name, parent, "B")
                assert torch.equal(f.get_tensor(ka), A_hf[l, name]), ka
                assert torch.equal(f.get_tensor(kb), B[l, name]), kb
        with open(os.path.join(d_, "adapter_config.json")) as f:
            c = json.load(f)
        assert c["peft_type"] == "LORA" and c["r"] == LORA_R and c["lora_alpha"] == LORA_ALPHA
        assert sorted(c["target_modules"]) == sorted(TARGETS)
    # PEFT loads its own HF-order directory onto a fresh HF model and reproduces the logits
    pm2 = PeftModel.from_pretrained(build_hf(cfg, w), out_hf)
    pm2.eval()
    d = (hf_logits(pm2, tokens) - peft_logits).abs().max().item()
    print(f"PeftModel.from_pretrained({HF_DIR_NAME}) logits vs saved: max |diff| {d:.3e}")
    assert d == 0.0 or d < 1e-6

    total = 0
    for d_ in (out_hf, out_l2c):
        print(f"{d_}:")
        for fn in sorted(os.listdir(d_)):
            p = os.path.join(d_, fn)
            total += os.path.getsize(p)
            print(f"  {fn:28s} {os.path.getsize(p):8d}  {sha(p)}")
    print(f"total {total} bytes; PEFT wrote: {peft_files} (+ README.md model card, if any)")
    for d_ in (out_hf, out_l2c):
        assert sum(os.path.getsize(os.path.join(d_, f)) for f in os.listdir(d_)) < 1 << 20


if __name__ == "__main__":
    sys.exit(main())
