#!/usr/bin/env bash
# Sentences/s of hindsight's MiniLM embedder (not a timed test), all in one run on the same real
# sentences (distinct user messages of the shipped ShareGPT sample, cut at 128 tokens as hindsight
# does): the packed forward (wildfb::embed::SentenceEmbedder, on wildreward-model's AVX-512 matmul),
# the previous candle BertModel path (wildfb::embed::reference), and PyTorch sentence-transformers in
# f32 and bf16 (the peer), 2 threads each, fastest of REPEATS passes. Prints a Markdown table.
#
#   scripts/bench/minilm.sh                      # 4000 sentences, 3 passes
#   SENTENCES=2000 REPEATS=2 scripts/bench/minilm.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SENTENCES=${SENTENCES:-4000}
REPEATS=${REPEATS:-3}
MAX_TOKENS=${MAX_TOKENS:-128}
BATCH=${BATCH:-32}
WORK=${WORK:-$ROOT/out/bench-minilm}
VENV=${VENV:-$ROOT/.venv-ref}
export RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-2}

scripts/fetch-assets.sh >/dev/null
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import sentence_transformers" 2>/dev/null \
  || "$VENV/bin/pip" install -q --disable-pip-version-check torch sentence-transformers
cargo build -q --workspace --example bench_embed  # the whole workspace: reuses the tests' target
mkdir -p "$WORK"
RUST=$("$CARGO_TARGET_DIR/debug/examples/bench_embed" --sentences "$SENTENCES" --repeats "$REPEATS" \
  --max-tokens "$MAX_TOKENS" --batch-size "$BATCH" \
  --texts-out "$WORK/texts.json" --embeddings-out "$WORK/packed.f32")
PEER=$("$VENV/bin/python" scripts/bench/minilm_reference.py bench "$WORK/texts.json" "$WORK/packed.f32" \
  "$MAX_TOKENS" "$BATCH" "$REPEATS" 2>/dev/null)
echo "$RUST" >"$WORK/rust.json"
echo "$PEER" >"$WORK/peer.json"

python3 - "$RUST" "$PEER" "$(lscpu | sed -n 's/^Model name: *//p')" <<'PY'
import json, sys
r, p, cpu = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
packed = r["packed_sentences_per_s"]
print(f"{r['sentences']:,} sentences, {r['tokens']:,} tokens (at most {r['max_tokens']} each), "
      f"{r['threads']} threads, fastest of {r['repeats']}; CPU: {cpu}\n")
print("| embedder | sentences/s | tokens/s | packed / this |")
print("|---|---:|---:|---:|")
rows = [
    ("wildfb packed forward (this crate's sgemm)", packed),
    ("wildfb candle BertModel (before)", r["candle_sentences_per_s"]),
    (f"sentence-transformers f32 (torch {p['torch']})", p["f32_sentences_per_s"]),
    (f"sentence-transformers bf16 (torch {p['torch']})", p["bf16_sentences_per_s"]),
]
for name, sps in rows:
    print(f"| {name} | {sps:,.0f} | {sps * r['tokens'] / r['sentences']:,.0f} | {packed / sps:.2f}× |")
print(f"\npacked vs candle: max |diff| {r['max_abs_diff']:.2e}, min cosine {r['min_cosine']:.7f}; "
      f"packed vs sentence-transformers f32: max |diff| {p['rust_vs_st_max_abs_diff']:.2e}, "
      f"min cosine {p['rust_vs_st_min_cosine']:.7f}; bf16 vs f32 min cosine {p['bf16_vs_f32_min_cosine']:.5f}")
PY
