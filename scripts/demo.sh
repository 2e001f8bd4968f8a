#!/usr/bin/env bash
# The main job, end to end, on the embedded default model (SmolLM2-135M-Instruct) and the shipped
# ShareGPT sample: fetch the models, build, then run every stage in order. A stage whose command is not
# built yet exits 69 and is reported as skipped, as is any stage whose input an earlier stage did not
# produce; any other failure stops the script. Writes out/demo/demo-report.json.
#
#   scripts/demo.sh                 # everything under out/demo
#   OUT=/tmp/demo scripts/demo.sh   # elsewhere
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/out/demo}
BIN=$ROOT/target/debug
MODEL=$ROOT/assets/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p "$OUT"

scripts/fetch-assets.sh
# Build exactly what the test suite builds (dev profile, dependencies optimised, features unified with the
# tests' dev-dependencies), so the demo and `scripts/test.sh` share one build; `cargo build --bins` alone
# would resolve features differently and compile most dependencies a second time.
cargo test --workspace --no-run

declare -a REPORT=()
# stage NAME NEEDED_PATH -- COMMAND...
stage() {
  local name=$1 need=$2; shift 3
  if [ -n "$need" ] && [ ! -e "$need" ]; then
    printf '\n== %s: skipped (needs %s, which an earlier stage did not produce)\n' "$name" "${need#$ROOT/}"
    REPORT+=("\"$name\": \"skipped: missing input\""); return 0
  fi
  printf '\n== %s: %s\n' "$name" "${*#$ROOT/}"
  local rc=0; "$@" || rc=$?
  case $rc in
    0)  REPORT+=("\"$name\": \"ok\"") ;;
    69) printf '== %s: skipped (not built yet)\n' "$name"; REPORT+=("\"$name\": \"skipped: not built yet\"") ;;
    *)  printf '== %s: FAILED (exit %s)\n' "$name" "$rc" >&2; exit "$rc" ;;
  esac
}

stage import "" -- "$BIN/wildfb" import sharegpt \
  --input data/sharegpt/sharegpt_v3_multiturn_2000.jsonl.gz --out "$OUT/wildchat-sharegpt.parquet"

stage collect "$OUT/wildchat-sharegpt.parquet" -- "$BIN/wildfb" collect \
  --input "$OUT/wildchat-sharegpt.parquet" --out "$OUT/wildfb" --annotator cues --test-count 200

# How far the offline annotator agrees with people: the dev set labelled by `cues`, against the labels two
# people agree on (docs/labels.md).
stage label-dev "" -- "$BIN/wildfb" classify --annotator cues --quiet \
  --input data/feedback-dev/items.jsonl --out "$OUT/labels-dev"
stage agree "$OUT/labels-dev/classified.jsonl" -- "$BIN/wildfb" agree \
  --gold data/feedback-dev/gold.jsonl --pred "$OUT/labels-dev" --out "$OUT/labels-dev"

stage convert "" -- "$BIN/wildreward" convert --model "$MODEL" --out "$OUT/rm-untrained"

# A quick look at the untrained head on 32 test examples (the whole split is what `eval` is for).
[ -f "$OUT/wildfb/test.jsonl" ] && head -n 32 "$OUT/wildfb/test.jsonl" > "$OUT/test-sample.jsonl"
stage score "$OUT/test-sample.jsonl" -- "$BIN/wildreward" score --max-length 1024 \
  --model "$OUT/rm-untrained" --input "$OUT/test-sample.jsonl" --output "$OUT/test-sample-scored.jsonl"

# Head-only training on a slice (configs/train-cpu-demo.toml): the frozen backbone's features are computed
# once, then 4 epochs cost almost nothing. A re-run starts over in a fresh directory.
rm -rf "$OUT/rm"
stage train "$OUT/wildfb/train.jsonl" -- "$BIN/wildreward" train \
  --model "$MODEL" --data "$OUT/wildfb" --out "$OUT/rm" --config configs/train-cpu-demo.toml

# Evaluation on small slices: the trained model when training ran, else the untrained conversion (its
# report says the head is random). HH pairs (accuracy, threshold curve, ROC-AUC) and the WildFB test split
# (level accuracy, ECE, reliability diagram); scores are cached, so a re-run costs nothing.
# eval and serve refuse a random head unless told: the fallback says so.
EVAL_MODEL=$OUT/rm
HEAD_FLAGS=()
if [ ! -f "$OUT/rm/model.safetensors" ]; then
  EVAL_MODEL=$OUT/rm-untrained
  HEAD_FLAGS=(--allow-untrained-head)
fi
stage eval-hh "$EVAL_MODEL" -- "$BIN/wildreward" eval --model "$EVAL_MODEL" "${HEAD_FLAGS[@]}" \
  --bench hh --out "$OUT/eval-hh" --limit 24 --max-length 256
stage eval-wildfb "$OUT/wildfb/test.jsonl" -- "$BIN/wildreward" eval --model "$EVAL_MODEL" "${HEAD_FLAGS[@]}" \
  --bench "wildfb:$OUT/wildfb/test.jsonl" --out "$OUT/eval-wildfb" --limit 48 --max-length 256

# Online DPO against a live scoring fleet (one worker behind the router) serving the trained RM: greedy
# answers scored before and after a few DPO steps (configs/online-dpo-cpu-demo.toml).
DPO_PORT=${DPO_PORT:-19000}
ENDPOINT=http://127.0.0.1:$DPO_PORT/get_reward
SERVE_PID=
stop_fleet() { [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null; SERVE_PID=; }
trap stop_fleet EXIT
if [ -f "$EVAL_MODEL/config.json" ]; then
  "$BIN/wildreward" serve --model "$EVAL_MODEL" "${HEAD_FLAGS[@]}" --workers 1 --port "$DPO_PORT" --worker-port $((DPO_PORT + 1)) \
    > "$OUT/serve.log" 2>&1 &
  SERVE_PID=$!
  for _ in $(seq 1 120); do
    curl -sf "http://127.0.0.1:$DPO_PORT/health" > /dev/null 2>&1 && break
    sleep 1
  done
fi
head -n 4 data/mt-bench/question.jsonl > "$OUT/dpo-prompts.jsonl"
rm -rf "$OUT/dpo"
stage dpo-eval-before "$EVAL_MODEL/config.json" -- "$BIN/online-dpo" eval --policy "$MODEL" \
  --prompts "$OUT/dpo-prompts.jsonl" --reward-endpoint "$ENDPOINT" --max-new-tokens 48 --out "$OUT/dpo-before"
stage online-dpo "$EVAL_MODEL/config.json" -- "$BIN/online-dpo" run --policy "$MODEL" \
  --prompts "$OUT/dpo-prompts.jsonl" --reward-endpoint "$ENDPOINT" --out "$OUT/dpo" \
  --config configs/online-dpo-cpu-demo.toml
stage dpo-eval-after "$OUT/dpo/policy/config.json" -- "$BIN/online-dpo" eval --policy "$OUT/dpo/policy" \
  --prompts "$OUT/dpo-prompts.jsonl" --reward-endpoint "$ENDPOINT" --max-new-tokens 48 --out "$OUT/dpo-after"
stop_fleet

{
  printf '{\n'
  for i in "${!REPORT[@]}"; do
    sep=,; [ "$i" -eq $((${#REPORT[@]} - 1)) ] && sep=
    printf '  %s%s\n' "${REPORT[$i]}" "$sep"
  done
  printf '}\n'
} > "$OUT/demo-report.json"
printf '\nDemo finished: %s\n' "${OUT#$ROOT/}/demo-report.json"
cat "$OUT/demo-report.json"
