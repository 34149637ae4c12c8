// Heat-map overlay numerics: pure functions on typed arrays (no DOM), so that Node can check them
// against matplotlib, torch and scikit-image (tests/e2e/overlay.test.mjs), plus two small canvas
// helpers at the end.
import { TURBO_HEX } from './turbo.js';

/** The turbo colormap as 256 × (R, G, B) bytes. */
export const TURBO = Uint8Array.from(TURBO_HEX.match(/../g), (h) => parseInt(h, 16));

/**
 * Index into the 256-entry table for a value in [0, 1], with matplotlib's rule for a listed
 * colormap: bin `floor(v · 256)`, 1.0 in the top bin, values below 0 or above 1 clamped (turbo's
 * under/over colours are its end colours). NaN gives -1 (drawn transparent).
 */
export function turboIndex(v) {
  if (Number.isNaN(v)) return -1;
  if (v >= 1) return 255;
  if (v < 0) return 0;
  return Math.floor(v * 256);
}

/** [r, g, b] bytes of the turbo colour for a value in [0, 1]. */
export function turbo(v) {
  const i = turboIndex(v);
  if (i < 0) return [0, 0, 0];
  return [TURBO[3 * i], TURBO[3 * i + 1], TURBO[3 * i + 2]];
}

/**
 * Bilinear resize of a row-major `srcW × srcH` map to `dstW × dstH`, with the pixel-centre
 * convention of PyTorch's `F.interpolate(mode="bilinear", align_corners=False)` (no antialiasing):
 * the same geometry as the square map being stretched back over the original image.
 */
export function resizeBilinear(src, srcW, srcH, dstW, dstH) {
  if (src.length !== srcW * srcH) {
    throw new Error(`map has ${src.length} values, expected ${srcW}×${srcH} = ${srcW * srcH}`);
  }
  const out = new Float32Array(dstW * dstH);
  const xs = axisTaps(srcW, dstW);
  const ys = axisTaps(srcH, dstH);
  for (let y = 0; y < dstH; y++) {
    const r0 = ys.i0[y] * srcW;
    const r1 = ys.i1[y] * srcW;
    const wy = ys.t[y];
    for (let x = 0; x < dstW; x++) {
      const i0 = xs.i0[x];
      const i1 = xs.i1[x];
      const wx = xs.t[x];
      const top = (1 - wx) * src[r0 + i0] + wx * src[r0 + i1];
      const bottom = (1 - wx) * src[r1 + i0] + wx * src[r1 + i1];
      out[y * dstW + x] = (1 - wy) * top + wy * bottom;
    }
  }
  return out;
}

/** Source taps per destination index along one axis (PyTorch's `area_pixel_compute_source_index`). */
function axisTaps(srcLen, dstLen) {
  const i0 = new Int32Array(dstLen);
  const i1 = new Int32Array(dstLen);
  const t = new Float64Array(dstLen);
  const scale = srcLen / dstLen;
  for (let d = 0; d < dstLen; d++) {
    const s = Math.max(scale * (d + 0.5) - 0.5, 0);
    const lo = Math.floor(s);
    i0[d] = lo;
    i1[d] = lo < srcLen - 1 ? lo + 1 : lo;
    t[d] = s - lo;
  }
  return { i0, i1, t };
}

/** Smallest and largest finite value of an array. */
export function range(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return { lo, hi };
}

/** `(v − lo) / (hi − lo)`; a flat range (hi ≤ lo) maps everything to 0. */
export function normalise(v, lo, hi) {
  return hi > lo ? (v - lo) / (hi - lo) : 0;
}

/** Binary mask of normalised values at or above a threshold (1 = anomalous). */
export function thresholdMask(values, lo, hi, threshold) {
  const mask = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) mask[i] = normalise(values[i], lo, hi) >= threshold ? 1 : 0;
  return mask;
}

/**
 * Inner outline of a binary mask: mask pixels with a 4-neighbour inside the image that is outside
 * the mask (scikit-image `find_boundaries(mode="inner", connectivity=1)`; the image border is not
 * an edge).
 */
export function maskOutline(mask, w, h) {
  const out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      if (!mask[i]) continue;
      if ((x > 0 && !mask[i - 1]) || (x < w - 1 && !mask[i + 1])
        || (y > 0 && !mask[i - w]) || (y < h - 1 && !mask[i + w])) {
        out[i] = 1;
      }
    }
  }
  return out;
}

/**
 * RGBA pixels of the overlay: the image blended with the turbo colour of the normalised map
 * (`opacity` in [0, 1]), and, when `threshold` is a number, the outline of `map ≥ threshold`
 * (normalised) drawn in white.
 */
export function composeOverlay(imageRgba, map, w, h, { lo, hi, opacity, threshold }) {
  if (imageRgba.length !== 4 * w * h || map.length !== w * h) {
    throw new Error(`overlay sizes disagree: image ${imageRgba.length / 4} px, map ${map.length} px, expected ${w}×${h}`);
  }
  const out = new Uint8ClampedArray(4 * w * h);
  for (let i = 0; i < w * h; i++) {
    const c = turboIndex(normalise(map[i], lo, hi));
    const a = c < 0 ? 0 : opacity;
    out[4 * i] = (1 - a) * imageRgba[4 * i] + a * TURBO[3 * c];
    out[4 * i + 1] = (1 - a) * imageRgba[4 * i + 1] + a * TURBO[3 * c + 1];
    out[4 * i + 2] = (1 - a) * imageRgba[4 * i + 2] + a * TURBO[3 * c + 2];
    out[4 * i + 3] = 255;
  }
  if (typeof threshold === 'number') {
    const outline = maskOutline(thresholdMask(map, lo, hi, threshold), w, h);
    for (let i = 0; i < w * h; i++) {
      if (outline[i]) out.set([255, 255, 255, 255], 4 * i);
    }
  }
  return out;
}

/** Draws the colour scale (low values left) into a canvas. */
export function drawLegend(canvas) {
  const ctx = canvas.getContext('2d');
  const { width, height } = canvas;
  const row = new ImageData(width, 1);
  for (let x = 0; x < width; x++) {
    const [r, g, b] = turbo(width > 1 ? x / (width - 1) : 0);
    row.data.set([r, g, b, 255], 4 * x);
  }
  for (let y = 0; y < height; y++) ctx.putImageData(row, 0, y);
}
