// sched.jobshop in the web UI: the Schedule page (paste or upload an instance, set
// the search's parameters from the kind's schema, watch the best makespan fall
// towards the lower bound, see the schedule as a Gantt chart) and the renderer of a
// sched.jobshop job's result on its job page.
//
// The instance goes to the server as the binary part `instance` (SPEC §1.5). While
// the search runs, each `progress` carries `best`, `lower_bound` and the best
// schedule's `starts` (the same shape as the result's): the bars (one per
// operation, machines by time, jobs coloured), the time axis, the bound and
// makespan marks and the convergence line redraw with every improvement, and the
// result's `starts` draws the final schedule the same way. (The server leaves a
// schedule over 256 KiB of JSON out of progress; the chart then waits for done.)

import { el, fmtNum, readNumberFields, setChildren } from '../dom.js';
import { niceTicks } from '../render.js';
import { connectionLost, jobResult, lostBeforeAccepted } from '../ws.js';

const KIND = 'sched.jobshop';
const FIELDS = ['time_limit_ms', 'seed', 'target', 'walks'];
const STORE_PREFIX = 'kiln.jobshop.';   // sessionStorage: job id -> instance text
const FT06 = `6 6
2 1 0 3 1 6 3 7 5 3 4 6
1 8 2 5 4 10 5 10 0 10 3 4
2 5 3 4 5 8 0 9 1 1 4 7
1 5 0 5 2 5 3 3 4 8 5 9
2 9 1 3 4 5 5 4 0 3 3 1
1 3 3 3 5 9 0 10 4 4 2 1
`;

/* The instance as [[machine, duration], ...] per job, from OR-Library text or the
 * JSON object; throws with a sentence when it cannot be read. The server checks it
 * again (and names the field); this is for drawing. */
export function parseInstance(text) {
  const t = text.trim();
  if (t.startsWith('{')) {
    const o = JSON.parse(t);
    if (Array.isArray(o.jobs)) return o.jobs.map((j) => j.map(([m, d]) => [Number(m), Number(d)]));
    if (typeof o.text === 'string') return parseInstance(o.text);
    throw new Error('the JSON instance holds neither jobs nor text');
  }
  const nums = t.split('\n').map((l) => l.split('#')[0]).join(' ').split(/\s+/).filter(Boolean).map(Number);
  if (nums.length < 2 || nums.some((x) => !Number.isInteger(x))) throw new Error('not OR-Library text: integers expected');
  const [n, m] = nums;
  if (nums.length !== 2 + 2 * n * m) throw new Error(`"${n} ${m}" needs ${2 * n * m} numbers after it, not ${nums.length - 2}`);
  const jobs = [];
  for (let j = 0; j < n; j++) {
    const ops = [];
    for (let k = 0; k < m; k++) ops.push([nums[2 + 2 * (j * m + k)], nums[3 + 2 * (j * m + k)]]);
    jobs.push(ops);
  }
  return jobs;
}

/* A job's colour: hues a golden angle apart, so neighbours differ. */
function jobColour(j, light = 58) {
  return `hsl(${(j * 137.508) % 360} 62% ${light}%)`;
}

function cssVar(name, fallback) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

/* The Gantt chart: machines by time, one bar per operation coloured by job.
 * set(jobs, starts) draws a schedule; update(starts, best, bound) redraws it with
 * a newer schedule of the same jobs (or none: only the axis and the marks) while a
 * search runs; frame(best, bound) redraws the axis and the marks. The canvas's
 * data-schedules counts the schedules drawn, data-end is the drawn schedule's
 * makespan. Hovering a bar (or focusing the chart and using the arrow keys) names
 * the operation. */
export class Gantt {
  constructor(label) {
    this.canvas = el('canvas', { class: 'gantt-canvas', role: 'img', tabindex: 0, 'aria-label': label });
    this.tip = el('p', { class: 'gantt-tip muted', 'aria-live': 'polite' }, ' ');
    this.legend = el('ul', { class: 'legend gantt-legend' });
    this.marks = el('p', { class: 'gantt-key muted' });
    this.node = el('figure', { class: 'gantt' }, this.canvas, this.marks, this.tip, this.legend);
    this.jobs = null;
    this.starts = null;
    this.best = null;
    this.bound = null;
    this.focus = -1;
    this.bars = [];
    this.schedules = 0;
    this.observer = new ResizeObserver(() => this.draw());
    this.observer.observe(this.canvas);
    this.canvas.addEventListener('mousemove', (e) => this.hover(e));
    this.canvas.addEventListener('mouseleave', () => { this.tip.textContent = ' '; });
    this.canvas.addEventListener('keydown', (e) => this.key(e));
  }

  destroy() {
    this.observer.disconnect();
  }

  set(jobs, starts) {
    this.jobs = jobs;
    this.starts = starts;
    if (starts?.length) this.schedules++;
    this.focus = -1;
    const n = jobs.length;
    // Colours through the CSSOM: the page's CSP allows no style attributes.
    setChildren(this.legend, n <= 30 ? jobs.map((_, j) => {
      const sw = el('span', { class: 'swatch' });
      sw.style.background = jobColour(j);
      return el('li', {}, sw, `job ${j}`);
    }) : null);
    this.draw();
  }

  frame(best, bound) {
    this.best = best;
    this.bound = bound;
    this.draw();
  }

  update(starts, best, bound) {
    if (Array.isArray(starts) && this.jobs?.length) {
      this.starts = starts;
      this.schedules++;
    }
    this.frame(best, bound);
  }

  machines() {
    let m = 0;
    for (const ops of this.jobs || []) for (const [mach] of ops) m = Math.max(m, mach + 1);
    return m;
  }

  span() {
    let end = 0;
    if (this.jobs && this.starts) {
      this.jobs.forEach((ops, j) => ops.forEach(([, d], k) => {
        const st = this.starts[j]?.[k];
        if (typeof st === 'number') end = Math.max(end, st + d);
      }));
    }
    return Math.max(end, this.best || 0, this.bound || 0, 1);
  }

  draw() {
    const c = this.canvas;
    if (!c.isConnected) return;
    const m = Math.max(this.machines(), 1);
    const rowH = m > 40 ? 8 : m > 20 ? 14 : 24;
    const pad = { l: 48, r: 16, t: 10, b: 28 };
    const cssH = pad.t + pad.b + m * rowH;
    c.style.height = `${cssH}px`;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, c.clientWidth), h = cssH;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
    }
    const ctx = c.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const span = this.span(), plotW = Math.max(1, w - pad.l - pad.r);
    const x = (t) => pad.l + (t / span) * plotW;
    const text = cssVar('--text', '#e3e8ee'), muted = cssVar('--muted', '#9aa7b4'), border = cssVar('--border', '#2d3742');
    ctx.font = '11px system-ui, sans-serif';
    ctx.textBaseline = 'middle';
    for (let r = 0; r < m; r++) {
      ctx.fillStyle = r % 2 ? 'rgba(255,255,255,0.02)' : 'rgba(255,255,255,0.05)';
      ctx.fillRect(pad.l, pad.t + r * rowH, plotW, rowH);
      if (rowH >= 12 || r % 5 === 0) {
        ctx.fillStyle = muted;
        ctx.textAlign = 'right';
        ctx.fillText(`M${r}`, pad.l - 6, pad.t + (r + 0.5) * rowH);
      }
    }
    // Time axis.
    ctx.strokeStyle = border;
    ctx.fillStyle = muted;
    ctx.textAlign = 'center';
    for (const t of niceTicks(0, span, Math.max(2, Math.floor(plotW / 90)))) {
      ctx.beginPath();
      ctx.moveTo(x(t), pad.t);
      ctx.lineTo(x(t), h - pad.b + 4);
      ctx.stroke();
      ctx.fillText(fmtNum(t), x(t), h - pad.b + 14);
    }
    // Bars.
    this.bars = [];
    let end = 0;
    if (this.jobs && this.starts) {
      this.jobs.forEach((ops, j) => ops.forEach(([mach, d], k) => {
        const s = this.starts[j]?.[k];
        if (typeof s !== 'number') return;
        const bx = x(s), bw = Math.max(1, x(s + d) - bx), by = pad.t + mach * rowH + 1;
        const i = this.bars.length;
        this.bars.push({ j, k, mach, s, d, bx, bw, by, bh: rowH - 2 });
        end = Math.max(end, s + d);
        ctx.fillStyle = jobColour(j, i === this.focus ? 75 : 58);
        ctx.fillRect(bx, by, bw, rowH - 2);
        if (bw > 18 && rowH >= 14) {
          ctx.fillStyle = '#0b0f14';
          ctx.textAlign = 'center';
          ctx.fillText(String(j), bx + bw / 2, by + (rowH - 2) / 2);
        }
      }));
    }
    // The bound (dashed) and the best makespan (solid); named in the key below.
    const mark = (t, colour, dash) => {
      if (typeof t !== 'number') return;
      ctx.save();
      ctx.strokeStyle = colour;
      ctx.setLineDash(dash);
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.moveTo(x(t), pad.t - 4);
      ctx.lineTo(x(t), h - pad.b);
      ctx.stroke();
      ctx.restore();
    };
    mark(this.bound, cssVar('--c3', '#f2c14e'), [4, 4]);
    mark(this.best, text, []);
    this.marks.textContent = [typeof this.best === 'number' ? `│ best ${fmtNum(this.best)}` : null,
      typeof this.bound === 'number' ? `┆ lower bound ${fmtNum(this.bound)}` : null].filter(Boolean).join('   ');
    c.dataset.bars = String(this.bars.length);
    c.dataset.end = this.bars.length ? String(end) : '';
    c.dataset.schedules = String(this.schedules);
    c.dataset.best = this.best ?? '';
    c.dataset.bound = this.bound ?? '';
  }

  describe(b) {
    return `job ${b.j}, operation ${b.k}: machine ${b.mach}, ${fmtNum(b.s)} to ${fmtNum(b.s + b.d)} (${fmtNum(b.d)})`;
  }

  hover(e) {
    const r = this.canvas.getBoundingClientRect();
    const px = e.clientX - r.left, py = e.clientY - r.top;
    const b = this.bars.find((q) => px >= q.bx && px <= q.bx + q.bw && py >= q.by && py <= q.by + q.bh);
    this.tip.textContent = b ? this.describe(b) : ' ';
  }

  key(e) {
    if (!this.bars.length || !['ArrowRight', 'ArrowLeft', 'ArrowDown', 'ArrowUp'].includes(e.key)) return;
    e.preventDefault();
    const step = e.key === 'ArrowRight' || e.key === 'ArrowDown' ? 1 : -1;
    this.focus = (this.focus + step + this.bars.length) % this.bars.length;
    this.draw();
    this.tip.textContent = this.describe(this.bars[this.focus]);
  }
}

/* The best makespan over time, with the bound: a small line chart. */
class Convergence {
  constructor() {
    this.canvas = el('canvas', { class: 'convergence', role: 'img', 'aria-label': 'best makespan over time' });
    this.points = [];
    this.bound = null;
    this.observer = new ResizeObserver(() => this.draw());
    this.observer.observe(this.canvas);
  }

  destroy() {
    this.observer.disconnect();
  }

  reset() {
    this.points = [];
    this.bound = null;
    this.draw();
  }

  push(ms, best, bound) {
    const last = this.points[this.points.length - 1];
    if (!last || last[1] !== best) this.points.push([ms, best]);
    this.bound = bound;
    this.draw();
  }

  draw() {
    const c = this.canvas;
    if (!c.isConnected) return;
    const dpr = window.devicePixelRatio || 1, w = Math.max(1, c.clientWidth), h = Math.max(1, c.clientHeight);
    c.width = Math.round(w * dpr);
    c.height = Math.round(h * dpr);
    const ctx = c.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    if (!this.points.length) return;
    const t1 = Math.max(1, this.points[this.points.length - 1][0]);
    const vals = this.points.map((p) => p[1]).concat(this.bound ?? []);
    const lo = Math.min(...vals), hi = Math.max(...vals), pad = 8, left = 64;
    const y = (v) => (hi === lo ? h / 2 : pad + (1 - (v - lo) / (hi - lo)) * (h - 2 * pad));
    const x = (t) => left + (t / t1) * (w - left - pad);
    ctx.font = '11px system-ui, sans-serif';
    ctx.textBaseline = 'middle';
    ctx.textAlign = 'right';
    const label = (v, colour, name) => {
      ctx.fillStyle = colour;
      ctx.fillText(`${name} ${fmtNum(v)}`, left - 6, y(v));
    };
    if (typeof this.bound === 'number') {
      ctx.strokeStyle = cssVar('--c3', '#f2c14e');
      ctx.setLineDash([4, 4]);
      ctx.beginPath();
      ctx.moveTo(left, y(this.bound));
      ctx.lineTo(w - pad, y(this.bound));
      ctx.stroke();
      ctx.setLineDash([]);
      if (Math.abs(y(this.bound) - y(this.points[this.points.length - 1][1])) > 10) label(this.bound, cssVar('--c3', '#f2c14e'), 'bound');
    }
    label(this.points[this.points.length - 1][1], cssVar('--c1', '#5cb8ff'), 'best');
    ctx.strokeStyle = cssVar('--c1', '#5cb8ff');
    ctx.lineWidth = 2;
    ctx.beginPath();
    this.points.forEach(([t, v], i) => {
      if (i) ctx.lineTo(x(t), y(this.points[i - 1][1]));
      (i ? ctx.lineTo : ctx.moveTo).call(ctx, x(t), y(v));
    });
    ctx.lineTo(w - pad, y(this.points[this.points.length - 1][1]));
    ctx.stroke();
  }
}

function figures(result) {
  const gap = typeof result.gap === 'number' ? `${(100 * result.gap).toFixed(2)} %` : '—';
  const rows = [['makespan', fmtNum(result.makespan)], ['lower bound', fmtNum(result.lower_bound)], ['gap', gap],
    ['optimal', result.optimal ? 'yes (meets the bound)' : 'not proven'], ['time to best', `${fmtNum(result.ms_to_best)} ms`],
    ['iterations', fmtNum(result.iterations)], ['walks', fmtNum(result.walks)]];
  return el('dl', { class: 'meta jobshop-stats' }, rows.map(([k, v]) => [el('dt', {}, k), el('dd', { 'data-stat': k }, v)]));
}

/* The result of a sched.jobshop job on its job page: the Gantt chart when this
 * browser still knows the instance (it sent it), else the start times. */
export function jobshopResult(res, jobId) {
  const r = res.done.result || {};
  let jobs = null;
  try {
    const text = sessionStorage.getItem(STORE_PREFIX + jobId);
    if (text) jobs = parseInstance(text);
  } catch { jobs = null; }
  if (!jobs || !Array.isArray(r.starts)) {
    return { node: el('section', { class: 'card jobshop-card' }, el('h2', {}, 'Schedule'), figures(r),
      el('p', { class: 'muted' }, 'The Gantt chart needs the instance, which this browser did not send; ',
        'the start times are in the table above.')), destroy() {} };
  }
  const g = new Gantt(`schedule of job ${jobId}: ${jobs.length} jobs, makespan ${r.makespan}`);
  const node = el('section', { class: 'card jobshop-card' }, el('h2', {}, 'Schedule'), figures(r), g.node);
  g.set(jobs, r.starts);
  g.frame(r.makespan, r.lower_bound);
  return { node, destroy: () => g.destroy() };
}

function paramField(name, spec) {
  const id = `jobshop-${name}`;
  const input = el('input', { type: 'number', id, value: spec.default ?? '', min: spec.min, max: spec.max, step: 1,
    placeholder: spec.default === undefined ? 'none' : '' });
  const err = el('p', { class: 'field-error', id: `${id}-err`, 'aria-live': 'polite' });
  input.setAttribute('aria-describedby', `${id}-help ${id}-err`);
  return { name, input, err, emptyMeans: spec.default === undefined ? 'none' : 'the default',
    node: el('div', { class: 'field', 'data-field': `params.${name}` },
      el('label', { for: id }, name), input, el('p', { class: 'field-help', id: `${id}-help` }, spec.doc || ''), err) };
}

/* The Schedule page: {node, cleanup, reconnect(client)}. ctx: {client, welcome, flash}. */
export function jobshopView({ client, welcome, flash }) {
  const props = {};
  for (const p of welcome?.schemas?.[KIND]?.params || []) props[p.name] = p;
  const fields = FIELDS.map((n) => paramField(n, props[n] || {}));
  const text = el('textarea', { id: 'jobshop-instance', rows: 12, spellcheck: 'false', 'aria-describedby': 'jobshop-instance-help jobshop-instance-err',
    placeholder: 'n m\nmachine duration machine duration ...   (one line per job)' });
  const textErr = el('p', { class: 'field-error', id: 'jobshop-instance-err', 'aria-live': 'polite' });
  const file = el('input', { type: 'file', id: 'jobshop-file', accept: '.txt,.json,text/plain,application/json' });
  const example = el('button', { type: 'button', class: 'small', onclick: () => { text.value = FT06; textErr.textContent = ''; } },
    'Example: ft06');
  file.addEventListener('change', async () => {
    const f = file.files[0];
    if (!f) return;
    text.value = await f.text();
    textErr.textContent = '';
  });
  const go = el('button', { type: 'submit', class: 'primary' }, 'Schedule');
  const stop = el('button', { type: 'button', disabled: true }, 'Stop');
  const status = el('p', { class: 'muted jobshop-status', role: 'status', 'aria-live': 'polite' });
  const live = {
    best: el('dd', { 'data-live': 'best' }, '—'), bound: el('dd', { 'data-live': 'lower_bound' }, '—'),
    gap: el('dd', { 'data-live': 'gap' }, '—'),
  };
  const gantt = new Gantt('the schedule: machines by time, jobs coloured');
  const conv = new Convergence();
  const stats = el('div', { class: 'jobshop-result' });
  let job = null, t0 = 0, alive = true; // job: the search under way, null once it ended

  const onProgress = (ev) => {
    const m = ev.detail;
    if (!job || m.job !== job || typeof m.best !== 'number') return;
    const gap = m.lower_bound > 0 ? (m.best - m.lower_bound) / m.lower_bound : 0;
    live.best.textContent = fmtNum(m.best);
    live.bound.textContent = fmtNum(m.lower_bound);
    live.gap.textContent = `${(100 * gap).toFixed(2)} %`;
    conv.push(performance.now() - t0, m.best, m.lower_bound);
    gantt.update(m.starts, m.best, m.lower_bound);
    status.textContent = `Searching: best ${fmtNum(m.best)}, bound ${fmtNum(m.lower_bound)} (${m.pct} % of the time)…`;
  };
  client.addEventListener('progress', onProgress);

  const showError = (e) => {
    if (connectionLost(e)) {
      status.textContent = lostBeforeAccepted(e);
      return;
    }
    const f = e.field && fields.find((x) => `params.${x.name}` === e.field);
    if (f) {
      f.err.textContent = e.message;
      f.input.setAttribute('aria-invalid', 'true');
    } else if (e.field && (e.field.startsWith('params.instance') || e.field === 'inputs.instance')) {
      textErr.textContent = `${e.field}: ${e.message}`;
      text.setAttribute('aria-invalid', 'true');
    }
    status.textContent = `Refused: ${e.message}`;
  };

  stop.addEventListener('click', async () => {
    if (!job) return;
    stop.disabled = true;
    try {
      await client.request({ op: 'cancel', job });
    } catch (e) {
      status.textContent = `Could not stop: ${e.message}`;
    }
  });

  const form = el('form', { class: 'card jobshop-form', novalidate: true, onsubmit: async (e) => {
    e.preventDefault();
    textErr.textContent = '';
    text.removeAttribute('aria-invalid');
    const body = text.value;
    if (!body.trim()) {
      textErr.textContent = 'Paste an instance, upload a file or take the example.';
      return;
    }
    let jobs = null;
    try {
      jobs = parseInstance(body);
    } catch {
      jobs = null; // the server says what is wrong, naming the field
    }
    const p = {};
    if (!readNumberFields(fields, p, status)) return;
    const blob = new Blob([body], { type: 'text/plain' });
    go.disabled = true;
    conv.reset();
    gantt.set(jobs || [], []);
    gantt.frame(null, null);
    for (const d of Object.values(live)) d.textContent = '—';
    setChildren(stats);
    status.textContent = 'Sending the instance…';
    try {
      const acc = await client.upload({ op: 'submit', kind: KIND, params: p, watch: true },
        [{ name: 'instance', dtype: 'bytes', shape: [blob.size], blob, bytes: blob.size }]);
      job = acc.job;
      t0 = performance.now();
      try { sessionStorage.setItem(STORE_PREFIX + job, body); } catch { /* full or disabled: the job page shows a table */ }
      stop.disabled = acc.state === 'done';
      status.textContent = acc.state === 'done' ? 'Found in the cache.' : `Job …${job.slice(-8)} accepted: searching…`;
      const res = await jobResult(() => client, acc, { alive: () => alive, status });
      if (!alive) return;
      stop.disabled = true;
      if (res.done.state !== 'done') {
        status.textContent = `The job ${res.done.state}${res.done.error?.message ? ': ' + res.done.error.message : ''}.`;
        return;
      }
      const r = res.done.result;
      live.best.textContent = fmtNum(r.makespan);
      live.bound.textContent = fmtNum(r.lower_bound);
      live.gap.textContent = `${(100 * r.gap).toFixed(2)} %`;
      conv.push(performance.now() - t0, r.makespan, r.lower_bound);
      if (jobs) gantt.set(jobs, r.starts);
      gantt.frame(r.makespan, r.lower_bound);
      setChildren(stats, figures(r), el('div', { class: 'actions' }, el('a', { href: `#/jobs/${job}`, class: 'button' }, 'Open the job')));
      status.textContent = `Done: makespan ${fmtNum(r.makespan)}${r.optimal ? ' (optimal: it meets the bound)' : ''}, ` +
        `${fmtNum(r.iterations)} moves in ${fmtNum(res.done.ms?.run)} ms on ${res.done.backend || 'the server'}.`;
    } catch (err) {
      if (alive) showError(err);
    } finally {
      job = null; // a progress that arrives after done is ignored
      go.disabled = false;
    }
  } },
  el('h2', {}, 'Instance'),
  el('div', { class: 'field' }, el('label', { for: 'jobshop-instance' }, 'instance'), text,
    el('p', { class: 'field-help', id: 'jobshop-instance-help' },
      'OR-Library text ("n m", then per job m pairs "machine duration", machines from 0) or JSON {"jobs": [[[machine, duration], ...], ...]}.'),
    textErr),
  el('div', { class: 'actions' }, el('label', { for: 'jobshop-file', class: 'button small' }, 'Upload a file…'), file, example),
  el('h2', {}, 'Search'),
  el('div', { class: 'jobshop-fields' }, fields.map((f) => f.node)),
  el('div', { class: 'actions' }, go, stop), status);

  const node = el('section', { class: 'view view-jobshop' },
    el('div', { class: 'view-head' }, el('h1', {}, 'Schedule'),
      el('p', { class: 'muted' }, 'A job-shop schedule by tabu search, with its lower bound and gap.')),
    el('div', { class: 'jobshop-layout' }, form,
      el('div', { class: 'card jobshop-out' }, el('h2', {}, 'Gantt chart'),
        el('dl', { class: 'meta jobshop-live' }, el('dt', {}, 'best'), live.best, el('dt', {}, 'lower bound'), live.bound,
          el('dt', {}, 'gap'), live.gap),
        conv.canvas, gantt.node, stats)));
  if (!welcome?.kinds?.includes(KIND)) flash?.(`This server does not offer ${KIND}.`);
  return {
    node,
    cleanup: () => {
      alive = false;
      client.removeEventListener('progress', onProgress);
      gantt.destroy();
      conv.destroy();
    },
    // A new connection (the server restarted): the instance, the fields and the chart stay.
    reconnect: (c) => {
      client.removeEventListener('progress', onProgress);
      client = c;
      client.addEventListener('progress', onProgress);
    },
  };
}
