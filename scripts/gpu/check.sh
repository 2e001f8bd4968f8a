#!/usr/bin/env bash
# The CUDA path on a GPU machine (issue 18), in one run of under 8 minutes. That machine has nvcc
# 13.0, the CUDA libraries and PyTorch + transformers, but no Rust and no network; the tree brings
# gpu-bundle/ (scripts/gpu/pack.sh: the release `wildreward` built here with `--features cuda`, xz,
# and SmolLM2's tokenizer files) and the ShareGPT sample in data/. It:
#   1. builds a random LlamaForSequenceClassification with Llama-3-8B's layer shape (LAYERS layers,
#      bf16, SmolLM2's vocabulary) with transformers, and 1,024 templated ShareGPT texts of <= 512 ids;
#   2. parity: `wildreward score --device cuda:0` against transformers on the same texts, bf16 and f32;
#   3. scoring texts/s against transformers bf16 + SDPA, sorted by length, batches by token budget;
#   4. LoRA training steps (r 16, 7 projections, batch 4 x <= 512) against the same in PyTorch.
# Prints a markdown table and writes $OUT/gpu-check.json.
#
#   scripts/gpu/check.sh                      # on the GPU machine
#   DEVICE=cpu LAYERS=2 HIDDEN=256 INTERMEDIATE=512 HEADS=4 KV_HEADS=2 TEXTS=64 \
#     BIN=target/debug/wildreward scripts/gpu/check.sh   # a dry run of the same steps on CPU, here
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/out/gpu-check}
BUNDLE=${BUNDLE:-$ROOT/gpu-bundle}
DEVICE=${DEVICE:-cuda:0}
export DEVICE_TORCH=${DEVICE%%:*}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
log() { echo "[$(date +%T)] $*" >&2; }

if [ -z "${BIN:-}" ]; then
  BIN=$WORK/wildreward
  xz -dc "$BUNDLE/wildreward.xz" >"$BIN"
  chmod +x "$BIN"
fi
if [ "$DEVICE_TORCH" = cuda ]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt" >&2 || true
  # The CUDA libraries the binary links (cuBLAS, cuBLASLt, cuRAND, NVRTC) from PyTorch's wheels.
  LIBS=$(python3 -c 'import glob, os, site
dirs = set()
for sp in site.getsitepackages():
    for pat in ("nvidia/*/lib", "nvidia/cu*/lib", "torch/lib"):
        dirs.update(os.path.dirname(p) for p in glob.glob(os.path.join(sp, pat, "lib*.so*")))
print(":".join(sorted(dirs)))')
  export LD_LIBRARY_PATH=$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  ldd "$BIN" | grep -E 'cuda|cublas|curand|nvrtc' >&2 || true
fi
PY="python3 scripts/gpu/gpu_check.py"
run_py() { DEVICE=$DEVICE_TORCH $PY "$@"; }

log "1/4 model and texts"
run_py model "$WORK/model" "$BUNDLE/tokenizer" | tee "$OUT/model.json" >&2
run_py data "$WORK/data" data/sharegpt/sharegpt_v3_multiturn_2000.jsonl.gz "$BUNDLE/tokenizer" >&2
head -64 "$WORK/data/texts.jsonl" >"$WORK/data/texts64.jsonl"
# Ours scores the texts twice in one run (its first batches pay the kernels' load, once).
cat "$WORK/data/texts.jsonl" "$WORK/data/texts.jsonl" >"$WORK/data/texts2.jsonl"

log "2/4 parity (bf16 on every text, f32 on 64)"
"$BIN" score --model "$WORK/model" --input "$WORK/data/texts2.jsonl" --output "$WORK/ours-bf16.jsonl" \
  --device "$DEVICE" --dtype "$([ "$DEVICE_TORCH" = cuda ] && echo bf16 || echo f32)" --max-length 512 \
  --report "$OUT/ours-bf16.json"
"$BIN" score --model "$WORK/model" --input "$WORK/data/texts64.jsonl" --output "$WORK/ours-f32.jsonl" \
  --device "$DEVICE" --dtype f32 --max-length 512 --report "$OUT/ours-f32.json"
log "3/4 transformers scoring"
run_py score "$WORK/model" "$WORK/data/texts.jsonl" "$([ "$DEVICE_TORCH" = cuda ] && echo bf16 || echo f32)" "$OUT/torch-bf16.json" >/dev/null
REPEATS=1 run_py score "$WORK/model" "$WORK/data/texts64.jsonl" f32 "$OUT/torch-f32.json" >/dev/null

log "4/4 LoRA steps"
"$BIN" train --model "$WORK/model" --data "$WORK/data/train" --out "$WORK/lora" --train lora:16 \
  --max-steps "${STEPS:-6}" --batch-size 4 --grad-accum 1 --max-length 512 --device "$DEVICE" \
  --eval-every 100000 --quiet >"$OUT/ours-train.log" 2>&1 || { tail -20 "$OUT/ours-train.log" >&2; exit 1; }
cp "$WORK/lora/metrics.jsonl" "$OUT/ours-train-metrics.jsonl"
run_py lora "$WORK/model" "$WORK/data/train/train.jsonl" "$OUT/torch-lora.json" >/dev/null

python3 - "$OUT" "$WORK" <<'PY'
import json, statistics, sys
out, work = sys.argv[1], sys.argv[2]
def rewards(path):
    return [json.loads(l)["reward"] for l in open(path)]
def parity(ours, torch_json):
    theirs = json.load(open(torch_json))["rewards"]
    d = [abs(a - b) for a, b in zip(ours, theirs)]
    return {"n": len(d), "max_abs_diff": max(d), "mean_abs_diff": sum(d) / len(d),
            "spread": statistics.pstdev(theirs)}
ours_bf16 = rewards(f"{work}/ours-bf16.jsonl")
n = len(json.load(open(f"{out}/torch-bf16.json"))["rewards"])
report = {
    "parity_bf16": parity(ours_bf16[n:], f"{out}/torch-bf16.json"),
    "parity_f32": parity(rewards(f"{work}/ours-f32.jsonl"), f"{out}/torch-f32.json"),
    "ours_score": json.load(open(f"{out}/ours-bf16.json")),
    "torch_score": {k: v for k, v in json.load(open(f"{out}/torch-bf16.json")).items() if k != "rewards"},
}
steps = [json.loads(l) for l in open(f"{out}/ours-train-metrics.jsonl")]
secs = sorted(s["seconds"] for s in steps if "seconds" in s and s.get("split") != "test")
report["ours_lora_step_seconds_median"] = secs[len(secs) // 2] if secs else None
report["torch_lora"] = json.load(open(f"{out}/torch-lora.json"))
json.dump(report, open(f"{out}/gpu-check.json", "w"), indent=2)
o, t = report["ours_score"], report["torch_score"]
print("| check | wildreward | transformers / PyTorch | ratio |\n|---|---:|---:|---:|")
for k in ("parity_bf16", "parity_f32"):
    p = report[k]
    print(f"| {k}: max / mean abs diff of rewards (n {p['n']}, spread {p['spread']:.3f}) | {p['max_abs_diff']:.2e} / {p['mean_abs_diff']:.2e} | | |")
print(f"| scoring texts/s ({t['texts']} texts, {o['dtype']}) | {o['texts_per_s']:.1f} | {t['texts_per_s']:.1f} | {o['texts_per_s'] / t['texts_per_s']:.2f}x |")
ol, tl = report["ours_lora_step_seconds_median"], report["torch_lora"]["step_seconds_median"]
if ol:
    print(f"| LoRA step seconds (batch 4, <= 512 ids), median | {ol:.3f} | {tl:.3f} | {tl / ol:.2f}x |")
PY
