import os
import shutil
import subprocess
import lit.formats

config.name = "peftc"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".pir", ".test"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(os.path.dirname(config.peftc_bin), "tests", "lit-out")
config.excludes = ["Inputs"]
config.substitutions.append(("%peftc", config.peftc_bin))
config.substitutions.append(("FileCheck", config.filecheck))
config.substitutions.append(("%srcroot", config.peftc_src))
config.substitutions.append(("%python", config.python))
config.environment["ASAN_OPTIONS"] = os.environ.get("ASAN_OPTIONS", "")
if shutil.which("strace"):
    config.available_features.add("strace")

# "asan": the binary runs under AddressSanitizer, which reserves terabytes of address space, so
# tests that cap it (prlimit --as) cannot run there
try:
    if "libasan" in subprocess.run(["ldd", config.peftc_bin], capture_output=True, text=True).stdout:
        config.available_features.add("asan")
except OSError:
    pass
# "userns": `unshare --user` works (a user namespace maps us to nobody: no root privileges, so
# permission checks apply even when the tests run as root)
if shutil.which("unshare") and subprocess.run(["unshare", "--user", "true"], capture_output=True).returncode == 0:
    config.available_features.add("userns")
# "bf16": the CPU multiplies bf16 natively (AVX512_BF16 or AMX-BF16), so --base-dtype bf16 takes
# effect (elsewhere it falls back to f32 with a warning, and compile refuses it)
try:
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    if "avx512_bf16" in flags and "avx512f" in flags or "amx_bf16" in flags:
        config.available_features.add("bf16")
except OSError:
    pass
# "smollm2": the real SmolLM2-135M GGUF is there (scripts/fetch_models.py; CI sets it)
if os.environ.get("PEFTC_SMOLLM2_GGUF") and os.path.exists(os.environ["PEFTC_SMOLLM2_GGUF"]):
    config.available_features.add("smollm2")
    config.substitutions.append(("%smollm2", os.environ["PEFTC_SMOLLM2_GGUF"]))
