// Image decoding in the browser: a File becomes full-resolution RGBA bytes for the engine, plus a
// bitmap for drawing.
import { loadWasm } from './engine.js';

/** Largest side of the canvases on the page (the engine always gets the full image). */
export const DISPLAY_MAX = 640;
/** Small images are drawn enlarged to this side so that the map's detail stays visible. */
export const DISPLAY_MIN = 320;

/**
 * Largest image accepted, in pixels: twice Pillow's MAX_IMAGE_PIXELS (89 478 485), the limit vlad
 * applies natively (vlad-imaging's ImageLimits).
 */
export const MAX_PIXELS = 2 * 89_478_485;

/**
 * Decodes an image file. The header is checked first (by the engine's decoder limits, when the
 * engine is loaded) so that a decompression bomb is refused before the browser allocates its
 * bitmap; the decoded size is checked again for formats only the browser reads. Colour-space
 * conversion and alpha premultiplication are turned off so the bytes are the file's own, as a
 * native decoder would give them.
 */
export async function decodeImage(file) {
  await checkHeader(file);
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  } catch (e) {
    throw new Error(e?.message || 'the browser cannot decode this file');
  }
  const { width, height } = bitmap;
  if (width * height > MAX_PIXELS) {
    bitmap.close();
    throw new Error(`image of ${width}×${height} = ${width * height} pixels is over the limit of ${MAX_PIXELS} pixels`);
  }
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const rgba = new Uint8Array(ctx.getImageData(0, 0, width, height).data.buffer);
  return { name: file.name, width, height, rgba, bitmap };
}

/** Throws the engine's named error when the file's header declares too many pixels. */
async function checkHeader(file) {
  let check;
  try {
    check = (await loadWasm()).check_image_header;
  } catch {
    return; // no engine: the decoded-size check below still applies
  }
  if (!check) return;
  const bytes = new Uint8Array(await file.arrayBuffer());
  try {
    check(bytes);
  } catch (e) {
    // A dead wasm instance cannot judge; the decoded-size check still applies.
    if (e instanceof WebAssembly.RuntimeError) return;
    throw e;
  }
}

/** Canvas size for showing a `width × height` image: its own size, kept within DISPLAY_MIN … DISPLAY_MAX a side. */
export function displaySize(width, height) {
  const side = Math.max(width, height);
  const scale = side > DISPLAY_MAX ? DISPLAY_MAX / side : side < DISPLAY_MIN ? DISPLAY_MIN / side : 1;
  return { w: Math.max(1, Math.round(width * scale)), h: Math.max(1, Math.round(height * scale)) };
}

/** RGBA pixels of the image as drawn at `w × h` (smoothed by the browser when it shrinks). */
export function displayPixels(bitmap, w, h) {
  const canvas = new OffscreenCanvas(w, h);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(bitmap, 0, 0, w, h);
  return ctx.getImageData(0, 0, w, h).data;
}
