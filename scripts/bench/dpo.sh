#!/usr/bin/env bash
# Online-DPO speed, Rust (candle) vs PyTorch + transformers, on the same weights (the SmolLM2 GGUF) and
# token ids: rollout tokens/s with the KV cache (n samples of exactly NEW tokens, temperature 1,
# top-p 0.9) and the time of one full-weight DPO step on one pair. Not part of CI. Prints a markdown table.
#   scripts/bench/dpo.sh            # N=8 NEW=128 STEPS=3
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
VENV=${VENV:-$ROOT/.venv-ref}
OUT=${OUT:-$ROOT/out/bench-dpo}
N=${N:-8}; NEW=${NEW:-128}; STEPS=${STEPS:-3}
mkdir -p "$OUT"
scripts/fetch-assets.sh >/dev/null
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import torch, transformers, gguf" 2>/dev/null \
  || "$VENV/bin/pip" install -q --disable-pip-version-check torch transformers accelerate gguf
cargo build -q -p online-dpo --example bench_dpo
DIR=assets/smollm2-135m-instruct
GGUF=SmolLM2-135M-Instruct.Q4_1.gguf
PROMPT=$(head -n 1 data/mt-bench/question.jsonl | python3 -c 'import json,sys; print(json.load(sys.stdin)["turns"][0])')
r=$(target/debug/examples/bench_dpo "$DIR/$GGUF" "$PROMPT" "$OUT/pair.json" "$N" "$NEW" "$STEPS")
p=$("$VENV/bin/python" scripts/bench/dpo_reference.py "$DIR" "$GGUF" "$OUT/pair.json" "$N" "$NEW" "$STEPS" 2>/dev/null)
echo "$r" > "$OUT/rust.json"; echo "$p" > "$OUT/torch.json"
python3 - "$r" "$p" <<'PY'
import json, sys
r, p = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print("| measure | Rust | PyTorch | Rust vs PyTorch |\n|---|---|---|---|")
print(f"| rollout tokens/s ({r['n']} × {r['new_tokens']} new, prompt {r['prompt_tokens']}) | "
      f"{r['gen_tokens_per_s']:.1f} | {p['gen_tokens_per_s']:.1f} | "
      f"{r['gen_tokens_per_s'] / p['gen_tokens_per_s']:.2f}× |")
print(f"| DPO step, full weights, one pair (s) | {r['dpo_step_seconds']:.2f} | {p['dpo_step_seconds']:.2f} | "
      f"{p['dpo_step_seconds'] / r['dpo_step_seconds']:.2f}× |")
PY
