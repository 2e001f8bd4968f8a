#!/usr/bin/env bash
# Our saved reward heads in transformers: a CORN head trained by `wildreward train` loads in
# LlamaForSequenceClassification and gives `wildreward score`'s rewards through CORN's formula; a CORAL
# head could not load (why `train`/`convert` refuse to save one). torch + transformers from PyPI into
# .venv-ref (not part of CI).
#   scripts/parity/heads.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
VENV=${VENV:-$ROOT/.venv-ref}
OUT=${OUT:-$ROOT/out/parity-heads}
mkdir -p "$OUT"
scripts/fetch-assets.sh
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import torch, transformers" 2>/dev/null \
  || "$VENV/bin/pip" install -q --disable-pip-version-check torch transformers
cargo build -q -p wildreward --bins
GGUF=assets/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
target/debug/wildreward train --model "$GGUF" --data crates/wildreward-train/tests/fixtures/wildfb \
  --out "$OUT/corn" --loss corn --train head --max-steps 4 --batch-size 2 --max-length 256 \
  --train-limit 8 --eval-limit 2 --quiet >/dev/null
python3 - > "$OUT/texts.jsonl" <<'PY'
import json
for t in ["Hello there", "What is 2+2? It is 4.", "Write a haiku about the sea.\n\nWaves fold into foam."]:
    print(json.dumps({"text": t}))
PY
target/debug/wildreward score --model "$OUT/corn" --input "$OUT/texts.jsonl" --output "$OUT/ours.jsonl"
"$VENV/bin/python" scripts/parity/heads.py "$OUT/corn" "$OUT/texts.jsonl" "$OUT/ours.jsonl"
