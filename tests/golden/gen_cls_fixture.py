"""A tiny BERT sequence classifier and a small real labelled dataset, for the CLI tests of
classification (peftc train / eval / predict / merge on an encoder; tests/lit/models/cls_*.test).

  tests/data/cls/model/       BertForSequenceClassification (random, seeded): hidden 32, 2 layers,
                              4 heads, 4 labels, f32; vocabulary and tokenizer.json =
                              tests/data/tokenizer_json/wordpiece_bert.json (a WordPiece tokenizer
                              trained on banking77 and tinyshakespeare), so the directory has its
                              own tokenizer
  tests/data/cls/roberta/     RobertaForSequenceClassification (random, seeded): the same sizes, with
                              tests/data/tokenizer_json/bpe_roberta.json (a byte-level BPE trained on
                              the same texts: <s> ... </s>, pad 1, positions from 2) as its tokenizer
  tests/data/cls/labels.json  the 4 banking77 categories used, in label order
  tests/data/cls/train.jsonl  {"text", "label": id} lines: the first 40 banking77 train examples of
                              each category
  tests/data/cls/test.csv     text,category: the first 15 banking77 test examples of each

Needs torch, transformers (/work/venv-golden/bin/python). Deterministic.
Usage: python3 tests/golden/gen_cls_fixture.py [--banking77 DIR] [--out-dir tests/data/cls]
"""
import argparse
import csv
import json
import os
import shutil

import torch
from transformers import BertConfig, BertForSequenceClassification, RobertaConfig, RobertaForSequenceClassification

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CATS = ["card_arrival", "exchange_rate", "lost_or_stolen_card", "top_up_failed"]


def take(path, per_cat):
    rows = {c: [] for c in CATS}
    with open(path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if r["category"] in rows and len(rows[r["category"]]) < per_cat:
                rows[r["category"]].append(r["text"])
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--banking77", default=os.path.join(REPO, "data", "banking77"))
    ap.add_argument("--out-dir", default=os.path.join(REPO, "tests", "data", "cls"))
    a = ap.parse_args()
    tok_path = os.path.join(REPO, "tests", "data", "tokenizer_json", "wordpiece_bert.json")
    vocab = len(json.load(open(tok_path))["model"]["vocab"])
    torch.manual_seed(7)
    cfg = BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=128, type_vocab_size=2,
                     initializer_range=0.2, num_labels=len(CATS),
                     id2label={i: c for i, c in enumerate(CATS)}, label2id={c: i for i, c in enumerate(CATS)})
    model = BertForSequenceClassification(cfg).eval()
    out = os.path.join(a.out_dir, "model")
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(out, safe_serialization=True)
    shutil.copy(tok_path, os.path.join(out, "tokenizer.json"))
    # RoBERTa: its own byte-level BPE, ids up to <mask> = 800
    rtok = os.path.join(REPO, "tests", "data", "tokenizer_json", "bpe_roberta.json")
    rj = json.load(open(rtok))
    rvocab = max(max(rj["model"]["vocab"].values()), max(t["id"] for t in rj["added_tokens"])) + 1
    torch.manual_seed(8)
    rcfg = RobertaConfig(vocab_size=rvocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=130, type_vocab_size=1, pad_token_id=1,
                         bos_token_id=0, eos_token_id=2, initializer_range=0.2, num_labels=len(CATS),
                         id2label={i: c for i, c in enumerate(CATS)}, label2id={c: i for i, c in enumerate(CATS)})
    rmodel = RobertaForSequenceClassification(rcfg).eval()
    rout = os.path.join(a.out_dir, "roberta")
    shutil.rmtree(rout, ignore_errors=True)
    rmodel.save_pretrained(rout, safe_serialization=True)
    shutil.copy(rtok, os.path.join(rout, "tokenizer.json"))
    with open(os.path.join(a.out_dir, "labels.json"), "w") as f:
        json.dump(CATS, f, indent=2)
        f.write("\n")
    train = take(os.path.join(a.banking77, "train.csv"), 40)
    with open(os.path.join(a.out_dir, "train.jsonl"), "w", encoding="utf-8") as f:
        for i in range(40):  # interleaved, so any prefix holds every label
            for k, c in enumerate(CATS):
                f.write(json.dumps({"text": train[c][i], "label": k}) + "\n")
    test = take(os.path.join(a.banking77, "test.csv"), 15)
    with open(os.path.join(a.out_dir, "test.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["text", "category"])
        for c in CATS:
            for t in test[c]:
                w.writerow([t, c])


if __name__ == "__main__":
    main()
