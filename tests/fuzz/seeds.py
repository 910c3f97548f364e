#!/usr/bin/env python3
"""Builds the seed corpora of the fuzz harnesses from the tree's own test files (scripts/fuzz.sh
runs it): tests/fuzz/seeds.py SRCROOT OUTDIR. Big binaries are shrunk, never copied whole:
safetensors files keep their smallest tensors (<= 16 KiB of data), the stories260K checkpoint
becomes a 1-layer, 32-token version of itself, the tokenizer seeds are tok512.bin and a few tiny
vocabularies. Only the standard library."""
import glob, json, os, shutil, struct, sys

src, out = sys.argv[1], sys.argv[2]


def put(harness, name, data):
    d = os.path.join(out, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def copy_tree_seeds(harness):
    for p in sorted(glob.glob(os.path.join(src, "tests/fuzz/corpus", harness, "*"))):
        put(harness, "c-" + os.path.basename(p), open(p, "rb").read())


def rel(p):
    return os.path.relpath(p, src).replace("/", "_")


# ---- ir: every .pir of the lit tests
for p in sorted(glob.glob(os.path.join(src, "tests/lit/**/*.pir"), recursive=True)):
    put("ir", rel(p), open(p, "rb").read())
copy_tree_seeds("ir")

# ---- adapter_config: every config in the tests and examples
cfgs = glob.glob(os.path.join(src, "tests/data/**/adapter_config.json"), recursive=True)
cfgs += glob.glob(os.path.join(src, "tests/data/peft_configs/*.json"))
cfgs += glob.glob(os.path.join(src, "examples/configs/*.json"))
cfgs += glob.glob(os.path.join(src, "tests/lit/Inputs/*.json"))
for p in sorted(cfgs):
    put("adapter_config", rel(p), open(p, "rb").read())
copy_tree_seeds("adapter_config")


# ---- safetensors: the test files, shrunk to their smallest tensors
def shrink_st(data, budget=16384):
    n = struct.unpack("<Q", data[:8])[0]
    hdr = json.loads(data[8:8 + n])
    body = data[8 + n:]
    meta = hdr.pop("__metadata__", None)
    items = sorted(hdr.items(), key=lambda kv: (kv[1]["data_offsets"][1] - kv[1]["data_offsets"][0], kv[0]))
    new, blob = {}, b""
    if meta is not None:
        new["__metadata__"] = meta
    for name, t in items:
        b, e = t["data_offsets"]
        if len(blob) + (e - b) > budget:
            break
        new[name] = {"dtype": t["dtype"], "shape": t["shape"], "data_offsets": [len(blob), len(blob) + e - b]}
        blob += body[b:e]
    h = json.dumps(new, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + blob


for p in sorted(glob.glob(os.path.join(src, "tests/data/**/*.safetensors"), recursive=True)):
    data = open(p, "rb").read()
    put("safetensors", rel(p), data if len(data) <= 16384 else shrink_st(data))
copy_tree_seeds("safetensors")

# ---- llama2c: stories260K as a 1-layer, 32-token model (its own weights), and tiny checkpoints
def l2c_floats(dim, hidden, layers, heads, kv, vocab, seq, tied):
    hs = dim // heads
    kvd = kv * hs
    n = vocab * dim + layers * (dim + dim * dim + 2 * kvd * dim + dim * dim + dim + 3 * hidden * dim)
    n += dim + seq * hs  # rms_final, both rope tables
    return n + (0 if tied else vocab * dim)


st = open(os.path.join(src, "data/stories260K/stories260K.bin"), "rb").read()
dim, hidden, layers, heads, kv, vocab, seq = struct.unpack("<7i", st[:28])
small = (dim, hidden, 1, heads, kv, 32, 16)
nf = l2c_floats(*small, vocab > 0)
put("llama2c", "stories260K_1layer.bin", struct.pack("<7i", *small) + st[28:28 + 4 * nf])
for name, cfg in [("tiny_tied.bin", (2, 2, 1, 1, 1, 4, 2)), ("tiny_untied.bin", (4, 6, 2, 2, 1, -5, 3)),
                  ("gqa.bin", (8, 4, 1, 2, 1, 3, 1))]:
    c = list(cfg)
    nf = l2c_floats(*c[:5], abs(c[5]), c[6], c[5] > 0)
    put("llama2c", name, struct.pack("<7i", *c) + struct.pack("<%df" % nf, *[(i % 7) * 0.25 for i in range(nf)]))
put("llama2c", "header_only.bin", st[:28])
put("llama2c", "ak42.bin", struct.pack("<2i", 0x616B3432, 1) + b"\0" * 28)
copy_tree_seeds("llama2c")


# ---- tokenizer: u16 text length, text, tokenizer.bin
def tok_file(pieces, max_len=None):
    b = struct.pack("<i", max_len or max(1, max(len(p) for p, _ in pieces)))
    for p, s in pieces:
        b += struct.pack("<fi", s, len(p)) + p
    return b


def tok_seed(text, tok):
    return struct.pack("<H", len(text)) + text + tok


tok512 = open(os.path.join(src, "data/stories260K/tok512.bin"), "rb").read()
put("tokenizer", "tok512.bin", tok_seed(b"Once upon a time, there was a little girl named Lily.", tok512))
put("tokenizer", "tok512_utf8.bin", tok_seed("ROMEO: caf\u00e9 \u2014 \U0001F600".encode() + b"\xff\x00", tok512))
tiny = [(b"<unk>", 0.0), (b"<s>", 0.0), (b"</s>", 0.0)] + [(bytes([i]), -1e9) for i in range(256)]
tiny += [(b" ", -1.0), (b"ab", 1.0), (b" a", 2.0), (b"abab", 0.5), (b"ba", 1.0), (b"ab", 3.0),
         (b"\xc3\xa9", -2.0), (b" ab", float("nan")), (b"", 0.0)]
put("tokenizer", "tiny.bin", tok_seed(b"ababab ba ab\xc3\xa9", tok_file(tiny)))
put("tokenizer", "three.bin", tok_seed(b"aaaa", tok_file([(b"a", 0.0), (b"aa", 1.0), (b"aaa", 2.0)])))
copy_tree_seeds("tokenizer")

# ---- tokenizer_json: u16 text length, text, tokenizer.json (the test fixtures and small files)
tj_text = "Hello, world! caf\u00e9 cafe\u0301 \u4e2d\u6587 \U0001F600 don't 2024 <mask> [CLS]".encode()
for p in sorted(glob.glob(os.path.join(src, "tests/data/tokenizer_json/*.json"))):
    if not p.endswith(".expected.json") and not p.endswith("cases.json"):
        put("tokenizer_json", rel(p), tok_seed(tj_text, open(p, "rb").read()))
wp = {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
      "max_input_chars_per_word": 8, "vocab": {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "a": 3, "##b": 4, "ab": 5}}
bpe = {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "<0x61>": 3, "<unk>": 4}, "merges": ["a b"],
       "unk_token": "<unk>", "byte_fallback": True, "fuse_unk": True}
small = [
    {"version": "1.0", "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
     "strip_accents": None, "lowercase": True}, "pre_tokenizer": {"type": "BertPreTokenizer"},
     "post_processor": {"type": "BertProcessing", "cls": ["[CLS]", 1], "sep": ["[SEP]", 2]}, "model": wp},
    {"added_tokens": [{"id": 2, "content": "ab", "single_word": True, "lstrip": True, "rstrip": True,
                       "normalized": True, "special": False}],
     "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Replace", "pattern": {"Regex": "\\s+"},
                    "content": " "}]},
     "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "\\p{L}+|\\d"},
                       "behavior": "MergedWithNext", "invert": True}, {"type": "Metaspace", "replacement": "\u2581",
                       "prepend_scheme": "first", "split": True}]},
     "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                 {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
     "truncation": {"max_length": 3, "strategy": "LongestFirst", "stride": 1, "direction": "Left"},
     "padding": {"strategy": {"Fixed": 6}, "direction": "Left", "pad_to_multiple_of": 4, "pad_id": 0,
                 "pad_type_id": 0, "pad_token": "a"}, "model": bpe},
]
for i, d in enumerate(small):
    put("tokenizer_json", f"small{i}.json", tok_seed(b"ab aab \xc3\xa9 AB 12 ab", json.dumps(d).encode()))
copy_tree_seeds("tokenizer_json")

# ---- gguf: the committed tiny GGUF (every value type, every supported tensor type)
for p in sorted(glob.glob(os.path.join(src, "tests/data/gguf/*.gguf"))):
    put("gguf", rel(p), open(p, "rb").read())
copy_tree_seeds("gguf")

# ---- target_match: selector byte + pattern (committed seeds only)
copy_tree_seeds("target_match")
