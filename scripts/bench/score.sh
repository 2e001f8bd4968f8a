#!/usr/bin/env bash
# Scorer throughput, Rust (candle) vs the reference worker (PyTorch + transformers), on the same weights
# (SmolLM2 converted with a seeded head) and the same token ids: real ShareGPT text cut to mixed lengths
# uniform in [L/8, L] for L = 128, 512, 2048, in arrival order. Each side scores each set REPEATS times
# (default 3) and reports its fastest pass, as the matmul peak is the best of several timings; the
# fraction of the peak at the median pass is printed too. Not part of CI. Prints a markdown table.
#   scripts/bench/score.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
VENV=${VENV:-$ROOT/.venv-ref}
OUT=${OUT:-$ROOT/out/bench-score}
mkdir -p "$OUT"
scripts/fetch-assets.sh >/dev/null
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import torch, transformers" 2>/dev/null \
  || "$VENV/bin/pip" install -q --disable-pip-version-check torch transformers accelerate gguf
cargo build -q --bins --example bench_score -p wildreward-model -p wildreward
target/debug/wildreward convert --model assets/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \
  --out "$OUT/rm" >/dev/null 2>&1
"$VENV/bin/python" - "$OUT" <<'PY'
import gzip, json, random, sys
from tokenizers import Tokenizer
out = sys.argv[1]
tok = Tokenizer.from_file(f"{out}/rm/tokenizer.json")
text = ""
for line in gzip.open("data/sharegpt/sharegpt_v3_multiturn_2000.jsonl.gz", "rt"):
    text += " ".join(m["value"] for m in json.loads(line)["conversations"]) + "\n"
    if len(text) > 2_000_000: break
ids = tok.encode(text).ids
rng = random.Random(0)
for L, n in [(128, 128), (512, 48), (2048, 12)]:
    with open(f"{out}/ids-{L}.jsonl", "w") as f:
        for _ in range(n):
            k = rng.randint(L // 8, L); s = rng.randint(0, len(ids) - k)
            f.write(json.dumps({"ids": ids[s:s + k]}) + "\n")
PY
export REPEATS=${REPEATS:-3}
printf '| max length | texts | tokens | Rust texts/s | PyTorch texts/s | speed-up | Rust useful GFLOP/s | of f32 matmul peak | median pass |\n|---|---|---|---|---|---|---|---|---|\n'
for L in 128 512 2048; do
  r=$(target/debug/examples/bench_score "$OUT/rm" "$OUT/ids-$L.jsonl")
  p=$("$VENV/bin/python" scripts/bench/score_reference.py "$OUT/rm" "$OUT/ids-$L.jsonl" 2>/dev/null)
  echo "$r" > "$OUT/rust-$L.json"; echo "$p" > "$OUT/torch-$L.json"
  python3 - "$L" "$r" "$p" <<'PY'
import json, sys
L, r, p = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
print(f"| {L} | {r['texts']} | {r['tokens']} | {r['texts_per_s']:.2f} | {p['texts_per_s']:.2f} | "
      f"{r['texts_per_s'] / p['texts_per_s']:.2f}× | {r['useful_gflops']:.1f} | "
      f"{100 * r['fraction_of_peak']:.0f}% of {r['matmul_peak_gflops']:.0f} | "
      f"{100 * r['fraction_of_peak_median']:.0f}% |")
assert abs(r["mean_reward"] - p["mean_reward"]) < 1e-3, ("rewards differ", r["mean_reward"], p["mean_reward"])
PY
done
