#!/usr/bin/env python3
"""The PEFT side of bench/methods.sh: LoRA, LoHa, LoKr and DoRA train steps and inference in
Hugging Face PEFT, on the same llama2.c checkpoint peftc runs.

    python bench/torch_peft_methods.py write-model --out /tmp/m.bin [--dim 768 --hidden 2048
        --layers 4 --heads 12 --kv-heads 12 --vocab 512 --seq-len 128 --seed 1]
    python bench/torch_peft_methods.py train --model M --adapter CONFIG.json --batch 8 --seq 64
        --steps 10 --warmup 3 [--json]
    python bench/torch_peft_methods.py infer --model M --adapter CONFIG.json --batch 8 --seq 64
        --steps 10 --warmup 3 [--json]          # base, unmerged and merged forwards

write-model writes a random legacy llama2.c checkpoint (runtime/llama2c.h), tied classifier,
norms 1, matrices U(+-0.02*sqrt(3)) from numpy's PCG64 with --seed, RoPE tables as
pc_l2c_rope_tables computes them. It needs only numpy.

train/infer load the checkpoint into transformers' LlamaForCausalLM the way
tests/golden/peft_fixture_common.build_hf does (q/k rows permuted to HF order, tied
classifier), wrap it with peft.get_peft_model and the adapter_config.json given (the same file
peftc trains with), and time steps on random token windows (seeded; timing does not depend on
the values). A train step is forward + cross-entropy over all B*S targets + backward +
AdamW(lr 1e-3, betas 0.9/0.999, eps 1e-8, weight decay 0.01, no clipping) on the adapter's
parameters + zero_grad. Inference is forward + cross-entropy under torch.no_grad() in eval mode:
`base` without an adapter, `unmerged` with it, `merged` after merge_and_unload().

The script re-executes itself once with OMP/MKL/OPENBLAS_NUM_THREADS=1 and calls
torch.set_num_threads(1). JSON fields: ms_per_step_median/_min (after the warm-up steps),
tokens_per_s_median, peak_rss_mib (ru_maxrss), rss_before_mib (after building the model,
before the first step), trainable params.
"""
import argparse
import json
import os
import resource
import statistics
import struct
import sys
import time

REEXEC_MARK = "PEFTC_BENCH_METHODS_REEXEC"
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, ".."))


def reexec_single_thread():
    if os.environ.get(REEXEC_MARK) == "1":
        return
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", **{REEXEC_MARK: "1"})
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cur_rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# ---- write-model --------------------------------------------------------------------------------
def write_model(a):
    import numpy as np
    dim, hidden, L, H, KV, V, T = a.dim, a.hidden, a.layers, a.heads, a.kv_heads, a.vocab, a.seq_len
    hd = dim // H
    kv_dim = KV * hd
    rng = np.random.Generator(np.random.PCG64(a.seed))
    lim = 0.02 * 3 ** 0.5

    def mat(*shape):
        return rng.uniform(-lim, lim, size=shape).astype("<f4")

    ones = lambda *shape: np.ones(shape, dtype="<f4")  # noqa: E731
    freqs = (1.0 / (np.float32(10000.0) ** (np.arange(0, hd, 2, dtype=np.float32)[: hd // 2] / np.float32(hd)))
             ).astype(np.float32)
    t = np.arange(T, dtype=np.float32)
    ang = np.outer(t, freqs).astype(np.float32)
    arrays = [mat(V, dim), ones(L, dim), mat(L, dim, dim), mat(L, kv_dim, dim), mat(L, kv_dim, dim),
              mat(L, dim, dim), ones(L, dim), mat(L, hidden, dim), mat(L, dim, hidden), mat(L, hidden, dim),
              ones(dim), np.cos(ang).astype("<f4"), np.sin(ang).astype("<f4")]
    tmp = a.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<7i", dim, hidden, L, H, KV, V, T))  # vocab > 0: tied classifier
        for arr in arrays:
            f.write(np.ascontiguousarray(arr).tobytes())
    os.replace(tmp, a.out)
    n = sum(x.size for x in arrays[:-2])
    print(json.dumps({"bench": "write_model", "path": a.out, "dim": dim, "hidden": hidden, "layers": L,
                      "heads": H, "kv_heads": KV, "vocab": V, "seq_len": T, "params": int(n), "seed": a.seed}))


# ---- the PEFT model -----------------------------------------------------------------------------
def build(a, with_adapter=True):
    import torch
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    sys.path.insert(0, os.path.join(REPO, "tests", "golden"))
    import gen_llama_lora as G
    from peft_fixture_common import build_hf
    cfg, w, _ = G.load_llama2c(a.model)
    assert cfg["shared"], "build_hf ties the classifier: the checkpoint must have a positive vocab_size"
    hf = build_hf(cfg, w)
    del w
    if not with_adapter:
        return cfg, hf, None
    import peft
    with open(a.adapter) as f:
        ac = json.load(f)
    kind = ac["peft_type"]
    keep = {k: v for k, v in ac.items() if k not in ("peft_type",)}
    cls = {"LORA": peft.LoraConfig, "LOHA": peft.LoHaConfig, "LOKR": peft.LoKrConfig}[kind]
    pcfg = cls(**keep)
    pm = peft.get_peft_model(hf, pcfg)
    label = kind.lower() if not ac.get("use_dora") else "dora"
    return cfg, pm, label


def batch(cfg, a, step):
    import torch
    g = torch.Generator().manual_seed(a.seed * 1000003 + step)
    ids = torch.randint(0, cfg["vocab_size"], (a.batch, a.seq + 1), generator=g)
    return ids[:, :-1].contiguous(), ids[:, 1:].contiguous()


def loss_of(model, x, y):
    import torch.nn.functional as F
    logits = model(input_ids=x, use_cache=False).logits
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))


def summarize(times, a, extra):
    timed = times[a.warmup:]
    med = statistics.median(timed)
    d = {"ms_per_step_median": med * 1e3, "ms_per_step_min": min(timed) * 1e3,
         "tokens_per_s_median": a.batch * a.seq / med, "steps": len(timed), "warmup": a.warmup,
         "batch": a.batch, "seq": a.seq, "peak_rss_mib": rss_mib()}
    d.update(extra)
    return d


def train(a):
    import torch
    cfg, pm, label = build(a)
    params = [p for p in pm.parameters() if p.requires_grad]
    ntrain = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    pm.train()
    batches = [batch(cfg, a, s) for s in range(a.warmup + a.steps)]
    rss0 = cur_rss_mib()
    times, losses = [], []
    for x, y in batches:
        t0 = time.perf_counter()
        loss = loss_of(pm, x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())
    out = summarize(times, a, {"bench": "peft_train", "method": label, "checkpoint": os.path.basename(a.model),
                               "dim": cfg["dim"], "trainable": ntrain, "rss_before_mib": rss0,
                               "loss_first": losses[0], "torch": torch.__version__,
                               "peft": __import__("peft").__version__})
    print(json.dumps(out) if a.json else out)


def infer(a):
    import torch
    cfg, pm, label = build(a)
    pm.eval()
    # non-zero adapter weights, as after training (B = 0 would still be computed in full)
    g = torch.Generator().manual_seed(a.seed + 7)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if p.requires_grad and "magnitude" not in n:
                p.add_(torch.randn(p.shape, generator=g) * 0.01)
    batches = [batch(cfg, a, s) for s in range(a.warmup + a.steps)]

    def run(model):
        ts, loss = [], None
        with torch.no_grad():
            for x, y in batches:
                t0 = time.perf_counter()
                loss = loss_of(model, x, y).item()
                ts.append(time.perf_counter() - t0)
        return ts, loss

    res = {}
    with pm.disable_adapter():
        res["base"] = run(pm)
    res["unmerged"] = run(pm)
    merged = pm.merge_and_unload()
    merged.eval()
    res["merged"] = run(merged)
    for mode in ("base", "unmerged", "merged"):
        ts, loss = res[mode]
        out = summarize(ts, a, {"bench": "peft_infer", "method": label, "mode": mode,
                                "checkpoint": os.path.basename(a.model), "dim": cfg["dim"], "loss": loss})
        print(json.dumps(out) if a.json else out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write-model")
    w.add_argument("--out", required=True)
    for k, v in dict(dim=768, hidden=2048, layers=4, heads=12, kv_heads=12, vocab=512, seq_len=128, seed=1).items():
        w.add_argument("--" + k.replace("_", "-"), type=int, default=v)
    for name in ("train", "infer"):
        s = sub.add_parser(name)
        s.add_argument("--model", default=os.path.join(REPO, "data", "stories260K", "stories260K.bin"))
        s.add_argument("--adapter", required=True, help="adapter_config.json (peft_type LORA/LOHA/LOKR)")
        s.add_argument("--batch", type=int, default=8)
        s.add_argument("--seq", type=int, default=64)
        s.add_argument("--steps", type=int, default=10)
        s.add_argument("--warmup", type=int, default=3)
        s.add_argument("--seed", type=int, default=1)
        s.add_argument("--json", action="store_true")
    a = p.parse_args()
    if a.cmd == "write-model":
        return write_model(a)
    reexec_single_thread()
    import warnings
    warnings.filterwarnings("ignore")
    (train if a.cmd == "train" else infer)(a)


if __name__ == "__main__":
    main()
