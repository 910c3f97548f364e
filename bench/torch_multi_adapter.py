#!/usr/bin/env python3
"""The PEFT side of bench/multi_adapter.sh: N LoRA adapters (r 8, alpha 16, all seven projections,
no dropout, random non-zero weights) on a llama2.c checkpoint loaded into transformers'
LlamaForCausalLM (bench/torch_peft_methods.build's way), written with save_pretrained to DIR
(PEFT's multi-adapter layout: "default" at DIR, the others in DIR/a1 ... DIR/a<N-1>: what
bench_multi_adapter reads), then timed: forward + cross-entropy under torch.no_grad(), B rows of
S tokens, in three modes:
  one    every row on "default" (the active adapter, no adapter_names)
  mixed  row i on adapter i mod N: PEFT's adapter_names forward (it loops over sub-batches)
  base   the adapters disabled

    python bench/torch_multi_adapter.py --model M --out DIR [--adapters 8] [--batch 8] [--seq 64]
        [--steps 20] [--warmup 3] [--json]

Runs on 1 thread (re-executes itself with OMP/MKL/OPENBLAS_NUM_THREADS=1).
"""
import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import torch_peft_methods as M  # noqa: E402

ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--adapters", type=int, default=8)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true")
    p.add_argument("--autocast", choices=["bf16"], default=None,
                   help="torch.autocast(cpu, bfloat16) around the forward (weights stay f32, as autocast does)")
    a = p.parse_args()
    M.reexec_single_thread()
    import warnings
    warnings.filterwarnings("ignore")
    import peft
    import torch
    a.adapter = None
    cfg, hf, _ = M.build(a, with_adapter=False)
    lc = dict(r=8, lora_alpha=16, target_modules=ALL, lora_dropout=0.0, task_type="CAUSAL_LM")
    pm = peft.get_peft_model(hf, peft.LoraConfig(**lc))
    names = ["default"] + [f"a{i}" for i in range(1, a.adapters)]
    for n in names[1:]:
        pm.add_adapter(n, peft.LoraConfig(**lc))
    g = torch.Generator().manual_seed(a.seed + 7)
    with torch.no_grad():
        for n, prm in pm.named_parameters():
            if "lora_" in n:
                prm.add_(torch.randn(prm.shape, generator=g) * 0.01)
    pm.eval()
    pm.save_pretrained(a.out)
    batches = [M.batch(cfg, a, s) for s in range(a.warmup + a.steps)]
    rows = [names[i % len(names)] for i in range(a.batch)]

    import contextlib
    amp = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if a.autocast else contextlib.nullcontext

    def run(kw):
        ts, loss = [], None
        with torch.no_grad(), amp():
            for x, y in batches:
                t0 = time.perf_counter()
                logits = pm(input_ids=x, use_cache=False, **kw).logits
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                                         y.reshape(-1)).item()
                ts.append(time.perf_counter() - t0)
        return ts[a.warmup:], loss

    res = {"one": run({}), "mixed": run({"adapter_names": rows})}
    with pm.disable_adapter():
        res["base"] = run({})
    for mode in ("one", "mixed", "base"):
        ts, loss = res[mode]
        med = statistics.median(ts)
        out = {"bench": "peft_multi_adapter", "mode": mode, "adapters": len(names) if mode == "mixed" else int(mode == "one"),
               "batch": a.batch, "seq": a.seq, "steps": a.steps, "ms_per_step_median": 1e3 * med,
               "tokens_per_s_median": a.batch * a.seq / med, "loss": loss, "torch": torch.__version__,
               "peft": peft.__version__}
        print(json.dumps(out) if a.json else out)


if __name__ == "__main__":
    main()
