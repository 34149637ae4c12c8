// The teaching mode's small models, as pure functions (no DOM) so that Node checks them against
// scipy and torch (tests/e2e/overlay.test.mjs). They illustrate the seminar's equations on 2-D
// vectors; they are not the detectors.

/** Softmax of cosine similarities at temperature τ: `exp(s_i / τ) / Σ_j exp(s_j / τ)`. */
export function softmaxAtTemperature(similarities, tau) {
  if (!(tau > 0)) throw new Error(`temperature must be positive, got ${tau}`);
  const logits = similarities.map((s) => s / tau);
  const top = Math.max(...logits);
  const e = logits.map((l) => Math.exp(l - top));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

const norm = (v) => Math.hypot(...v);

/**
 * AA-CLIP's residual adapter on one token vector: `a = LeakyReLU₀.₀₁(W x)`, "Norm" rescales `a` to
 * the length of `x` (as the official code does), and `x_enh = λ · x_res + (1 − λ) · x`.
 */
export function residualAdapter(W, x, lambda) {
  const wx = W.map((row) => row.reduce((s, wij, j) => s + wij * x[j], 0));
  const a = wx.map((v) => (v >= 0 ? v : 0.01 * v));
  const scale = norm(x) / norm(a);
  const xRes = a.map((v) => v * scale);
  const xEnh = xRes.map((v, i) => lambda * v + (1 - lambda) * x[i]);
  return { xRes, xEnh };
}

/**
 * One planar flow step `f(z) = z + u · tanh(w·z + b)` and `log |det ∂f/∂z| = log |1 + u·ψ(z)|` with
 * `ψ(z) = (1 − tanh²(w·z + b)) w` — the density correction of the seminar's prompt-flow slide.
 */
export function planarFlow(z, u, w, b) {
  const h = Math.tanh(w[0] * z[0] + w[1] * z[1] + b);
  const fz = [z[0] + u[0] * h, z[1] + u[1] * h];
  const dh = 1 - h * h;
  const logAbsDet = Math.log(Math.abs(1 + dh * (u[0] * w[0] + u[1] * w[1])));
  return { fz, logAbsDet };
}

/**
 * Makes a planar flow invertible (`w·u ≥ −1`) by moving `u` along `w`, the usual
 * re-parameterisation, so that the toy never folds the plane.
 */
export function invertibleU(u, w) {
  const wu = w[0] * u[0] + w[1] * u[1];
  if (wu >= -1) return u;
  const m = -1 + Math.log1p(Math.exp(wu));
  const ww = w[0] * w[0] + w[1] * w[1];
  return [u[0] + ((m - wu) * w[0]) / ww, u[1] + ((m - wu) * w[1]) / ww];
}

/** Small seeded generator (mulberry32) so that a "resample" is reproducible from its seed. */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal pair by the Box–Muller transform. */
export function gaussianPair(uniform) {
  const u1 = Math.max(uniform(), 1e-12);
  const u2 = uniform();
  const r = Math.sqrt(-2 * Math.log(u1));
  return [r * Math.cos(2 * Math.PI * u2), r * Math.sin(2 * Math.PI * u2)];
}

/**
 * The toy prompt flow: `z₀ = μ + σ ⊙ ε`, pushed through the planar flows in order. Returns the base
 * sample, the flowed sample and `log q_K(z_K) = log q₀(z₀) − Σ_k log |det ∂f_k/∂z|`.
 */
export function pushThroughFlows(eps, { mu, sigma, flows }) {
  const z0 = [mu[0] + sigma[0] * eps[0], mu[1] + sigma[1] * eps[1]];
  let logq = -Math.log(2 * Math.PI * sigma[0] * sigma[1]) - 0.5 * (eps[0] * eps[0] + eps[1] * eps[1]);
  let z = z0;
  for (const { u, w, b } of flows) {
    const step = planarFlow(z, u, w, b);
    z = step.fz;
    logq -= step.logAbsDet;
  }
  return { z0, z, logq };
}

/** One Monte-Carlo sample of the toy prompt flow (ε ~ N(0, I) from `uniform`). */
export function sampleFlow(uniform, params) {
  return pushThroughFlows(gaussianPair(uniform), params);
}
