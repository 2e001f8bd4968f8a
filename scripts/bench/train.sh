#!/usr/bin/env bash
# Training-step throughput and peak RSS, Rust (candle, the trainer's own params/forward/optim) vs PyTorch +
# transformers, on the same weights (SmolLM2-135M GGUF dequantised to f32 and saved as
# an HF directory with a seeded 3-logit ordinal head, as `wildreward convert` does) and
# the same token ids: SEQS real RM texts (ShareGPT turns with their history, rendered with the RM template
# and cut to MAX_LENGTH tokens by the trainer's Encoder), one batch, head-only and full fine-tuning.
# Not part of CI. Writes out/bench-train/*.json and prints a markdown table.
#   scripts/bench/train.sh            # SEQS=4 MAX_LENGTH=512 WARMUP=1 STEPS=2 THREADS=2 DTYPE=f32
#   DTYPE=bf16 scripts/bench/train.sh # mixed precision on both sides: Rust's bf16 training nodes
#                                     # (AVX512_BF16 / AMX) vs PyTorch's CPU bf16 autocast (oneDNN)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
VENV=${VENV:-$ROOT/.venv-ref}
OUT=${OUT:-$ROOT/out/bench-train}
SEQS=${SEQS:-4}
MAX_LENGTH=${MAX_LENGTH:-512}
WARMUP=${WARMUP:-1}
STEPS=${STEPS:-2}
CACHED_REPS=${CACHED_REPS:-100}
THREADS=${THREADS:-2}
DTYPE=${DTYPE:-f32}
export DTYPE
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
mkdir -p "$OUT"
scripts/fetch-assets.sh >/dev/null
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import torch, transformers" 2>/dev/null \
  || "$VENV/bin/pip" install -q --disable-pip-version-check torch transformers accelerate gguf
cargo build -q -p wildreward-train --example bench_train
BENCH=$TARGET/debug/examples/bench_train
[ -f "$OUT/rm/model.safetensors" ] \
  || "$BENCH" convert assets/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf "$OUT/rm"

# Candidate RM examples in WildFB's shape: the last (user, assistant) turn of long ShareGPT conversations,
# earlier messages as history. ShareGPT has no satisfaction labels: levels 1..4 are assigned in turn (they
# change the loss's value, not its cost).
"$VENV/bin/python" - "$OUT/candidates.jsonl" <<'PY'
import gzip, json, sys
role = {"human": "user", "gpt": "assistant"}
with open(sys.argv[1], "w") as f:
    n = 0
    for line in gzip.open("data/sharegpt/sharegpt_v3_multiturn_2000.jsonl.gz", "rt"):
        conv = [{"role": role[m["from"]], "content": m["value"]} for m in json.loads(line)["conversations"]]
        turns = [i for i in range(len(conv) - 1) if conv[i]["role"] == "user" and conv[i + 1]["role"] == "assistant"]
        if len(conv) < 4 or not turns or sum(len(m["content"]) for m in conv) < 4000:
            continue
        i = turns[-1]
        f.write(json.dumps({"history": conv[:i], "messages": conv[i:i + 2], "label": 1 + n % 4}) + "\n")
        n += 1
        if n == 64: break
PY
"$BENCH" ids "$OUT/rm" "$OUT/candidates.jsonl" "$MAX_LENGTH" "$OUT/candidates-ids.jsonl"
# The SEQS longest encodings (ties: file order), so the batch is as close to SEQS × MAX_LENGTH as real texts get.
python3 - "$OUT/candidates-ids.jsonl" "$OUT/ids.jsonl" "$SEQS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
best = sorted(range(len(rows)), key=lambda i: (-len(rows[i]["ids"]), i))[: int(sys.argv[3])]
with open(sys.argv[2], "w") as f:
    for i in sorted(best):
        f.write(json.dumps(rows[i]) + "\n")
PY

echo "memory available: $(awk '/MemAvailable/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)" \
  "(full fine-tuning in Rust needs about 16 GiB at 4 × 512 tokens)" >&2
# Peak RSS is read twice: VmHWM inside each process, and /usr/bin/time's maximum resident set (with the
# process's user and system CPU seconds and minor page faults, loading included).
for mode in head full; do
  /usr/bin/time -f '%U %S %R %M' -o "$OUT/rust-$mode.maxrss" \
    "$BENCH" step "$OUT/rm" "$OUT/ids.jsonl" "$mode" "$WARMUP" "$STEPS" "$CACHED_REPS" > "$OUT/rust-$mode.json"
  /usr/bin/time -f '%U %S %R %M' -o "$OUT/torch-$mode.maxrss" \
    "$VENV/bin/python" scripts/bench/train_reference.py "$OUT/rm" "$OUT/ids.jsonl" "$mode" "$WARMUP" "$STEPS" \
    "$CACHED_REPS" "$THREADS" "$DTYPE" > "$OUT/torch-$mode.json"
done

python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
load = lambda name: json.load(open(f"{out}/{name}.json"))
maxrss = lambda name: int(open(f"{out}/{name}.maxrss").read().split()[-1]) / 1024
r0 = load("rust-full")
print(f"dtype: Rust {r0.get('dtype', 'f32')} ({r0.get('matmul', 'f32')}), PyTorch {load('torch-full').get('dtype', 'f32')}; "
      f"batch: {r0['sequences']} sequences, {r0['tokens']} real tokens ({r0['padded_tokens']} padded); "
      f"timed steps: {r0['step']['steps']} after {r0['warmup_steps']} warm-up\n")
print("| mode | what is timed | Rust s/step | PyTorch s/step | Rust tokens/s | PyTorch tokens/s | speed ratio "
      "(mean / best step) | CPU s/step Rust / PyTorch (ratio) | Rust peak RSS MiB | PyTorch peak RSS MiB | RSS ratio |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
rows = [("full", "step", "fwd + bwd + clip + AdamW"),
        ("head", "step", "first epoch: no-grad backbone features + head step"),
        ("head", "cached_step", "later epochs: head step on cached features")]
summary = {}
for mode, key, label in rows:
    r, p = load(f"rust-{mode}"), load(f"torch-{mode}")
    assert r["tokens"] == p["tokens"] and r["trainable_parameters"] == p["trainable_parameters"], (mode, r, p)
    rs, ps = r[key], p[key]
    rss_r, rss_p = max(r["peak_rss_mib"], maxrss(f"rust-{mode}")), max(p["peak_rss_mib"], maxrss(f"torch-{mode}"))
    speed, best = ps["step_seconds"] / rs["step_seconds"], ps["best_step_seconds"] / rs["best_step_seconds"]
    # CPU time (10 ms ticks) is less sensitive to other work on the machine than wall time; meaningless
    # for the sub-millisecond cached step.
    cpu = (f"{rs['cpu_seconds']:.1f} / {ps['cpu_seconds']:.1f} ({ps['cpu_seconds'] / rs['cpu_seconds']:.2f}×)"
           if key == "step" else "–")
    print(f"| {mode} | {label} | {rs['step_seconds']:.4g} | {ps['step_seconds']:.4g} | {rs['tokens_per_s']:.5g} | "
          f"{ps['tokens_per_s']:.5g} | {speed:.2f}× / {best:.2f}× | {cpu} | {rss_r:.0f} | {rss_p:.0f} | {rss_r / rss_p:.2f}× |")
    summary[f"{mode}-{key}"] = {"rust_step_seconds": rs["step_seconds"], "torch_step_seconds": ps["step_seconds"],
                                "speed_ratio": speed, "best_step_speed_ratio": best,
                                "rust_cpu_seconds": rs["cpu_seconds"], "torch_cpu_seconds": ps["cpu_seconds"], "rust_peak_rss_mib": rss_r,
                                "torch_peak_rss_mib": rss_p, "rss_ratio": rss_r / rss_p}
print()
for mode in ("full", "head"):
    r, p = load(f"rust-{mode}"), load(f"torch-{mode}")
    for side, d in (("Rust", r), ("PyTorch", p)):
        s = d["step"]
        print(f"{mode} {side}: load {d['load_seconds']:.1f} s, RSS after load {d['rss_after_load_mib']:.0f} MiB, "
              f"with the forward graph {s['rss_after_forward_mib']:.0f} MiB; per step: features "
              f"{s['features_seconds']:.2f} s, forward {s['forward_seconds']:.2f} s, backward {s['backward_seconds']:.2f} s, "
              f"clip+AdamW {s['optimizer_seconds']:.2f} s, {s['cores_used']:.2f} cores used; load average "
              f"{d['load_average_before']:.1f} → {d['load_average_after']:.1f}; losses {[round(x, 5) for x in s['losses']]}")
    for side, name in (("Rust", f"rust-{mode}"), ("PyTorch", f"torch-{mode}")):
        user, system, faults, _ = open(f"{out}/{name}.maxrss").read().split()[-4:]
        print(f"{mode} {side} whole process: {float(user):.1f} s user, {float(system):.1f} s system, "
              f"{int(faults):,} minor page faults")
    # Same weights and ids, deterministic steps: the losses of both sides must follow each other
    # (closely in f32; within bf16's rounding, which the two sides apply in different places, in bf16).
    tol = 1e-3 if r.get("dtype", "f32") == "f32" else 2e-2
    for a, b in zip(r["step"]["losses"], p["step"]["losses"]):
        assert abs(a - b) < tol, (mode, "losses differ", r["step"]["losses"], p["step"]["losses"])
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)
PY
