#!/usr/bin/env python3
"""Helpers for the adapter-method lit tests (stdlib only).

  peft_tool.py keys FILE                  one line per tensor of a safetensors file, sorted:
                                          "NAME DTYPE [d0,d1,...]"
  peft_tool.py table OUT NAME ROWS COLS   write a safetensors file holding one F32 tensor NAME
                                          [ROWS, COLS] (small deterministic values)
  peft_tool.py decreased FILE [KEY]       FILE holds JSON lines (peftc train --json); prints
                                          "decreased" if the last KEY (default eval_loss) is below
                                          the first, else "not decreased: FIRST -> LAST"
  peft_tool.py increased FILE KEY         the same for a number that should rise (an accuracy):
                                          "increased: FIRST -> LAST" or "not increased: ..."
  peft_tool.py same FILE1 FILE2 KEY TOL   the number KEY of two JSON objects agrees within TOL:
                                          prints "same KEY" or "differ KEY: A vs B"
  peft_tool.py adalora DIR                an AdaLoRA adapter directory: for every rank_pattern
                                          entry, the lora_A/E/B shapes must hold exactly the kept
                                          ranks; prints "N modules, K of T ranks kept, Z at rank 0,
                                          shapes match" (or what does not match)
"""
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_tool  # noqa: E402


def header(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack_from("<Q", data, 0)
    return json.loads(data[8:8 + n])


def lines(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def main(argv):
    if len(argv) >= 3 and argv[1] == "keys":
        for name, t in sorted(header(argv[2]).items()):
            if name != "__metadata__":
                print("%s %s [%s]" % (name, t["dtype"], ",".join(str(d) for d in t["shape"])))
        return 0
    if len(argv) == 6 and argv[1] == "table":
        rows, cols = int(argv[4]), int(argv[5])
        vals = [((i * 7919) % 101 - 50) / 500.0 for i in range(rows * cols)]
        st_tool.write_st(argv[2], {argv[3]: ("F32", [rows, cols], vals)})
        return 0
    if len(argv) in (3, 4) and argv[1] == "decreased":
        key = argv[3] if len(argv) == 4 else "eval_loss"
        vals = [o[key] for o in lines(argv[2]) if o.get(key) is not None]
        if len(vals) >= 2 and vals[-1] < vals[0]:
            print("decreased")
        else:
            print("not decreased: %s" % " -> ".join(str(v) for v in vals))
        return 0
    if len(argv) == 4 and argv[1] == "increased":
        vals = [o[argv[3]] for o in lines(argv[2]) if o.get(argv[3]) is not None]
        up = len(vals) >= 2 and vals[-1] > vals[0]
        print("%sincreased: %s" % ("" if up else "not ", " -> ".join(str(v) for v in (vals[:1] + vals[-1:]))))
        return 0
    if len(argv) == 6 and argv[1] == "same":
        a, b = lines(argv[2])[-1][argv[4]], lines(argv[3])[-1][argv[4]]
        print(("same %s" if abs(a - b) <= float(argv[5]) else "differ %s: " + "%r vs %r" % (a, b)) % argv[4])
        return 0
    if len(argv) == 3 and argv[1] == "adalora":
        with open(os.path.join(argv[2], "adapter_config.json")) as f:
            rp = json.load(f)["rank_pattern"] or {}
        shapes = {k: t["shape"] for k, t in header(os.path.join(argv[2], "adapter_model.safetensors")).items()
                  if k != "__metadata__"}
        bad, kept, total, zero = [], 0, 0, 0
        for key, mask in sorted(rp.items()):
            mod, k = "base_model.model." + key[: -len(".lora_E")], sum(mask)
            kept, total, zero = kept + k, total + len(mask), zero + (k == 0)
            a, e, b = shapes.get(mod + ".lora_A"), shapes.get(mod + ".lora_E"), shapes.get(mod + ".lora_B")
            if not a or not e or not b or a[0] != k or e != [k, 1] or b[1] != k:
                bad.append(mod)
        if len(shapes) != 3 * len(rp):
            bad.append("%d tensors for %d modules" % (len(shapes), len(rp)))
        print("%d modules, %d of %d ranks kept, %d at rank 0, %s" % (len(rp), kept, total, zero,
              "shapes match" if not bad else "mismatch: " + ", ".join(bad)))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
