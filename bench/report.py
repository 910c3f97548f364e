#!/usr/bin/env python3
"""Summarise the JSON lines of bench/run.sh (fma_peak, bench_train, torch_llama_lora.py).

    report.py RESULTS.jsonl [--markdown]

Each (config, side, mode) has one line per round. A side is a peftc backend with its base-weight
dtype (jit, jit-bf16, ref) or a PyTorch baseline (torch-eager, torch-eager-avx512, torch-compile,
torch-compile-bf16, torch-eager-bf16; an old file's "torch" is torch-eager). run.sh measures the FMA peak right before
and right after every run and keeps the lower ("fma_gflops"); both programs report their CPU time
/ wall time over the timed steps ("cpu_util"). A run whose calibration is below CONTENDED (0.9) x
the best calibration of the whole benchmark, or whose cpu_util is below MIN_UTIL (0.95), shared
its core with something else and is left out (the "ok" column counts the runs kept; when none is
left, all are used and the cell is marked *). Throughput is
the median over the kept rounds of each run's median step; a ratio is the median over rounds of
peftc/baseline tokens/s for runs of the same round (they ran back to back), with its min..max. GFLOP/s use the matmul FLOPs that bench_train
counts on the step graph; "% peak" is against the median of the uncontended calibrations.
"loss0 rel" is |loss0 - ref| / ref against peftc's f32 jit first loss (else torch-eager's): f32 sides
must agree to F32_LOSS_RTOL (the report then exits 1), bf16 sides are only reported. "ISA" is the
run's code path: torch's ATen capability, MKL path, MKL shim and the GEMM kernels its last warm-up
step called; peftc's from one untimed ONEDNN_VERBOSE step (bench/isa_path.py).
Lines with an "error" field are listed at the end.
"""
CONTENDED = 0.9
MIN_UTIL = 0.95
F32_LOSS_RTOL = 1e-5
import json
import statistics
import sys
from collections import defaultdict

TORCH_ORDER = ["torch-eager", "torch-eager-avx512", "torch-compile", "torch-compile-bf16", "torch-eager-bf16"]


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec="{:,.0f}", none="-"):
    return none if x is None else spec.format(x)


def side_of(d):
    if d.get("bench") == "torch":
        return "torch-eager" if d["backend"] == "torch" else d["backend"]
    dt = d.get("base_dtype") or "f32"
    return d["backend"] + ("" if dt == "f32" else "-" + dt)


def is_f32(side):
    return not side.endswith("-bf16")


def side_order(s):
    if s.startswith("torch"):
        return (1, TORCH_ORDER.index(s) if s in TORCH_ORDER else 99, s)
    return (0, 0 if s.split("-")[0] == "jit" else 1, s)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    markdown = "--markdown" in sys.argv
    rows, fma, errors, info, pisa = [], [], [], {}, {}
    with open(args[0]) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                continue
            if d.get("error"):
                errors.append(d)
            elif d.get("bench") == "fma_peak":
                fma.append(d)
            elif d.get("bench") == "machine":
                info = d
            elif d.get("bench") == "peftc_isa":
                pisa[(d["config"], side_of(d))] = d
            elif d.get("bench") in ("peftc", "torch"):
                d["side"] = side_of(d)
                rows.append(d)
    cal = [d["fma_gflops"] for d in rows if d.get("fma_gflops")] + [d["gflops_median"] for d in fma]
    top = max(cal) if cal else None

    def ok(d):
        if d.get("cpu_util") is not None and d["cpu_util"] < MIN_UTIL:
            return False
        return top is None or d.get("fma_gflops") is None or d["fma_gflops"] >= CONTENDED * top

    peak = med([x for x in cal if top and x >= CONTENDED * top]) if cal else None
    by_all = defaultdict(list)
    for d in rows:
        by_all[(d["config"], d["side"], d["mode"])].append(d)
    by = {k: ([d for d in v if ok(d)] or v) for k, v in by_all.items()}
    marks = {k: ("" if any(ok(d) for d in v) else "*") for k, v in by_all.items()}
    configs = []
    for d in rows:
        if d["config"] not in configs:
            configs.append(d["config"])

    def agg(key, field):
        return med([d.get(field) for d in by.get(key, [])])

    def first(key, field):
        return next((d.get(field) for d in by.get(key, []) if d.get(field) is not None), None)

    def kept(key):
        return f"{len([d for d in by_all.get(key, []) if ok(d)])}/{len(by_all.get(key, []))}{marks.get(key, '')}"

    def ratio(key_a, key_b, field="tokens_per_s_median"):
        a = {d.get("round"): d[field] for d in by.get(key_a, [])}
        b = {d.get("round"): d[field] for d in by.get(key_b, [])}
        rs = [a[r] / b[r] for r in a if r in b and b[r]]
        return (statistics.median(rs), min(rs), max(rs)) if rs else None

    def compile_cell(key):  # torch.compile: "warm" = inductor's FX graph cache had every graph
        cs = agg(key, "compile_s")
        miss = [d.get("inductor_cache_misses") for d in by.get(key, []) if "inductor_cache_misses" in d]
        if cs is None or not miss:
            return fmt(cs, "{:.3f}")
        return f"{cs:.3f} ({'warm' if max(miss) == 0 else 'cold'})"

    def rfmt(r):
        return f"{r[0]:.2f}x ({r[1]:.2f}..{r[2]:.2f})" if r else "-"

    def sides(c, modes):
        return sorted({s for (cc, s, m) in by if cc == c and m in modes}, key=side_order)

    out, bad = [], []
    tr = next((d for d in rows if d["bench"] == "torch"), None)
    if info:
        out.append(f"machine: {info.get('cpu', '?')} ({info.get('vendor', '?')}; {info.get('isa_flags', '?')}), "
                   f"{info.get('nproc', '?')} vCPUs")
    if tr:
        out.append(f"torch {tr.get('torch')}: BLAS {tr.get('blas')} ({tr.get('blas_kernel', '?')}), ATen CPU capability "
                   f"{tr.get('cpu_capability')}, attention {tr.get('attn')}, RSS after `import torch` "
                   f"{tr.get('rss_after_import_mib')} MiB")
    dn = next((d.get("onednn_isa") for d in pisa.values() if d.get("onednn_isa")), None)
    if dn:
        out.append(f"peftc's oneDNN: {dn}")
    if fma:
        out.append(f"FMA peak, 1 core, f32 zmm: {peak:.1f} GFLOP/s (median of the {len([x for x in cal if x >= CONTENDED * top])} "
                   f"uncontended of {len(cal)} calibrations, range {min(cal):.1f}..{top:.1f}); ymm at start/end "
                   f"{', '.join('%.1f' % d.get('gflops_ymm_median', 0) for d in fma)}")

    def isa_of(c, s, mode):
        if s.startswith("torch"):
            return first((c, s, mode), "isa") or "-"
        p = pisa.get((c, s))
        return p["isa"] if p else ("interpreter C kernels" if s.startswith("ref") else "-")

    def loss_ref(c, mode):
        for s in ["jit"] + sides(c, {mode}) + ["torch-eager"]:
            if not s.endswith("-bf16") and agg((c, s, mode), "loss_first") is not None:
                return s, agg((c, s, mode), "loss_first")
        return None, None

    # ---- train: one row per side ----
    out.append("")
    out.append("Train step (LoRA, AdamW), 1 thread; tokens/s = median over rounds of the median step")
    hdr = ["config", "side", "ok", "tok/s", "ms/step", "GFLOP/s (% peak)", "RSS MiB", "compile s (cache)", "loss0",
           "loss0 rel", "ISA path"]
    table = [hdr]
    for c in configs:
        rs, ref = loss_ref(c, "train")
        for s in sides(c, {"train"}):
            k = (c, s, "train")
            g, l0 = agg(k, "gflops"), agg(k, "loss_first")
            rel = abs(l0 - ref) / abs(ref) if l0 is not None and ref else None
            flag = ""
            if rel is not None and s != rs:
                if is_f32(s) and rel > F32_LOSS_RTOL:
                    flag = " MISMATCH"
                    bad.append(f"{c} {s}: loss0 {l0:.7g} vs {rs} {ref:.7g} (rel {rel:.2g} > {F32_LOSS_RTOL:g})")
            table.append([c, s, kept(k), fmt(agg(k, "tokens_per_s_median")), fmt(agg(k, "ms_per_step_median"), "{:,.2f}"),
                          f"{g:.1f} ({100 * g / peak:.0f}%)" if g and peak else fmt(g, "{:.1f}"),
                          fmt(agg(k, "peak_rss_mib")), compile_cell(k),
                          fmt(l0, "{:.6f}"), ("ref" if s == rs else fmt(rel, "{:.1e}")) + flag, isa_of(c, s, "train")])
    out += render(table, markdown)

    # ---- train: peftc / each baseline ----
    out.append("")
    out.append("Train step ratios, peftc tokens/s / baseline tokens/s: median over rounds (min..max)")
    tsides = [t for t in TORCH_ORDER if any(s == t for (_, s, m) in by if m == "train")]
    tsides += sorted({s for (_, s, m) in by if m == "train" and s.startswith("torch") and s not in tsides})
    table = [["config", "peftc"] + [f"/ {t}" for t in tsides]]
    for c in configs:
        for p in [s for s in sides(c, {"train"}) if not s.startswith("torch")]:
            table.append([c, p] + [rfmt(ratio((c, p, "train"), (c, t, "train"))) for t in tsides])
    out += render(table, markdown)

    # ---- inference ----
    modes = ["base", "unmerged", "merged"]
    if any(m in modes for (_, _, m) in by):
        out.append("")
        out.append("Inference (forward only, B x S tokens, logits for every position), tokens/s, 1 thread")
        table = [["config", "side", "ok", "base", "unmerged", "merged", "merged/base", "unmerged/base",
                  "compile s (unmerged)", "loss0 unmerged", "merged vs unmerged max abs diff", "ISA path (unmerged)"]]
        for c in configs:
            for s in sides(c, set(modes)):
                v = {m: agg((c, s, m), "tokens_per_s_median") for m in modes}
                rm = ratio((c, s, "merged"), (c, s, "base"))
                ru = ratio((c, s, "unmerged"), (c, s, "base"))
                dif = agg((c, s, "merged"), "max_abs_diff_vs_unmerged")
                table.append([c, s, kept((c, s, "base")), fmt(v["base"]), fmt(v["unmerged"]), fmt(v["merged"]),
                              f"{rm[0]:.3f}" if rm else "-", f"{ru[0]:.3f}" if ru else "-",
                              compile_cell((c, s, "unmerged")),
                              fmt(agg((c, s, "unmerged"), "loss_first"), "{:.5f}"), fmt(dif, "{:.2g}"),
                              isa_of(c, s, "unmerged") if s.startswith("torch") else "-"])
            for ps in [s for s in sides(c, set(modes)) if not s.startswith("torch")]:
                p = {m: agg((c, ps, m), "tokens_per_s_median") for m in modes}
                for t in [s for s in sides(c, set(modes)) if s.startswith("torch")]:
                    tv = {m: agg((c, t, m), "tokens_per_s_median") for m in modes}
                    if all(tv.values()) and all(p.values()):
                        table.append([c, f"{ps} / {t}", "", *[f"{p[m] / tv[m]:.2f}x" for m in modes]] + [""] * 6)
        out += render(table, markdown)
    if errors:
        out.append("")
        out.append("Failed runs:")
        for e in errors:
            out.append(f"  {e.get('label', '')} round {e.get('round')}: {e.get('error')}")
    if bad:
        out.append("")
        out.append("First-loss check FAILED (f32 sides must agree to %g relative):" % F32_LOSS_RTOL)
        out += ["  " + b for b in bad]
    print("\n".join(out))
    return 1 if bad else 0


def render(table, markdown):
    w = [max(len(str(r[i])) for r in table) for i in range(len(table[0]))]
    lines = []
    for k, r in enumerate(table):
        cells = [str(x).rjust(w[i]) if i > 1 else str(x).ljust(w[i]) for i, x in enumerate(r)]
        lines.append(("| " + " | ".join(cells) + " |") if markdown else "  ".join(cells))
        if k == 0:
            lines.append(("|" + "|".join("-" * (x + 2) for x in w) + "|") if markdown else "  ".join("-" * x for x in w))
    return lines


if __name__ == "__main__":
    sys.exit(main())
