#!/usr/bin/env python3
"""The reference training step in PyTorch + transformers, on the same weights and token ids as the Rust
benchmark (crates/wildreward-train/examples/bench_train.rs): one batch holding every line of the ids
file, right-padded, f32 on CPU; reward logits = bias-free `score` Linear on the last real token's hidden
state (computed here from the lengths, as the Rust model does, rather than from the pad id, which is also
<|im_end|> in SmolLM2); loss = mean BCE over the K-1 thresholds (`BCEWithLogitsLoss`, targets
label > k); clip the global grad norm at 1.0; AdamW lr 1e-5, weight decay 0.01 on matrices (not norms),
as the reference's HF Trainer does.

  full: every parameter trains (embeddings, layers, norms, head).
  head: what a sensible head-only loop does: the frozen backbone's pooled features under
        torch.no_grad(), then the head step on them (the first-epoch cost); plus the cached step (head
        only, on features kept from before) for later epochs.

Prints one JSON line; peak RSS is the process's VmHWM.

    python train_reference.py <hf dir> <ids.jsonl> <head|full> <warmup> <steps> [cached_reps] [threads]
"""
import json, sys, time
import torch
from transformers import AutoModelForSequenceClassification


def proc_mib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds():
    """CPU seconds of this process, all threads (/proc/self/stat utime + stime, 100 ticks/s), as the
    Rust side reads them: with wall time it shows how much of the cores a step got."""
    rest = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / 100


def load_average():
    return float(open("/proc/loadavg").read().split()[0])


model_dir, ids_path, mode = sys.argv[1], sys.argv[2], sys.argv[3]
warmup, steps = int(sys.argv[4]), int(sys.argv[5])
reps = int(sys.argv[6]) if len(sys.argv) > 6 else 100
torch.set_num_threads(int(sys.argv[7]) if len(sys.argv) > 7 else 2)
# bf16: PyTorch's CPU autocast (matmuls in bf16 on oneDNN: AMX or AVX512_BF16 where the CPU has them;
# f32 master weights, gradients and AdamW state), the configuration a user picks for speed.
DTYPE = sys.argv[8] if len(sys.argv) > 8 else "f32"
assert DTYPE in ("f32", "bf16"), DTYPE
autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=DTYPE == "bf16")
torch.manual_seed(0)

t_load = time.perf_counter()
rows = [json.loads(l) for l in open(ids_path) if l.strip()]
model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32)
model.train()  # SmolLM2 has no dropout; train() only mirrors what a training loop sets
pad = model.config.pad_token_id
lengths = torch.tensor([len(r["ids"]) for r in rows])
longest = int(lengths.max())
x = torch.tensor([r["ids"] + [pad] * (longest - len(r["ids"])) for r in rows])
mask = (torch.arange(longest)[None, :] < lengths[:, None]).long()
labels = torch.tensor([r["label"] for r in rows])
k = model.config.num_labels
targets = (labels[:, None] > torch.arange(1, k + 1)[None, :]).float()  # label > 1, > 2, > 3
bce = torch.nn.BCEWithLogitsLoss()
backbone, head = model.model, model.score
rows_idx = torch.arange(len(rows))

for name, p in model.named_parameters():
    p.requires_grad_(mode == "full" or name.startswith("score."))
trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
decay = [p for n, p in trainable if p.dim() >= 2 and "norm" not in n]
no_decay = [p for n, p in trainable if not (p.dim() >= 2 and "norm" not in n)]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                        lr=1e-5, betas=(0.9, 0.999), eps=1e-8)
params = [p for _, p in trainable]
load_seconds = time.perf_counter() - t_load
rss_after_load = proc_mib("VmRSS")


def pooled_features():
    with autocast():
        hidden = backbone(input_ids=x, attention_mask=mask).last_hidden_state
    return hidden[rows_idx, lengths - 1].float()


def head_step(pooled):
    """Forward through the head (and the backbone when `pooled` is None), backward, clip, AdamW."""
    c0 = cpu_seconds()
    t0 = time.perf_counter()
    with autocast():
        logits = head(pooled_features() if pooled is None else pooled)
    loss = bce(logits.float(), targets)
    t1 = time.perf_counter()
    rss_forward = proc_mib("VmRSS")  # with the autograd graph's saved tensors alive
    loss.backward()
    t2 = time.perf_counter()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return {"features": 0.0, "forward": t1 - t0, "backward": t2 - t1, "optimizer": time.perf_counter() - t2,
            "cpu": cpu_seconds() - c0, "rss_forward": rss_forward, "loss": loss.item()}


def total(t):
    return t["features"] + t["forward"] + t["backward"] + t["optimizer"]


def summary(times, tokens):
    mean = lambda key: sum(t[key] for t in times) / len(times)
    secs = sum(map(total, times)) / len(times)
    best = min(map(total, times))
    return {"steps": len(times), "step_seconds": secs, "best_step_seconds": best,
            "step_seconds_each": [total(t) for t in times], "tokens_per_s": tokens / secs,
            "best_tokens_per_s": tokens / best, "cpu_seconds": mean("cpu"), "cores_used": mean("cpu") / secs,
            "features_seconds": mean("features"), "forward_seconds": mean("forward"), "backward_seconds": mean("backward"), "optimizer_seconds": mean("optimizer"),
            "rss_after_forward_mib": max(t["rss_forward"] for t in times), "losses": [t["loss"] for t in times]}


timed, cached = [], []
load_before = load_average()
for i in range(warmup + steps):
    if mode == "head":
        c = cpu_seconds()
        t = time.perf_counter()
        with torch.no_grad():
            features = pooled_features()
        f = time.perf_counter() - t
        times = head_step(features)
        times["features"] = f
        times["cpu"] = cpu_seconds() - c  # the feature pass and the head step
        if i + 1 == warmup + steps:
            cached = [head_step(features) for _ in range(reps)]
    else:
        times = head_step(None)
    print(f"train_reference {mode}: step {i + 1}/{warmup + steps} {total(times):.2f} s (loss {times['loss']:.5f})"
          + (" warm-up" if i < warmup else ""), file=sys.stderr)
    if i >= warmup:
        timed.append(times)

tokens = int(lengths.sum())
report = {"impl": "pytorch-transformers", "mode": mode, "dtype": DTYPE, "sequences": len(rows), "tokens": tokens,
          "padded_tokens": len(rows) * longest, "trainable_parameters": sum(p.numel() for p in params),
          "warmup_steps": warmup, "load_seconds": load_seconds, "rss_after_load_mib": rss_after_load,
          "peak_rss_mib": proc_mib("VmHWM"), "load_average_before": load_before,
          "load_average_after": load_average(), "step": summary(timed, tokens),
          "torch": torch.__version__, "threads": torch.get_num_threads(),
          "attn_implementation": model.config._attn_implementation}
if cached:
    report["cached_step"] = summary(cached, tokens)
print(json.dumps(report))
