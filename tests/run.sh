#!/usr/bin/env bash
# The test suite (README's test command). Expects what .ci/run installs: Mesa Vulkan (lavapipe),
# Chromium + chromedriver, the wasm32 target and wasm-bindgen-cli.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export RUST_BACKTRACE=1

# One native build for everything: the wgpu backend is compiled in, flex stays the default.
features=(--features vlad-clip/wgpu)

echo "== native tests (flex backend)"
cargo test --workspace "${features[@]}"

echo "== backbone parity on wgpu (Vulkan)"
VLAD_TEST_BACKEND=wgpu cargo test --workspace "${features[@]}" --test clip_parity --test clip_components
