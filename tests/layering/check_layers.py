#!/usr/bin/env python3
"""Layering check for peftc's production code (docs/design.md, "Layering").

Resolves every #include (both quote styles) in ir/ passes/ backend/ runtime/ frontend/
drivers/ tools/ include/ the way the build does: a quoted include is looked up in the
including file's folder first; then both styles are looked up in the repository root,
include/ and ir/ (the build's private -I ir). Includes that resolve to no file of the
repository (system and third-party headers) are ignored. An edge that points up a layer, or
sideways between frontend/, passes/ and backend/, is a violation.

Layers, top to bottom (a layer may include itself and anything below it):

    tools
    drivers
    frontend | passes | backend   (siblings: none may include another)
    ir, include                   (one level: the graph IR and the public API)
    runtime                       (may include runtime/ and include/peftc/types.h only)

Usage:
    check_layers.py [REPO_ROOT]    check the tree; exit 1 and print file:line for each violation
    check_layers.py --self-test    check synthetic trees with known good and bad edges
"""
import os
import re
import sys
import tempfile

PRODUCTION_DIRS = ["ir", "passes", "backend", "runtime", "frontend", "drivers", "tools", "include"]
SOURCE_SUFFIXES = (".c", ".h", ".def", ".inc")
# the build's include path after the including file's folder (CMakeLists.txt: -I include -I .
# and the private -I ir); the order does not change what resolves in this tree
SEARCH_DIRS = ["", "include", "ir"]

RANK = {
    "runtime": 0,
    "ir": 1,
    "include": 1,
    "frontend": 2,
    "passes": 2,
    "backend": 2,
    "drivers": 3,
    "tools": 4,
}
SIBLINGS = {"frontend", "passes", "backend"}
# the one header of the public API that the runtime may see
RUNTIME_EXTRA = {"include/peftc/types.h"}

INCLUDE_RE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*([<"])([^>"]+)[>"]')


def strip_comments(text):
    """Removes /* */ and // comments (string literals kept), preserving line breaks."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "/" and i + 1 < n and text[i + 1] == "*":
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == "/" and i + 1 < n and text[i + 1] == "/":
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif c == '"' or c == "'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def layer_of(rel):
    top = rel.split("/", 1)[0]
    return top if top in RANK else None


def allowed(src_layer, dst_rel):
    dst_layer = layer_of(dst_rel)
    if dst_layer is None:
        return True  # tests/, examples/ ... are not production layers; nothing to rank
    if src_layer == dst_layer:
        return True
    if src_layer == "runtime":
        return dst_rel in RUNTIME_EXTRA
    if src_layer in SIBLINGS and dst_layer in SIBLINGS:
        return False
    return RANK[dst_layer] <= RANK[src_layer]  # equal ranks left here: ir and include


def resolve(root, src_rel, style, name):
    """The repository-relative path the include resolves to, or None."""
    candidates = []
    if style == '"':
        candidates.append(os.path.dirname(src_rel))
    candidates.extend(SEARCH_DIRS)
    for d in candidates:
        rel = os.path.normpath(os.path.join(d, name)).replace(os.sep, "/")
        if rel.startswith("../"):
            continue
        if os.path.isfile(os.path.join(root, rel)):
            return rel
    return None


def source_files(root):
    for top in PRODUCTION_DIRS:
        base = os.path.join(root, top)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for f in sorted(filenames):
                if f.endswith(SOURCE_SUFFIXES):
                    yield os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/")


def check(root):
    """Returns (violations, number of edges checked); a violation is (file, line, text)."""
    violations = []
    edges = 0
    for rel in source_files(root):
        src_layer = layer_of(rel)
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
            text = strip_comments(f.read())
        for lineno, line in enumerate(text.split("\n"), 1):
            m = INCLUDE_RE.match(line)
            if not m:
                continue
            style, name = m.group(1), m.group(2).strip()
            dst = resolve(root, rel, style, name)
            if dst is None:
                continue
            edges += 1
            if not allowed(src_layer, dst):
                spelled = f"<{name}>" if style == "<" else f'"{name}"'
                violations.append(
                    (rel, lineno, f"{src_layer} -> {layer_of(dst)}: #include {spelled} resolves to {dst}")
                )
    return violations, edges


def report(violations):
    for rel, lineno, what in violations:
        print(f"{rel}:{lineno}: layering violation: {what}")


def self_test():
    """Builds synthetic trees and checks that every bad edge is caught and no good one is."""
    files = {
        # headers that edges point at
        "include/peftc/peftc.h": "",
        "include/peftc/types.h": "",
        "ir/ir.h": '#include "peftc/peftc.h"\n',
        "ir/ops.def": "",
        "runtime/fileio.h": "",
        "passes/pass.h": '#include "ir/ir.h"\n',
        "backend/exec.h": '#include "peftc/peftc.h"\n',
        "frontend/model.h": "",
        "drivers/train.h": "",
        # good edges
        "runtime/ok.c": '#include "runtime/fileio.h"\n#include <peftc/types.h>\n#include <stdio.h>\n',
        "ir/ok.c": '#include "ir.h"\n#include "ops.def"\n#include "runtime/fileio.h"\n',
        "passes/ok.c": '#include "passes/pass.h"\n#include "ir/ir.h"\n#include "runtime/fileio.h"\n',
        "backend/ok.c": '#include "exec.h"\n#include "ir.h"\n  #  include "ops.def"\n',
        "drivers/ok.c": '#include "frontend/model.h"\n#include "passes/pass.h"\n#include "backend/exec.h"\n',
        "tools/ok.c": '#include "drivers/train.h"\n#include "backend/exec.h"\n#include "runtime/fileio.h"\n',
        "frontend/ok.c": "/* #include \"backend/exec.h\" in a comment */\n// #include \"passes/pass.h\"\n"
        'static const char *s = "#include \\"backend/exec.h\\"";\n',
        # bad edges: (file, line) listed in `expected`
        "runtime/bad.h": "#include <peftc/peftc.h>\n",
        "runtime/bad2.c": '#include "ir/ir.h"\n',
        "ir/bad.c": '#include "passes/pass.h"\n',
        "include/peftc/bad.h": '#include "backend/exec.h"\n',
        "include/peftc/ok.h": '#include "peftc/types.h"\n#include "ir/ir.h"\n',
        "passes/bad.c": '#include "ir/ir.h"\n#include "backend/exec.h"\n',
        "backend/bad.c": '#include "passes/pass.h"\n',
        "frontend/bad.c": '#include "passes/pass.h"\n#include <backend/exec.h>\n',
        "passes/bad2.c": '#include "drivers/train.h"\n',
        "drivers/bad.c": '#include "tools/cli.h"\n',
        "tools/cli.h": "",
    }
    expected = {
        ("runtime/bad.h", 1),
        ("runtime/bad2.c", 1),
        ("ir/bad.c", 1),
        ("include/peftc/bad.h", 1),
        ("passes/bad.c", 2),
        ("backend/bad.c", 1),
        ("frontend/bad.c", 1),
        ("frontend/bad.c", 2),
        ("passes/bad2.c", 1),
        ("drivers/bad.c", 1),
    }
    with tempfile.TemporaryDirectory() as root:
        for rel, text in files.items():
            path = os.path.join(root, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        violations, edges = check(root)
        got = {(rel, line) for rel, line, _ in violations}
    ok = True
    for miss in sorted(expected - got):
        print(f"self-test: bad edge not caught: {miss[0]}:{miss[1]}")
        ok = False
    for extra in sorted(got - expected):
        print(f"self-test: good edge reported: {extra[0]}:{extra[1]}")
        ok = False
    if edges < len(expected) + 15:
        print(f"self-test: only {edges} edges resolved; the resolver is broken")
        ok = False
    print("self-test: " + ("ok" if ok else "FAILED") + f" ({len(expected)} bad edges, {edges} edges)")
    return 0 if ok else 1


def main(argv):
    if len(argv) > 1 and argv[1] == "--self-test":
        return self_test()
    root = os.path.abspath(argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(__file__), "..", ".."))
    if not os.path.isdir(os.path.join(root, "ir")):
        print(f"check_layers: {root} is not the peftc repository root")
        return 2
    violations, edges = check(root)
    report(violations)
    if violations:
        print(f"check_layers: {len(violations)} layering violation(s) in {edges} include edges")
        return 1
    print(f"check_layers: ok ({edges} include edges)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
