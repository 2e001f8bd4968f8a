#!/usr/bin/env bash
# Prepares gpu-bundle/ for scripts/gpu/check.sh on a GPU machine (which has no Rust): the release
# `wildreward` built with `--features cuda` (scripts/cuda/build.sh release; PTX for sm_90 by default),
# stripped and xz-compressed, and SmolLM2's tokenizer files (written by `wildreward convert` from the
# fetched GGUF; the 98 MB GGUF itself does not travel). Checks that the bundle and the ShareGPT
# sample fit the 64 MiB a device call carries. Then, with the device tool:
#
#   run(command="scripts/gpu/check.sh", carry=["gpu-bundle"], timeout_s=540)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
BUNDLE=$ROOT/gpu-bundle
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/tokenizer"
scripts/fetch-assets.sh >/dev/null
scripts/cuda/build.sh release
strip -o "$BUNDLE/wildreward" target/release/wildreward
xz -T0 -6 "$BUNDLE/wildreward"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# The tokenizer by this machine's (CPU) build: the CUDA binary needs libcuda.so.1 to start.
cargo build -q --workspace --bins
target/debug/wildreward convert --model assets/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \
  --out "$TMP/hf" >/dev/null
for f in tokenizer.json tokenizer_config.json special_tokens_map.json; do
  [ -f "$TMP/hf/$f" ] && cp "$TMP/hf/$f" "$BUNDLE/tokenizer/"
done
[ -f "$BUNDLE/tokenizer/tokenizer.json" ] || { echo "pack: convert wrote no tokenizer.json" >&2; exit 1; }
size=$(du -cb "$BUNDLE" data/sharegpt scripts | tail -1 | cut -f1)
echo "gpu-bundle: $(du -sh "$BUNDLE" | cut -f1) (with data/sharegpt and scripts: $((size / 1048576)) MiB of 64)"
[ "$size" -lt $((60 * 1048576)) ] || { echo "pack: too big for a device call" >&2; exit 1; }
