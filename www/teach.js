// The Learn tab's interactive parts: the softmax calculator, prompt similarities and token ids on
// the engine, the λ toy for AA-CLIP's residual adapter, and the Bayes-PFL sampling toy.
import { t } from './i18n.js';
import { errorText } from './engine.js';
import { decodeImage } from './images.js';
import { softmaxAtTemperature, residualAdapter, sampleFlow, invertibleU, rng, gaussianPair } from './toys.js';

const $ = (id) => document.getElementById(id);
const fmt = (v, digits = 3) => (Number.isFinite(v) ? v.toFixed(digits) : '—');

/**
 * @param {{host: import('./engine.js').EngineHost, images: () => Array<{id: number, name: string,
 *   rgba: Uint8Array, width: number, height: number}>, modelReady: () => boolean}} context
 */
export function initTeaching(context) {
  setupSoftmaxCalculator();
  setupPromptComparison(context);
  setupTokenizer(context);
  setupLambdaToy();
  setupFlowToy();
}

// ------------------------------------------------------------------ softmax at τ

function setupSoftmaxCalculator() {
  const update = () => {
    const sims = [Number($('sim-a').value), Number($('sim-n').value)];
    const tau = Number($('sim-tau').value);
    const out = $('sim-out');
    try {
      const [pa, pn] = softmaxAtTemperature(sims, tau);
      out.textContent = `p(broken) = ${fmt(pa)}, p(normal) = ${fmt(pn)}`;
    } catch (e) {
      out.textContent = t('error.generic', { error: errorText(e) });
    }
  };
  for (const id of ['sim-a', 'sim-n', 'sim-tau']) $(id).addEventListener('input', update);
  update();
}

// ------------------------------------------------------------------ prompts on the engine

function setupPromptComparison({ host, images, modelReady }) {
  const select = $('teach-image');
  let uploaded = null;

  const refreshImages = () => {
    const current = select.value;
    select.replaceChildren();
    const list = images();
    if (uploaded) list.unshift(uploaded);
    if (list.length === 0) {
      const o = document.createElement('option');
      o.value = '';
      o.textContent = t('teach.no-image');
      select.append(o);
      return;
    }
    for (const image of list) {
      const o = document.createElement('option');
      o.value = String(image.id);
      o.textContent = image.name;
      select.append(o);
    }
    if ([...select.options].some((o) => o.value === current)) select.value = current;
  };
  document.addEventListener('vlad-images', refreshImages);
  document.addEventListener('vlad-language', refreshImages);
  refreshImages();

  $('teach-image-file').addEventListener('change', async () => {
    const file = $('teach-image-file').files?.[0];
    if (!file) return;
    try {
      const { name, width, height, rgba, bitmap } = await decodeImage(file);
      bitmap.close();
      uploaded = { id: 'teach', name, width, height, rgba };
      refreshImages();
      select.value = 'teach';
    } catch (e) {
      $('prompt-out').textContent = t('images.decode-failed', { name: file.name, error: errorText(e) });
    }
  });

  $('prompt-run').addEventListener('click', async () => {
    const out = $('prompt-out');
    if (!modelReady()) {
      out.textContent = t('teach.needs-model');
      return;
    }
    const image = select.value === 'teach' ? uploaded : images().find((i) => String(i.id) === select.value);
    if (!image) {
      out.textContent = t('teach.needs-image');
      return;
    }
    const prompts = [$('prompt-normal').value, $('prompt-abnormal').value];
    const tau = Number($('prompt-tau').value);
    out.textContent = t('teach.computing');
    try {
      const cosines = Array.from(await host.run((e) => e.prompt_similarities(image.rgba, image.width, image.height, prompts)));
      const probabilities = softmaxAtTemperature(cosines, tau);
      const table = document.createElement('table');
      table.className = 'data';
      const head = table.createTHead().insertRow();
      for (const h of [t('teach.prompt'), t('teach.cosine'), t('teach.probability', { tau })]) {
        const th = document.createElement('th');
        th.scope = 'col';
        th.textContent = h;
        head.append(th);
      }
      const body = table.createTBody();
      prompts.forEach((p, i) => {
        const row = body.insertRow();
        const th = document.createElement('th');
        th.scope = 'row';
        th.textContent = p;
        row.append(th);
        row.insertCell().textContent = fmt(cosines[i], 4);
        row.insertCell().textContent = fmt(probabilities[i], 3);
      });
      out.replaceChildren(table);
    } catch (e) {
      out.textContent = t('error.generic', { error: errorText(e) });
    }
  });
}

// ------------------------------------------------------------------ tokenizer

const SOT = 49406;
const EOT = 49407;

function setupTokenizer({ host }) {
  const out = $('tok-out');
  let pending = 0;
  const update = async () => {
    const ticket = ++pending;
    if (!host.ready) {
      out.textContent = t('teach.needs-engine');
      return;
    }
    try {
      const ids = Array.from(await host.run((e) => e.tokenize($('tok-text').value)));
      if (ticket !== pending) return;
      const end = ids.indexOf(EOT);
      const used = end < 0 ? ids.length : end + 1;
      const frag = document.createDocumentFragment();
      for (const id of ids.slice(0, used)) {
        const span = document.createElement('span');
        span.className = id === SOT || id === EOT ? 'tok special' : 'tok';
        span.textContent = String(id);
        frag.append(span);
      }
      const note = document.createElement('div');
      note.className = 'small';
      note.textContent = t('teach.tokens.count', { count: used, pad: ids.length - used });
      out.replaceChildren(frag, note);
    } catch (e) {
      if (ticket === pending) out.textContent = t('error.generic', { error: errorText(e) });
    }
  };
  $('tok-text').addEventListener('input', update);
  document.addEventListener('vlad-engine', update);
  document.addEventListener('vlad-language', update);
  update();
}

// ------------------------------------------------------------------ AA-CLIP λ toy

const SVG = 'http://www.w3.org/2000/svg';

function setupLambdaToy() {
  const svg = $('lambda-svg');
  const x = [0.95, 0.3];
  let random = rng(7);
  let W = randomMatrix(random);

  function randomMatrix(uniform) {
    const [a, b] = gaussianPair(uniform);
    const [c, d] = gaussianPair(uniform);
    return [[a, b], [c, d]];
  }

  const arrow = (v, colour, width) => {
    const line = document.createElementNS(SVG, 'line');
    // SVG y grows downwards; the plot's y grows upwards.
    line.setAttribute('x1', '0');
    line.setAttribute('y1', '0');
    line.setAttribute('x2', String(v[0]));
    line.setAttribute('y2', String(-v[1]));
    line.setAttribute('stroke', colour);
    line.setAttribute('stroke-width', String(width));
    line.setAttribute('stroke-linecap', 'round');
    line.setAttribute('marker-end', `url(#head-${colour.slice(1)})`);
    return line;
  };

  const colours = { x: '#7a8593', res: '#e0771a', enh: '#2f6fe0' };
  const defs = document.createElementNS(SVG, 'defs');
  for (const colour of Object.values(colours)) {
    const marker = document.createElementNS(SVG, 'marker');
    marker.id = `head-${colour.slice(1)}`;
    for (const [k, v] of Object.entries({ viewBox: '0 0 10 10', refX: '8', refY: '5', markerWidth: '5', markerHeight: '5', orient: 'auto-start-reverse' })) {
      marker.setAttribute(k, v);
    }
    const path = document.createElementNS(SVG, 'path');
    path.setAttribute('d', 'M0,0 L10,5 L0,10 z');
    path.setAttribute('fill', colour);
    marker.append(path);
    defs.append(marker);
  }

  const draw = () => {
    const lambda = Number($('lambda').value);
    $('lambda-value').textContent = lambda.toFixed(2);
    const { xRes, xEnh } = residualAdapter(W, x, lambda);
    svg.replaceChildren(defs, svg.querySelector('desc') ?? document.createElementNS(SVG, 'desc'));
    const circle = document.createElementNS(SVG, 'circle');
    circle.setAttribute('r', String(Math.hypot(...x)));
    circle.setAttribute('fill', 'none');
    circle.setAttribute('stroke', 'currentColor');
    circle.setAttribute('stroke-opacity', '0.2');
    circle.setAttribute('stroke-width', '0.01');
    circle.setAttribute('stroke-dasharray', '0.04 0.04');
    const axes = document.createElementNS(SVG, 'path');
    axes.setAttribute('d', 'M-1.5,0 H1.5 M0,-1.5 V1.5');
    axes.setAttribute('stroke', 'currentColor');
    axes.setAttribute('stroke-opacity', '0.25');
    axes.setAttribute('stroke-width', '0.01');
    const original = arrow(x, colours.x, 0.035);
    original.setAttribute('stroke-dasharray', '0.06 0.04');
    // x last, dashed, so that it stays visible where x_enh lies on top of it (small λ).
    svg.append(axes, circle, arrow(xRes, colours.res, 0.04), arrow(xEnh, colours.enh, 0.05), original);
    const cos = (xEnh[0] * x[0] + xEnh[1] * x[1]) / (Math.hypot(...xEnh) * Math.hypot(...x));
    const angle = (Math.acos(Math.min(1, Math.max(-1, cos))) * 180) / Math.PI;
    $('lambda-out').textContent = `cos(x_enh, x) = ${fmt(cos)} (${angle.toFixed(1)}°), |x_enh| / |x| = ${fmt(Math.hypot(...xEnh) / Math.hypot(...x))}`;
  };
  $('lambda').addEventListener('input', draw);
  $('lambda-new').addEventListener('click', () => {
    W = randomMatrix(random);
    draw();
  });
  draw();
}

// ------------------------------------------------------------------ Bayes-PFL sampling toy

const FLOW_EXTENT = 4; // the plot shows [-4, 4]²
const BACKGROUND_SAMPLES = 4000;

function setupFlowToy() {
  const canvas = $('flow-canvas');
  let flowSeed = 11;
  let sampleSeed = 23;
  const base = { mu: [-0.6, -0.4], sigma: [0.9, 0.7] };

  function makeFlows(k) {
    const uniform = rng(flowSeed);
    const flows = [];
    for (let i = 0; i < k; i++) {
      const w = gaussianPair(uniform).map((v) => 1.4 * v);
      const u = invertibleU(gaussianPair(uniform).map((v) => 1.2 * v), w);
      const b = gaussianPair(uniform)[0];
      flows.push({ u, w, b });
    }
    return flows;
  }

  const toPixel = (z) => [
    ((z[0] + FLOW_EXTENT) / (2 * FLOW_EXTENT)) * canvas.width,
    ((FLOW_EXTENT - z[1]) / (2 * FLOW_EXTENT)) * canvas.height,
  ];

  const draw = () => {
    const r = Number($('flow-r').value);
    const k = Number($('flow-k').value);
    $('flow-r-value').textContent = String(r);
    $('flow-k-value').textContent = String(k);
    const params = { ...base, flows: makeFlows(k) };
    const ctx = canvas.getContext('2d');
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    // The flowed distribution, sampled; darker = higher log q_K.
    const background = rng(1000 + flowSeed);
    const cloud = [];
    let sx = 0;
    let sy = 0;
    for (let i = 0; i < BACKGROUND_SAMPLES; i++) {
      const s = sampleFlow(background, params);
      cloud.push(s);
      sx += s.z[0];
      sy += s.z[1];
    }
    const logqs = cloud.map((s) => s.logq).sort((a, b) => a - b);
    const lo = logqs[Math.floor(0.05 * logqs.length)];
    const hi = logqs[Math.floor(0.95 * logqs.length)];
    for (const s of cloud) {
      const a = Math.min(1, Math.max(0, (s.logq - lo) / (hi - lo || 1)));
      ctx.fillStyle = `rgba(110, 120, 135, ${0.12 + 0.45 * a})`;
      const [px, py] = toPixel(s.z);
      ctx.fillRect(px - 1, py - 1, 2, 2);
    }
    // The R Monte-Carlo samples: base (ring) → flowed (dot).
    const draws = rng(sampleSeed);
    let mx = 0;
    let my = 0;
    for (let i = 0; i < r; i++) {
      const s = sampleFlow(draws, params);
      mx += s.z[0] / r;
      my += s.z[1] / r;
      const [x0, y0] = toPixel(s.z0);
      const [x1, y1] = toPixel(s.z);
      ctx.strokeStyle = 'rgba(224, 119, 26, 0.7)';
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(x0, y0);
      ctx.lineTo(x1, y1);
      ctx.stroke();
      ctx.beginPath();
      ctx.arc(x0, y0, 4, 0, 2 * Math.PI);
      ctx.stroke();
      ctx.fillStyle = '#2f6fe0';
      ctx.beginPath();
      ctx.arc(x1, y1, 4, 0, 2 * Math.PI);
      ctx.fill();
    }
    // Means: of the R samples (cross) and of the whole cloud (square).
    const [cx, cy] = toPixel([mx, my]);
    ctx.strokeStyle = '#c0182b';
    ctx.lineWidth = 2.5;
    ctx.beginPath();
    ctx.moveTo(cx - 7, cy - 7);
    ctx.lineTo(cx + 7, cy + 7);
    ctx.moveTo(cx + 7, cy - 7);
    ctx.lineTo(cx - 7, cy + 7);
    ctx.stroke();
    const [gx, gy] = toPixel([sx / BACKGROUND_SAMPLES, sy / BACKGROUND_SAMPLES]);
    ctx.strokeStyle = '#111';
    ctx.lineWidth = 1.5;
    ctx.strokeRect(gx - 6, gy - 6, 12, 12);
    $('flow-out').textContent = t('teach.flow.mean', {
      r, x: fmt(mx, 2), y: fmt(my, 2), mx: fmt(sx / BACKGROUND_SAMPLES, 2), my: fmt(sy / BACKGROUND_SAMPLES, 2),
    });
    // Highlight the seminar's row nearest to R.
    const rows = [...document.querySelectorAll('#r-table tbody tr')];
    let best = rows[0];
    for (const row of rows) if (Math.abs(Number(row.dataset.r) - r) < Math.abs(Number(best.dataset.r) - r)) best = row;
    for (const row of rows) row.classList.toggle('current', row === best);
  };
  $('flow-r').addEventListener('input', draw);
  $('flow-k').addEventListener('input', draw);
  $('flow-resample').addEventListener('click', () => {
    sampleSeed += 1;
    draw();
  });
  $('flow-new').addEventListener('click', () => {
    flowSeed += 1;
    draw();
  });
  document.addEventListener('vlad-language', draw);
  draw();
}
