#!/usr/bin/env bash
# Serving throughput and latency: `wildreward serve` (router + N workers, dynamic token-budgeted
# batches sorted by length) vs the reference deployment (FastAPI router + N FastAPI/transformers
# workers, fixed chunks of 16 in arrival order), same weights (SmolLM2 GGUF -> `wildreward convert`,
# seeded head), same texts, same concurrent load, CPU, N = 1, 2, 4 workers, in one run. Not part of CI.
# TEXTS=template (default): what a WildReward server is sent, the reference's template around a real
# ShareGPT user turn (cut to at most 64 tokens) and a real answer cut to a length uniform in
# [MIN_TOKENS, MAX_TOKENS]. TEXTS=raw: bare ShareGPT text cut to that length.
#
#   scripts/bench/serve.sh   # knobs: TEXTS WORKERS_LIST CONCURRENCY BATCH REQUESTS MIN_TOKENS MAX_TOKENS
#                            #        RUST_ARGS (extra `wildreward serve` flags) SIDES ("rust ref")
#
# Prints a markdown table and writes $OUT/report.json (every run's figures and settings).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
VENV=${VENV:-$ROOT/.venv-ref}
OUT=${OUT:-$ROOT/out/bench-serve}
WORKERS_LIST=${WORKERS_LIST:-"1 2 4"}
CONCURRENCY=${CONCURRENCY:-8}
BATCH=${BATCH:-4}
REQUESTS=${REQUESTS:-24}
MIN_TOKENS=${MIN_TOKENS:-16}
MAX_TOKENS=${MAX_TOKENS:-128}
TEXTS=${TEXTS:-template}
RUST_ARGS=${RUST_ARGS:-}
SIDES=${SIDES:-"rust ref"}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/wildreward
mkdir -p "$OUT"

PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; PIDS=(); }
trap cleanup EXIT

scripts/fetch-assets.sh >/dev/null
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import torch, transformers, fastapi, uvicorn, httpx" 2>/dev/null \
  || "$VENV/bin/pip" install -q --disable-pip-version-check torch transformers accelerate gguf fastapi uvicorn httpx
PY="$VENV/bin/python"
cargo build -q --workspace --bins
"$BIN" convert --model assets/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf --out "$OUT/rm" >/dev/null 2>&1

"$PY" - "$OUT" "$MIN_TOKENS" "$MAX_TOKENS" "$TEXTS" <<'PY'
import gzip, json, random, sys
from tokenizers import Tokenizer
out, lo, hi, kind = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
tok = Tokenizer.from_file(f"{out}/rm/tokenizer.json")
# The reference's build_text (crates/wildreward-types/src/template.rs), first turn.
HEADER = ("# Task Description\nYou are an expert conversation evaluator. Your task is to judge the **User's "
          "Satisfaction** with the Assistant's response based on the conversation context.\nPlease rate the "
          "response on a scale of 1 to 5 integers.\n\n# Scoring Criteria\n[1] CLEARLY NEGATIVE / REJECTION\n"
          "[2] CORRECTION / ERROR POINTER (Negative)\n[3] NEUTRAL\n[4] POSITIVE ENGAGEMENT\n[5] CLEAR "
          "SATISFACTION\n\n# Input Data\n## Context (History)\n")
FOOTER = "# Output\nBased on the criteria above, please output ONLY the integer score (1, 2, 3, 4, or 5)."
def build_text(query, response):
    return (HEADER + "No previous context." + "\n\n## User Query\n" + query + "\n\n## Assistant Response\n"
            + response + "\n\n" + FOOTER)
rng = random.Random(0)
def cut(s, lo, hi):
    ids = tok.encode(s).ids
    k = min(len(ids), rng.randint(lo, hi))
    return tok.decode(ids[:k])
pairs, text = [], ""
for line in gzip.open("data/sharegpt/sharegpt_v3_multiturn_2000.jsonl.gz", "rt"):
    turns = json.loads(line)["conversations"]
    text += " ".join(m["value"] for m in turns) + "\n"
    for q, a in zip(turns, turns[1:]):
        if q["from"] == "human" and a["from"] == "gpt" and q["value"].strip() and len(a["value"]) > 4 * hi:
            pairs.append((q["value"], a["value"]))
    if len(text) > 1_000_000 and len(pairs) >= 512: break
ids = tok.encode(text).ids
with open(f"{out}/texts.jsonl", "w") as f:
    for i in range(512):
        if kind == "raw":
            k = rng.randint(lo, hi); s = rng.randint(0, len(ids) - k)
            t = tok.decode(ids[s:s + k])
        else:
            q, a = pairs[i]
            t = build_text(cut(q, 1, 64), cut(a, lo, hi))
        f.write(json.dumps({"text": t}) + "\n")
PY

CORES=$(nproc)
free_ports() { "$PY" -c "
import socket; ss=[socket.socket() for _ in range($1)]
[s.bind(('127.0.0.1', 0)) for s in ss]; print(' '.join(str(s.getsockname()[1]) for s in ss))"; }
wait_http() { for _ in $(seq 1 1200); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.25; done; echo "timeout: $1" >&2; return 1; }
load() { "$PY" scripts/bench/serve_load.py --url "$1/get_reward" --texts "$OUT/texts.jsonl" \
  --concurrency "$CONCURRENCY" --batch "$BATCH" --requests "$REQUESTS" --label "$2"; }

for N in $WORKERS_LIST; do
  THREADS=$(( CORES / N )); [ "$THREADS" -ge 1 ] || THREADS=1
  if [[ " $SIDES " == *" rust "* ]]; then
  # Rust: the fleet spawns N workers (RAYON_NUM_THREADS = cores / N each) behind its router.
  # shellcheck disable=SC2086
  "$BIN" serve --model "$OUT/rm" --allow-untrained-head --workers "$N" --port 0 --worker-port 0 --max-length 512 $RUST_ARGS \
    >"$OUT/rust-$N.stdout" 2>"$OUT/rust-$N.log" &
  PIDS+=($!)
  for _ in $(seq 1 100); do grep -q 'listening on' "$OUT/rust-$N.stdout" && break; sleep 0.1; done
  URL=$(grep -o 'http://[0-9.:]*' "$OUT/rust-$N.stdout" | head -1)
  for _ in $(seq 1 1200); do
    [ "$(curl -sf "$URL/" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["healthy_workers"])' 2>/dev/null)" = "$N" ] && break
    sleep 0.25
  done
  load "$URL" "rust-$N" > "$OUT/rust-$N.json"
  cleanup; sleep 1
  fi

  if [[ " $SIDES " == *" ref "* ]]; then
  # Reference: N workers (torch threads = cores / N each) and its round-robin router.
  read -r -a PORTS <<<"$(free_ports $((N + 1)))"
  BACKENDS=""
  for i in $(seq 0 $((N - 1))); do
    "$PY" scripts/bench/serve_reference.py worker --model "$OUT/rm" --port "${PORTS[$i]}" \
      --threads "$THREADS" --max-length 512 >"$OUT/ref-$N-$i.log" 2>&1 &
    PIDS+=($!)
    BACKENDS+="${BACKENDS:+,}http://127.0.0.1:${PORTS[$i]}"
  done
  "$PY" scripts/bench/serve_reference.py router --backends "$BACKENDS" --port "${PORTS[$N]}" \
    >"$OUT/ref-$N-router.log" 2>&1 &
  PIDS+=($!)
  for b in ${BACKENDS//,/ }; do wait_http "$b/"; done
  wait_http "http://127.0.0.1:${PORTS[$N]}/"
  load "http://127.0.0.1:${PORTS[$N]}" "reference-$N" > "$OUT/ref-$N.json"
  cleanup; sleep 1
  fi
done

for N in $WORKERS_LIST; do [ -f "$OUT/rust-$N.json" ] && [ -f "$OUT/ref-$N.json" ] || exit 0; done
"$PY" - "$OUT" "$CORES" "$CONCURRENCY" "$BATCH" "$REQUESTS" "$MIN_TOKENS" "$MAX_TOKENS" "$WORKERS_LIST" "$TEXTS" "$RUST_ARGS" <<'PY'
import json, subprocess, sys
out, cores, conc, batch, reqs, lo, hi, wl, kind, rust_args = sys.argv[1:11]
rows, report = [], {"cores": int(cores), "concurrency": int(conc), "batch": int(batch), "requests": int(reqs),
                    "texts": kind, "text_tokens": [int(lo), int(hi)], "rust_args": rust_args, "runs": []}
try:
    report["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
except OSError:
    pass
print(f"| workers | Rust texts/s | reference texts/s | throughput ratio | Rust p50 / p99 ms | reference p50 / p99 ms | p99 ratio | errors (Rust / ref) | max abs Δ reward |")
print("|---|---|---|---|---|---|---|---|---|")
for n in wl.split():
    r = json.load(open(f"{out}/rust-{n}.json")); p = json.load(open(f"{out}/ref-{n}.json"))
    common = set(r["rewards"]) & set(p["rewards"])
    delta = max((abs(r["rewards"][k] - p["rewards"][k]) for k in common), default=float("nan"))
    report["runs"].append({"workers": int(n), "rust": {k: v for k, v in r.items() if k != "rewards"},
                           "reference": {k: v for k, v in p.items() if k != "rewards"}, "max_abs_reward_delta": delta})
    print(f"| {n} | {r['texts_per_s']:.2f} | {p['texts_per_s']:.2f} | {r['texts_per_s'] / p['texts_per_s']:.2f}× | "
          f"{r['p50_ms']:.0f} / {r['p99_ms']:.0f} | {p['p50_ms']:.0f} / {p['p99_ms']:.0f} | "
          f"{r['p99_ms'] / p['p99_ms']:.2f} | {r['errors']} / {p['errors']} | {delta:.1e} |")
json.dump(report, open(f"{out}/report.json", "w"), indent=2)
PY
