#!/usr/bin/env python3
"""peftc -> PEFT interop check: adapters trained by `peftc train`, one per method PEFT has, load in
Hugging Face PEFT and give the same held-out loss as `peftc eval`.

Methods (--methods, default all): lora (peftc's default LoRA), dora, ia3, prompt_tuning, loha, lokr
(examples/configs/<method>.json) and adalora (examples/configs/adalora.json with a schedule that
fits the run, so the saved adapter is pruned: rank_pattern set, some ranks cut). For each:
  1. `peftc train [--adapter CFG] --steps 30 --lr LR --out OUT/<method> --quiet` (build/peftc is
     built with cmake if missing);
  2. load OUT/<method> *unmodified* with PeftModel.from_pretrained onto a transformers
     LlamaForCausalLM holding stories260K with the q/k rows permuted to HF order
     (gen_peft_adapter.build_hf). Failures: missing/unexpected keys of load_adapter, warnings,
     get_peft_model_state_dict not equal to the file bit for bit, or a set of tensor names/shapes
     other than PEFT's own save_pretrained with the same adapter_config.json. A report that PEFT's
     own directory gets too (prompt tuning's "unexpected" prompt_embeddings, AdaLoRA's rank_pattern
     warning) is printed as a note;
  3. permute, in memory, the adapter tensors whose rows follow the q_proj/k_proj output rows to
     HF order (peftc trains on the llama2.c checkpoint, whose q/k rows are in llama2.c's
     adjacent-pair RoPE order): lora_B (LoRA, DoRA, AdaLoRA), lora_magnitude_vector (DoRA),
     ia3_l of k_proj (IA3, [out, 1]), hada_w1_a and hada_w2_a (LoHa), lokr_w2 / lokr_w2_a (LoKr,
     see lokr.md); prompt tuning: nothing;
  4. tokens = [BOS] + encode(text) with a Python re-implementation of llama2.c run.c's
     encode() (checked against `peftc generate --prompt TEXT --json`, which echoes the
     prompt ids), windows as `peftc eval` (window i = tokens[i*S : i*S+S+1], kept if full),
     loss = mean cross-entropy over all targets of all windows (prompt tuning: the logits of
     the virtual tokens dropped);
  5. compare with `peftc eval --adapter DIR --data TEXT --seq S --json`, and `--merge` with
     merge_and_unload (all but prompt tuning); |peftc - PEFT| <= 1e-4 each. Also: the base model
     without adapter, PEFT without step 3 (printed, differs), and for LoRA the llama2.c-convention
     PyTorch model + the adapter as stored.

One line per method: both losses and |diff|, unmerged and merged. Exit status 1 if any fails.
Not run by the default tests (needs torch, transformers, peft). From the repo root:
    python3 tests/golden/check_peft_interop.py [--methods lora,ia3] [--steps 30] [--lr X] [--seq 32] [--out /tmp/x]
See tests/golden/interop.md.
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

from peft import PeftConfig, PeftModel, get_peft_model, get_peft_model_state_dict  # noqa: E402
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


# ---- the methods ------------------------------------------------------------
# name -> (adapter config for `peftc train --adapter`, None = peftc's default LoRA; default --lr;
#          mergeable). adalora's config is written at run time (see adalora_config).
METHODS = {
    "lora": (None, 3e-3, True),
    "dora": ("examples/configs/dora.json", 1e-2, True),
    "ia3": ("examples/configs/ia3.json", 3e-2, True),
    "prompt_tuning": ("examples/configs/prompt_tuning.json", 3e-2, False),
    "loha": ("examples/configs/loha.json", 1e-2, True),
    "lokr": ("examples/configs/lokr.json", 1e-2, True),
    "adalora": ("examples/configs/adalora.json", 1e-2, True),
}


def adalora_config(steps, path):
    """examples/configs/adalora.json with a schedule that fits `steps`: tinit 5, tfinal 10, deltaT 5,
    total_step = steps (init_r 12, target_r 8 as the example), so the saved adapter is pruned:
    rank_pattern in adapter_config.json and lora_A/E/B cut to the kept ranks (with 30 steps, a
    module or two at rank 0: [0, in] / [out, 0] tensors)."""
    with open(os.path.join(REPO, METHODS["adalora"][0])) as f:
        c = json.load(f)
    c.update(total_step=steps, tinit=5, tfinal=10, deltaT=5)
    with open(path, "w") as f:
        json.dump(c, f, indent=2)
    return path


def perm_rows(t, heads):
    """permute_to_hf on the first dimension of t (1-D tensors as [n, 1]) in place."""
    if t.numel() == 0:
        return 0
    v = t.detach().reshape(t.shape[0], -1).clone()
    t.copy_(P.permute_to_hf(v, heads).reshape(t.shape))
    return 1


def permute_qk(pm, cfg, method):
    """Permute, in memory, every adapter tensor of q_proj/k_proj whose rows follow the module's
    output rows to HF order. Returns the names of the permuted tensors (layer 0 only, for the log)
    and their count."""
    if method == "prompt_tuning":
        return 0, []  # virtual token embeddings: nothing indexed by q/k rows
    hs = cfg["dim"] // cfg["n_heads"]
    n, names = 0, []
    with torch.no_grad():
        for l in range(cfg["n_layers"]):
            attn = pm.base_model.model.model.layers[l].self_attn
            for name, heads in (("q_proj", cfg["n_heads"]), ("k_proj", cfg["n_kv_heads"])):
                m = getattr(attn, name)
                ts = []  # (label, tensor, heads within the tensor's rows)
                if method in ("lora", "dora"):
                    ts.append(("lora_B", m.lora_B["default"].weight, heads))
                    if "default" in getattr(m, "lora_magnitude_vector", {}):
                        ts.append(("lora_magnitude_vector", m.lora_magnitude_vector["default"].weight, heads))
                elif method == "adalora":
                    ts.append(("lora_B", m.lora_B["default"], heads))
                elif method == "ia3":
                    if not hasattr(m, "ia3_l"):
                        continue  # not targeted (ia3.json: k, v, down)
                    if not m.is_feedforward:  # [out, 1]: output rows; feedforward [1, in]: inputs
                        ts.append(("ia3_l", m.ia3_l["default"], heads))
                elif method == "loha":
                    ts.append(("hada_w1_a", m.hada_w1_a["default"], heads))
                    ts.append(("hada_w2_a", m.hada_w2_a["default"], heads))
                elif method == "lokr":
                    # dW = kron(w1, w2): row i*b + j is w1[i,:] (x) w2[j,:]; when the head size
                    # divides b = rows of w2, the per-head RoPE permutation is one of w2's rows
                    # (w2_a's when w2 is low rank), w1 untouched (tests/golden/lokr.md)
                    key = "lokr_w2" if "default" in m.lokr_w2 else "lokr_w2_a"
                    t = getattr(m, key)["default"]
                    b = t.shape[0]
                    assert b % hs == 0, f"layer {l} {name}: {key} has {b} rows, not a multiple of head size {hs}"
                    ts.append((key, t, b // hs))
                for label, t, h in ts:
                    c = perm_rows(t, h)
                    n += c
                    if l == 0 and c:
                        names.append(f"{name}.{label}")
    return n, names


def peft_load(cfg, w, adapter_dir):
    """PeftModel.from_pretrained on a fresh HF model, recording what PEFT reports: the
    load_result of load_adapter (missing/unexpected keys) and every warning. Then PEFT's view
    of the adapter it holds (get_peft_model_state_dict, what save_pretrained would write) must
    equal the file key for key, bit for bit. Returns (model, problems, {key: shape} of the file)."""
    results = []
    orig = PeftModel.load_adapter

    def rec(self, *a, **k):
        r = orig(self, *a, **k)
        results.append(r)
        return r

    PeftModel.load_adapter = rec
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            pm = PeftModel.from_pretrained(P.build_hf(cfg, w), adapter_dir)  # the files as they are
    finally:
        PeftModel.load_adapter = orig
    pm.eval()
    problems = []
    for r in results:
        if r.missing_keys:
            problems.append(f"load_adapter: missing keys {r.missing_keys}")
        if r.unexpected_keys:
            problems.append(f"load_adapter: unexpected keys {r.unexpected_keys}")
    problems += [f"from_pretrained: {c.category.__name__}: {c.message}" for c in caught]
    file_sd = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        held = get_peft_model_state_dict(pm)
    problems += [f"get_peft_model_state_dict: {c.category.__name__}: {c.message}" for c in caught]
    if set(held) != set(file_sd):
        problems.append(f"state dict keys: only in the file {sorted(set(file_sd) - set(held))[:5]}, "
                        f"only in PEFT {sorted(set(held) - set(file_sd))[:5]}")
    for k in sorted(set(held) & set(file_sd)):
        a, b = held[k], file_sd[k]
        if a.shape != b.shape or a.dtype != b.dtype or not torch.equal(a, b):
            problems.append(f"{k}: PEFT holds {a.dtype} {list(a.shape)}, the file {b.dtype} {list(b.shape)}"
                            + ("" if a.shape != b.shape else " (values differ)"))
    return pm, problems, {k: list(v.shape) for k, v in file_sd.items()}


def peft_own_save(cfg, w, adapter_dir, tmp):
    """What PEFT itself does with the same config: get_peft_model(HF model, the config peftc
    wrote) + save_pretrained, then the same load as peftc's directory. Load reports that PEFT's
    own directory produces too are PEFT's behaviour, not peftc's. Returns (problems, {key: shape})
    of PEFT's file, or None if PEFT cannot build the model from the config."""
    pcfg = PeftConfig.from_pretrained(adapter_dir)
    pcfg.inference_mode = False
    if pcfg.peft_type == "PROMPT_TUNING":
        pcfg.prompt_tuning_init = "RANDOM"  # TEXT needs the HF tokenizer "stories260K", which does not exist
    d = os.path.join(tmp, "peft_own_" + str(pcfg.peft_type).lower())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = get_peft_model(P.build_hf(cfg, w), pcfg)
        pm.save_pretrained(d)
    _, problems, shapes = peft_load(cfg, w, d)
    return problems, shapes


def peft_logits_fn(model, n_virtual=0):
    def f(t):
        logits = model(input_ids=t, use_cache=False).logits
        return logits[:, n_virtual:]  # prompt tuning: PEFT returns the virtual positions too
    return f


def l2c_lora_loss(cfg, w, acfg, adapter_dir, x, y):
    """third opinion for plain LoRA: llama2.c-convention PyTorch model + the adapter as stored."""
    ref = G.Llama(cfg, w, acfg["r"], acfg["lora_alpha"])
    sd = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    with torch.no_grad():
        for l, name, parent, m in ref.lora_modules():
            m.lora_A.copy_(sd[G.key_of(l, name, parent, "A")])
            m.lora_B.copy_(sd[G.key_of(l, name, parent, "B")])
    return mean_ce(ref, x, y)


def describe(acfg):
    t = acfg["peft_type"]
    if t == "LORA":
        return (f"LORA{' use_dora' if acfg.get('use_dora') else ''} r={acfg['r']} alpha={acfg['lora_alpha']} "
                f"{len(acfg['target_modules'])} targets")
    if t == "IA3":
        return f"IA3 targets={acfg['target_modules']} feedforward={acfg['feedforward_modules']}"
    if t == "PROMPT_TUNING":
        return f"PROMPT_TUNING {acfg['num_virtual_tokens']} virtual tokens, init {acfg['prompt_tuning_init']}"
    if t in ("LOHA", "LOKR"):
        return f"{t} r={acfg['r']} alpha={acfg['alpha']} {len(acfg['target_modules'])} targets"
    if t == "ADALORA":
        rp = acfg.get("rank_pattern") or {}
        kept = sum(sum(v) for v in rp.values())
        total = sum(len(v) for v in rp.values())
        zero = sum(1 for v in rp.values() if not any(v))
        return (f"ADALORA init_r={acfg['init_r']} target_r={acfg['target_r']} total_step={acfg['total_step']}: "
                f"rank_pattern {len(rp)} modules, {kept}/{total} ranks kept, {zero} at rank 0")
    return t


def check_method(method, args, cfg, w, x, y, text_path, tmp):
    """Train, load in PEFT, compare. Returns a result dict (failures listed in 'fail')."""
    cfg_path, lr, mergeable = METHODS[method]
    lr = args.lr if args.lr is not None else lr
    out = os.path.join(args.out, method)
    cmd = [args.peftc, "train", "--steps", str(args.steps), "--lr", repr(lr), "--out", out, "--quiet"]
    if method == "adalora":
        cmd += ["--adapter", adalora_config(args.steps, os.path.join(tmp, "adalora.json"))]
    elif cfg_path:
        cmd += ["--adapter", os.path.join(REPO, cfg_path)]
    run(cmd, cwd=REPO)
    with open(os.path.join(out, "adapter_config.json")) as f:
        acfg = json.load(f)
    res = {"method": method, "fail": [], "lr": lr, "desc": describe(acfg)}
    if method == "adalora" and not acfg.get("rank_pattern"):
        res["fail"].append("the AdaLoRA adapter was not pruned (rank_pattern empty)")

    ev = peftc_eval(args.peftc, text_path, args.seq, out)
    assert ev["windows"] == x.shape[0] and ev["tokens"] == y.numel(), (ev, x.shape)
    res["peftc"] = ev["loss"]
    if mergeable:
        res["peftc_m"] = peftc_eval(args.peftc, text_path, args.seq, out, merge=True)["loss"]

    try:
        pm, problems, shapes = peft_load(cfg, w, out)
    except Exception as e:  # noqa: BLE001 - a load failure is a result
        res["fail"].append(f"PeftModel.from_pretrained raised {type(e).__name__}: {e}")
        return res
    own_problems, own_shapes = peft_own_save(cfg, w, out, tmp)
    res["notes"] = [p for p in problems if p in own_problems]
    res["fail"] += [f"load: {p}" for p in problems if p not in own_problems]
    if shapes != own_shapes:
        ks = sorted(set(shapes) ^ set(own_shapes)) or sorted(k for k in shapes if shapes[k] != own_shapes[k])
        res["fail"].append(f"adapter_model.safetensors differs from PEFT's own save_pretrained with the same config "
                           f"({len(shapes)} vs {len(own_shapes)} tensors), e.g. "
                           + ", ".join(f"{k}: peftc {shapes.get(k)}, PEFT {own_shapes.get(k)}" for k in ks[:3]))
    n_virtual = acfg.get("num_virtual_tokens", 0) if acfg["peft_type"] == "PROMPT_TUNING" else 0
    logits_of = peft_logits_fn(pm, n_virtual)
    n_perm, names = permute_qk(pm, cfg, method)
    res["n_perm"], res["perm_names"] = n_perm, names
    if n_perm:
        # the permutation matters: PEFT on the files as they are, nothing permuted
        pm2, _, _ = peft_load(cfg, w, out)
        res["unpermuted"] = mean_ce(peft_logits_fn(pm2, n_virtual), x, y)
        del pm2
    res["peft"] = mean_ce(logits_of, x, y)
    if mergeable:
        merged = pm.merge_and_unload()
        merged.eval()
        res["peft_m"] = mean_ce(peft_logits_fn(merged), x, y)
    if method == "lora":
        res["l2c"] = l2c_lora_loss(cfg, w, acfg, out, x, y)

    for k_peftc, k_peft, label in (("peftc", "peft", "unmerged"), ("peftc_m", "peft_m", "merged")):
        if k_peftc in res and k_peft in res:
            d = abs(res[k_peftc] - res[k_peft])
            res["d_" + k_peft] = d
            if not d <= TOL:
                res["fail"].append(f"{label}: |peftc - PEFT| = {d:.3e} > {TOL}")
    if "l2c" in res and not abs(res["l2c"] - res["peftc"]) <= TOL:
        res["fail"].append(f"llama2.c-convention model + adapter as stored: {res['l2c']:.7f}")
    return res


def fmt(v, spec):
    return format(v, spec) if v is not None else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peftc", default=os.path.join(REPO, "build", "peftc"))
    ap.add_argument("--out", default="/tmp/x", help="parent directory: peftc train writes OUT/<method>")
    ap.add_argument("--methods", default="all",
                    help=f"comma-separated subset of {','.join(METHODS)} (default all)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--lr", type=float, default=None,
                    help="learning rate for every method (default per method: lora 3e-3 (peftc's default), "
                         "ia3/prompt_tuning 3e-2, the others 1e-2)")
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--text", default=os.path.join(REPO, "data", "tinyshakespeare", "input.txt"))
    ap.add_argument("--text-bytes", type=int, default=700,
                    help="evaluate the first N bytes, cut at a newline (its ids must fit the 512 context)")
    args = ap.parse_args()
    methods = list(METHODS) if args.methods == "all" else [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        ap.error(f"unknown method(s) {bad}; known: {','.join(METHODS)}")

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    if not os.path.exists(args.peftc):
        run(["cmake", "-B", os.path.join(REPO, "build"), "-S", REPO])
        run(["cmake", "--build", os.path.join(REPO, "build"), "-j2", "--target", "peftc"])
    os.makedirs(args.out, exist_ok=True)

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
    print(f"windows {x.shape[0]} x seq {args.seq} = {y.numel()} targets; "
          f"peftc train --steps {args.steps} --out {args.out}/<method>")

    cfg, w, _ = G.load_llama2c(ckpt)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        text_path = os.path.join(tmp, "text.txt")
        with open(text_path, "wb") as f:
            f.write(text)
        res_b = peftc_eval(args.peftc, text_path, args.seq)
        assert res_b["windows"] == x.shape[0] and res_b["tokens"] == y.numel(), (res_b, x.shape)
        base_hf = mean_ce(peft_logits_fn(P.build_hf(cfg, w)), x, y)
        for m in methods:
            r = check_method(m, args, cfg, w, x, y, text_path, tmp)
            results.append(r)
            if "peftc" in r and abs(r["peftc"] - res_b["loss"]) <= 1e-3:
                r["fail"].append(f"the adapter did not change peftc's loss (base {res_b['loss']:.7f})")
            print(f"{m:14s} {r['desc']} (lr {r['lr']:g}); q/k tensors permuted in memory: {r.get('n_perm', 0)}"
                  + (f" ({', '.join(r['perm_names'])} x {cfg['n_layers']} layers)" if r.get("perm_names") else ""),
                  flush=True)

    d_base = abs(res_b["loss"] - base_hf)
    print()
    print(f"{'method':14s} {'peftc eval':>11s} {'PEFT':>11s} {'|diff|':>9s}   "
          f"{'peftc --merge':>13s} {'merge_and_unload':>16s} {'|diff|':>9s}   {'PEFT unpermuted':>15s}  result")
    print(f"{'(base model)':14s} {res_b['loss']:11.7f} {base_hf:11.7f} {d_base:9.2e}   "
          f"{'':>13s} {'':>16s} {'':>9s}   {'':>15s}  {'ok' if d_base <= TOL else 'FAIL'}")
    for r in results:
        print(f"{r['method']:14s} {fmt(r.get('peftc'), '11.7f'):>11s} {fmt(r.get('peft'), '11.7f'):>11s} "
              f"{fmt(r.get('d_peft'), '9.2e'):>9s}   {fmt(r.get('peftc_m'), '13.7f'):>13s} "
              f"{fmt(r.get('peft_m'), '16.7f'):>16s} {fmt(r.get('d_peft_m'), '9.2e'):>9s}   "
              f"{fmt(r.get('unpermuted'), '15.7f'):>15s}  {'FAIL' if r['fail'] else 'ok'}")
    for r in results:
        if "l2c" in r:
            print(f"lora: llama2.c-convention PyTorch model + adapter as stored: {r['l2c']:.7f}")
    n_fail = 0
    if d_base > TOL:
        print(f"FAIL base model: peftc {res_b['loss']:.7f} vs HF {base_hf:.7f}")
        n_fail += 1
    for r in results:
        for msg in r.get("notes", []):
            print(f"note {r['method']} (PEFT's own save_pretrained directory gets the same): {msg[:300]}"
                  + ("..." if len(msg) > 300 else ""))
    for r in results:
        for msg in r["fail"]:
            print(f"FAIL {r['method']}: {msg}")
        n_fail += bool(r["fail"])
    if n_fail:
        print(f"{n_fail} of {len(results)} methods (or the base model) FAILED (tolerance {TOL})")
        return 1
    worst = max([d_base] + [r.get(k, 0.0) for r in results for k in ("d_peft", "d_peft_m")])
    print(f"OK: {len(results)} methods load in PEFT unmodified; peftc eval and PEFT agree to {worst:.2e} "
          f"(tolerance {TOL})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
