"""Small Hugging Face Llama checkpoints (random, seeded) in the layouts users have, with
transformers' logits and a PEFT LoRA adapter's, for the HF Llama family's tests.

  tests/data/hf_llama/gqa_bf16/   GQA (4 heads, 2 KV heads), untied head, rope_theta 50000,
                                  llama3 rope_scaling, bf16, sharded in two files + index
  tests/data/hf_llama/tied_f16/   4 KV heads, tied embeddings, f16, one model.safetensors
  tests/data/hf_llama/*/lora/     PEFT LoRA (r 4, alpha 8, q,v,down) with non-zero weights
  tests/data/hf_llama/*/expected.safetensors
                                  tokens, targets i32[2,16] (the tokens shifted, the last -100),
                                  logits f32[2,16,V] of the base and with the adapter, and the
                                  batch's mean cross-entropy for both

The logits are transformers' (and PEFT's) on the files as written, loaded in f32: what a user's
from_pretrained computes. Needs torch, transformers, peft, safetensors
(/work/venv-golden/bin/python); CPU, 1 thread, deterministic.
Usage: python3 tests/golden/gen_hf_llama.py [--out-dir tests/data/hf_llama]
"""
import argparse
import json
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

VARIANTS = {
    "gqa_bf16": dict(dtype=torch.bfloat16, shards=2, config=dict(
        vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=50000.0,
        tie_word_embeddings=False, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 16})),
    "tied_f16": dict(dtype=torch.float16, shards=1, config=dict(
        vocab_size=256, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=64, rms_norm_eps=1e-6, rope_theta=10000.0,
        tie_word_embeddings=True)),
}


def save_sharded(state, out, shards):
    keys = sorted(state)
    if shards == 1:
        save_file({k: state[k].contiguous() for k in keys}, os.path.join(out, "model.safetensors"),
                  metadata={"format": "pt"})
        return
    per = (len(keys) + shards - 1) // shards
    weight_map, total = {}, 0
    for s in range(shards):
        name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: state[k].contiguous() for k in keys[s * per:(s + 1) * per]}
        save_file(part, os.path.join(out, name), metadata={"format": "pt"})
        for k, t in part.items():
            weight_map[k] = name
            total += t.numel() * t.element_size()
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)


def loss_of(logits, ids):
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def make(name, spec, out_dir):
    torch.manual_seed(1234)
    out = os.path.join(out_dir, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    cfg = LlamaConfig(**spec["config"], bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # norms away from 1 so a wrong norm shows
        for n, p in model.named_parameters():
            if "norm" in n:
                p.add_(0.1 * torch.randn_like(p))
    model = model.to(spec["dtype"])
    cfg.torch_dtype = spec["dtype"]
    cfg.save_pretrained(out)
    state = {k: v for k, v in model.state_dict().items()}
    if cfg.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    save_sharded(state, out, spec["shards"])
    g = torch.Generator().manual_seed(42)
    ids = torch.randint(0, cfg.vocab_size, (2, 16), generator=g)
    lcfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], lora_dropout=0.0,
                      task_type="CAUSAL_LM")
    peft_model = get_peft_model(model.float(), lcfg)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    peft_model.save_pretrained(os.path.join(out, "lora"))
    os.remove(os.path.join(out, "lora", "README.md"))  # PEFT's model card: noise here
    # what peftc must compute: transformers and PEFT on the files as written, in f32
    model = LlamaForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(ids).logits
    peft_model = PeftModel.from_pretrained(model, os.path.join(out, "lora")).eval()
    with torch.no_grad():
        logits_lora = peft_model(ids).logits
    targets = torch.cat([ids[:, 1:], torch.full((2, 1), -100)], 1)
    f32 = lambda t: t.float().contiguous()  # noqa: E731
    save_file({"tokens": ids.to(torch.int32), "targets": targets.to(torch.int32), "logits": f32(logits),
               "logits_lora": f32(logits_lora), "loss": f32(loss_of(logits, ids).reshape(1)),
               "loss_lora": f32(loss_of(logits_lora, ids).reshape(1))},
              os.path.join(out, "expected.safetensors"), metadata={"torch": torch.__version__})
    print(f"{out}: loss {loss_of(logits, ids).item():.6f}, with LoRA {loss_of(logits_lora, ids).item():.6f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", default=os.path.join(REPO, "tests", "data", "hf_llama"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    for name, spec in VARIANTS.items():
        make(name, spec, a.out_dir)


if __name__ == "__main__":
    main()
