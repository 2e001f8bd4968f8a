#!/usr/bin/env bash
# Benchmark of `wildfb collect` (not a timed test). Two figures:
#  1. the non-API steps (preprocess, classify with rules, hindsight with MiniLM, refusal, split) on a
#     scaled-up input: instances/s per step and overall, and peak RSS;
#  2. the API step (classify with the LLM annotator) against the local fake server answering after
#     100 ms, 512 requests in flight: achieved requests/s as a fraction of the bound 512 / 0.1 s.
# Prints a Markdown section to paste into docs/benchmarks.md.
#
#   scripts/bench/collect.sh                       # 100k conversations, 512 in flight
#   CONVERSATIONS=20000 API_CONVERSATIONS=4000 scripts/bench/collect.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
CONVERSATIONS=${CONVERSATIONS:-100000}
API_CONVERSATIONS=${API_CONVERSATIONS:-6000}
CONCURRENCY=${CONCURRENCY:-512}
LATENCY_MS=${LATENCY_MS:-100}
WORK=${WORK:-$ROOT/out/bench-collect}
BIN=$CARGO_TARGET_DIR/debug

scripts/fetch-assets.sh >/dev/null
cargo build -p wildfb --bins --examples --quiet
mkdir -p "$WORK"

"$BIN/wildfb" import sharegpt --input data/sharegpt/sharegpt_v3_multiturn_2000.jsonl.gz \
  --out "$WORK/sample.parquet" >/dev/null
rm -rf "$WORK/scaled" "$WORK/api-input" "$WORK/run" "$WORK/api-run"
"$BIN/examples/scale_input" "$WORK/sample.parquet" "$WORK/scaled" "$CONVERSATIONS"
"$BIN/examples/scale_input" "$WORK/sample.parquet" "$WORK/api-input" "$API_CONVERSATIONS"

# 1. Non-API steps.
/usr/bin/time -v "$BIN/wildfb" collect --input "$WORK/scaled" --out "$WORK/run" --annotator rules \
  --quiet >/dev/null 2>"$WORK/run.time"
RSS_KB=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/run.time")
WALL=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$WORK/run.time")

# 2. API step against the fake (killed on exit).
"$BIN/examples/fake_openai" --latency-ms "$LATENCY_MS" >"$WORK/fake.log" &
FAKE=$!
trap 'kill $FAKE 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q listening "$WORK/fake.log" && break; sleep 0.1; done
API_BASE=$(awk '/listening on/ {print $3}' "$WORK/fake.log")
"$BIN/wildfb" collect --input "$WORK/api-input" --out "$WORK/api-run" --step preprocess --quiet >/dev/null 2>&1
"$BIN/wildfb" collect --input "$WORK/api-input" --out "$WORK/api-run" --step classify --annotator openai \
  --api-base "$API_BASE" --model bench --concurrency "$CONCURRENCY" --quiet >/dev/null 2>"$WORK/api.log"

python3 - "$WORK" "$CONVERSATIONS" "$RSS_KB" "$WALL" "$CONCURRENCY" "$LATENCY_MS" "$(nproc)" <<'PY'
import json, sys
work, convs, rss_kb, wall, conc, lat_ms, cpus = sys.argv[1:]
run = json.load(open(f"{work}/run/stats.json"))["steps"]
api = json.load(open(f"{work}/api-run/stats.json"))["steps"]["classify"]["api"]
inst = run["preprocess"]["rows_out"]
total = sum(s["seconds"] for s in run.values())
print(f"### wildfb collect ({int(convs):,} conversations, {cpus} CPUs)\n")
print("| step | rows in | rows out | seconds | instances/s |")
print("|---|---:|---:|---:|---:|")
for name in ["preprocess", "classify", "hindsight", "refusal", "split"]:
    s = run[name]
    print(f"| {name} | {s['rows_in']:,} | {s['rows_out']:,} | {s['seconds']:.1f} | {inst / s['seconds']:,.0f} |")
print(f"| **all non-API steps** | {int(convs):,} conv. | {run['split']['rows_out']:,} records | {total:.1f} | **{inst / total:,.0f}** |\n")
h = run["hindsight"]["details"]
print(f"- instances: {inst:,}; hindsight embedded {h['embeddings_computed']:,} sentences in "
      f"{h['embedding_seconds']:.1f} s ({h['embeddings_computed'] / max(h['embedding_seconds'], 1e-9):,.0f}/s), "
      f"relabelled {h['relabelled']:,}")
print(f"- peak RSS: {int(rss_kb) / 1024:,.0f} MiB (`/usr/bin/time -v`), wall {wall}")
bound = int(conc) / (int(lat_ms) / 1000)
print(f"- API step: {api['requests']:,} requests in {api['seconds']:.1f} s = **{api['requests_per_second']:,.0f} req/s** "
      f"at {conc} in flight against a fake answering after {lat_ms} ms: "
      f"**{api['requests_per_second'] / bound:.0%}** of the bound {bound:,.0f} req/s "
      f"(failed {api['failed']}, retries {api['retries']})")
PY
