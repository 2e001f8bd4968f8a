#!/usr/bin/env bash
# OpenRLHF's own HTTP reward client against `wildreward serve --query-format openrlhf` (not CI).
# Installs the real `openrlhf` package from PyPI without its dependencies (no torch, no ray) plus
# aiohttp in a venv, loads `openrlhf.utils.agent` (SingleTurnAgentExecutor, what
# `--reward.remote_url` uses) without running the package's __init__ (which imports torch), and
# calls its `_fetch_rewards_via_http` on a ChatML prompt + response exactly as its executor does:
# one `{"query", "prompts", "labels"}` per sample, reading `scores` (then `rewards`) and
# `extra_logs`. The query is decoded with clean-up spaces, so the prompt is not a prefix of it
# (the assistant-marker rule finds the response). Checks the score equals /score's for the same
# (history, query, response).
#
#   scripts/serve/openrlhf_client.sh        # knobs: VENV MODEL
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
VENV=${VENV:-$ROOT/.venv-openrlhf}
MODEL=${MODEL:-assets/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/wildreward
OUT=${OUT:-$ROOT/out/openrlhf-client}
mkdir -p "$OUT"

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import aiohttp, importlib.util as u; assert u.find_spec('openrlhf')" 2>/dev/null || {
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps openrlhf
  "$VENV/bin/pip" install -q --disable-pip-version-check aiohttp
}
cargo build -q --bin wildreward -p wildreward

"$BIN" serve --model "$MODEL" --workers 1 --port 0 --worker-port 0 --max-length 512 \
  --query-format openrlhf >"$OUT/server.stdout" 2>"$OUT/server.log" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -q 'listening on' "$OUT/server.stdout" && break; sleep 0.1; done
URL=$(grep -o 'http://[0-9.:]*' "$OUT/server.stdout" | head -1)
for _ in $(seq 1 1200); do curl -sf "$URL/health" >/dev/null && break; sleep 0.25; done

"$VENV/bin/python" - "$URL" <<'PY'
import asyncio, importlib.util, json, pathlib, sys, types, urllib.request
url = sys.argv[1]
# Load openrlhf.utils.agent without the package __init__ files (they import torch).
root = pathlib.Path(importlib.util.find_spec("openrlhf").submodule_search_locations[0])
for name, path in [("openrlhf", root), ("openrlhf.utils", root / "utils")]:
    m = types.ModuleType(name); m.__path__ = [str(path)]; sys.modules[name] = m
from openrlhf.utils.agent import SingleTurnAgentExecutor
from importlib.metadata import version as package_version
version = package_version("openrlhf")

prompt = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
          "<|im_start|>user\nWhat 's the capital of France ?<|im_end|>\n<|im_start|>assistant\n")
# The policy's decode of prompt + response with clean_up_tokenization_spaces: " 's" -> "'s", " ?" -> "?".
query = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
         "<|im_start|>user\nWhat's the capital of France?<|im_end|>\n<|im_start|>assistant\n"
         "The capital of France is Paris.<|im_end|>\n<|endoftext|>")
executor = SingleTurnAgentExecutor(remote_rm_url=f"{url}/get_reward")
info = asyncio.run(executor._fetch_rewards_via_http([query], [prompt], ["4"]))[0]
score = info.get("scores")
if score is None:
    score = info.get("rewards")
assert isinstance(score, list) and len(score) == 1, info
assert "extra_logs" in info, info

body = json.dumps({"items": [{"query": "What 's the capital of France ?",
                              "response": "The capital of France is Paris."}]}).encode()
req = urllib.request.Request(f"{url}/score", body, {"Content-Type": "application/json"})
want = json.load(urllib.request.urlopen(req))["rewards"][0]
assert abs(score[0] - want) < 1e-5, (score, want)
print(json.dumps({"openrlhf": version, "score": score[0], "score_via_/score": want, "ok": True}))
PY
