// Parity of the page's own numerics (www/overlay.js, www/toys.js) with the references recorded by
// tests/e2e/fixtures/make_fixtures.py (matplotlib, torch, scikit-image, scipy).
// Run: node tests/e2e/overlay.test.mjs   (exit code = result; no browser, no wasm needed)
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { turbo, resizeBilinear, thresholdMask, maskOutline, composeOverlay, range } from '../../www/overlay.js';
import { softmaxAtTemperature, residualAdapter, planarFlow, pushThroughFlows, invertibleU } from '../../www/toys.js';

const here = dirname(fileURLToPath(import.meta.url));
const ref = JSON.parse(readFileSync(join(here, 'fixtures', 'reference.json'), 'utf8'));

/** Largest |a − b| relative to max(1, |b|). */
function maxRelDiff(a, b) {
  assert.equal(a.length, b.length, 'length');
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / Math.max(1, Math.abs(b[i])));
  return worst;
}

test('turbo colours equal matplotlib colormaps["turbo"](v, bytes=True) exactly', () => {
  const { values, rgb } = ref.turbo;
  assert.ok(values.length > 400);
  values.forEach((v, i) => assert.deepEqual(turbo(v), rgb[i], `v = ${v}`));
});

test('bilinear resize matches torch F.interpolate(bilinear, align_corners=False) within 1e-6 (f32 storage)', () => {
  for (const c of ref.bilinear) {
    const out = resizeBilinear(Float32Array.from(c.src), c.src_w, c.src_h, c.dst_w, c.dst_h);
    // The source is rounded to f32 and the result stored in f32: ~1e-7 relative; 1e-6 leaves no room for a wrong tap.
    const d = maxRelDiff(out, c.out);
    assert.ok(d <= 1e-6, `${c.src_w}×${c.src_h} → ${c.dst_w}×${c.dst_h}: max rel diff ${d}`);
  }
});

test('resize rejects a map of the wrong length', () => {
  assert.throws(() => resizeBilinear(new Float32Array(5), 2, 2, 4, 4), /5 values, expected 2×2/);
});

test('threshold mask and its outline match scikit-image find_boundaries(mode="inner", connectivity=1)', () => {
  for (const c of ref.outline) {
    const mask = thresholdMask(c.values, 0, 1, c.threshold);
    assert.deepEqual(Array.from(mask), c.mask, `mask ${c.w}×${c.h} at ${c.threshold}`);
    const outline = maskOutline(mask, c.w, c.h);
    assert.deepEqual(Array.from(outline), c.outline, `outline ${c.w}×${c.h} at ${c.threshold}`);
  }
  assert.ok(ref.outline.some((c) => c.outline.includes(1)), 'fixtures include non-empty outlines');
});

test('overlay blends turbo over the image and draws the outline in white', () => {
  const c = ref.outline[0];
  const w = c.w;
  const h = c.h;
  const image = new Uint8ClampedArray(4 * w * h).fill(100);
  const map = Float32Array.from(c.values, (v) => 3 * v - 1); // raw map values outside [0, 1]
  const { lo, hi } = range(map);
  const opaque = composeOverlay(image, map, w, h, { lo, hi, opacity: 1 });
  const clear = composeOverlay(image, map, w, h, { lo, hi, opacity: 0 });
  const half = composeOverlay(image, map, w, h, { lo, hi, opacity: 0.5, threshold: c.threshold });
  for (let i = 0; i < w * h; i++) {
    const [r, g, b] = turbo((map[i] - lo) / (hi - lo));
    assert.deepEqual(Array.from(opaque.slice(4 * i, 4 * i + 4)), [r, g, b, 255]);
    assert.deepEqual(Array.from(clear.slice(4 * i, 4 * i + 4)), [100, 100, 100, 255]);
    const expected = c.outline[i] ? [255, 255, 255] : [r, g, b].map((v) => Uint8ClampedArray.of(0.5 * 100 + 0.5 * v)[0]); // ties to even, as canvases store bytes
    assert.deepEqual(Array.from(half.slice(4 * i, 4 * i + 3)), expected, `pixel ${i}`);
  }
  assert.throws(() => composeOverlay(image, map.subarray(1), w, h, { lo, hi, opacity: 1 }), /sizes disagree/);
});

test('softmax at temperature τ matches scipy.special.softmax(s / τ) within 1e-12', () => {
  for (const c of ref.softmax) {
    const p = softmaxAtTemperature(c.similarities, c.tau);
    assert.ok(maxRelDiff(p, c.probabilities) <= 1e-12, JSON.stringify(c));
  }
  assert.throws(() => softmaxAtTemperature([0.1, 0.2], 0), /temperature must be positive/);
});

test('planar flow step and log|det J| match torch autograd within 1e-12', () => {
  for (const c of ref.planar_flow) {
    const { fz, logAbsDet } = planarFlow(c.z, c.u, c.w, c.b);
    assert.ok(maxRelDiff(fz, c.fz) <= 1e-12, 'f(z)');
    assert.ok(maxRelDiff([logAbsDet], [c.log_abs_det]) <= 1e-10, `log det ${logAbsDet} vs ${c.log_abs_det}`);
  }
});

test('flow density log q_K = log q_0 − Σ log|det| matches torch within 1e-10', () => {
  for (const c of ref.flow_density) {
    const { z0, z, logq } = pushThroughFlows(c.eps, { mu: c.mu, sigma: c.sigma, flows: c.flows });
    assert.ok(maxRelDiff(z0, c.z0) <= 1e-12, 'z0');
    assert.ok(maxRelDiff(z, c.z) <= 1e-10, 'z_K');
    assert.ok(maxRelDiff([logq], [c.logq]) <= 1e-10, `log q ${logq} vs ${c.logq}`);
  }
});

test('invertibleU keeps w·u ≥ −1', () => {
  for (const c of ref.planar_flow) {
    const u = invertibleU([-5 * c.w[0], -5 * c.w[1]], c.w);
    assert.ok(c.w[0] * u[0] + c.w[1] * u[1] >= -1 - 1e-12);
    assert.deepEqual(invertibleU(c.w, c.w), c.w, 'an already invertible u is unchanged');
  }
});

test('residual adapter matches torch (LeakyReLU 0.01, norm matching, λ mix) within 1e-12', () => {
  for (const c of ref.residual_adapter) {
    const { xRes, xEnh } = residualAdapter(c.W, c.x, c.lambda);
    assert.ok(maxRelDiff(xRes, c.x_res) <= 1e-12, 'x_res');
    assert.ok(maxRelDiff(xEnh, c.x_enh) <= 1e-12, 'x_enh');
  }
});
