#!/usr/bin/env python3
"""Generate the fixture of `peftc combine` (PEFT's add_weighted_adapter) on stories260K.

Three LoRA adapters are made by Hugging Face PEFT on the stories260K HF twin (peft_fixture_common
.build_hf), every lora_A / lora_B set to seeded N(0, 0.1^2) values, and written with PEFT's
save_pretrained (q_proj/k_proj lora_B rows stored in llama2.c order, as every fixture here):

  tests/data/peft_combine_stories260k/a/  r 4, alpha 8, q_proj v_proj down_proj
  tests/data/peft_combine_stories260k/b/  r 4, alpha 3, rsLoRA, q_proj k_proj down_proj
  tests/data/peft_combine_stories260k/c/  r 2, alpha 5, v_proj o_proj, rank_pattern {o_proj: 3},
                                          alpha_pattern {v_proj: 7}

Then the three are loaded side by side into one PeftModel and PEFT's own add_weighted_adapter
builds (weights a 0.7, b -0.4, c 1.3):

  cat     a, b, c   combination_type="cat"    (r 4+4+3 = 11, zero-padded where fewer)
  linear  a, b      combination_type="linear" (equal ranks)
  svd     a, b, c   combination_type="svd"    (svd_rank None: max rank 4)
  single  b (0.5)   combination_type="svd"    (one adapter: PEFT switches to linear)
  ties             a, b     density 0.5 (A and B merged separately, sign by total mass)
  magnitude_prune  a, b     density 0.4
  ties_svd         a, b, c  density 0.6, majority_sign_method="frequency" (on the ΔWᵢ, then svd)

For each: its tensors (prefix "<name>."; llama2.c rows), PEFT's logits (not for the last three:
size) and loss on the fixed batch [2,16] with it active, and
PEFT's saved adapter_config.json (<name>_config.json). Plus "svd_clamp": svd_rank 3,
svd_clamp 0.9 computed by PEFT's own steps, but with one sign per singular pair fixed (the
largest |entry| of each Vh row positive, runtime/svd.h's rule): torch.quantile over the entries
of U·S and Vh depends on LAPACK's arbitrary signs, so the clamp is only reproducible under a
fixed sign rule. The script checks that the same steps without the sign rule give exactly
PEFT's svd (unclamped) tensors.

Usage (from the repository root):
    /work/venv-golden/bin/python tests/golden/gen_peft_combine.py [--out-dir tests/data] [--ckpt PATH]
"""
import os
import sys

PIN_HASH_SEED = True  # run as a script: peft_fixture_common re-executes it with PYTHONHASHSEED=0
import peft_fixture_common as C  # noqa: E402

import json  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

import torch  # noqa: E402

from peft import LoraConfig, get_peft_model  # noqa: E402

DIR_NAME = "peft_combine_stories260k"
SEED, STD = 2031, 0.1
SIZE_LIMIT = 1000 * 1024
ADAPTERS = {
    "a": dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]),
    "b": dict(r=4, lora_alpha=3, use_rslora=True, target_modules=["q_proj", "k_proj", "down_proj"]),
    "c": dict(r=2, lora_alpha=5, target_modules=["v_proj", "o_proj"], rank_pattern={"o_proj": 3},
              alpha_pattern={"v_proj": 7}),
}
WEIGHTS = {"a": 0.7, "b": -0.4, "c": 1.3}
COMBOS = {  # name: (adapters, weights, add_weighted_adapter kwargs)
    "cat": (["a", "b", "c"], None, dict(combination_type="cat")),
    "linear": (["a", "b"], None, dict(combination_type="linear")),
    "svd": (["a", "b", "c"], None, dict(combination_type="svd")),
    "single": (["b"], [0.5], dict(combination_type="svd")),
    "ties": (["a", "b"], None, dict(combination_type="ties", density=0.5)),
    "magnitude_prune": (["a", "b"], None, dict(combination_type="magnitude_prune", density=0.4)),
    "ties_svd": (["a", "b", "c"], None, dict(combination_type="ties_svd", density=0.6,
                                             majority_sign_method="frequency")),
}
NO_LOGITS = {"ties", "magnitude_prune", "ties_svd"}  # the loss only: the file stays under 1 MiB
CLAMP = dict(adapters=["a", "b", "c"], svd_rank=3, svd_clamp=0.9)


def lora_layers(pm, name):
    """(module name, LoraLayer) of every module holding adapter `name`"""
    for mod_name, mod in pm.base_model.model.named_modules():
        if hasattr(mod, "lora_A") and name in mod.lora_A:
            yield mod_name, mod


def proj(mod_name):
    return mod_name.rsplit(".", 1)[1]


def key(mod_name, t):
    return f"base_model.model.{mod_name}.{t}.weight"


def l2c_tensors(cfg, pm, name):
    """the adapter's tensors under PEFT's file keys, lora_B rows in llama2.c order"""
    out = {}
    for mod_name, mod in lora_layers(pm, name):
        out[key(mod_name, "lora_A")] = mod.lora_A[name].weight.detach().clone()
        out[key(mod_name, "lora_B")] = C.to_l2c(cfg, proj(mod_name), mod.lora_B[name].weight.detach().clone())
    return out


def make_input(cfg, w, name, gen, out_dir):
    """one input adapter: random A/B (HF rows) in a fresh PeftModel, saved in llama2.c rows"""
    pm = get_peft_model(C.build_hf(cfg, w), LoraConfig(task_type="CAUSAL_LM", **ADAPTERS[name]))
    hf = {}
    with torch.no_grad():
        for mod_name, mod in lora_layers(pm, "default"):
            for t in ("lora_A", "lora_B"):
                p = getattr(mod, t)["default"].weight
                p.copy_(STD * torch.randn(p.shape, generator=gen))
                hf[key(mod_name, t)] = p.detach().clone()
    saved = l2c_tensors(cfg, pm, "default")
    params = [(key(m, t), getattr(mod, t)["default"].weight) for m, mod in lora_layers(pm, "default")
              for t in ("lora_A", "lora_B")]
    C.save_pretrained_as(pm, os.path.join(out_dir, name), params, saved, hf)
    C.check_saved(os.path.join(out_dir, name), saved)
    return hf


def clamp_reference(pm, cfg, names, weights, rank, clamp, fix_signs):
    """PEFT's _svd_generalized_task_arithmetic_weighted_adapter steps for combination "svd"
    (fix_signs: one sign per singular pair, runtime/svd.h's rule); llama2.c rows"""
    out = {}
    for mod_name, mod in pm.base_model.model.named_modules():
        if not hasattr(mod, "lora_A"):
            continue
        valid = [(n, wt) for n, wt in zip(names, weights) if n in mod.lora_A]
        if not valid:
            continue
        deltas = torch.stack([mod.get_delta_weight(n) for n, _ in valid])
        wts = torch.tensor([wt for _, wt in valid]).view(-1, 1, 1)
        dw = (deltas * wts).sum(dim=0)
        U, S, Vh = torch.linalg.svd(dw, full_matrices=True)
        U, S, Vh = U[:, :rank], S[:rank], Vh[:rank, :]
        if fix_signs:
            idx = Vh.abs().argmax(dim=1)
            sgn = torch.sign(Vh[torch.arange(rank), idx])
            U, Vh = U * sgn, Vh * sgn.view(-1, 1)
        U = U @ torch.diag(S)
        if clamp is not None:
            dist = torch.cat([U.flatten(), Vh.flatten()])
            hi = torch.quantile(dist, clamp)
            U, Vh = U.clamp(-hi, hi), Vh.clamp(-hi, hi)
        out[key(mod_name, "lora_A")] = Vh.detach().clone()
        out[key(mod_name, "lora_B")] = C.to_l2c(cfg, proj(mod_name), U.detach().clone())
    return out


def main():
    args, ckpt, cfg, w, ck_sha = C.start(__doc__)
    out_dir = os.path.join(args.out_dir, DIR_NAME)
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    gen = torch.Generator().manual_seed(SEED)
    hf = {n: make_input(cfg, w, n, gen, out_dir) for n in ADAPTERS}

    # the three side by side, HF rows, as PEFT would load them
    names = list(ADAPTERS)
    pm = get_peft_model(C.build_hf(cfg, w), LoraConfig(task_type="CAUSAL_LM", **ADAPTERS[names[0]]),
                        adapter_name=names[0])
    for n in names[1:]:
        pm.add_adapter(n, LoraConfig(task_type="CAUSAL_LM", **ADAPTERS[n]))
    with torch.no_grad():
        for n in names:
            for mod_name, mod in lora_layers(pm, n):
                for t in ("lora_A", "lora_B"):
                    getattr(mod, t)[n].weight.copy_(hf[n][key(mod_name, t)])
    pm.eval()
    _, tokens, targets = C.make_batch()
    out = {"tokens": tokens, "targets": targets}
    pm.set_adapter("c")  # an input alone: peftc reads c's rank and alpha patterns as PEFT runs them
    out["c.logits"] = C.hf_logits(pm, tokens)
    base = C.hf_logits(C.build_hf(cfg, w), tokens)

    tmp = tempfile.mkdtemp()
    try:
        for combo, (adapters, weights, kw) in COMBOS.items():
            weights = weights or [WEIGHTS[n] for n in adapters]
            pm.add_weighted_adapter(adapters, weights, combo, **kw)
            pm.set_adapter(combo)
            logits = C.hf_logits(pm, tokens)
            if combo not in NO_LOGITS:
                out[f"{combo}.logits"] = logits
            out[f"{combo}.loss"] = C.loss_of(logits, targets).reshape(1)
            moved = (logits - base).abs().max().item()
            print(f"{combo}: r {pm.peft_config[combo].r}, loss {out[combo + '.loss'].item():.7f}, "
                  f"moves the logits by up to {moved:.3f}")
            assert moved > 1e-2
            for k, v in l2c_tensors(cfg, pm, combo).items():
                out[f"{combo}.{k}"] = v
            pm.save_pretrained(tmp, selected_adapters=[combo])
            with open(os.path.join(tmp, combo, "adapter_config.json")) as f:
                pcfg = json.load(f)
            with open(os.path.join(out_dir, f"{combo}_config.json"), "w") as f:
                json.dump(pcfg, f, indent=2, sort_keys=True)
    finally:
        shutil.rmtree(tmp)

    # the clamp: PEFT's steps replayed, first checked against PEFT's own svd result
    ws = [WEIGHTS[n] for n in CLAMP["adapters"]]
    replay = clamp_reference(pm, cfg, CLAMP["adapters"], ws, 4, None, False)
    d_replay = max((replay[k] - out["svd." + k]).abs().max().item() for k in replay)
    print(f"svd replayed vs PEFT's add_weighted_adapter: max |diff| {d_replay:.3e}")
    assert d_replay == 0.0, d_replay
    clamped = clamp_reference(pm, cfg, CLAMP["adapters"], ws, CLAMP["svd_rank"], CLAMP["svd_clamp"], True)
    unclamped = clamp_reference(pm, cfg, CLAMP["adapters"], ws, CLAMP["svd_rank"], None, True)
    bound = max((clamped[k] - unclamped[k]).abs().max().item() for k in clamped)
    print(f"svd_clamp: the clamp moves entries by up to {bound:.3e}")
    assert bound > 1e-3
    for k, v in clamped.items():
        out["svd_clamp." + k] = v

    meta = dict(C.batch_meta("gen_peft_combine.py", ck_sha),
                adapters=json.dumps(ADAPTERS, sort_keys=True), weights=json.dumps(WEIGHTS, sort_keys=True),
                combos=json.dumps({k: [v[0], v[1], v[2]] for k, v in COMBOS.items()}, sort_keys=True),
                clamp=json.dumps(CLAMP, sort_keys=True), init=f"{STD} * randn, Generator().manual_seed({SEED})",
                row_order="llama2.c (q_proj/k_proj lora_B and delta rows un-permuted from HF)")
    C.write_expected(os.path.join(out_dir, "expected.safetensors"), out, meta)
    for n in names:  # PEFT's model card says nothing the config does not
        os.remove(os.path.join(out_dir, n, "README.md"))
        C.list_dir(os.path.join(out_dir, n), SIZE_LIMIT)
    for fn in sorted(os.listdir(out_dir)):
        p = os.path.join(out_dir, fn)
        if os.path.isfile(p):
            print(f"  {fn:28s} {os.path.getsize(p):8d}  {C.sha(p)}")
            assert os.path.getsize(p) < SIZE_LIMIT, p


if __name__ == "__main__":
    main()
