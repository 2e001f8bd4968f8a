#!/usr/bin/env python3
"""What transformers makes of our saved reward heads (run by scripts/parity/heads.sh; not part of CI).

  corn   a CORN checkpoint trained by `wildreward train --loss corn` loads in
         LlamaForSequenceClassification; its logits, read with CORN's chained formula
         1 + sum_k prod_{j<=k} sigmoid(z_j), give the rewards `wildreward score` wrote.
  coral  a CORAL head in the layout it would need (score.weight [1, hidden] + score.bias [K-1]) does
         not load: the reason `checkpoint::save` and `train` refuse to write one.

Prints JSON; exits 1 when a check fails.
"""
import json, os, sys, tempfile
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

corn_dir, texts_path, ours_path = sys.argv[1:4]
torch.set_num_threads(2)
report = {}

cfg = json.load(open(f"{corn_dir}/config.json"))
model = AutoModelForSequenceClassification.from_pretrained(corn_dir, torch_dtype=torch.float32).eval()
tok = AutoTokenizer.from_pretrained(corn_dir)
texts = [json.loads(l)["text"] for l in open(texts_path)]
ours = [json.loads(l)["reward"] for l in open(ours_path)]
diffs = []
with torch.no_grad():
    for t, r in zip(texts, ours):
        z = model(**tok(t, return_tensors="pt")).logits[0]
        reward = 1.0 + torch.cumprod(torch.sigmoid(z), 0).sum().item()
        diffs.append(abs(reward - r))
report["corn"] = {"wildreward_head": cfg.get("wildreward_head"), "architecture": cfg["architectures"][0],
                  "texts": len(diffs), "max_abs_diff_vs_wildreward_score": max(diffs)}

# CORAL: the same checkpoint with its head replaced by CORAL's shapes.
coral = tempfile.mkdtemp()
for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
    os.symlink(os.path.abspath(f"{corn_dir}/{f}"), f"{coral}/{f}")
tensors = load_file(f"{corn_dir}/model.safetensors")
hidden = tensors["score.weight"].shape[1]
tensors["score.weight"] = torch.zeros(1, hidden)
tensors["score.bias"] = torch.tensor([1.0, 0.0, -1.0])
save_file(tensors, f"{coral}/model.safetensors")
try:
    AutoModelForSequenceClassification.from_pretrained(coral)
    report["coral"] = {"loads": True}
except Exception as e:  # what a user of the saved directory would hit
    report["coral"] = {"loads": False, "error": f"{type(e).__name__}: {str(e)[:160]}"}
print(json.dumps(report, indent=2))
ok = report["corn"]["wildreward_head"] == "corn" and max(diffs) < 1e-4 and not report["coral"]["loads"]
sys.exit(0 if ok else 1)
