#!/usr/bin/env bash
# peftc (f32 and bf16 base) against PyTorch + PEFT (eager and torch.compile, f32 and bf16
# autocast) on the two real models, 1 thread, interleaved rounds, medians. It measures; nothing is asserted. See bench/README.md.
#
#   eval "$(python3 scripts/fetch_models.py --env)"   # PEFTC_SMOLLM2_GGUF, PEFTC_MINILM_DIR
#   bash bench/real_models.sh                          # after `cmake --build build`; ~10 min
#   R=1 MODELS=minilm bash bench/real_models.sh
#
# What one train step is, on every side:
#   smollm2  SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to f32), LoRA r 8 / alpha 16 /
#            dropout 0 on q_proj, v_proj (CAUSAL_LM), batch B_smollm2 x S_smollm2 tokens of
#            tinyshakespeare (random windows, the model's tokenizer), cross-entropy on all tokens
#   minilm   all-MiniLM-L6-v2 + a 77-way classifier (SEQ_CLS: PEFT's modules_to_save), LoRA r 8 /
#            alpha 16 / dropout 0.1 on query, value, batch B_minilm examples of exactly S_minilm
#            tokens (400-character chunks of tinyshakespeare, label = chunk index % 77: every
#            example is longer than S tokens, so no side pads and peftc's bucket is always S)
#   both     AdamW lr 1e-3 (constant), betas 0.9/0.999, eps 1e-8, weight decay 0, the global
#            gradient norm clipped to 1.0
#
# Environment knobs (defaults in brackets):
#   R [2]                rounds; a round runs every system on every model (the order of the
#                        systems alternates between rounds)
#   MODELS ["smollm2 minilm"]
#   SYSTEMS ["peftc peftc-bf16 eager compile eager-bf16 compile-bf16"]
#                        peftc-bf16 = peftc train --base-dtype bf16 (frozen base in bf16, adapters,
#                        gradients, AdamW f32); eager-bf16 / compile-bf16 = the torch script with
#                        --autocast bf16 (torch.autocast("cpu", bfloat16) around forward + loss;
#                        weights, LoRA params and AdamW f32)
#   B_smollm2 [4] S_smollm2 [128] STEPS_smollm2 [8] WARMUP_smollm2 [2]
#   B_minilm [32] S_minilm [64]   STEPS_minilm [12] WARMUP_minilm [2]
#                        every system runs WARMUP steps (torch.compile compiles in the first),
#                        then STEPS timed ones; tokens/s = B*S*STEPS / their time
#   PYTHON [/work/venv-golden/bin/python]  torch + transformers + peft + gguf
#   BUILD [build]        where peftc is (relative to the repository, or absolute);
#                        OUT [$BUILD/bench]: results go to
#                        $OUT/real-results-<time>.jsonl (+ real-results-latest.jsonl)
#
# peftc: `peftc train` with stderr on a pseudo-terminal, where it draws a progress line after
# every step (--json would turn that line off); the step time is the gap between consecutive
# lines (torch_real_models.py peftc). It runs WARMUP + STEPS + 1 steps: the last one is
# followed by the final evaluation and is dropped. Its own run-long rate (first step included,
# compilation and the initial evaluation not; the number --json prints as tokens_per_s /
# examples_per_s) is reported beside it. Peak RSS is the child's ru_maxrss (= /usr/bin/time %M).
# PyTorch: torch_real_models.py smollm2|minilm --mode eager|compile [--autocast bf16], one
# process per run; its peak RSS is that process's ru_maxrss.
# 1 thread everywhere: OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive and --threads 1 for peftc;
# the torch script re-executes itself with OMP/MKL/OPENBLAS_NUM_THREADS=1,
# TORCHINDUCTOR_COMPILE_THREADS=1 and the GLIBC_TUNABLES of bench/torch_llama_lora.py, and calls
# torch.set_num_threads(1).
# "% of FMA peak": the matmul FLOPs of a step (torch_real_models.py flop_count: forward of
# every linear and of attention, dX only where a LoRA gradient needs it, the LoRA products; the
# same count for every system) per second, over the median of bench/fma_peak.c's calibrations,
# one before every run.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
BUILD=${BUILD:-build}
[[ $BUILD == /* ]] || BUILD=$ROOT/$BUILD
PEFTC=$BUILD/peftc
PYTHON=${PYTHON:-/work/venv-golden/bin/python}
R=${R:-2}
MODELS=${MODELS:-"smollm2 minilm"}
SYSTEMS=${SYSTEMS:-"peftc peftc-bf16 eager compile eager-bf16 compile-bf16"}
B_smollm2=${B_smollm2:-4};  S_smollm2=${S_smollm2:-128}; STEPS_smollm2=${STEPS_smollm2:-8}; WARMUP_smollm2=${WARMUP_smollm2:-2}
B_minilm=${B_minilm:-32};   S_minilm=${S_minilm:-64};    STEPS_minilm=${STEPS_minilm:-12};   WARMUP_minilm=${WARMUP_minilm:-2}
OUT=${OUT:-$BUILD/bench}
TEXT=$ROOT/data/tinyshakespeare/input.txt
PY=$ROOT/bench/torch_real_models.py

log() { echo "[real] $*" >&2; }
for s in $SYSTEMS; do
    case $s in
        peftc | peftc-bf16 | eager | compile | eager-bf16 | compile-bf16) ;;
        *) log "unknown system '$s' in SYSTEMS (known: peftc peftc-bf16 eager compile eager-bf16 compile-bf16)"; exit 1 ;;
    esac
done
for m in $MODELS; do
    [[ $m == smollm2 || $m == minilm ]] || { log "unknown model '$m' in MODELS (known: smollm2 minilm)"; exit 1; }
done
[[ -x $PEFTC ]] || { log "no $PEFTC: cmake --build $BUILD"; exit 1; }
"$PYTHON" -c "import torch, transformers, peft, gguf" 2>/dev/null ||
    { log "$PYTHON lacks torch/transformers/peft/gguf"; exit 1; }
if [[ -z ${PEFTC_SMOLLM2_GGUF:-} || -z ${PEFTC_MINILM_DIR:-} ]]; then
    eval "$(python3 scripts/fetch_models.py --env)" || { log "scripts/fetch_models.py failed"; exit 1; }
fi
[[ -f ${PEFTC_SMOLLM2_GGUF:-} && -d ${PEFTC_MINILM_DIR:-} ]] ||
    { log "no models (PEFTC_SMOLLM2_GGUF, PEFTC_MINILM_DIR): see scripts/fetch_models.py"; exit 1; }

STAMP=$(date +%Y%m%d-%H%M%S)
WORK=$OUT/real-$STAMP
mkdir -p "$WORK"
RES=$OUT/real-results-$STAMP.jsonl
: > "$RES"
ln -sf "$(basename "$RES")" "$OUT/real-results-latest.jsonl"
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

# ---- inputs: the LoRA config of SmolLM2, the classification data and its labels ----
echo '{"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}' \
    > "$WORK/smollm2_lora.json"
echo '{"peft_type": "LORA", "task_type": "SEQ_CLS", "r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "target_modules": ["query", "value"]}' \
    > "$WORK/minilm_lora.json"
"$PYTHON" "$PY" cls-data --text "$TEXT" --out "$WORK/cls.jsonl" --labels-out "$WORK/labels.json" --chars 400 --labels 77 ||
    exit 1

# ---- the FMA peak ----
gcc -std=c17 -O2 -march=native -Wall -Wextra -Werror -D_GNU_SOURCE bench/fma_peak.c -o "$WORK/fma_peak" || exit 1
fma() { # round -> one calibration line in $RES, its GFLOP/s on stdout
    local line
    line=$("$WORK/fma_peak" --json --reps 3)
    echo "{\"round\":$1,${line#\{}" >> "$RES"
    echo "$line" | sed -n 's/.*"gflops_median":\([0-9.]*\).*/\1/p'
}

CPU=$(sed -n 's/^model name\t*: *//p' /proc/cpuinfo | head -n 1)
FAM=$(sed -n 's/^cpu family\t*: *//p' /proc/cpuinfo | head -n 1)
MOD=$(sed -n 's/^model\t*: *//p' /proc/cpuinfo | head -n 1)
VERS=$("$PYTHON" -c 'import torch, transformers, peft; from importlib.metadata import version as v
print("torch %s, transformers %s, peft %s, gguf %s" % (torch.__version__, transformers.__version__, peft.__version__, v("gguf")))' 2>/dev/null)
REV=$(git rev-parse --short HEAD 2>/dev/null || echo "?")$(git diff --quiet HEAD -- . 2>/dev/null || echo "+dirty")
printf '{"bench":"machine","cpu":"%s family %s model %s","nproc":%s,"date":"%s","loadavg":"%s","versions":"%s","peftc":"%s"}\n' \
    "$CPU" "$FAM" "$MOD" "$(getconf _NPROCESSORS_ONLN)" "$STAMP" "$(cut -d' ' -f1-3 /proc/loadavg)" "$VERS" "$REV" >> "$RES"
log "results: $RES  (R=$R, models: $MODELS, systems: $SYSTEMS; $VERS; peftc $REV)"

# ---- one run: tag its JSON line with the round and the calibration taken right before it ----
run() { # round model system
    local r=$1 m=$2 s=$3 b s_ w n fmag tmp rc=0
    b=B_$m s_=S_$m w=WARMUP_$m n=STEPS_$m
    b=${!b} s_=${!s_} w=${!w} n=${!n}
    fmag=$(fma "$r")
    tmp=$WORK/run.out
    local tag="{\"bench\":\"real\",\"round\":$r,\"model\":\"$m\",\"B\":$b,\"S\":$s_,\"tokens_per_step\":$((b * s_)),\"warmup\":$w,\"steps\":$n,\"fma_gflops\":${fmag:-null}}"
    if [[ $s == peftc* ]]; then
        local args=(--model "$PEFTC_SMOLLM2_GGUF" --adapter "$WORK/smollm2_lora.json" --data "$TEXT")
        [[ $m == minilm ]] && args=(--model "$PEFTC_MINILM_DIR" --adapter "$WORK/minilm_lora.json" --data "$WORK/cls.jsonl"
                                    --labels "$WORK/labels.json" --val-fraction 0.05)
        [[ $s == peftc-bf16 ]] && args+=(--base-dtype bf16)
        "$PYTHON" "$PY" peftc --tag "$tag" --warmup "$w" --system "$s" -- "$PEFTC" train "${args[@]}" --steps $((w + n + 1)) \
            --batch "$b" --seq "$s_" --eval-every 0 --eval-batches 1 --lr 1e-3 --min-lr 1e-3 --warmup 0 \
            --schedule constant --weight-decay 0 --clip 1.0 --backend jit --threads 1 --out "$WORK/adapter_$m" \
            > "$tmp" 2> "$tmp.err" || rc=$?
    else
        local args=(smollm2 --gguf "$PEFTC_SMOLLM2_GGUF" --data "$TEXT")
        [[ $m == minilm ]] && args=(minilm --model "$PEFTC_MINILM_DIR" --data "$WORK/cls.jsonl" --labels 77)
        local ac=off; [[ $s == *-bf16 ]] && ac=bf16
        "$PYTHON" "$PY" "${args[@]}" --mode "${s%-bf16}" --autocast "$ac" --batch "$b" --seq "$s_" --steps "$n" --warmup "$w" --json \
            > "$tmp" 2> "$tmp.err" || rc=$?
    fi
    local line
    line=$(grep '^{' "$tmp" | tail -n 1)
    if [[ $rc == 0 && -n $line && $line != *'"error"'* ]]; then
        [[ $s != peftc* ]] && line=$("$PYTHON" -c 'import json, sys
t = json.loads(sys.argv[1]); t.update(json.loads(sys.argv[2])); print(json.dumps(t))' "$tag" "$line")
        echo "$line" >> "$RES"
        echo "$line" | "$PYTHON" -c '
import json, sys
d = json.loads(sys.stdin.read())
print("    %-18s %-7s %8.1f tok/s  %8.0f ms/step  peak RSS %5.0f MiB  launch to step 1 %5.1f s  loss %.4f  (FMA %s GFLOP/s)" % (
    d["system"], d["model"], d["tokens_per_s"], d["ms_per_step_median"], d["peak_rss_mib"],
    d.get("step1_done_s", 0), d.get("loss_first", float("nan")), d["fma_gflops"]))' >&2
    else
        local msg
        msg=$( (echo "$line" | sed -n 's/.*"error": *"\([^"]*\)".*/\1/p'; grep -v '^[[:space:]]*$' "$tmp.err" | tail -n 1) | tr '\n"\\\r' '    ' | cut -c1-300)
        log "FAILED ($m $s, round $r): $msg"
        local sys=$s; [[ $s != peftc* ]] && sys=torch-$s
        [[ $rc != 0 ]] && msg="exit status $rc: $msg"
        echo "${tag%\}},\"system\":\"$sys\",\"error\":\"$msg\"}" >> "$RES"
        cp "$tmp.err" "$WORK/failed-$m-$s-$r.err"
    fi
    rm -f "$tmp" "$tmp.err"
}

T0=$SECONDS
for ((r = 1; r <= R; r++)); do
    for m in $MODELS; do
        read -r -a ss <<< "$SYSTEMS"
        if (( r % 2 == 0 )); then rev=(); for ((i = ${#ss[@]} - 1; i >= 0; i--)); do rev+=("${ss[i]}"); done; ss=("${rev[@]}"); fi
        w=WARMUP_$m n=STEPS_$m
        log "round $r/$R: $m (${!w} warm-up + ${!n} timed steps): ${ss[*]}"
        for s in "${ss[@]}"; do run "$r" "$m" "$s"; done
    done
done
fma 0 > /dev/null
log "done in $((SECONDS - T0)) s"
echo
"$PYTHON" "$PY" report "$RES"
