#!/usr/bin/env python3
"""Summarise the JSON lines of bench/run.sh (fma_peak, bench_train, torch_llama_lora.py).

    report.py RESULTS.jsonl [--markdown]

Each (config, backend, mode) has one line per round. run.sh measures the FMA peak right before
and right after every run and keeps the lower ("fma_gflops"); both programs report their CPU time
/ wall time over the timed steps ("cpu_util"). A run whose calibration is below CONTENDED (0.9) x
the best calibration of the whole benchmark, or whose cpu_util is below MIN_UTIL (0.95), shared
its core with something else and is left out (the "ok" column counts the runs kept; when none is
left, all are used and the cell is marked *). Throughput is
the median over the kept rounds of each run's median step; "ratio" is the median over rounds of
peftc/torch for runs of the same round (they ran back to back), with its min..max; "best ratio"
divides the best single steps of all kept runs. GFLOP/s use the matmul FLOPs that bench_train
counts on the step graph; "% peak" is against the median of the uncontended calibrations.
Lines with an "error" field are listed at the end.
"""
CONTENDED = 0.9
MIN_UTIL = 0.95
import json
import statistics
import sys
from collections import defaultdict


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec="{:,.0f}", none="-"):
    return none if x is None else spec.format(x)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    rows, fma, errors, info = [], [], [], {}
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
            elif d.get("bench") in ("peftc", "torch"):
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
        by_all[(d["config"], d["backend"], d["mode"])].append(d)
    by = {k: ([d for d in v if ok(d)] or v) for k, v in by_all.items()}
    marks = {k: ("" if any(ok(d) for d in v) else "*") for k, v in by_all.items()}
    configs = []
    for d in rows:
        if d["config"] not in configs:
            configs.append(d["config"])

    def agg(key, field):
        return med([d.get(field) for d in by.get(key, [])])

    def kept(key):
        return f"{len([d for d in by_all.get(key, []) if ok(d)])}/{len(by_all.get(key, []))}{marks.get(key, '')}"

    def best_ratio(key_a, key_b):
        a = max([d["tokens_per_s_best"] for d in by.get(key_a, [])], default=None)
        b = max([d["tokens_per_s_best"] for d in by.get(key_b, [])], default=None)
        return a / b if a and b else None

    def ratio(key_a, key_b, field="tokens_per_s_median"):
        a = {d.get("round"): d[field] for d in by.get(key_a, [])}
        b = {d.get("round"): d[field] for d in by.get(key_b, [])}
        rs = [a[r] / b[r] for r in a if r in b and b[r]]
        return (statistics.median(rs), min(rs), max(rs)) if rs else None

    out = []
    tr = next((d for d in rows if d["bench"] == "torch"), None)
    if info:
        out.append(f"machine: {info.get('cpu', '?')}, {info.get('nproc', '?')} vCPUs")
    if tr:
        out.append(f"torch {tr.get('torch')}: BLAS {tr.get('blas')} ({tr.get('blas_kernel', '?')}), CPU capability "
                   f"{tr.get('cpu_capability')}, attention {tr.get('attn')}, LD_PRELOAD '{tr.get('ld_preload', '')}', "
                   f"RSS after `import torch` {tr.get('rss_after_import_mib')} MiB")
    if fma:
        out.append(f"FMA peak, 1 core, f32 zmm: {peak:.1f} GFLOP/s (median of the {len([x for x in cal if x >= CONTENDED * top])} "
                   f"uncontended of {len(cal)} calibrations, range {min(cal):.1f}..{top:.1f}); ymm at start/end "
                   f"{', '.join('%.1f' % d.get('gflops_ymm_median', 0) for d in fma)}")
    out.append("")
    out.append("Train step (LoRA, AdamW), 1 thread; tokens/s = median over rounds of the median step")
    hdr = ["config", "peftc", "ok", "peftc tok/s", "torch tok/s", "ok", "ratio (min..max)", "best ratio",
           "peftc GFLOP/s (% peak)", "torch GFLOP/s (% peak)", "peftc RSS MiB", "torch RSS MiB", "RSS ratio",
           "compile s", "loss0 peftc / torch"]
    table = [hdr]
    for c in configs:
        tk = (c, "torch", "train")
        backends = sorted({b for (cc, b, m) in by if cc == c and m == "train" and b != "torch"},
                          key=lambda b: (b != "jit", b))
        for b in backends or [None]:
            pk = (c, b, "train")
            pt, tt = agg(pk, "tokens_per_s_median"), agg(tk, "tokens_per_s_median")
            r = ratio(pk, tk)
            pg, tg = agg(pk, "gflops"), agg(tk, "gflops")
            pr, trr = agg(pk, "peak_rss_mib"), agg(tk, "peak_rss_mib")
            l0p, l0t = agg(pk, "loss_first"), agg(tk, "loss_first")
            br = best_ratio(pk, tk)
            table.append([
                c, b or "-", kept(pk), fmt(pt), fmt(tt), kept(tk),
                f"{r[0]:.2f}x ({r[1]:.2f}..{r[2]:.2f})" if r else "-", f"{br:.2f}x" if br else "-",
                f"{pg:.1f} ({100 * pg / peak:.0f}%)" if pg and peak else fmt(pg, "{:.1f}"),
                f"{tg:.1f} ({100 * tg / peak:.0f}%)" if tg and peak else fmt(tg, "{:.1f}"),
                fmt(pr), fmt(trr), f"{pr / trr:.2f}" if pr and trr else "-",
                fmt(agg(pk, "compile_s"), "{:.3f}"),
                f"{l0p:.5f} / {l0t:.5f}" if l0p is not None and l0t is not None else "-",
            ])
    out += render(table, "--markdown" in sys.argv)

    modes = ["base", "unmerged", "merged"]
    if any(m in modes for (_, _, m) in by):
        out.append("")
        out.append("Inference (forward only, B x S tokens, logits for every position), tokens/s, 1 thread")
        table = [["config", "side", "ok", "base", "unmerged", "merged", "merged/base", "unmerged/base",
                  "loss0 unmerged", "merged vs unmerged max abs diff"]]
        for c in configs:
            sides = sorted({b for (cc, b, m) in by if cc == c and m in modes}, key=lambda b: (b == "torch", b))
            for b in sides:
                v = {m: agg((c, b, m), "tokens_per_s_median") for m in modes}
                rm = ratio((c, b, "merged"), (c, b, "base"))
                ru = ratio((c, b, "unmerged"), (c, b, "base"))
                dif = agg((c, b, "merged"), "max_abs_diff_vs_unmerged")
                table.append([c, b, kept((c, b, "base")), fmt(v["base"]), fmt(v["unmerged"]), fmt(v["merged"]),
                              f"{rm[0]:.3f}" if rm else "-", f"{ru[0]:.3f}" if ru else "-",
                              fmt(agg((c, b, "unmerged"), "loss_first"), "{:.5f}"),
                              fmt(dif, "{:.2g}")])
            t = {m: agg((c, "torch", m), "tokens_per_s_median") for m in modes}
            p = {m: agg((c, "jit", m), "tokens_per_s_median") for m in modes}
            if all(t.values()) and all(p.values()):
                table.append([c, "jit/torch", "", *[f"{p[m] / t[m]:.2f}x" for m in modes], "", "", "", ""])
        out += render(table, "--markdown" in sys.argv)
    if errors:
        out.append("")
        out.append("Failed runs:")
        for e in errors:
            out.append(f"  {e.get('config')} {e.get('backend')} {e.get('mode', '')} round {e.get('round')}: "
                       f"{e.get('error')}")
    print("\n".join(out))
    return 0


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
