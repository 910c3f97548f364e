"""Writes tests/data/hf_llama/byte_tokenizer.json: a byte-level BPE tokenizer.json with exactly the
256 byte tokens (id = byte value) and no merges or special tokens, so it fits the 256-token
vocabulary of the tiny HF Llama fixtures. Tests copy it into a model directory as
tokenizer.json to run the verbs that need text (train on a text file, generate, compile).

    /work/venv-golden/bin/python tests/golden/gen_byte_tokenizer.py
"""
import os

from tokenizers import Tokenizer, decoders, models, pre_tokenizers


def byte_to_unicode():
    # GPT-2's printable mapping of the 256 bytes (the ByteLevel pre-tokenizer's alphabet)
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, cs))


def main():
    m = byte_to_unicode()
    vocab = {chr(m[b]): b for b in range(256)}
    t = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    t.decoder = decoders.ByteLevel()
    assert t.encode("Hi, world").ids == list(b"Hi, world")
    out = os.path.join(os.path.dirname(__file__), "..", "data", "hf_llama", "byte_tokenizer.json")
    t.save(out)
    print("wrote", out)


if __name__ == "__main__":
    main()
