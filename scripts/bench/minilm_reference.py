"""The PyTorch peer of examples/bench_embed.rs: sentence-transformers' all-MiniLM-L6-v2 (mean pooling,
L2-normalised) on the same sentences, in f32 and bf16, on 2 threads; fastest of REPEATS passes.
Also compares its f32 embeddings with the Rust packed path's. Not part of CI.

  python minilm_reference.py bench TEXTS.json RUST_EMBEDDINGS.f32 MAX_TOKENS BATCH REPEATS
  python minilm_reference.py golden            # the vectors crates/wildfb/tests/data holds
"""
import json
import os
import sys
import time

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.environ.get("WILDREWARD_ASSETS", os.path.join(ROOT, "assets"))
MODEL = os.path.join(MODEL, "all-minilm-l6-v2")
GOLDEN = [
    "Thanks, that fixed the bug in my Python script!",
    "ok",
    "",
    "你好，请帮我把这段话翻译成英文。",
    "Can you explain how photosynthesis works in plants, step by step, with the chemical equation? " * 12,
]


def load(max_tokens):
    torch.set_num_threads(2)
    # The directory has no modules.json: sentence-transformers builds Transformer + mean pooling.
    model = SentenceTransformer(MODEL, device="cpu")
    model.max_seq_length = max_tokens
    return model


def encode(model, texts, batch):
    with torch.inference_mode():
        return model.encode(texts, batch_size=batch, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False).astype(np.float32)


def fastest(model, texts, batch, repeats):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = encode(model, texts, batch)
        best = min(best, time.perf_counter() - start)
    return best, out


def bench(texts_path, rust_path, max_tokens, batch, repeats):
    texts = json.load(open(texts_path))
    rust = np.fromfile(rust_path, dtype="<f4").reshape(len(texts), -1)
    model = load(max_tokens)
    f32_s, f32 = fastest(model, texts, batch, repeats)
    model = model.to(torch.bfloat16)
    bf16_s, bf16 = fastest(model, texts, batch, repeats)
    cos = (rust * f32).sum(1)
    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "f32_seconds": f32_s,
        "f32_sentences_per_s": len(texts) / f32_s,
        "bf16_seconds": bf16_s,
        "bf16_sentences_per_s": len(texts) / bf16_s,
        "rust_vs_st_max_abs_diff": float(np.abs(rust - f32).max()),
        "rust_vs_st_min_cosine": float(cos.min()),
        "bf16_vs_f32_min_cosine": float((bf16 * f32).sum(1).min()),
    }))


def golden():
    model = load(128)
    vectors = encode(model, GOLDEN, 32)
    print(json.dumps({
        "source": "scripts/bench/minilm_reference.py golden: sentence-transformers "
                  f"{__import__('sentence_transformers').__version__}, torch {torch.__version__}, "
                  "all-minilm-l6-v2, max_seq_length 128, mean pooling, normalised",
        "max_tokens": 128,
        "texts": GOLDEN,
        "vectors": [[float("%.8g" % x) for x in v] for v in vectors],
    }))


if __name__ == "__main__":
    if sys.argv[1:2] == ["golden"]:
        golden()
    else:
        bench(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
