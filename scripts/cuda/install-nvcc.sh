#!/usr/bin/env bash
# Installs the CUDA 13.0 compiler (nvcc, cicc, the headers) from PyPI into a cache directory, for
# building the `cuda` feature on a machine without a GPU or a CUDA toolkit. 13.0 exactly: the GPU
# machines' driver is CUDA 13.0 and rejects PTX from a newer nvcc. Prints the toolkit root
# (`.../nvidia/cu13`, with bin/nvcc) on stdout; reruns reuse the cache.
#
#   CUDA_CACHE=~/.cache/wildreward/cuda scripts/cuda/install-nvcc.sh
set -euo pipefail
CACHE=${CUDA_CACHE:-$HOME/.cache/wildreward/cuda}
ROOT=$CACHE/nvidia/cu13
if [ ! -x "$ROOT/bin/nvcc" ] || [ ! -x "$ROOT/nvvm/bin/cicc" ]; then
  mkdir -p "$CACHE"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$CACHE" --upgrade \
    nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 >&2
fi
"$ROOT/bin/nvcc" --version | grep -q 'release 13.0' || { echo "install-nvcc: $ROOT/bin/nvcc is not CUDA 13.0" >&2; exit 1; }
echo "$ROOT"
