#!/usr/bin/env python3
"""PEFT's multi-adapter directory layout both ways, and peftc's mixed-adapter batches against
PEFT's mixed forward (`adapter_names`).

1. PEFT -> peftc: PEFT puts two LoRA adapters on stories260K (the Hugging Face twin, q/k rows in
   HF order: gen_peft_adapter.build_hf): "default" (r 4, alpha 8, q_proj/v_proj) and "second"
   (r 8, alpha 16, rsLoRA, all seven projections), random (init_lora_weights=False, lora_B scaled
   by 0.1); save_pretrained(DIR) writes "default" at DIR and "second" at DIR/second (PEFT's rule).
   `peftc eval --adapter DIR --hf-qk-rows --data S.jsonl` (samples naming default, second and
   __base__, one mixed batch) vs PEFT's forward with adapter_names on the same padded batch:
   the per-adapter mean cross-entropy, relative |diff| <= 1e-5.
2. peftc -> PEFT: two adapters trained by `peftc train` (LoRA r 4 on q/v; LoRA r 8 rsLoRA on all
   projections) written by `peftc pack --out DIR A b=B`; PEFT loads DIR
   (PeftModel.from_pretrained: "default") and DIR/b (load_adapter(..., adapter_name="b")) with no
   missing or unexpected keys, the q/k lora_B rows permuted to HF order in memory (peftc trains
   the llama2.c checkpoint, see check_peft_interop.py); the same comparison, peftc without
   --hf-qk-rows.

Not in the default test run (needs torch, transformers, peft). From the repository root:
    /work/venv-golden/bin/python tests/golden/check_peft_multi.py [--peftc build/peftc] [--out DIR]
Exit status 1 if a check fails.
"""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import warnings  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

warnings.filterwarnings("ignore", category=FutureWarning)
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import check_peft_interop as I  # noqa: E402  (the llama2.c tokenizer in Python)
import gen_llama_lora as G  # noqa: E402
import peft_fixture_common as C  # noqa: E402

from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402

REPO = G.REPO
SEQ = 24
TOL = 1e-5
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
TEXTS = [
    "Once upon a time there was a little girl named Lily.",
    "The cat sat on the mat and looked at the dog.",
    "Tom liked to play with his red ball in the park.",
    "She was very happy and smiled at her mom.",
    "One day, a big bird flew over the house.",
    "The sun was shining and the birds were singing.",
]


def run(cmd):
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    return r.stdout


def samples(tok, names):
    """(ids per sample cut to SEQ+1, adapter name per sample)"""
    return [tok.encode(t.encode())[:SEQ + 1] for t in TEXTS], [names[i % len(names)] for i in range(len(TEXTS))]


def peft_losses(pm, ids, names):
    """per-adapter mean cross-entropy of PEFT's mixed forward (adapter_names) on the padded batch"""
    x = torch.zeros(len(ids), SEQ, dtype=torch.long)
    for i, s in enumerate(ids):
        x[i, :len(s) - 1] = torch.tensor(s[:-1])
    with torch.no_grad():
        logits = pm(input_ids=x, adapter_names=names, use_cache=False).logits.double()
    sums, counts = {}, {}
    for i, s in enumerate(ids):
        n = len(s) - 1
        ce = F.cross_entropy(logits[i, :n], torch.tensor(s[1:]), reduction="sum").item()
        sums[names[i]] = sums.get(names[i], 0.0) + ce
        counts[names[i]] = counts.get(names[i], 0) + n
    return {k: sums[k] / counts[k] for k in sums}


def peftc_losses(peftc, adapter, ids_names, jsonl, extra=()):
    with open(jsonl, "w") as f:
        for t, n in zip(TEXTS, ids_names):
            f.write(json.dumps({"text": t, "adapter": n}) + "\n")
    out = run([peftc, "eval", "--adapter", adapter, "--data", jsonl, "--seq", str(SEQ), "--batch", str(len(TEXTS)),
               "--json", *extra])
    return {k: v["loss"] for k, v in json.loads(out)["adapters"].items()}


def compare(what, a, b):
    ok = True
    for k in sorted(a):
        rel = abs(a[k] - b[k]) / abs(b[k])
        ok &= rel <= TOL
        print(f"  {what}: {k:10s} peftc {a[k]:.6f}  PEFT {b[k]:.6f}  rel {rel:.2e} {'ok' if rel <= TOL else 'FAIL'}")
    if set(a) != set(b):
        print(f"  {what}: adapters differ: {sorted(a)} vs {sorted(b)}")
        ok = False
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peftc", default=os.path.join(REPO, "build", "peftc"))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    out = args.out or tempfile.mkdtemp(prefix="peftc_multi_")
    os.makedirs(out, exist_ok=True)
    ckpt = next(p for p in G.CKPT_CANDIDATES if os.path.exists(p))
    cfg, w, _ = G.load_llama2c(ckpt)
    tok = I.Tokenizer(os.path.join(os.path.dirname(ckpt), "tok512.bin"))
    ok = True

    # 1. PEFT writes the layout, peftc reads it
    base = C.build_hf(cfg, w)
    pm = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                         init_lora_weights=False, lora_dropout=0.0))
    pm.add_adapter("second", LoraConfig(r=8, lora_alpha=16, use_rslora=True, target_modules=ALL,
                                        init_lora_weights=False, lora_dropout=0.0))
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_B" in name:
                p.mul_(0.1)
    pm.eval()
    d1 = os.path.join(out, "from_peft")
    pm.save_pretrained(d1)
    print(f"1. PEFT save_pretrained: {sorted(os.listdir(d1))}, second/: {sorted(os.listdir(os.path.join(d1, 'second')))}")
    ok &= os.path.exists(os.path.join(d1, "adapter_model.safetensors")) and \
        os.path.exists(os.path.join(d1, "second", "adapter_model.safetensors"))
    ids, names = samples(tok, ["default", "second", "__base__"])
    ref = peft_losses(pm, ids, names)
    got = peftc_losses(args.peftc, d1, names, os.path.join(out, "s1.jsonl"), ["--hf-qk-rows"])
    ok &= compare("PEFT layout -> peftc", got, ref)
    got = peftc_losses(args.peftc, d1, names, os.path.join(out, "s1.jsonl"), ["--hf-qk-rows", "--backend", "jit"])
    ok &= compare("PEFT layout -> peftc (jit)", got, ref)

    # 2. peftc writes the layout, PEFT reads it
    cfg_a = os.path.join(out, "a.json")
    cfg_b = os.path.join(out, "b.json")
    with open(cfg_a, "w") as f:
        json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 4, "lora_alpha": 8, "lora_dropout": 0.0,
                   "target_modules": ["q_proj", "v_proj"]}, f)
    with open(cfg_b, "w") as f:
        json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8, "lora_alpha": 16, "use_rslora": True,
                   "lora_dropout": 0.0, "target_modules": ALL}, f)
    for c, o in ((cfg_a, "A"), (cfg_b, "B")):
        run([args.peftc, "train", "--adapter", c, "--steps", "5", "--lr", "1e-2", "--batch", "4", "--seq", "32",
             "--out", os.path.join(out, o), "--quiet"])
    d2 = os.path.join(out, "from_peftc")
    run([args.peftc, "pack", "--out", d2, os.path.join(out, "A"), "b=" + os.path.join(out, "B")])
    base = C.build_hf(cfg, w)
    pm = PeftModel.from_pretrained(base, d2)
    res = pm.load_adapter(os.path.join(d2, "b"), adapter_name="b")
    missing = [k for k in res.missing_keys if ".b." in k]  # (the other adapter's keys are listed too)
    print(f"2. peftc pack -> PEFT: adapters {list(pm.peft_config)}; load_adapter('b'): missing {len(missing)} "
          f"of its keys, unexpected {len(res.unexpected_keys)}")
    ok &= not missing and not res.unexpected_keys
    with torch.no_grad():  # llama2.c q/k row order -> HF
        for l, name, parent, m in C.peft_lora_modules(pm, cfg["n_layers"]):
            h = C.qk_heads(cfg, name)
            for an in ("default", "b"):
                if h and an in getattr(m, "lora_B", {}):
                    wt = m.lora_B[an].weight
                    wt.copy_(C.permute_to_hf(wt.clone(), h))
    pm.eval()
    ids, names = samples(tok, ["b", "default", "__base__", "b"])
    ref = peft_losses(pm, ids, names)
    got = peftc_losses(args.peftc, d2, names, os.path.join(out, "s2.jsonl"))
    ok &= compare("peftc layout -> PEFT", got, ref)
    print("all ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
