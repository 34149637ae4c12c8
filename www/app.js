// The Detect tab: engine start, model loading (file, URL, cache), detector settings, reference
// images, and scoring uploaded images into side-by-side overlays.
import { t, setLanguage, initialLanguage, currentLanguage, translate, formatBytes } from './i18n.js';
import { EngineHost, GpuFailure, loadWasm, errorText } from './engine.js';
import * as weights from './weights.js';
import { decodeImage, displaySize, displayPixels } from './images.js';
import { resizeBilinear, composeOverlay, drawLegend } from './overlay.js';
import { DETECTORS, supportedDetectors, optionsJson } from './detectors.js';
import { initTeaching } from './teach.js';

const $ = (id) => document.getElementById(id);
const host = new EngineHost();

const state = {
  /** Detector names the engine implements. */
  supported: new Set(),
  /** `{name, source, info, reload: () => Promise<Uint8Array>}` of the loaded backbone. */
  model: null,
  detectorReady: false,
  detectorId: 'zero-shot',
  /** Control values per detector and option key. */
  options: Object.fromEntries(DETECTORS.map((d) => [d.id, Object.fromEntries(d.options.map((o) => [o.key, o.value]))])),
  /** Checkpoint files (`{name, bytes}`) of the detectors that need trained weights, by id. */
  checkpoints: {},
  /** Decoded normal reference images. */
  references: [],
  /** One entry per uploaded image (see `addImages`). */
  items: [],
  /** Bumped whenever detector settings change; results computed under an older value are redone. */
  generation: 0,
  scoring: false,
  download: null,
};

// ------------------------------------------------------------------ messages

/** Status lines remember their message so that a language switch can re-render them. */
const statusMessages = new Map();

function setStatus(el, key, vars = {}, kind = '') {
  statusMessages.set(el, { key, vars });
  el.textContent = t(key, vars);
  if (kind) el.dataset.state = kind;
  else delete el.dataset.state;
}

function setStatusText(el, text, kind = '') {
  statusMessages.delete(el);
  el.textContent = text;
  if (kind) el.dataset.state = kind;
  else delete el.dataset.state;
}

function rerenderStatuses() {
  for (const [el, { key, vars }] of statusMessages) el.textContent = t(key, vars);
}

function showError(error) {
  $('global-error-text').textContent = t('error.generic', { error: errorText(error) });
  $('global-error').hidden = false;
}

window.addEventListener('error', (e) => showError(e.error ?? e.message));
window.addEventListener('unhandledrejection', (e) => showError(e.reason));

// ------------------------------------------------------------------ engine

function preferGpu() {
  return $('use-gpu').checked;
}

async function startEngine() {
  state.detectorReady = false;
  const status = $('engine-status');
  delete status.dataset.backend;
  setStatus(status, 'engine.starting', { mode: t(preferGpu() ? 'mode.gpu' : 'mode.cpu') });
  try {
    await host.start(preferGpu());
  } catch (e) {
    setStatus(status, 'engine.missing', { error: errorText(e) }, 'error');
    return false;
  }
  status.dataset.backend = host.backend;
  setStatus(status, host.backend === 'webgpu' ? 'engine.ready.webgpu' : 'engine.ready.cpu', { adapter: host.adapter }, 'ready');
  document.dispatchEvent(new CustomEvent('vlad-engine'));
  return true;
}

host.onFatal = (text) => {
  setStatus($('engine-status'), 'engine.broken', { error: text }, 'error');
  showError(t('engine.broken', { error: text }));
};

/**
 * The WebGPU engine stopped (device lost, out of GPU memory): carry on with the CPU engine for
 * this visit (the stored GPU preference is kept), with the same weights, detector, checkpoints,
 * references and images; the interrupted images are scored again.
 */
host.onGpuLost = async (text) => {
  $('use-gpu').checked = false;
  showError(t('engine.gpu-lost', { error: text }));
  if (await startEngine()) await reloadModel();
};

// ------------------------------------------------------------------ model

function formatSize(n) {
  return formatBytes(n);
}

/** Builds the backbone from bytes; `reload` gives the bytes again (GPU switch, activation change). */
async function loadModel(bytes, name, source, reload) {
  state.model = null;
  state.detectorReady = false;
  state.generation += 1;
  const status = $('model-status');
  setStatus(status, 'model.loading', { name, size: formatSize(bytes.length) });
  const started = performance.now();
  try {
    const json = await host.run((e) => e.load_weights(bytes, $('arch').value, $('activation').value));
    const info = JSON.parse(json);
    state.model = { name, source, info, reload };
    const time = Math.round(performance.now() - started);
    setStatus(status, 'model.loaded', {
      arch: info.architecture, activation: info.activation, size: info.image_size, tensors: info.tensors, source, time,
    }, 'ready');
    if (info.warnings?.length) {
      status.textContent += ` — ${t('model.warnings', { count: info.warnings.length, list: info.warnings.slice(0, 5).join('; ') })}`;
    }
    for (const input of document.querySelectorAll('input[data-native="image_size"]')) input.placeholder = `${info.image_size} (${t('detector.option.native')})`;
    document.dispatchEvent(new CustomEvent('vlad-model'));
    await applyDetector();
  } catch (e) {
    setStatus(status, 'error.generic', { error: errorText(e) }, 'error');
    document.dispatchEvent(new CustomEvent('vlad-model'));
  }
}

async function reloadModel() {
  if (!state.model) return;
  const { name, source, reload } = state.model;
  let bytes;
  try {
    bytes = await reload();
  } catch (e) {
    setStatus($('model-status'), 'error.generic', { error: errorText(e) }, 'error');
    return;
  }
  await loadModel(bytes, name, source, reload);
}

function keepInCache() {
  return $('keep-cache').checked && weights.cacheAvailable();
}

async function storeInCache(key, bytes, name) {
  if (!keepInCache()) return;
  try {
    await weights.putCached(key, bytes, name);
    await renderCacheList();
  } catch (e) {
    showError(t('model.cache.failed', { error: errorText(e) }));
  }
}

async function onWeightsFile() {
  const file = $('weights-file').files?.[0];
  if (!file) return;
  setStatus($('model-status'), 'model.reading', { name: file.name });
  let bytes;
  try {
    bytes = new Uint8Array(await file.arrayBuffer());
  } catch (e) {
    setStatus($('model-status'), 'error.generic', { error: `${file.name}: ${errorText(e)}` }, 'error');
    return;
  }
  const key = weights.localFileKey(file);
  // Without the cache, keep the bytes for a reload; with it, read them back from there.
  const reload = keepInCache() ? async () => (await weights.getCached(key)) ?? bytes : async () => bytes;
  await loadModel(bytes, file.name, file.name, reload);
  if (state.model) await storeInCache(key, bytes, file.name);
}

function showProgress(received, total) {
  const bar = $('weights-progress');
  $('weights-progress-row').hidden = false;
  if (total) {
    bar.max = total;
    bar.value = received;
    $('weights-progress-text').textContent = t('fetch.progress', { done: formatSize(received), total: formatSize(total) });
  } else {
    bar.removeAttribute('value');
    $('weights-progress-text').textContent = t('fetch.progress.unknown', { done: formatSize(received) });
  }
}

async function onWeightsUrl() {
  const raw = $('weights-url').value.trim();
  const status = $('model-status');
  let url;
  try {
    url = new URL(raw, location.href);
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error('scheme');
  } catch {
    setStatus(status, 'fetch.bad-url', { url: raw }, 'error');
    return;
  }
  setStatus(status, 'fetch.start', { url: url.href });
  const name = decodeURIComponent(url.pathname.split('/').filter(Boolean).pop() ?? url.hostname);
  const reload = async () => (await weights.getCached(url.href)) ?? download(url.href);
  const cached = keepInCache() ? await weights.getCached(url.href) : null;
  if (cached) {
    setStatus(status, 'fetch.cached');
    await loadModel(cached, name, url.href, reload);
    return;
  }
  let bytes;
  try {
    bytes = await download(url.href);
  } catch (e) {
    if (e?.name === 'AbortError') setStatus(status, 'fetch.aborted');
    else if (e?.kind === 'http') setStatus(status, 'fetch.http', { status: e.status, statusText: e.statusText, url: url.href }, 'error');
    else setStatus(status, 'fetch.network', { url: url.href, error: errorText(e) }, 'error');
    return;
  }
  await loadModel(bytes, name, url.href, keepInCache() ? reload : async () => bytes);
  if (state.model) await storeInCache(url.href, bytes, name);
}

async function download(url) {
  const controller = new AbortController();
  state.download = controller;
  $('weights-cancel').hidden = false;
  $('weights-fetch').disabled = true;
  setStatus($('model-status'), 'fetch.start', { url });
  showProgress(0, null);
  try {
    return await weights.download(url, { onProgress: showProgress, signal: controller.signal });
  } finally {
    state.download = null;
    $('weights-cancel').hidden = true;
    $('weights-fetch').disabled = false;
  }
}

async function renderCacheList() {
  const list = $('cached-list');
  list.replaceChildren();
  if (!weights.cacheAvailable()) {
    const li = document.createElement('li');
    li.dataset.i18n = 'model.cache.unavailable';
    list.append(li);
    translate(list);
    $('cache-clear').disabled = true;
    return;
  }
  let entries = [];
  try {
    entries = await weights.listCached();
  } catch (e) {
    showError(e);
  }
  if (entries.length === 0) {
    const li = document.createElement('li');
    li.dataset.i18n = 'model.cached.none';
    list.append(li);
    translate(list);
    return;
  }
  for (const entry of entries) {
    const li = document.createElement('li');
    const text = document.createElement('span');
    text.textContent = t('model.cached.entry', { name: entry.name, size: formatSize(entry.size), date: entry.stored.slice(0, 10) });
    text.title = entry.key;
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = t('model.cached.load');
    button.setAttribute('aria-label', `${t('model.cached.load')} ${entry.name}`);
    button.addEventListener('click', async () => {
      const bytes = await weights.getCached(entry.key);
      if (!bytes) {
        await renderCacheList();
        return;
      }
      await loadModel(bytes, entry.name, entry.key, async () => (await weights.getCached(entry.key)) ?? bytes);
    });
    li.append(text, button);
    list.append(li);
  }
}

// ------------------------------------------------------------------ detectors

function renderDetectors() {
  const list = $('detector-list');
  for (const det of DETECTORS) {
    const available = state.supported.has(det.id);
    const wrap = document.createElement('div');
    wrap.className = 'detector';
    wrap.dataset.id = det.id;
    wrap.dataset.available = String(available);
    wrap.dataset.selected = String(det.id === state.detectorId);
    const noteId = `det-note-${det.id}`;
    wrap.innerHTML = `
      <label><input type="radio" name="detector" value="${det.id}" aria-describedby="${noteId}"
        ${det.id === state.detectorId ? 'checked' : ''} ${available ? '' : 'disabled'}>
        <span data-i18n="detector.${det.id}"></span>
        ${available ? '' : '<span class="coming" data-i18n="detector.coming"></span>'}</label>
      <p class="note" id="${noteId}"><span lang="en"></span><span lang="ko"></span></p>
      <div class="options"></div>`;
    wrap.querySelector('.note [lang="en"]').textContent = det.noteEn;
    wrap.querySelector('.note [lang="ko"]').textContent = det.noteKo;
    const options = wrap.querySelector('.options');
    if (det.checkpoint) options.append(...checkpointFields(det, available));
    for (const opt of det.options) options.append(optionField(det, opt, available));
    list.append(wrap);
  }
  translate(list);
  list.addEventListener('change', (e) => {
    if (e.target.name !== 'detector') return;
    state.detectorId = e.target.value;
    for (const el of list.querySelectorAll('.detector')) el.dataset.selected = String(el.dataset.id === state.detectorId);
    applyDetector();
  });
}

function bilingualLabel(label, en, ko) {
  const a = document.createElement('span');
  a.lang = 'en';
  a.textContent = en;
  const b = document.createElement('span');
  b.lang = 'ko';
  b.textContent = ko;
  label.append(a, b);
}

function checkpointFields(det, available) {
  // Shown for the detectors that need their own trained weights: a file (AA-CLIP: its text- and
  // image-adapter files together) or a URL, kept in `state.checkpoints` and handed to the engine
  // each time the detector is built (a GPU switch restarts the engine).
  const fields = [];
  const status = document.createElement('p');
  status.className = 'status';
  status.id = `ckpt-${det.id}-status`;
  status.setAttribute('role', 'status');
  for (const [kind, key] of [['file', 'detector.checkpoint'], ['url', 'detector.checkpoint-url']]) {
    const field = document.createElement('div');
    field.className = kind === 'url' ? 'field url-row' : 'field';
    const id = `ckpt-${det.id}-${kind}`;
    const label = document.createElement('label');
    label.htmlFor = id;
    label.dataset.i18n = key;
    const input = document.createElement('input');
    input.id = id;
    input.type = kind;
    input.disabled = !available;
    field.append(label, input);
    if (kind === 'file') {
      input.accept = '.safetensors,.bpk,.burnpack,.pth,.pt';
      input.multiple = det.id === 'aa-clip';
      input.addEventListener('change', async () => {
        const files = Array.from(input.files ?? []);
        if (!files.length) return;
        const loaded = await Promise.all(files.map(async (f) => ({ name: f.name, bytes: new Uint8Array(await f.arrayBuffer()) })));
        await setCheckpoint(det, loaded, status);
      });
    } else {
      input.spellcheck = false;
      input.placeholder = 'https://…/checkpoint.safetensors';
      const button = document.createElement('button');
      button.type = 'button';
      button.dataset.i18n = 'detector.checkpoint-fetch';
      button.disabled = !available;
      button.addEventListener('click', async () => {
        const url = input.value.trim();
        if (!url) return;
        setStatus(status, 'detector.checkpoint-downloading', { url });
        try {
          const bytes = await weights.download(url, {
            onProgress: (got, total) => setStatus(status, 'detector.checkpoint-progress', { got: formatBytes(got), total: total ? formatBytes(total) : '?' }),
          });
          await setCheckpoint(det, [{ name: url.split('/').pop() || url, bytes }], status);
        } catch (e) {
          if (e?.kind === 'http') setStatus(status, 'fetch.http', { status: e.status, statusText: e.statusText, url }, 'error');
          else setStatus(status, 'error.generic', { error: errorText(e) }, 'error');
        }
      });
      field.append(button);
    }
    fields.push(field);
  }
  fields.push(status);
  return fields;
}

/** Checks a detector's checkpoint files with the engine, keeps them, and rebuilds the detector. */
async function setCheckpoint(det, files, status) {
  try {
    const tensors = await host.run((e) => {
      e.clear_checkpoints(det.id);
      let n = 0;
      for (const f of files) n += e.add_checkpoint(det.id, f.bytes, f.name);
      return n;
    });
    state.checkpoints[det.id] = files;
    setStatus(status, 'detector.checkpoint-loaded', { names: files.map((f) => f.name).join(', '), tensors }, 'ready');
  } catch (e) {
    delete state.checkpoints[det.id];
    setStatus(status, 'error.generic', { error: errorText(e) }, 'error');
    return;
  }
  if (det.id === state.detectorId) await applyDetector();
}

function optionField(det, opt, available) {
  const field = document.createElement('div');
  field.className = 'field';
  const id = `opt-${det.id}-${opt.key}`;
  const label = document.createElement('label');
  label.htmlFor = id;
  bilingualLabel(label, opt.labelEn, opt.labelKo);
  let input;
  if (opt.type === 'select') {
    input = document.createElement('select');
    for (const [value, key] of opt.choices) {
      const o = document.createElement('option');
      o.value = value;
      o.dataset.i18n = key;
      input.append(o);
    }
  } else {
    input = document.createElement('input');
    input.type = opt.type;
    for (const k of ['min', 'max', 'step']) if (opt[k] !== undefined) input[k] = String(opt[k]);
    if (opt.key === 'image_size') input.dataset.native = 'image_size';
  }
  input.id = id;
  input.value = String(opt.value);
  input.disabled = !available;
  if (opt.type === 'range') {
    const out = document.createElement('output');
    out.htmlFor = id;
    out.textContent = String(opt.value);
    label.append(' ', out);
    input.addEventListener('input', () => {
      out.textContent = input.value;
    });
  }
  input.addEventListener('change', () => {
    state.options[det.id][opt.key] = input.value;
    if (det.id === state.detectorId) applyDetector();
  });
  field.append(label, input);
  return field;
}

/** Sends the current detector settings (and the references) to the engine, then rescores. */
async function applyDetector() {
  state.detectorReady = false;
  state.generation += 1;
  const generation = state.generation;
  const status = $('detector-status');
  for (const item of state.items) if (item.rgba && item.state !== 'running') setItemState(item, 'waiting');
  if (!state.model) {
    setStatus(status, 'detector.needs-model');
    return;
  }
  const det = DETECTORS.find((d) => d.id === state.detectorId);
  const options = optionsJson(det, state.options[det.id]);
  const className = $('class-name').value.trim() || 'object';
  try {
    await host.run((e) => {
      if (det.checkpoint) {
        e.clear_checkpoints(det.id);
        for (const f of state.checkpoints[det.id] ?? []) e.add_checkpoint(det.id, f.bytes, f.name);
      }
      // The detector copies the backbone when it is built, so the resize rule goes first.
      e.set_pos_resize($('pos-resize').value);
      e.set_class(className);
      e.set_detector(det.id, options);
    });
    if (generation !== state.generation) return;
    for (let i = 0; i < state.references.length; i++) {
      setStatus($('refs-status'), 'refs.adding', { index: i + 1, count: state.references.length });
      const ref = state.references[i];
      await host.run((e) => e.add_reference(ref.rgba, ref.width, ref.height));
      if (generation !== state.generation) return;
    }
    renderRefsStatus();
  } catch (e) {
    if (generation === state.generation) setStatus(status, 'error.generic', { error: errorText(e) }, 'error');
    return;
  }
  const size = JSON.parse(options).image_size ?? state.model.info.image_size;
  setStatus(status, 'detector.ready', { detector: t(`detector.${det.id}`), class: className, size }, 'ready');
  state.detectorReady = true;
  for (const item of state.items) if (item.rgba) setItemState(item, 'queued');
  scoreQueued();
}

// ------------------------------------------------------------------ references

function renderRefsStatus() {
  if (state.references.length === 0) setStatus($('refs-status'), 'refs.none');
  else setStatus($('refs-status'), 'refs.count', { count: state.references.length });
}

async function onReferenceFiles() {
  const files = Array.from($('ref-files').files ?? []);
  $('ref-files').value = '';
  for (const file of files) {
    try {
      const { name, width, height, rgba } = await decodeImage(file);
      state.references.push({ name, width, height, rgba });
    } catch (e) {
      showError(t('images.decode-failed', { name: file.name, error: errorText(e) }));
    }
  }
  renderRefsStatus();
  // Re-applying rebuilds the calibration from all references and rescores with it.
  if (state.model) await applyDetector();
}

// ------------------------------------------------------------------ images

let nextItemId = 1;

async function addImages(files) {
  const template = $('result-template');
  const added = [];
  for (const file of files) {
    const el = template.content.firstElementChild.cloneNode(true);
    translate(el);
    const item = { id: nextItemId++, name: file.name, el, state: 'decoding', rgba: null };
    el.dataset.itemId = String(item.id);
    el.querySelector('.result-name').textContent = file.name;
    el.querySelector('.result-remove').addEventListener('click', () => removeItem(item));
    drawLegend(el.querySelector('.legend-bar'));
    $('results').append(el);
    state.items.push(item);
    setItemState(item, 'decoding');
    added.push([item, file]);
  }
  for (const [item, file] of added) {
    const started = performance.now();
    try {
      const image = await decodeImage(file);
      Object.assign(item, image);
      item.decodeMs = performance.now() - started;
      item.display = displaySize(image.width, image.height);
      item.displayRgba = displayPixels(image.bitmap, item.display.w, item.display.h);
      image.bitmap.close();
      item.bitmap = null;
      renderItem(item);
      setItemState(item, state.detectorReady ? 'queued' : 'waiting');
    } catch (e) {
      setItemState(item, 'error', t('images.decode-failed', { name: file.name, error: errorText(e) }));
    }
  }
  document.dispatchEvent(new CustomEvent('vlad-images'));
  scoreQueued();
}

function removeItem(item) {
  state.items = state.items.filter((i) => i !== item);
  item.removed = true;
  statusMessages.delete(item.el.querySelector('.result-state-text'));
  item.el.remove();
  if ($('scale').value === 'shared') renderAll();
  document.dispatchEvent(new CustomEvent('vlad-images'));
}

const STATE_MESSAGES = {
  decoding: 'images.decoding',
  waiting: 'images.waiting-model',
  queued: 'images.queued',
  running: 'images.running',
};

function setItemState(item, next, message = '') {
  item.state = next;
  item.el.dataset.state = next;
  const text = item.el.querySelector('.result-state-text');
  if (next === 'error') setStatusText(text, message);
  else if (STATE_MESSAGES[next]) setStatus(text, STATE_MESSAGES[next]);
  else setStatusText(text, '');
}

/** Scores queued images one at a time (the engine runs one call at a time anyway). */
async function scoreQueued() {
  if (state.scoring) return;
  state.scoring = true;
  try {
    for (;;) {
      if (!state.detectorReady) break;
      const item = state.items.find((i) => i.state === 'queued');
      if (!item) break;
      await scoreItem(item);
    }
  } finally {
    state.scoring = false;
  }
}

async function scoreItem(item) {
  const generation = state.generation;
  setItemState(item, 'running');
  try {
    const { result, map } = await host.run(async (e) => {
      const r = await e.score(item.rgba, item.width, item.height);
      return { result: r, map: e.last_map() };
    });
    if (item.removed) return;
    if (generation !== state.generation) {
      setItemState(item, state.detectorReady ? 'queued' : 'waiting');
      return;
    }
    if (map.length !== result.size * result.size) {
      throw new Error(`the engine returned ${map.length} map values for a ${result.size}×${result.size} map`);
    }
    item.result = result;
    item.map = map;
    item.mapDisplay = resizeBilinear(map, result.size, result.size, item.display.w, item.display.h);
    item.ranOn = host.backend === 'webgpu' ? `WebGPU — ${host.adapter}` : host.adapter;
    item.backend = host.backend;
    setItemState(item, 'done');
    if ($('scale').value === 'shared') renderAll();
    else renderItem(item);
  } catch (e) {
    if (item.removed) return;
    // The GPU went away under this image: it waits for the CPU engine (host.onGpuLost).
    if (e instanceof GpuFailure) setItemState(item, 'waiting');
    else if (generation !== state.generation && !host.fatal) setItemState(item, state.detectorReady ? 'queued' : 'waiting');
    else setItemState(item, 'error', errorText(e));
  }
}

function displaySettings() {
  return {
    opacity: Number($('opacity').value),
    threshold: $('show-outline').checked ? Number($('threshold').value) : undefined,
  };
}

function scaleFor(item) {
  if ($('scale').value === 'shared') {
    let lo = Infinity;
    let hi = -Infinity;
    for (const i of state.items) {
      if (!i.result) continue;
      lo = Math.min(lo, i.result.map_min);
      hi = Math.max(hi, i.result.map_max);
    }
    return { lo, hi };
  }
  return { lo: item.result.map_min, hi: item.result.map_max };
}

function formatValue(v) {
  if (!Number.isFinite(v)) return String(v);
  return Math.abs(v) >= 1000 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(3) : v.toPrecision(4);
}

function renderItem(item) {
  if (!item.displayRgba) return;
  const { w, h } = item.display;
  const original = item.el.querySelector('canvas.original');
  const overlay = item.el.querySelector('canvas.overlay');
  for (const c of [original, overlay]) {
    if (c.width !== w) c.width = w;
    if (c.height !== h) c.height = h;
  }
  original.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(item.displayRgba), w, h), 0, 0);
  original.setAttribute('role', 'img');
  original.setAttribute('aria-label', t('images.original', { name: item.name }));
  overlay.setAttribute('role', 'img');
  if (!item.result) {
    overlay.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(item.displayRgba), w, h), 0, 0);
    overlay.setAttribute('aria-label', t('images.original', { name: item.name }));
    return;
  }
  const started = performance.now();
  const { lo, hi } = scaleFor(item);
  const pixels = composeOverlay(item.displayRgba, item.mapDisplay, w, h, { lo, hi, ...displaySettings() });
  overlay.getContext('2d').putImageData(new ImageData(pixels, w, h), 0, 0);
  item.drawMs = performance.now() - started;
  const r = item.result;
  const scoreText = r.calibrated === null || r.calibrated === undefined
    ? formatValue(r.score)
    : `${formatValue(r.score)} (${t('images.calibrated')} ${r.calibrated.toFixed(3)})`;
  const scoreEl = item.el.querySelector('.score');
  scoreEl.textContent = scoreText;
  scoreEl.dataset.value = String(r.score);
  overlay.setAttribute('aria-label', `${t('images.overlay', { name: item.name })}. ${t('images.score')}: ${scoreText}`);
  overlay.dataset.mapMin = String(r.map_min);
  overlay.dataset.mapMax = String(r.map_max);
  const ranOn = item.el.querySelector('.ran-on');
  ranOn.textContent = item.ranOn;
  ranOn.dataset.backend = item.backend;
  item.el.querySelector('.legend-lo').textContent = formatValue(lo);
  item.el.querySelector('.legend-hi').textContent = formatValue(hi);
  renderTimings(item);
}

function renderTimings(item) {
  const rows = [['decode', item.decodeMs]];
  for (const stage of ['preprocess', 'submit', 'compute_and_readback', 'total']) rows.push([stage, item.result.timings?.[stage]]);
  rows.push(['draw', item.drawMs]);
  const body = item.el.querySelector('.timings tbody');
  body.replaceChildren();
  for (const [stage, ms] of rows) {
    if (ms === undefined) continue;
    const tr = document.createElement('tr');
    tr.dataset.stage = stage;
    tr.dataset.ms = String(ms);
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = t(`timing.${stage}`);
    const td = document.createElement('td');
    td.textContent = `${ms.toFixed(1)} ${t('unit.ms')}`;
    tr.append(th, td);
    body.append(tr);
  }
}

function renderAll() {
  for (const item of state.items) renderItem(item);
}

// ------------------------------------------------------------------ wiring

function setupTabs() {
  const tabs = [$('tab-detect'), $('tab-learn')];
  const select = (tab, focus) => {
    for (const other of tabs) {
      const selected = other === tab;
      other.setAttribute('aria-selected', String(selected));
      other.tabIndex = selected ? 0 : -1;
      $(other.getAttribute('aria-controls')).hidden = !selected;
    }
    if (focus) tab.focus();
  };
  for (const tab of tabs) {
    tab.addEventListener('click', () => {
      select(tab, false);
      history.replaceState(null, '', tab === tabs[1] ? '#learn' : '#detect');
    });
    tab.addEventListener('keydown', (e) => {
      const i = tabs.indexOf(tab);
      let next = null;
      if (e.key === 'ArrowRight') next = tabs[(i + 1) % tabs.length];
      else if (e.key === 'ArrowLeft') next = tabs[(i + tabs.length - 1) % tabs.length];
      else if (e.key === 'Home') next = tabs[0];
      else if (e.key === 'End') next = tabs[tabs.length - 1];
      if (next) {
        e.preventDefault();
        select(next, true);
      }
    });
  }
  const fromHash = () => {
    const hash = location.hash.slice(1);
    if (hash.startsWith('learn')) {
      select(tabs[1], false);
      if (hash !== 'learn') document.getElementById(hash)?.scrollIntoView();
    } else if (hash === 'detect') select(tabs[0], false);
  };
  window.addEventListener('hashchange', fromHash);
  fromHash();
}

function setupDropZone() {
  const zone = $('drop-zone');
  // Dropping a file anywhere else would make the browser navigate away from the page.
  for (const type of ['dragover', 'drop']) document.addEventListener(type, (e) => e.preventDefault());
  zone.addEventListener('dragenter', () => zone.classList.add('dragging'));
  zone.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('dragging');
  });
  zone.addEventListener('dragleave', (e) => {
    if (!zone.contains(e.relatedTarget)) zone.classList.remove('dragging');
  });
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('dragging');
    const files = Array.from(e.dataTransfer?.files ?? []);
    if (files.length) addImages(files);
  });
  $('image-files').addEventListener('change', () => {
    const files = Array.from($('image-files').files ?? []);
    $('image-files').value = '';
    if (files.length) addImages(files);
  });
}

function setupControls() {
  $('lang-toggle').addEventListener('click', () => setLanguage(currentLanguage() === 'en' ? 'ko' : 'en'));
  document.addEventListener('vlad-language', () => {
    rerenderStatuses();
    renderAll();
    renderCacheList();
  });
  $('global-error-close').addEventListener('click', () => {
    $('global-error').hidden = true;
  });

  $('use-gpu').addEventListener('change', async () => {
    try {
      localStorage.setItem('vlad.gpu', preferGpu() ? '1' : '0');
    } catch {
      // ignore
    }
    if (await startEngine()) await reloadModel();
  });

  $('weights-file').addEventListener('change', onWeightsFile);
  $('weights-fetch').addEventListener('click', onWeightsUrl);
  $('weights-url').addEventListener('keydown', (e) => {
    if (e.key === 'Enter') onWeightsUrl();
  });
  $('weights-cancel').addEventListener('click', () => state.download?.abort());
  $('arch').addEventListener('change', reloadModel);
  $('activation').addEventListener('change', reloadModel);
  $('cache-clear').addEventListener('click', async () => {
    await weights.clearCached();
    setStatus($('model-status'), 'model.cache.cleared');
    await renderCacheList();
  });

  $('class-name').addEventListener('change', applyDetector);
  $('pos-resize').addEventListener('change', applyDetector);
  $('ref-files').addEventListener('change', onReferenceFiles);
  $('refs-clear').addEventListener('click', () => {
    state.references = [];
    renderRefsStatus();
    if (state.model) applyDetector();
  });

  for (const id of ['opacity', 'threshold']) {
    $(id).addEventListener('input', () => {
      $(`${id}-value`).textContent = Number($(id).value).toFixed(2);
      renderAll();
    });
  }
  $('show-outline').addEventListener('change', renderAll);
  $('scale').addEventListener('change', renderAll);
  $('score-all').addEventListener('click', () => {
    for (const item of state.items) if (item.rgba && item.state !== 'running') setItemState(item, state.detectorReady ? 'queued' : 'waiting');
    scoreQueued();
  });
  $('clear-images').addEventListener('click', () => {
    for (const item of [...state.items]) removeItem(item);
  });
}

async function main() {
  setLanguage(initialLanguage());
  const params = new URLSearchParams(location.search);
  let gpu = navigator.gpu !== undefined;
  try {
    const stored = localStorage.getItem('vlad.gpu');
    if (stored !== null) gpu = stored === '1';
  } catch {
    // ignore
  }
  if (params.has('gpu')) gpu = params.get('gpu') !== '0';
  $('use-gpu').checked = gpu;

  setupTabs();
  setupControls();
  setupDropZone();
  setStatus($('model-status'), 'model.none');
  setStatus($('detector-status'), 'detector.needs-model');
  renderRefsStatus();
  renderCacheList();
  initTeaching({
    host,
    images: () => state.items.filter((i) => i.rgba),
    modelReady: () => state.model !== null && host.ready,
  });

  setStatus($('engine-status'), 'engine.loading');
  try {
    const wasm = await loadWasm();
    state.supported = supportedDetectors(wasm.Engine);
  } catch (e) {
    state.supported = supportedDetectors(undefined);
    renderDetectors();
    setStatus($('engine-status'), 'engine.missing', { error: errorText(e) }, 'error');
    return;
  }
  renderDetectors();
  await startEngine();
}

main();
