#!/usr/bin/env bash
# The LLM annotator against a real OpenAI-compatible server (optional; not run by CI): builds
# llama-cpp-python's server from PyPI (it compiles llama.cpp from source, ~10 minutes on 2 cores), serves the
# shipped SmolLM2-135M GGUF on loopback, runs `wildfb classify --annotator openai` (and `cascade`) on the dev
# set through it, and prints `wildfb agree` for each. A 135M model labels poorly; the point is that the real
# wire works end to end: its JSON, its errors, its `[[n]]` adherence (unparseable answers are counted, never
# turned into labels).
#
#   scripts/labels/llm-server.sh              # everything under out/labels-llm/
#   LIMIT=40 scripts/labels/llm-server.sh     # only the first 40 dev items
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
OUT=${OUT:-out/labels-llm}
VENV=${VENV:-$ROOT/.venv-llama}
PORT=${PORT:-8011}
LIMIT=${LIMIT:-0}
mkdir -p "$OUT"

scripts/fetch-assets.sh
GGUF=${WILDREWARD_ASSETS:-$ROOT/assets}/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
cargo build -q --workspace  # the whole workspace: reuses the target the tests built
WILDFB=$ROOT/target/debug/wildfb

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'llama-cpp-python[server]'
fi

"$VENV/bin/python" -m llama_cpp.server --model "$GGUF" --host 127.0.0.1 --port "$PORT" \
  --n_ctx 8192 --model_alias smollm2 >"$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null && break
  sleep 1
done
curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null || { echo "server did not start: $OUT/server.log" >&2; exit 1; }

# Settings: the embedded defaults with answers capped at 64 tokens (SmolLM2's context is 8k) and two
# requests in flight (llama.cpp's server decodes one at a time).
CONF=$OUT/config
rm -rf "$CONF"; cp -r configs/wildfb "$CONF"
sed -i -e 's/^feedback_max_tokens = .*/feedback_max_tokens = 64/' -e 's/^refusal_max_tokens = .*/refusal_max_tokens = 16/' \
  -e 's/^concurrency = .*/concurrency = 2/' -e 's/^timeout_secs = .*/timeout_secs = 120/' "$CONF/collect.toml"

ITEMS=data/feedback-dev/items.jsonl
if [ "$LIMIT" -gt 0 ]; then head -n "$LIMIT" "$ITEMS" >"$OUT/items.jsonl"; ITEMS=$OUT/items.jsonl; fi

for annotator in openai cascade; do
  mkdir -p "$OUT/$annotator"
  "$WILDFB" classify --input "$ITEMS" --out "$OUT/$annotator" --annotator "$annotator" --config "$CONF/collect.toml" \
    --api-base "http://127.0.0.1:$PORT/v1" --model smollm2 >"$OUT/$annotator/stats.stdout.json" 2>"$OUT/$annotator.log" || {
      echo "classify --annotator $annotator failed: $OUT/$annotator.log" >&2; exit 1; }
  echo "== $annotator (SmolLM2-135M through llama.cpp's OpenAI-compatible server) =="
  python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print("api:", json.dumps(s.get("api")), "dropped:", s.get("drops"))' "$OUT/$annotator/stats.json"
  "$WILDFB" agree --gold data/feedback-dev/gold.jsonl --pred "$OUT/$annotator" --out "$OUT/$annotator" --allow-missing
done
