#!/usr/bin/env python3
"""Generate runtime/tokenizer_json_utables.c: the character classes of Hugging Face `tokenizers`.

The library takes its character classes from several places with different Unicode versions:
the `unicode_categories` crate (BertNormalizer's control test, BertPreTokenizer's punctuation,
BertNormalizer's non-spacing marks), `unicode-normalization-alignments` (StripAccents'
combining marks), Rust's std (`char::to_lowercase`, `char::is_numeric`) and the `regex` crate
(`\\w`, used by the Whitespace pre-tokenizer and by added tokens' single_word/lstrip/rstrip).
Rather than guess the versions, this script asks the library itself, one code point at a
time, and writes what it answered as sorted ranges (and the lowercase mapping as runs), so
the C side agrees with the library on every code point. Normalization forms (NFC, NFD,
NFKC, NFKD) are not tabulated here: the runtime uses ICU for them, except on the code points
of norm_frozen, which the library's older tables do not know (it leaves them as they are).

Usage (from the repository root; tokenizers is in /work/venv-golden):
    /work/venv-golden/bin/python scripts/gen_tokenizer_json_tables.py [--out PATH]
Takes about 30 s. The output is deterministic for a given tokenizers version (recorded in it).
"""
import argparse
import os
import sys

import unicodedata

import tokenizers
from tokenizers.normalizers import NFD, NFKD, BertNormalizer, Lowercase, StripAccents
from tokenizers import Regex
from tokenizers.pre_tokenizers import BertPreTokenizer, Digits, Split, Whitespace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def code_points():
    return [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]


def probe():
    clean = BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False,
                           lowercase=False)
    strip = BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=True,
                           lowercase=False)
    accents, low, nfd, nfkd = StripAccents(), Lowercase(), NFD(), NFKD()
    bert_pt, digits, ws = BertPreTokenizer(), Digits(individual_digits=True), Whitespace()
    sets = {k: [] for k in ("bert_control", "bert_punct", "mark_nonspacing", "combining_mark",
                            "numeric", "word", "norm_frozen")}
    lower = {}
    for c in code_points():
        ch = chr(c)
        if clean.normalize_str("a" + ch + "b") == "ab":
            sets["bert_control"].append(c)
        if len(bert_pt.pre_tokenize_str("a" + ch + "b")) == 3:
            sets["bert_punct"].append(c)
        # the mark filters run after NFD (Bert) or on whatever they get (StripAccents): probe the
        # code points NFD leaves alone; the others are never seen by the Bert filter
        if nfd.normalize_str(ch) == ch and strip.normalize_str(ch) == "":
            sets["mark_nonspacing"].append(c)
        if accents.normalize_str(ch) == "":
            sets["combining_mark"].append(c)
        if len(digits.pre_tokenize_str("a" + ch + "a")) == 3:
            sets["numeric"].append(c)
        if [p for p, _ in ws.pre_tokenize_str("a" + ch)] == ["a" + ch]:
            sets["word"].append(c)
        lc = low.normalize_str(ch)
        if lc != ch:
            lower[c] = lc
        # normalization: what the library's (older) tables do not know, so that ICU leaves it
        # alone: code points unassigned in Python's Unicode, those whose decomposition or
        # combining class the library lacks, and the first character of such a decomposition
        # (ICU would compose into the new character)
        ud = unicodedata
        if ud.category(ch) == "Cn":
            sets["norm_frozen"].append(c)
        elif ud.decomposition(ch) and nfkd.normalize_str(ch) == ch:
            sets["norm_frozen"].append(c)
            d = ud.decomposition(ch).split()
            if not d[0].startswith("<"):
                sets["norm_frozen"].append(int(d[0], 16))
        elif 0 < ud.combining(ch) < 240 and nfd.normalize_str("\u0345" + ch) == "\u0345" + ch:
            sets["norm_frozen"].append(c)
    sets["norm_frozen"] = sorted(set(sets["norm_frozen"]))
    return sets, lower


# the general categories a Split/Replace regex may name as \p{..}
PROPS = ["L", "Lu", "Ll", "Lt", "Lm", "Lo", "M", "Mn", "Mc", "Me", "N", "Nd", "Nl", "No", "P", "Pc",
         "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "S", "Sm", "Sc", "Sk", "So", "Z", "Zs", "Zl", "Zp",
         "Cc", "Cf", "Co"]


def prop_additions():
    """Code points unassigned in Python's Unicode (that of PCRE2 10.42 too: 14.0) that the
    library's Oniguruma (a newer Unicode) puts in each \p{..}; the C side adds them to the
    class so that PCRE2 matches what Oniguruma matches."""
    new = [c for c in code_points() if unicodedata.category(chr(c)) == "Cn"]
    return {prop: regex_members(r"\p{" + prop + "}", new) for prop in PROPS}


def regex_members(pattern, cps):
    """The code points of cps a one-character regex of the library matches."""
    split = Split(Regex(pattern), "removed")
    hits = []
    for i in range(0, len(cps), 4096):
        chunk = cps[i:i + 4096]
        kept = [False] * len(chunk)
        for _, (a, b) in split.pre_tokenize_str("".join(chr(c) for c in chunk)):
            for k in range(a, b):
                kept[k] = True
        hits += [c for c, k in zip(chunk, kept) if not k]
    return hits


def onig_word_extra():
    """Oniguruma's \w beyond L, M, Nd, Pc, Nl (as PCRE2's Unicode 14 has them): superscript
    digits and vulgar fractions, circled letters, and the code points assigned since. Checked
    to be a superset of those categories."""
    word = set(regex_members(r"\w", code_points()))
    base = {c for c in code_points()
            if unicodedata.category(chr(c))[0] in "LM" or unicodedata.category(chr(c)) in
            ("Nd", "Pc", "Nl")}
    if base - word:
        sys.exit(f"Oniguruma's \\w lacks {len(base - word)} code points of L|M|Nd|Pc|Nl")
    return sorted(word - base)


def ranges(cps):
    out = []
    for c in sorted(cps):
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def lower_runs(lower):
    """(first, last, step, delta): c in first..last by step maps to c + delta. Multi-character
    mappings are left out (the C side handles U+0130, the only one; checked here)."""
    multi = {c: s for c, s in lower.items() if len(s) != 1}
    if multi != {0x130: "i\u0307"}:
        sys.exit(f"unexpected multi-character lowercase mappings: {multi!r}")
    runs = []
    for c in sorted(lower):
        if c in multi:
            continue
        d = ord(lower[c]) - c
        if runs:
            first, last, step, delta = runs[-1]
            gap = c - last
            if delta == d and ((step == 0 and gap in (1, 2)) or gap == step):
                runs[-1] = [first, c, gap, delta]
                continue
        runs.append([c, c, 0, d])
    return [[f, l, s or 1, d] for f, l, s, d in runs]


def c_array(name, rows, ctype, per_line):
    cells = ["{" + ", ".join(f"0x{v:x}" if v >= 0 else str(v) for v in r) + "}" for r in rows]
    lines = []
    for i in range(0, len(cells), per_line):
        lines.append("    " + ", ".join(cells[i:i + per_line]) + ",")
    return f"static const {ctype} {name} = {{\n" + "\n".join(lines) + "\n};\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "runtime", "tokenizer_json_utables.c"))
    args = ap.parse_args()
    sets, lower = probe()
    runs = lower_runs(lower)
    out = [
        "/* GENERATED by scripts/gen_tokenizer_json_tables.py from Hugging Face tokenizers "
        f"{tokenizers.__version__}: do not edit.",
        " *",
        " * The character classes of the library, asked of the library one code point at a time",
        " * (see the script). Ranges are sorted and disjoint. */",
        '#include "runtime/tokenizer_json_unicode.h"',
        "",
    ]
    for name, cps in sets.items():
        rs = ranges(cps)
        out.append(c_array(f"{name}_r[][2]", rs, "uint32_t", 4))
        out.append(f"const pc_hftu_set pc_hftu_{name} = {{{name}_r, {len(rs)}}};\n")
    adds = prop_additions()
    rows = []
    for prop in PROPS:
        rs = ranges(adds[prop])
        if rs:
            out.append(c_array(f"prop_{prop}_r[][2]", rs, "uint32_t", 4))
        rows.append(f'    {{"{prop}", {{{f"prop_{prop}_r" if rs else "NULL"}, {len(rs)}}}}},')
    out.append("const pc_hftu_prop pc_hftu_props[] = {\n" + "\n".join(rows) + "\n    {NULL, {NULL, 0}},\n};\n")
    rs = ranges(onig_word_extra())
    out.append(c_array("onig_word_extra_r[][2]", rs, "uint32_t", 4))
    out.append(f"const pc_hftu_set pc_hftu_onig_word_extra = {{onig_word_extra_r, {len(rs)}}};\n")
    out.append(c_array("lower_r[][4]", runs, "int32_t", 3))
    out.append(f"const pc_hftu_runs pc_hftu_lower = {{lower_r, {len(runs)}}};")
    text = "\n".join(out) + "\n"
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    counts = ", ".join(f"{k} {len(v)}" for k, v in sets.items())
    print(f"wrote {args.out}: {counts}, lowercase {len(lower)} ({len(runs)} runs)")


if __name__ == "__main__":
    main()
