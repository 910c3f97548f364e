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
from peft import IA3Config, PromptTuningConfig, get_peft_model  # noqa: E402

IA3_DIR_NAME = "peft_ia3_stories260k"
PROMPT_DIR_NAME = "peft_prompt_stories260k"

IA3_TARGETS = ["k_proj", "v_proj", "down_proj"]  # draw order inside a layer
IA3_FF = ["down_proj"]
IA3_SEED, IA3_STD = 2025, 0.3          # ia3_l = 1 + 0.3 * randn
PROMPT_SEED, PROMPT_STD = 2026, 0.5    # table = 0.5 * randn
NUM_VIRTUAL = 4
BATCH, SEQ, IGNORE_INDEX, IGNORED, TOL = C.BATCH, C.SEQ, C.IGNORE_INDEX, C.IGNORED, C.TOL
SIZE_LIMIT = 600 * 1024


def ia3_key(l, name):
    parent = "mlp" if name == "down_proj" else "self_attn"
    return parent, f"base_model.model.model.layers.{l}.{parent}.{name}.ia3_l"


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


# ---- IA3 -------------------------------------------------------------------
def make_ia3(cfg, w, ckpt_sha, tokens, targets, out_dir, meta_common):
    n_layers = cfg["n_layers"]
    pm = get_peft_model(C.build_hf(cfg, w), IA3Config(
        task_type="CAUSAL_LM", target_modules=IA3_TARGETS, feedforward_modules=IA3_FF))
    pm.eval()
    g = torch.Generator().manual_seed(IA3_SEED)
    l_hf, l_l2c = {}, {}
    with torch.no_grad():
        for l, name, parent, key, p in ia3_params(pm, n_layers):
            p.copy_(1.0 + IA3_STD * torch.randn(p.shape, generator=g))
            l_hf[key] = p.detach().clone()
            l_l2c[key] = C.to_l2c(cfg, name, l_hf[key])
    assert len(l_hf) == 3 * n_layers
    trainable = [k for k, p in pm.named_parameters() if p.requires_grad]
    assert len(trainable) == 3 * n_layers and all(".ia3_l." in k for k in trainable), trainable

    # save with the k_proj rows in llama2.c order, then restore the HF-order values
    C.save_pretrained_as(pm, out_dir, [(key, p) for *_, key, p in ia3_params(pm, n_layers)], l_l2c, l_hf)

    out, logits, loss = C.peft_forward_backward(pm, tokens, targets)
    for l, name, parent, key, p in ia3_params(pm, n_layers):
        out["grad." + key] = C.to_l2c(cfg, name, p.grad.detach().clone())
    C.check_nonzero_grads(out)
    print(f"IA3: loss {loss.item():.7f}")

    # the llama2.c-convention model with IA3 by hand, l2c order
    ref = C.hand_llama(cfg, w)
    for l, layer in enumerate(ref.layers):
        for name in IA3_TARGETS:
            _, key = ia3_key(l, name)
            setattr(layer, name, IA3Hand(getattr(layer, name), l_l2c[key], name in IA3_FF))
    ref_logits = ref(tokens.long())
    ref_loss = C.loss_of(ref_logits, targets)
    ref_loss.backward()
    d_logits = C.check_hand(ref_logits, ref_loss, logits, loss, "IA3 (l2c order)")
    d_grad = C.check_hand_grads(((getattr(layer, name).l.grad, ia3_key(l, name)[1])
                                 for l, layer in enumerate(ref.layers) for name in IA3_TARGETS), out)
    C.check_moves_logits(cfg, w, tokens, out["logits"], "IA3")

    merged_model, d_merge = C.merge_and_unload(pm, tokens, out)
    d_direct = 0.0
    for l, name, parent, src, key, wt in C.merged_weights(merged_model, cfg, IA3_TARGETS):
        lv = l_l2c[ia3_key(l, name)[1]]  # [out,1] scales rows, [1,in] scales columns: broadcasting does both
        d_direct = max(d_direct, (wt - w[src][l] * lv).abs().max().item())
        out[key] = wt
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
            "merged_layers": ",".join(map(str, C.MERGED_LAYERS)),
            "logits_from": "PEFT LlamaForCausalLM (permuted q/k, HF-order ia3_l), unmerged"}
    C.write_expected(os.path.join(out_dir, "expected.safetensors"), out, meta)

    # what PEFT wrote: keys, values, config; and it loads back
    c = C.check_saved(out_dir, l_l2c)
    assert all(out["grad." + k].shape == v.shape for k, v in l_l2c.items())
    adapter_shapes = {k: list(v.shape) for k, v in sorted(l_l2c.items())}
    assert c["peft_type"] == "IA3" and sorted(c["target_modules"]) == sorted(IA3_TARGETS)
    assert c["feedforward_modules"] == IA3_FF or sorted(c["feedforward_modules"]) == IA3_FF

    def to_hf_rows(pm2):  # the file is in l2c order: permute k back to HF to run it in HF
        for l, name, parent, key, p in ia3_params(pm2, n_layers):
            assert torch.equal(p, l_l2c[key]), key
            p.copy_(C.to_hf(cfg, name, p.detach().clone()))
    d_load = (C.reload_logits(cfg, w, out_dir, tokens, to_hf_rows) - out["logits"]).abs().max().item()
    print(f"  PeftModel.from_pretrained (k rows re-permuted to HF) vs saved logits: max |diff| {d_load:.3e}")
    assert d_load < 1e-6
    C.list_dir(out_dir, SIZE_LIMIT)
    return {"loss": loss.item(), "adapter": adapter_shapes,
            "diffs": {"hand": d_logits, "grad": d_grad, "merge": d_merge, "direct": d_direct,
                      "load": d_load}}


# ---- prompt tuning ---------------------------------------------------------
def make_prompt(cfg, w, ids, tokens, targets, out_dir, meta_common):
    T = NUM_VIRTUAL
    pm = get_peft_model(C.build_hf(cfg, w), PromptTuningConfig(
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

    C.save_pretrained_as(pm, out_dir, [], {}, {})

    pm.zero_grad(set_to_none=True)
    full = pm(input_ids=tokens.long(), use_cache=False).logits.float()
    assert tuple(full.shape) == (BATCH, T + SEQ, cfg["vocab_size"]), full.shape
    logits = full[:, T:]
    loss = C.loss_of(logits, targets)
    loss.backward()
    out = {"tokens": tokens, "targets": targets, "logits": logits.detach().clone(),
           "loss": loss.detach().reshape(1).clone(),
           "grad.prompt_embeddings": emb.grad.detach().clone()}
    C.check_nonzero_grads(out)
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
    ref = C.hand_llama(cfg, w)
    ptab = nn.Parameter(table.clone())
    h = torch.cat([ptab.unsqueeze(0).expand(BATCH, -1, -1), F.embedding(tokens.long(), ref.tok)], dim=1)
    ref_logits = l2c_forward_embeds(ref, h)[:, T:]
    ref_loss = C.loss_of(ref_logits, targets)
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
    C.check_moves_logits(cfg, w, tokens, out["logits"], "the prompt")

    meta = {**meta_common, "peft_type": "PROMPT_TUNING", "num_virtual_tokens": str(T),
            "prompt_tuning_init": "RANDOM (overwritten)",
            "prompt_init": f"{PROMPT_STD} * randn, Generator().manual_seed({PROMPT_SEED})",
            "prompt_seed": str(PROMPT_SEED),
            "positions": f"virtual tokens 0..{T - 1}, real tokens {T}..{T + SEQ - 1}",
            "logits_from": f"PEFT LlamaForCausalLM forward (P+S positions), first {T} dropped"}
    C.write_expected(os.path.join(out_dir, "expected.safetensors"), out, meta)

    c = C.check_saved(out_dir, {"prompt_embeddings": table})
    adapter_shapes = {"prompt_embeddings": list(table.shape)}
    assert c["peft_type"] == "PROMPT_TUNING" and c["num_virtual_tokens"] == T
    d_load = (C.reload_logits(cfg, w, out_dir, tokens)[:, T:] - out["logits"]).abs().max().item()
    print(f"  PeftModel.from_pretrained vs saved logits: max |diff| {d_load:.3e}")
    assert d_load < 1e-6
    C.list_dir(out_dir, SIZE_LIMIT)
    return {"loss": loss.item(), "peft_loss": r.loss.item(), "naive_peft_loss": naive,
            "adapter": adapter_shapes,
            "diffs": {"hand": d_logits, "grad": d_grad, "peft_loss": d_peft_loss,
                      "full17": d_full17, "load": d_load, "alt_positions": d_alt}}


def main():
    args, ckpt, cfg, w, ck_sha = C.start(__doc__)
    G.check_oracle(G.Llama(cfg, w, 4, 8), os.path.join(os.path.dirname(ckpt), "reference_greedy.txt"))
    ids, tokens, targets = C.make_batch()
    meta_common = C.batch_meta("gen_peft_ia3_prompt.py", ck_sha)
    r_ia3 = make_ia3(cfg, w, ck_sha, tokens, targets, os.path.join(args.out_dir, IA3_DIR_NAME), meta_common)
    r_pt = make_prompt(cfg, w, ids, tokens, targets, os.path.join(args.out_dir, PROMPT_DIR_NAME), meta_common)
    for name, r in (("ia3", r_ia3), ("prompt", r_pt)):
        print(f"summary {name}: " + json.dumps({k: v for k, v in r.items() if k != "adapter"}, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
