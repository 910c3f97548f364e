"""What the benchmarked CPU kernels run on: PyTorch's (imported by torch_llama_lora.py) and peftc's.

blas_report(): the BLAS torch links, its code path (MKL's verbose banner on a 64x64 probe), the
ATen CPU capability (the vectorized kernels' ISA), LD_PRELOAD and the thread environment.

matmul_trace(fn): runs fn once with MKL and oneDNN verbose on and counts the GEMM calls of that
call by library and kernel (e.g. "mkl SGEMM", "onednn brg_matmul:avx10_1_512_amx"). The benchmark
calls it on its last warm-up step, so the counts are those of the real step, compiled or not.
Verbose output goes to fd 1, which is redirected to a temporary file meanwhile.

isa_summary(): one line naming the ISA path of a torch run, for the JSON field "isa" and the table.

As a program (run.sh), it summarises the oneDNN verbose output of one untimed bench_train step:
    ONEDNN_VERBOSE=1 bench_train ... --steps 1 --warmup 0 | python3 isa_path.py peftc CONFIG BACKEND DTYPE
prints one JSON line {"bench":"peftc_isa", ..., "onednn_isa": <oneDNN's ISA line>, "isa": "step GEMMs: ..."}.
"""
import ctypes
import json
import os
import re
import sys
import tempfile
from collections import Counter


def capture_fd1(fn):
    """run fn() with fd 1 (C and Python stdout) redirected; returns (fn's value, captured text)"""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 1)
        try:
            value = fn()
            sys.stdout.flush()
            libc.fflush(None)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        tmp.seek(0)
        return value, tmp.read().decode(errors="replace")


def blas_report(torch):
    cfg = torch.__config__.show()
    m = re.search(r"BLAS_INFO=(\w+)", cfg)
    rep = {"torch": torch.__version__, "blas": m.group(1) if m else "?",
           "cpu_capability": getattr(torch.backends.cpu, "get_cpu_capability", lambda: "?")(),
           "mkldnn_bf16": bool(getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)())}
    try:
        import threadpoolctl
        info = threadpoolctl.threadpool_info()
        rep["threadpools"] = [{k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
                              for d in info]
    except ImportError:
        pass
    if rep["blas"] == "mkl":  # MKL names its code path in the verbose banner

        def probe():
            with torch.backends.mkl.verbose(torch.backends.mkl.VERBOSE_ON):
                torch.mm(torch.ones(64, 64), torch.ones(64, 64))

        _, text = capture_fd1(probe)
        m = re.search(r"architecture (.*?), Lnx", text)
        rep["blas_kernel"] = m.group(1) if m else text.strip().splitlines()[0] if text.strip() else "?"
    elif "threadpools" in rep:
        arch = [d["architecture"] for d in rep["threadpools"] if d.get("internal_api") == "openblas"]
        rep["blas_kernel"] = arch[0] if arch else "?"
    rep["ld_preload"] = os.environ.get("LD_PRELOAD", "")
    rep["env"] = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                 "OMP_WAIT_POLICY", "GLIBC_TUNABLES", "OPENBLAS_CORETYPE",
                                                 "OPENBLAS_L2_SIZE")}
    return rep


def matmul_trace(torch, fn):
    """(fn's value, {"mkl SGEMM": n, "onednn brg_matmul:...": m, ...}, oneDNN's ISA line or None)"""

    def run():
        with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON), \
                torch.backends.mkl.verbose(torch.backends.mkl.VERBOSE_ON):
            return fn()

    value, text = capture_fd1(run)
    lines = text.splitlines()
    calls = Counter("mkl " + l.split()[1].split("(")[0] for l in lines
                    if l.startswith("MKL_VERBOSE ") and "(" in l and "oneMKL" not in l)
    dnnl, isa = onednn_calls(lines)
    for k, v in dnnl.items():
        calls["onednn " + k] += v  # e.g. "onednn matmul brg_matmul:avx10_1_512_amx"
    return value, dict(calls), isa


def isa_summary(rep, calls, shim):
    """e.g. 'ATen AVX512, MKL AVX-512 (no shim); GEMMs: mkl SGEMM x61, onednn brg_matmul:avx10_1_512_amx x36 (AMX)'"""
    kernel = rep.get("blas_kernel", "?")
    short = ("AVX-512" if "AVX-512" in kernel else "AVX2" if "AVX2" in kernel
             else "generic" if "Intel(R) Architecture processors" in kernel else kernel[:40])
    s = f"ATen {rep.get('cpu_capability', '?')}, {rep.get('blas', '?').upper()} {short} ({'shim' if shim else 'no shim'})"
    if calls is None:
        return s + "; GEMMs not traced"
    gemms = {k.replace(" matmul ", " "): v for k, v in calls.items()
             if k.startswith("mkl ") or " matmul " in k or " inner_product " in k}
    s += "; GEMMs: " + (", ".join(f"{k} x{v}" for k, v in sorted(gemms.items())) or "none seen by MKL/oneDNN")
    if any("amx" in k for k in gemms):
        s += " (AMX)"
    return s


def onednn_calls(lines):
    """oneDNN verbose lines (v2 'onednn_verbose,exec,cpu,matmul,brg:avx512_core,...' or v3 with
    'v1,primitive,') -> ({"matmul brg:avx512_core": n, ...}, the ISA info line or None)"""
    calls, isa = Counter(), None
    for line in lines:
        if not line.startswith("onednn_verbose,"):
            continue
        f = line.rstrip("\n").split(",")
        if len(f) > 1 and f[1] == "v1":
            f = f[:1] + f[2:]
        if "isa:" in line:
            isa = line.split("isa:", 1)[1].strip()
        elif len(f) > 5 and f[1] == "primitive" and f[2] == "exec":
            calls[f"{f[4]} {f[5]}"] += 1
        elif len(f) > 4 and f[1] == "exec":
            calls[f"{f[3]} {f[4]}"] += 1
    return dict(calls), isa


def peftc_main(argv):
    config, backend, dtype = argv
    calls, isa = onednn_calls(sys.stdin)
    gemm = {k: v for k, v in calls.items() if k.startswith(("matmul ", "inner_product "))}
    text = ("GEMMs: " + ", ".join(f"onednn {k.replace('matmul ', '')} x{v}" for k, v in sorted(gemm.items()))
            if calls else "no oneDNN primitive in the step")
    if any("amx" in k for k in gemm):
        text += " (AMX)"
    print(json.dumps({"bench": "peftc_isa", "config": config, "backend": backend, "base_dtype": dtype,
                      "step_primitives": calls, "onednn_isa": isa, "isa": text}))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "peftc":
        sys.exit(peftc_main(sys.argv[2:]))
    print(__doc__, file=sys.stderr)
    sys.exit(2)
