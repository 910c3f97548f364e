#!/usr/bin/env python3
"""PyTorch + PEFT side of bench/real_models.sh, and that script's helpers.

Subcommands:

  smollm2 --gguf F [--mode eager|compile] [--autocast off|bf16] [--batch 4 --seq 128 --steps N --warmup W] [--data TXT]
      SmolLM2-135M-Instruct (a Llama) from its Q4_1 GGUF through transformers' GGUF loader
      (dequantized to f32: the same weights peftc runs in f32), PEFT LoRA r 8 / alpha 16 /
      dropout 0 on q_proj, v_proj (CAUSAL_LM); random S+1-token windows of the text tokenized
      by the model's own tokenizer; loss = cross-entropy of all S positions.
  minilm --model DIR --data F.jsonl --labels N [--mode eager|compile] [--autocast off|bf16] [--batch 32 --seq 64 ...]
      all-MiniLM-L6-v2 as AutoModelForSequenceClassification(num_labels=N) + PEFT LoRA r 8 /
      alpha 16 / dropout 0.1 on query, value (SEQ_CLS: PEFT adds the classifier to
      modules_to_save); examples padded/truncated to exactly S tokens (padding="max_length"),
      random batches; BERT's own dropouts (0.1) are on, as in peftc's train graph.

  Both: AdamW (lr 1e-3, betas 0.9/0.999, eps 1e-8, weight decay 0) on the trainable parameters,
  the global gradient norm clipped to 1.0, model.train(). `--mode compile` wraps the PEFT model
  in torch.compile (inductor, default options); the loss, clipping and optimizer stay eager.
  `--autocast bf16` runs forward + loss inside torch.autocast("cpu", dtype=torch.bfloat16), as
  bench/torch_llama_lora.py --autocast bf16 does: the weights, LoRA parameters, gradients and
  AdamW stay f32 (autocast casts the linears' operands to bf16 per call; cross-entropy is f32 by
  autocast's rules); the system is then torch-<mode>-bf16.
  W warm-up steps (the first one compiles), then N timed steps; tokens/s = B*S*N / (their
  time). One JSON line (--json). The process re-executes itself once with 1 thread everywhere
  (OMP/MKL/OPENBLAS_NUM_THREADS=1, TORCHINDUCTOR_COMPILE_THREADS=1, OMP_WAIT_POLICY=passive,
  OPENBLAS_CORETYPE/L2_SIZE unset, GLIBC_TUNABLES as bench/torch_llama_lora.py) and calls
  torch.set_num_threads(1). Peak RSS is this process's ru_maxrss.

  cls-data --text TXT --out F.jsonl --labels-out L.json [--chars 400 --labels 77]
      the classification data: consecutive CHARS-character chunks of TXT, label = index % N,
      and the label names (a JSON list) for `peftc train --labels`.
  peftc --tag JSON [--warmup W] [--system NAME] -- CMD...
      runs one `peftc train` with stderr on a pseudo-terminal, where peftc draws its progress
      line after every step; the step time is the gap between the arrivals of consecutive
      step lines (see bench/methods.sh). Prints TAG + measurements: steady tokens/s over the
      steps after W (the last step is dropped: the final evaluation follows it), the run-long
      rate peftc itself prints on its last line (first step included, compilation and the
      initial evaluation not), and the child's ru_maxrss (what /usr/bin/time -f %M reports).
  flops --model smollm2|minilm [--batch B --seq S]
      the matmul FLOPs of one train step that the "% of peak" column uses (see flop_count).
  report RESULTS.jsonl [--markdown]
      the table of bench/real_models.sh: medians over rounds per (model, system).
"""
import argparse
import json
import os
import re
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# the environment, the re-exec mark and the RSS readers of the Llama bench (no torch at import)
from torch_llama_lora import REEXEC_MARK, TUNABLES, peak_rss_mib, rss_now_mib  # noqa: E402
T_START = time.perf_counter()  # this process's start (after the re-exec): "launch to the end of step 1"
LR, BETAS, EPS, WD, CLIP = 1e-3, (0.9, 0.999), 1e-8, 0.0, 1.0

# the shapes the FLOP count needs (from the models' configs; checked against the loaded model)
SHAPES = {
    "smollm2": dict(kind="llama", dim=576, hidden=1536, layers=30, heads=9, kv_heads=3, vocab=49152,
                    r=8, targets=("q", "v")),
    "minilm": dict(kind="bert", dim=384, hidden=1536, layers=6, heads=12, labels=77,
                   r=8, targets=("q", "v")),
}


# ---- environment (as bench/torch_llama_lora.py) -------------------------------------------
def maybe_reexec():
    if os.environ.get(REEXEC_MARK) == "1":
        return
    env = dict(os.environ)
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(k, None)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", GLIBC_TUNABLES=TUNABLES,
               TORCHINDUCTOR_COMPILE_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env.setdefault("OMP_WAIT_POLICY", "passive")
    env[REEXEC_MARK] = "1"
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable] + sys.argv, env)




# ---- FLOPs --------------------------------------------------------------------------------
def flop_count(model, B, S):
    """Matmul FLOPs of one LoRA train step, 2 per multiply-add, counted as
    bench/torch_llama_lora.py's matmul_gflop does: forward of every linear (2*T*in*out, T = B*S
    tokens) and of attention (QK^T and PV, 2*2*B*H*S*S*hd, full S*S even where causal); backward
    only what the LoRA gradients need: dX of a linear (again 2*T*in*out) once its input depends
    on a trainable parameter (so not in front of the first adapted layer), the attention
    backward, and the LoRA products (x A^T, (xA^T) B^T, dA, dB, d(xA^T)). Frozen weights get no
    dW. The embedding lookup, norms, softmax, activations and the optimizer are not counted.
    For the BERT classifier the pooler (on the B [CLS] rows) and the trainable classifier
    (modules_to_save: its dW too) are included. Returns FLOPs (not GFLOPs)."""
    c = SHAPES[model]
    T, D, F, L, H = B * S, c["dim"], c["hidden"], c["layers"], c["heads"]
    hd, r, tg = D // H, c["r"], set(c["targets"])
    kv = c.get("kv_heads", H) * hd
    fl = 0
    rg = False  # the residual stream depends on a trainable parameter

    def linear(name, i, o, x_rg, rows=T, trainable_w=False):
        nonlocal fl
        has = name in tg
        fl += 2 * rows * i * o + (2 * rows * i * r + 2 * rows * r * o if has else 0)
        if x_rg:
            fl += 2 * rows * i * o + (2 * rows * i * r if has else 0)
        if has:
            fl += 2 * rows * r * o * 2 + 2 * rows * i * r
        if trainable_w:
            fl += 2 * rows * i * o
        return x_rg or has or trainable_w

    for _ in range(L):
        q = linear("q", D, D, rg)
        k = linear("k", D, kv, rg)
        v = linear("v", D, kv, rg)
        att = 2 * B * H * S * S * hd
        fl += 2 * att
        s_rg = q or k
        fl += att * (int(q) + int(k)) + att * (int(s_rg) + int(v))
        o = linear("o", D, D, s_rg or v)
        rg = rg or o
        if c["kind"] == "llama":
            g = linear("gate", D, F, rg)
            u = linear("up", D, F, rg)
            d = linear("down", F, D, rg or g or u)
        else:
            g = linear("inter", D, F, rg)
            d = linear("out", F, D, rg or g)
        rg = rg or d
    if c["kind"] == "llama":
        fl += 2 * T * D * c["vocab"] * (2 if rg else 1)  # tied lm_head (embedding matrix)
    else:
        linear("pooler", D, D, rg, rows=B)
        linear("classifier", D, c["labels"], True, rows=B, trainable_w=True)
    return fl


# ---- the PyTorch training runs ------------------------------------------------------------
def setup_torch(seed):
    import torch
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(seed)
    return torch


def train_loop(torch, args, model, fwd_loss, batches, B, S, info):
    """W warm-up + N timed steps of fwd_loss -> backward -> clip -> AdamW; prints the JSON line"""
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=LR, betas=BETAS, eps=EPS, weight_decay=WD)
    model.train()
    rss_before = rss_now_mib()
    times, losses = [], []
    cpu0 = wall0 = None
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            ru = resource.getrusage(resource.RUSAGE_SELF)
            cpu0, wall0 = ru.ru_utime + ru.ru_stime, time.perf_counter()
        t1 = time.perf_counter()
        loss = fwd_loss(*batches[step % len(batches)])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, CLIP)
        opt.step()
        opt.zero_grad(set_to_none=True)
        lv = loss.item()
        dt = time.perf_counter() - t1
        losses.append(lv)
        times.append(dt)
        if step == 0:
            t_step1_done = time.perf_counter()
        if args.verbose:
            print(f"{system_name(args)} {args.cmd} step {step + 1}: {dt * 1e3:.1f} ms loss {lv:.4f}", file=sys.stderr)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    timed = times[args.warmup:]
    wall = time.perf_counter() - wall0
    out = dict(info, system=system_name(args), autocast=args.autocast, B=B, S=S, tokens_per_step=B * S, warmup=args.warmup,
               steps=args.steps, tokens_per_s=round(B * S * len(timed) / sum(timed), 2),
               ms_per_step_median=round(1e3 * statistics.median(timed), 2), first_step_s=round(times[0], 3),
               step1_done_s=round(t_step1_done - T_START, 2),
               cpu_util=round((ru.ru_utime + ru.ru_stime - cpu0) / wall, 3),
               trainable=sum(p.numel() for p in trainable), params=sum(p.numel() for p in model.parameters()),
               peak_rss_mib=round(peak_rss_mib(), 1), rss_before_first_step_mib=round(rss_before, 1),
               loss_first=losses[0], loss_last=losses[-1], ms_steps=[round(t * 1e3, 1) for t in times],
               flop_per_step=flop_count(args.cmd, B, S), torch=torch.__version__)
    print(json.dumps(out) if args.json else out, flush=True)


def system_name(args):
    """torch-eager | torch-compile | torch-eager-bf16 | torch-compile-bf16"""
    return "torch-" + args.mode + ("-bf16" if args.autocast == "bf16" else "")


def amp_context(torch, args):
    """forward + loss run inside this: bf16 autocast (f32 master weights) or nothing"""
    import contextlib
    if args.autocast == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def maybe_compile(torch, args, model):
    if args.mode == "compile":
        return torch.compile(model)
    return model


def run_smollm2(args):
    torch = setup_torch(args.seed)
    import numpy as np
    import torch.nn.functional as Fn
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rss_import = rss_now_mib()
    d, name = os.path.dirname(os.path.abspath(args.gguf)), os.path.basename(args.gguf)
    t0 = time.perf_counter()
    base = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    cfg, sh = base.config, SHAPES["smollm2"]
    assert (cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.num_attention_heads,
            cfg.num_key_value_heads, cfg.vocab_size) == (sh["dim"], sh["hidden"], sh["layers"], sh["heads"],
                                                         sh["kv_heads"], sh["vocab"]), cfg
    with open(args.data, encoding="utf-8") as f:
        ids = np.asarray(tok(f.read())["input_ids"], dtype=np.int64)
    load_s = time.perf_counter() - t0
    B, S = args.batch, args.seq
    rng = np.random.default_rng(args.seed)
    batches = []
    for _ in range(args.warmup + args.steps):
        off = rng.integers(0, len(ids) - S - 1, size=B)
        w = torch.from_numpy(np.stack([ids[o:o + S + 1] for o in off]))
        batches.append((w[:, :S].contiguous(), w[:, 1:].contiguous()))
    model = get_peft_model(base, LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, lora_dropout=0.0,
                                            target_modules=["q_proj", "v_proj"]))
    fwd = maybe_compile(torch, args, model)
    V = cfg.vocab_size

    def fwd_loss(x, y):
        with amp_context(torch, args):
            logits = fwd(input_ids=x).logits
            return Fn.cross_entropy(logits.reshape(-1, V).float(), y.reshape(-1))

    info = {"bench": "real", "model": "smollm2", "load_s": round(load_s, 2), "rss_after_import_mib": round(rss_import, 1),
            "text_tokens": int(len(ids)), "attn": getattr(cfg, "_attn_implementation", "?")}
    train_loop(torch, args, model, fwd_loss, batches, B, S, info)


def run_minilm(args):
    torch = setup_torch(args.seed)
    import numpy as np
    import torch.nn.functional as Fn
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rss_import = rss_now_mib()
    t0 = time.perf_counter()
    base = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=args.labels,
                                                              dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(args.model)
    cfg, sh = base.config, SHAPES["minilm"]
    assert (cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.num_attention_heads,
            args.labels) == (sh["dim"], sh["hidden"], sh["layers"], sh["heads"], sh["labels"]), cfg
    texts, labels = [], []
    with open(args.data, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                e = json.loads(line)
                texts.append(e["text"])
                labels.append(int(e["label"]))
    B, S = args.batch, args.seq
    enc = tok(texts, padding="max_length", truncation=True, max_length=S, return_tensors="pt")
    real = enc["attention_mask"].sum(1)
    # every example fills the S tokens: no padding anywhere, the same work as peftc's batches
    assert int(real.min()) == S, f"an example has only {int(real.min())} tokens (< {S})"
    load_s = time.perf_counter() - t0
    y_all = torch.tensor(labels, dtype=torch.int64)
    rng = np.random.default_rng(args.seed)
    batches = []
    for _ in range(args.warmup + args.steps):
        idx = torch.from_numpy(rng.choice(len(texts), size=B, replace=False))
        batches.append((enc["input_ids"][idx].contiguous(), enc["attention_mask"][idx].contiguous(),
                        enc["token_type_ids"][idx].contiguous(), y_all[idx].contiguous()))
    model = get_peft_model(base, LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, lora_dropout=0.1,
                                            target_modules=["query", "value"]))
    fwd = maybe_compile(torch, args, model)

    def fwd_loss(x, m, tt, y):
        with amp_context(torch, args):
            return Fn.cross_entropy(fwd(input_ids=x, attention_mask=m, token_type_ids=tt).logits, y)

    info = {"bench": "real", "model": "minilm", "load_s": round(load_s, 2), "rss_after_import_mib": round(rss_import, 1),
            "examples": len(texts), "attn": getattr(cfg, "_attn_implementation", "?")}
    train_loop(torch, args, model, fwd_loss, batches, B, S, info)


# ---- helpers of real_models.sh ------------------------------------------------------------
def cls_data(args):
    with open(args.text, encoding="utf-8") as f:
        text = f.read()
    n = 0
    with open(args.out, "w", encoding="utf-8") as f:
        for i in range(0, len(text) - args.chars + 1, args.chars):
            f.write(json.dumps({"text": text[i:i + args.chars], "label": n % args.labels}) + "\n")
            n += 1
    with open(args.labels_out, "w", encoding="utf-8") as f:
        json.dump([f"label_{k}" for k in range(args.labels)], f)
    print(f"cls-data: {n} examples of {args.chars} characters, {args.labels} labels -> {args.out}", file=sys.stderr)


def run_peftc(args):
    """one peftc train on a pty (see the module doc); prints TAG + measurements as a JSON line"""
    import pty
    import select
    cmd = args.command[1:] if args.command and args.command[0] == "--" else args.command
    t0 = time.perf_counter()
    master, slave = pty.openpty()
    r_out, w_out = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(w_out, 1)
        os.dup2(slave, 2)
        os.execvp(cmd[0], cmd)
    os.close(w_out)
    os.close(slave)
    fds, out, err, arrivals, cpu_at = [r_out, master], b"", b"", {}, {}
    step_re = re.compile(rb"step (\d+)/(\d+)")
    tick = os.sysconf("SC_CLK_TCK")

    def cpu_s():  # the child's user + system CPU time so far (/proc/PID/stat fields 14, 15)
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            return None
    while fds:
        ready, _, _ = select.select(fds, [], [])
        now = time.perf_counter()
        for fd in ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                fds.remove(fd)
                continue
            if fd == r_out:
                out += chunk
            else:
                err += chunk
                for m in step_re.finditer(chunk):
                    if int(m.group(1)) not in arrivals:
                        arrivals[int(m.group(1))] = now
                        cpu_at[int(m.group(1))] = cpu_s()
    _, status, ru = os.wait4(pid, 0)
    d = json.loads(args.tag)
    d.update(system=args.system, rc=os.waitstatus_to_exitcode(status), wall_s=round(time.perf_counter() - t0, 2),
             peak_rss_mib=round(ru.ru_maxrss / 1024.0, 1), cpu_s=round(ru.ru_utime + ru.ru_stime, 2))
    text = err.decode(errors="replace").replace("\r", "\n")
    if d["rc"] != 0 or not arrivals:
        d["error"] = ([ln for ln in text.splitlines() if ln.strip()] or ["?"])[-1][:300]
        print(json.dumps(d), flush=True)
        return
    n = max(arrivals)
    w = args.warmup
    gaps = [arrivals[t] - arrivals[t - 1] for t in range(w + 1, n) if t in arrivals and t - 1 in arrivals]
    per = d["tokens_per_step"]
    if w in arrivals and n - 1 in arrivals and n - 1 > w and cpu_at.get(w) is not None and cpu_at.get(n - 1) is not None:
        # CPU / wall over the timed steps: well below 1 = the core was shared (contention)
        d["cpu_util"] = round((cpu_at[n - 1] - cpu_at[w]) / (arrivals[n - 1] - arrivals[w]), 3)
    if gaps:
        d.update(tokens_per_s=round(per * len(gaps) / sum(gaps), 2),
                 ms_per_step_median=round(1e3 * statistics.median(gaps), 2), timed_steps=len(gaps),
                 ms_steps=[round(1e3 * (arrivals[t] - arrivals[t - 1]), 1) for t in range(2, n + 1)
                           if t in arrivals and t - 1 in arrivals])
    # peftc's own rate on its last progress line: steps 1..n over the time since step 1 began
    m = re.findall(r"step (\d+)/\d+\s+loss (\S+)\s+eval (\S+)\s+(\S+) (tok|ex)/s", text)
    if m:
        last = m[-1]
        rate = float(last[3]) * (per / d["B"] if last[4] == "ex" else 1)
        d.update(tokens_per_s_incl_first_step=rate, loss_first=float(m[0][1]), loss_last=float(last[1]),
                 eval_loss_first=float(m[0][2]))
    d["step1_done_s"] = round(arrivals.get(1, t0) - t0, 2)  # load + compile + first eval + step 1
    print(json.dumps(d), flush=True)


CONTENDED = 0.9  # a run whose calibration is below this fraction of the best one shared its core
MIN_UTIL = 0.95  # ... or whose CPU / wall time over its timed steps is below this (bench/report.py)


SYSTEMS = ["peftc", "peftc-bf16", "torch-eager", "torch-compile", "torch-eager-bf16", "torch-compile-bf16"]
BASELINES = ["torch-eager", "torch-compile", "torch-eager-bf16", "torch-compile-bf16"]
F32_TWIN = {"peftc-bf16": "peftc", "torch-eager-bf16": "torch-eager", "torch-compile-bf16": "torch-compile"}


def report(args):
    """Medians over rounds per (model, system). Every run is tagged with the FMA calibration taken
    right before it (fma_gflops) and carries its CPU / wall time over the timed steps (cpu_util);
    runs below CONTENDED x the best calibration or below MIN_UTIL are left out of the medians (as
    bench/report.py does) unless a system has no other run. "% FMA peak" is against
    the median of the calibrations at or above that line. Ratios: tokens/s over each PyTorch
    baseline's, peak RSS over eager's (f32 and bf16). "loss 1" is the first step's training loss;
    for the bf16 systems its relative difference from peftc f32's (the same batch and dropout
    masks for peftc-bf16; other batches, other classifier init for torch: data, not rounding) and
    from the f32 twin of the same implementation (the same batch: the bf16 rounding alone)."""
    rows = [json.loads(ln) for ln in open(args.results) if ln.strip().startswith("{")]
    machine = next((r for r in rows if r.get("bench") == "machine"), {})
    cal = [r["gflops_median"] for r in rows if r.get("bench") == "fma_peak" and "gflops_median" in r]
    top = max(cal) if cal else None
    peak = statistics.median([x for x in cal if x >= CONTENDED * top]) if cal else float("nan")
    runs = [r for r in rows if r.get("bench") == "real"]
    fails = [r for r in runs if r.get("error")]
    runs = [r for r in runs if not r.get("error") and r.get("tokens_per_s")]
    contended = lambda r: ((top is not None and (r.get("fma_gflops") or top) < CONTENDED * top)  # noqa: E731
                           or (r.get("cpu_util") or 1) < MIN_UTIL)
    models = [m for m in ("smollm2", "minilm") if any(r["model"] == m for r in runs + fails)]
    present = {r.get("system") for r in runs + fails}
    systems = [s for s in SYSTEMS if s in present]
    bases = [s for s in BASELINES if s in present]
    rss_bases = [s for s in ("torch-eager", "torch-eager-bf16") if s in present]
    med = lambda xs: statistics.median(xs) if xs else float("nan")  # noqa: E731
    short = lambda s: s.replace("torch-", "")  # noqa: E731
    label = {"smollm2": "SmolLM2-135M LoRA r8 q,v", "minilm": "MiniLM-L6 SEQ_CLS LoRA r8 q,v"}
    hdr = (["config", "system", "tok/s (min..max)"] + [f"vs {short(b)}" for b in bases] + ["GFLOP/s", "% FMA peak",
           "peak RSS MiB"] + [f"RSS vs {short(b)}" for b in rss_bases] +
           ["ms/step", "launch to step 1 s", "loss 1", "vs peftc f32", "vs own f32", "runs"])
    table = []
    ratio = lambda a, b: f"{a / b:.2f}x" if b == b and b else "-"  # noqa: E731
    def rel(a, b):  # peftc's progress line has 4 decimals: equal there = within 1e-4 absolute
        if not (a == a and b == b and b):
            return "-"
        return f"{(a - b) / b:+.1e}" if a != b else f"<{1e-4 / abs(b):.0e}"
    for m in models:
        by, note = {}, {}
        for s in systems:
            all_s = [r for r in runs if r["model"] == m and r["system"] == s]
            ok = [r for r in all_s if not contended(r)]
            by[s] = ok or all_s
            nf = sum(1 for r in fails if r["model"] == m and r.get("system") == s)
            note[s] = f"{len(by[s])}" + (f" (+{len(all_s) - len(ok)} contended, left out)" if ok and len(ok) < len(all_s)
                                          else " (all contended)" if all_s and not ok else "") + (f" ({nf} failed)" if nf else "")
        tps = {s: med([r["tokens_per_s"] for r in by[s]]) for s in systems}
        rss = {s: med([r["peak_rss_mib"] for r in by[s]]) for s in systems}
        loss1 = {s: med([r["loss_first"] for r in by[s] if r.get("loss_first") is not None]) for s in systems}
        any_r = next(r for r in runs + fails if r["model"] == m)
        B, S = any_r["B"], any_r["S"]
        gf = flop_count(m, B, S) / 1e9
        cfg = f"{label[m]}, B{B}xS{S}"
        for s in systems:
            if not by[s]:
                table.append([cfg, s, "FAILED" if "failed" in note[s] else "-"] + [""] * (len(hdr) - 4) + [note[s]])
                continue
            t = tps[s]
            first = med([r.get("step1_done_s", float("nan")) for r in by[s]])
            lo, hi = min(r["tokens_per_s"] for r in by[s]), max(r["tokens_per_s"] for r in by[s])
            bf = s in F32_TWIN
            table.append([cfg, s, f"{t:,.0f} ({lo:,.0f}..{hi:,.0f})"] + [ratio(t, tps[b]) for b in bases] +
                         [f"{gf * t / (B * S):.1f}", f"{100 * gf * t / (B * S) / peak:.0f} %", f"{rss[s]:,.0f}"] +
                         [ratio(rss[s], rss[b]) for b in rss_bases] +
                         [f"{med([r['ms_per_step_median'] for r in by[s]]):,.0f}", f"{first:.1f}", f"{loss1[s]:.4f}",
                          rel(loss1[s], loss1.get("peftc", float("nan"))) if bf else "",
                          rel(loss1[s], loss1.get(F32_TWIN[s], float("nan"))) if bf else "", note[s]])
        for s in ("peftc", "peftc-bf16"):
            extra = [r["tokens_per_s_incl_first_step"] for r in by.get(s, []) if r.get("tokens_per_s_incl_first_step")]
            if extra:
                t = med(extra)
                table.append([cfg, f"{s}, own rate (step 1 in)", f"{t:,.0f}"] + [ratio(t, tps[b]) for b in bases] +
                             [f"{gf * t / (B * S):.1f}", f"{100 * gf * t / (B * S) / peak:.0f} %", ""] +
                             [""] * len(rss_bases) + ["", "", "", "", "", str(len(extra))])
    print(f"machine: {machine.get('cpu', '?')}, {machine.get('nproc', '?')} CPUs, {machine.get('date', '?')}, "
          f"load average at start {machine.get('loadavg', '?')}; {machine.get('versions', '?')}; peftc {machine.get('peftc', '?')}")
    if cal:
        print(f"FMA peak (zmm, 1 core): {peak:.1f} GFLOP/s, median of the {sum(x >= CONTENDED * top for x in cal)} of "
              f"{len(cal)} calibrations within {CONTENDED:.0%} of the best ({min(cal):.1f}..{max(cal):.1f}); "
              "an f32 peak: the bf16 systems' products can pass 100 %")
    for m in models:
        any_r = next(r for r in runs + fails if r["model"] == m)
        print(f"{m}: {flop_count(m, any_r['B'], any_r['S']) / 1e9:.1f} GFLOP of matmuls per train step (flop_count)")
    if args.markdown:
        print("| " + " | ".join(hdr) + " |")
        print("|" + "|".join("---" if i < 2 else "---:" for i in range(len(hdr))) + "|")
        for row in table:
            print("| " + " | ".join(row) + " |")
    else:
        wd = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(hdr)]
        print("  ".join(h.ljust(wd[i]) for i, h in enumerate(hdr)).rstrip())
        for row in table:
            print("  ".join(c.ljust(wd[i]) for i, c in enumerate(row)).rstrip())
    for r in fails:
        print(f"FAILED: {r['model']} {r.get('system')} round {r.get('round')}: {r['error']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("smollm2", "minilm"):
        p = sub.add_parser(name)
        p.add_argument("--mode", choices=["eager", "compile"], default="eager")
        p.add_argument("--autocast", choices=["off", "bf16"], default="off",
                       help="bf16: torch.autocast('cpu', bfloat16) around forward + loss (weights, LoRA, AdamW f32)")
        p.add_argument("--batch", type=int, default=4 if name == "smollm2" else 32)
        p.add_argument("--seq", type=int, default=128 if name == "smollm2" else 64)
        p.add_argument("--steps", type=int, default=6)
        p.add_argument("--warmup", type=int, default=2)
        p.add_argument("--seed", type=int, default=1234)
        p.add_argument("--json", action="store_true")
        p.add_argument("--verbose", action="store_true")
        if name == "smollm2":
            p.add_argument("--gguf", required=True)
            p.add_argument("--data", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data",
                                                          "tinyshakespeare", "input.txt"))
        else:
            p.add_argument("--model", required=True)
            p.add_argument("--data", required=True)
            p.add_argument("--labels", type=int, default=77)
    p = sub.add_parser("cls-data")
    p.add_argument("--text", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--labels-out", required=True)
    p.add_argument("--chars", type=int, default=400)
    p.add_argument("--labels", type=int, default=77)
    p = sub.add_parser("peftc")
    p.add_argument("--tag", required=True, help="JSON object the measurements are added to (needs B, tokens_per_step)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--system", default="peftc", help="the name of the run (peftc | peftc-bf16)")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p = sub.add_parser("flops")
    p.add_argument("--model", choices=sorted(SHAPES), required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--seq", type=int, required=True)
    p = sub.add_parser("report")
    p.add_argument("results")
    p.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    if args.cmd in ("smollm2", "minilm"):
        maybe_reexec()
        (run_smollm2 if args.cmd == "smollm2" else run_minilm)(args)
    elif args.cmd == "cls-data":
        cls_data(args)
    elif args.cmd == "peftc":
        run_peftc(args)
    elif args.cmd == "flops":
        print(flop_count(args.model, args.batch, args.seq))
    else:
        report(args)


if __name__ == "__main__":
    main()
