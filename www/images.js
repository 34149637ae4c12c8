// Image decoding in the browser: a File becomes full-resolution RGBA bytes for the engine, plus a
// bitmap for drawing.
import { loadWasm } from './engine.js';

/** Largest side of the canvases on the page (the engine always gets the full image). */
export const DISPLAY_MAX = 640;
/** Small images are drawn enlarged to this side so that the map's detail stays visible. */
export const DISPLAY_MIN = 320;

/**
 * Decodes an image file. vlad's pixel limit (the engine's `check_image_header`: twice Pillow's
 * MAX_IMAGE_PIXELS) is checked on the header first, so that a decompression bomb is refused before
 * the browser allocates its bitmap, and on the decoded size again for formats only the browser
 * reads. Without an engine nothing would use the pixels, so there is nothing to check with.
 * Colour-space conversion and alpha premultiplication are turned off so the bytes are the file's
 * own, as a native decoder would give them.
 */
export async function decodeImage(file) {
  const engine = await usableEngine();
  if (engine) engine.check_image_header(new Uint8Array(await file.arrayBuffer()));
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  } catch (e) {
    throw new Error(e?.message || 'the browser cannot decode this file');
  }
  const { width, height } = bitmap;
  try {
    engine?.check_image_size(width, height);
  } catch (e) {
    bitmap.close();
    throw e;
  }
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const rgba = new Uint8Array(ctx.getImageData(0, 0, width, height).data.buffer);
  return { name: file.name, width, height, rgba, bitmap };
}

/** The loaded wasm module, or null when it is missing (the page then shows why elsewhere). */
async function usableEngine() {
  try {
    return await loadWasm();
  } catch {
    return null;
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
