#!/usr/bin/env bash
# Builds the `cuda` feature on a machine without a GPU: CUDA 13.0's nvcc from PyPI
# (scripts/cuda/install-nvcc.sh) compiles candle's kernels to PTX for CUDA_COMPUTE_CAP (default 90,
# the H100/H200), and link-time stubs of the CUDA libraries (scripts/cuda/make-stubs.sh) let the
# binaries link; the GPU machine's real libraries are loaded at run time.
#
#   scripts/cuda/build.sh check          # cargo check of every crate with the feature (CI)
#   scripts/cuda/build.sh release        # release binaries wildreward + online-dpo for a GPU machine
#   scripts/cuda/build.sh check -q       # extra arguments go to cargo
#
# Knobs: CUDA_CACHE (where nvcc is installed), CUDA_COMPUTE_CAP.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
MODE=${1:-check}
shift || true

TOOLKIT=$(scripts/cuda/install-nvcc.sh)
CUDARC=$(cargo metadata --format-version 1 --locked --features wildreward-model/cuda | python3 -c '
import json, os, sys
m = json.load(sys.stdin)
print(next(os.path.dirname(p["manifest_path"]) for p in m["packages"] if p["name"] == "cudarc"))')
scripts/cuda/make-stubs.sh "$CUDARC" "$TOOLKIT" >/dev/null

export PATH=$TOOLKIT/bin:$PATH
export CUDA_ROOT=$TOOLKIT
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
FEATURES=wildreward-model/cuda,wildreward-train/cuda,wildreward-serve/cuda,wildreward/cuda,online-dpo/cuda

start=$(date +%s)
case "$MODE" in
  # Same profile and workspace as clippy, so the crates that do not depend on candle are reused.
  check) cargo check --workspace --locked --features "$FEATURES" "$@" ;;
  release) cargo build --release --locked -p wildreward -p online-dpo --bins --features "wildreward/cuda,online-dpo/cuda" "$@" ;;
  *) echo "usage: scripts/cuda/build.sh check|release [cargo args]" >&2; exit 2 ;;
esac
echo "cuda $MODE (sm_$CUDA_COMPUTE_CAP, nvcc $("$TOOLKIT/bin/nvcc" --version | grep -o 'release [0-9.]*')): $(( $(date +%s) - start )) s" >&2
