#!/usr/bin/env bash
# Scoring straight from the GGUF's quantized weights (Q4_1; `wildreward score --quantized`, candle's
# quantized matmul in the padded forward) against the default path (weights dequantised to f32, the
# packed forward), on the first TEXTS (default 128) texts of score.sh's 128-token set: texts/s of each
# and the reward difference. Run scripts/bench/score.sh first (it writes the ids). Not part of CI.
#   scripts/bench/quantized.sh        # ~5 min on 2 cores, almost all of it the quantized path
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/out/bench-score}
IDS="$OUT/ids-128.jsonl"
[ -f "$IDS" ] || { echo "quantized.sh: $IDS is missing: run scripts/bench/score.sh first" >&2; exit 1; }
scripts/fetch-assets.sh >/dev/null
cargo build -q --example bench_quantized -p wildreward-model
head -n "${TEXTS:-128}" "$IDS" > "$OUT/ids-quantized.jsonl"
REPEATS=${REPEATS:-1} target/debug/examples/bench_quantized \
  assets/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf "$OUT/ids-quantized.jsonl"
