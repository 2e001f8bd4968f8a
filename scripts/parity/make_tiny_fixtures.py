#!/usr/bin/env python3
"""Writes tests/fixtures/parity/<arch>/: a tiny random *ForSequenceClassification made by transformers
(config.json, model.safetensors) and expected.json with its logits on a right-padded batch, so the Rust
tests check our backbone against transformers for every supported family without Python in CI.

    .venv-ref/bin/python scripts/parity/make_tiny_fixtures.py
"""
import json, os, torch
import transformers
from transformers import AutoConfig, AutoModelForSequenceClassification

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "parity")
COMMON = dict(hidden_size=16, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, vocab_size=50, max_position_embeddings=64, rms_norm_eps=1e-6,
              num_labels=3, pad_token_id=0, problem_type="multi_label_classification",
              tie_word_embeddings=False, initializer_range=0.4)
ARCHS = {
    "llama31": dict(model_type="llama", rope_theta=500000.0, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8}),
    "mistral": dict(model_type="mistral", rope_theta=10000.0, sliding_window=None),
    "qwen2": dict(model_type="qwen2", rope_theta=1000000.0),
    "qwen3": dict(model_type="qwen3", rope_theta=1000000.0, head_dim=8),
}
IDS = [[5, 9, 13, 2, 44, 7, 31], [8, 3, 49, 11, 0, 0, 0], [21, 0, 0, 0, 0, 0, 0]]
LENGTHS = [7, 4, 1]

for name, extra in ARCHS.items():
    torch.manual_seed(0)
    cfg = AutoConfig.for_model(**{**COMMON, **extra})
    model = AutoModelForSequenceClassification.from_config(cfg, torch_dtype=torch.float32).eval()
    with torch.no_grad():  # non-trivial norms, so a wrong norm shows up
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
    ids = torch.tensor(IDS)
    mask = torch.tensor([[1] * n + [0] * (len(IDS[0]) - n) for n in LENGTHS])
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    out = os.path.join(ROOT, name)
    model.save_pretrained(out, safe_serialization=True)
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump({"ids": IDS, "lengths": LENGTHS, "logits": logits.tolist(),
                   "transformers": transformers.__version__, "torch": torch.__version__}, f, indent=1)
    print(name, logits.tolist()[0])
with open(os.path.join(ROOT, "SOURCE.md"), "w") as f:
    f.write("""# Tiny transformers reference models

Made by `scripts/parity/make_tiny_fixtures.py` with PyTorch and transformers (versions in each
`expected.json`): random `*ForSequenceClassification` models of each supported family (Llama 3.1 with its
`llama3` RoPE scaling, Mistral, Qwen2 with q/k/v biases, Qwen3 with q/k norms and an explicit head_dim), saved
with `save_pretrained`, and their logits on a right-padded batch (`attention_mask` zeros on pads, pad id 0).
`crates/wildreward-model/tests/parity_fixtures.rs` loads each with our loader and compares the logits.
""")
