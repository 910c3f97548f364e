#!/usr/bin/env bash
# LoRA, LoHa, LoKr and DoRA in peftc and in Hugging Face PEFT: train step time and peak RSS as
# ratios to LoRA, unmerged inference (DoRA vs LoRA) and merged inference against the base model.
# 1 thread, interleaved rounds, medians. It measures; nothing is asserted. See bench/README.md.
#
#   bash bench/methods.sh                     # after `cmake --build build`; ~12 min
#   R=2 MODELS=s260k bash bench/methods.sh
#
# Environment knobs (defaults in brackets):
#   R [3]          train rounds; a round runs every method on peftc and on PEFT, per model
#                  (the side that goes first and the method order alternate between rounds)
#   R_INFER [2]    inference rounds
#   MODELS ["s260k d768"]  s260k: data/stories260K (dim 64); d768: a random llama2.c
#                  checkpoint written to $OUT (dim 768, hidden 2048, 4 layers, 12 heads, vocab 512,
#                  tied classifier, seed 1; 28.7 M params); d1024: the same with dim 1024, hidden
#                  2816, 16 heads (51.9 M params); d2048: dim 2048, hidden 5632, 16 heads (206 M)
#   METHODS ["lora loha lokr dora"]   r 8 (alpha 16) on q,k,v,o,gate,up,down, no dropout
#   PYTHON [/work/venv-golden/bin/python]  torch + transformers + peft 0.21.2
#   PEFT [1]       0 skips the PEFT side
#   BUILD [build]  where build/peftc is; OUT [$BUILD/bench/methods-<time>]
#   STEPS_<model> / WARMUP_<model>  timed / warm-up train steps [s260k 40/5, d768 and d1024 8/2, d2048 4/1]
#   EVAL_SMALL_<model> / EVAL_BIG_<model>  bytes of tinyshakespeare for the two eval runs
#                  [s260k 100000/600000, d768 and d1024 2000/16000, d2048 2000/8000]
#
# peftc train step times: `peftc train` draws a progress line on a terminal after every step,
# so it runs with stderr on a pseudo-terminal and the step time is the gap between the arrivals
# of consecutive step lines (the eval before step 1 and the one after the last step are outside
# the timed steps: one extra step is run and dropped). Peak RSS is the child's ru_maxrss.
# peftc inference: `peftc eval` on two slices of the text; time(big) - time(small) cancels
# loading, compiling and merging, and the same difference on a tiny model (dim 16, 1 layer)
# cancels tokenizing. What is left is the forward time of the extra windows.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
PEFTC=$ROOT/$BUILD/peftc
PYTHON=${PYTHON:-/work/venv-golden/bin/python}
PEFT=${PEFT:-1}
R=${R:-3}
R_INFER=${R_INFER:-2}
MODELS=${MODELS:-"s260k d768"}
METHODS=${METHODS:-"lora loha lokr dora"}
STAMP=$(date +%Y%m%d-%H%M%S)
OUT=${OUT:-$ROOT/$BUILD/bench/methods-$STAMP}
STEPS_s260k=${STEPS_s260k:-40}; WARMUP_s260k=${WARMUP_s260k:-5}
STEPS_d768=${STEPS_d768:-8};    WARMUP_d768=${WARMUP_d768:-2}
STEPS_d1024=${STEPS_d1024:-8};  WARMUP_d1024=${WARMUP_d1024:-2}
STEPS_d2048=${STEPS_d2048:-4};  WARMUP_d2048=${WARMUP_d2048:-1}
EVAL_SMALL_s260k=${EVAL_SMALL_s260k:-100000}; EVAL_BIG_s260k=${EVAL_BIG_s260k:-600000}
EVAL_SMALL_d768=${EVAL_SMALL_d768:-2000};     EVAL_BIG_d768=${EVAL_BIG_d768:-16000}
EVAL_SMALL_d1024=${EVAL_SMALL_d1024:-2000};   EVAL_BIG_d1024=${EVAL_BIG_d1024:-16000}
EVAL_SMALL_d2048=${EVAL_SMALL_d2048:-2000};   EVAL_BIG_d2048=${EVAL_BIG_d2048:-8000}
TOK=$ROOT/data/stories260K/tok512.bin
TEXT=$ROOT/data/tinyshakespeare/input.txt

mkdir -p "$OUT/cfg"
RES=$OUT/results.jsonl
: > "$RES"
log() { echo "[methods] $*" >&2; }
[[ -x $PEFTC ]] || { log "no $PEFTC: cmake --build $BUILD"; exit 1; }
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

# ---- adapter configs: equal targets and rank ----
T='["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]'
echo "{\"peft_type\": \"LORA\", \"task_type\": \"CAUSAL_LM\", \"r\": 8, \"lora_alpha\": 16, \"lora_dropout\": 0.0, \"target_modules\": $T}" > "$OUT/cfg/lora.json"
echo "{\"peft_type\": \"LORA\", \"task_type\": \"CAUSAL_LM\", \"use_dora\": true, \"r\": 8, \"lora_alpha\": 16, \"lora_dropout\": 0.0, \"target_modules\": $T}" > "$OUT/cfg/dora.json"
echo "{\"peft_type\": \"LOHA\", \"task_type\": \"CAUSAL_LM\", \"r\": 8, \"alpha\": 16, \"target_modules\": $T}" > "$OUT/cfg/loha.json"
echo "{\"peft_type\": \"LOKR\", \"task_type\": \"CAUSAL_LM\", \"r\": 8, \"alpha\": 16, \"decompose_factor\": -1, \"decompose_both\": false, \"init_weights\": true, \"target_modules\": $T}" > "$OUT/cfg/lokr.json"

# ---- models ----
declare -A MODEL
MODEL[s260k]=$ROOT/data/stories260K/stories260K.bin
declare -A SHAPE=([d768]="--dim 768 --hidden 2048 --heads 12 --kv-heads 12"
                  [d1024]="--dim 1024 --hidden 2816 --heads 16 --kv-heads 16"
                  [d2048]="--dim 2048 --hidden 5632 --heads 16 --kv-heads 16")
for m in $MODELS; do
    [[ $m == s260k ]] && continue
    [[ -n ${SHAPE[$m]:-} ]] || { log "unknown model '$m' in MODELS (s260k d768 d1024 d2048)"; exit 1; }
    MODEL[$m]=$OUT/$m.bin
    # shellcheck disable=SC2086  # SHAPE holds several flags
    "$PYTHON" bench/torch_peft_methods.py write-model --out "$OUT/$m.bin" ${SHAPE[$m]} --layers 4 \
        --vocab 512 --seq-len 128 --seed 1 >> "$RES" || exit 1
done
"$PYTHON" bench/torch_peft_methods.py write-model --out "$OUT/tiny.bin" --dim 16 --hidden 16 --layers 1 \
    --heads 2 --kv-heads 2 --vocab 512 --seq-len 128 --seed 1 >> "$RES" || exit 1

# ---- tools: the FMA peak and the runner (pty step timing, ru_maxrss, wall time) ----
gcc -std=c17 -O2 -march=native -Wall -Wextra -Werror -D_GNU_SOURCE bench/fma_peak.c -o "$OUT/fma_peak" || exit 1
cat > "$OUT/runner.py" <<'EOF'
import json, os, pty, re, select, sys, time
# runner.py TAGJSON pty|plain CMD...: one JSON line = TAGJSON + the measurements
tag, mode, cmd = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3:]
t0 = time.perf_counter()
r_out, w_out = os.pipe()
if mode == "pty":
    master, slave = pty.openpty()
pid = os.fork()
if pid == 0:
    os.dup2(w_out, 1)
    if mode == "pty":
        os.dup2(slave, 2)
    os.execvp(cmd[0], cmd)
os.close(w_out)
if mode == "pty":
    os.close(slave)
fds, out, err, arrivals, buf = [r_out] + ([master] if mode == "pty" else []), b"", b"", {}, b""
step_re = re.compile(rb"step (\d+)/(\d+)")
while fds:
    ready, _, _ = select.select(fds, [], [])
    now = time.perf_counter()
    for fd in ready:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            fds.remove(fd)
            continue
        if fd == r_out:
            out += chunk
        else:
            err += chunk
            for m in step_re.finditer(chunk):
                arrivals.setdefault(int(m.group(1)), now)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t0
d = dict(tag)
d.update(rc=os.waitstatus_to_exitcode(status), wall_s=wall, peak_rss_mib=ru.ru_maxrss / 1024.0,
         cpu_s=ru.ru_utime + ru.ru_stime)
for line in out.decode(errors="replace").splitlines():
    if line.startswith("{"):
        d["out"] = json.loads(line)
if mode == "pty":
    w = tag["warmup"]
    n = max(arrivals) if arrivals else 0
    gaps = [arrivals[t] - arrivals[t - 1] for t in range(w + 1, n) if t in arrivals and t - 1 in arrivals]
    if gaps:
        gaps.sort()
        k = len(gaps)
        d.update(ms_per_step_median=1e3 * (gaps[k // 2] if k % 2 else (gaps[k // 2 - 1] + gaps[k // 2]) / 2),
                 ms_per_step_min=1e3 * gaps[0], timed_steps=k)
if d["rc"] != 0:
    d["error"] = (err.decode(errors="replace").replace("\r", "\n").strip().splitlines() or ["?"])[-1][:300]
print(json.dumps(d))
EOF
RUN() { "$PYTHON" "$OUT/runner.py" "$@" >> "$RES"; tail -n 1 "$RES" | "$PYTHON" -c '
import json, sys
d = json.loads(sys.stdin.read())
if d.get("error"): print("    FAILED %s" % d, file=sys.stderr)
elif d["kind"] == "train":
    o = d.get("out", d)
    print("    %-5s %-5s %-5s train %9.2f ms/step  RSS %6.0f MiB" % (d["side"], d["model"], d["method"], o["ms_per_step_median"], o["peak_rss_mib"]), file=sys.stderr)
else: print("    %-5s %-5s %-5s %-8s %-5s eval %6.2f s" % (d["side"], d["model"], d["method"], d["mode"], d["size"], d["wall_s"]), file=sys.stderr)
'; }
fma() { "$OUT/fma_peak" --json --reps 3 | sed "s/^{/{\"round\":$1,\"model\":\"$2\",/" >> "$RES"; }

CPU=$(lscpu | sed -n 's/^Model name: *//p')
printf '{"bench":"machine","cpu":"%s","nproc":%s,"date":"%s"}\n' "$CPU" "$(nproc --all)" "$STAMP" >> "$RES"
log "results: $RES  (R=$R, R_INFER=$R_INFER, models: $MODELS, methods: $METHODS)"
T0=$SECONDS

# ---- train rounds ----
for ((r = 1; r <= R; r++)); do
    for m in $MODELS; do
        s=STEPS_$m w=WARMUP_$m
        fma "$r" "$m"
        ms=($METHODS)
        if (( r % 2 == 0 )); then rev=(); for ((i = ${#ms[@]} - 1; i >= 0; i--)); do rev+=("${ms[i]}"); done; ms=("${rev[@]}"); fi
        log "train round $r/$R: $m (${!w} warm-up + ${!s} timed steps)"
        for meth in "${ms[@]}"; do
            sides=(peftc); [[ $PEFT == 1 ]] && sides+=(peft)
            if (( r % 2 == 0 )) && [[ $PEFT == 1 ]]; then sides=(peft peftc); fi
            for side in "${sides[@]}"; do
                tag="{\"kind\":\"train\",\"round\":$r,\"model\":\"$m\",\"method\":\"$meth\",\"side\":\"$side\",\"warmup\":${!w},\"steps\":${!s}}"
                if [[ $side == peftc ]]; then
                    RUN "$tag" pty "$PEFTC" train --model "${MODEL[$m]}" --tokenizer "$TOK" --adapter "$OUT/cfg/$meth.json" \
                        --data "$TEXT" --steps $((${!w} + ${!s} + 1)) --batch 8 --seq 64 --eval-every 0 --eval-batches 1 \
                        --lr 1e-3 --min-lr 1e-3 --warmup 0 --weight-decay 0.01 --clip 0 --backend jit --threads 1 \
                        --out "$OUT/adapter_${m}_$meth"
                else
                    RUN "$tag" plain "$PYTHON" bench/torch_peft_methods.py train --model "${MODEL[$m]}" \
                        --adapter "$OUT/cfg/$meth.json" --batch 8 --seq 64 --steps "${!s}" --warmup "${!w}" --json
                fi
            done
        done
    done
done

# ---- inference rounds: peftc eval on two slices; PEFT base/unmerged/merged in one process ----
for m in $MODELS; do
    sm=EVAL_SMALL_$m bg=EVAL_BIG_$m
    head -c "${!sm}" "$TEXT" > "$OUT/text_${m}_small.txt"
    head -c "${!bg}" "$TEXT" > "$OUT/text_${m}_big.txt"
done
for ((r = 1; r <= R_INFER; r++)); do
    for m in $MODELS; do
        fma "$r" "$m"
        log "inference round $r/$R_INFER: $m"
        runs=("tiny base" "$m base")
        for meth in $METHODS; do runs+=("$m $meth unmerged" "$m $meth merged"); done
        for size in small big; do
            for run in "${runs[@]}"; do
                read -r mm meth mode <<< "$run"
                [[ $mm == tiny ]] && model=$OUT/tiny.bin || model=${MODEL[$m]}
                args=(); [[ $meth != base ]] && args+=(--adapter "$OUT/adapter_${m}_$meth")
                [[ $mode == merged ]] && args+=(--merge)
                tag="{\"kind\":\"eval\",\"round\":$r,\"model\":\"$m\",\"eval_model\":\"$mm\",\"method\":\"$meth\",\"mode\":\"${mode:-base}\",\"size\":\"$size\",\"side\":\"peftc\"}"
                RUN "$tag" plain "$PEFTC" eval --model "$model" --tokenizer "$TOK" "${args[@]}" \
                    --data "$OUT/text_${m}_$size.txt" --seq 64 --batch 8 --backend jit --json
            done
        done
        if [[ $PEFT == 1 ]]; then
            s=STEPS_$m w=WARMUP_$m
            for meth in $METHODS; do
                log "  PEFT inference $m $meth"
                "$PYTHON" bench/torch_peft_methods.py infer --model "${MODEL[$m]}" --adapter "$OUT/cfg/$meth.json" \
                    --batch 8 --seq 64 --steps $((${!s} < 20 ? 20 : ${!s})) --warmup "${!w}" --json \
                    | sed "s/^{/{\"kind\":\"peft_infer\",\"round\":$r,\"model\":\"$m\",/" >> "$RES"
            done
        fi
    done
done
log "done in $((SECONDS - T0)) s"
"$PYTHON" - "$RES" <<'EOF'
import json, statistics as st, sys
from collections import defaultdict
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
med = st.median
machine = next((r for r in rows if r.get("bench") == "machine"), {})
fmas = [r["gflops_median"] for r in rows if r.get("bench") == "fma_peak"]
errs = [r for r in rows if r.get("error")]
print(f"machine: {machine.get('cpu')}  ({machine.get('nproc')} vCPUs)  {machine.get('date')}")
if fmas:
    print(f"FMA peak (zmm, 1 core): median {med(fmas):.1f} GFLOP/s, {min(fmas):.1f}..{max(fmas):.1f} over {len(fmas)} calibrations")
for e in errs:
    print("FAILED:", e)
models = [m for m in ("s260k", "d768", "d1024", "d2048") if any(r.get("model") == m for r in rows)]
methods = [m for m in ("lora", "loha", "lokr", "dora") if any(r.get("method") == m for r in rows)]

def rng(xs):
    return f"{med(xs):.2f}x ({min(xs):.2f}..{max(xs):.2f})" if xs else "-"

# train: per round and side, each method's median step against LoRA's of the same round
tr = defaultdict(dict)  # (model, side, round) -> method -> row
for r in rows:
    if r.get("kind") == "train" and not r.get("error"):
        key = (r["model"], r["side"], r["round"])
        if r["side"] == "peft":
            o = r["out"]
            r = dict(r, ms_per_step_median=o["ms_per_step_median"], peak_rss_mib=o["peak_rss_mib"],
                     rss_before_mib=o["rss_before_mib"])
        tr[key][r["method"]] = r
print("\nTrain step (B 8 x S 64, AdamW, 1 thread). Ratio to LoRA of the same side and round: median (min..max) over rounds")
print("| model | method | peftc ms/step | peftc time/LoRA | PEFT ms/step | PEFT time/LoRA | peftc RSS MiB | peftc RSS/LoRA | PEFT RSS MiB (above pre-step) | PEFT RSS/LoRA |")
print("|---|---|---:|---|---:|---|---:|---|---:|---|")
for m in models:
    for meth in methods:
        cells = []
        for side in ("peftc", "peft"):
            keys = [k for k in tr if k[0] == m and k[1] == side]
            ms = [tr[k][meth]["ms_per_step_median"] for k in keys if meth in tr[k]]
            rt = [tr[k][meth]["ms_per_step_median"] / tr[k]["lora"]["ms_per_step_median"] for k in keys if meth in tr[k] and "lora" in tr[k]]
            cells.append((ms, rt))
        rss = []
        for side in ("peftc", "peft"):
            keys = [k for k in tr if k[0] == m and k[1] == side]
            v = [tr[k][meth]["peak_rss_mib"] for k in keys if meth in tr[k]]
            rv = [tr[k][meth]["peak_rss_mib"] / tr[k]["lora"]["peak_rss_mib"] for k in keys if meth in tr[k] and "lora" in tr[k]]
            dyn = [tr[k][meth]["peak_rss_mib"] - tr[k][meth].get("rss_before_mib", 0) for k in keys if meth in tr[k]]
            rss.append((v, rv, dyn))
        f = lambda xs: f"{med(xs):,.2f}" if xs else "-"  # noqa: E731
        g = lambda xs: f"{med(xs):,.0f}" if xs else "-"  # noqa: E731
        print(f"| {m} | {meth} | {f(cells[0][0])} | {rng(cells[0][1])} | {f(cells[1][0])} | {rng(cells[1][1])} | "
              f"{g(rss[0][0])} | {rng(rss[0][1])} | {g(rss[1][0])} ({g(rss[1][2])}) | {rng(rss[1][1])} |")

# peftc inference: forward seconds of the extra windows = (big - small) - tiny's (big - small)
ev = defaultdict(dict)  # (model, round) -> (eval_model, method, mode, size) -> wall
for r in rows:
    if r.get("kind") == "eval" and not r.get("error"):
        ev[(r["model"], r["round"])][(r["eval_model"], r["method"], r["mode"], r["size"])] = r
pinf = defaultdict(dict)  # (model, round) -> (method, mode) -> ms
for r in rows:
    if r.get("kind") == "peft_infer":
        pinf[(r["model"], r["round"])][(r["method"], r["mode"])] = r["ms_per_step_median"]
print("\nInference (forward + loss, B 8 x S 64). peftc: `peftc eval` seconds for the extra windows, tokenizing and start-up cancelled;"
      " PEFT: median forward ms in one process. Ratios per round, median (min..max)")
print("| model | compared | peftc | peftc ratio | PEFT ratio |")
print("|---|---|---|---|---|")
for m in models:
    rounds = [k for k in ev if k[0] == m]

    def fwd(k, meth, mode):
        e = ev[k]
        try:
            tiny = e[("tiny", "base", "base", "big")]["wall_s"] - e[("tiny", "base", "base", "small")]["wall_s"]
            return e[(m, meth, mode, "big")]["wall_s"] - e[(m, meth, mode, "small")]["wall_s"] - tiny, \
                e[(m, meth, mode, "big")]["out"]["tokens"] - e[(m, meth, mode, "small")]["out"]["tokens"]
        except KeyError:
            return None, None
    comps = [("dora", "unmerged", "lora", "unmerged")] + [(x, "unmerged", "lora", "unmerged") for x in methods if x not in ("lora", "dora")] + \
            [(x, "merged", "base", "base") for x in methods] + [("lora", "unmerged", "base", "base")]
    for a, am, b, bm in comps:
        rp, rt, secs = [], [], []
        for k in rounds:
            ta, n = fwd(k, a, am)
            tb, _ = fwd(k, b, bm)
            if ta and tb:
                rp.append(ta / tb)
                secs.append(f"{n / ta:,.0f}/{n / tb:,.0f}")
        for k in [k for k in pinf if k[0] == m]:
            p = pinf[k]
            pa = p.get((a, am))
            pb = p.get((b, bm)) if b != "base" else p.get((a, "base"))
            if pa and pb:
                rt.append(pa / pb)
        print(f"| {m} | {a} {am} / {b}{'' if b == 'base' else ' ' + bm} | tok/s {' '.join(secs)} | {rng(rp)} | {rng(rt)} |")
EOF
