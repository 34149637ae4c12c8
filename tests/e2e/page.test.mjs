// End-to-end test of the demo page in Debian's headless Chromium (playwright-core, no browser
// download): serve www/ on loopback, load the tiny CLIP from a local file, score a fixture image,
// and check the drawn heat map, the score, the backend and the teaching tools — once on WebGPU
// (SwiftShader) and once with the GPU switched off.
//
//   node tests/e2e/page.test.mjs        (exit code = result)
//
// Environment:
//   VLAD_E2E_WEIGHTS    weights file (burnpack or safetensors); default tests/fixtures/clip/tiny_hf.safetensors
//   VLAD_E2E_IMAGE      image to upload; default tests/fixtures/clip/image.png
//   VLAD_E2E_ARTIFACTS  where screenshots go; default target/e2e
//   VLAD_E2E_MODES      comma-separated subset of "webgpu,cpu"; default both
//   VLAD_E2E_WWW        the page directory; default www (it must contain pkg/ built by tools/build-web.sh)
//   CHROMIUM            browser binary; default /usr/bin/chromium
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { serve } from './static-server.mjs';

const repo = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const fromRepo = (p) => resolve(repo, p);
const www = fromRepo(process.env.VLAD_E2E_WWW ?? 'www');
const weightsPath = fromRepo(process.env.VLAD_E2E_WEIGHTS ?? 'tests/fixtures/clip/tiny_hf.safetensors');
const imagePath = fromRepo(process.env.VLAD_E2E_IMAGE ?? 'tests/fixtures/clip/image.png');
const artifacts = fromRepo(process.env.VLAD_E2E_ARTIFACTS ?? 'target/e2e');
const modes = (process.env.VLAD_E2E_MODES ?? 'webgpu,cpu').split(',').map((m) => m.trim()).filter(Boolean);
const browserPath = process.env.CHROMIUM ?? '/usr/bin/chromium';

// Where the test serves the weights file for the download check.
const WEIGHTS_ROUTE = '/e2e/tiny.safetensors';
// Generous: SwiftShader compiles every WebGPU shader on the CPU.
const STEP_TIMEOUT_MS = 300_000;

function preflight() {
  const missing = [];
  if (!existsSync(join(www, 'pkg', 'vlad_web.js')) || !existsSync(join(www, 'pkg', 'vlad_web_bg.wasm'))) {
    missing.push(`${join(www, 'pkg')}/vlad_web.js + vlad_web_bg.wasm (build them with tools/build-web.sh)`);
  }
  for (const [what, path] of [['weights', weightsPath], ['image', imagePath], ['browser', browserPath]]) {
    if (!existsSync(path)) missing.push(`${what}: ${path}`);
  }
  for (const m of modes) if (m !== 'webgpu' && m !== 'cpu') missing.push(`unknown mode "${m}" in VLAD_E2E_MODES (webgpu, cpu)`);
  if (missing.length) throw new Error(`cannot run the page test; missing:\n  ${missing.join('\n  ')}`);
}

/**
 * Waits until `selector` has `data-state` = ready, failing early (with the message) on error. A
 * state whose text equals `stale` (what the element showed before the action) does not count.
 */
async function waitReady(page, selector, what, stale = null) {
  const handle = await page.waitForFunction(
    ([sel, old]) => {
      const el = document.querySelector(sel);
      if (!el || el.textContent === old) return false;
      if (el.dataset.state === 'ready') return { ok: true, text: el.textContent };
      if (el.dataset.state === 'error') return { ok: false, text: el.textContent };
      return false;
    },
    [selector, stale],
    { timeout: STEP_TIMEOUT_MS, polling: 100 },
  );
  const { ok, text } = await handle.jsonValue();
  if (!ok) throw new Error(`${what} failed: ${text}`);
  return text;
}

async function runMode(browser, baseUrl, mode) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 }, locale: 'en-US' });
  // Every GPUDevice the page obtains, so that the device-loss check can destroy it.
  await context.addInitScript(() => {
    window.__vladDevices = [];
    const proto = globalThis.GPUAdapter?.prototype;
    const original = proto?.requestDevice;
    if (typeof original !== 'function') return;
    proto.requestDevice = async function requestDevice(...args) {
      const device = await original.apply(this, args);
      window.__vladDevices.push(device);
      return device;
    };
  });
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  watchRequests(page, baseUrl, pageErrors);
  page.on('console', (m) => {
    if (m.type() === 'error') console.log(`  [${mode}] console error: ${m.text()}`);
  });
  try {
    await checkPage(page, baseUrl, mode, pageErrors);
  } catch (e) {
    mkdirSync(artifacts, { recursive: true });
    await page.screenshot({ path: join(artifacts, `failed-${mode}.png`), fullPage: true }).catch(() => {});
    throw e;
  } finally {
    await context.close();
  }
}

async function checkPage(page, baseUrl, mode, pageErrors) {
  const started = Date.now();
  const gpu = mode === 'webgpu' ? 1 : 0;
  await page.goto(`${baseUrl}?gpu=${gpu}`);
  assert.equal(await page.locator('#use-gpu').isChecked(), mode === 'webgpu', 'the "use GPU" checkbox follows ?gpu=');

  // Engine: the backend must be the one asked for.
  const engineText = await waitReady(page, '#engine-status', 'engine start');
  const backend = await page.locator('#engine-status').getAttribute('data-backend');
  console.log(`  [${mode}] engine: ${engineText}`);
  assert.equal(backend, mode, `backend "${backend}" (${engineText}) but the test asked for ${mode}`);

  // Detector settings first (class, input size 32), then the weights from a local file.
  await page.locator('#class-name').fill('bottle');
  await page.locator('#class-name').dispatchEvent('change');
  await page.locator('input[name="detector"][value="zero-shot"]').check();
  await page.locator('#opt-zero-shot-image_size').fill('32');
  await page.locator('#opt-zero-shot-image_size').dispatchEvent('change');
  await page.locator('#weights-file').setInputFiles(weightsPath);
  const modelText = await waitReady(page, '#model-status', 'model load');
  console.log(`  [${mode}] model: ${modelText}`);
  const detectorText = await waitReady(page, '#detector-status', 'detector setup');
  console.log(`  [${mode}] detector: ${detectorText}`);
  assert.match(detectorText, /"bottle"/);
  assert.match(detectorText, /32×32/);

  // Upload the image and wait for its overlay.
  await page.locator('#image-files').setInputFiles(imagePath);
  const card = page.locator('.result').first();
  await page.waitForFunction(() => {
    const el = document.querySelector('.result');
    return el && (el.dataset.state === 'done' || el.dataset.state === 'error');
  }, null, { timeout: STEP_TIMEOUT_MS, polling: 100 });
  const cardState = await card.getAttribute('data-state');
  if (cardState !== 'done') throw new Error(`scoring failed: ${await card.locator('.result-state').textContent()}`);

  const scoreText = (await card.locator('[data-testid="score"]').textContent()).trim();
  const score = Number(await card.locator('[data-testid="score"]').getAttribute('data-value'));
  assert.ok(Number.isFinite(score), `score "${scoreText}" is not a number`);
  assert.match(scoreText, /^-?\d/, 'the score is shown as a number');
  const ranOn = await card.locator('[data-testid="ran-on"]').getAttribute('data-backend');
  assert.equal(ranOn, mode, 'the result says which backend ran');

  // The overlay must show a real map: its pixels vary, differ from the original, and use many colours.
  const pixels = await card.evaluate((el) => {
    const read = (c) => c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const overlay = el.querySelector('canvas.overlay');
    const a = read(overlay);
    const b = read(el.querySelector('canvas.original'));
    let n = 0;
    let mean = 0;
    let m2 = 0;
    let changed = 0;
    const colours = new Set();
    for (let i = 0; i < a.length; i += 4) {
      const v = (a[i] + a[i + 1] + a[i + 2]) / 3;
      n += 1;
      const d = v - mean;
      mean += d / n;
      m2 += d * (v - mean);
      if (Math.abs(a[i] - b[i]) + Math.abs(a[i + 1] - b[i + 1]) + Math.abs(a[i + 2] - b[i + 2]) > 6) changed += 1;
      colours.add((a[i] << 16) | (a[i + 1] << 8) | a[i + 2]);
    }
    return {
      width: overlay.width, height: overlay.height, variance: m2 / (n - 1), changedFraction: changed / n,
      colours: colours.size, mapMin: Number(overlay.dataset.mapMin), mapMax: Number(overlay.dataset.mapMax),
    };
  });
  console.log(`  [${mode}] overlay ${pixels.width}×${pixels.height}: variance ${pixels.variance.toFixed(1)}, `
    + `${(100 * pixels.changedFraction).toFixed(1)}% of pixels changed, ${pixels.colours} colours, map ${pixels.mapMin} … ${pixels.mapMax}`);
  assert.ok(pixels.mapMax > pixels.mapMin, 'the map is not constant');
  assert.ok(pixels.variance > 25, `overlay pixel variance ${pixels.variance} is too small for a drawn map`);
  assert.ok(pixels.changedFraction > 0.5, `only ${pixels.changedFraction} of the overlay differs from the original`);
  assert.ok(pixels.colours > 32, `only ${pixels.colours} colours in the overlay`);

  const timings = await card.locator('[data-testid="timings"] tr').evaluateAll((rows) => rows.map((r) => [r.dataset.stage, Number(r.dataset.ms)]));
  const stages = Object.fromEntries(timings);
  for (const stage of ['preprocess', 'submit', 'compute_and_readback', 'total']) {
    assert.ok(Number.isFinite(stages[stage]) && stages[stage] >= 0, `timing "${stage}" is shown`);
  }
  console.log(`  [${mode}] score ${scoreText}; timings (ms): ${timings.map(([s, ms]) => `${s} ${ms.toFixed(1)}`).join(', ')}`);

  mkdirSync(artifacts, { recursive: true });
  const shot = join(artifacts, `page-${mode}.png`);
  await page.screenshot({ path: shot, fullPage: true });
  await card.screenshot({ path: join(artifacts, `result-${mode}.png`) });

  if (mode === 'cpu') await checkMore(page, mode);
  if (mode === 'webgpu') await checkAaClip(page, mode);

  // Teaching mode: the text tower and tokenizer run in the browser too.
  await page.locator('#tab-learn').click();
  await page.locator('#tok-text').fill('This is a broken carpet.');
  await page.waitForFunction(() => document.querySelectorAll('#tok-out .tok').length > 2, null, { timeout: STEP_TIMEOUT_MS });
  const ids = await page.locator('#tok-out .tok').allTextContents();
  assert.equal(ids[0], '49406', 'start token');
  assert.equal(ids.at(-1), '49407', 'end token');
  await page.locator('#prompt-run').click();
  await page.waitForFunction(() => document.querySelectorAll('#prompt-out td').length === 4
    || /Error/.test(document.querySelector('#prompt-out').textContent), null, { timeout: STEP_TIMEOUT_MS });
  const cells = await page.locator('#prompt-out td').allTextContents();
  assert.equal(cells.length, 4, `prompt comparison: ${await page.locator('#prompt-out').textContent()}`);
  const [cosN, pN, cosA, pA] = cells.map(Number);
  assert.ok([cosN, cosA].every((c) => c >= -1 && c <= 1), `cosines ${cosN}, ${cosA}`);
  assert.ok(Math.abs(pN + pA - 1) < 2e-3, `probabilities ${pN} + ${pA} sum to 1`);
  console.log(`  [${mode}] teaching: tokens ${ids.join(' ')}; cosines normal ${cosN}, broken ${cosA}`);

  // Korean: the language switch keeps the page alive and translates the headings.
  await page.locator('#lang-toggle').click();
  assert.equal(await page.evaluate(() => document.documentElement.lang), 'ko');
  assert.ok(await page.locator('#h-bg [lang="ko"]').isVisible(), 'Korean heading visible');
  assert.ok(!(await page.locator('#h-bg [lang="en"]').isVisible()), 'English heading hidden');
  await page.screenshot({ path: join(artifacts, `learn-ko-${mode}.png`), fullPage: false });

  assert.ok(await page.locator('#global-error').isHidden(), `error banner: ${await page.locator('#global-error').textContent()}`);
  assert.deepEqual(pageErrors, [], 'no uncaught page errors');
  if (mode === 'webgpu') await checkDeviceLoss(page, mode, pageErrors);
  console.log(`  [${mode}] ok in ${((Date.now() - started) / 1000).toFixed(1)} s; screenshot ${shot}`);
}

/**
 * WebGPU only, last: the test destroys the engine's GPUDevice (as a driver reset or a lost GPU
 * would end it) while a new upload is being scored on it. The page must say so, carry on with the CPU engine
 * with the same detector, class and checkpoint, finish every readable image there, and show
 * the unreadable uploads (a decompression bomb, a text file) as errors on their own cards.
 */
async function checkDeviceLoss(page, mode, pageErrors) {
  await page.locator('#lang-toggle').click();
  assert.equal(await page.evaluate(() => document.documentElement.lang), 'en');
  await page.locator('#tab-detect').click();
  const devices = await page.evaluate(() => window.__vladDevices.length);
  assert.ok(devices >= 1, 'the page asked for a GPU device');
  const detectorBefore = (await page.locator('#detector-status').textContent()).trim();
  const bomb = fromRepo('tests/fixtures/hostile/bomb.png');
  // The device goes away while an image is being scored on it (its read-back then never ends).
  await page.evaluate(() => {
    window.__vladLostDuring = null;
    const observer = new MutationObserver(() => {
      const running = document.querySelector('.result[data-state="running"]');
      if (!running) return;
      observer.disconnect();
      window.__vladLostDuring = running.querySelector('.result-name').textContent;
      for (const device of window.__vladDevices) device.destroy();
    });
    observer.observe(document.querySelector('#results'), { subtree: true, attributes: true, attributeFilter: ['data-state'] });
  });
  await page.locator('#image-files').setInputFiles([
    { name: 'second.png', mimeType: 'image/png', buffer: readFileSync(imagePath) },
    { name: 'bomb.png', mimeType: 'image/png', buffer: readFileSync(bomb) },
    { name: 'notes.png', mimeType: 'image/png', buffer: Buffer.from('not an image at all\n') },
  ]);
  await page.waitForFunction(() => {
    const cards = [...document.querySelectorAll('.result')];
    return document.querySelector('#engine-status').dataset.backend === 'cpu'
      && cards.length === 4 && cards.every((c) => c.dataset.state === 'done' || c.dataset.state === 'error');
  }, null, { timeout: STEP_TIMEOUT_MS, polling: 100 });
  const cards = await page.locator('.result').evaluateAll((els) => els.map((el) => ({
    name: el.querySelector('.result-name').textContent,
    state: el.dataset.state,
    text: el.querySelector('.result-state-text').textContent,
    backend: el.querySelector('[data-testid="ran-on"]')?.dataset.backend,
    score: Number(el.querySelector('[data-testid="score"]')?.dataset.value),
  })));
  const byName = Object.fromEntries(cards.map((c) => [c.name, c]));
  const lostDuring = await page.evaluate(() => window.__vladLostDuring);
  assert.equal(lostDuring, 'second.png', 'the device was lost while second.png was being scored on it');
  for (const name of [imagePath.split('/').at(-1), 'second.png']) {
    const card = byName[name];
    assert.equal(card?.state, 'done', `${name} after the device loss: ${JSON.stringify(card)}`);
    assert.equal(card.backend, 'cpu', `${name} was scored again on the CPU`);
    assert.ok(Number.isFinite(card.score), `${name} score`);
  }
  assert.equal(byName['bomb.png'].state, 'error');
  assert.match(byName['bomb.png'].text, /bomb\.png.*100000×100000 = 10000000000 pixels.*over the limit of 178956970/, byName['bomb.png'].text);
  assert.equal(byName['notes.png'].state, 'error');
  assert.match(byName['notes.png'].text, /notes\.png/, byName['notes.png'].text);
  const banner = await page.locator('#global-error-text').textContent();
  assert.ok(await page.locator('#global-error').isVisible(), 'the page says that the GPU went away');
  assert.match(banner, /GPU engine stopped \(the GPU device was lost/, banner);
  assert.equal(await page.locator('#use-gpu').isChecked(), false, 'the GPU switch shows the CPU now');
  assert.equal(await page.locator('#class-name').inputValue(), 'bottle', 'the class name is kept');
  const detectorAfter = (await page.locator('#detector-status').textContent()).trim();
  assert.equal(detectorAfter, detectorBefore, 'the same detector runs on the CPU');
  assert.deepEqual(pageErrors, [], 'no uncaught page errors during the fallback');
  console.log(`  [${mode}] device lost while scoring ${lostDuring}: ${banner.trim()} → ${cards.map((c) => `${c.name} ${c.state}${c.backend ? ` on ${c.backend}` : ''}`).join(', ')}`);
  console.log(`  [${mode}] unreadable uploads: ${byName['bomb.png'].text} | ${byName['notes.png'].text}`);
  await page.screenshot({ path: join(artifacts, `device-lost-${mode}.png`), fullPage: true });
}

/** Records, as page errors, requests that leave the page's own origin (no third-party fetches). */
function watchRequests(page, baseUrl, errors) {
  page.on('request', (r) => {
    const url = r.url();
    if (!url.startsWith(baseUrl) && !url.startsWith('data:') && !url.startsWith('blob:')) errors.push(`request to ${url}`);
  });
}

/** CPU only: drag-and-drop, a normal reference (calibration), the phone layout and the control labels. */
async function checkMore(page, mode) {
  // Drop a second copy of the image on the drop zone, as a browser drag-and-drop delivers it.
  const bytes = readFileSync(imagePath).toString('base64');
  await page.locator('#tab-detect').click();
  await page.evaluate(async (b64) => {
    const data = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const transfer = new DataTransfer();
    transfer.items.add(new File([data], 'dropped.png', { type: 'image/png' }));
    const zone = document.querySelector('#drop-zone');
    zone.dispatchEvent(new DragEvent('dragover', { dataTransfer: transfer, bubbles: true, cancelable: true }));
    zone.dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
  }, bytes);
  await page.waitForFunction(() => {
    const cards = [...document.querySelectorAll('.result')];
    return cards.length === 2 && cards.every((c) => c.dataset.state === 'done');
  }, null, { timeout: STEP_TIMEOUT_MS });
  const scores = await page.locator('[data-testid="score"]').evaluateAll((els) => els.map((e) => Number(e.dataset.value)));
  assert.equal(scores[0], scores[1], 'the dropped copy scores the same as the upload');

  // The same image as the only normal reference: the calibrated score is exactly 0.5.
  await page.locator('#ref-files').setInputFiles(imagePath);
  await page.waitForFunction(() => {
    const cards = [...document.querySelectorAll('.result')];
    return cards.length === 2 && cards.every((c) => c.dataset.state === 'done' && /0\.500\)/.test(c.querySelector('[data-testid="score"]').textContent));
  }, null, { timeout: STEP_TIMEOUT_MS });
  const refs = await page.locator('#refs-status').textContent();
  assert.match(refs, /^1 normal reference/, refs);
  console.log(`  [${mode}] drag-and-drop and calibration: ${await page.locator('[data-testid="score"]').first().textContent()}`);

  // WinCLIP on the same images; the reference now is its few-shot memory (WinCLIP+).
  const zeroShotStatus = await page.locator('#detector-status').textContent();
  await page.locator('input[name="detector"][value="winclip"]').check();
  const winclipStatus = await waitReady(page, '#detector-status', 'WinCLIP setup', zeroShotStatus);
  assert.match(winclipStatus, /WinCLIP/, winclipStatus);
  const winclip = await firstResult(page, 'WinCLIP', 2);
  assert.notEqual(winclip.score, scores[0], 'WinCLIP+ gives its own score, not the zero-shot one');
  console.log(`  [${mode}] ${winclipStatus.trim()} score ${winclip.score}, map ${winclip.mapMin} … ${winclip.mapMax}`);

  await checkAaClip(page, mode);
  await checkClipAd(page, mode);
  await checkVand(page, mode);
  await checkAdaClip(page, mode);

  // Every control has a label.
  const unlabelled = await page.evaluate(() => [...document.querySelectorAll('input, select, button, textarea')]
    .filter((el) => !(el.labels?.length || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby') || el.textContent.trim()))
    .map((el) => el.id || el.outerHTML.slice(0, 80)));
  assert.deepEqual(unlabelled, [], 'controls without a label');

  // Phone-sized screen: nothing wider than the viewport, on both tabs.
  await page.setViewportSize({ width: 375, height: 800 });
  for (const tab of ['#tab-detect', '#tab-learn']) {
    await page.locator(tab).click();
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 375, `${tab}: the page is ${width} px wide on a 375 px screen`);
  }
  await page.locator('#tab-detect').click();
  await page.screenshot({ path: join(artifacts, `phone-${mode}.png`), fullPage: true });
}

/**
 * AA-CLIP in the page on either backend: without its checkpoint a readable error; with one
 * (adapters for the tiny backbone, written below) a real map and score. Bayes-PFL's engine path
 * is covered by the wasm tests (it needs a backbone whose text width equals its embedding size,
 * which this tiny model's is not).
 */
async function checkAaClip(page, mode) {
  await checkWithCheckpoint(page, mode, { id: 'aa-clip', label: 'AA-CLIP', imageSize: 32, fileName: 'aa_clip_tiny.safetensors', buffer: aaClipCheckpoint() });
}

/**
 * CLIP-AD SDP in the page: training-free, so it runs with no checkpoint (the radio list must offer
 * it); a real map and score on either backend.
 */
async function checkClipAd(page, mode) {
  const t0 = Date.now();
  const before = await page.locator('#detector-status').textContent();
  await page.locator('input[name="detector"][value="clip-ad"]').check();
  await page.locator('#opt-clip-ad-image_size').fill('32');
  await page.locator('#opt-clip-ad-image_size').dispatchEvent('change');
  const status = await waitReady(page, '#detector-status', 'CLIP-AD setup', before);
  assert.match(status, /CLIP-AD/, status);
  const r = await firstResult(page, 'CLIP-AD');
  console.log(`  [${mode}] ${status.trim()} score ${r.score}, map ${r.mapMin} … ${r.mapMax} (${Date.now() - t0} ms from choosing it)`);
  await mkdirAndShoot(page, `clip-ad-${mode}.png`);
}

/**
 * VAND in the page: the checkpoint field takes the linear layers (safetensors for the tiny
 * backbone: 4 × Linear(64 → 32)), then a real map and score.
 */
async function checkVand(page, mode) {
  const tensors = [0, 1, 2, 3].flatMap((i) => [[`fc.${i}.weight`, [32, 64]], [`fc.${i}.bias`, [32]]]);
  await checkWithCheckpoint(page, mode, { id: 'vand', label: 'VAND', imageSize: 32, fileName: 'vand_tiny.safetensors', buffer: safetensors(tensors, 11n) });
}

/**
 * A detector that needs a checkpoint, in the page: choosing it without one names the missing
 * checkpoint; the checkpoint field takes `buffer` (as `fileName`); at `imageSize` px it gives a real
 * map and score.
 */
async function checkWithCheckpoint(page, mode, { id, label, imageSize, fileName, buffer }) {
  const t0 = Date.now();
  const before = await page.locator('#detector-status').textContent();
  await page.locator(`input[name="detector"][value="${id}"]`).check();
  await page.waitForFunction((old) => {
    const el = document.querySelector('#detector-status');
    return el.textContent !== old && el.dataset.state === 'error';
  }, before, { timeout: STEP_TIMEOUT_MS });
  const noCheckpoint = await page.locator('#detector-status').textContent();
  assert.match(noCheckpoint, /checkpoint/, noCheckpoint);
  await page.locator(`#opt-${id}-image_size`).fill(String(imageSize));
  await page.locator(`#ckpt-${id}-file`).setInputFiles({ name: fileName, mimeType: 'application/octet-stream', buffer });
  await page.waitForSelector(`#ckpt-${id}-status[data-state="ready"], #ckpt-${id}-status[data-state="error"]`, { timeout: STEP_TIMEOUT_MS });
  const ckptStatus = await page.locator(`#ckpt-${id}-status`).textContent();
  assert.equal(await page.locator(`#ckpt-${id}-status`).getAttribute('data-state'), 'ready', ckptStatus);
  await page.locator(`#opt-${id}-image_size`).dispatchEvent('change');
  const status = await waitReady(page, '#detector-status', `${label} setup`, noCheckpoint);
  assert.ok(status.includes(label), status);
  const r = await firstResult(page, label);
  console.log(`  [${mode}] ${ckptStatus.trim()} ${status.trim()} score ${r.score}, map ${r.mapMin} … ${r.mapMax} (${Date.now() - t0} ms from choosing it)`);
  await mkdirAndShoot(page, `${id}-${mode}.png`);
}

/**
 * AdaCLIP in the page: the checkpoint field takes the 34 tensors of the tiny backbone (text width
 * 16, embedding 32, vision width 64, 2 text blocks → prompting depth 2) under the official
 * `clip_model.` names; at 48 px (36 patches, enough for HSF's 20 clusters) a map and an HSF score,
 * with the k-means run on the page's CPU engine.
 */
async function checkAdaClip(page, mode) {
  const p = 'clip_model.';
  const linear = (name, o, i) => [[`${p}${name}.weight`, [o, i]], [`${p}${name}.bias`, [o]]];
  const tensors = [
    ...[0, 1].map((i) => [`${p}text_prompter.static_prompts.${i}`, [5, 16]]),
    ...[0, 1].map((i) => [`${p}visual_prompter.static_prompts.${i}`, [5, 64]]),
    ...[0, 1, 2, 3].flatMap((i) => linear(`patch_token_layer.head.${i}`, 32, 64)),
    ...linear('cls_token_layer.head.0', 32, 32),
    ...[0, 1, 2, 3, 4].flatMap((i) => linear(`dynamic_visual_prompt_generator.head.${i}`, 64, 32)),
    ...[0, 1, 2, 3, 4].flatMap((i) => linear(`dynamic_text_prompt_generator.head.${i}`, 16, 32)),
  ];
  await checkWithCheckpoint(page, mode, { id: 'ada-clip', label: 'AdaCLIP', imageSize: 48, fileName: 'ada_clip_tiny.safetensors', buffer: safetensors(tensors, 13n) });
}

/** safetensors bytes of f32 `tensors` ([name, shape]) with pseudo-random values from `seed`. */
function safetensors(tensors, seed) {
  let state = seed;
  const next = () => {
    state = (state * 6364136223846793005n + 1442695040888963407n) & 0xffffffffffffffffn;
    return Number(state >> 40n) / 2 ** 24 - 0.5;
  };
  const header = {};
  let offset = 0;
  for (const [name, shape] of tensors) {
    const bytes = 4 * shape.reduce((a, b) => a * b, 1);
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const out = Buffer.alloc(8 + json.length + offset);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  out.write(json, 8, 'ascii');
  for (let i = 8 + json.length; i < out.length; i += 4) out.writeFloatLE(0.2 * next(), i);
  return out;
}

/**
 * Waits until every result card (`count` of them, when given) is done or failed, and returns the first card's state, score and
 * map range, asserting that it was scored with a finite score and a non-constant map.
 */
async function firstResult(page, what, count = null) {
  await page.waitForFunction((n) => {
    const cards = [...document.querySelectorAll('.result')];
    return (n === null ? cards.length > 0 : cards.length === n) && cards.every((c) => c.dataset.state === 'done' || c.dataset.state === 'error');
  }, count, { timeout: STEP_TIMEOUT_MS });
  const r = await page.locator('.result').first().evaluate((el) => ({
    state: el.dataset.state,
    text: el.querySelector('.result-state')?.textContent,
    score: Number(el.querySelector('[data-testid="score"]').dataset.value),
    mapMin: Number(el.querySelector('canvas.overlay').dataset.mapMin),
    mapMax: Number(el.querySelector('canvas.overlay').dataset.mapMax),
  }));
  assert.equal(r.state, 'done', `${what} scoring: ${r.text}`);
  assert.ok(Number.isFinite(r.score) && r.mapMax > r.mapMin, `${what} result ${JSON.stringify(r)}`);
  return r;
}

async function mkdirAndShoot(page, name) {
  mkdirSync(artifacts, { recursive: true });
  await page.locator('.result').first().screenshot({ path: join(artifacts, name) });
}

/**
 * An AA-CLIP adapter checkpoint for the tiny backbone (vision width 64, text width 16, embedding
 * 32, 4 vision blocks → levels 1–4, one vision and one text adapter: AaClipConfig::for_backbone),
 * under the official key names, as safetensors with pseudo-random weights. The values do not
 * matter here; the page must load the file, build the detector and draw its map.
 */
function aaClipCheckpoint() {
  return safetensors([
    ['text_adapter.0.fc.0.weight', [16, 16]],
    ['text_adapter.1.fc.0.weight', [32, 16]],
    ['image_adapter.layer_adapters.0.fc.0.weight', [64, 64]],
    ...[0, 1, 2, 3].map((k) => [`image_adapter.seg_proj.${k}.fc.weight`, [32, 64]]),
    ['image_adapter.det_proj.fc.weight', [32, 64]],
  ], 7n);
}

/**
 * Weights from a URL: a missing file and a file that is not weights give readable errors; a
 * download shows its progress, lands in the Cache API, and loads from there after a reload without
 * touching the network.
 */
async function checkWeightsFromUrl(browser, baseUrl) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 }, locale: 'en-US' });
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  watchRequests(page, baseUrl, pageErrors);
  let downloads = 0;
  page.on('request', (r) => {
    if (r.url().endsWith(WEIGHTS_ROUTE)) downloads += 1;
  });
  try {
    await page.goto(`${baseUrl}?gpu=0`);
    await waitReady(page, '#engine-status', 'engine start');

    await page.locator('#weights-url').fill(`${baseUrl}e2e/missing.safetensors`);
    await page.locator('#weights-fetch').click();
    await page.waitForSelector('#model-status[data-state="error"]', { timeout: STEP_TIMEOUT_MS });
    const missing = await page.locator('#model-status').textContent();
    assert.match(missing, /404/, `a missing URL is reported: ${missing}`);

    await page.locator('#weights-file').setInputFiles(imagePath);
    await page.waitForFunction((before) => {
      const el = document.querySelector('#model-status');
      return el.dataset.state === 'error' && el.textContent !== before;
    }, missing, { timeout: STEP_TIMEOUT_MS });
    const wrong = await page.locator('#model-status').textContent();
    assert.ok(wrong.length > 10, `an image given as weights is reported: ${wrong}`);
    console.log(`  [url] errors shown: "${missing.trim()}" / "${wrong.trim()}"`);

    await page.locator('#weights-url').fill(`${baseUrl}${WEIGHTS_ROUTE.slice(1)}`);
    await page.locator('#weights-fetch').click();
    await waitReady(page, '#model-status', 'model load from URL', wrong);
    const progress = await page.locator('#weights-progress').evaluate((p) => ({ value: p.value, max: p.max }));
    const size = statSync(weightsPath).size;
    assert.deepEqual(progress, { value: size, max: size }, 'the progress bar reached the file size');
    assert.equal(downloads, 1, 'one download');
    await page.waitForFunction(() => document.querySelector('#cached-list').textContent.includes('tiny'), null, { timeout: 30_000 });

    await page.reload();
    await waitReady(page, '#engine-status', 'engine restart');
    await page.locator('#cached-list').evaluate((el) => {
      el.closest('details').open = true;
    });
    await page.locator('#cached-list button').first().click();
    const fromCache = await waitReady(page, '#model-status', 'model load from the cache');
    assert.equal(downloads, 1, 'the cached weights are loaded without downloading again');
    await page.locator('#cache-clear').click();
    await page.waitForFunction(() => !document.querySelector('#cached-list button'), null, { timeout: 30_000 });
    assert.deepEqual(pageErrors, [], 'no uncaught page errors');
    console.log(`  [url] downloaded with progress ${progress.value}/${progress.max} bytes, reloaded from the cache: ${fromCache.trim()}`);
  } catch (e) {
    mkdirSync(artifacts, { recursive: true });
    await page.screenshot({ path: join(artifacts, 'failed-url.png'), fullPage: true }).catch(() => {});
    throw e;
  } finally {
    await context.close();
  }
}

async function main() {
  preflight();
  console.log(`page test: ${www} with ${weightsPath} (${statSync(weightsPath).size} bytes), image ${imagePath}`);
  const { server, url } = await serve(www, 0, { [WEIGHTS_ROUTE]: weightsPath });
  const browser = await chromium.launch({
    executablePath: browserPath,
    headless: true,
    // Playwright adds a fresh --user-data-dir and its own quiet defaults; these are the ones this
    // closed network needs (docs: shared/toolchain.md). No --use-angle=swiftshader: it hangs pages.
    args: ['--enable-unsafe-webgpu', '--no-sandbox', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run'],
  });
  console.log(`chromium ${browser.version()} serving ${url}`);
  let failures = 0;
  try {
    for (const mode of modes) {
      console.log(`mode ${mode}`);
      try {
        await runMode(browser, url, mode);
      } catch (e) {
        failures += 1;
        console.error(`  [${mode}] FAILED: ${e?.stack ?? e}`);
      }
    }
    console.log('weights from a URL and the cache');
    try {
      await checkWeightsFromUrl(browser, url);
    } catch (e) {
      failures += 1;
      console.error(`  [url] FAILED: ${e?.stack ?? e}`);
    }
  } finally {
    await browser.close();
    server.close();
  }
  const checks = modes.length + 1;
  console.log(failures ? `page test: ${failures} of ${checks} checks failed` : `page test: all ${checks} checks passed`);
  process.exitCode = failures ? 1 : 0;
}

main().catch((e) => {
  console.error(e?.message ?? e);
  process.exitCode = 1;
});
