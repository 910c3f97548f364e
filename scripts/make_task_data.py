#!/usr/bin/env python3
"""Writes data/tasks/: a small multitask example for peftc's task data (runtime/task_data.h),
built from the bundled data only, deterministically (fixed seed; run it again and the files are
byte-identical).

  banking_mc_train.jsonl  multiple choice from data/banking77/train.csv: 12 intents in 3 tasks of
  banking_mc_test.jsonl   4, each query asked as "<query> Intent:" with the task's 4 short intent
                          names as answer_choices (fixed order) and the label; "task": 0..2.
                          test: the same from data/banking77/test.csv (a held-out split).
  banking_target.jsonl    the training queries as {"input", "target"}: the intent name the target.
  stories_lm.jsonl        300 TinyStories paragraphs as {"text"}, "task": 3
  shakespeare_lm.jsonl    300 tinyshakespeare speeches as {"text"}, "task": 4

Usage (from the repository root): python3 scripts/make_task_data.py [--out data/tasks]
"""
import argparse
import csv
import json
import os
import random

SEED = 20261207
# task id -> (intent in banking77, its short answer choice); short, distinct names keep the
# choices a few tokens long for the tiny stories260K tokenizer
TASKS = [
    [("card_arrival", "arrival"), ("lost_or_stolen_card", "stolen"), ("pin_blocked", "pin"),
     ("card_not_working", "broken")],
    [("cancel_transfer", "cancel"), ("exchange_rate", "rate"), ("atm_support", "atm"), ("top_up_limits", "limit")],
    [("edit_personal_details", "details"), ("passcode_forgotten", "passcode"), ("age_limit", "age"),
     ("why_verify_identity", "verify")],
]
N_TEXT = 300


def read_banking(path):
    with open(path, newline="", encoding="utf-8") as f:
        return [(r["text"].strip(), r["category"]) for r in csv.DictReader(f)]


def mc_examples(rows, rng):
    by_intent = {}
    for task, pairs in enumerate(TASKS):
        for k, (intent, _) in enumerate(pairs):
            by_intent[intent] = (task, k)
    out = []
    for text, intent in rows:
        if intent not in by_intent:
            continue
        task, k = by_intent[intent]
        out.append({"input": f"{text} Intent:", "answer_choices": [name for _, name in TASKS[task]], "label": k,
                    "task": task})
    rng.shuffle(out)
    return out


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, separators=(", ", ": ")) + "\n")


def paragraphs(path, sep, n, rng, max_chars=400):
    with open(path, encoding="utf-8") as f:
        parts = [p.strip() for p in f.read().split(sep)]
    parts = [p for p in parts if 40 <= len(p) <= max_chars]
    rng.shuffle(parts)
    return parts[:n]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="data/tasks")
    ap.add_argument("--data", default="data")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = random.Random(SEED)
    train = mc_examples(read_banking(os.path.join(a.data, "banking77", "train.csv")), rng)
    test = mc_examples(read_banking(os.path.join(a.data, "banking77", "test.csv")), rng)
    write_jsonl(os.path.join(a.out, "banking_mc_train.jsonl"), train)
    write_jsonl(os.path.join(a.out, "banking_mc_test.jsonl"), test)
    write_jsonl(os.path.join(a.out, "banking_target.jsonl"),
                [{"input": e["input"], "target": " " + e["answer_choices"][e["label"]], "task": e["task"]}
                 for e in train])
    stories = paragraphs(os.path.join(a.data, "tinystories", "tinystories_sample.txt"), "\n", N_TEXT, rng)
    write_jsonl(os.path.join(a.out, "stories_lm.jsonl"), [{"text": t, "task": 3} for t in stories])
    shakes = paragraphs(os.path.join(a.data, "tinyshakespeare", "input.txt"), "\n\n", N_TEXT, rng)
    write_jsonl(os.path.join(a.out, "shakespeare_lm.jsonl"), [{"text": t, "task": 4} for t in shakes])
    for name in sorted(os.listdir(a.out)):
        if name.endswith(".jsonl"):
            p = os.path.join(a.out, name)
            with open(p, encoding="utf-8") as f:
                print(f"{p}: {sum(1 for _ in f)} lines, {os.path.getsize(p)} bytes")


if __name__ == "__main__":
    main()
