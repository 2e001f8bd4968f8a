#!/usr/bin/env python3
"""The reference side of scripts/bench/dpo.sh: transformers `generate` and a PyTorch DPO step on the same
weights (the SmolLM2 GGUF, dequantised to f32 by transformers) and token ids as
crates/online-dpo/examples/bench_dpo.rs.

Generation: `n` samples of exactly `new` tokens (min_new_tokens = max_new_tokens, so EOS does not end
them early), temperature 1, top-p 0.9, KV cache, from the same prompt ids.
DPO step: the pair the Rust side wrote (prompt, chosen, rejected), right-padded into one batch of two;
log-probs summed over answer tokens; the frozen reference under no_grad; sigmoid loss with beta 0.1;
backward; global grad-norm clip 1.0; AdamW (lr 5e-7, weight decay 0), as online-dpo does.

    python dpo_reference.py <gguf dir> <gguf file> <pair.json> <n> <new> <steps> [threads]
"""
import copy
import os, json, sys, time
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

gguf_dir, gguf_file, pair_path = sys.argv[1], sys.argv[2], sys.argv[3]
n, new, steps = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
torch.set_num_threads(int(sys.argv[7]) if len(sys.argv) > 7 else 2)
torch.manual_seed(0)
pair = json.load(open(pair_path))
policy = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file, dtype=torch.float32)
policy.generation_config.pad_token_id = policy.config.eos_token_id
prompt = torch.tensor([pair["prompt"]])

# DTYPE=bf16: the rollout on a bf16 copy of the policy (oneDNN bf16 on AMX / AVX512_BF16); the DPO
# step stays f32.
DTYPE = os.environ.get("DTYPE", "f32")
generator = copy.deepcopy(policy).to(torch.bfloat16) if DTYPE == "bf16" else policy


def rollout(tokens):
    with torch.no_grad():
        return generator.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True,
                               temperature=1.0, top_p=0.9, top_k=0, max_new_tokens=tokens,
                               min_new_tokens=tokens, num_return_sequences=n)

rollout(4)  # warm-up
t = time.perf_counter()
out = rollout(new)
gen_seconds = time.perf_counter() - t
gen_tokens = (out.shape[1] - prompt.shape[1]) * n

reference = copy.deepcopy(policy).eval()
for p in reference.parameters():
    p.requires_grad_(False)
policy.train()
opt = torch.optim.AdamW(policy.parameters(), lr=5e-7, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
p_len = len(pair["prompt"])
answers = [pair["chosen"], pair["rejected"]]
longest = max(len(a) for a in answers)
ids = torch.tensor([pair["prompt"] + a + [0] * (longest - len(a)) for a in answers])
attn = torch.tensor([[1] * (p_len + len(a)) + [0] * (longest - len(a)) for a in answers])
targets = torch.tensor([a + [0] * (longest - len(a)) for a in answers])
mask = torch.tensor([[1.0] * len(a) + [0.0] * (longest - len(a)) for a in answers])

def logps(model):
    logits = model(input_ids=ids, attention_mask=attn).logits[:, p_len - 1:p_len - 1 + longest]
    picked = torch.log_softmax(logits.float(), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1)

def step():
    pol = logps(policy)
    with torch.no_grad():
        ref = logps(reference)
    margin = 0.1 * ((pol[0] - ref[0]) - (pol[1] - ref[1]))
    loss = -F.logsigmoid(margin)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
    opt.step()

step()  # warm-up
t = time.perf_counter()
for _ in range(steps):
    step()
step_seconds = (time.perf_counter() - t) / steps
print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "n": n, "new_tokens": new,
                  "prompt_tokens": p_len, "gen_seconds": gen_seconds, "gen_tokens": gen_tokens,
                  "gen_tokens_per_s": gen_tokens / gen_seconds, "dpo_step_seconds": step_seconds,
                  "dpo_steps": steps}))
