#!/usr/bin/env python3
"""Generate the PEFT-written multitask prompt tuning (MPT) fixture for stories260K.

Hugging Face PEFT wraps the transformers LlamaForCausalLM of peft_fixture_common.build_hf with
MultitaskPromptTuningConfig(num_virtual_tokens=4, num_tasks=3, num_ranks=2) and writes, with its
own save_pretrained:

  tests/data/peft_mpt_stories260k/
    adapter_config.json, adapter_model.safetensors   prompt_embeddings [4,64] = 0.5 N(0,1),
        prefix_task_cols [3,4,2] = N(0,1), prefix_task_rows [3,2,64] = 0.7 N(0,1) (overwritten
        after PEFT's init so that every task's prompt is far from zero and from the others)
    expected.safetensors        the batch [2,16] with mixed task_ids [2,0]: logits, loss, the
                                gradient of the three tensors
    expected_task<t>.safetensors   the same batch, both rows task t (t = 0, 1, 2)
    generate.safetensors        gen_prompt (BOS + 5 ids) and gen_task<t>: PEFT's greedy
                                generate(task_ids=[t], max_new_tokens=12, eos_token_id=1,
                                use_cache=False), checked equal to greedy decoding with PEFT's
                                forward (PEFT's cached generate drifts from it here)
    inits.safetensors           PEFT's initialised tensors with adapter_model.safetensors as
                                prompt_tuning_init_state_dict_path: "<MODE>.<key>" for
                                AVERAGE_SOURCE_TASKS and EXACT_SOURCE_TASK (num_tasks 1,
                                prompt_tuning_init_task 2) and ONLY_SOURCE_SHARED (num_tasks 3:
                                only prompt_embeddings comes from the file)

Every logit is cross-checked against gen_llama_lora's llama2.c-convention model with the task's
prompt P * (cols[t] @ rows[t]) prepended by hand. The prompt tensors have no q/k rows, so the
file's order is the llama2.c order peftc runs.

Usage (from the repository root):
    /work/venv-golden/bin/python tests/golden/gen_peft_mpt.py [--out-dir tests/data] [--ckpt PATH]
"""
import os
import sys

PIN_HASH_SEED = True  # run as a script: peft_fixture_common re-executes it with PYTHONHASHSEED=0
import peft_fixture_common as C  # noqa: E402

import json  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

import gen_llama_lora as G  # noqa: E402
from gen_peft_ia3_prompt import l2c_forward_embeds  # noqa: E402
from peft import MultitaskPromptTuningConfig, get_peft_model  # noqa: E402

DIR_NAME = "peft_mpt_stories260k"
T, NUM_TASKS, NUM_RANKS = 4, 3, 2
SEED = 2027
P_STD, COLS_STD, ROWS_STD = 0.5, 1.0, 0.7
MIXED = [2, 0]
GEN_NEW, GEN_PROMPT = 12, 5
INIT_TASK = 2
BATCH, SEQ, TOL = C.BATCH, C.SEQ, C.TOL
SIZE_LIMIT = 1024 * 1024
KEYS = ("prompt_embeddings", "prefix_task_cols", "prefix_task_rows")


def encoder(pm):
    return pm.prompt_encoder["default"]


def tensors(pm):
    e = encoder(pm)
    return {"prompt_embeddings": e.embedding.weight, "prefix_task_cols": e.prefix_task_cols,
            "prefix_task_rows": e.prefix_task_rows}


def mpt_config(**kw):
    return MultitaskPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=T, num_ranks=NUM_RANKS, **kw)


def forward_backward(pm, tokens, targets, task_ids):
    pm.zero_grad(set_to_none=True)
    full = pm(input_ids=tokens.long(), task_ids=task_ids, use_cache=False).logits.float()
    assert tuple(full.shape) == (BATCH, T + SEQ, 512), full.shape
    logits = full[:, T:]
    loss = C.loss_of(logits, targets)
    loss.backward()
    out = {"tokens": tokens, "targets": targets, "task_ids": task_ids.to(torch.int32),
           "logits": logits.detach().clone(), "loss": loss.detach().reshape(1).clone()}
    for k, p in tensors(pm).items():
        out["grad." + k] = p.grad.detach().clone()
    C.check_nonzero_grads(out)
    return out


def hand_logits(cfg, w, vals, tokens, task_ids):
    """the llama2.c-convention model with each row's task prompt prepended, positions 0..T+S-1"""
    ref = C.hand_llama(cfg, w)
    prompts = vals["prompt_embeddings"] * (vals["prefix_task_cols"][task_ids] @ vals["prefix_task_rows"][task_ids])
    h = torch.cat([prompts, F.embedding(tokens.long(), ref.tok)], dim=1)
    with torch.no_grad():
        return l2c_forward_embeds(ref, h)[:, T:]


def make(cfg, w, tokens, targets, out_dir, meta_common):
    pm = get_peft_model(C.build_hf(cfg, w), mpt_config(num_tasks=NUM_TASKS, prompt_tuning_init="RANDOM"))
    pm.eval()
    ps = tensors(pm)
    assert tuple(ps["prompt_embeddings"].shape) == (T, cfg["dim"])
    assert tuple(ps["prefix_task_cols"].shape) == (NUM_TASKS, T, NUM_RANKS)
    assert tuple(ps["prefix_task_rows"].shape) == (NUM_TASKS, NUM_RANKS, cfg["dim"])
    # PEFT's own draws: cols/rows N(0, 0.02) (their std), the table nn.Embedding's N(0, 1)
    print("  PEFT init std: " + ", ".join(f"{k} {p.std().item():.3f}" for k, p in ps.items()))
    g = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for k, std in zip(KEYS, (P_STD, COLS_STD, ROWS_STD)):
            ps[k].copy_(std * torch.randn(ps[k].shape, generator=g))
    vals = {k: p.detach().clone() for k, p in ps.items()}
    trainable = sorted(k for k, p in pm.named_parameters() if p.requires_grad)
    assert trainable == sorted(["prompt_encoder.default.embedding.weight", "prompt_encoder.default.prefix_task_cols",
                                "prompt_encoder.default.prefix_task_rows"]), trainable

    C.save_pretrained_as(pm, out_dir, [], {}, {})
    c = C.check_saved(out_dir, vals)
    assert c["peft_type"] == "MULTITASK_PROMPT_TUNING" and c["num_tasks"] == NUM_TASKS and c["num_ranks"] == NUM_RANKS

    results = {}
    meta = {**meta_common, "peft_type": "MULTITASK_PROMPT_TUNING", "num_virtual_tokens": str(T),
            "num_tasks": str(NUM_TASKS), "num_ranks": str(NUM_RANKS),
            "init": f"P {P_STD} randn, cols {COLS_STD} randn, rows {ROWS_STD} randn, Generator().manual_seed({SEED})",
            "positions": f"virtual tokens 0..{T - 1}, real tokens {T}..{T + SEQ - 1}",
            "logits_from": f"PEFT LlamaForCausalLM forward (T+S positions) with task_ids, first {T} dropped"}
    cases = [("expected", MIXED)] + [(f"expected_task{t}", [t, t]) for t in range(NUM_TASKS)]
    moved = []
    for name, ids in cases:
        task_ids = torch.tensor(ids)
        out = forward_backward(pm, tokens, targets, task_ids)
        d_hand = (hand_logits(cfg, w, vals, tokens, task_ids) - out["logits"]).abs().max().item()
        assert d_hand <= TOL, (name, d_hand)
        moved.append(out["logits"])
        print(f"{name}: task_ids {ids}, loss {out['loss'].item():.7f}, hand model logits max |diff| {d_hand:.3e}")
        C.write_expected(os.path.join(out_dir, name + ".safetensors"), out, {**meta, "task_ids": ",".join(map(str, ids))})
        results[name] = {"loss": out["loss"].item(), "hand": d_hand}
    # the tasks' prompts really differ: each task's logits differ from the others'
    for a in range(1, 4):
        for b in range(a + 1, 4):
            d = (moved[a] - moved[b]).abs().max().item()
            assert d > 1e-2, (a, b, d)
    C.check_moves_logits(cfg, w, tokens, moved[0], "the prompt")

    # PEFT's greedy generation per task (stop at id 1, llama2.c's end token, as peftc does).
    # generate(use_cache=False) is recorded: it equals greedy decoding with PEFT's own forward,
    # while the cached generate of PEFT 0.21.2 + transformers 5.x drifts from that forward after
    # the first new token (the prompt-learning generate/cache problems of peft#2123, #2131)
    prompt = torch.cat([torch.tensor([[1]]), tokens[:1, :GEN_PROMPT].long()], dim=1)
    gen = {"gen_prompt": prompt[0].to(torch.int32)}
    with torch.no_grad():
        for t in range(NUM_TASKS):
            kw = dict(input_ids=prompt, attention_mask=torch.ones_like(prompt), task_ids=torch.tensor([t]),
                      max_new_tokens=GEN_NEW, do_sample=False, num_beams=1, eos_token_id=1, pad_token_id=0)
            o = pm.generate(**kw, use_cache=False)
            cached = pm.generate(**kw)
            seq = prompt.clone()
            for _ in range(GEN_NEW):  # greedy with PEFT's forward
                nxt = pm(input_ids=seq, task_ids=torch.tensor([t]), use_cache=False).logits[0, -1].argmax()
                seq = torch.cat([seq, nxt.view(1, 1)], dim=1)
                if nxt.item() == 1:
                    break
            assert torch.equal(o[0], seq[0]), (o[0].tolist(), seq[0].tolist())
            gen[f"gen_task{t}"] = o[0].to(torch.int32)
            print(f"  generate task {t} (use_cache=False = greedy forward): {o[0].tolist()}")
            print(f"    (cached generate: {cached[0].tolist()})")
    assert len({tuple(v.tolist()) for k, v in gen.items() if k != "gen_prompt"}) > 1, "tasks generate alike"
    C.write_expected(os.path.join(out_dir, "generate.safetensors"), gen, {**meta_common, "max_new_tokens": str(GEN_NEW),
                                                                        "eos_token_id": "1", "use_cache": "False"})

    # target-task init from the saved source run
    src = os.path.join(out_dir, "adapter_model.safetensors")
    inits = {}
    for mode, nt in (("AVERAGE_SOURCE_TASKS", 1), ("EXACT_SOURCE_TASK", 1), ("ONLY_SOURCE_SHARED", NUM_TASKS)):
        torch.manual_seed(SEED + 1)
        pm2 = get_peft_model(C.build_hf(cfg, w), mpt_config(num_tasks=nt, prompt_tuning_init=mode,
                                                             prompt_tuning_init_state_dict_path=src,
                                                             prompt_tuning_init_task=INIT_TASK))
        for k, p in tensors(pm2).items():
            inits[f"{mode}.{k}"] = p.detach().clone()
    want = load_file(src)
    assert torch.equal(inits["AVERAGE_SOURCE_TASKS.prefix_task_cols"], want["prefix_task_cols"].mean(0, keepdim=True))
    assert torch.equal(inits["EXACT_SOURCE_TASK.prefix_task_rows"], want["prefix_task_rows"][INIT_TASK:INIT_TASK + 1])
    assert torch.equal(inits["ONLY_SOURCE_SHARED.prompt_embeddings"], want["prompt_embeddings"])
    assert not torch.equal(inits["ONLY_SOURCE_SHARED.prefix_task_cols"], want["prefix_task_cols"])
    # PEFT loads one task's cols/rows strictly: with num_tasks 3 these modes fail (peftc refuses them)
    try:
        get_peft_model(C.build_hf(cfg, w), mpt_config(num_tasks=NUM_TASKS, prompt_tuning_init="AVERAGE_SOURCE_TASKS",
                                                      prompt_tuning_init_state_dict_path=src))
        raise AssertionError("PEFT accepted AVERAGE_SOURCE_TASKS with num_tasks 3")
    except RuntimeError as e:
        print(f"  PEFT with AVERAGE_SOURCE_TASKS and num_tasks {NUM_TASKS}: {str(e).splitlines()[0]}")
    C.write_expected(os.path.join(out_dir, "inits.safetensors"), inits,
                     {**meta_common, "source": "adapter_model.safetensors", "prompt_tuning_init_task": str(INIT_TASK)})

    C.list_dir(out_dir, SIZE_LIMIT)
    return {"results": results}


def main():
    args, ckpt, cfg, w, ck_sha = C.start(__doc__)
    G.check_oracle(G.Llama(cfg, w, 4, 8), os.path.join(os.path.dirname(ckpt), "reference_greedy.txt"))
    ids, tokens, targets = C.make_batch()
    meta_common = C.batch_meta("gen_peft_mpt.py", ck_sha)
    r = make(cfg, w, tokens, targets, os.path.join(args.out_dir, DIR_NAME), meta_common)
    print("summary mpt: " + json.dumps(r, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
