#!/usr/bin/env python3
"""The PyTorch side of scripts/gpu/check.sh (the GPU machine has PyTorch + transformers, no network).

    gpu_check.py model   OUT_DIR TOKENIZER_DIR   # a random LlamaForSequenceClassification (Llama-3-8B
                                                 # layer shape, LAYERS layers, SmolLM2's vocabulary)
    gpu_check.py data    OUT_DIR SHAREGPT.gz TOKENIZER_DIR   # texts.jsonl + train/ (templated, <= 512 ids)
    gpu_check.py score   MODEL_DIR TEXTS.jsonl DTYPE OUT.json  # transformers rewards, SDPA, sorted batches
    gpu_check.py lora    MODEL_DIR TRAIN.jsonl OUT.json        # LoRA steps as `wildreward train lora:R`

Knobs (environment): DEVICE (cuda or cpu), LAYERS, HIDDEN, INTERMEDIATE, HEADS, KV_HEADS (default the
Llama-3-8B layer: 4096 / 14336 / 32 / 8), TEXTS, STEPS, BATCH, LORA_R, LORA_ALPHA, MAX_BATCH_TOKENS.
Every command prints one JSON line and writes it to OUT.json where it takes one.
"""
import gzip
import json
import os
import random
import shutil
import sys
import time

import torch

DEVICE = os.environ.get("DEVICE", "cuda")  # torch device: cuda or cpu
MAX_LEN = 512
# The reference's RM template, first turn: the one copy the benchmark scripts share.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
from flood import build_text  # noqa: E402
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def env(name, default):
    return int(os.environ.get(name, default))


def sync():
    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


def emit(result, out=None):
    line = json.dumps(result)
    print(line)
    if out:
        with open(out, "w") as f:
            f.write(line + "\n")


def make_model(out_dir, tok_dir):
    from transformers import LlamaConfig, LlamaForSequenceClassification
    tok = json.load(open(os.path.join(tok_dir, "tokenizer.json")))
    vocab = max(tok["model"]["vocab"].values()) + 1
    vocab = max([vocab] + [t["id"] + 1 for t in tok.get("added_tokens", [])])
    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=env("HIDDEN", 4096), intermediate_size=env("INTERMEDIATE", 14336),
        num_hidden_layers=env("LAYERS", 8), num_attention_heads=env("HEADS", 32),
        num_key_value_heads=env("KV_HEADS", 8), max_position_embeddings=8192, rope_theta=500000.0,
        rms_norm_eps=1e-5, tie_word_embeddings=False, num_labels=3,
        problem_type="multi_label_classification", pad_token_id=0, bos_token_id=1, eos_token_id=2,
        torch_dtype="bfloat16")
    torch.manual_seed(0)
    t = time.perf_counter()
    with torch.device(DEVICE):
        model = LlamaForSequenceClassification(cfg).to(torch.bfloat16)
    # A head that separates texts (the default init gives rewards within 1e-3 of each other, which
    # would make the parity check easy to pass by accident).
    with torch.no_grad():
        model.score.weight.normal_(0, 0.5)
    model.save_pretrained(out_dir, safe_serialization=True)
    for name in os.listdir(tok_dir):
        shutil.copy(os.path.join(tok_dir, name), out_dir)
    params = sum(p.numel() for p in model.parameters())
    emit({"model": out_dir, "params": params, "layers": cfg.num_hidden_layers, "hidden": cfg.hidden_size,
          "vocab": vocab, "seconds": time.perf_counter() - t})


def make_data(out_dir, sharegpt, tok_dir):
    from transformers import PreTrainedTokenizerFast
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(tok_dir, "tokenizer.json"))
    rng = random.Random(0)
    rows = []
    for line in gzip.open(sharegpt, "rt"):
        turns = json.loads(line)["conversations"]
        for q, a in zip(turns, turns[1:]):
            if q["from"] != "human" or a["from"] != "gpt" or not q["value"].strip() or not a["value"].strip():
                continue
            query = " ".join(q["value"].split()[:60])
            response = " ".join(a["value"].split()[: rng.randint(20, 260)])
            text = build_text(query, response)
            if len(tok(text)["input_ids"]) <= MAX_LEN - 2:
                rows.append((query, response, text))
        if len(rows) >= env("TEXTS", 1024):
            break
    os.makedirs(os.path.join(out_dir, "train"), exist_ok=True)
    with open(os.path.join(out_dir, "texts.jsonl"), "w") as f:
        for _, _, text in rows:
            f.write(json.dumps({"text": text}) + "\n")
    n_test = min(32, max(4, len(rows) // 8))
    train = rows[:min(256, len(rows) - n_test)]
    for split, part in [("train", train), ("test", rows[len(train):len(train) + n_test])]:
        with open(os.path.join(out_dir, "train", split + ".jsonl"), "w") as f:
            for i, (query, response, text) in enumerate(part):
                f.write(json.dumps({
                    "id": f"gpu{split}{i}", "history": [], "text": text,
                    "messages": [{"role": "user", "content": query}, {"role": "assistant", "content": response}],
                    "label": 1 + rng.randrange(4)}) + "\n")
    emit({"texts": len(rows), "train": len(train), "test": n_test, "out": out_dir})


def load(model_dir, dtype):
    from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerFast
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(model_dir, "tokenizer.json"))
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, torch_dtype=dtype, attn_implementation="sdpa").to(DEVICE).eval()
    return tok, model


def pooled_logits(model, batch, pad):
    """Head logits on each row's last real token (from the lengths, as the Rust model pools)."""
    n = max(map(len, batch))
    x = torch.tensor([b + [pad] * (n - len(b)) for b in batch], device=DEVICE)
    mask = torch.tensor([[1] * len(b) + [0] * (n - len(b)) for b in batch], device=DEVICE)
    hidden = model.model(input_ids=x, attention_mask=mask).last_hidden_state
    last = torch.tensor([len(b) - 1 for b in batch], device=DEVICE)
    h = hidden[torch.arange(len(batch), device=DEVICE), last]
    return model.score(h.to(model.score.weight.dtype)).float()


def score(model_dir, texts, dtype_name, out):
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[dtype_name]
    tok, model = load(model_dir, dtype)
    ids = [tok(json.loads(l)["text"])["input_ids"][:MAX_LEN] for l in open(texts)]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    budget = env("MAX_BATCH_TOKENS", 16384)
    batches, cur = [], []
    for i in order:  # sorted by length, batches by a padded-token budget, as a careful user runs it
        if cur and (len(cur) + 1) * len(ids[i]) > budget:
            batches.append(cur)
            cur = []
        cur.append(i)
    batches.append(cur)
    rewards = [0.0] * len(ids)
    with torch.no_grad():
        pooled_logits(model, [ids[order[0]]], model.config.pad_token_id)  # warm-up
        sync()
        passes = []
        for _ in range(env("REPEATS", 2)):
            t = time.perf_counter()
            for b in batches:
                logits = pooled_logits(model, [ids[i] for i in b], model.config.pad_token_id)
                for i, r in zip(b, (1 + torch.sigmoid(logits).sum(-1)).tolist()):
                    rewards[i] = r
            sync()
            passes.append(time.perf_counter() - t)
    secs = min(passes)
    tokens = sum(map(len, ids))
    emit({"impl": f"transformers {dtype_name} sdpa sorted", "device": DEVICE, "texts": len(ids),
          "tokens": tokens, "seconds": secs, "texts_per_s": len(ids) / secs, "tokens_per_s": tokens / secs,
          "rewards": rewards, "torch": torch.__version__}, out)


class LoraLinear(torch.nn.Module):
    """PEFT's LoRA on a frozen projection: y = W x + s · B A x, A Kaiming-uniform, B zero, f32."""

    def __init__(self, base, r, scale):
        super().__init__()
        self.base, self.scale = base, scale
        self.a = torch.nn.Parameter(torch.empty(r, base.in_features, device=base.weight.device).uniform_(
            -1 / base.in_features ** 0.5, 1 / base.in_features ** 0.5))
        self.b = torch.nn.Parameter(torch.zeros(base.out_features, r, device=base.weight.device))

    def forward(self, x):
        return self.base(x) + (self.scale * (x.float() @ self.a.t() @ self.b.t())).to(x.dtype)


def lora(model_dir, train, out):
    from transformers import PreTrainedTokenizerFast
    tok, model = load(model_dir, torch.bfloat16)
    model.train()
    r, alpha = env("LORA_R", 16), env("LORA_ALPHA", 32)
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name in LORA_TARGETS:
                if hasattr(parent, name):
                    setattr(parent, name, LoraLinear(getattr(parent, name), r, alpha / r))
    model.score = model.score.float()
    model.score.weight.requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    rows = [json.loads(l) for l in open(train)]
    batch = env("BATCH", 4)
    steps = env("STEPS", 6)
    times = []
    for step in range(steps):
        part = rows[(step * batch) % len(rows):][:batch]
        ids = [tok(x["text"])["input_ids"][:MAX_LEN] for x in part]
        labels = torch.tensor([x["label"] for x in part], device=DEVICE)
        sync()
        t = time.perf_counter()
        logits = pooled_logits(model, ids, model.config.pad_token_id)
        target = (labels[:, None] > torch.arange(1, 4, device=DEVICE)[None, :]).float()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        times.append(time.perf_counter() - t)
    later = sorted(times[1:]) or times
    peak = torch.cuda.max_memory_allocated() / 2**20 if DEVICE.startswith("cuda") else 0
    emit({"impl": f"pytorch bf16 + LoRA r={r} (7 projections) + f32 head", "device": DEVICE, "steps": steps,
          "batch": batch, "step_seconds_median": later[len(later) // 2], "first_step_seconds": times[0],
          "peak_mib": peak, "loss_last": loss.item()}, out)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"model": make_model, "data": make_data, "score": score, "lora": lora}[cmd](*args)
