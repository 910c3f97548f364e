"""Compares `peftc eval --json` results: A equals B (relative 1e-5) and C is not B (> 1e-4).
usage: compare_eval.py A.json B.json C.json"""
import json
import sys

a, b, c = (json.load(open(p)) for p in sys.argv[1:4])
rel = abs(a["loss"] - b["loss"]) / abs(b["loss"])
print("equal" if rel <= 1e-5 else "DIFFERENT", f"(rel {rel:.2e}, {a['loss']} vs {b['loss']}),",
      "tokens equal," if a["tokens"] == b["tokens"] and a["windows"] == b["windows"] else "TOKENS DIFFER,",
      "the adapter moved the loss" if abs(c["loss"] - b["loss"]) > 1e-4 else "THE ADAPTER DID NOTHING")
