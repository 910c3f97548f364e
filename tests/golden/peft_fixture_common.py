"""What the PEFT fixture generators (tests/golden/gen_peft_*.py) share.

Each generator starts with

    PIN_HASH_SEED = True
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import peft_fixture_common as C

Importing this module from a script that set PIN_HASH_SEED (as __main__) re-executes it with
PYTHONHASHSEED=0 before torch and PEFT load: adapter_config.json lists target_modules from a
Python set, so its order depends on the string hash seed. Importing a generator from another
script (check_peft_interop.py imports gen_peft_adapter) re-executes nothing.

Here: the stories260K Hugging Face model with q/k rows in HF order (build_hf) and the row
permutations, the run setup (start: --out-dir/--ckpt, torch settings, the checkpoint), the
fixed batch [2,16] with two ignored targets and its loss, the metadata every
expected.safetensors carries, PEFT's forward/backward, the comparisons with a model written
by hand, merge_and_unload and reload, and the file helpers (write_expected, list_dir).

The generators need torch, numpy, safetensors, transformers and peft (0.21.2 wrote the fixtures:
/work/venv-golden/bin/python); they run on the CPU, fp32, 1 thread.
"""
import os
import sys

if getattr(sys.modules.get("__main__"), "PIN_HASH_SEED", False) and os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)
# PEFT looks the base model name up on the Hub when saving; there is nothing to find.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import copy  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import warnings  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

# transformers' deprecation notices triggered inside PEFT are noise here
warnings.filterwarnings("ignore", category=FutureWarning)
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_llama_lora as G  # noqa: E402  (checkpoint loader + llama2.c-convention model)

import peft  # noqa: E402
import transformers  # noqa: E402
from peft import PeftModel  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

REPO = G.REPO
DEFAULT_OUT_DIR = os.path.join(REPO, "tests", "data")
BASE_NAME = "stories260K"  # base_model_name_or_path recorded by PEFT

# the batch [2,16] of every fixture but the LoRA one: ids drawn with seed 42, two ignored targets
BATCH_SEED = 42
BATCH, SEQ, VOCAB_DRAW = 2, 16, 512
IGNORE_INDEX = -100
IGNORED = [(0, 3), (1, 0)]
MERGED_LAYERS = (0, 4)
TOL = 1e-4
LOSS_DOC = "mean cross-entropy of logits vs targets over the non-ignored targets"


# ---- q/k row permutation (karpathy/llama2.c export.py) ---------------------
def permute_to_hf(w, n_heads):
    """llama2.c rows (adjacent pairs) -> HF rows (halves), per head. w: [dim1, dim2]."""
    dim1, dim2 = w.shape
    return w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)


def permute_to_l2c(w, n_heads):
    """Inverse of permute_to_hf (export.py's permute_reverse)."""
    dim1, dim2 = w.shape
    return w.view(n_heads, 2, dim1 // n_heads // 2, dim2).transpose(1, 2).reshape(dim1, dim2)


def qk_heads(cfg, name):
    return {"q_proj": cfg["n_heads"], "k_proj": cfg["n_kv_heads"]}.get(name)


def to_l2c(cfg, name, t):
    """q/k output rows HF -> llama2.c order; other modules unchanged."""
    h = qk_heads(cfg, name)
    return permute_to_l2c(t, h) if h else t


def to_hf(cfg, name, t):
    h = qk_heads(cfg, name)
    return permute_to_hf(t, h) if h else t


# ---- HF model --------------------------------------------------------------
def build_hf(cfg, w):
    hcfg = LlamaConfig(
        vocab_size=cfg["vocab_size"], hidden_size=cfg["dim"], intermediate_size=cfg["hidden_dim"],
        num_hidden_layers=cfg["n_layers"], num_attention_heads=cfg["n_heads"],
        num_key_value_heads=cfg["n_kv_heads"], rms_norm_eps=G.RMS_EPS, rope_theta=G.ROPE_THETA,
        tie_word_embeddings=True, max_position_embeddings=cfg["seq_len"], hidden_act="silu",
        attention_bias=False, mlp_bias=False, bos_token_id=1, eos_token_id=2)
    hcfg._name_or_path = BASE_NAME
    model = LlamaForCausalLM(hcfg)
    model.config._name_or_path = BASE_NAME
    sd = {"model.embed_tokens.weight": w["tok"], "model.norm.weight": w["rms_final"]}
    for l in range(cfg["n_layers"]):
        p = f"model.layers.{l}."
        sd[p + "input_layernorm.weight"] = w["rms_att"][l]
        sd[p + "post_attention_layernorm.weight"] = w["rms_ffn"][l]
        for name, parent, src in G.MODULES:
            t = w[src][l]
            h = qk_heads(cfg, name)
            sd[f"{p}{parent}.{name}.weight"] = permute_to_hf(t, h) if h else t
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected, unexpected
    assert set(missing) <= {"lm_head.weight"}, missing  # tied to embed_tokens
    model.tie_weights()
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    model.eval()
    return model


def hf_logits(model, tokens):
    with torch.no_grad():
        return model(input_ids=tokens.long(), use_cache=False).logits.float()


def peft_lora_modules(pm, n_layers):
    """(layer, name, parent, adapted module) in gen_llama_lora's MODULES order."""
    layers = pm.base_model.model.model.layers
    for l in range(n_layers):
        for name, parent, _ in G.MODULES:
            yield l, name, parent, getattr(getattr(layers[l], parent), name)


# ---- a run -----------------------------------------------------------------
def start(doc):
    """--out-dir/--ckpt, fp32 on 1 thread, deterministic; the checkpoint (sha checked).
    Returns (args, ckpt path, cfg, weights, checkpoint sha256)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--out-dir", default=DEFAULT_OUT_DIR)
    ap.add_argument("--ckpt", default=None)
    args = ap.parse_args()

    torch.set_default_dtype(torch.float32)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)

    ckpt = args.ckpt or next((p for p in G.CKPT_CANDIDATES if os.path.exists(p)), None)
    assert ckpt, f"stories260K.bin not found in {G.CKPT_CANDIDATES}"
    cfg, w, ck_sha = G.load_llama2c(ckpt)
    assert ck_sha == G.CKPT_SHA256, ck_sha
    print(f"checkpoint {ckpt}; torch {torch.__version__}, transformers {transformers.__version__}, "
          f"peft {peft.__version__}")
    return args, ckpt, cfg, w, ck_sha


def make_batch():
    """(ids [2,17], tokens [2,16] i32, targets [2,16] i32 with IGNORED set to IGNORE_INDEX)"""
    gb = torch.Generator().manual_seed(BATCH_SEED)
    ids = torch.randint(0, VOCAB_DRAW, (BATCH, SEQ + 1), generator=gb)
    tokens = ids[:, :-1].contiguous().to(torch.int32)
    targets = ids[:, 1:].contiguous().clone()
    for b, t in IGNORED:
        targets[b, t] = IGNORE_INDEX
    return ids, tokens, targets.to(torch.int32)


def loss_of(logits, targets):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).long(),
                           ignore_index=IGNORE_INDEX, reduction="mean")


def fixture_meta(generator, ck_sha):
    """the metadata of every expected.safetensors: what wrote it, from what, with which versions"""
    return {"format": "peftc peft fixture v1", "generator": f"tests/golden/{generator}",
            "checkpoint": "stories260K.bin", "checkpoint_sha256": ck_sha,
            "torch_version": torch.__version__, "transformers_version": transformers.__version__,
            "peft_version": peft.__version__}


def batch_meta(generator, ck_sha, loss=True):
    """fixture_meta plus the batch (and, unless loss=False, what `loss` is)"""
    meta = dict(fixture_meta(generator, ck_sha), batch_seed=str(BATCH_SEED), batch=str(BATCH), seq=str(SEQ),
                ignore_index=str(IGNORE_INDEX), ignored_targets=";".join(f"{b},{t}" for b, t in IGNORED))
    if loss:
        meta["loss"] = LOSS_DOC
    return meta


def hand_llama(cfg, w):
    """gen_llama_lora's llama2.c-convention model with its LoRA off, for an adapter by hand"""
    ref = G.Llama(cfg, w, 4, 8)
    ref.set_lora(False)
    return ref


def save_pretrained_as(pm, out_dir, params, saved, restore):
    """PEFT's save_pretrained into a fresh out_dir with every (key, Parameter) of params set to
    saved[key] (llama2.c rows), then the Parameters set back to restore[key] (HF rows)."""
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    with torch.no_grad():
        for key, p in params:
            p.copy_(saved[key])
    pm.save_pretrained(out_dir)
    with torch.no_grad():
        for key, p in params:
            p.copy_(restore[key])


def peft_forward_backward(pm, tokens, targets):
    """PEFT's unmerged forward and backward on the batch: (expected tensors so far, logits, loss)"""
    pm.zero_grad(set_to_none=True)
    logits = pm(input_ids=tokens.long(), use_cache=False).logits.float()
    loss = loss_of(logits, targets)
    loss.backward()
    out = {"tokens": tokens, "targets": targets, "logits": logits.detach().clone(),
           "loss": loss.detach().reshape(1).clone()}
    return out, logits, loss


def check_nonzero_grads(tensors):
    for k, v in tensors.items():
        if k.startswith("grad."):
            assert v.abs().max() > 0, k


def max_grad(tensors):
    return max(v.abs().max().item() for k, v in tensors.items() if k.startswith("grad."))


def check_hand(ref_logits, ref_loss, logits, loss, what):
    """PEFT's logits vs the hand-written model's (<= TOL); prints the loss difference too"""
    d_logits = (ref_logits - logits).abs().max().item()
    print(f"  PEFT vs llama2.c-convention model + hand {what}: logits max |diff| {d_logits:.3e}, "
          f"loss |diff| {abs(ref_loss.item() - loss.item()):.3e}")
    assert d_logits <= TOL, d_logits
    return d_logits


def check_hand_grads(pairs, out):
    """(hand-model gradient, expected key) pairs vs out["grad." + key]: <= TOL * max(1, max |grad|)"""
    d_grad = max((g.view_as(out["grad." + k]) - out["grad." + k]).abs().max().item() for g, k in pairs)
    gmax = max_grad(out)
    print(f"  gradients vs hand model: max |diff| {d_grad:.3e} (max |grad| {gmax:.3e})")
    assert d_grad <= TOL * max(1.0, gmax), d_grad
    return d_grad


def check_moves_logits(cfg, w, tokens, logits, what):
    """the adapter really changes the base model's logits"""
    with torch.no_grad():
        base_logits = hf_logits(build_hf(cfg, w), tokens)
    moved = (base_logits - logits).abs().max().item()
    print(f"  ({what} moves the logits by up to {moved:.3f})")
    assert moved > 1e-2
    return moved


def merge_and_unload(pm, tokens, out):
    """merge_and_unload on a deep copy; its logits = the unmerged ones, stored as merged_logits.
    Returns (merged model, max |merged - unmerged logits|)."""
    merged_model = copy.deepcopy(pm).merge_and_unload()
    merged_model.eval()
    merged_logits = hf_logits(merged_model, tokens)
    d_merge = (merged_logits - out["logits"]).abs().max().item()
    print(f"  merged vs unmerged PEFT logits: max |diff| {d_merge:.3e}")
    assert d_merge <= TOL, d_merge
    out["merged_logits"] = merged_logits
    return merged_model, d_merge


def merged_weights(merged_model, cfg, names=None):
    """(layer, name, parent, gen_llama_lora weight name, expected key, weight in llama2.c rows)
    of the MERGED_LAYERS, MODULES order (only `names` if given)"""
    for l in MERGED_LAYERS:
        for name, parent, src in G.MODULES:
            if names is None or name in names:
                wt = getattr(getattr(merged_model.model.layers[l], parent), name).weight.detach().clone()
                yield l, name, parent, src, f"merged.model.layers.{l}.{parent}.{name}.weight", to_l2c(cfg, name, wt)


def check_merged_delta(merged_model, cfg, w, ref, out):
    """merge_and_unload's weights (stored in out as merged.*) vs W + ref's module.delta() in
    llama2.c rows (< 1e-6), and ΔW is real (> 1e-3). Returns (max |diff|, max |ΔW|)."""
    d_direct, moved = 0.0, 0.0
    for l, name, parent, src, key, wt in merged_weights(merged_model, cfg):
        with torch.no_grad():
            want = w[src][l] + getattr(ref.layers[l], name).delta()
        d_direct = max(d_direct, (wt - want).abs().max().item())
        moved = max(moved, (wt - w[src][l]).abs().max().item())
        out[key] = wt
    print(f"  merged weights vs W + ΔW in l2c order: max |diff| {d_direct:.3e} (ΔW up to {moved:.3f})")
    assert d_direct < 1e-6 and moved > 1e-3, (d_direct, moved)
    return d_direct, moved


def l2c_rows_meta(adapter_rows, logits_from=None):
    """the row-order metadata of a fixture stored in llama2.c rows"""
    meta = {"adapter_row_order": f"llama2.c ({adapter_rows})", "grad_row_order": "llama2.c (same as the stored tensors)",
            "merged_row_order": "llama2.c (q/k rows un-permuted from HF)",
            "merged_layers": ",".join(map(str, MERGED_LAYERS))}
    if logits_from:
        meta["logits_from"] = logits_from
    return meta


def check_saved(out_dir, want):
    """PEFT's adapter_model.safetensors holds exactly `want`; returns adapter_config.json"""
    with safe_open(os.path.join(out_dir, "adapter_model.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "pt"}, f.metadata()
        keys = sorted(f.keys())
        assert keys == sorted(want), keys
        for k in keys:
            assert torch.equal(f.get_tensor(k), want[k]), k
    with open(os.path.join(out_dir, "adapter_config.json")) as f:
        return json.load(f)


def reload_logits(cfg, w, out_dir, tokens, fix=None):
    """PeftModel.from_pretrained(out_dir) on a fresh HF model; fix(pm) (under no_grad) can turn
    the file's llama2.c rows back into HF rows first. Returns its logits."""
    pm2 = PeftModel.from_pretrained(build_hf(cfg, w), out_dir)
    pm2.eval()
    if fix:
        with torch.no_grad():
            fix(pm2)
    return hf_logits(pm2, tokens)


# ---- files -----------------------------------------------------------------
def write_expected(path, tensors, meta):
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, path, metadata=meta)
    G.canonicalize_header(path)
    back = load_file(path)
    assert back.keys() == tensors.keys() and all(torch.equal(back[k], tensors[k]) for k in tensors)


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def dir_size(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))


def list_dir(d, size_limit):
    print(f"{d}:")
    for fn in sorted(os.listdir(d)):
        p = os.path.join(d, fn)
        print(f"  {fn:28s} {os.path.getsize(p):8d}  {sha(p)}")
    assert dir_size(d) < size_limit, (d, dir_size(d))
