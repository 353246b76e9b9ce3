// risk.score in the web UI: the Risk page (pick a model, built-in or stored; paste
// CSV rows or upload a float32 .npy; the scores as a table and a histogram, Altman
// zones coloured) and the renderer of a risk.score job's result on its job page.
//
// The rows go to the server as the binary part `rows`, f32[n][features] (SPEC §1.3);
// stored models answer with the parts `pd` (and `margin`), the Altman models with
// `z` and `zone` (0 distress, 1 grey, 2 safe). Models are uploaded on the Objects page.

import { el, fmtNum, markPrevious, setChildren, showAnswer } from '../dom.js';
import { f32RowsPart, npyRowsPicker } from '../npy.js';
import { partDownloads } from '../render.js';
import { connectionLost, jobResult, lostBeforeAccepted } from '../ws.js';

const KIND = 'risk.score';
const SHOWN = 50;             // rows tabled; the histogram counts them all
const MAX_ROWS = 1000000;     // SPEC §1.3
const BINS = 24;
// The built-in models: their columns and zone boundaries (SPEC §1.3).
const ALTMAN = {
  'altman-z': { cols: 5, lo: 1.81, hi: 2.99, label: 'Altman Z (1968), X1..X5' },
  'altman-z2': { cols: 4, lo: 1.1, hi: 2.6, label: "Altman Z'', X1..X4" },
};
const ZONES = ['distress', 'grey', 'safe'];

/* Rows from pasted text: lines of numbers separated by commas (or spaces), an
 * optional header line (names only) first; an empty field, nan, NA or null is a missing value
 * (NaN). A JSON array of arrays (null = missing) works too. Returns
 * {data: Float32Array, n, cols}; throws an Error naming the line and column. */
export function parseRows(text) {
  const t = text.trim();
  if (!t) throw new Error('paste at least one row');
  let rows;
  if (t.startsWith('[')) {
    let v;
    try {
      v = JSON.parse(t);
    } catch (e) {
      throw new Error(`not JSON: ${e.message}`);
    }
    rows = (Array.isArray(v[0]) ? v : [v]).map((r) => (Array.isArray(r) ? r.map((x) => (x === null ? Number.NaN : x)) : r));
  } else {
    const lines = t.split('\n').map((l) => l.trim()).filter(Boolean);
    const split = (l) => (l.includes(',') ? l.split(',') : l.split(/\s+/)).map((f) => f.trim());
    const missing = (f) => f === '' || /^(nan|na|null)$/i.test(f);
    const bad = (fields) => fields.findIndex((f) => !missing(f) && !Number.isFinite(Number(f)));
    // A first line of names only (no field a number or missing) is a header.
    if (lines.length && split(lines[0]).every((f) => !missing(f) && !Number.isFinite(Number(f)))) lines.shift();
    rows = lines.map((l, i) => {
      const fields = split(l);
      const j = bad(fields);
      if (j >= 0) throw new Error(`line ${i + 1}, column ${j + 1}: "${fields[j]}" is not a number`);
      return fields.map((f) => (missing(f) ? Number.NaN : Number(f)));
    });
  }
  const cols = rows[0]?.length || 0;
  if (!cols) throw new Error('the first row is empty');
  if (rows.length > MAX_ROWS) throw new Error(`${rows.length} rows: a job scores at most ${MAX_ROWS}`);
  const data = new Float32Array(rows.length * cols);
  rows.forEach((r, i) => {
    if (!Array.isArray(r) || r.length !== cols) {
      throw new Error(`row ${i + 1} has ${Array.isArray(r) ? r.length : 'no'} values; the first has ${cols}`);
    }
    r.forEach((x, j) => {
      if (typeof x !== 'number') throw new Error(`row ${i + 1}, value ${j + 1} is not a number`);
      if (Number.isFinite(x) && !Number.isFinite(Math.fround(x))) {
        throw new Error(`row ${i + 1}, value ${j + 1} (${x}) is beyond the float32 range (±3.4e38)`);
      }
      data[i * cols + j] = x;
    });
  });
  return { data, n: rows.length, cols };
}

/* A score for the table: six significant digits; ±Inf for a z past float32's range. */
const fmtScore = (v) => (Number.isFinite(v) ? v.toPrecision(6) : v > 0 ? '+Inf' : v < 0 ? '−Inf' : 'NaN');

const f32 = (p) => (p ? new Float32Array(p.data.buffer, p.data.byteOffset, p.data.byteLength / 4) : null);

/* A histogram (SVG) of `values` (not NaN) over [lo, hi] (values outside, infinite
 * ones too, count in the edge bins). With `zones` (one per value) each bar takes the colour of the
 * zone most of its values are in; with `bounds` ({lo, hi}) the zone boundaries are
 * drawn. */
export function histogram(values, { lo, hi, zones, bounds, label }) {
  const counts = new Array(BINS).fill(0), byZone = counts.map(() => [0, 0, 0]);
  let shown = 0;
  values.forEach((v, i) => {
    if (Number.isNaN(v)) return;
    const b = Math.min(BINS - 1, Math.max(0, Math.floor(((v - lo) / (hi - lo)) * BINS)));
    counts[b]++;
    if (zones) byZone[b][zones[i]]++;
    shown++;
  });
  const W = 600, H = 180, pad = 28, max = Math.max(1, ...counts), bw = (W - 2 * pad) / BINS;
  const x = (v) => pad + ((v - lo) / (hi - lo)) * (W - 2 * pad);
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('class', 'risk-hist');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', `histogram of ${label}: ${shown} values from ${fmtNum(lo)} to ${fmtNum(hi)}`);
  const add = (tag, attrs, text) => {
    const n = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    svg.append(n);
    return n;
  };
  counts.forEach((c, b) => {
    const h = (c / max) * (H - 2 * pad);
    const z = byZone[b], zone = zones ? ZONES[z.indexOf(Math.max(...z))] : 'pd';
    const r = add('rect', { x: pad + b * bw + 1, y: H - pad - h, width: Math.max(1, bw - 2), height: h, class: `risk-bar zone-${zone}`,
      'data-count': c });
    add('title', {}, `${fmtNum(lo + (b / BINS) * (hi - lo))} – ${fmtNum(lo + ((b + 1) / BINS) * (hi - lo))}: ${c}`);
    r.append(svg.lastChild);
  });
  add('line', { x1: pad, x2: W - pad, y1: H - pad, y2: H - pad, class: 'risk-axis' });
  for (const v of [lo, (lo + hi) / 2, hi]) add('text', { x: x(v), y: H - 8, 'text-anchor': 'middle', class: 'risk-tick' }, fmtNum(v));
  add('text', { x: pad, y: 14, class: 'risk-tick' }, `max ${max}`);
  if (bounds) {
    for (const v of [bounds.lo, bounds.hi]) {
      add('line', { x1: x(v), x2: x(v), y1: pad - 6, y2: H - pad, class: 'risk-boundary' });
      add('text', { x: x(v), y: pad - 10, 'text-anchor': 'middle', class: 'risk-tick' }, String(v));
    }
  }
  return svg;
}

/* The table and histogram of one result: {node, parts}. */
function scores(res, model) {
  const r = res.done.result || {};
  const pd = f32(res.parts.get('pd')), margin = f32(res.parts.get('margin'));
  const z = f32(res.parts.get('z')), zone = res.parts.get('zone')?.data;
  const n = (pd || z)?.length ?? 0;
  const bounds = ALTMAN[model] || null; // unknown on a job page: the zones still colour the bars
  let hist, legend = null;
  if (z) {
    const sorted = Float32Array.from(z).sort();
    const q = (f) => sorted[Math.min(n - 1, Math.floor(f * (n - 1)))];
    // The middle 98 % and the zones; far outliers share the edge bins.
    let lo = Math.min(q(0.01), bounds ? bounds.lo - 1 : Infinity), hi = Math.max(q(0.99), bounds ? bounds.hi + 1 : -Infinity);
    if (!(hi > lo)) [lo, hi] = [lo - 1, lo + 1];
    hist = histogram(z, { lo, hi, zones: zone, bounds, label: 'z' });
    const counts = [0, 0, 0];
    for (const k of zone || []) counts[k]++;
    legend = el('p', { class: 'risk-legend' }, ZONES.map((name, i) =>
      el('span', { class: `zone zone-${name}` }, `${name} ${fmtNum(counts[i])}`)));
  } else {
    hist = histogram(pd || [], { lo: 0, hi: 1, label: 'pd' });
  }
  const head = z ? ['row', 'z', 'zone'] : ['row', 'pd'].concat(margin ? ['margin'] : []);
  const body = [];
  for (let i = 0; i < Math.min(n, SHOWN); i++) {
    body.push(el('tr', {}, el('td', { class: 'num' }, String(i + 1)),
      z ? [el('td', { class: 'num' }, fmtScore(z[i])),
        el('td', {}, el('span', { class: `zone zone-${ZONES[zone[i]]}` }, ZONES[zone[i]]))]
        : [el('td', { class: 'num' }, fmtScore(pd[i])), margin ? el('td', { class: 'num' }, fmtScore(margin[i])) : null]));
  }
  const table = el('table', { class: 'grid-table risk-table', 'aria-label': 'scores' },
    el('thead', {}, el('tr', {}, head.map((h, i) => el('th', { scope: 'col', class: i === 2 && z ? null : 'num' }, h)))),
    el('tbody', {}, body));
  const more = n > SHOWN ? el('p', { class: 'muted' }, `… and ${fmtNum(n - SHOWN)} more rows (download the parts below).`) : null;
  const downloads = partDownloads(res.parts, ['pd', 'margin', 'z', 'zone'], res.done.job);
  const what = z ? `${fmtNum(r.rows)} rows scored with ${model || 'an Altman model'}`
    : `${fmtNum(r.rows)} rows scored with model version ${r.model_version}`;
  return el('div', { class: 'risk-scores' }, el('p', { class: 'muted' }, what + '.'),
    el('figure', { class: 'risk-figure' }, hist, el('figcaption', {}, z ? 'z, zones coloured' : 'probability of default (pd)')),
    legend, table, more, downloads);
}

/* The result of a risk.score job (its job page). Returns {node, destroy, parts}. */
export function riskResult(res, jobId, model) {
  const node = el('section', { class: 'card risk-card', 'aria-label': 'risk scores' }, el('h2', {}, 'Scores'), scores(res, model));
  return { node, destroy() {}, parts: ['pd', 'margin', 'z', 'zone'] };
}

/* The Risk page: {node, cleanup, reconnect(client)}. ctx: {client, welcome, flash}. */
export function riskView({ client, welcome, flash }) {
  const modelSpec = (welcome?.schemas?.[KIND]?.params || []).find((p) => p.name === 'model') || {};
  const builtins = (modelSpec.builtin || Object.keys(ALTMAN)).filter((b) => ALTMAN[b]);
  const stored = new Map(); // name -> the model.list entry
  const select = el('select', { id: 'risk-model', required: true });
  const margin = el('input', { type: 'checkbox', id: 'risk-margin' });
  const text = el('textarea', { id: 'risk-rows', rows: 7, spellcheck: false,
    placeholder: 'x1,x2,x3,x4\n0.12,0.30,0.05,1.7\n0.40,,0.10,0.9   (empty = missing)' });
  const file = el('input', { type: 'file', id: 'risk-file', accept: '.npy' });
  const note = el('p', { class: 'muted risk-note' });
  const errs = { model: el('p', { class: 'field-error', 'aria-live': 'polite' }),
    rows: el('p', { class: 'field-error', id: 'risk-rows-err', 'aria-live': 'polite' }) };
  text.setAttribute('aria-describedby', 'risk-rows-help risk-rows-err');
  const go = el('button', { type: 'submit', class: 'primary' }, 'Score');
  const status = el('p', { class: 'muted risk-status', role: 'status', 'aria-live': 'polite' });
  const out = el('div', { class: 'risk-out' }, el('p', { class: 'muted' }, 'The scores appear here.'));
  let alive = true;

  const columns = (name) => ALTMAN[name]?.cols ?? stored.get(name)?.features;
  const describe = () => {
    const name = select.value, m = stored.get(name);
    margin.disabled = !!ALTMAN[name];
    if (margin.disabled) margin.checked = false;
    setChildren(note, ALTMAN[name] ? `${ALTMAN[name].label}: ${ALTMAN[name].cols} values a row, none missing.`
      : m ? `${fmtNum(m.features)} features · ${fmtNum(m.trees)} trees · version ${m.version}` : '');
  };
  select.addEventListener('change', describe);

  const refresh = async () => {
    try {
      const v = await client.request({ op: 'model.list' });
      if (!alive) return;
      const keep = select.value;
      stored.clear();
      for (const m of [...(v.models || [])].sort((a, b) => (a.name < b.name ? -1 : 1))) stored.set(m.name, m);
      select.replaceChildren(
        el('optgroup', { label: 'built-in' }, builtins.map((b) => el('option', { value: b }, b))),
        stored.size ? el('optgroup', { label: 'stored models' }, [...stored.keys()].map((n) => el('option', { value: n }, n))) : null);
      if (keep && (ALTMAN[keep] || stored.has(keep))) select.value = keep;
      describe();
    } catch (e) {
      flash?.(`Listing models failed: ${e.message}`);
    }
  };

  const rows = npyRowsPicker({
    file, text, error: errs.rows, max: MAX_ROWS,
    tooMany: (name, n) => `${name} holds ${n} rows: a job scores at most ${MAX_ROWS}`,
    picked: (h) => { status.textContent = `${h.file.name}: ${fmtNum(h.n)} rows of ${fmtNum(h.dim)} values.`; },
  });

  const form = el('form', { class: 'card risk-form', novalidate: true, onsubmit: async (ev) => {
    ev.preventDefault();
    errs.model.textContent = errs.rows.textContent = '';
    // Until these rows are scored, what is on screen is the answer of an earlier job.
    status.textContent = '';
    markPrevious(out, 'These scores are of an earlier job, not of the last one asked for.');
    const model = select.value;
    if (!model) {
      errs.model.textContent = 'Choose a model.';
      return;
    }
    let part;
    try {
      const picked = rows.get();
      if (picked) {
        part = f32RowsPart('rows', picked);
      } else {
        const r = parseRows(text.value);
        part = f32RowsPart('rows', null, { n: r.n, dim: r.cols, data: r.data });
      }
    } catch (e) {
      errs.rows.textContent = e.message;
      text.setAttribute('aria-invalid', 'true');
      return;
    }
    text.removeAttribute('aria-invalid');
    const cols = columns(model);
    if (cols && part.shape[1] !== cols) {
      errs.rows.textContent = `The rows have ${part.shape[1]} values each; ${model} takes ${cols}.`;
      return;
    }
    const params = { model };
    if (margin.checked) params.margin = true;
    go.disabled = true;
    status.textContent = 'Scoring…';
    try {
      const acc = await client.upload({ op: 'submit', kind: KIND, params, watch: true }, [part]);
      const res = await jobResult(() => client, acc, { alive: () => alive, status });
      if (!alive) return;
      if (res.done.state !== 'done') {
        const err = res.done.error || {};
        if (err.code === 'bad_params') errs.rows.textContent = err.message;
        status.textContent = `The job ${res.done.state}${err.message ? ': ' + err.message : ''}.`;
        return;
      }
      showAnswer(out, scores(res, model), el('p', { class: 'muted' },
        `Scored in ${fmtNum(res.done.ms?.run)} ms on ${res.done.backend || 'the server'}${acc.cached ? ' (from the cache)' : ''}. `,
        el('a', { href: `#/jobs/${acc.job}` }, 'Open the job')));
      status.textContent = `Done: ${fmtNum(res.done.result.rows)} rows.`;
    } catch (e) {
      if (!alive) return;
      if (connectionLost(e)) {
        status.textContent = lostBeforeAccepted(e, 'the job', 'score again');
        return;
      }
      (e.field === 'params.model' ? errs.model : errs.rows).textContent = e.message;
      status.textContent = '';
    } finally {
      go.disabled = false;
    }
  } },
  el('h2', {}, 'Score rows'),
  el('div', { class: 'risk-fields' },
    el('div', { class: 'field', 'data-field': 'params.model' }, el('label', { for: 'risk-model' }, 'model'), select, note, errs.model),
    el('div', { class: 'field', 'data-field': 'params.margin' }, el('label', { for: 'risk-margin', class: 'check' }, margin, ' also the margin'),
      el('p', { class: 'field-help' }, 'the raw log-odds, stored models only'))),
  el('div', { class: 'field', 'data-field': 'inputs.rows' }, el('label', { for: 'risk-rows' }, 'rows'), text,
    el('p', { class: 'field-help', id: 'risk-rows-help' },
      'CSV, one row a line (a first line of names is skipped; empty, nan or NA = missing), or a JSON array of rows; or a float32 .npy file.'),
    errs.rows),
  el('div', { class: 'actions' }, el('label', { for: 'risk-file', class: 'button small' }, 'Rows from a .npy file…'), file, go),
  status);

  const node = el('section', { class: 'view view-risk' },
    el('div', { class: 'view-head' }, el('h1', {}, 'Risk'),
      el('p', { class: 'muted' }, 'Probability of default from a stored XGBoost model, or Altman\'s Z with its zones. ',
        el('a', { href: '#/objects' }, 'Upload models on the Objects page'), '.')),
    el('div', { class: 'risk-layout' }, form,
      el('div', { class: 'card risk-results', 'aria-label': 'risk results' }, el('h2', {}, 'Scores'), out)));
  if (!welcome?.kinds?.includes(KIND)) flash?.(`This server does not offer ${KIND}.`);
  refresh();
  return {
    node,
    cleanup: () => { alive = false; },
    // A new connection (the server restarted): what was typed and the scores stay; the models are read again.
    reconnect: (c) => {
      client = c;
      refresh();
    },
  };
}
