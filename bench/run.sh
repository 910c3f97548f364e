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
#   PEFTC_BASE_DTYPES ["f32"]  peftc base-weight dtypes; X != f32 passes `--base-dtype X` to bench_train
#                     (f32 passes nothing) and labels the lines backend-X (e.g. jit-bf16)
#   PYTHON [/work/venv-golden/bin/python if present, else python3]  the interpreter with torch (PyPI)
#   TORCH_MODES [eager eager-avx512 compile compile-bf16 eager-bf16]  the PyTorch baselines, each a
#                     torch_llama_lora.py run per config and round (train and infer):
#                       eager         plain PyTorch as it installs
#                       eager-avx512  the same with LD_PRELOAD=bench/mkl_avx512.c (MKL's AVX-512 path on
#                                     AMD); in the default only on AMD CPUs with avx512f (Intel's MKL
#                                     takes AVX-512 without it)
#                       compile       torch.compile (inductor), f32
#                       compile-bf16  torch.compile + torch.autocast("cpu", bfloat16)
#                       eager-bf16    eager + torch.autocast("cpu", bfloat16)
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
if [[ -z ${PYTHON:-} ]]; then
    PYTHON=python3
    [[ -x /work/venv-golden/bin/python ]] && PYTHON=/work/venv-golden/bin/python
fi
PEFTC_BASE_DTYPES=${PEFTC_BASE_DTYPES:-f32}
# MKL inside PyPI torch picks its code path by vendor: AVX-512 on Intel, a generic path on AMD
# unless the shim is preloaded. So the shim run is a baseline of its own only on AMD + avx512f.
CPU_VENDOR=$(awk -F': ' '/^vendor_id/{print $2; exit}' /proc/cpuinfo)
CPU_AVX512F=0
grep -qw avx512f /proc/cpuinfo && CPU_AVX512F=1
if [[ -z ${TORCH_MODES:-} ]]; then
    TORCH_MODES="eager"
    [[ $CPU_VENDOR == AuthenticAMD && $CPU_AVX512F == 1 ]] && TORCH_MODES+=" eager-avx512"
    TORCH_MODES+=" compile compile-bf16 eager-bf16"
fi
for m in $TORCH_MODES; do
    case $m in eager|eager-avx512|compile|compile-bf16|eager-bf16) ;;
    *) echo "run.sh: TORCH_MODES: unknown mode '$m' (eager eager-avx512 compile compile-bf16 eager-bf16)" >&2; exit 1 ;;
    esac
done
for d in $PEFTC_BASE_DTYPES; do
    case $d in f32|bf16) ;; *) echo "run.sh: PEFTC_BASE_DTYPES: unknown dtype '$d' (f32 bf16)" >&2; exit 1 ;; esac
done
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
        -L"$(llvm-config-19 --libdir)" -lLLVM-19 -ldnnl -lffi -ljansson -lpcre2-8 -licuuc -licudata -lm -o "$BT" || exit 1
fi
if [[ " $TORCH_MODES " == *" eager-avx512 "* ]]; then
    gcc -std=c17 -O2 -Wall -Wextra -Werror -shared -fPIC bench/mkl_avx512.c -o "$OUT/libmkl_avx512.so" || exit 1
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
    local round=$1 label=$2 fma=null fma2=null tag=${TAG:-}
    shift 2
    [[ $label != fma_peak ]] && fma=$(calibrate)
    local tmp rc=0
    tmp=$(mktemp)
    "$@" > "$tmp" 2> "$tmp.err" || rc=$?
    [[ $label != fma_peak ]] && fma2=$(calibrate)
    if [[ $rc == 0 ]]; then
        fma=$(awk -v a="${fma:-0}" -v b="${fma2:-0}" 'BEGIN{print (a < b ? a : b)}')
        grep '^{' "$tmp" | sed "s/^{/{\"round\":$round,\"fma_gflops\":$fma,$tag/" >> "$RES"
        grep '^{' "$tmp" | sed "s/^{/{$tag/" | "$PYTHON" -c '
import json, sys
for l in sys.stdin:
    d = json.loads(l)
    if d.get("bench") == "fma_peak":
        print("    fma_peak: zmm %.1f GFLOP/s, ymm %.1f" % (d["gflops_median"], d["gflops_ymm_median"]))
    else:
        side = d["backend"] + ("-" + d["base_dtype"] if d.get("base_dtype", "f32") != "f32" else "")
        cs = d.get("compile_s")
        print("    %-18s %-11s %-8s %10.0f tok/s  %8.2f ms/step  %6.1f GFLOP/s  RSS %6.0f MiB  loss0 %.6f  compile %s  (FMA %s, cpu/wall %.2f)%s" % (
            side, d["config"], d["mode"], d["tokens_per_s_median"], d["ms_per_step_median"],
            d["gflops"], d["peak_rss_mib"], d["loss_first"], "-" if cs is None else "%.2f s" % cs, sys.argv[1],
            d.get("cpu_util", 0), ("\n      isa: " + d["isa"]) if d.get("isa") else ""))' "$fma" >&2
    else
        local msg
        msg=$(tail -n 3 "$tmp.err" | tr '\n"\\' '   ' | cut -c1-300)
        log "FAILED ($label): $msg"
        printf '{"round":%s,"error":"%s","label":"%s"}\n' "$round" "$msg" "$label" >> "$RES"
    fi
    rm -f "$tmp" "$tmp.err"
}
peftc() { env OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive "$BT" --model "$MODEL" --json "$@"; }
torchrun() { # mode args...
    local m=$1 a=()
    shift
    [[ $m == *avx512* ]] && a+=(--mkl-avx512 "$OUT/libmkl_avx512.so")
    [[ $m == compile* ]] && a+=(--compile)
    [[ $m == *-bf16 ]] && a+=(--autocast bf16)
    "$PYTHON" bench/torch_llama_lora.py --model "$MODEL" --json "${a[@]}" "$@"
}
peftc_dtype() { # dtype args...: --base-dtype only when not f32 (bench_train may not know the flag yet)
    local d=$1
    shift
    if [[ $d == f32 ]]; then peftc "$@"; else peftc --base-dtype "$d" "$@"; fi
}

# ---- machine ----
CPU=$(awk -F: '/^model name/{m=$2} /^cpu family/{f=$2} /^model\t/{n=$2} END{gsub(/^ /,"",m); printf "%s family%s model%s", m, f, n}' /proc/cpuinfo)
ISA_FLAGS=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -xE 'avx2|avx512f|avx512_bf16|amx_tile|amx_bf16' | paste -sd' ')
printf '{"bench":"machine","cpu":"%s","vendor":"%s","isa_flags":"%s","nproc":%s,"date":"%s","torch_modes":"%s","peftc_base_dtypes":"%s"}\n' \
    "$CPU" "$CPU_VENDOR" "$ISA_FLAGS" "$(getconf _NPROCESSORS_ONLN)" "$STAMP" "$TORCH_MODES" "$PEFTC_BASE_DTYPES" >> "$RES"
log "results: $RES  (R=$R, R_INFER=$R_INFER, configs: $CONFIGS)"
log "peftc base dtypes: $PEFTC_BASE_DTYPES; torch modes: $TORCH_MODES ($PYTHON)"
if [[ $CPU_AVX512F == 1 && $CPU_VENDOR == GenuineIntel ]]; then
    log "CPU $CPU_VENDOR with avx512f: MKL takes its AVX-512 path by itself, the MKL shim (eager-avx512) is not needed"
elif [[ $CPU_AVX512F == 1 ]]; then
    log "CPU $CPU_VENDOR with avx512f: eager-avx512 preloads bench/mkl_avx512.c so MKL takes its AVX-512 path"
fi
# which oneDNN kernels peftc's step calls: one untimed step per config, backend and dtype with
# ONEDNN_VERBOSE=1 (bench/isa_path.py summarises it; verbose would slow the timed runs)
for c in $CONFIGS; do
    for b in $BACKENDS; do
        for d in $PEFTC_BASE_DTYPES; do
            a=(); [[ $d != f32 ]] && a=(--base-dtype "$d")
            if v=$(env ONEDNN_VERBOSE=1 OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive "$BT" --model "$MODEL" "${a[@]}" \
                    --config "$c" --backend "$b" --steps 1 --warmup 0 2>/dev/null); then
                printf '%s\n' "$v" | "$PYTHON" bench/isa_path.py peftc "$c" "$b" "$d" >> "$RES"
            else
                log "peftc ISA probe failed: $c $b $d (bench_train exit $?)"
            fi
        done
    done
done
log "fma_peak (start)"
record 0 fma_peak "$OUT/fma_peak" --json

T0=$SECONDS
for ((r = 1; r <= R; r++)); do
    for c in $CONFIGS; do
        s=STEPS_$c w=WARMUP_$c
        runs=()
        for b in $BACKENDS; do for d in $PEFTC_BASE_DTYPES; do runs+=("peftc $b $d"); done; done
        if [[ $HAVE_TORCH == 1 ]]; then for m in $TORCH_MODES; do runs+=("torch $m"); done; fi
        if (( r % 2 == 0 )); then # alternate who goes first
            rev=(); for ((i = ${#runs[@]} - 1; i >= 0; i--)); do rev+=("${runs[i]}"); done; runs=("${rev[@]}")
        fi
        log "round $r/$R: $c (${!w} warm-up + ${!s} timed steps)"
        for run in "${runs[@]}"; do
            read -r side b d <<< "$run"
            if [[ $side == torch ]]; then
                record "$r" "torch-$b $c train" torchrun "$b" --config "$c" --steps "${!s}" --warmup "${!w}"
            else
                TAG="\"base_dtype\":\"$d\"," record "$r" "peftc $b $d $c train" \
                    peftc_dtype "$d" --config "$c" --backend "$b" --steps "${!s}" --warmup "${!w}"
            fi
        done
        if [[ $REF == 1 && $c == stories260k && " $BACKENDS " != *" ref "* ]]; then
            TAG='"base_dtype":"f32",' record "$r" "peftc ref $c train" \
                peftc --config "$c" --backend ref --steps "$REF_STEPS" --warmup "$REF_WARMUP"
        fi
    done
done
for ((r = 1; r <= R_INFER; r++)); do
    for c in $CONFIGS; do
        s=INFER_STEPS_$c w=WARMUP_$c
        log "inference round $r/$R_INFER: $c (${!w} warm-up + ${!s} timed forwards per mode)"
        for b in $BACKENDS; do
            for d in $PEFTC_BASE_DTYPES; do
                TAG="\"base_dtype\":\"$d\"," record "$r" "peftc $b $d $c infer" \
                    peftc_dtype "$d" --config "$c" --backend "$b" --steps "${!s}" --warmup "${!w}" --infer
            done
        done
        if [[ $HAVE_TORCH == 1 ]]; then
            for m in $TORCH_MODES; do
                record "$r" "torch-$m $c infer" torchrun "$m" --config "$c" --steps "${!s}" --warmup "${!w}" --infer
            done
        fi
    done
done
log "fma_peak (end)"
record 0 fma_peak "$OUT/fma_peak" --json
log "done in $((SECONDS - T0)) s"
echo
"$PYTHON" bench/report.py "$RES"
