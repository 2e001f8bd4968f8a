#!/usr/bin/env bash
# f32 matmul GFLOP/s at SmolLM2's shapes: this crate's product (AVX-512 where the CPU has it), candle's
# (the gemm crate) and PyTorch's, all on 2 threads, in one run. Not part of CI. Prints a markdown table.
#   scripts/bench/matmul.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
VENV=${VENV:-$ROOT/.venv-ref}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import torch" 2>/dev/null \
  || "$VENV/bin/pip" install -q --disable-pip-version-check torch transformers accelerate gguf
cargo build -q --example bench_matmul -p wildreward-model
RUST=$(target/debug/examples/bench_matmul)
printf '| m × k × n | this crate | candle (gemm) | PyTorch | this crate / PyTorch |\n|---|---:|---:|---:|---:|\n'
while read -r line; do
  "$VENV/bin/python" - "$line" <<'PY'
import json, sys, time, torch
torch.set_num_threads(2)
r = json.loads(sys.argv[1])
m, k, n = r["m"], r["k"], r["n"]
a, b = torch.randn(m, k), torch.randn(k, n)
torch.matmul(a, b)
best = min((lambda t: (torch.matmul(a, b), time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(10))
torch_gflops = 2 * m * k * n / best / 1e9
print(f"| {m} × {k} × {n} | {r['own_gflops']:.0f} | {r['candle_gflops']:.0f} | {torch_gflops:.0f} | "
      f"{r['own_gflops'] / torch_gflops:.2f}× |")
PY
done <<< "$RUST"
