"""A small Hugging Face GPT-2 (random, seeded) with transformers' and PEFT's numbers, for the GPT-2
family's tests (tests/unit/test_hf_gpt2.c).

  tests/data/hf_gpt2/config.json, model.safetensors
        GPT2LMHeadModel: n_embd 32, 2 layers, 4 heads, n_inner 64, vocab 256, n_positions 64,
        gelu_new (tanh form), tied head, f32, keys as transformers writes them
        ("transformer.h.0.attn.c_attn.weight", Conv1D weights stored [in, out]). Every weight is
        re-drawn larger than GPT-2's init and every bias and LayerNorm is non-trivial, so a
        missing bias, a wrong transpose or a wrong norm shows in the logits.
  tests/data/hf_gpt2/lora/   PEFT LoRA, r 4, alpha 8, on c_attn, c_proj (attention and MLP) and
        c_fc, lora_B non-zero; PEFT sets fan_in_fan_out (it warns) and saves it true
  tests/data/hf_gpt2/ia3/    PEFT IA3 on c_attn, mlp.c_proj (feedforward) and c_fc, every
        ia3_l = 1 + 0.3 N(0,1)
  tests/data/hf_gpt2/expected.safetensors
        tokens, targets i32[2,16] (targets = tokens shifted, two ignored: -100)
        logits f32[2,16,256], loss f32[1]              the base model
        logits_lora, loss_lora, grad.<key> (every lora_A/lora_B), merged_lora.<key>
        (merge_and_unload's weights, Conv1D layout [in, out], and biases), merged_logits_lora
        logits_ia3, loss_ia3, grad.<key> (every ia3_l), merged_ia3.<key>, merged_logits_ia3
        prompt, greedy, greedy_lora i32[N]: a 4-token prompt and transformers' greedy
        continuation (generate, KV cache) of 8 tokens, base and with LoRA
        greedy_logits, greedy_logits_lora f32[11,256]: the logits at the 11 positions run

Everything is computed by transformers and PEFT on the files as written, reloaded with
from_pretrained in f32 (what a user's code computes), in eval mode (no dropout). The script also
checks PEFT's merged weights against W + s (B A)ᵀ and W ⊙ l computed by hand in the Conv1D layout.
Needs torch, transformers, peft, safetensors (/work/venv-golden/bin/python); CPU, 1 thread.
Usage: python3 tests/golden/gen_hf_gpt2.py [--out-dir tests/data/hf_gpt2]
"""
import argparse
import os
import shutil
import sys
import warnings

# adapter_config.json lists target_modules from a Python set: pin the hash seed for its order
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402
from peft import IA3Config, LoraConfig, PeftModel, get_peft_model  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_llama_lora import canonicalize_header  # noqa: E402  (sorted JSON header: reproducible bytes)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
V, B, S = 256, 2, 16
LORA_TARGETS = ["c_attn", "c_proj", "c_fc"]
IA3_TARGETS, IA3_FF = ["c_attn", "mlp.c_proj", "c_fc"], ["mlp.c_proj"]
PROMPT_LEN, NEW_TOKENS = 4, 8


def make_base(out):
    torch.manual_seed(1234)
    cfg = GPT2Config(vocab_size=V, n_positions=64, n_embd=32, n_layer=2, n_head=4, n_inner=64,
                     activation_function="gelu_new", layer_norm_epsilon=1e-5, bos_token_id=V - 1,
                     eos_token_id=V - 1, tie_word_embeddings=True)
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("ln_1.weight") or n.endswith("ln_2.weight") or n.endswith("ln_f.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif n.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:  # wte, wpe, every Conv1D weight
                p.copy_(0.2 * torch.randn_like(p))
    model.save_pretrained(out)  # config.json + model.safetensors, f32
    return cfg


def batch():
    g = torch.Generator().manual_seed(42)
    ids = torch.randint(0, V, (B, S), generator=g)
    targets = torch.cat([ids[:, 1:], torch.full((B, 1), -100)], 1)
    targets[0, 3] = -100
    targets[1, 0] = -100
    return ids, targets


def loss_of(logits, targets):
    return torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-100)


def greedy(model, prompt):
    """transformers' greedy decoding with its KV cache, and the logits of every position run
    (recomputed without the cache: the last position's logits are never needed by generate)"""
    with torch.no_grad():
        out = model.generate(prompt, max_new_tokens=NEW_TOKENS, do_sample=False, num_beams=1,
                             eos_token_id=None, pad_token_id=V - 1)
        seq = out[0]
        logits = model(seq[None, :-1]).logits[0]
    # the same ids by argmax over full forwards (no cache)
    assert torch.equal(logits[PROMPT_LEN - 1:].argmax(-1), seq[PROMPT_LEN:]), "generate disagrees with argmax"
    return seq.to(torch.int32), logits.float().contiguous()


def forward_backward(model, ids, targets, tensor):
    """logits, loss and the gradient of every adapter parameter whose name contains `tensor`"""
    model.zero_grad()
    logits = model(ids).logits
    loss = loss_of(logits, targets)
    loss.backward()
    grads = {}
    for n, p in model.named_parameters():
        if tensor in n:
            assert p.requires_grad and p.grad is not None and p.grad.abs().max() > 0, n
            key = n.replace(".default", "")
            grads["grad." + key] = p.grad.detach().float().contiguous()
    return logits.detach(), loss.detach(), grads


def merged_state(model, prefix):
    """merge_and_unload's weights of every adapted module (Conv1D layout), and its logits"""
    merged = model.merge_and_unload()
    return merged, {f"{prefix}.{k}": v.detach().float().contiguous() for k, v in merged.state_dict().items()
                    if ".h." in k and any(t in k for t in ("c_attn", "c_proj", "c_fc"))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", default=os.path.join(REPO, "tests", "data", "hf_gpt2"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    warnings.filterwarnings("ignore", category=FutureWarning)
    out = a.out_dir
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    cfg = make_base(out)
    ids, targets = batch()

    def load():
        m = GPT2LMHeadModel.from_pretrained(out, dtype=torch.float32).eval()
        m.name_or_path = "hf_gpt2"  # what PEFT records as base_model_name_or_path (not this machine's path)
        return m

    ex = {"tokens": ids.to(torch.int32), "targets": targets.to(torch.int32)}
    base_sd = load_file(os.path.join(out, "model.safetensors"))

    # the base model
    model = load()
    with torch.no_grad():
        logits = model(ids).logits
    ex["logits"], ex["loss"] = logits.float().contiguous(), loss_of(logits, targets).reshape(1)
    prompt = torch.randint(0, V, (1, PROMPT_LEN), generator=torch.Generator().manual_seed(7))
    ex["prompt"] = prompt[0].to(torch.int32)
    ex["greedy"], ex["greedy_logits"] = greedy(model, prompt)

    # LoRA: PEFT's own layers on the Conv1D modules (fan_in_fan_out set by PEFT)
    g = torch.Generator().manual_seed(2024)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        pm = get_peft_model(load(), LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS, lora_dropout=0.0,
                                               task_type="CAUSAL_LM"))
    assert any("fan_in_fan_out is set to False" in str(x.message) for x in w), "PEFT did not set fan_in_fan_out"
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    for n, p in pm.named_parameters():  # lora_A [r, in], lora_B [out, r], as on a Linear
        if "c_attn.lora_A" in n:
            assert tuple(p.shape) == (4, 32), (n, p.shape)
        if "c_attn.lora_B" in n:
            assert tuple(p.shape) == (96, 4), (n, p.shape)
    pm.save_pretrained(os.path.join(out, "lora"))
    os.remove(os.path.join(out, "lora", "README.md"))  # PEFT's model card: noise here
    pm = PeftModel.from_pretrained(load(), os.path.join(out, "lora"), is_trainable=True).eval()
    assert pm.peft_config["default"].fan_in_fan_out
    ex["logits_lora"], loss, grads = forward_backward(pm, ids, targets, "lora_")
    ex["loss_lora"] = loss.reshape(1)
    ex.update(grads)
    pm = PeftModel.from_pretrained(load(), os.path.join(out, "lora")).eval()
    ex["greedy_lora"], ex["greedy_logits_lora"] = greedy(pm, prompt)
    ad = load_file(os.path.join(out, "lora", "adapter_model.safetensors"))
    merged, ms = merged_state(pm, "merged_lora")
    for k, v in ms.items():  # PEFT's merge is W + s (B A)ᵀ in the Conv1D layout [in, out]
        key = k[len("merged_lora."):]
        if key.endswith(".weight"):
            mod = "base_model.model." + key[:-len(".weight")]
            if mod + ".lora_A.weight" in ad:
                want = base_sd[key] + 2.0 * (ad[mod + ".lora_B.weight"] @ ad[mod + ".lora_A.weight"]).T
                assert (v - want).abs().max() < 1e-5, key
            else:
                assert torch.equal(v, base_sd[key]), key
        else:
            assert torch.equal(v, base_sd[key]), key  # LoRA leaves the biases alone
    ex.update(ms)
    with torch.no_grad():
        ex["merged_logits_lora"] = merged(ids).logits.float().contiguous()

    # IA3
    g = torch.Generator().manual_seed(2025)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        pm = get_peft_model(load(), IA3Config(target_modules=IA3_TARGETS, feedforward_modules=IA3_FF,
                                              task_type="CAUSAL_LM"))
    assert any("fan_in_fan_out is set to False" in str(x.message) for x in w), "PEFT did not set fan_in_fan_out"
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "ia3_l" in n:
                ff = ".mlp.c_proj." in n
                assert tuple(p.shape) == ((1, 64) if ff else (96 if "c_attn" in n else 64, 1)), (n, p.shape)
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
    pm.save_pretrained(os.path.join(out, "ia3"))
    os.remove(os.path.join(out, "ia3", "README.md"))
    pm = PeftModel.from_pretrained(load(), os.path.join(out, "ia3"), is_trainable=True).eval()
    ex["logits_ia3"], loss, grads = forward_backward(pm, ids, targets, "ia3_l")
    ex["loss_ia3"] = loss.reshape(1)
    ex.update(grads)
    pm = PeftModel.from_pretrained(load(), os.path.join(out, "ia3")).eval()
    ad = load_file(os.path.join(out, "ia3", "adapter_model.safetensors"))
    merged, ms = merged_state(pm, "merged_ia3")
    for k, v in ms.items():  # columns (outputs) of W [in, out] and b, or rows (inputs) for feedforward
        key = k[len("merged_ia3."):]
        mod = key.rsplit(".", 1)[0]
        l = ad.get("base_model.model." + mod + ".ia3_l")
        if l is None:
            want = base_sd[key]
        elif ".mlp.c_proj." in k:
            want = base_sd[key] * l.reshape(-1, 1) if key.endswith(".weight") else base_sd[key]
        else:
            want = base_sd[key] * l.reshape(-1)
        assert (v - want).abs().max() < 1e-6, key
    ex.update(ms)
    with torch.no_grad():
        ex["merged_logits_ia3"] = merged(ids).logits.float().contiguous()

    ex = {k: v.contiguous() for k, v in ex.items()}
    path = os.path.join(out, "expected.safetensors")
    save_file(ex, path, metadata={"torch": torch.__version__, "transformers": __import__("transformers").__version__,
                                  "peft": __import__("peft").__version__})
    canonicalize_header(path)
    print(f"{out}: loss {ex['loss'].item():.6f}, LoRA {ex['loss_lora'].item():.6f}, IA3 {ex['loss_ia3'].item():.6f}; "
          f"greedy {ex['greedy'].tolist()}, with LoRA {ex['greedy_lora'].tolist()}")


if __name__ == "__main__":
    main()
