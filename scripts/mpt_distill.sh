#!/usr/bin/env bash
# Multitask prompt tuning's prompt distillation (--distill-teachers) on the bundled banking77
# tasks 0-2 of data/tasks/ ({"input","target"}: the loss on the intent name):
#   1. teachers: one prompt-tuning adapter per task (16 virtual tokens, the student's), trained on
#      that task alone for STEPS_TEACHER steps;
#   2. the MPT student (shared prompt, rank-1 per-task factors, 16 tokens) on the three tasks
#      mixed, STEPS steps, with and without distillation (same seed, data order, lr);
#   3. held-out loss per task (the test queries of banking_mc_test.jsonl with their intent name
#      as target), each task's prompt (--task-id), for the teachers and both students.
# Usage: scripts/mpt_distill.sh [PEFTC] (default build/peftc); env STEPS_TEACHER (200), STEPS (200),
# WEIGHT (1), TEMPERATURE (1), OUT (a temporary directory).
set -euo pipefail
cd "$(dirname "$0")/.."
PEFTC=${1:-build/peftc}
STEPS_TEACHER=${STEPS_TEACHER:-200}
STEPS=${STEPS:-200}
WEIGHT=${WEIGHT:-1}
TEMPERATURE=${TEMPERATURE:-1}
OUT=${OUT:-$(mktemp -d /tmp/peftc-mpt-distill.XXXXXX)}
mkdir -p "$OUT"

python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
def lines(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]
train, test = lines("data/tasks/banking_target.jsonl"), lines("data/tasks/banking_mc_test.jsonl")
def write(name, rows):
    with open(f"{out}/{name}", "w") as f:
        for r in rows: f.write(json.dumps(r) + "\n")
write("mixed_train.jsonl", train)
write("mixed_test.jsonl", [{"input": r["input"], "target": " " + r["answer_choices"][r["label"]], "task": r["task"]} for r in test])
for t in range(3):
    write(f"train{t}.jsonl", [{"input": r["input"], "target": r["target"]} for r in train if r["task"] == t])
    write(f"test{t}.jsonl", [{"input": r["input"], "target": " " + r["answer_choices"][r["label"]]} for r in test if r["task"] == t])
PY
INIT='"prompt_tuning_init": "TEXT", "prompt_tuning_init_text": "Which intent is it? Intent:", "tokenizer_name_or_path": "stories260K"'
echo "{\"peft_type\": \"PROMPT_TUNING\", \"task_type\": \"CAUSAL_LM\", \"num_virtual_tokens\": 16, $INIT}" > "$OUT/pt.json"
echo "{\"peft_type\": \"MULTITASK_PROMPT_TUNING\", \"task_type\": \"CAUSAL_LM\", \"num_virtual_tokens\": 16, \"num_tasks\": 3, \"num_ranks\": 1, $INIT}" > "$OUT/mpt.json"
field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" | head -1; }
per_task() { # ADAPTER [TASK_IDS]: the held-out loss of each task
  local line=""
  for t in 0 1 2; do
    local id=$t; [ "${2:-}" = one ] && id=0
    local dir=$1; [ "${2:-}" = one ] && dir=$1$t
    line="$line task $t $("$PEFTC" eval --adapter "$dir" --data "$OUT/test$t.jsonl" --task-id $id --json | field loss)"
  done
  echo "$line"
}

teachers=""
for t in 0 1 2; do
  "$PEFTC" train --adapter "$OUT/pt.json" --data "$OUT/train$t.jsonl" --val-data "$OUT/test$t.jsonl" --steps "$STEPS_TEACHER" \
    --lr 3e-2 --eval-every "$STEPS_TEACHER" --quiet --out "$OUT/teacher$t"
  teachers="$teachers${teachers:+,}$t=$OUT/teacher$t"
done
echo "teachers (prompt tuning, one task each, $STEPS_TEACHER steps):$(per_task "$OUT/teacher" one)"
"$PEFTC" train --adapter "$OUT/mpt.json" --data "$OUT/mixed_train.jsonl" --val-data "$OUT/mixed_test.jsonl" --steps "$STEPS" \
  --lr 3e-2 --eval-every "$STEPS" --json --out "$OUT/plain" > "$OUT/plain.log"
echo "MPT without distillation ($STEPS steps):$(per_task "$OUT/plain")"
"$PEFTC" train --adapter "$OUT/mpt.json" --data "$OUT/mixed_train.jsonl" --val-data "$OUT/mixed_test.jsonl" --steps "$STEPS" \
  --lr 3e-2 --eval-every "$STEPS" --json --distill-teachers "$teachers" --distill-weight "$WEIGHT" \
  --distill-temperature "$TEMPERATURE" --out "$OUT/distilled" > "$OUT/distilled.log"
echo "MPT distilled (weight $WEIGHT, temperature $TEMPERATURE, $STEPS steps):$(per_task "$OUT/distilled")"
echo "(runs in $OUT)"
