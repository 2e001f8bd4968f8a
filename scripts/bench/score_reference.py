#!/usr/bin/env python3
"""The reference worker's scoring loop (deploy_rm/serve_rank.py): batches of 16 in arrival order, padded
to the batch's longest, f32 on CPU, AutoModelForSequenceClassification, reward = 1 + Σσ(logits).
Scores the same token ids as the Rust benchmark, `REPEATS` passes (default 3) as it does, and prints one
JSON line with the fastest pass's figures and the median pass's time.

    python score_reference.py <hf dir> <inputs.jsonl> [threads]

The strongest configuration a user would pick instead: TORCH_DTYPE=bf16 (oneDNN runs it on AMX or
AVX512_BF16 where the CPU has them) and ORDER=sorted (batches sorted by length, so little padding)
with SDPA attention; the defaults (f32, arrival order) are the reference worker's loop.
"""
import json, os, sys, time, torch
from transformers import AutoModelForSequenceClassification

torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
DTYPE = os.environ.get("TORCH_DTYPE", "f32")
ORDER = os.environ.get("ORDER", "arrival")
model = AutoModelForSequenceClassification.from_pretrained(
    sys.argv[1], torch_dtype={"f32": torch.float32, "bf16": torch.bfloat16}[DTYPE],
    attn_implementation="sdpa").eval()
pad = model.config.pad_token_id
ids = [json.loads(l)["ids"] for l in open(sys.argv[2])]
order = sorted(range(len(ids)), key=lambda i: len(ids[i])) if ORDER == "sorted" else list(range(len(ids)))

def score(batch):
    n = max(map(len, batch))
    x = torch.tensor([b + [pad] * (n - len(b)) for b in batch])
    mask = torch.tensor([[1] * len(b) + [0] * (n - len(b)) for b in batch])
    with torch.no_grad():
        return (1 + torch.sigmoid(model(input_ids=x, attention_mask=mask).logits.float()).sum(-1)).tolist()

score(ids[:2])  # warm-up, as the Rust side does
passes = []
for _ in range(max(1, int(os.environ.get("REPEATS", "3")))):
    t = time.perf_counter()
    rewards = [0.0] * len(ids)
    for i in range(0, len(ids), 16):
        part = order[i:i + 16]
        for j, r in zip(part, score([ids[j] for j in part])):
            rewards[j] = r
    passes.append(time.perf_counter() - t)
passes.sort()
secs = passes[0]
tokens = sum(map(len, ids))
print(json.dumps({"impl": f"pytorch-transformers {DTYPE} {ORDER} sdpa", "texts": len(ids), "tokens": tokens, "seconds": secs,
                  "passes": len(passes), "seconds_median": passes[len(passes) // 2],
                  "texts_per_s": len(ids) / secs, "tokens_per_s": tokens / secs,
                  "mean_reward": sum(rewards) / len(rewards), "torch": torch.__version__}))
