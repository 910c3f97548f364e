#!/usr/bin/env python3
"""peftc -> PEFT interop check: an adapter trained by `peftc train` loads in Hugging Face PEFT
and gives the same held-out loss as `peftc eval`.

Steps:
  1. build build/peftc if missing (cmake), run `peftc train --steps 30 --out DIR --quiet`;
  2. load DIR *unmodified* with PeftModel.from_pretrained onto a transformers
     LlamaForCausalLM holding stories260K with the q/k rows permuted to HF order
     (gen_peft_adapter.build_hf);
  3. permute the q_proj/k_proj lora_B rows of the loaded adapter to HF order in memory
     (peftc trains on the llama2.c checkpoint, whose q/k rows are in llama2.c's
     adjacent-pair RoPE order, so its lora_B rows are too; the HF model's q/k rows are
     permuted per head, and W + s*B*A stays consistent only if B's rows get the same
     permutation; lora_A, v/o/gate/up/down are untouched);
  4. tokens = [BOS] + encode(text) with a Python re-implementation of llama2.c run.c's
     encode() (checked against `peftc generate --prompt TEXT --json`, which echoes the
     prompt ids), windows as `peftc eval` (window i = tokens[i*S : i*S+S+1], kept if full),
     loss = mean cross-entropy over all targets of all windows;
  5. compare with `peftc eval --adapter DIR --data TEXT --seq S --json` (and with --merge,
     and the base model without adapter). Asserts |peftc - PEFT| <= 1e-4 each.

Not run by the default tests (needs torch, transformers, peft). From the repo root:
    python3 tests/golden/check_peft_interop.py [--steps 30] [--seq 32] [--out /tmp/x]
"""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import json
import struct
import subprocess
import tempfile
import warnings

import torch
import torch.nn.functional as F

# transformers' deprecation notices triggered inside PEFT are noise here
warnings.filterwarnings("ignore", category=FutureWarning)
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_llama_lora as G  # noqa: E402
import gen_peft_adapter as P  # noqa: E402  (build_hf, permute_to_hf; no re-exec on import)

from peft import PeftModel  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

REPO = G.REPO
TOL = 1e-4


# ---- llama2.c tokenizer (run.c build_tokenizer / encode) --------------------
class Tokenizer:
    def __init__(self, path, vocab_size=512):
        with open(path, "rb") as f:
            raw = f.read()
        (self.max_len,) = struct.unpack_from("<i", raw, 0)
        off = 4
        self.vocab, self.scores = [], []
        for _ in range(vocab_size):
            score, n = struct.unpack_from("<fi", raw, off)
            off += 8
            self.vocab.append(raw[off:off + n])
            self.scores.append(score)
            off += n
        assert off == len(raw), "trailing bytes in tokenizer"
        self.lookup = {}
        for i, piece in enumerate(self.vocab):  # run.c bsearch on sorted pieces: first id wins
            self.lookup.setdefault(piece, i)

    def encode(self, text: bytes, bos=True):
        ids = [1] if bos else []
        if text:
            ids.append(self.lookup[b" "])  # dummy prefix
        i = 0
        while i < len(text):
            # one UTF-8 code point (run.c: a lead byte plus up to 3 continuation bytes)
            j = i + 1
            while j < len(text) and (text[j] & 0xC0) == 0x80 and j - i < 4:
                j += 1
            cp = text[i:j]
            if cp in self.lookup:
                ids.append(self.lookup[cp])
            else:
                ids.extend(b + 3 for b in cp)  # byte fallback
            i = j
        start = 1 if bos else 0
        while True:  # merge the best-scoring adjacent pair (first one on ties)
            best, best_id, best_i = -1e10, -1, -1
            for k in range(start, len(ids) - 1):
                pid = self.lookup.get(self.vocab[ids[k]] + self.vocab[ids[k + 1]])
                if pid is not None and self.scores[pid] > best:
                    best, best_id, best_i = self.scores[pid], pid, k
            if best_i < 0:
                break
            ids[best_i:best_i + 2] = [best_id]
        return ids


# ---- helpers ----------------------------------------------------------------
def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"command failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout}\n{r.stderr}")
    return r.stdout


def peftc_eval(peftc, text_path, seq, adapter=None, merge=False):
    cmd = [peftc, "eval", "--data", text_path, "--seq", str(seq), "--json"]
    if adapter:
        cmd += ["--adapter", adapter]
    if merge:
        cmd += ["--merge"]
    out = run(cmd, cwd=REPO).strip().splitlines()
    return json.loads(out[-1])


def cfg_seq_len(ckpt):
    with open(ckpt, "rb") as f:
        return struct.unpack("<7i", f.read(28))[6]


def windows(ids, S):
    n = (len(ids) - 1) // S if len(ids) >= S + 1 else 0
    x = torch.tensor([ids[i * S:i * S + S] for i in range(n)])
    y = torch.tensor([ids[i * S + 1:i * S + S + 1] for i in range(n)])
    return x, y


@torch.no_grad()
def mean_ce(logits_fn, x, y):
    logits = logits_fn(x).double()
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum")
    return nll.item() / y.numel()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peftc", default=os.path.join(REPO, "build", "peftc"))
    ap.add_argument("--out", default="/tmp/x", help="adapter directory written by peftc train")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--text", default=os.path.join(REPO, "data", "tinyshakespeare", "input.txt"))
    ap.add_argument("--text-bytes", type=int, default=700,
                    help="evaluate the first N bytes, cut at a newline (its ids must fit the 512 context)")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    if not os.path.exists(args.peftc):
        run(["cmake", "-B", os.path.join(REPO, "build"), "-S", REPO])
        run(["cmake", "--build", os.path.join(REPO, "build"), "-j2", "--target", "peftc"])
    run([args.peftc, "train", "--steps", str(args.steps), "--out", args.out, "--quiet"], cwd=REPO)
    with open(os.path.join(args.out, "adapter_config.json")) as f:
        acfg = json.load(f)
    print(f"peftc train --steps {args.steps} -> {args.out}: {acfg['peft_type']} r={acfg['r']} "
          f"alpha={acfg['lora_alpha']} targets={acfg['target_modules']}")

    # the evaluation text and its ids
    with open(args.text, "rb") as f:
        text = f.read(args.text_bytes)
    text = text[:text.rfind(b"\n") + 1] or text
    ckpt = next(p for p in G.CKPT_CANDIDATES if os.path.exists(p))
    tok = Tokenizer(os.path.join(os.path.dirname(ckpt), "tok512.bin"))
    ids = tok.encode(text)
    assert len(ids) < cfg_seq_len(ckpt), f"{len(ids)} ids: lower --text-bytes (peftc generate checks the encoding)"
    gen = json.loads(run([args.peftc, "generate", "--prompt", text.decode("utf-8"), "--tokens",
                          str(len(ids) + 1), "--temperature", "0", "--json"], cwd=REPO))
    assert gen["ids"][:len(ids)] == ids, "Python encode differs from peftc's tokenizer"
    print(f"text: {len(text)} bytes of {os.path.relpath(args.text, REPO)} -> {len(ids)} ids "
          f"(Python encode == peftc's tokenizer)")
    x, y = windows(ids, args.seq)

    with tempfile.TemporaryDirectory() as tmp:
        text_path = os.path.join(tmp, "text.txt")
        with open(text_path, "wb") as f:
            f.write(text)
        res = peftc_eval(args.peftc, text_path, args.seq, args.out)
        res_m = peftc_eval(args.peftc, text_path, args.seq, args.out, merge=True)
        res_b = peftc_eval(args.peftc, text_path, args.seq)
    assert res["windows"] == x.shape[0] and res["tokens"] == y.numel(), (res, x.shape)

    # PEFT side
    cfg, w, _ = G.load_llama2c(ckpt)
    hf_base = P.build_hf(cfg, w)
    base_hf = mean_ce(lambda t: hf_base(input_ids=t, use_cache=False).logits, x, y)
    pm = PeftModel.from_pretrained(P.build_hf(cfg, w), args.out)  # the files as peftc wrote them
    pm.eval()
    logits_of = lambda t: pm(input_ids=t, use_cache=False).logits  # noqa: E731
    unpermuted = mean_ce(logits_of, x, y)
    n_perm = 0
    with torch.no_grad():
        for l in range(cfg["n_layers"]):
            attn = pm.base_model.model.model.layers[l].self_attn
            for name, heads in (("q_proj", cfg["n_heads"]), ("k_proj", cfg["n_kv_heads"])):
                b = getattr(attn, name).lora_B["default"].weight
                b.copy_(P.permute_to_hf(b.detach().clone(), heads))
                n_perm += 1
    peft_loss = mean_ce(logits_of, x, y)
    merged = pm.merge_and_unload()
    merged.eval()
    peft_merged = mean_ce(lambda t: merged(input_ids=t, use_cache=False).logits, x, y)

    # third opinion: llama2.c-convention PyTorch model + the adapter exactly as stored
    r, alpha = acfg["r"], acfg["lora_alpha"]
    ref = G.Llama(cfg, w, r, alpha)
    sd = load_file(os.path.join(args.out, "adapter_model.safetensors"))
    with torch.no_grad():
        for l, name, parent, m in ref.lora_modules():
            m.lora_A.copy_(sd[G.key_of(l, name, parent, "A")])
            m.lora_B.copy_(sd[G.key_of(l, name, parent, "B")])
    l2c_loss = mean_ce(ref, x, y)

    print(f"windows {res['windows']} x seq {args.seq} = {res['tokens']} targets")
    rows = [
        ("base model (no adapter)", res_b["loss"], base_hf),
        ("adapter, unmerged", res["loss"], peft_loss),
        ("adapter, merged", res_m["loss"], peft_merged),
    ]
    print(f"  {'':26s} {'peftc eval':>12s} {'PEFT':>12s} {'|diff|':>10s}")
    worst = 0.0
    for label, a, b in rows:
        print(f"  {label:26s} {a:12.7f} {b:12.7f} {abs(a - b):10.2e}")
        worst = max(worst, abs(a - b))
    print(f"  llama2.c-convention PyTorch model + adapter as stored: {l2c_loss:.7f}")
    print(f"  PEFT without permuting the {n_perm} q/k lora_B tensors: {unpermuted:.7f} (wrong, as expected)")
    assert worst <= TOL, f"peftc and PEFT disagree by {worst}"
    assert abs(l2c_loss - res["loss"]) <= TOL
    assert abs(res["loss"] - res_b["loss"]) > 1e-3, "the adapter did not change the loss"
    print(f"OK: peftc eval and PEFT agree to {worst:.2e} (tolerance {TOL})")


if __name__ == "__main__":
    sys.exit(main())
