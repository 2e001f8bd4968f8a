#!/usr/bin/env python3
"""Parity of the Rust model core with PyTorch + transformers on the real SmolLM2 GGUF.

Three checks, printed as JSON:
  weights    transformers' own GGUF loader (dequantise + un-permute) vs our converted model.safetensors
  tokenizer  token ids of our GGUF-rebuilt tokenizer.json vs transformers' GGUF tokenizer, on real texts
  rewards    transformers' LlamaForSequenceClassification on our converted directory vs `wildreward score`

Run by scripts/parity/run.sh (which builds, converts and scores first); not part of CI.
"""
import gzip, json, math, sys
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
from tokenizers import Tokenizer

gguf_dir, gguf_name, rm_dir, texts_path, ours_path = sys.argv[1:6]
torch.set_num_threads(2)
report = {}

# 1. Weights: dequantised and un-permuted by transformers vs by us.
hf = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name, torch_dtype=torch.float32)
theirs = {k: v for k, v in hf.state_dict().items() if k.startswith("model.")}
ours = load_file(f"{rm_dir}/model.safetensors")
worst = max((theirs[k] - ours[k]).abs().max().item() for k in theirs)
report["weights"] = {"tensors_compared": len(theirs), "missing_in_ours": sorted(set(theirs) - set(ours)),
                     "max_abs_diff": worst}

# 2. Tokenizer: ours (tokenizer.json rebuilt from GGUF metadata) vs transformers' GGUF conversion.
texts = [json.loads(l)["text"] for l in open(texts_path)]
hf_tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
our_tok = Tokenizer.from_file(f"{rm_dir}/tokenizer.json")
as_is = [i for i, t in enumerate(texts) if hf_tok(t)["input_ids"] != our_tok.encode(t).ids]
# transformers' GGUF converter maps SmolLM2's pre-tokenizer to plain ByteLevel, dropping the individual-digit
# split of the model's original tokenizer.json (and of llama.cpp's `smollm` pre-tokenizer). With that split
# restored on transformers' own vocabulary and merges, the ids must be identical.
from tokenizers import pre_tokenizers
restored = hf_tok.backend_tokenizer
restored.pre_tokenizer = pre_tokenizers.Sequence(
    [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)])
mismatch = [i for i, t in enumerate(texts) if restored.encode(t).ids != our_tok.encode(t).ids]
report["tokenizer"] = {"texts": len(texts), "mismatches_vs_transformers_gguf_converter": len(as_is),
                       "mismatches_with_original_digit_split_restored": len(mismatch),
                       "tokens": sum(len(our_tok.encode(t).ids) for t in texts)}

# 3. Rewards: transformers scoring our converted directory, one text at a time (no padding).
model = AutoModelForSequenceClassification.from_pretrained(rm_dir, torch_dtype=torch.float32).eval()
tok = AutoTokenizer.from_pretrained(rm_dir)
ours_r = [json.loads(l)["reward"] for l in open(ours_path)]
diffs = []
with torch.no_grad():
    for t, r in zip(texts, ours_r):
        enc = tok(t, return_tensors="pt", truncation=True, max_length=4096)
        logits = model(**enc).logits[0]
        diffs.append(abs(1.0 + torch.sigmoid(logits).sum().item() - r))
report["rewards"] = {"texts": len(diffs), "max_abs_diff": max(diffs),
                     "mean_abs_diff": sum(diffs) / len(diffs)}
print(json.dumps(report, indent=2))
ok = worst < 1e-5 and not mismatch and max(diffs) < 1e-4
sys.exit(0 if ok else 1)
