#!/usr/bin/env bash
# Overload benchmark of `wildreward serve`'s backpressure (issue 17): CLIENTS concurrent clients,
# each sending requests of TEXTS_PER_REQUEST mid-length templated texts back to back for DURATION
# seconds, against a fleet of WORKERS CPU workers (the SmolLM2 GGUF, seeded head). A client that
# gets 429 sleeps its Retry-After and sends again. Reports 429s, 5xx (goal 0), the admitted
# requests' latency p50 / p99 (goal p99 <= 2 x --max-queue-seconds) and the Retry-After values seen.
# Not part of CI (CPU heavy: run it when nothing else compiles).
#
#   scripts/bench/flood.sh   # knobs: CLIENTS TEXTS_PER_REQUEST DURATION WORKERS MAX_QUEUE_SECONDS
#                            #        MIN_WORDS MAX_WORDS RUST_ARGS (extra `wildreward serve` flags)
#
# Writes $OUT/flood.json and prints one markdown row.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/out/bench-flood}
CLIENTS=${CLIENTS:-96}
TEXTS_PER_REQUEST=${TEXTS_PER_REQUEST:-16}
DURATION=${DURATION:-120}
WORKERS=${WORKERS:-2}
MAX_QUEUE_SECONDS=${MAX_QUEUE_SECONDS:-4}
MIN_WORDS=${MIN_WORDS:-40}
MAX_WORDS=${MAX_WORDS:-120}
RUST_ARGS=${RUST_ARGS:-}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/wildreward
MODEL=assets/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p "$OUT"

SERVER=""
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true; }
trap cleanup EXIT

scripts/fetch-assets.sh >/dev/null
cargo build -q --workspace --bins
# shellcheck disable=SC2086
"$BIN" serve --model "$MODEL" --allow-untrained-head --workers "$WORKERS" --port 0 --worker-port 0 --max-length 512 \
  --max-queue-seconds "$MAX_QUEUE_SECONDS" $RUST_ARGS >"$OUT/server.stdout" 2>"$OUT/server.log" &
SERVER=$!
for _ in $(seq 1 100); do grep -q 'listening on' "$OUT/server.stdout" && break; sleep 0.1; done
URL=$(grep -o 'http://[0-9.:]*' "$OUT/server.stdout" | head -1)
for _ in $(seq 1 1200); do
  [ "$(curl -sf "$URL/" | python3 -c 'import json,sys; print(json.load(sys.stdin)["healthy_workers"])' 2>/dev/null)" = "$WORKERS" ] && break
  sleep 0.25
done
python3 scripts/bench/flood.py --url "$URL" --clients "$CLIENTS" --batch "$TEXTS_PER_REQUEST" \
  --duration "$DURATION" --min-words "$MIN_WORDS" --max-words "$MAX_WORDS" \
  --bound "$MAX_QUEUE_SECONDS" --workers "$WORKERS" --out "$OUT/flood.json"
