#!/usr/bin/env bash
# Link-time stand-ins for the CUDA libraries a `--features cuda` binary links (cudarc's
# `dynamic-linking`, which candle asks for): libcuda, libnvrtc, libcurand, libcublas, libcublasLt.
# Each stub defines every function cudarc declares for that library and carries the real library's
# SONAME, so the binary records `libcuda.so.1`, `libcublas.so.13`, ... and the GPU machine's real
# libraries are the ones loaded at run time. The stubs are never loaded: they only let the linker
# finish on a machine without the CUDA libraries. Writes DIR/lib/stubs/*.so.
#
#   scripts/cuda/make-stubs.sh CUDARC_SRC_DIR DIR
set -euo pipefail
SRC=${1:?cudarc source dir (…/registry/src/…/cudarc-0.19.x)}
DIR=${2:?output root}
OUT=$DIR/lib/stubs
mkdir -p "$OUT"
# module of cudarc : library name : SONAME of the CUDA 13 library
for entry in driver:cuda:libcuda.so.1 nvrtc:nvrtc:libnvrtc.so.13 curand:curand:libcurand.so.10 \
             cublas:cublas:libcublas.so.13 cublaslt:cublasLt:libcublasLt.so.13; do
  IFS=: read -r module lib soname <<<"$entry"
  sys=$SRC/src/$module/sys/mod.rs
  [ -f "$sys" ] || { echo "make-stubs: $sys not found" >&2; exit 1; }
  c=$OUT/$lib.c
  grep -oE '^pub unsafe fn [A-Za-z_][A-Za-z0-9_]*\(' "$sys" | sed -E 's/^pub unsafe fn ([A-Za-z0-9_]+)\(/void \1(void) {}/' | sort -u >"$c"
  [ -s "$c" ] || { echo "make-stubs: no functions found in $sys" >&2; exit 1; }
  cc -shared -fPIC -o "$OUT/lib$lib.so" -Wl,-soname,"$soname" "$c"
  rm -f "$c"
done
echo "$OUT"
