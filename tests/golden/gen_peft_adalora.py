#!/usr/bin/env python3
"""Generate the PEFT-written AdaLoRA fixture tests/data/peft_adalora_stories260k/.

1. The adapter (adapter_config.json, adapter_model.safetensors, expected.safetensors).
   Hugging Face PEFT wraps the transformers LlamaForCausalLM of gen_peft_adapter.build_hf
   (stories260K, q/k rows permuted to HF order) with AdaLoraConfig(init_r=4, target_r=2,
   lora_alpha=8, target_modules = q,k,v,o,gate,up,down, orth_reg_weight=0.3, total_step=100,
   tinit=10, tfinal=20, deltaT=5). PEFT's init is checked (E = 0, A and B ~ N(0, 0.02)), then
   every lora_A / lora_B is overwritten with 0.1 N(0,1) and every lora_E with 0.3 N(0,1)
   (torch.Generator seed 2028, layer-major, q..down, tensors A, E, B), so ΔW != 0 and the
   orthogonal regularizer has gradients. save_pretrained writes the directory with lora_B's
   q_proj/k_proj rows (its output rows) un-permuted to llama2.c order; rank_pattern stays null
   (no allocation ran), so nothing is pruned.
   expected.safetensors: the batch [2,16] of gen_peft_ia3_prompt.py (seed 42, two ignored
   targets); PEFT's logits and `loss` = the model's loss with labels, which AdaLoraModel.forward
   computes as CE + orth_reg_weight * mean_P ‖C(P) − I‖_F (transformers shifts no labels here:
   shift_labels = targets); `task_loss` (the CE) and `orth_reg` (the mean of the norms);
   gradients of all 105 lora_* tensors (lora_B q/k rows in llama2.c order); merge_and_unload's
   weights of layers 0 and 4 (llama2.c rows) and the merged model's logits. Every number is
   cross-checked against gen_llama_lora's llama2.c-convention model with AdaLoRA written by hand
   (y = base(x) + (x (A ⊙ E)ᵀ Bᵀ) alpha/(init_r + 1e-5)), and the directory loads back.

2. The rank allocator (alloc.safetensors) and a pruned checkpoint (pruned/).
   A second PeftModel, AdaLoraConfig(init_r=4, target_r=2, lora_alpha=8, target_modules =
   q_proj, v_proj, total_step=10, tinit=2, tfinal=3, deltaT=2, beta1=0.85, beta2=0.85): 10
   modules, budget 40 -> 20. For step t = 1..10 the script sets every lora_* param to the
   previous step's value plus 0.01 N(0,1) (an "optimizer step"; masked E entries come back, as
   with a real optimizer) and its .grad to N(0,1) times a per-module scale (layer 3's v_proj
   1e-3, so its ranks score lowest and it ends at rank 0; layer 1's q_proj 10), then calls
   PEFT's own model.base_model.update_and_allocate(t): importance EMAs for t < 7, masking at
   t = 4 and 6 (deltaT), the final mask at t = 7 = total_step - tfinal, the mask re-applied at
   t = 8..10. Recorded per step (keys without the adapter name):
     alloc.<t>.param.<key>, alloc.<t>.grad.<key>  what the allocator was fed,
     alloc.<t>.E.<key of lora_E>                 lora_E after the call,
     alloc.<t>.budget                            RankAllocator.budget_schedule(t)[0] (i32),
     alloc.<t>.score.<module>                    the triplet scores mask_to_budget ranked
                                                 (only at steps that allocate),
     alloc.<t>.keep.<module>                     config.rank_pattern after the step (0/1, f32).
   After step 10 PEFT's save_pretrained writes pruned/ (lora_B q rows in llama2.c order): its
   rank_pattern masks, and only the kept ranks (layer 3's v_proj as [0, 64], [0, 1], [32, 0]).
   pruned/expected.safetensors holds PEFT's logits for the batch with that adapter
   (`logits`), which PeftModel.from_pretrained reproduces from the directory.

tests/golden/adalora.md has the numbers and what peftc matches.

Usage (from the repository root):
    /work/venv-golden/bin/python tests/golden/gen_peft_adalora.py [--out-dir tests/data] [--ckpt PATH]
"""
import os
import sys

PIN_HASH_SEED = True  # run as a script: peft_fixture_common re-executes it with PYTHONHASHSEED=0
import peft_fixture_common as C  # noqa: E402  (HF builder, row permutations, batch, loss, helpers)

import json  # noqa: E402
import warnings  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from safetensors import safe_open  # noqa: E402

import gen_llama_lora as G  # noqa: E402
from peft import AdaLoraConfig, get_peft_model  # noqa: E402
from peft.tuners.adalora.layer import RankAllocator  # noqa: E402

warnings.filterwarnings("ignore", category=UserWarning)
DIR_NAME = "peft_adalora_stories260k"
TARGETS = [n for n, _, _ in G.MODULES]  # q,k,v,o,gate,up,down
INIT_R, TARGET_R, ALPHA, ORTH = 4, 2, 8, 0.3
SCHEDULE = dict(total_step=100, tinit=10, tfinal=20, deltaT=5)
TENSORS = ["lora_A", "lora_E", "lora_B"]
SEED, STD, E_STD = 2028, 0.1, 0.3
SIZE_LIMIT = 1400 * 1024  # the directory: the adapter fixture, the allocator run, the pruned checkpoint

# the allocator run
ALLOC_TARGETS = ["q_proj", "v_proj"]
ALLOC_CFG = dict(init_r=4, target_r=2, lora_alpha=8, total_step=10, tinit=2, tfinal=3, deltaT=2,
                 beta1=0.85, beta2=0.85)
ALLOC_STEPS = 10
ALLOC_SEED = 77
GRAD_SCALE = {(3, "v_proj"): 1e-3, (1, "q_proj"): 10.0}
PRUNED_LAYER = (3, "v_proj")


def key_of(l, name, parent, t):
    return f"base_model.model.model.layers.{l}.{parent}.{name}.{t}"


def rows_l2c(cfg, name, t, tensor):
    return C.to_l2c(cfg, name, t) if tensor == "lora_B" else t


def rows_hf(cfg, name, t, tensor):
    return C.to_hf(cfg, name, t) if tensor == "lora_B" else t


def scale():
    return ALPHA / (INIT_R + 1e-5)


def ada_params(pm, n_layers, names=None):
    """(layer, name, parent, tensor, key, Parameter), layer-major, MODULES order, TENSORS order."""
    layers = pm.base_model.model.model.layers
    for l in range(n_layers):
        for name, parent, _ in G.MODULES:
            if names and name not in names:
                continue
            mod = getattr(getattr(layers[l], parent), name)
            for t in TENSORS:
                yield l, name, parent, t, key_of(l, name, parent, t), getattr(mod, t)["default"]


class AdaHand(nn.Module):
    """AdaLoRA by hand on a gen_llama_lora.LoraLinear with LoRA off."""

    def __init__(self, base, f, s):
        super().__init__()
        self.base, self.s = base, s
        self.f = nn.ParameterList([nn.Parameter(f[t].detach().clone()) for t in TENSORS])

    def delta(self):
        a, e, b = self.f
        return (b @ (a * e)) * self.s

    def forward(self, x):
        a, e, b = self.f
        return self.base(x) + (x @ (a * e).T @ b.T) * self.s


def orth_by_hand(mats):
    """mats: [(A, B)]: mean over A's and B's of ‖C − I‖_F"""
    norms = []
    for a, b in mats:
        for c in (a @ a.T, b.T @ b):
            norms.append(torch.linalg.norm(c - torch.eye(c.shape[0]), "fro"))
    return torch.stack(norms).mean()


def make_adapter(cfg, w, ck_sha, tokens, targets, out_dir, meta_common):
    n_layers = cfg["n_layers"]
    pm = get_peft_model(C.build_hf(cfg, w), AdaLoraConfig(
        task_type="CAUSAL_LM", target_modules=TARGETS, init_r=INIT_R, target_r=TARGET_R, lora_alpha=ALPHA,
        orth_reg_weight=ORTH, **SCHEDULE))
    pm.eval()
    # PEFT's init: E = 0, A and B ~ N(0, 0.02); ranknum = init_r
    for l, name, parent, t, key, p in ada_params(pm, n_layers):
        if t == "lora_E":
            assert p.abs().max() == 0, key
        else:
            assert 0.01 < p.std().item() < 0.03, (key, p.std().item())
    mod0 = pm.base_model.model.model.layers[0].self_attn.q_proj
    assert mod0.ranknum["default"].item() == INIT_R and mod0.scaling["default"] == ALPHA
    g = torch.Generator().manual_seed(SEED)
    v_hf, v_l2c = {}, {}
    with torch.no_grad():
        for l, name, parent, t, key, p in ada_params(pm, n_layers):
            p.copy_((E_STD if t == "lora_E" else STD) * torch.randn(p.shape, generator=g))
            v_hf[key] = p.detach().clone()
            v_l2c[key] = rows_l2c(cfg, name, v_hf[key], t)
    assert len(v_hf) == 3 * 7 * n_layers
    trainable = [k for k, p in pm.named_parameters() if p.requires_grad]
    assert len(trainable) == len(v_hf) and all(".lora_" in k for k in trainable), trainable

    C.save_pretrained_as(pm, out_dir, [(key, p) for *_, key, p in ada_params(pm, n_layers)], v_l2c, v_hf)

    # forward + backward through PEFT: the model's loss includes the orthogonal regularizer
    pm.zero_grad(set_to_none=True)
    o = pm(input_ids=tokens.long(), labels=targets.long(), shift_labels=targets.long(), use_cache=False)
    logits = o.logits.float()
    task_loss = C.loss_of(logits, targets)
    mats = [(v_hf[key_of(l, n, par, "lora_A")], v_hf[key_of(l, n, par, "lora_B")])
            for l in range(n_layers) for n, par, _ in G.MODULES]
    reg = orth_by_hand(mats)
    d_loss = abs(o.loss.item() - (task_loss.item() + ORTH * reg.item()))
    print(f"AdaLoRA: loss {o.loss.item():.7f} = CE {task_loss.item():.7f} + {ORTH} * orth {reg.item():.7f} "
          f"(|diff| {d_loss:.2e})")
    assert d_loss < 1e-5, d_loss
    o.loss.backward()
    out = {"tokens": tokens, "targets": targets, "logits": logits.detach().clone(),
           "loss": o.loss.detach().reshape(1).clone(), "task_loss": task_loss.detach().reshape(1).clone(),
           "orth_reg": reg.detach().reshape(1).clone()}
    for l, name, parent, t, key, p in ada_params(pm, n_layers):
        out["grad." + key] = rows_l2c(cfg, name, p.grad.detach().clone(), t)
    C.check_nonzero_grads(out)

    # the llama2.c-convention model with AdaLoRA by hand, l2c order
    ref = C.hand_llama(cfg, w)
    for l, layer in enumerate(ref.layers):
        for name, parent, _ in G.MODULES:
            f = {t: v_l2c[key_of(l, name, parent, t)] for t in TENSORS}
            setattr(layer, name, AdaHand(getattr(layer, name), f, scale()))
    ref_logits = ref(tokens.long())
    hand_mats = [(getattr(layer, n).f[0], getattr(layer, n).f[2]) for layer in ref.layers for n, _, _ in G.MODULES]
    ref_loss = C.loss_of(ref_logits, targets) + ORTH * orth_by_hand(hand_mats)
    ref_loss.backward()
    d_logits = C.check_hand(ref_logits, ref_loss, logits, o.loss, "AdaLoRA")
    d_grad = C.check_hand_grads(((getattr(layer, name).f[i].grad, key_of(l, name, parent, t))
                                 for l, layer in enumerate(ref.layers) for name, parent, _ in G.MODULES
                                 for i, t in enumerate(TENSORS)), out)
    C.check_moves_logits(cfg, w, tokens, out["logits"], "AdaLoRA")

    merged_model, d_merge = C.merge_and_unload(pm, tokens, out)
    d_direct, _ = C.check_merged_delta(merged_model, cfg, w, ref, out)

    meta = dict(meta_common, peft_type="ADALORA", target_modules=",".join(TARGETS), init_r=str(INIT_R),
                target_r=str(TARGET_R), lora_alpha=str(ALPHA), orth_reg_weight=str(ORTH),
                loss="CE over the non-ignored targets + orth_reg_weight * orth_reg (AdaLoraModel.forward)",
                adalora_values=f"A, B {STD} * randn, E {E_STD} * randn, Generator().manual_seed({SEED}), "
                               "layer-major, q,k,v,o,gate,up,down, A,E,B",
                **C.l2c_rows_meta("q/k lora_B rows un-permuted"))
    C.write_expected(os.path.join(out_dir, "expected.safetensors"), out, meta)

    c = C.check_saved(out_dir, v_l2c)  # no ranknum
    assert c["peft_type"] == "ADALORA" and c["rank_pattern"] is None and c["init_r"] == INIT_R

    def to_hf_rows(pm2):
        for l, name, parent, t, key, p in ada_params(pm2, n_layers):
            assert torch.equal(p, v_l2c[key]), key
            p.copy_(rows_hf(cfg, name, p.detach().clone(), t))
    d_load = (C.reload_logits(cfg, w, out_dir, tokens, to_hf_rows) - out["logits"]).abs().max().item()
    print(f"  PeftModel.from_pretrained (q/k rows re-permuted to HF) vs saved logits: max |diff| {d_load:.3e}")
    assert d_load < 1e-6
    return {"loss": o.loss.item(), "task_loss": task_loss.item(), "orth_reg": reg.item(),
            "diffs": {"hand": d_logits, "grad": d_grad, "merge": d_merge, "direct": d_direct, "load": d_load}}


def make_alloc(cfg, w, tokens, out_dir, meta_common):
    n_layers = cfg["n_layers"]
    pm = get_peft_model(C.build_hf(cfg, w), AdaLoraConfig(
        task_type="CAUSAL_LM", target_modules=ALLOC_TARGETS, **ALLOC_CFG))
    pm.eval()
    model, ra = pm.base_model, pm.base_model.rankallocator
    assert ra.init_bgt == 4 * 2 * n_layers and ra.target_bgt == 2 * 2 * n_layers, (ra.init_bgt, ra.target_bgt)
    recorded = {}

    # the triplet scores mask_to_budget ranks, computed from its EMAs exactly as it does
    orig = RankAllocator.mask_to_budget

    def spy(self, m, budget):
        for n, p in m.named_parameters():
            if "lora_A.default" in n:
                base = n.replace(".lora_A.default", "")
                a = torch.mean(self._element_score(n), dim=1, keepdim=True)
                b = torch.mean(self._element_score(base + ".lora_B.default"), dim=0, keepdim=False).view(-1, 1)
                s = self._combine_ipt(self._element_score(base + ".lora_E.default"), torch.cat([a, b], dim=1))
                recorded[base] = s.detach().clone()
        return orig(self, m, budget)

    RankAllocator.mask_to_budget = spy
    g = torch.Generator().manual_seed(ALLOC_SEED)
    out = {}
    prev = {key: p.detach().clone() for *_, key, p in ada_params(pm, n_layers, ALLOC_TARGETS)}
    masked_steps = []
    for t in range(1, ALLOC_STEPS + 1):
        recorded.clear()
        with torch.no_grad():
            for l, name, parent, tn, key, p in ada_params(pm, n_layers, ALLOC_TARGETS):
                p.copy_(prev[key] + 0.01 * torch.randn(p.shape, generator=g))
                p.grad = torch.randn(p.shape, generator=g) * GRAD_SCALE.get((l, name), 1.0)
                out[f"alloc.{t}.param.{key}"] = p.detach().clone()
                out[f"alloc.{t}.grad.{key}"] = p.grad.detach().clone()
        model.update_and_allocate(t)
        budget, _ = ra.budget_schedule(t)
        out[f"alloc.{t}.budget"] = torch.tensor([budget], dtype=torch.int32)
        rp = model.peft_config["default"].rank_pattern
        for l, name, parent, tn, key, p in ada_params(pm, n_layers, ALLOC_TARGETS):
            prev[key] = p.detach().clone()
            mod = f"model.layers.{l}.{parent}.{name}"
            if tn == "lora_E":
                out[f"alloc.{t}.E.{key}"] = p.detach().clone()
                if rp:
                    out[f"alloc.{t}.keep.{mod}"] = torch.tensor(rp[mod + ".lora_E.default"], dtype=torch.float32)
            if recorded and tn == "lora_A":
                out[f"alloc.{t}.score.{mod}"] = recorded[mod].reshape(-1)
        if recorded:
            masked_steps.append(t)
    RankAllocator.mask_to_budget = orig
    assert masked_steps == [4, 6, 7], masked_steps
    rp = model.peft_config["default"].rank_pattern
    kept = {k: sum(v) for k, v in rp.items()}
    print(f"allocator: steps that allocated {masked_steps}; final ranks "
          + ", ".join(f"{k.split('.')[2]}.{k.split('.')[4]}={v}" for k, v in kept.items()))
    pl, pn = PRUNED_LAYER
    assert kept[f"model.layers.{pl}.self_attn.{pn}.lora_E.default"] == 0
    assert sum(kept.values()) == ra.target_bgt

    # the pruned checkpoint: what PEFT saves after the run
    with torch.no_grad():
        logits = C.hf_logits(pm, tokens)
    pdir = os.path.join(out_dir, "pruned")
    hf_vals = {key: p.detach().clone() for *_, key, p in ada_params(pm, n_layers, ALLOC_TARGETS)}
    with torch.no_grad():
        for l, name, parent, tn, key, p in ada_params(pm, n_layers, ALLOC_TARGETS):
            p.copy_(rows_l2c(cfg, name, hf_vals[key], tn))
    pm.save_pretrained(pdir)
    with torch.no_grad():
        for *_, key, p in ada_params(pm, n_layers, ALLOC_TARGETS):
            p.copy_(hf_vals[key])
    with open(os.path.join(pdir, "adapter_config.json")) as f:
        c = json.load(f)
    assert sorted(c["rank_pattern"]) == sorted(k.replace(".default", "") for k in rp), c["rank_pattern"]
    with safe_open(os.path.join(pdir, "adapter_model.safetensors"), "pt") as f:
        shapes = {k: tuple(f.get_tensor(k).shape) for k in f.keys()}
    zk = f"base_model.model.model.layers.{pl}.self_attn.{pn}"
    assert shapes[zk + ".lora_A"] == (0, 64) and shapes[zk + ".lora_E"] == (0, 1) and shapes[zk + ".lora_B"] == (32, 0), shapes

    def to_hf_rows(pm2):
        for l, name, parent, tn, key, p in ada_params(pm2, n_layers, ALLOC_TARGETS):
            p.copy_(rows_hf(cfg, name, p.detach().clone(), tn))
    d_load = (C.reload_logits(cfg, w, pdir, tokens, to_hf_rows) - logits).abs().max().item()
    base_logits = C.hf_logits(C.build_hf(cfg, w), tokens)
    moved = (base_logits - logits).abs().max().item()
    print(f"  pruned checkpoint: PeftModel.from_pretrained vs the run's logits max |diff| {d_load:.3e} "
          f"(the adapter moves them by {moved:.3f})")
    assert d_load < 1e-5 and moved > 1e-3
    meta = dict(meta_common, peft_type="ADALORA", target_modules=",".join(ALLOC_TARGETS),
                config=json.dumps(ALLOC_CFG, sort_keys=True), steps=str(ALLOC_STEPS),
                feed=f"param_t = param_(t-1) + 0.01 randn, grad = randn * scale, Generator({ALLOC_SEED}), "
                     "layer-major, A,E,B, param then grad", grad_scale=json.dumps({f"{k[0]}.{k[1]}": v for k, v in GRAD_SCALE.items()}),
                masked_steps=",".join(map(str, masked_steps)), row_order="HF (the allocator does not depend on it)")
    C.write_expected(os.path.join(out_dir, "alloc.safetensors"), out, meta)
    C.write_expected(os.path.join(pdir, "expected.safetensors"), {"tokens": tokens, "logits": logits},
                     dict(meta_common, logits_from="PEFT after the allocator run (masked E), unmerged; "
                                                   "= PeftModel.from_pretrained(pruned/)"))
    return {"masked_steps": masked_steps, "final_ranks": {k.replace(".default", ""): v for k, v in kept.items()},
            "budgets": [int(out[f"alloc.{t}.budget"][0]) for t in range(1, ALLOC_STEPS + 1)], "load": d_load}


def main():
    args, ckpt, cfg, w, ck_sha = C.start(__doc__)
    ids, tokens, targets = C.make_batch()
    meta_common = C.batch_meta("gen_peft_adalora.py", ck_sha, loss=False)

    out_dir = os.path.join(args.out_dir, DIR_NAME)
    s1 = make_adapter(cfg, w, ck_sha, tokens, targets, out_dir, meta_common)
    s2 = make_alloc(cfg, w, tokens, out_dir, meta_common)
    for root, _, files in sorted(os.walk(out_dir)):
        for fn in sorted(files):
            p = os.path.join(root, fn)
            print(f"  {os.path.relpath(p, out_dir):34s} {os.path.getsize(p):8d}  {C.sha(p)}")
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(out_dir) for f in fs)
    assert total < SIZE_LIMIT, total
    print("summary adalora: " + json.dumps({"adapter": s1, "alloc": s2}, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
