#!/usr/bin/env python3
"""Generate the PEFT-written P-tuning fixtures for stories260K (MLP and LSTM prompt encoders).

Hugging Face PEFT itself wraps the transformers LlamaForCausalLM built by
gen_peft_adapter.build_hf and writes, with its own save_pretrained:

  tests/data/peft_ptuning_mlp_stories260k/   4 virtual tokens, MLP encoder, H = 16
  tests/data/peft_ptuning_lstm_stories260k/  4 virtual tokens, bidirectional LSTM encoder,
                                             H = 8, 2 layers, encoder_dropout 0.1

Every encoder param is overwritten with non-trivial values (std ENC_STD randn, the embedding
N(0,1)). PEFT saves only the encoder's output, prompt_embeddings [4,64]. Beside it,
expected.safetensors (ours) holds the fixed batch [2,16], the training-mode (dropout off: the
model in eval mode) forward's logits and loss, every encoder param under PEFT's in-memory key
(prompt_encoder.default.*) and its gradient (grad.<key>), and greedy generation from the saved
adapter (PeftModel.from_pretrained + generate): gen_prompt and gen_ids. The encoder output is
cross-checked against a hand-written MLP / LSTM cell loop. See tests/golden/README.md.

Usage (from the repository root):
    python3 tests/golden/gen_peft_ptuning.py [--out-dir tests/data] [--ckpt PATH]
"""
import os
import sys

PIN_HASH_SEED = True  # run as a script: peft_fixture_common re-executes it with PYTHONHASHSEED=0
import peft_fixture_common as C  # noqa: E402

import json  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from peft import PeftModel, PromptEncoderConfig, get_peft_model  # noqa: E402

T = 4
ENC_STD = 0.15
GEN_PROMPT = [1, 403, 261, 410]  # BOS and three tokens
GEN_NEW = 12
SIZE_LIMIT = 400 * 1024
VARIANTS = {
    "mlp": dict(dir="peft_ptuning_mlp_stories260k", seed=3031,
                cfg=dict(encoder_reparameterization_type="MLP", encoder_hidden_size=16)),
    "lstm": dict(dir="peft_ptuning_lstm_stories260k", seed=3032,
                 cfg=dict(encoder_reparameterization_type="LSTM", encoder_hidden_size=8,
                          encoder_num_layers=2, encoder_dropout=0.1)),
}


def hand_encoder(params, kind, layers, H):
    """the encoder by hand from the named params: MLP, or an LSTM cell loop both ways"""
    p = {k[len("prompt_encoder.default."):]: v for k, v in params.items()}
    x = p["embedding.weight"]
    lin = lambda x, n: x @ p[n + ".weight"].t() + p[n + ".bias"]  # noqa: E731
    if kind == "MLP":
        return lin(F.relu(lin(F.relu(lin(x, "mlp_head.0")), "mlp_head.2")), "mlp_head.4")
    for l in range(layers):
        outs = []
        for suf in ("", "_reverse"):
            n = f"_l{l}{suf}"
            h = torch.zeros(H)
            c = torch.zeros(H)
            hs = [None] * T
            for t in (range(T) if not suf else reversed(range(T))):
                z = (x[t] @ p["lstm_head.weight_ih" + n].t() + p["lstm_head.bias_ih" + n]
                     + h @ p["lstm_head.weight_hh" + n].t() + p["lstm_head.bias_hh" + n])
                i, f, g, o = z.split(H)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                hs[t] = h
            outs.append(torch.stack(hs))
        x = torch.cat(outs, dim=1)
    return lin(F.relu(lin(x, "mlp_head.0")), "mlp_head.2")


def make(name, v, cfg, w, tokens, targets, out_root, meta_common):
    out_dir = os.path.join(out_root, v["dir"])
    pc = PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=T, **v["cfg"])
    pm = get_peft_model(C.build_hf(cfg, w), pc)
    pm.eval()  # dropout off: the numbers are deterministic
    g = torch.Generator().manual_seed(v["seed"])
    params = {}
    with torch.no_grad():
        for k, p in pm.named_parameters():
            if not p.requires_grad:
                continue
            std = 1.0 if k.endswith("embedding.weight") else ENC_STD
            p.copy_(std * torch.randn(p.shape, generator=g))
            params[k] = p
    assert all(k.startswith("prompt_encoder.default.") for k in params), list(params)
    print(f"{name}: {len(params)} encoder params: " + ", ".join(f"{k}{list(p.shape)}" for k, p in params.items()))

    # the training-mode forward (the encoder runs) and backward
    pm.zero_grad(set_to_none=True)
    full = pm(input_ids=tokens.long(), use_cache=False).logits.float()
    assert tuple(full.shape) == (C.BATCH, T + C.SEQ, cfg["vocab_size"]), full.shape
    logits = full[:, T:]
    loss = C.loss_of(logits, targets)
    loss.backward()
    out = {"tokens": tokens, "targets": targets, "logits": logits.detach().clone(),
           "loss": loss.detach().reshape(1).clone()}
    for k, p in params.items():
        out[k] = p.detach().clone()
        out["grad." + k] = p.grad.detach().clone()
    C.check_nonzero_grads(out)
    print(f"  loss {loss.item():.7f}")

    # the table PEFT saves = the encoder's output = a hand-written encoder's
    table = pm.get_prompt_embedding_to_save("default")
    with torch.no_grad():
        hand = hand_encoder({k: p.detach() for k, p in params.items()}, v["cfg"]["encoder_reparameterization_type"],
                            v["cfg"].get("encoder_num_layers", 2), v["cfg"]["encoder_hidden_size"])
    d_hand = (hand - table).abs().max().item()
    print(f"  saved table vs hand-written encoder: max |diff| {d_hand:.3e}")
    assert d_hand < 1e-5, d_hand
    out["prompt_embeddings"] = table.clone()

    C.save_pretrained_as(pm, out_dir, [], {}, {})
    c = C.check_saved(out_dir, {"prompt_embeddings": table})
    assert c["peft_type"] == "P_TUNING" and c["inference_mode"] is True, c

    # the saved adapter runs without the encoder: same logits; greedy generation from it
    pm2 = PeftModel.from_pretrained(C.build_hf(cfg, w), out_dir)
    pm2.eval()
    assert not any(k for k, _ in pm2.named_parameters() if "mlp_head" in k or "lstm_head" in k)
    d_load = (C.hf_logits(pm2, tokens)[:, T:] - out["logits"]).abs().max().item()
    print(f"  PeftModel.from_pretrained vs training-mode logits: max |diff| {d_load:.3e}")
    assert d_load < 1e-5, d_load
    # PEFT's generate without the KV cache equals greedy decoding by its own forward. With the
    # cache (the default) PEFT 0.21.2 + transformers 5.24 continue differently after the first
    # new token: that path disagrees with PEFT's forward, so the fixture records the uncached one
    # (and the cached ids, in the metadata, for the record).
    prompt = torch.tensor([GEN_PROMPT])
    gen_kw = dict(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=GEN_NEW,
                  do_sample=False, pad_token_id=0)
    with torch.no_grad():
        gen = pm2.generate(use_cache=False, **gen_kw)[0].to(torch.int32)
        cached = pm2.generate(**gen_kw)[0].tolist()
        seq = list(GEN_PROMPT)
        for _ in range(GEN_NEW):
            seq.append(int(pm2(input_ids=torch.tensor([seq]), use_cache=False).logits[0, -1].argmax()))
    assert gen.tolist() == seq, (gen.tolist(), seq)
    assert gen.shape[0] == len(GEN_PROMPT) + GEN_NEW and gen[:len(GEN_PROMPT)].tolist() == GEN_PROMPT, gen
    print(f"  (PEFT's cached generate: {cached})")
    base_gen = C.build_hf(cfg, w).generate(input_ids=prompt, attention_mask=torch.ones_like(prompt),
                                           max_new_tokens=GEN_NEW, do_sample=False, pad_token_id=0)[0]
    assert base_gen.tolist() != gen.tolist(), "the prompt should change the continuation"
    print(f"  greedy ids from the saved adapter: {gen.tolist()}")
    out["gen_prompt"] = prompt[0].to(torch.int32)
    out["gen_ids"] = gen

    meta = {**meta_common, "peft_type": "P_TUNING", "num_virtual_tokens": str(T),
            "encoder": json.dumps(v["cfg"], sort_keys=True),
            "encoder_init": f"embedding randn, others {ENC_STD} * randn, Generator().manual_seed({v['seed']}), "
                            "named_parameters order",
            "positions": f"virtual tokens 0..{T - 1}, real tokens {T}..{T + C.SEQ - 1}",
            "logits_from": "PEFT forward with the encoder (model in eval mode: no dropout), first 4 dropped",
            "gen": f"PeftModel.from_pretrained(dir).generate(gen_prompt, max_new_tokens={GEN_NEW}, greedy, "
                   "use_cache=False) = greedy by PEFT's forward",
            "gen_ids_cached": json.dumps(cached)}
    C.write_expected(os.path.join(out_dir, "expected.safetensors"), out, meta)
    C.list_dir(out_dir, SIZE_LIMIT)
    return {"loss": loss.item(), "diffs": {"hand": d_hand, "load": d_load}}


def main():
    args, ckpt, cfg, w, ck_sha = C.start(__doc__)
    ids, tokens, targets = C.make_batch()
    meta_common = C.batch_meta("gen_peft_ptuning.py", ck_sha)
    for name, v in VARIANTS.items():
        r = make(name, v, cfg, w, tokens, targets, args.out_dir, meta_common)
        print(f"summary {name}: " + json.dumps(r, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
