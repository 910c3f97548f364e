#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz/, clang, ASan+UBSan) and runs a campaign.
#
#   scripts/fuzz.sh [--smoke] [--time SECONDS] [--runs N] [harness ...]
#
# harness: ir safetensors adapter_config llama2c tokenizer tokenizer_json gguf target_match (default: all), run one
# after the other, one process each. --time is per harness (default 600; --smoke: 30); --runs N stops a
# harness after N executions instead (the time limit then defaults to a day). The corpus
# lives in $FUZZ_WORK/corpus/<harness> (default build-fuzz/fuzz-work) and grows from run to run;
# it starts from the seeds tests/fuzz/seeds.py builds out of the tree's test files plus
# tests/fuzz/corpus/<harness>/. --smoke (CI) starts from the seeds alone in a scratch corpus.
# Crashes, leaks, timeouts and sanitizer reports land in $FUZZ_WORK/artifacts/<harness>/ and make
# the script exit 1 after every harness has run. Env: CC (default clang), BUILD_DIR (build-fuzz),
# FUZZ_WORK, JOBS (build parallelism, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ALL=(ir safetensors adapter_config llama2c tokenizer tokenizer_json gguf target_match)
smoke=0
time_s=""
runs=""
harnesses=()
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --time) time_s="$2"; shift ;;
    --time=*) time_s="${1#--time=}" ;;
    --runs) runs="$2"; shift ;;
    --runs=*) runs="${1#--runs=}" ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) harnesses+=("$1") ;;
  esac
  shift
done
[ ${#harnesses[@]} -gt 0 ] || harnesses=("${ALL[@]}")
for h in "${harnesses[@]}"; do
  [[ " ${ALL[*]} " == *" $h "* ]] || { echo "fuzz.sh: unknown harness '$h' (${ALL[*]})" >&2; exit 2; }
done
[ -z "$runs" ] || [[ "$runs" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: --runs takes a count, not '$runs'" >&2; exit 2; }
[ -n "$time_s" ] || time_s=$([ $smoke = 1 ] && echo 30 || { [ -n "$runs" ] && echo 86400 || echo 600; })

BUILD_DIR=${BUILD_DIR:-build-fuzz}
WORK=${FUZZ_WORK:-$BUILD_DIR/fuzz-work}
export CC=${CC:-clang}

echo "== build ($CC, $BUILD_DIR)"
cmake -S . -B "$BUILD_DIR" -DPEFTC_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
if ! cmake --build "$BUILD_DIR" --target fuzz -j"${JOBS:-2}" >"$BUILD_DIR/fuzz-build.log" 2>&1; then
  grep -E "error:|Error [0-9]" "$BUILD_DIR/fuzz-build.log" >&2 || tail -20 "$BUILD_DIR/fuzz-build.log" >&2
  echo "fuzz.sh: build failed (log $BUILD_DIR/fuzz-build.log)" >&2
  exit 1
fi
for h in "${harnesses[@]}"; do [ -x "$BUILD_DIR/fuzz/fuzz_$h" ] || { echo "fuzz.sh: fuzz_$h was not built" >&2; exit 1; }; done

echo "== seeds"
mkdir -p "$WORK"
seeds=$(mktemp -d "$WORK/seeds.XXXXXX") # one per run: two runs may share $WORK
trap 'rm -rf "$seeds"' EXIT
python3 tests/fuzz/seeds.py "$ROOT" "$seeds"

# per-harness limits: the largest input worth mutating, and a dictionary where one helps
max_len() { case "$1" in ir) echo 8192 ;; safetensors) echo 16384 ;; adapter_config) echo 4096 ;;
  llama2c) echo 4096 ;; tokenizer) echo 8192 ;; tokenizer_json) echo 32768 ;; gguf) echo 16384 ;; target_match) echo 256 ;; esac; }
dict() { [ -f "tests/fuzz/$1.dict" ] && echo "-dict=tests/fuzz/$1.dict" || true; }

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
failed=()
summary=()
for h in "${harnesses[@]}"; do
  if [ $smoke = 1 ]; then corpus="$WORK/smoke-corpus/$h"; rm -rf "$corpus"; else corpus="$WORK/corpus/$h"; fi
  art="$WORK/artifacts/$h"
  mkdir -p "$corpus" "$art"
  log="$WORK/$h.log"
  echo "== fuzz_$h: ${runs:+$runs runs or }${time_s}s (log $log)"
  set +e
  "$BUILD_DIR/fuzz/fuzz_$h" -max_total_time="$time_s" ${runs:+-runs=$runs} -max_len="$(max_len "$h")" $(dict "$h") \
    -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$art/" \
    "$corpus" "$seeds/$h" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  line=$(printf '%-15s %12s execs %8s exec/s  cov %6s  corpus %5s  %s' "$h" "${execs:-?}" "${rate:-?}" \
    "${cov:-?}" "$(ls "$corpus" | wc -l)" "$([ $rc = 0 ] && echo ok || echo "FAILED (exit $rc)")")
  echo "$line"
  summary+=("$line")
  if [ $rc != 0 ]; then
    failed+=("$h")
    grep -E "ERROR|SUMMARY|fuzz check failed|runtime error|Test unit written" "$log" | head -20 >&2 || true
  fi
done
echo "== summary"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: findings in: ${failed[*]} (reproducers in $WORK/artifacts/, logs in $WORK/)" >&2
  exit 1
fi
