#!/usr/bin/env bash
# Small-scale version of the paper's comparison, on CPU with SmolLM2-135M-Instruct (head-only training):
#   (a) the ordinal reward model trained on WildFB-format data that `wildfb collect` makes from the shipped
#       ShareGPT conversations (rules annotator),
#   (b) the conventional Bradley-Terry baseline trained on an equal number of HH-RLHF pairs held apart from
#       the evaluation pairs (data/hh-rlhf/*.bt-train.jsonl.gz),
#   (c) the untrained (seeded random) head,
# all evaluated by `wildreward eval` on RM-Bench, JudgeBench, held-out HH pairs and the WildFB test split.
# Writes $OUT/summary.md and $OUT/summary.json (and every report under $OUT/eval/). Re-runs reuse finished
# steps and the score cache. Sized to finish well under an hour on 2 cores; every size is an env variable:
#
#   scripts/experiments/small-scale.sh
#   N_TRAIN=300 HH_LIMIT=120 scripts/experiments/small-scale.sh       # bigger
#   ONLY_UNTRAINED=1 scripts/experiments/small-scale.sh               # just the untrained head
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/out/experiments/small-scale}
N_TRAIN=${N_TRAIN:-160}        # ordinal examples = BT pairs (at most 360: the rest of the 400 BT pairs is its test split)
MAX_LENGTH=${MAX_LENGTH:-256}  # tokens per text, training and evaluation (the template alone is ~200)
EPOCHS=${EPOCHS:-40}           # head-only: epochs after the first reuse the cached backbone features
LR=${LR:-2e-3}
BATCH=${BATCH:-16}
RM_LIMIT=${RM_LIMIT:-12}       # RM-Bench prompts (6 texts each)
JB_LIMIT=${JB_LIMIT:-20}       # JudgeBench pairs
HH_LIMIT=${HH_LIMIT:-40}       # held-out HH pairs
WF_LIMIT=${WF_LIMIT:-40}       # WildFB test examples
ONLY_UNTRAINED=${ONLY_UNTRAINED:-0}
MODEL=$ROOT/assets/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
if [ "$N_TRAIN" -gt 360 ]; then echo "N_TRAIN must be at most 360" >&2; exit 2; fi

scripts/fetch-assets.sh
cargo build -q -p wildreward -p wildfb
cargo build -q -p wildreward-eval --example hh_to_pairs
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug
mkdir -p "$OUT"
log() { printf '\n== %s\n' "$*"; }
SECONDS=0

# 1. Data: WildFB-format records from the shipped conversations, BT pairs from the held-apart HH slice.
if [ ! -f "$OUT/wildfb/train.jsonl" ]; then
  log "wildfb import + collect (rules annotator)"
  "$BIN/wildfb" import sharegpt --input data/sharegpt/sharegpt_v3_multiturn_2000.jsonl.gz \
    --out "$OUT/sharegpt.parquet"
  "$BIN/wildfb" collect --input "$OUT/sharegpt.parquet" --out "$OUT/wildfb" --annotator rules --test-count 200
fi
if [ ! -f "$OUT/hh-bt/train.jsonl" ]; then
  log "HH pairs for the BT baseline (held apart from the evaluation pairs)"
  mkdir -p "$OUT/hh-bt"
  "$BIN/examples/hh_to_pairs" "$OUT/hh-bt/all.jsonl" data/hh-rlhf/*.bt-train.jsonl.gz
  # A seeded shuffle so the subsets mix, then N_TRAIN pairs to train on and the rest as the trainer's test split.
  python3 - "$OUT/hh-bt" "$N_TRAIN" <<'PY'
import random, sys
d, n = sys.argv[1], int(sys.argv[2])
lines = open(f"{d}/all.jsonl").read().splitlines()
random.Random(0).shuffle(lines)
open(f"{d}/train.jsonl", "w").write("\n".join(lines[:n]) + "\n")
open(f"{d}/test.jsonl", "w").write("\n".join(lines[n:]) + "\n")
PY
fi

# 2. Training (head only, same backbone, same sizes).
train() { # NAME LOSS DATA
  local name=$1 loss=$2 data=$3
  if [ -f "$OUT/$name/model.safetensors" ]; then return 0; fi
  log "train $name (--loss $loss, $N_TRAIN examples)"
  "$BIN/wildreward" train --model "$MODEL" --data "$data" --out "$OUT/$name" --train head --loss "$loss" \
    --train-limit "$N_TRAIN" --eval-limit 20 --epochs "$EPOCHS" --max-length "$MAX_LENGTH" \
    --batch-size "$BATCH" --lr "$LR" --seed 0 --quiet
}
# 3. Evaluation: a model on every benchmark, scores cached per model; the summary is rewritten after each.
evaluate() { # NAME MODEL
  local name=$1 model=$2 bench limit spec short
  for bench in rm-bench:$RM_LIMIT judgebench:$JB_LIMIT hh:$HH_LIMIT "wildfb:$OUT/wildfb/test.jsonl:$WF_LIMIT"; do
    limit=${bench##*:} spec=${bench%:*} short=${spec%%:*}
    log "eval $name on $short (limit $limit)"
    "$BIN/wildreward" eval --model "$model" --bench "$spec" --out "$OUT/eval/$name/$short" \
      --limit "$limit" --max-length "$MAX_LENGTH" --cache-dir "$OUT/cache"
  done
  summarise
}

# 4. Summary table of whatever has been evaluated so far.
summarise() {
python3 - "$OUT" "$SECONDS" "$N_TRAIN" "$MAX_LENGTH" <<'PY'
import json, os, sys
out, seconds, n_train, max_length = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def report(model, bench):
    p = f"{out}/eval/{model}/{bench}/report.json"
    return json.load(open(p)) if os.path.exists(p) else None
def pct(x):
    return "–" if x is None else f"{100 * x:.1f}"
def num(x):
    return "–" if x is None else f"{x:.3f}"
def at(curve, t):
    p = next((p for p in curve if abs(p["threshold"] - t) < 1e-9), None)
    return (p["accuracy"], p["coverage"]) if p else (None, None)
rows, summary = [], {}
for model in ["untrained", "ordinal", "bt"]:
    rm, jb, hh, wf = (report(model, b) for b in ["rm-bench", "judgebench", "hh", "wildfb"])
    if rm is None:
        continue
    o = rm["rm_bench"]["overall"]
    hh02 = at(hh["threshold_curve"], 0.2)
    cal = (wf or {}).get("calibration") or {}
    s = {
        "rm_bench": {k: o[k] for k in ["easy", "normal", "hard", "average"]},
        "judgebench": jb["accuracy"], "judgebench_ci95": jb["accuracy_ci95"],
        "hh": hh["accuracy"], "hh_ci95": hh["accuracy_ci95"], "hh_auc": hh["consistency_auc"],
        "hh_acc_at_0.2": hh02[0], "hh_coverage_at_0.2": hh02[1],
        "wildfb_accuracy": (wf or {}).get("accuracy"), "wildfb_accuracy_kind": (wf or {}).get("accuracy_kind"),
        "wildfb_auc": (wf or {}).get("consistency_auc"), "wildfb_ece": cal.get("ece"),
    }
    summary[model] = s
    ci = lambda r: f"{pct(r['accuracy'])} ({pct(r['accuracy_ci95'][0])}–{pct(r['accuracy_ci95'][1])})"
    rows.append(" | ".join([f"| {model}", pct(o["easy"]), pct(o["normal"]), pct(o["hard"]), pct(o["average"]),
                            ci(jb), ci(hh), f"{pct(hh02[0])} / {pct(hh02[1])}", num(hh["consistency_auc"]),
                            num(s["wildfb_auc"]), num(s["wildfb_ece"])]) + " |")
units = {b: (report("untrained", b) or {}).get("units") for b in ["rm-bench", "judgebench", "hh", "wildfb"]}
md = [f"Sizes: {n_train} training examples per trained model, max length {max_length} tokens; evaluated units: "
      + ", ".join(f"{b} {u}" for b, u in units.items()) + f". Wall time of this run: {seconds} s.", "",
      "| model | RM-Bench easy | normal | hard | avg | JudgeBench (95% CI) | HH held-out (95% CI) | HH acc / coverage at \\|Δr\\| ≥ 0.2 | HH AUC | WildFB AUC | WildFB ECE |",
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", *rows]
open(f"{out}/summary.md", "w").write("\n".join(md) + "\n")
json.dump({"sizes": {"n_train": n_train, "max_length": max_length, "units": units}, "seconds": seconds,
           "models": summary}, open(f"{out}/summary.json", "w"), indent=2)
print("\n".join(md))
PY
}

evaluate untrained "$MODEL"
if [ "$ONLY_UNTRAINED" != 1 ]; then
  train rm-ordinal ordinal "$OUT/wildfb"
  evaluate ordinal "$OUT/rm-ordinal"
  train rm-bt bt "$OUT/hh-bt"
  evaluate bt "$OUT/rm-bt"
fi
