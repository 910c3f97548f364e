#!/usr/bin/env bash
# Multitask prompt tuning's transfer on the bundled multitask example (data/tasks/):
#   1. source: MPT over banking77 tasks 0 and 1 ({"input","target"}: the loss on the intent name);
#   2. target: task 2 (held out of the source run), a one-task MPT trained for the same few steps
#      from (a) the source run's prompt (AVERAGE_SOURCE_TASKS), (b) the source run's own start
#      (TEXT init), (c) RANDOM init; the held-out task-2 target loss before and after, and the
#      multiple-choice accuracy after (rank classification over the task's 4 intent names).
# Prints one line per run. Usage: scripts/mpt_transfer.sh [PEFTC] (default build/peftc); env
# STEPS_SOURCE (200), STEPS_TARGET (40), TARGET_TRAIN (96 examples), OUT (a temporary directory).
set -euo pipefail
cd "$(dirname "$0")/.."
PEFTC=${1:-build/peftc}
STEPS_SOURCE=${STEPS_SOURCE:-200}
STEPS_TARGET=${STEPS_TARGET:-40}
TARGET_TRAIN=${TARGET_TRAIN:-96}
OUT=${OUT:-$(mktemp -d /tmp/peftc-mpt-transfer.XXXXXX)}
mkdir -p "$OUT"

# task files: the source's tasks as they are; the target's renumbered to 0 (a one-task adapter)
python3 - "$OUT" "$TARGET_TRAIN" <<'PY'
import json, sys
out, n = sys.argv[1], int(sys.argv[2])
def lines(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]
train, test = lines("data/tasks/banking_mc_train.jsonl"), lines("data/tasks/banking_mc_test.jsonl")
def write(name, rows):
    with open(f"{out}/{name}", "w") as f:
        for r in rows: f.write(json.dumps(r) + "\n")
# {"input","target"}: the query and its intent name (the multiple-choice label's choice)
pair = lambda r, t: {"input": r["input"], "target": " " + r["answer_choices"][r["label"]], "task": t}
write("source_train.jsonl", [pair(r, r["task"]) for r in train if r["task"] in (0, 1)])
write("source_test.jsonl", [pair(r, r["task"]) for r in test if r["task"] in (0, 1)])
write("target_train.jsonl", [pair(r, 0) for r in train if r["task"] == 2][:n])
write("target_test.jsonl", [pair(r, 0) for r in test if r["task"] == 2])
write("target_test_mc.jsonl", [dict(r, task=0) for r in test if r["task"] == 2])
PY

config() { # NAME NUM_TASKS INIT [EXTRA_JSON]
  cat > "$OUT/$1.json" <<JSON
{"peft_type": "MULTITASK_PROMPT_TUNING", "task_type": "CAUSAL_LM", "num_virtual_tokens": 16,
 "num_tasks": $2, "num_ranks": 1, "prompt_tuning_init": "$3",
 "prompt_tuning_init_text": "Which intent is it? Intent:", "tokenizer_name_or_path": "stories260K"$4}
JSON
}
field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" | head -1; }

config source 2 TEXT ""
"$PEFTC" train --adapter "$OUT/source.json" --data "$OUT/source_train.jsonl" --val-data "$OUT/source_test.jsonl" \
  --steps "$STEPS_SOURCE" --lr 3e-2 --eval-every "$STEPS_SOURCE" --json --out "$OUT/source" > "$OUT/source.log"
echo "source (tasks 0, 1; $STEPS_SOURCE steps): held-out target loss $(head -1 "$OUT/source.log" | field eval_loss) -> $(tail -1 "$OUT/source.log" | field eval_loss)"

config target_source 1 AVERAGE_SOURCE_TASKS ", \"prompt_tuning_init_state_dict_path\": \"$OUT/source/adapter_model.safetensors\""
config target_text 1 TEXT ""
config target_random 1 RANDOM ""
for init in source text random; do
  "$PEFTC" train --adapter "$OUT/target_$init.json" --data "$OUT/target_train.jsonl" --val-data "$OUT/target_test.jsonl" \
    --steps "$STEPS_TARGET" --lr 3e-2 --eval-every "$STEPS_TARGET" --json --out "$OUT/target_$init" > "$OUT/target_$init.log"
  before=$(head -1 "$OUT/target_$init.log" | field eval_loss)
  after=$(tail -1 "$OUT/target_$init.log" | field eval_loss)
  accuracy=$("$PEFTC" eval --adapter "$OUT/target_$init" --data "$OUT/target_test_mc.jsonl" --json | field accuracy)
  echo "target task 2 from $init init ($TARGET_TRAIN examples, $STEPS_TARGET steps): held-out target loss $before -> $after, multiple-choice accuracy $accuracy"
done
echo "(runs in $OUT)"
