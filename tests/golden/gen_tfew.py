#!/usr/bin/env python3
"""The T-Few objective and rank classification on stories260K + IA3, from the definitions.

T-Few (Liu et al. 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than
In-Context Learning"; the code: r-three/t-few, EncoderDecoder.training_step) trains on
multiple-choice examples with L = L_LM + L_UL + L_LN. For a decoder-only model each choice is
the continuation of its example's context BOS + encode(input); with lp(t) the log-probability of
choice token t given everything before it:
  L_LM = -sum lp over the correct choices' tokens / their count (a token mean over the batch)
  L_UL = -sum log(1 - exp(lp) + 0.01) over the wrong choices' tokens / their count
  L_LN = mean over examples of cross_entropy(scores, label), scores[c] = mean lp of choice c
Rank classification predicts argmax_c scores[c]. Per example, the same three terms on that
example alone (what `peftc eval` averages).

Here every (example, choice) is its own unpadded forward of PEFT's model (the committed IA3
adapter tests/data/peft_ia3_stories260k, non-zero ia3_l, loaded with PeftModel.from_pretrained,
k_proj rows turned to HF order for the HF model), so no padding can enter the reference. The
token ids come from a Python port of llama2.c's tokenizer (tok512.bin) and are stored too, so
the test checks peftc's loader against them.

Writes tests/data/tfew/expected.safetensors: ids.<e>, off.<e> (choice offsets into ids), label,
loss_lm, loss_ul, loss_ln, loss (the batch of all examples), scores [E, C] (-1e9 where an
example has fewer choices), ex_lm, ex_ul, ex_ln [E], pred [E], and grad.<key> of loss for every
ia3_l (llama2.c row order, as the adapter file stores them).

Usage (from the repository root): /work/venv-golden/bin/python tests/golden/gen_tfew.py
"""
import os
import struct
import sys

PIN_HASH_SEED = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peft_fixture_common as C  # noqa: E402

import json  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from peft import PeftModel  # noqa: E402

import gen_llama_lora as G  # noqa: E402

IA3_DIR = os.path.join(G.REPO, "tests", "data", "peft_ia3_stories260k")
MC_FILE = os.path.join(G.REPO, "tests", "data", "tfew", "mc.jsonl")
TOK_FILE = os.path.join(G.REPO, "data", "stories260K", "tok512.bin")
UL_EPS = 0.01  # T-Few's code: -log(1 - exp(lp) + 1e-2)
PAD_SCORE = -1e9


class L2CTokenizer:
    """llama2.c's encode (run.c): BOS, a dummy-prefix space, UTF-8 pieces (byte fallback +3),
    then merge the best-scoring adjacent pair (leftmost of equal ones) until none merges."""

    def __init__(self, path, vocab_size=512):
        with open(path, "rb") as f:
            data = f.read()
        (self.max_len,) = struct.unpack_from("<i", data, 0)
        o, self.pieces, self.scores = 4, [], []
        for _ in range(vocab_size):
            score, n = struct.unpack_from("<fi", data, o)
            o += 8
            self.pieces.append(data[o:o + n])
            self.scores.append(score)
            o += n
        self.index = {}
        for i, p in enumerate(self.pieces):
            self.index.setdefault(p, i)

    def encode(self, text, bos):
        toks = [1] if bos else []
        b = text.encode("utf-8")
        if b:
            toks.append(self.index[b" "])
        i = 0
        while i < len(b):
            g = 1
            while g < 4 and i + g < len(b) and (b[i + g] & 0xC0) == 0x80:
                g += 1
            piece = b[i:i + g]
            toks += [self.index[piece]] if piece in self.index else [x + 3 for x in piece]
            i += g
        while True:
            best, best_i, best_id = -1e10, -1, -1
            for k in range(len(toks) - 1):
                j = self.index.get(self.pieces[toks[k]] + self.pieces[toks[k + 1]], -1)
                if j >= 0 and self.scores[j] > best:
                    best, best_i, best_id = self.scores[j], k, j
            if best_i < 0:
                return toks
            toks[best_i:best_i + 2] = [best_id]


def main():
    args, ckpt, cfg, w, ck_sha = C.start(__doc__)
    tok = L2CTokenizer(TOK_FILE, cfg["vocab_size"])
    with open(MC_FILE, encoding="utf-8") as f:
        examples = [json.loads(line) for line in f if line.strip()]
    pm = PeftModel.from_pretrained(C.build_hf(cfg, w), IA3_DIR, is_trainable=True)
    pm.eval()
    params = []  # (file key, the Parameter, module name)
    for name, p in pm.named_parameters():
        if p.requires_grad:
            assert ".ia3_l." in name, name
            key = name.replace(".default", "")
            mod = key.split(".")[-2]
            with torch.no_grad():
                p.copy_(C.to_hf(cfg, mod, p.detach().clone()))  # the file's llama2.c rows -> HF rows
            params.append((key, p, mod))
    assert len(params) == 3 * cfg["n_layers"]

    out = {}
    E, Cmax = len(examples), max(len(e["answer_choices"]) for e in examples)
    lm_sum, lm_n, ul_sum, ul_n, ln_terms = 0.0, 0, 0.0, 0, []
    scores = torch.full((E, Cmax), PAD_SCORE)
    ex_lm, ex_ul, ex_ln, pred = [], [], [], []
    for e, ex in enumerate(examples):
        ctx = tok.encode(ex["input"], True)
        choices = [tok.encode(c, False) for c in ex["answer_choices"]]
        ids, off = list(ctx), []
        for ch in choices:
            off.append(len(ids))
            ids += ch
        off.append(len(ids))
        out[f"ids.{e}"] = torch.tensor(ids, dtype=torch.int32)
        out[f"off.{e}"] = torch.tensor(off, dtype=torch.int32)
        label = ex["label"]
        sc, e_ul, e_ul_n = [], 0.0, 0
        for c, ch in enumerate(choices):
            row = torch.tensor([ctx + ch])
            logp = F.log_softmax(pm(input_ids=row[:, :-1], use_cache=False).logits.float(), dim=-1)[0]
            pos = torch.arange(len(ctx) - 1, len(ctx) + len(ch) - 1)
            lp = logp[pos, torch.tensor(ch)]  # log p of each choice token
            sc.append(lp.mean())
            if c == label:
                lm_sum, lm_n = lm_sum + (-lp.sum()), lm_n + len(ch)
                ex_lm.append((-lp.mean()).item())
            else:
                u = -torch.log(1 - torch.exp(lp) + UL_EPS)
                ul_sum, ul_n = ul_sum + u.sum(), ul_n + len(ch)
                e_ul, e_ul_n = e_ul + u.sum().item(), e_ul_n + len(ch)
        sc = torch.stack(sc)
        ln = F.cross_entropy(sc.unsqueeze(0), torch.tensor([label]))
        ln_terms.append(ln)
        scores[e, :len(choices)] = sc.detach()
        ex_ul.append(e_ul / e_ul_n if e_ul_n else 0.0)
        ex_ln.append(ln.item())
        pred.append(int(sc.argmax()))
    loss_lm, loss_ul, loss_ln = lm_sum / lm_n, ul_sum / ul_n, torch.stack(ln_terms).mean()
    loss = loss_lm + loss_ul + loss_ln
    pm.zero_grad(set_to_none=True)
    loss.backward()
    for key, p, mod in params:
        out["grad." + key] = C.to_l2c(cfg, mod, p.grad.detach().clone())
    C.check_nonzero_grads(out)
    out.update({
        "label": torch.tensor([ex["label"] for ex in examples], dtype=torch.int32),
        "loss_lm": loss_lm.detach().reshape(1), "loss_ul": loss_ul.detach().reshape(1),
        "loss_ln": loss_ln.detach().reshape(1), "loss": loss.detach().reshape(1),
        "scores": scores, "ex_lm": torch.tensor(ex_lm), "ex_ul": torch.tensor(ex_ul), "ex_ln": torch.tensor(ex_ln),
        "pred": torch.tensor(pred, dtype=torch.int32),
    })
    print(f"loss_lm {loss_lm.item():.7f}  loss_ul {loss_ul.item():.7f}  loss_ln {loss_ln.item():.7f}  "
          f"loss {loss.item():.7f}")
    print(f"scores {scores.tolist()}\npred {pred} labels {[ex['label'] for ex in examples]}")
    meta = {"generator": "tests/golden/gen_tfew.py", "checkpoint_sha256": ck_sha, "adapter": "tests/data/peft_ia3_stories260k",
            "data": "tests/data/tfew/mc.jsonl", "ul_eps": str(UL_EPS), "grad_row_order": "llama2.c",
            "torch_version": torch.__version__}
    C.write_expected(os.path.join(G.REPO, "tests", "data", "tfew", "expected.safetensors"), out, meta)


if __name__ == "__main__":
    main()
