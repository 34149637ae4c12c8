#!/usr/bin/env bash
# Builds the page's engine into www/pkg/: the vlad-web crate for wasm32 and wasm-bindgen's JS glue
# (`--target web`, ES modules: www/pkg/vlad_web.js + vlad_web_bg.wasm).
#
#   bash tools/build-web.sh                    # release profile (what to deploy)
#   bash tools/build-web.sh --profile dev      # any cargo profile; tests/browser.sh passes the one
#                                              # its wasm tests use, so both share one compilation
#
# Needs only crates.io: rustup's wasm32-unknown-unknown target and wasm-bindgen-cli at the exact
# wasm-bindgen version in Cargo.lock (`cargo install wasm-bindgen-cli --version <v>`; .ci/run
# installs both). CARGO_TARGET_DIR is honoured (default: ./target).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
while [[ $# -gt 0 ]]; do
  case "$1" in
    --profile) profile="${2:?--profile needs a name}"; shift 2 ;;
    --profile=*) profile="${1#--profile=}"; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "build-web.sh: unknown argument '$1' (use --profile NAME)" >&2; exit 2 ;;
  esac
done

want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if ! command -v wasm-bindgen >/dev/null; then
  echo "build-web.sh: wasm-bindgen not found; install it with: cargo install wasm-bindgen-cli --version $want" >&2
  exit 1
fi
have=$(wasm-bindgen --version | awk '{ print $2 }')
if [[ -n "$want" && "$have" != "$want" ]]; then
  echo "build-web.sh: wasm-bindgen $have on PATH but Cargo.lock has $want; run: cargo install wasm-bindgen-cli --version $want" >&2
  exit 1
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build -p vlad-web --target wasm32-unknown-unknown --profile "$profile"
# Cargo names the output folder of the `dev` profile `debug`.
out_dir=$profile
[[ "$profile" == dev ]] && out_dir=debug
wasm-bindgen --target web --no-typescript --out-dir www/pkg \
  "$CARGO_TARGET_DIR/wasm32-unknown-unknown/$out_dir/vlad_web.wasm"
ls -l www/pkg
