"""Small Hugging Face BERT and RoBERTa sequence classifiers (random, seeded), a PEFT LoRA adapter
for each, and what transformers and PEFT compute on a padded batch, for the BERT family's tests.

  tests/data/hf_bert/bert_f32/      BertForSequenceClassification: hidden 32, 2 layers, 4 heads,
                                    vocab 120, 3 labels (config.json's id2label), f32, keys with
                                    the `bert.` prefix, token-type ids (a sentence pair)
  tests/data/hf_bert/bert_bare/     the same encoder as a bare BertModel (keys WITHOUT `bert.`,
                                    no classifier: what all-MiniLM-L6-v2 is), f32
  tests/data/hf_bert/roberta_f16/   RobertaForSequenceClassification: hidden 32, 2 layers,
                                    pad_token_id 1 (positions from 2), 2 labels (the default: no
                                    id2label in config.json), f16, classifier.dense/out_proj
  tests/data/hf_bert/*/lora/        PEFT LoRA (r 4, alpha 8, query+value, task SEQ_CLS,
                                    modules_to_save classifier) with non-zero lora_B and a
                                    classifier copy moved away from the base classifier (what
                                    training makes of it)
  tests/data/hf_bert/bert_f32/prompt/  PEFT prompt tuning (SEQ_CLS, 3 virtual tokens, random init)
  tests/data/hf_bert/*/expected.safetensors (bert_f32, roberta_f16)
      tokens, attention_mask i32[B,S] (rows of different lengths, padded at the end),
      token_type_ids i32[B,S] (BERT only), labels i32[B]; hidden f32[B,S,D] (last hidden state),
      pooled f32[B,D] (BERT's pooler output), logits f32[B,L] and loss of the base model;
      logits_lora, loss_lora with the adapter (its classifier copy included); grad.<key> of every
      adapter tensor (PEFT's saved keys: the LoRA tensors and the classifier copy), eval mode;
      logits_prompt (BERT) with the prompt-tuning adapter
  tests/data/hf_bert/minilm_expected.safetensors (when PEFTC_MINILM_DIR is set, see
      scripts/fetch_models.py): all-MiniLM-L6-v2 on three banking77 test lines tokenized by its
      tokenizer.json (`tokenizers`): tokens, attention_mask, hidden[..., :64] (a slice of the
      last hidden state) and pooled f32[3,384]

The expected values are transformers' (and PEFT's) on the files as written, reloaded with
from_pretrained in f32: what peftc must reproduce. Needs torch, transformers, peft,
safetensors, tokenizers (/work/venv-golden/bin/python); CPU, 1 thread, deterministic.
Usage: python3 tests/golden/gen_hf_bert.py [--out-dir tests/data/hf_bert] [--minilm DIR]
"""
import os
import sys

# adapter_config.json lists target_modules from a Python set: pin the string hash seed
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import shutil  # noqa: E402
import warnings  # noqa: E402

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import (BertConfig, BertForSequenceClassification, BertModel, RobertaConfig,  # noqa: E402
                          RobertaForSequenceClassification)
from peft import LoraConfig, PeftModel, PromptTuningConfig, get_peft_model  # noqa: E402

warnings.filterwarnings("ignore")
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BANKING77 = "/work/shared/data/banking77/test.csv"

BERT = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=40, type_vocab_size=2, hidden_act="gelu", layer_norm_eps=1e-12,
            pad_token_id=0, num_labels=3, initializer_range=0.2)
ROBERTA = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
               max_position_embeddings=20, type_vocab_size=1, hidden_act="gelu", layer_norm_eps=1e-5,
               pad_token_id=1, bos_token_id=0, eos_token_id=2, initializer_range=0.2)


def batch(lengths, S, first, last, pad, lo, hi, g):
    """ids [B,S]: first, random ids in [lo, hi), last, then padding; the attention mask"""
    ids = torch.full((len(lengths), S), pad, dtype=torch.long)
    mask = torch.zeros((len(lengths), S), dtype=torch.long)
    for b, n in enumerate(lengths):
        ids[b, 0] = first
        ids[b, 1:n - 1] = torch.randint(lo, hi, (n - 2,), generator=g)
        ids[b, n - 1] = last
        mask[b, :n] = 1
    return ids, mask


def perturb_norms(model):
    """LayerNorm weights and biases away from 1 and 0, so a wrong norm shows"""
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "LayerNorm" in n:
                p.add_(0.1 * torch.randn_like(p))


def f32(t):
    return t.detach().float().contiguous()


def write_model(model, out, dtype, strip_prefix=None):
    os.makedirs(out)
    model = model.to(dtype)
    model.config.torch_dtype = dtype
    model.config.save_pretrained(out)
    state = {}
    for k, v in model.state_dict().items():
        if strip_prefix:
            if not k.startswith(strip_prefix):
                continue
            k = k[len(strip_prefix):]
        state[k] = v.contiguous()
    save_file(state, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    model.float()


def make_adapter(model, out, g):
    lcfg = LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], lora_dropout=0.0, task_type="SEQ_CLS",
                      modules_to_save=["classifier"])
    pm = get_peft_model(model, lcfg)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif "modules_to_save" in n:  # a trained classifier copy differs from the base one
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    pm.save_pretrained(out)
    os.remove(os.path.join(out, "README.md"))  # PEFT's model card: noise here


def run(model_cls, out, inputs, labels):
    """transformers and PEFT on the files as written, in f32, eval mode"""
    model = model_cls.from_pretrained(out, dtype=torch.float32).eval()
    res = {}
    with torch.no_grad():
        o = model(**inputs, labels=labels)
        enc = getattr(model, model.base_model_prefix)(**inputs)
    res["logits"], res["loss"] = f32(o.logits), f32(o.loss.reshape(1))
    res["hidden"] = f32(enc.last_hidden_state)
    if enc.pooler_output is not None:
        res["pooled"] = f32(enc.pooler_output)
    pm = PeftModel.from_pretrained(model, os.path.join(out, "lora"), is_trainable=True).eval()
    o = pm(**inputs, labels=labels)
    o.loss.backward()
    res["logits_lora"], res["loss_lora"] = f32(o.logits), f32(o.loss.reshape(1))
    for n, p in pm.named_parameters():
        if p.requires_grad:  # PEFT's saved key: no adapter name, no modules_to_save
            key = n.replace(".default", "").replace(".modules_to_save", "")
            res["grad." + key] = f32(p.grad)
    return res


def make_bert(out_dir, g):
    torch.manual_seed(1234)
    cfg = BertConfig(**BERT)
    model = BertForSequenceClassification(cfg).eval()
    perturb_norms(model)
    out = os.path.join(out_dir, "bert_f32")
    write_model(model, out, torch.float32)
    # the bare encoder: BertModel's keys (no "bert." prefix), no classifier
    bare = BertModel(BertConfig(**{k: v for k, v in BERT.items() if k != "num_labels"}))
    bare.load_state_dict(model.bert.state_dict())
    bare.config.architectures = ["BertModel"]
    write_model(bare, os.path.join(out_dir, "bert_bare"), torch.float32)
    make_adapter(model, os.path.join(out, "lora"), g)
    S = 12
    ids, mask = batch([12, 8, 5], S, 2, 3, 0, 5, BERT["vocab_size"], g)
    types = torch.zeros_like(ids)
    types[0, 6:12] = 1  # row 0 is a sentence pair
    types[1, 4:8] = 1
    labels = torch.tensor([2, 0, 1])
    inputs = dict(input_ids=ids, attention_mask=mask, token_type_ids=types)
    res = run(BertForSequenceClassification, out, inputs, labels)
    # prompt tuning: 3 virtual tokens before the sequence (PEFT extends the mask and the token types)
    model = BertForSequenceClassification.from_pretrained(out, dtype=torch.float32).eval()
    pm = get_peft_model(model, PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=3)).eval()
    pm.peft_config["default"].base_model_name_or_path = "bert_f32"  # not this machine's path
    pm.save_pretrained(os.path.join(out, "prompt"))
    os.remove(os.path.join(out, "prompt", "README.md"))
    with torch.no_grad():
        res["logits_prompt"] = f32(pm(**inputs).logits)
    res.update(tokens=ids.to(torch.int32), attention_mask=mask.to(torch.int32), token_type_ids=types.to(torch.int32),
               labels=labels.to(torch.int32))
    save_file(res, os.path.join(out, "expected.safetensors"), metadata={"torch": torch.__version__})
    print(f"{out}: loss {res['loss'].item():.6f}, with LoRA {res['loss_lora'].item():.6f}")


def make_roberta(out_dir, g):
    torch.manual_seed(4321)
    cfg = RobertaConfig(**ROBERTA)
    model = RobertaForSequenceClassification(cfg).eval()
    perturb_norms(model)
    out = os.path.join(out_dir, "roberta_f16")
    write_model(model, out, torch.float16)
    make_adapter(model, os.path.join(out, "lora"), g)
    S = 10
    # real ids avoid the pad id: transformers finds padding (for positions) by id
    ids, mask = batch([10, 6, 3], S, 0, 2, 1, 3, ROBERTA["vocab_size"], g)
    labels = torch.tensor([1, 0, 1])
    inputs = dict(input_ids=ids, attention_mask=mask)
    res = run(RobertaForSequenceClassification, out, inputs, labels)
    res.update(tokens=ids.to(torch.int32), attention_mask=mask.to(torch.int32), labels=labels.to(torch.int32))
    save_file(res, os.path.join(out, "expected.safetensors"), metadata={"torch": torch.__version__})
    print(f"{out}: loss {res['loss'].item():.6f}, with LoRA {res['loss_lora'].item():.6f}")


def make_minilm(out_dir, path):
    from tokenizers import Tokenizer
    with open(BANKING77, newline="") as f:
        rows = [r["text"] for r in csv.DictReader(f)][:3]
    tok = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
    tok.no_truncation()
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    enc = tok.encode_batch(rows)
    ids = torch.tensor([e.ids for e in enc])
    mask = torch.tensor([e.attention_mask for e in enc])
    model = BertModel.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        o = model(input_ids=ids, attention_mask=mask)
    res = dict(tokens=ids.to(torch.int32), attention_mask=mask.to(torch.int32),
               hidden=f32(o.last_hidden_state[..., :64]), pooled=f32(o.pooler_output))
    out = os.path.join(out_dir, "minilm_expected.safetensors")
    save_file(res, out, metadata={"torch": torch.__version__ + "; banking77 test.csv rows 1-3"})
    print(f"{out}: {list(ids.shape)} tokens, lengths {mask.sum(1).tolist()}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", default=os.path.join(REPO, "tests", "data", "hf_bert"))
    ap.add_argument("--minilm", default=os.environ.get("PEFTC_MINILM_DIR"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    for name in ("bert_f32", "bert_bare", "roberta_f16"):
        shutil.rmtree(os.path.join(a.out_dir, name), ignore_errors=True)
    os.makedirs(a.out_dir, exist_ok=True)
    g = torch.Generator().manual_seed(42)
    make_bert(a.out_dir, g)
    make_roberta(a.out_dir, g)
    if a.minilm:
        make_minilm(a.out_dir, a.minilm)
    else:
        print("skipped all-MiniLM-L6-v2: PEFTC_MINILM_DIR is not set (python3 scripts/fetch_models.py --env)")


if __name__ == "__main__":
    main()
