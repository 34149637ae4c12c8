// Weight files: streamed download with progress, and the Cache API store that keeps them for the
// next visit (keyed by their URL; local files under a same-origin key made from name and size).

const CACHE_NAME = 'vlad-weights-v1';

/** Whether the Cache API can be used (it needs a secure context: https or localhost). */
export function cacheAvailable() {
  return typeof caches !== 'undefined' && globalThis.isSecureContext !== false;
}

/** The cache key of a local file (same origin, so the Cache API accepts it). */
export function localFileKey(file) {
  const url = new URL(`vlad-local-weights/${encodeURIComponent(file.name)}`, location.href);
  url.searchParams.set('size', String(file.size));
  url.searchParams.set('modified', String(file.lastModified ?? 0));
  return url.href;
}

/**
 * Downloads `url` into memory, calling `onProgress(received, total|null)` as chunks arrive (the
 * total comes from `Content-Length` and is null when the server sends none, or when the body is
 * compressed in transit so that the two would not compare).
 */
export async function download(url, { onProgress = () => {}, signal } = {}) {
  let response;
  try {
    response = await fetch(url, { signal, mode: 'cors', credentials: 'omit' });
  } catch (e) {
    if (e?.name === 'AbortError') throw e;
    const err = new Error(e?.message ?? String(e));
    err.kind = 'network';
    throw err;
  }
  if (!response.ok) {
    const err = new Error(`${response.status} ${response.statusText}`);
    err.kind = 'http';
    err.status = response.status;
    err.statusText = response.statusText;
    throw err;
  }
  const length = Number(response.headers.get('Content-Length'));
  const encoded = (response.headers.get('Content-Encoding') ?? 'identity') !== 'identity';
  const total = Number.isFinite(length) && length > 0 && !encoded ? length : null;
  if (!response.body) {
    const bytes = new Uint8Array(await response.arrayBuffer());
    onProgress(bytes.length, bytes.length);
    return bytes;
  }
  const reader = response.body.getReader();
  // With a known size, one buffer; otherwise collect the chunks and join them at the end.
  let buffer = total ? new Uint8Array(total) : null;
  const chunks = [];
  let received = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (buffer && received + value.length > buffer.length) {
      // The server sent more than it announced: fall back to collecting chunks.
      chunks.push(buffer.subarray(0, received));
      buffer = null;
    }
    if (buffer) buffer.set(value, received);
    else chunks.push(value);
    received += value.length;
    onProgress(received, buffer ? total : null);
  }
  if (buffer) return received === buffer.length ? buffer : buffer.slice(0, received);
  const joined = new Uint8Array(received);
  let offset = 0;
  for (const c of chunks) {
    joined.set(c, offset);
    offset += c.length;
  }
  return joined;
}

/** Stores bytes under `key` with a display name. */
export async function putCached(key, bytes, name) {
  const cache = await caches.open(CACHE_NAME);
  const headers = new Headers({
    'Content-Type': 'application/octet-stream',
    'Content-Length': String(bytes.length),
    'X-Vlad-Name': encodeURIComponent(name),
    'X-Vlad-Stored': new Date().toISOString(),
  });
  await cache.put(key, new Response(bytes, { headers }));
}

/** The bytes stored under `key`, or null. */
export async function getCached(key) {
  if (!cacheAvailable()) return null;
  const cache = await caches.open(CACHE_NAME);
  const response = await cache.match(key);
  return response ? new Uint8Array(await response.arrayBuffer()) : null;
}

/** Everything in the store: `{key, name, size, stored}`. */
export async function listCached() {
  if (!cacheAvailable()) return [];
  const cache = await caches.open(CACHE_NAME);
  const entries = [];
  for (const request of await cache.keys()) {
    const response = await cache.match(request);
    if (!response) continue;
    entries.push({
      key: request.url,
      name: decodeURIComponent(response.headers.get('X-Vlad-Name') ?? request.url),
      size: Number(response.headers.get('Content-Length')),
      stored: response.headers.get('X-Vlad-Stored') ?? '',
    });
  }
  return entries;
}

/** Empties the store. */
export async function clearCached() {
  if (cacheAvailable()) await caches.delete(CACHE_NAME);
}
