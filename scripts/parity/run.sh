#!/usr/bin/env bash
# Parity of our model core with PyTorch + transformers on SmolLM2 (weights, tokenizer, rewards).
# Installs torch / transformers / gguf from PyPI into .venv-ref (not part of CI), converts the GGUF with
# `wildreward convert`, scores real ShareGPT texts with `wildreward score`, and compares.
#   scripts/parity/run.sh [N_TEXTS]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
N=${1:-60}
VENV=${VENV:-$ROOT/.venv-ref}
OUT=${OUT:-$ROOT/out/parity}
mkdir -p "$OUT"
scripts/fetch-assets.sh
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import torch, transformers, gguf" 2>/dev/null \
  || "$VENV/bin/pip" install -q --disable-pip-version-check torch transformers accelerate gguf
cargo build -q -p wildreward --bins
GGUF=assets/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
target/debug/wildreward convert --model "$GGUF" --out "$OUT/rm" >/dev/null
# Real texts of mixed length and script: ShareGPT messages (English, Chinese, code, digits).
python3 - "$N" > "$OUT/texts.jsonl" <<'PY'
import gzip, json, sys
n = int(sys.argv[1]); out = 0
for line in gzip.open("data/sharegpt/sharegpt_v3_multiturn_2000.jsonl.gz", "rt"):
    conv = json.loads(line)["conversations"]
    for m in conv[:2]:
        if out < n and m["value"].strip():
            print(json.dumps({"text": m["value"][: 200 + 97 * out]})); out += 1
PY
target/debug/wildreward score --model "$OUT/rm" --input "$OUT/texts.jsonl" --output "$OUT/ours.jsonl"
"$VENV/bin/python" scripts/parity/transformers_parity.py "$(dirname "$GGUF")" "$(basename "$GGUF")" \
  "$OUT/rm" "$OUT/texts.jsonl" "$OUT/ours.jsonl" | tee "$OUT/parity.json"
