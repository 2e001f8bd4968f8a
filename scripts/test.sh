#!/usr/bin/env bash
# The whole test suite on a fresh machine: fetch the real models the tests run on, check formatting,
# file-level import cycles (no new ones) and lints, check that the `cuda` feature compiles (nvcc 13.0 from PyPI; no GPU needed), run every test of
# the workspace. `.ci/run` calls this.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

scripts/fetch-assets.sh
cargo fmt --all -- --check
scripts/lint/import-cycles.py
cargo clippy --workspace --all-targets -- -D warnings
scripts/cuda/build.sh check
cargo test --workspace
