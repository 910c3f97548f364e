#!/usr/bin/env python3
"""Generate the PEFT-written prefix-tuning fixtures for stories260K.

Hugging Face PEFT wraps the transformers LlamaForCausalLM built by peft_fixture_common.build_hf
(stories260K, q/k rows in HF order, 8 heads, 4 kv heads) with PrefixTuningConfig(4 virtual
tokens) and writes, with its own save_pretrained:

  tests/data/peft_prefix_stories260k/       no projection: prompt_embeddings [4, 2*5*32] set to
                                            0.5 N(0,1) (the GQA rule makes token_dim = 4*8 = 32)
  tests/data/peft_prefix_proj_stories260k/  prefix_projection, encoder_hidden_size 24: PEFT's
                                            own init of the embedding and MLP, then the MLP's
                                            last layer scaled by 5 (a visible prefix); the file
                                            holds the MLP's output (PEFT saves only that), and
                                            prefix_encoder.safetensors (ours) the encoder params
  tests/data/peft_prefix_gpt2/              the tiny GPT-2 of tests/data/hf_gpt2 (no GQA:
                                            token_dim 32 = n_embd), prompt_embeddings [4, 2*2*32]
                                            0.3 N(0,1), the batch's ids mod 256
  tests/data/peft_prefix_hf_llama/          the HF Llama of tests/data/hf_llama/gqa_bf16 (HF
                                            order, 2 of 4 kv heads: token_dim 16, llama3 RoPE),
                                            prompt_embeddings [4, 2*2*16], as GPT-2's

The key columns of every layer (and the projection's key output rows) are stored in llama2.c
order: peftc runs stories260K.bin with adjacent-pair RoPE, where each head's key entries are the
HF ones permuted (the same permutation as the k_proj rows); q.k is unchanged by it.

expected.safetensors (ours) in each: the batch [2,16] with two ignored targets, the logits, the
loss, the gradient of every trainable tensor (llama2.c order), and PEFT's greedy generate
(do_sample=False, eos 1 like llama2.c) from a 3-token prompt: gen_prompt, gen_ids = greedy over
PEFT's own forward (peft_generate_ids: what PEFT's generate gives; with peft 0.21.2 on
transformers 5.24 it drops the prefix and equals the base model's greedy, checked here). The
plain fixture also holds peftc's infix ablation computed by hand (no PEFT counterpart):
infix_logits, infix_loss, grad_infix.prompt_embeddings with the same table after 5 tokens. Everything is
cross-checked against gen_llama_lora's llama2.c-convention model with the prefix put in front of
every layer's keys/values by hand, real tokens at positions P..P+S-1.

Usage (from the repository root):
    python3 tests/golden/gen_peft_prefix.py [--out-dir tests/data] [--ckpt PATH]
"""
import os
import sys

PIN_HASH_SEED = True  # run as a script: peft_fixture_common re-executes it with PYTHONHASHSEED=0
import peft_fixture_common as C  # noqa: E402

import json  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import gen_llama_lora as G  # noqa: E402
from peft import PeftModel, PrefixTuningConfig, get_peft_model  # noqa: E402

PLAIN_DIR, PROJ_DIR, GPT2_DIR = "peft_prefix_stories260k", "peft_prefix_proj_stories260k", "peft_prefix_gpt2"
HF_LLAMA_DIR = "peft_prefix_hf_llama"
P, HIDDEN = 4, 24
SEED, STD, PROJ_SEED, PROJ_GAIN = 2027, 0.3, 2028, 5.0
GEN_PROMPT, GEN_NEW = [1, 403, 411], 24
INFIX = 5  # peftc's infix ablation in the plain fixture: the rows after the first 5 tokens
BATCH, SEQ, TOL = C.BATCH, C.SEQ, C.TOL
SIZE_LIMIT = 600 * 1024


def kv_shape(cfg):
    hkv = cfg["n_kv_heads"]
    return cfg["n_layers"], hkv, cfg["dim"] // cfg["n_heads"]


def key_cols_to_l2c(cfg, t):
    """t [..., 2*L*W]: every layer's key block (columns 2iW..2iW+W) HF -> llama2.c head order"""
    L, hkv, dh = kv_shape(cfg)
    W = hkv * dh
    x = t.reshape(-1, L, 2, W).clone()
    for l in range(L):
        k = x[:, l, 0, :]  # [N, W]: permute its W entries as k_proj rows
        x[:, l, 0, :] = C.permute_to_l2c(k.t().contiguous(), hkv).t()
    return x.reshape(t.shape)


def hand_logits(cfg, w, table_l2c, tokens, infix=0):
    """the llama2.c-convention model with the prefix (llama2.c key order) put in front of every
    layer's keys/values, unrotated; real tokens at positions P..P+S-1. infix = K > 0: peftc's
    infix ablation instead: the rows sit after the first K tokens (tokens 0..K-1 at positions
    0..K-1 do not see them, the rest at K+P.. see them all)"""
    ref = C.hand_llama(cfg, w)
    L, hkv, dh = kv_shape(cfg)
    W, H = hkv * dh, cfg["n_heads"]
    B, S = tokens.shape
    x = F.embedding(tokens.long(), ref.tok)
    pos = torch.arange(S) + P
    pos[:infix] = torch.arange(infix)
    cos, sin = ref.rope_cos[pos], ref.rope_sin[pos]
    # key order: tokens 0..K-1, the P rows, tokens K.. ; query i sees token j <= i and the rows iff i >= K
    mask = torch.cat([torch.ones(S, infix, dtype=torch.bool).tril(0)[:, :infix],
                      (torch.arange(S) >= infix)[:, None].expand(S, P),
                      torch.ones(S, S, dtype=torch.bool).tril(0)[:, infix:]], 1)
    pk = table_l2c.reshape(P, L, 2, hkv, dh)
    for l, layer in enumerate(ref.layers):
        h = G.rmsnorm(x, layer.rms_att)
        q = layer.q_proj(h).view(B, S, H, dh)
        k = layer.k_proj(h).view(B, S, hkv, dh)
        v = layer.v_proj(h).view(B, S, hkv, dh)
        q, k = G.apply_rope(q, cos, sin), G.apply_rope(k, cos, sin)
        k = torch.cat([k[:, :infix], pk[:, l, 0].unsqueeze(0).expand(B, -1, -1, -1), k[:, infix:]], 1)
        v = torch.cat([v[:, :infix], pk[:, l, 1].unsqueeze(0).expand(B, -1, -1, -1), v[:, infix:]], 1)
        k = k.repeat_interleave(H // hkv, dim=2)
        v = v.repeat_interleave(H // hkv, dim=2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        sc = q @ k.transpose(-1, -2) / dh ** 0.5
        sc = sc.masked_fill(~mask, float("-inf"))
        o = (sc.softmax(-1) @ v).transpose(1, 2).reshape(B, S, H * dh)
        x = x + layer.o_proj(o)
        n = G.rmsnorm(x, layer.rms_ffn)
        x = x + layer.down_proj(F.silu(layer.gate_proj(n)) * layer.up_proj(n))
    return G.rmsnorm(x, ref.rms_final) @ ref.tok.t()


def generate(pm, prompt=GEN_PROMPT, stop=1):
    """PEFT's generate(do_sample=False). With peft 0.21.2 and transformers 5.24 its prefill runs
    without the prefix (its logits equal the base model's to 1e-5), so it is recorded, not the
    reference."""
    with torch.no_grad():
        ids = pm.generate(input_ids=torch.tensor([prompt]), max_new_tokens=GEN_NEW, do_sample=False,
                          eos_token_id=stop, pad_token_id=0)
    return ids[0].to(torch.int32)


def greedy(next_logits, prompt=GEN_PROMPT, stop=1):
    """greedy decoding from prompt, GEN_NEW tokens, stopping at `stop` (llama2.c's 1)"""
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(GEN_NEW):
            nxt = int(next_logits(torch.tensor([seq])).argmax())
            seq.append(nxt)
            if nxt == stop:
                break
    return seq


def make(cfg, w, tokens, targets, out_dir, meta_common, projection):
    L, hkv, dh = kv_shape(cfg)
    W = hkv * dh
    kw = dict(prefix_projection=True, encoder_hidden_size=HIDDEN) if projection else {}
    torch.manual_seed(PROJ_SEED)  # PEFT's own init of the projection's params
    pm = get_peft_model(C.build_hf(cfg, w), PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, **kw))
    pm.eval()
    pc = pm.peft_config["default"]
    assert (pc.token_dim, pc.num_attention_heads, pc.num_layers) == (W, hkv, L), (pc.token_dim, pc.num_attention_heads)
    enc = pm.prompt_encoder["default"]
    names = {k: p for k, p in enc.named_parameters()}
    trainable = sorted(k for k, p in pm.named_parameters() if p.requires_grad)
    if projection:
        assert sorted(names) == ["embedding.weight", "transform.0.bias", "transform.0.weight", "transform.2.bias",
                                 "transform.2.weight"], sorted(names)
        with torch.no_grad():
            enc.transform[2].weight.mul_(PROJ_GAIN)
            enc.transform[2].bias.mul_(PROJ_GAIN)
    else:
        assert list(names) == ["embedding.weight"] and tuple(names["embedding.weight"].shape) == (P, 2 * L * W)
        with torch.no_grad():
            names["embedding.weight"].copy_(STD * torch.randn((P, 2 * L * W), generator=torch.Generator().manual_seed(SEED)))
    assert trainable == sorted("prompt_encoder.default." + k for k in names), trainable
    with torch.no_grad():
        table_hf = pm.get_prompt_embedding_to_save("default").clone()  # what save_pretrained stores
    table_l2c = key_cols_to_l2c(cfg, table_hf)

    # PEFT writes the HF-order table; the file gets llama2.c key order (save, then rewrite)
    C.save_pretrained_as(pm, out_dir, [], {}, {})
    save_file({"prompt_embeddings": table_l2c.contiguous()}, os.path.join(out_dir, "adapter_model.safetensors"),
              metadata={"format": "pt"})
    c = C.check_saved(out_dir, {"prompt_embeddings": table_l2c})
    assert c["peft_type"] == "PREFIX_TUNING" and c["num_virtual_tokens"] == P and c["token_dim"] == W
    assert c["prefix_projection"] == projection

    out, logits, loss = C.peft_forward_backward(pm, tokens, targets)
    if projection:
        enc_l2c = {}
        for k, p in names.items():
            t, g = p.detach().clone(), p.grad.detach().clone()
            if k.startswith("transform.2."):  # output rows = table columns
                t = key_cols_to_l2c(cfg, t.t()).t() if t.dim() == 2 else key_cols_to_l2c(cfg, t)
                g = key_cols_to_l2c(cfg, g.t()).t() if g.dim() == 2 else key_cols_to_l2c(cfg, g)
            enc_l2c["prompt_encoder." + k] = t.contiguous()
            out["grad.prompt_encoder." + k] = g.contiguous()
        save_file(enc_l2c, os.path.join(out_dir, "prefix_encoder.safetensors"), metadata={"format": "pt"})
        # the l2c encoder computes the l2c table
        with torch.no_grad():
            e = enc_l2c["prompt_encoder.embedding.weight"]
            h = torch.tanh(e @ enc_l2c["prompt_encoder.transform.0.weight"].t() + enc_l2c["prompt_encoder.transform.0.bias"])
            t2 = h @ enc_l2c["prompt_encoder.transform.2.weight"].t() + enc_l2c["prompt_encoder.transform.2.bias"]
        d_enc = (t2 - table_l2c).abs().max().item()
        print(f"  encoder in llama2.c order vs the saved table: max |diff| {d_enc:.3e}")
        assert d_enc < 1e-5
    else:
        out["grad.prompt_embeddings"] = key_cols_to_l2c(cfg, names["embedding.weight"].grad.detach().clone())
    C.check_nonzero_grads(out)
    what = "prefix (projection)" if projection else "prefix"
    print(f"{what}: loss {loss.item():.7f}")

    # the hand model
    tab = table_l2c.clone().requires_grad_(True)
    ref_logits = hand_logits(cfg, w, tab, tokens)
    ref_loss = C.loss_of(ref_logits, targets)
    ref_loss.backward()
    d_logits = C.check_hand(ref_logits, ref_loss, logits, loss, what)
    if not projection:
        C.check_hand_grads([(tab.grad, "prompt_embeddings")], out)
        # peftc's infix ablation (peftc_prefix_placement "infix", after INFIX tokens), by hand only
        tab2 = table_l2c.clone().requires_grad_(True)
        il = hand_logits(cfg, w, tab2, tokens, INFIX)
        iloss = C.loss_of(il, targets)
        iloss.backward()
        with torch.no_grad():
            ref0 = C.hand_llama(cfg, w)(tokens.long())
        d_before = (il[:, :INFIX] - ref0[:, :INFIX]).abs().max().item()
        print(f"  infix after {INFIX} tokens: loss {iloss.item():.7f}; rows before it = base model: {d_before:.2e}")
        assert d_before < 1e-5 and (il[:, INFIX:] - ref0[:, INFIX:]).abs().max() > 1e-2
        out["infix_logits"] = il.detach().clone()
        out["infix_loss"] = iloss.detach().reshape(1).clone()
        out["grad_infix.prompt_embeddings"] = tab2.grad.detach().clone()
    C.check_moves_logits(cfg, w, tokens, out["logits"], what)

    # the reference: greedy over PEFT's own forward (prefix in the cache, tokens at P..)
    gen = greedy(lambda ids: pm(input_ids=ids).logits[0, -1])
    hand = greedy(lambda ids: hand_logits(cfg, w, table_l2c, ids)[0, -1])
    peft_gen = generate(pm).tolist()
    base_model = C.build_hf(cfg, w)
    base_gen = greedy(lambda ids: base_model(input_ids=ids).logits[0, -1])
    print(f"  greedy over PEFT's forward: {gen}; by hand: equal {hand == gen}")
    print(f"  PEFT generate: {peft_gen}; = base model's greedy {peft_gen == base_gen} (the prefix is dropped)")
    assert hand == gen and len(gen) > len(GEN_PROMPT) + 4 and gen != base_gen
    assert peft_gen == base_gen  # peft 0.21.2 + transformers 5.24: generate drops the prefix
    out["gen_prompt"] = torch.tensor(GEN_PROMPT, dtype=torch.int32)
    out["gen_ids"] = torch.tensor(gen, dtype=torch.int32)
    out["peft_generate_ids"] = torch.tensor(peft_gen, dtype=torch.int32)

    meta = {**meta_common, "peft_type": "PREFIX_TUNING", "num_virtual_tokens": str(P),
            "prefix_projection": str(projection).lower(),
            "init": (f"PEFT's init after torch.manual_seed({PROJ_SEED}), transform.2 x {PROJ_GAIN}" if projection
                     else f"{STD} * randn, Generator().manual_seed({SEED})"),
            "key_order": "llama2.c (each layer's key columns permuted from HF per kv head)",
            "positions": f"prefix rows 0..{P - 1} (unrotated), real tokens {P}..{P + SEQ - 1}",
            "gen_ids": f"greedy over PEFT's forward, {GEN_NEW} new tokens, stop at 1",
            "peft_generate_ids": "PEFT generate(do_sample=False, eos_token_id=1): prefix dropped (bug)"}
    C.write_expected(os.path.join(out_dir, "expected.safetensors"), out, meta)

    # PEFT loads the file (keys back to HF order) and reproduces the logits
    def to_hf(pm2):
        e = pm2.prompt_encoder["default"].embedding.weight
        L_, hkv_, dh_ = kv_shape(cfg)
        x = e.detach().reshape(P, L_, 2, hkv_ * dh_).clone()
        for l in range(L_):
            x[:, l, 0, :] = C.permute_to_hf(x[:, l, 0, :].t().contiguous(), hkv_).t()
        e.copy_(x.reshape(e.shape))
    d_load = (C.reload_logits(cfg, w, out_dir, tokens, to_hf) - out["logits"]).abs().max().item()
    print(f"  PeftModel.from_pretrained (keys back to HF order) vs logits: max |diff| {d_load:.3e}")
    assert d_load < 1e-5
    C.list_dir(out_dir, SIZE_LIMIT)
    return {"loss": loss.item(), "diffs": {"hand": d_logits, "load": d_load}, "gen": gen}


def make_hf(tokens, targets, out_dir, meta_common, model, dims, stop):
    """a small Hugging Face model of tests/data (vocab 256, 64 positions) as transformers loads it
    (f32): tests/data/hf_gpt2 (no GQA: token_dim = n_embd; the prefix shifts the learned
    positions by P) or hf_llama/gqa_bf16 (HF row order, GQA 4 heads / 2 kv heads of 8, llama3
    RoPE scaling: token_dim 16). dims: PEFT's (token_dim, num_attention_heads, num_layers)."""
    from transformers import AutoModelForCausalLM
    src = os.path.join(C.REPO, "tests", "data", model)

    def load():
        m = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
        m.name_or_path = model
        return m
    tokens, targets = tokens % 256, targets.clone()
    targets[targets >= 0] %= 256
    pm = get_peft_model(load(), PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P))
    pm.eval()
    pc = pm.peft_config["default"]
    assert (pc.token_dim, pc.num_attention_heads, pc.num_layers) == dims, (pc.token_dim, pc.num_attention_heads)
    emb = pm.prompt_encoder["default"].embedding.weight
    with torch.no_grad():
        emb.copy_(STD * torch.randn(emb.shape, generator=torch.Generator().manual_seed(SEED)))
    C.save_pretrained_as(pm, out_dir, [], {}, {})
    out, logits, loss = C.peft_forward_backward(pm, tokens, targets)
    out["grad.prompt_embeddings"] = emb.grad.detach().clone()
    C.check_nonzero_grads(out)
    with torch.no_grad():
        moved = (load()(input_ids=tokens.long()).logits - logits).abs().max().item()
    print(f"prefix on {model}: loss {loss.item():.7f} (the prefix moves the logits by up to {moved:.3f})")
    assert moved > 1e-2
    prompt = [t % 256 for t in GEN_PROMPT]  # stop: the checkpoint's eos, as peftc's generate
    gen = greedy(lambda ids: pm(input_ids=ids).logits[0, -1], prompt, stop)
    base = load()
    base_gen = greedy(lambda ids: base(input_ids=ids).logits[0, -1], prompt, stop)
    peft_gen = generate(pm, prompt, stop).tolist()
    print(f"  greedy over PEFT's forward: {gen}; PEFT generate: {peft_gen} (= base greedy {peft_gen == base_gen})")
    assert gen != base_gen
    out["gen_prompt"] = torch.tensor(prompt, dtype=torch.int32)
    out["gen_ids"] = torch.tensor(gen, dtype=torch.int32)
    out["peft_generate_ids"] = torch.tensor(peft_gen, dtype=torch.int32)
    meta = {**meta_common, "model": f"tests/data/{model}", "peft_type": "PREFIX_TUNING", "num_virtual_tokens": str(P),
            "init": f"{STD} * randn, Generator().manual_seed({SEED})",
            "batch": "the stories260K batch, ids and targets mod 256",
            "positions": f"prefix rows 0..{P - 1}, real tokens {P}..{P + SEQ - 1}"}
    C.write_expected(os.path.join(out_dir, "expected.safetensors"), out, meta)
    c = C.check_saved(out_dir, {"prompt_embeddings": emb.detach().clone()})
    assert (c["token_dim"], c["num_attention_heads"], c["num_layers"]) == dims
    pm2 = PeftModel.from_pretrained(load(), out_dir).eval()
    with torch.no_grad():
        d_load = (pm2(input_ids=tokens.long()).logits - out["logits"]).abs().max().item()
    assert d_load < 1e-5
    C.list_dir(out_dir, SIZE_LIMIT)
    return {"loss": loss.item(), "gen": gen, "diffs": {"load": d_load}}


def main():
    args, ckpt, cfg, w, ck_sha = C.start(__doc__)
    _, tokens, targets = C.make_batch()
    meta_common = C.batch_meta("gen_peft_prefix.py", ck_sha)
    r = {}
    for proj, d in ((False, PLAIN_DIR), (True, PROJ_DIR)):
        r[d] = make(cfg, w, tokens, targets, os.path.join(args.out_dir, d), meta_common, proj)
    r[GPT2_DIR] = make_hf(tokens, targets, os.path.join(args.out_dir, GPT2_DIR), meta_common, "hf_gpt2", (32, 4, 2), 255)
    r[HF_LLAMA_DIR] = make_hf(tokens, targets, os.path.join(args.out_dir, HF_LLAMA_DIR), meta_common,
                              "hf_llama/gqa_bf16", (16, 2, 2), 2)
    for k, v in r.items():
        print(f"summary {k}: " + json.dumps(v, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
