#!/usr/bin/env python3
"""Small safetensors helper for lit tests (stdlib only).

  st_tool.py mlp-inputs OUT        inputs of the MLP train step (tests/lit/autograd/mlp.pir after
                                   autograd,adamw): %x, %t, %hp and the frozen mlp.w1
  st_tool.py close A B [--rtol R]  every tensor of A equals B's within R (relative to max |B|);
                                   prints one line per tensor and "close: N tensors"
  st_tool.py nonzero A NAME        prints "nonzero NAME" if any element of NAME is not 0
  st_tool.py print A NAME          prints "NAME: [v, ...]" (Python's repr: nan, inf)
  st_tool.py poke A NAME I V       sets element I of NAME in A to V (a float: nan, inf, 1e30)
"""
import json
import random
import struct
import sys

DT = {"F32": ("f", 4), "I32": ("i", 4)}


def write_st(path, tensors):
    header, blobs, off = {}, [], 0
    for name, (dt, dims, vals) in sorted(tensors.items()):
        fmt, size = DT[dt]
        blob = struct.pack("<%d%s" % (len(vals), fmt), *vals)
        header[name] = {"dtype": dt, "shape": dims, "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_st(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        fmt, size = DT[t["dtype"]]
        a, b = t["data_offsets"]
        out[name] = list(struct.unpack_from("<%d%s" % ((b - a) // size, fmt), data, 8 + n + a))
    return out


def main(argv):
    if argv[1] == "mlp-inputs":
        rng = random.Random(7)
        write_st(argv[2], {
            "x": ("F32", [4, 8], [rng.gauss(0, 1) for _ in range(32)]),
            "t": ("I32", [4], [rng.randrange(5) for _ in range(4)]),
            "hp": ("F32", [8], [0.05, 0.9, 0.999, 1e-8, 0.01, 1, 0, 0]),
            "mlp.w1": ("F32", [16, 8], [rng.gauss(0, 0.3) for _ in range(128)]),
        })
        return 0
    if argv[1] == "close":
        rtol = float(argv[argv.index("--rtol") + 1]) if "--rtol" in argv else 1e-5
        a, b = read_st(argv[2]), read_st(argv[3])
        if sorted(a) != sorted(b):
            print("FAIL: names differ: %s vs %s" % (sorted(a), sorted(b)))
            return 1
        bad = 0
        for name in sorted(a):
            scale = max([abs(v) for v in b[name]] + [1e-30])
            err = max([abs(x - y) for x, y in zip(a[name], b[name])] + [0]) / scale
            ok = len(a[name]) == len(b[name]) and err <= rtol
            bad += not ok
            print("%s: %s (rel err %.2g)" % ("ok" if ok else "FAIL", name, err))
        print("close: %d tensors" % len(a) if not bad else "not close: %d of %d tensors" % (bad, len(a)))
        return 1 if bad else 0
    if argv[1] == "nonzero":
        t = read_st(argv[2])[argv[3]]
        print(("nonzero " if any(v != 0 for v in t) else "zero ") + argv[3])
        return 0
    if argv[1] == "poke":
        with open(argv[2], "rb") as f:
            data = bytearray(f.read())
        (n,) = struct.unpack_from("<Q", data, 0)
        t = json.loads(data[8:8 + n])[argv[3]]
        assert t["dtype"] == "F32"
        struct.pack_into("<f", data, 8 + n + t["data_offsets"][0] + 4 * int(argv[4]), float(argv[5]))
        with open(argv[2], "wb") as f:
            f.write(data)
        return 0
    if argv[1] == "print":
        print("%s: %s" % (argv[3], read_st(argv[2])[argv[3]]))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
