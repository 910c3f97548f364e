#!/usr/bin/env bash
# Mixed-adapter batches (issue 11): a batch of 8 rows, each on a different LoRA adapter (r 8,
# alpha 16, all seven projections), against the same batch on one adapter and on the base model,
# in peftc (one mixed graph: %adapter_ids gathers each row's A and B) and in Hugging Face PEFT
# (the adapter_names forward). 1 thread, forward + cross-entropy, medians. It measures; nothing is
# asserted. Ratios: peftc mixed / peftc one (goal >= 0.8 of the throughput), peftc mixed / PEFT
# mixed (goal >= 3x).
#
#   bash bench/multi_adapter.sh          # after `cmake --build build`; ~2 min
#
# Environment knobs: MODEL [d768: a random llama2.c checkpoint, dim 768, hidden 2048, 4 layers,
# 12 heads, vocab 512, written by bench/torch_peft_methods.py write-model; s260k: stories260K],
# B [8] S [64] STEPS [20] WARMUP [3] N [8 adapters] PYTHON [/work/venv-golden/bin/python]
# BASE_DTYPES ["f32 bf16"]: peftc's base (--base-dtype); PEFT runs in f32 and under bf16 autocast
# BUILD [build] OUT [$BUILD/bench/multi-<time>]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/work/venv-golden/bin/python}
MODEL=${MODEL:-d768}
B=${B:-8}; S=${S:-64}; STEPS=${STEPS:-20}; WARMUP=${WARMUP:-3}; N=${N:-8}
BASE_DTYPES=${BASE_DTYPES:-"f32 bf16"}
OUT=${OUT:-$ROOT/$BUILD/bench/multi-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
export OMP_NUM_THREADS=1
if [ "$MODEL" = s260k ]; then
    CKPT=$ROOT/data/stories260K/stories260K.bin
else
    CKPT=$OUT/d768.bin
    "$PYTHON" bench/torch_peft_methods.py write-model --out "$CKPT" > /dev/null
fi
"$PYTHON" bench/torch_multi_adapter.py --model "$CKPT" --out "$OUT/adapters" --adapters "$N" --batch "$B" --seq "$S" \
    --steps "$STEPS" --warmup "$WARMUP" --json | tee "$OUT/peft.jsonl"
"$PYTHON" bench/torch_multi_adapter.py --model "$CKPT" --out "$OUT/adapters-bf16" --adapters "$N" --batch "$B" --seq "$S" \
    --steps "$STEPS" --warmup "$WARMUP" --json --autocast bf16 | tee "$OUT/peft-bf16.jsonl"
for dt in $BASE_DTYPES; do
    "$BUILD/bench/bench_multi_adapter" --model "$CKPT" --adapters "$OUT/adapters" --batch "$B" --seq "$S" \
        --steps "$STEPS" --warmup "$WARMUP" --base-dtype "$dt" | tee "$OUT/peftc-$dt.jsonl"
done
"$PYTHON" - "$OUT" $BASE_DTYPES <<'PY'
import json, sys
out = sys.argv[1]
def load(f):
    return {r["mode"]: r for r in map(json.loads, open(f"{out}/{f}"))}
p, pb = load("peft.jsonl"), load("peft-bf16.jsonl")
t = lambda d, m: d[m]["tokens_per_s_median"]
print(f"tokens/s      PEFT:  one {t(p,'one'):.0f}  mixed {t(p,'mixed'):.0f}  base {t(p,'base'):.0f}")
print(f"        PEFT bf16 autocast:  one {t(pb,'one'):.0f}  mixed {t(pb,'mixed'):.0f}  base {t(pb,'base'):.0f}")
print(f"PEFT mixed / PEFT one: {t(p,'mixed')/t(p,'one'):.2f}x")
for dt in sys.argv[2:]:
    c = load(f"peftc-{dt}.jsonl")
    print(f"peftc ({dt} base): one {t(c,'one'):.0f}  mixed {t(c,'mixed'):.0f}  base {t(c,'base'):.0f}")
    print(f"  peftc mixed / peftc one: {t(c,'mixed')/t(c,'one'):.2f}x   (goal >= 0.8)")
    print(f"  peftc mixed / PEFT mixed: {t(c,'mixed')/t(p,'mixed'):.2f}x   (goal >= 3); / PEFT mixed under bf16 autocast: {t(c,'mixed')/t(pb,'mixed'):.2f}x")
    print(f"  loss (mixed) {c['mixed']['loss']:.6f}, PEFT {p['mixed']['loss']:.6f}")
    print(f"  executors compiled while switching adapters between mixed runs: {c['mixed']['executors_compiled']}")
PY
