#!/usr/bin/env bash
# The browser half of the test suite (tests/run.sh calls it): builds the page's wasm package, runs
# the wasm-bindgen tests of web/ in headless Chromium (WebGPU on SwiftShader, and the CPU backend),
# then drives the real page end to end. Exits non-zero on any failure. `--timings` runs only the
# opt-in ViT-B/16 load/inference timing test instead.
#
# Needs what .ci/run installs: the wasm32-unknown-unknown target, wasm-bindgen-cli (with its
# wasm-bindgen-test-runner) at the version in Cargo.lock, Debian's chromium + chromium-driver, Node ≥ 20.
#
# Environment:
#   CARGO_TARGET_DIR     cargo's target folder (default ./target)
#   VLAD_WEB_PROFILE     cargo profile of the wasm build (default release). The package and the
#                        wasm tests use the same one, so burn is compiled for wasm32 only once.
#   VLAD_E2E_WEIGHTS     weights for the page test (default: the tiny safetensors fixture; the
#                        engine reads burnpack and safetensors alike)
#   VLAD_E2E_ARTIFACTS   screenshots of the page test (default $CARGO_TARGET_DIR/e2e)
#   CHROMIUM, CHROMEDRIVER  browser and driver (default /usr/bin/chromium, /usr/bin/chromedriver)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
profile="${VLAD_WEB_PROFILE:-release}"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
export CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"
export VLAD_E2E_ARTIFACTS="${VLAD_E2E_ARTIFACTS:-$CARGO_TARGET_DIR/e2e}"

for tool in "$CHROMIUM" "$CHROMEDRIVER"; do
  [[ -x "$tool" ]] || { echo "browser.sh: $tool is missing (apt-get install chromium chromium-driver)" >&2; exit 1; }
done
command -v wasm-bindgen-test-runner >/dev/null \
  || { echo "browser.sh: wasm-bindgen-test-runner is missing (cargo install wasm-bindgen-cli at Cargo.lock's version)" >&2; exit 1; }

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# A fresh profile directory, and no traffic to Google's services on this closed network. No
# --use-angle=swiftshader: it makes pages hang; --enable-unsafe-webgpu alone gives SwiftShader's adapter.
# The JSON sits at a fixed path and the runner's variables are set for both cargo commands: the
# wasm-bindgen macros track them, and different values would recompile vlad-web between the two.
# The runner polls the page with synchronous scripts, which ChromeDriver gives up on after the
# W3C script timeout (30 s by default, 'Timed out receiving message from renderer: 30.000'); a GPU
# detection's first submission on SwiftShader (every kernel compiled to WGSL on the page's thread)
# can hold the page longer than that, so the session gets ten minutes, as the tests do.
mkdir -p "$scratch/chromium-profile" "$CARGO_TARGET_DIR/browser-tests"
webdriver_json="$CARGO_TARGET_DIR/browser-tests/webdriver.json"
cat > "$webdriver_json" <<JSON
{
  "timeouts": {"script": 600000, "pageLoad": 600000},
  "goog:chromeOptions": {
    "binary": "$CHROMIUM",
    "args": ["--headless=new", "--no-sandbox", "--enable-unsafe-webgpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--user-data-dir=$scratch/chromium-profile"]
  }
}
JSON
export WASM_BINDGEN_TEST_WEBDRIVER_JSON="$webdriver_json"
# The default timeout (20 s) is far too short for SwiftShader compiling every shader on the CPU.
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-600}"

echo "== wasm package (www/pkg, profile $profile)"
bash tools/build-web.sh --profile "$profile"

if [[ "${1:-}" == "--timings" ]]; then
  # Opt-in: the ViT-B/16 load and inference times of the README (minutes on SwiftShader).
  cargo test -p vlad-web --target wasm32-unknown-unknown --profile "$profile" --test browser -- --include-ignored --nocapture vit_b_16
  exit 0
fi

echo "== wasm tests of web/ in headless Chromium (WebGPU + CPU)"
cargo test -p vlad-web --target wasm32-unknown-unknown --profile "$profile" --test browser

echo "== page end to end (tests/e2e)"
if [[ ! -d tests/e2e/node_modules/playwright-core ]]; then
  (cd tests/e2e && npm ci --no-audit --no-fund)
fi
node tests/e2e/overlay.test.mjs
node tests/e2e/page.test.mjs
echo "== browser tests passed; screenshots in $VLAD_E2E_ARTIFACTS"
