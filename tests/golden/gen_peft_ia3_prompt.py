#!/usr/bin/env python3
"""Generate the PEFT-written IA3 and prompt-tuning fixtures for stories260K.

Hugging Face PEFT itself wraps the transformers LlamaForCausalLM built by
gen_peft_adapter.build_hf (stories260K with the q/k rows permuted to HF order)
and writes, with its own save_pretrained:

  tests/data/peft_ia3_stories260k/     IA3 on k_proj, v_proj, down_proj (down_proj
                                       feedforward), every ia3_l = 1 + 0.3 N(0,1); the
                                       k_proj ia3_l rows stored in llama2.c row order
  tests/data/peft_prompt_stories260k/  prompt tuning, 4 virtual tokens, table 0.5 N(0,1)

plus, in each directory, expected.safetensors (ours): a fixed batch [2,16] with two
ignored targets, the logits, the loss, the gradient of every adapter tensor and (IA3)
merge_and_unload's weights of layers 0 and 4 and the merged model's logits. Every number
is also cross-checked against gen_llama_lora's llama2.c-convention model with the
adapter applied by hand. See tests/golden/README.md.

Usage (from the repository root):
    python3 tests/golden/gen_peft_ia3_prompt.py [--out-dir tests/data] [--ckpt PATH]

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

import peft  # noqa: E402
import transformers  # noqa: E402
from peft import IA3Config, PeftModel, PromptTuningConfig, get_peft_model  # noqa: E402

DEFAULT_OUT_DIR = os.path.join(G.REPO, "tests", "data")
IA3_DIR_NAME = "peft_ia3_stories260k"
PROMPT_DIR_NAME = "peft_prompt_stories260k"

IA3_TARGETS = ["k_proj", "v_proj", "down_proj"]  # draw order inside a layer
IA3_FF = ["down_proj"]
IA3_SEED, IA3_STD = 2025, 0.3          # ia3_l = 1 + 0.3 * randn
PROMPT_SEED, PROMPT_STD = 2026, 0.5    # table = 0.5 * randn
NUM_VIRTUAL = 4
BATCH_SEED = 42
BATCH, SEQ, VOCAB_DRAW = 2, 16, 512
IGNORE_INDEX = -100
IGNORED = [(0, 3), (1, 0)]
MERGED_LAYERS = (0, 4)
TOL = 1e-4
SIZE_LIMIT = 600 * 1024


def ia3_key(l, name):
    parent = "mlp" if name == "down_proj" else "self_attn"
    return parent, f"base_model.model.model.layers.{l}.{parent}.{name}.ia3_l"


def to_l2c(cfg, name, t):
    """k_proj output rows HF -> llama2.c order; other modules unchanged."""
    h = A.qk_heads(cfg, name)
    return A.permute_to_l2c(t, h) if h else t


def to_hf(cfg, name, t):
    h = A.qk_heads(cfg, name)
    return A.permute_to_hf(t, h) if h else t


def loss_of(logits, targets):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).long(),
                           ignore_index=IGNORE_INDEX, reduction="mean")


class IA3Hand(nn.Module):
    """IA3 written by hand on a gen_llama_lora.LoraLinear (LoRA off): out-scaling
    y = (x W^T) * l for attention modules, input scaling y = (x * l) W^T for feedforward."""

    def __init__(self, base, l, feedforward):
        super().__init__()
        self.base, self.ff = base, feedforward
        self.l = nn.Parameter(l.detach().clone().flatten())

    def forward(self, x):
        return self.base(x * self.l) if self.ff else self.base(x) * self.l


def l2c_forward_embeds(ref, h):
    """gen_llama_lora.Llama.forward from input embeddings h [B,S,dim], positions 0..S-1."""
    S = h.shape[1]
    cos, sin = ref.rope_cos[:S], ref.rope_sin[:S]
    for layer in ref.layers:
        h = h + ref.attention(layer, G.rmsnorm(h, layer.rms_att), cos, sin)
        n = G.rmsnorm(h, layer.rms_ffn)
        h = h + layer.down_proj(F.silu(layer.gate_proj(n)) * layer.up_proj(n))
    return G.rmsnorm(h, ref.rms_final) @ ref.tok.t()


def ia3_params(pm, n_layers):
    """(layer, name, parent, key, ia3_l Parameter) in layer-major k, v, down order."""
    layers = pm.base_model.model.model.layers
    for l in range(n_layers):
        for name in IA3_TARGETS:
            parent, key = ia3_key(l, name)
            yield l, name, parent, key, getattr(getattr(layers[l], parent), name).ia3_l["default"]


def dir_size(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))


def list_dir(d):
    print(f"{d}:")
    for fn in sorted(os.listdir(d)):
        p = os.path.join(d, fn)
        print(f"  {fn:28s} {os.path.getsize(p):8d}  {A.sha(p)}")
    assert dir_size(d) < SIZE_LIMIT, (d, dir_size(d))


def check_nonzero_grads(tensors):
    for k, v in tensors.items():
        if k.startswith("grad."):
            assert v.abs().max() > 0, k


# ---- IA3 -------------------------------------------------------------------
def make_ia3(cfg, w, ckpt_sha, tokens, targets, out_dir, meta_common):
    n_layers = cfg["n_layers"]
    pm = get_peft_model(A.build_hf(cfg, w), IA3Config(
        task_type="CAUSAL_LM", target_modules=IA3_TARGETS, feedforward_modules=IA3_FF))
    pm.eval()
    g = torch.Generator().manual_seed(IA3_SEED)
    l_hf, l_l2c = {}, {}
    with torch.no_grad():
        for l, name, parent, key, p in ia3_params(pm, n_layers):
            p.copy_(1.0 + IA3_STD * torch.randn(p.shape, generator=g))
            l_hf[key] = p.detach().clone()
            l_l2c[key] = to_l2c(cfg, name, l_hf[key])
    assert len(l_hf) == 3 * n_layers
    trainable = [k for k, p in pm.named_parameters() if p.requires_grad]
    assert len(trainable) == 3 * n_layers and all(".ia3_l." in k for k in trainable), trainable

    # save with the k_proj rows in llama2.c order, then restore the HF-order values
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    with torch.no_grad():
        for *_, key, p in ia3_params(pm, n_layers):
            p.copy_(l_l2c[key])
    pm.save_pretrained(out_dir)
    with torch.no_grad():
        for *_, key, p in ia3_params(pm, n_layers):
            p.copy_(l_hf[key])

    # forward + backward through PEFT (unmerged)
    pm.zero_grad(set_to_none=True)
    logits = pm(input_ids=tokens.long(), use_cache=False).logits.float()
    loss = loss_of(logits, targets)
    loss.backward()
    out = {"tokens": tokens, "targets": targets, "logits": logits.detach().clone(),
           "loss": loss.detach().reshape(1).clone()}
    for l, name, parent, key, p in ia3_params(pm, n_layers):
        out["grad." + key] = to_l2c(cfg, name, p.grad.detach().clone())
    check_nonzero_grads(out)
    print(f"IA3: loss {loss.item():.7f}")

    # the llama2.c-convention model with IA3 by hand, l2c order
    ref = G.Llama(cfg, w, 4, 8)
    ref.set_lora(False)
    for l, layer in enumerate(ref.layers):
        for name in IA3_TARGETS:
            _, key = ia3_key(l, name)
            setattr(layer, name, IA3Hand(getattr(layer, name), l_l2c[key], name in IA3_FF))
    ref_logits = ref(tokens.long())
    ref_loss = loss_of(ref_logits, targets)
    ref_loss.backward()
    d_logits = (ref_logits - logits).abs().max().item()
    print(f"  PEFT vs llama2.c-convention model + hand IA3 (l2c order): logits max |diff| {d_logits:.3e}, "
          f"loss |diff| {abs(ref_loss.item() - loss.item()):.3e}")
    assert d_logits <= TOL, d_logits
    d_grad = 0.0
    for l, layer in enumerate(ref.layers):
        for name in IA3_TARGETS:
            _, key = ia3_key(l, name)
            gr = getattr(layer, name).l.grad.view_as(out["grad." + key])
            d_grad = max(d_grad, (gr - out["grad." + key]).abs().max().item())
    gmax = max(v.abs().max().item() for k, v in out.items() if k.startswith("grad."))
    print(f"  gradients vs hand model: max |diff| {d_grad:.3e} (max |grad| {gmax:.3e})")
    assert d_grad <= TOL * max(1.0, gmax), d_grad
    with torch.no_grad():
        base_logits = A.hf_logits(A.build_hf(cfg, w), tokens)
    d_ia3 = (base_logits - out["logits"]).abs().max().item()
    print(f"  (IA3 moves the logits by up to {d_ia3:.3f})")
    assert d_ia3 > 1e-2

    # merge_and_unload on a deep copy
    merged_model = copy.deepcopy(pm).merge_and_unload()
    merged_model.eval()
    merged_logits = A.hf_logits(merged_model, tokens)
    d_merge = (merged_logits - out["logits"]).abs().max().item()
    print(f"  merged vs unmerged PEFT logits: max |diff| {d_merge:.3e}")
    assert d_merge <= TOL, d_merge
    out["merged_logits"] = merged_logits
    d_direct = 0.0
    src_of = {n: s for n, _, s in G.MODULES}
    for l in MERGED_LAYERS:
        for name in IA3_TARGETS:
            parent, key = ia3_key(l, name)
            wt = getattr(getattr(merged_model.model.layers[l], parent), name).weight.detach().clone()
            wt = to_l2c(cfg, name, wt)
            lv = l_l2c[key]  # [out,1] scales rows, [1,in] scales columns: broadcasting does both
            d_direct = max(d_direct, (wt - w[src_of[name]][l] * lv).abs().max().item())
            out[f"merged.model.layers.{l}.{parent}.{name}.weight"] = wt
    print(f"  merged weights vs W*l in l2c order: max |diff| {d_direct:.3e}")
    assert d_direct < 1e-6, d_direct

    meta = {**meta_common,
            "peft_type": "IA3", "target_modules": ",".join(IA3_TARGETS),
            "feedforward_modules": ",".join(IA3_FF),
            "ia3_init": f"1 + {IA3_STD} * randn, Generator().manual_seed({IA3_SEED}), layer-major, k,v,down",
            "ia3_seed": str(IA3_SEED),
            "adapter_row_order": "llama2.c (k_proj ia3_l rows un-permuted, adjacent-pair RoPE)",
            "grad_row_order": "llama2.c (same as the stored ia3_l)",
            "merged_row_order": "llama2.c (k rows un-permuted from HF)",
            "merged_layers": ",".join(map(str, MERGED_LAYERS)),
            "logits_from": "PEFT LlamaForCausalLM (permuted q/k, HF-order ia3_l), unmerged"}
    A.write_expected(os.path.join(out_dir, "expected.safetensors"), out, meta)

    # what PEFT wrote: keys, values, config; and it loads back
    with safe_open(os.path.join(out_dir, "adapter_model.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "pt"}, f.metadata()
        keys = sorted(f.keys())
        assert keys == sorted(l_l2c), keys
        for k in keys:
            assert torch.equal(f.get_tensor(k), l_l2c[k]), k
            assert out["grad." + k].shape == l_l2c[k].shape, k
        adapter_shapes = {k: list(f.get_tensor(k).shape) for k in keys}
    with open(os.path.join(out_dir, "adapter_config.json")) as f:
        c = json.load(f)
    assert c["peft_type"] == "IA3" and sorted(c["target_modules"]) == sorted(IA3_TARGETS)
    assert c["feedforward_modules"] == IA3_FF or sorted(c["feedforward_modules"]) == IA3_FF
    pm2 = PeftModel.from_pretrained(A.build_hf(cfg, w), out_dir)
    pm2.eval()
    with torch.no_grad():  # the file is in l2c order: permute k back to HF to run it in HF
        for l, name, parent, key, p in ia3_params(pm2, n_layers):
            assert torch.equal(p, l_l2c[key]), key
            p.copy_(to_hf(cfg, name, p.detach().clone()))
    d_load = (A.hf_logits(pm2, tokens) - out["logits"]).abs().max().item()
    print(f"  PeftModel.from_pretrained (k rows re-permuted to HF) vs saved logits: max |diff| {d_load:.3e}")
    assert d_load < 1e-6
    list_dir(out_dir)
    return {"loss": loss.item(), "adapter": adapter_shapes,
            "diffs": {"hand": d_logits, "grad": d_grad, "merge": d_merge, "direct": d_direct,
                      "load": d_load}}


# ---- prompt tuning ---------------------------------------------------------
def make_prompt(cfg, w, ids, tokens, targets, out_dir, meta_common):
    T = NUM_VIRTUAL
    pm = get_peft_model(A.build_hf(cfg, w), PromptTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=T, prompt_tuning_init="RANDOM"))
    pm.eval()
    emb = pm.prompt_encoder["default"].embedding.weight
    assert tuple(emb.shape) == (T, cfg["dim"]), emb.shape
    g = torch.Generator().manual_seed(PROMPT_SEED)
    with torch.no_grad():
        emb.copy_(PROMPT_STD * torch.randn(emb.shape, generator=g))
    table = emb.detach().clone()
    trainable = [k for k, p in pm.named_parameters() if p.requires_grad]
    assert trainable == ["prompt_encoder.default.embedding.weight"], trainable

    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    pm.save_pretrained(out_dir)

    pm.zero_grad(set_to_none=True)
    full = pm(input_ids=tokens.long(), use_cache=False).logits.float()
    assert tuple(full.shape) == (BATCH, T + SEQ, cfg["vocab_size"]), full.shape
    logits = full[:, T:]
    loss = loss_of(logits, targets)
    loss.backward()
    out = {"tokens": tokens, "targets": targets, "logits": logits.detach().clone(),
           "loss": loss.detach().reshape(1).clone(),
           "grad.prompt_embeddings": emb.grad.detach().clone()}
    check_nonzero_grads(out)
    print(f"prompt tuning: loss {loss.item():.7f}")

    # PEFT's own loss. PEFT prepends T labels of -100 and HF shifts by one, so the logit at
    # full position j is scored against label j+1. Feeding all 17 ids with labels = ids
    # (first one and the ignored targets' ids set to -100) scores exactly our 30 targets;
    # the 17th position's logits are not scored and causality keeps positions 0..15 as above.
    labels = ids.clone()
    labels[:, 0] = IGNORE_INDEX
    for b, t in IGNORED:
        labels[b, t + 1] = IGNORE_INDEX
    with torch.no_grad():
        r = pm(input_ids=ids.long(), labels=labels.long(), use_cache=False)
        d_full17 = (r.logits[:, T:T + SEQ].float() - out["logits"]).abs().max().item()
        # the naive protocol: inputs = tokens [2,16], labels = tokens (ignored ones masked)
        naive_labels = tokens.clone().long()
        for b, t in IGNORED:
            if t + 1 < SEQ:
                naive_labels[b, t + 1] = IGNORE_INDEX
        naive = pm(input_ids=tokens.long(), labels=naive_labels, use_cache=False).loss.item()
    d_peft_loss = abs(r.loss.item() - loss.item())
    print(f"  PEFT loss (input ids [2,17], labels = ids with ids[:,0] and the ignored -100): "
          f"{r.loss.item():.7f}, |diff| {d_peft_loss:.3e}; logits of the 17-token run vs ours "
          f"{d_full17:.3e}")
    assert d_peft_loss <= TOL and d_full17 <= TOL
    print(f"  (naive protocol, inputs = labels = tokens [2,16]: PEFT loss {naive:.7f}; it scores "
          f"tokens[0] after the last virtual token and drops targets[:,15])")

    # hand model: the T rows prepended to the token embeddings, positions 0..T+S-1, causal
    ref = G.Llama(cfg, w, 4, 8)
    ref.set_lora(False)
    ptab = nn.Parameter(table.clone())
    h = torch.cat([ptab.unsqueeze(0).expand(BATCH, -1, -1), F.embedding(tokens.long(), ref.tok)], dim=1)
    ref_logits = l2c_forward_embeds(ref, h)[:, T:]
    ref_loss = loss_of(ref_logits, targets)
    ref_loss.backward()
    d_logits = (ref_logits - out["logits"]).abs().max().item()
    d_grad = (ptab.grad - out["grad.prompt_embeddings"]).abs().max().item()
    gmax = out["grad.prompt_embeddings"].abs().max().item()
    print(f"  PEFT vs llama2.c-convention model, prompt prepended, positions 0..{T + SEQ - 1}: "
          f"logits max |diff| {d_logits:.3e}, grad max |diff| {d_grad:.3e} (max |grad| {gmax:.3e})")
    with torch.no_grad():  # the other candidate rule (real tokens at 0..S-1) is clearly not PEFT's
        cos, sin = ref.rope_cos, ref.rope_sin
        pos = torch.cat([torch.arange(T), torch.arange(SEQ)])
        ref.rope_cos, ref.rope_sin = cos[pos], sin[pos]
        d_alt = (l2c_forward_embeds(ref, h.detach())[:, T:] - out["logits"]).abs().max().item()
        ref.rope_cos, ref.rope_sin = cos, sin
    print(f"  (with the real tokens at positions 0..{SEQ - 1} instead: max |diff| {d_alt:.3f})")
    assert d_alt > 1e-2
    assert d_logits <= TOL, d_logits
    assert d_grad <= TOL * max(1.0, gmax), d_grad
    with torch.no_grad():
        base = A.hf_logits(A.build_hf(cfg, w), tokens)
    d_prompt = (base - out["logits"]).abs().max().item()
    print(f"  (the prompt moves the logits by up to {d_prompt:.3f})")
    assert d_prompt > 1e-2

    meta = {**meta_common, "peft_type": "PROMPT_TUNING", "num_virtual_tokens": str(T),
            "prompt_tuning_init": "RANDOM (overwritten)",
            "prompt_init": f"{PROMPT_STD} * randn, Generator().manual_seed({PROMPT_SEED})",
            "prompt_seed": str(PROMPT_SEED),
            "positions": f"virtual tokens 0..{T - 1}, real tokens {T}..{T + SEQ - 1}",
            "logits_from": f"PEFT LlamaForCausalLM forward (P+S positions), first {T} dropped"}
    A.write_expected(os.path.join(out_dir, "expected.safetensors"), out, meta)

    with safe_open(os.path.join(out_dir, "adapter_model.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "pt"}, f.metadata()
        assert list(f.keys()) == ["prompt_embeddings"], list(f.keys())
        assert torch.equal(f.get_tensor("prompt_embeddings"), table)
        adapter_shapes = {k: list(f.get_tensor(k).shape) for k in f.keys()}
    with open(os.path.join(out_dir, "adapter_config.json")) as f:
        c = json.load(f)
    assert c["peft_type"] == "PROMPT_TUNING" and c["num_virtual_tokens"] == T
    pm2 = PeftModel.from_pretrained(A.build_hf(cfg, w), out_dir)
    pm2.eval()
    d_load = (A.hf_logits(pm2, tokens)[:, T:] - out["logits"]).abs().max().item()
    print(f"  PeftModel.from_pretrained vs saved logits: max |diff| {d_load:.3e}")
    assert d_load < 1e-6
    list_dir(out_dir)
    return {"loss": loss.item(), "peft_loss": r.loss.item(), "naive_peft_loss": naive,
            "adapter": adapter_shapes,
            "diffs": {"hand": d_logits, "grad": d_grad, "peft_loss": d_peft_loss,
                      "full17": d_full17, "load": d_load, "alt_positions": d_alt}}


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
    G.check_oracle(G.Llama(cfg, w, 4, 8), os.path.join(os.path.dirname(ckpt), "reference_greedy.txt"))

    gb = torch.Generator().manual_seed(BATCH_SEED)
    ids = torch.randint(0, VOCAB_DRAW, (BATCH, SEQ + 1), generator=gb)
    tokens = ids[:, :-1].contiguous().to(torch.int32)
    targets = ids[:, 1:].contiguous().clone()
    for b, t in IGNORED:
        targets[b, t] = IGNORE_INDEX
    targets = targets.to(torch.int32)

    meta_common = {
        "format": "peftc peft fixture v1",
        "generator": "tests/golden/gen_peft_ia3_prompt.py",
        "checkpoint": "stories260K.bin", "checkpoint_sha256": ck_sha,
        "batch_seed": str(BATCH_SEED), "batch": str(BATCH), "seq": str(SEQ),
        "ignore_index": str(IGNORE_INDEX),
        "ignored_targets": ";".join(f"{b},{t}" for b, t in IGNORED),
        "loss": "mean cross-entropy of logits vs targets over the non-ignored targets",
        "torch_version": torch.__version__, "transformers_version": transformers.__version__,
        "peft_version": peft.__version__,
    }
    r_ia3 = make_ia3(cfg, w, ck_sha, tokens, targets, os.path.join(args.out_dir, IA3_DIR_NAME), meta_common)
    r_pt = make_prompt(cfg, w, ids, tokens, targets, os.path.join(args.out_dir, PROMPT_DIR_NAME), meta_common)
    for name, r in (("ia3", r_ia3), ("prompt", r_pt)):
        print(f"summary {name}: " + json.dumps({k: v for k, v in r.items() if k != "adapter"}, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
