#!/usr/bin/env bash
# The paper's comparison with enough units to see a 5-point difference, on 2 CPU cores with
# SmolLM2-135M-Instruct. Same backbone, the last N blocks + final norm + head trained (the blocks below
# stay frozen, so their output is computed once per text: `wildreward train --train last-n:N` caches
# it, and `wildreward eval` with several --model runs the shared blocks once for every model), equal
# numbers of training examples, several seeds per arm:
#   ordinal          WildFB-style records `wildfb collect` makes of the shipped ShareGPT sample
#                    (best offline annotator, `cues`, with hindsight mining), ordinal loss
#   bt               Bradley-Terry on as many HH-RLHF pairs, held apart from the evaluation pairs
#   oracle           ordinal loss on the people's labels of the feedback dev + held-out sets
#                    (the agreed, non-neutral ones: what label quality is worth)
#   ordinal-matched  the ordinal arm cut to the oracle's size (the comparison the oracle is read against)
#   untrained        the seeded random head on the frozen backbone (the floor)
# evaluated on RM-Bench and JudgeBench (whole, data/*/full), HH_EVAL held-out HH pairs and the WildFB
# test split (records of the oracle's items removed), all at MAX_LENGTH tokens, the encoding training
# used. Writes $OUT/summary.{json,md} and every report under $OUT/eval/<bench>/<model>/.
# Resumable: a finished model or report is not redone; scores are cached per model.
#
#   scripts/experiments/powered.sh
#   N_TRAIN=1200 SEEDS="0 1 2 3 4" HH_EVAL=2000 scripts/experiments/powered.sh     # bigger
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/out/experiments/powered}
N_TRAIN=${N_TRAIN:-600}          # ordinal records = BT pairs
SEEDS=${SEEDS:-"0 1 2"}
MODE=${MODE:-last-n:2}           # what trains (last-n:N, head, lora:R, full)
MAX_LENGTH=${MAX_LENGTH:-512}    # tokens per text, training and evaluation
EPOCHS=${EPOCHS:-2}
LR=${LR:-3e-4}
BATCH=${BATCH:-16}
HH_EVAL=${HH_EVAL:-1000}         # held-out HH pairs (spread over the four subsets)
RM_LIMIT=${RM_LIMIT:-798}        # RM-Bench prompts (rm-bench-full has 798, the rm-bench slice 120)
JB_LIMIT=${JB_LIMIT:-620}        # JudgeBench pairs (judgebench-full has 620, the judgebench slice 120)
WF_LIMIT=${WF_LIMIT:-600}        # WildFB test examples
TEST_COUNT=${TEST_COUNT:-600}    # WildFB test split asked of `wildfb collect`
# hh, wildfb, rm-bench-full, judgebench-full (data/*/full), or the shipped slices rm-bench, judgebench.
BENCHES=${BENCHES:-"hh wildfb rm-bench-full judgebench-full"}
ARMS=${ARMS:-"ordinal bt oracle ordinal-matched"}
MODEL=$ROOT/assets/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf

scripts/fetch-assets.sh
# One build of the whole workspace (what the tests build too): `-p` would resolve features anew and
# rebuild candle.
cargo build -q --workspace --all-targets
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug
mkdir -p "$OUT/models" "$OUT/eval"
log() { printf '\n== %s  (%s s)\n' "$*" "$SECONDS"; }
SECONDS=0
TIMES=$OUT/times.jsonl
timed() { # NAME CMD... : runs CMD, appends its wall time to times.jsonl
  local name=$1 t0=$SECONDS
  shift
  "$@"
  printf '{"step": "%s", "seconds": %d}\n' "$name" $((SECONDS - t0)) >>"$TIMES"
}

# 1. Data.
if [ ! -f "$OUT/wildfb/train.jsonl" ]; then
  log "wildfb import + collect (cues annotator, hindsight)"
  "$BIN/wildfb" import sharegpt --input data/sharegpt/sharegpt_v3_multiturn_2000.jsonl.gz \
    --out "$OUT/sharegpt.parquet"
  timed collect "$BIN/wildfb" collect --input "$OUT/sharegpt.parquet" --out "$OUT/wildfb" \
    --test-count "$TEST_COUNT"
fi
if [ ! -f "$OUT/data/ready" ]; then
  log "training sets, evaluation splits"
  mkdir -p "$OUT/data/hh-eval" "$OUT/data/hh-bt-raw"
  python3 - "$OUT" "$N_TRAIN" "$HH_EVAL" <<'PY'
import gzip, json, random, sys
out, n_train, hh_eval = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
d = f"{out}/data"
# People's labels: the agreed raw level of every dev / held-out item, non-neutral ones mapped to the
# training labels (1 → 1, 2 → 2, 4 → 3, 5 → 4; neutral has none), as the pipeline maps the annotators'.
people = {}
for base in ["data/feedback-dev"] + [f"data/feedback-heldout/round{r}" for r in (1, 2, 3)]:
    items = {json.loads(l)["id"]: json.loads(l) for l in open(f"{base}/items.jsonl")}
    for line in open(f"{base}/gold.jsonl"):
        g = json.loads(line)
        people[g["id"]] = (items[g["id"]], g["label"])
oracle = []
for id_, (item, raw) in sorted(people.items()):
    label = {1: 1, 2: 2, 4: 3, 5: 4}.get(raw)
    if label is None:
        continue
    oracle.append({"id": id_, "history": [], "label": label, "messages": [
        {"role": "user", "content": item["query"]}, {"role": "assistant", "content": item["response"]}]})
# WildFB records (collect splits them by conversation); the test split loses every record of an item
# people labelled, since the oracle trains on those items.
train = [json.loads(l) for l in open(f"{out}/wildfb/train.jsonl")]
test = [json.loads(l) for l in open(f"{out}/wildfb/test.jsonl")]
test = [r for r in test if r["id"] not in people]
random.Random(0).shuffle(train)
if len(train) < n_train:
    sys.exit(f"only {len(train)} WildFB training records, N_TRAIN={n_train}: lower N_TRAIN")
def write(path, rows):
    with open(path, "w") as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
import os
for name, rows in [("ordinal", train[:n_train]), ("oracle", oracle), ("ordinal-matched", train[:len(oracle)])]:
    os.makedirs(f"{d}/{name}", exist_ok=True)
    write(f"{d}/{name}/train.jsonl", rows)
    write(f"{d}/{name}/test.jsonl", test[:40])   # the trainer's own evaluation
write(f"{d}/wildfb-test.jsonl", test)
# HH: a seeded permutation of each subset's whole test split; the evaluation pairs first, then the BT
# training pairs, so no pair is in both.
subsets = ["harmless-base", "helpful-base", "helpful-online", "helpful-rejection-sampled"]
per_eval = -(-hh_eval // len(subsets))
per_bt = -(-n_train // len(subsets))
for s in subsets:
    lines = gzip.open(f"data/hh-rlhf/full/{s}.test.jsonl.gz", "rt").read().splitlines()
    perm = list(range(len(lines)))
    random.Random(8).shuffle(perm)
    ev, bt = sorted(perm[:per_eval]), sorted(perm[per_eval:per_eval + per_bt])
    for path, idx in [(f"{d}/hh-eval/{s}.test.jsonl.gz", ev), (f"{d}/hh-bt-raw/{s}.jsonl.gz", bt)]:
        with gzip.GzipFile(path, "wb", mtime=0) as f:
            f.write(("\n".join(lines[i] for i in idx) + "\n").encode())
json.dump({"ordinal": n_train, "oracle": len(oracle), "wildfb_test": len(test),
           "hh_eval_per_subset": per_eval, "bt_per_subset": per_bt,
           "wildfb_train_available": len(train)}, open(f"{d}/sizes.json", "w"), indent=1)
print(open(f"{d}/sizes.json").read())
PY
  mkdir -p "$OUT/data/bt"
  "$BIN/examples/hh_to_pairs" "$OUT/data/bt/all.jsonl" "$OUT"/data/hh-bt-raw/*.jsonl.gz
  python3 - "$OUT/data/bt" "$N_TRAIN" <<'PY'
import random, sys
d, n = sys.argv[1], int(sys.argv[2])
lines = open(f"{d}/all.jsonl").read().splitlines()
random.Random(0).shuffle(lines)
open(f"{d}/train.jsonl", "w").write("\n".join(lines[:n]) + "\n")
open(f"{d}/test.jsonl", "w").write("\n".join(lines[n:n + 40] or lines[:40]) + "\n")
PY
  touch "$OUT/data/ready"
fi

# 2. Training: every arm, every seed, the same mode, length, epochs and learning rate.
train() { # ARM SEED
  local arm=$1 seed=$2 loss=ordinal data=$OUT/data/$1
  local dir=$OUT/models/$arm-s$seed
  if [ -f "$dir/model.safetensors" ]; then return 0; fi
  if [ "$arm" = bt ]; then loss=bt; fi
  log "train $arm seed $seed ($MODE, --loss $loss)"
  timed "train $arm-s$seed" "$BIN/wildreward" train --model "$MODEL" --data "$data" --out "$dir" \
    --train "$MODE" --loss "$loss" --epochs "$EPOCHS" --max-length "$MAX_LENGTH" \
    --batch-size "$BATCH" --lr "$LR" --seed "$seed" --eval-limit 40 --resume --quiet \
    --feature-cache "$OUT/features"
}
MODELS=("$MODEL")
for arm in $ARMS; do
  for seed in $SEEDS; do
    train "$arm" "$seed"
    MODELS+=("$OUT/models/$arm-s$seed")
  done
done

# 3. Evaluation: all models on one benchmark in one pass (the frozen blocks run once per text).
MODEL_ARGS=()
for m in "${MODELS[@]}"; do MODEL_ARGS+=(--model "$m"); done
for bench in $BENCHES; do
  case $bench in
    hh) spec=hh:$OUT/data/hh-eval limit=$HH_EVAL ;;
    wildfb) spec=wildfb:$OUT/data/wildfb-test.jsonl limit=$WF_LIMIT ;;
    rm-bench) spec=rm-bench limit=$RM_LIMIT ;;
    judgebench) spec=judgebench limit=$JB_LIMIT ;;
    rm-bench-full) spec=rm-bench:$ROOT/data/rm-bench/full limit=$RM_LIMIT ;;
    judgebench-full) spec=judgebench:$ROOT/data/judgebench/full limit=$JB_LIMIT ;;
    *) echo "unknown bench $bench" >&2; exit 2 ;;
  esac
  log "eval ${#MODELS[@]} models on $bench"
  timed "eval $bench" "$BIN/wildreward" eval "${MODEL_ARGS[@]}" --bench "$spec" --limit "$limit" \
    --out "$OUT/eval/$bench" --max-length "$MAX_LENGTH" --cache-dir "$OUT/cache" --allow-untrained-head
done

# 4. Summary (every number from the reports written above).
python3 scripts/experiments/summarise.py "$OUT" "$SECONDS"
