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
  --input "$OUT/wildchat-sharegpt.parquet" --out "$OUT/wildfb" --annotator rules --test-count 200

stage convert "" -- "$BIN/wildreward" convert --model "$MODEL" --out "$OUT/rm-untrained"

# A quick look at the untrained head on 32 test examples (the whole split is what `eval` is for).
[ -f "$OUT/wildfb/test.jsonl" ] && head -n 32 "$OUT/wildfb/test.jsonl" > "$OUT/test-sample.jsonl"
stage score "$OUT/test-sample.jsonl" -- "$BIN/wildreward" score --max-length 1024 \
  --model "$OUT/rm-untrained" --input "$OUT/test-sample.jsonl" --output "$OUT/test-sample-scored.jsonl"

stage train "$OUT/wildfb/train.jsonl" -- "$BIN/wildreward" train \
  --model "$MODEL" --data "$OUT/wildfb" --out "$OUT/rm" --train head --max-steps 20

stage eval "$OUT/rm/model.safetensors" -- "$BIN/wildreward" eval \
  --model "$OUT/rm" --bench "wildfb:$OUT/wildfb/test.jsonl" --out "$OUT/eval" --limit 200

stage online-dpo data/mt-bench/question.jsonl -- "$BIN/online-dpo" run --policy "$MODEL" \
  --prompts data/mt-bench/question.jsonl --reward-endpoint http://127.0.0.1:9000/get_reward \
  --out "$OUT/dpo" --steps 2

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
