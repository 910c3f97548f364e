#!/usr/bin/env bash
# peftc vs PyTorch: LoRA train step and inference throughput, 1 thread, interleaved rounds.
#
#   bash bench/run.sh                       # after `cmake --build build`
#   R=5 CONFIGS="mid large" bash bench/run.sh
#
# Environment knobs (defaults in brackets):
#   R [3]             rounds of train runs; each round runs peftc and torch back to back per config
#                     (the order alternates between rounds)
#   R_INFER [1]       rounds of inference runs (modes base, unmerged, merged in one process each)
#   CONFIGS ["stories260k mid large"]
#   BACKENDS ["jit"]  peftc backends for every config; the interpreter (ref) also runs on
#                     stories260k as a reference point (REF=0 turns that off)
#   PYTHON [python3]  the interpreter with torch (PyPI)
#   TORCH_MKL_AVX512 [0]  1 = LD_PRELOAD bench/mkl_avx512.c into torch (MKL's AVX-512 path on AMD)
#   BUILD [build]     the CMake build directory; PEFTC_LIB_DIR [$BUILD] where libpeftc_*.a are
#                     when bench_train has to be built by hand
#   OUT [$BUILD/bench]  results go to $OUT/results-<time>.jsonl (+ results-latest.jsonl)
# Steps (warm-up + timed) per config: STEPS_<config> / WARMUP_<config>, INFER_STEPS_<config>.
#
# peftc runs with OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive. torch_llama_lora.py re-executes
# itself with 1 thread everywhere (OMP/MKL/OPENBLAS), OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset
# and GLIBC_TUNABLES raising malloc's mmap/trim thresholds (toolchain.md §0.3).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
OUT=${OUT:-$BUILD/bench}
R=${R:-3}
R_INFER=${R_INFER:-1}
CONFIGS=${CONFIGS:-"stories260k mid large"}
BACKENDS=${BACKENDS:-jit}
REF=${REF:-1}
PYTHON=${PYTHON:-python3}
TORCH_MKL_AVX512=${TORCH_MKL_AVX512:-0}
PEFTC_LIB_DIR=${PEFTC_LIB_DIR:-$BUILD}
MODEL=$ROOT/data/stories260K/stories260K.bin

STEPS_stories260k=${STEPS_stories260k:-40};  WARMUP_stories260k=${WARMUP_stories260k:-5}
STEPS_mid=${STEPS_mid:-15};                  WARMUP_mid=${WARMUP_mid:-3}
STEPS_large=${STEPS_large:-8};               WARMUP_large=${WARMUP_large:-2}
REF_STEPS=${REF_STEPS:-10};                  REF_WARMUP=${REF_WARMUP:-2}
INFER_STEPS_stories260k=${INFER_STEPS_stories260k:-50}
INFER_STEPS_mid=${INFER_STEPS_mid:-20}
INFER_STEPS_large=${INFER_STEPS_large:-8}

mkdir -p "$OUT"
STAMP=$(date +%Y%m%d-%H%M%S)
RES=$OUT/results-$STAMP.jsonl
: > "$RES"
ln -sf "$(basename "$RES")" "$OUT/results-latest.jsonl"
log() { echo "[bench] $*" >&2; }

# ---- tools ----
gcc -std=c17 -O2 -march=native -Wall -Wextra -Werror -D_GNU_SOURCE bench/fma_peak.c -o "$OUT/fma_peak" || exit 1
BT=$BUILD/bench/bench_train
if [[ -x $BT && $BT -nt bench/bench_train.c && $BT -nt $PEFTC_LIB_DIR/libpeftc_compiler.a ]]; then
    log "bench_train: $BT (CMake)"
else
    BT=$OUT/bench_train_manual
    log "bench_train: building $BT by hand against $PEFTC_LIB_DIR/libpeftc_{compiler,runtime}.a"
    gcc -std=c17 -O2 -g -Wall -Wextra -Werror -D_GNU_SOURCE -I. -Iinclude bench/bench_train.c \
        "$PEFTC_LIB_DIR/libpeftc_compiler.a" "$PEFTC_LIB_DIR/libpeftc_runtime.a" \
        -L"$(llvm-config-19 --libdir)" -lLLVM-19 -ldnnl -lffi -ljansson -lpcre2-8 -lm -o "$BT" || exit 1
fi
TORCH_ARGS=()
if [[ $TORCH_MKL_AVX512 == 1 ]]; then
    gcc -std=c17 -O2 -Wall -Wextra -Werror -shared -fPIC bench/mkl_avx512.c -o "$OUT/libmkl_avx512.so" || exit 1
    TORCH_ARGS+=(--mkl-avx512 "$OUT/libmkl_avx512.so")
fi
HAVE_TORCH=1
if ! "$PYTHON" -c "import torch, numpy" 2>/dev/null; then
    log "no torch/numpy for $PYTHON: PyTorch runs skipped (pip install torch numpy)"
    HAVE_TORCH=0
fi

# ---- helpers: run one command, tag its JSON lines with the round and the lower of the FMA
# calibrations taken right before and right after it (toolchain.md §0.4: the report drops runs
# whose calibration or CPU/wall ratio shows contention), record failures ----
calibrate() { "$OUT/fma_peak" --json --reps 3 | sed -n 's/.*"gflops_median":\([0-9.]*\).*/\1/p'; }
record() { # round label cmd...
    local round=$1 label=$2 fma=null fma2=null
    shift 2
    [[ $label != fma_peak ]] && fma=$(calibrate)
    local tmp rc=0
    tmp=$(mktemp)
    "$@" > "$tmp" 2> "$tmp.err" || rc=$?
    [[ $label != fma_peak ]] && fma2=$(calibrate)
    if [[ $rc == 0 ]]; then
        fma=$(awk -v a="${fma:-0}" -v b="${fma2:-0}" 'BEGIN{print (a < b ? a : b)}')
        grep '^{' "$tmp" | sed "s/^{/{\"round\":$round,\"fma_gflops\":$fma,/" >> "$RES"
        grep '^{' "$tmp" | "$PYTHON" -c '
import json, sys
for l in sys.stdin:
    d = json.loads(l)
    if d.get("bench") == "fma_peak":
        print("    fma_peak: zmm %.1f GFLOP/s, ymm %.1f" % (d["gflops_median"], d["gflops_ymm_median"]))
    else:
        print("    %-6s %-11s %-8s %10.0f tok/s  %8.2f ms/step  %6.1f GFLOP/s  RSS %6.0f MiB  loss0 %.6f  (FMA %s, cpu/wall %.2f)" % (
            d["backend"], d["config"], d["mode"], d["tokens_per_s_median"], d["ms_per_step_median"],
            d["gflops"], d["peak_rss_mib"], d["loss_first"], sys.argv[1], d.get("cpu_util", 0)))' "$fma" >&2
    else
        local msg
        msg=$(tail -n 3 "$tmp.err" | tr '\n"\\' '   ' | cut -c1-300)
        log "FAILED ($label): $msg"
        printf '{"round":%s,"error":"%s","label":"%s"}\n' "$round" "$msg" "$label" >> "$RES"
    fi
    rm -f "$tmp" "$tmp.err"
}
peftc() { env OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive "$BT" --model "$MODEL" --json "$@"; }
torchrun() { "$PYTHON" bench/torch_llama_lora.py --model "$MODEL" --json "${TORCH_ARGS[@]}" "$@"; }

# ---- machine ----
CPU=$(awk -F: '/^model name/{m=$2} /^cpu family/{f=$2} /^model\t/{n=$2} END{gsub(/^ /,"",m); printf "%s family%s model%s", m, f, n}' /proc/cpuinfo)
printf '{"bench":"machine","cpu":"%s","nproc":%s,"date":"%s"}\n' "$CPU" "$(nproc)" "$STAMP" >> "$RES"
log "results: $RES  (R=$R, R_INFER=$R_INFER, configs: $CONFIGS)"
log "fma_peak (start)"
record 0 fma_peak "$OUT/fma_peak" --json

T0=$SECONDS
for ((r = 1; r <= R; r++)); do
    for c in $CONFIGS; do
        s=STEPS_$c w=WARMUP_$c
        runs=()
        for b in $BACKENDS; do runs+=("peftc $b"); done
        [[ $HAVE_TORCH == 1 ]] && runs+=("torch")
        if (( r % 2 == 0 )); then # alternate who goes first
            rev=(); for ((i = ${#runs[@]} - 1; i >= 0; i--)); do rev+=("${runs[i]}"); done; runs=("${rev[@]}")
        fi
        log "round $r/$R: $c (${!w} warm-up + ${!s} timed steps)"
        for run in "${runs[@]}"; do
            if [[ $run == torch ]]; then
                record "$r" "torch $c train" torchrun --config "$c" --steps "${!s}" --warmup "${!w}"
            else
                b=${run#peftc }
                record "$r" "peftc $b $c train" peftc --config "$c" --backend "$b" --steps "${!s}" --warmup "${!w}"
            fi
        done
        if [[ $REF == 1 && $c == stories260k && " $BACKENDS " != *" ref "* ]]; then
            record "$r" "peftc ref $c train" peftc --config "$c" --backend ref --steps "$REF_STEPS" --warmup "$REF_WARMUP"
        fi
    done
done
for ((r = 1; r <= R_INFER; r++)); do
    for c in $CONFIGS; do
        s=INFER_STEPS_$c w=WARMUP_$c
        log "inference round $r/$R_INFER: $c (${!w} warm-up + ${!s} timed forwards per mode)"
        for b in $BACKENDS; do
            record "$r" "peftc $b $c infer" peftc --config "$c" --backend "$b" --steps "${!s}" --warmup "${!w}" --infer
        done
        [[ $HAVE_TORCH == 1 ]] && record "$r" "torch $c infer" torchrun --config "$c" --steps "${!s}" --warmup "${!w}" --infer
    done
done
log "fma_peak (end)"
record 0 fma_peak "$OUT/fma_peak" --json
log "done in $((SECONDS - T0)) s"
echo
"$PYTHON" bench/report.py "$RES"
