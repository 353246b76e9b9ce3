// Result rendering: a 2-D f32 part as a colour image (tabulated perceptual colour
// maps, linear or log scale, robust or full range), a colour bar with ticks, a
// read-out of the value under the pointer (or the keyboard cursor), and a .npy
// download. +Inf/-Inf (the cusp pixel of an odd grid) take the ends of the scale.

import { COLORMAPS, DIVERGING } from './colormaps.js';
import { el, fmtNum, saveBlob } from './dom.js';
import { npyBlob } from './npy.js';

const MAX_CANVAS = 1024; // display pixels per side; bigger maps are sampled

/* min/max over finite values, min over positive ones, counts of the others,
 * and percentiles from a sample of at most 65536 finite values. */
export function summarize(data) {
  let min = Infinity, max = -Infinity, minPos = Infinity, posInf = 0, negInf = 0, nan = 0;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (Number.isFinite(v)) {
      if (v < min) min = v;
      if (v > max) max = v;
      if (v > 0 && v < minPos) minPos = v;
    } else if (v === Infinity) posInf++;
    else if (v === -Infinity) negInf++;
    else nan++;
  }
  const step = Math.max(1, Math.floor(data.length / 65536));
  const sample = [];
  for (let i = 0; i < data.length; i += step) if (Number.isFinite(data[i])) sample.push(data[i]);
  sample.sort((a, b) => a - b);
  const pct = (q) => (sample.length ? sample[Math.min(sample.length - 1, Math.floor(q * sample.length))] : NaN);
  return { min, max, minPos, posInf, negInf, nan, p005: pct(0.005), p995: pct(0.995) };
}

/* "Nice" linear ticks (1, 2, 5 x 10^k) covering [lo, hi]. */
export function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(Math.abs(t) < step * 1e-9 ? 0 : t);
  return ticks;
}

/* Scale: value -> [0, 1] and back, for the chosen mode and range. */
function makeScale(mode, lo, hi) {
  if (mode === 'log') {
    const a = Math.log10(lo), b = Math.log10(hi), w = b - a || 1;
    return {
      mode, lo, hi,
      t: (v) => (v > 0 ? (Math.log10(v) - a) / w : 0),
      inv: (t) => 10 ** (a + t * w),
      ticks: () => {
        const out = [];
        for (let k = Math.ceil(a - 1e-9); k <= Math.floor(b + 1e-9); k++) out.push(10 ** k);
        return out.length >= 2 ? out : niceTicks(lo, hi, 3).filter((v) => v > 0);
      },
    };
  }
  const w = hi - lo || 1;
  return { mode, lo, hi, t: (v) => (v - lo) / w, inv: (t) => lo + t * w, ticks: () => niceTicks(lo, hi) };
}

/* Draws data (rows x cols) into canvas with colour map `lut` and `scale`. */
function paint(canvas, data, rows, cols, lut, scale) {
  const w = canvas.width, h = canvas.height;
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(w, h);
  const px = img.data;
  for (let y = 0; y < h; y++) {
    const i = Math.floor((y * rows) / h);
    for (let x = 0; x < w; x++) {
      const v = data[i * cols + Math.floor((x * cols) / w)];
      const o = (y * w + x) * 4;
      if (Number.isNaN(v)) {
        px[o] = px[o + 1] = px[o + 2] = 96;
      } else {
        let t = v === Infinity ? 1 : v === -Infinity ? 0 : scale.t(v);
        t = t < 0 ? 0 : t > 1 ? 1 : t;
        const k = Math.round(t * 255) * 3;
        px[o] = lut[k];
        px[o + 1] = lut[k + 1];
        px[o + 2] = lut[k + 2];
      }
      px[o + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
}

function paintBar(canvas, lut) {
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(256, 1);
  for (let i = 0; i < 256; i++) {
    img.data.set([lut[i * 3], lut[i * 3 + 1], lut[i * 3 + 2], 255], i * 4);
  }
  ctx.putImageData(img, 0, 0);
}

function fmtValue(v) {
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '−Inf';
  if (Number.isNaN(v)) return 'NaN';
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(4) : String(Number(v.toPrecision(6)));
}

/* The file name of a download: the part's name and the job's last 8 characters. */
function downloadName(name, ext, jobId) {
  return jobId ? `${name}-${String(jobId).slice(-8)}.${ext}` : `${name}.${ext}`;
}

/* A download link for `name` of a job's result as a file of type `ext`, made by
 * make() (a Blob) only when it is clicked: nothing is copied, or kept, before. */
function fileLink(name, ext, what, make, jobId) {
  return el('a', { class: 'button download', href: '#', download: downloadName(name, ext, jobId), 'data-part': name,
    'data-job': jobId || '', 'aria-label': `Download ${name} as ${what}`,
    onclick: (ev) => {
      ev.preventDefault();
      saveBlob(make(), downloadName(name, ext, jobId));
    } }, `⤓ ${name}.${ext}`);
}

/* A download link for a part as .npy. */
export function downloadLink(part, jobId) {
  return fileLink(part.name, 'npy', '.npy', () => npyBlob(part), jobId);
}

/* A download link for a value of the result as JSON (a search's ids). */
export function jsonDownloadLink(name, value, jobId) {
  return fileLink(name, 'json', 'JSON', () => new Blob([JSON.stringify(value)], { type: 'application/json' }), jobId);
}

/* The downloads of a result's parts named in `names` (those it has). */
export function partDownloads(parts, names, jobId) {
  const links = names.map((n) => parts?.get?.(n)).filter(Boolean).map((p) => downloadLink(p, jobId));
  return links.length ? el('p', { class: 'downloads' }, links) : null;
}

/* The viewer of one 2-D part: figure, controls, colour bar, read-out, download. */
export function mapViewer(part, jobId) {
  const [rows, cols] = part.shape;
  const data = part.data;
  const s = summarize(data);
  const signed = s.min < 0 && s.max > 0;
  const logOk = s.max > 0 && Number.isFinite(s.minPos);
  const wide = logOk && s.min > 0 && s.max / s.minPos >= 100;

  const base = `map-${part.name}`.replace(/[^A-Za-z0-9_-]/g, '_');
  const cmapSel = el('select', { id: `${base}-cmap`, 'aria-label': `${part.name} colour map` },
    Object.keys(COLORMAPS).map((n) => el('option', { value: n, selected: n === (signed ? 'rdbu' : 'viridis') }, n)));
  const scaleSel = el('select', { id: `${base}-scale`, 'aria-label': `${part.name} scale` },
    el('option', { value: 'linear', selected: !wide }, 'linear'),
    el('option', { value: 'log', selected: wide, disabled: !logOk }, 'log'));
  const rangeSel = el('select', { id: `${base}-range`, 'aria-label': `${part.name} colour range` },
    el('option', { value: 'robust', selected: true }, '0.5–99.5 %'),
    el('option', { value: 'full' }, 'full'));

  const dw = Math.min(cols, MAX_CANVAS), dh = Math.min(rows, MAX_CANVAS);
  const canvas = el('canvas', {
    class: 'map', id: `${base}-canvas`, width: dw, height: dh, tabindex: '0', role: 'img', 'data-part': part.name,
    'aria-label': `${part.name}: ${rows} by ${cols} map, values ${fmtValue(s.min)} to ${fmtValue(s.max)}. Arrow keys move the read-out cursor.`,
  });
  const cursor = el('div', { class: 'cursor', hidden: true });
  const readout = el('output', { class: 'readout', 'aria-live': 'polite', for: canvas.id }, 'Point at the map to read a value.');
  const bar = el('canvas', { class: 'colorbar', width: 256, height: 1, 'aria-hidden': 'true' });
  const ticks = el('div', { class: 'ticks', 'aria-hidden': 'true' });
  const barLabel = el('p', { class: 'bar-label' });

  const extra = [];
  if (s.posInf) extra.push(`${s.posInf} × +Inf`);
  if (s.negInf) extra.push(`${s.negInf} × −Inf`);
  if (s.nan) extra.push(`${s.nan} × NaN`);

  let scale;
  function redraw() {
    const lut = COLORMAPS[cmapSel.value];
    const robust = rangeSel.value === 'robust';
    let lo = robust ? s.p005 : s.min, hi = robust ? s.p995 : s.max;
    if (!(hi > lo)) {
      lo = s.min;
      hi = s.max;
    }
    if (scaleSel.value === 'log') {
      lo = Math.max(lo, s.minPos);
      if (!(hi > lo)) hi = lo * 10;
    } else if (DIVERGING.has(cmapSel.value) && signed) {
      const m = Math.max(Math.abs(lo), Math.abs(hi));
      lo = -m;
      hi = m;
    }
    if (!(hi > lo)) hi = lo + 1; // a constant map
    scale = makeScale(scaleSel.value, lo, hi);
    paint(canvas, data, rows, cols, lut, scale);
    paintBar(bar, lut);
    ticks.replaceChildren();
    for (const v of scale.ticks()) {
      const t = scale.t(v);
      if (t < -1e-6 || t > 1 + 1e-6) continue;
      const tick = el('span', { class: 'tick' }, fmtNum(v));
      tick.style.left = `${(t * 100).toFixed(2)}%`;
      ticks.append(tick);
    }
    barLabel.textContent = `${scale.mode} scale, ${fmtValue(lo)} … ${fmtValue(hi)}${robust ? ' (0.5–99.5 percentile; values beyond take the end colours)' : ''}`;
  }

  let cur = { i: Math.floor(rows / 2), j: Math.floor(cols / 2) };
  function show(i, j) {
    cur = { i, j };
    const v = data[i * cols + j];
    readout.textContent = `row ${i}, col ${j}: ${fmtValue(v)}`;
    readout.dataset.value = String(v);
    cursor.hidden = false;
    cursor.style.left = `${((j + 0.5) / cols) * 100}%`;
    cursor.style.top = `${((i + 0.5) / rows) * 100}%`;
  }
  canvas.addEventListener('pointermove', (ev) => {
    const r = canvas.getBoundingClientRect();
    const j = Math.min(cols - 1, Math.max(0, Math.floor(((ev.clientX - r.left) / r.width) * cols)));
    const i = Math.min(rows - 1, Math.max(0, Math.floor(((ev.clientY - r.top) / r.height) * rows)));
    show(i, j);
  });
  canvas.addEventListener('pointerleave', () => {
    cursor.hidden = true;
  });
  canvas.addEventListener('focus', () => show(cur.i, cur.j));
  canvas.addEventListener('blur', () => {
    cursor.hidden = true;
  });
  canvas.addEventListener('keydown', (ev) => {
    const step = ev.shiftKey ? Math.max(1, Math.floor(Math.min(rows, cols) / 16)) : 1;
    const moves = { ArrowLeft: [0, -step], ArrowRight: [0, step], ArrowUp: [-step, 0], ArrowDown: [step, 0] };
    if (ev.key === 'Home') {
      show(Math.floor(rows / 2), Math.floor(cols / 2));
    } else if (moves[ev.key]) {
      const [di, dj] = moves[ev.key];
      show(Math.min(rows - 1, Math.max(0, cur.i + di)), Math.min(cols - 1, Math.max(0, cur.j + dj)));
    } else {
      return;
    }
    ev.preventDefault();
  });
  for (const sel of [cmapSel, scaleSel, rangeSel]) sel.addEventListener('change', redraw);
  redraw();

  return el('section', { class: 'card map-card', 'aria-label': `map ${part.name}`, 'data-part': part.name },
    el('header', { class: 'map-head' },
      el('h3', {}, part.name),
      el('span', { class: 'muted' }, `${part.dtype}[${part.shape.join('][')}] · min ${fmtValue(s.min)} · max ${fmtValue(s.max)}${extra.length ? ' · ' + extra.join(', ') : ''}`)),
    el('div', { class: 'map-controls' },
      el('label', { for: cmapSel.id }, 'colours ', cmapSel),
      el('label', { for: scaleSel.id }, 'scale ', scaleSel),
      el('label', { for: rangeSel.id }, 'range ', rangeSel)),
    el('div', { class: 'map-frame' }, canvas, cursor),
    el('div', { class: 'colorbar-box' }, bar, ticks, barLabel),
    el('div', { class: 'map-foot' }, readout, downloadLink(part, jobId)));
}

/* A part that is not a 2-D f32 map: a summary and its download. */
export function partSummary(part, jobId) {
  const numeric = part.dtype !== 'bytes';
  const s = numeric ? summarize(part.data) : null;
  return el('section', { class: 'card part-card', 'data-part': part.name, 'aria-label': `part ${part.name}` },
    el('h3', {}, part.name),
    el('p', { class: 'muted' }, `${part.dtype}[${part.shape.join('][')}]`,
      s ? ` · min ${fmtValue(s.min)} · max ${fmtValue(s.max)}` : ` · ${part.data.length} bytes`),
    downloadLink(part, jobId));
}

const SCALAR_CHARS = 160; // the longest value a cell of the scalar table shows whole

/* The JSON of v, cut after `max` characters (with "…"): only as much of v is
 * walked as is shown, so a huge array costs no more than a small one. */
export function clipJson(v, max) {
  let out = '';
  const full = {};
  const put = (s) => {
    out += s;
    if (out.length > max) throw full;
  };
  const walk = (x) => {
    if (Array.isArray(x)) {
      put('[');
      for (let i = 0; i < x.length; i++) {
        if (i) put(',');
        walk(x[i] === undefined ? null : x[i]);
      }
      put(']');
    } else if (x && typeof x === 'object') {
      put('{');
      let first = true;
      for (const k in x) {
        if (!Object.hasOwn(x, k) || x[k] === undefined) continue;
        put(`${first ? '' : ','}${JSON.stringify(k)}:`);
        first = false;
        walk(x[k]);
      }
      put('}');
    } else {
      put(JSON.stringify(x) ?? 'null');
    }
  };
  try {
    walk(v);
    return out;
  } catch (e) {
    if (e !== full) throw e;
    return out.slice(0, max) + '…';
  }
}

/* One value of the scalar table as text: short values whole; a long array (the ids
 * of a vec.search, q x k strings) as its size and its first entries, the rest left
 * to the kind's own view and the API. */
export function scalarText(v) {
  if (v === null || v === undefined) return '— (none)';
  if (typeof v === 'number') return fmtValue(v);
  if (typeof v !== 'object') return String(v).length > SCALAR_CHARS ? String(v).slice(0, SCALAR_CHARS) + '…' : String(v);
  const json = clipJson(v, SCALAR_CHARS);
  if (!json.endsWith('…') || !Array.isArray(v)) return json;
  const what = v.length && v.every((x) => Array.isArray(x)) ? 'arrays' : v.length === 1 ? 'value' : 'values';
  return `[${v.length.toLocaleString('en-US')} ${what}] ${json}`;
}

/* A table of the scalar results ({name: number | string | null | ...}). */
export function scalarTable(result) {
  const rows = Object.entries(result || {}).map(([k, v]) =>
    el('tr', {}, el('th', { scope: 'row' }, k),
      el('td', { class: typeof v === 'number' ? 'num' : '' }, scalarText(v))));
  return el('table', { class: 'scalars' }, el('caption', {}, 'Scalar results'),
    el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'name'), el('th', { scope: 'col' }, 'value'))),
    el('tbody', {}, rows));
}

export function isMap(part) {
  return part.dtype === 'f32' && part.shape.length === 2 && part.shape[0] > 0 && part.shape[1] > 0;
}
