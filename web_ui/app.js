// The kiln operator UI: connection and sign-in, a hash router, and the views
// (dashboard, submit, jobs, job, objects, relief, jobshop). State lives here; ws.js speaks the
// protocol, forms.js builds the submit forms, objects.js the stored-objects page,
// kinds/*.js the pages and result views of single kinds (kinds/relief.js, kinds/jobshop.js),
// charts.js and render.js draw.

import { KilnClient, apiUrl } from './ws.js';
import { el, fmtNum, fmtBytes, fmtDuration, setChildren } from './dom.js';
import { buildForm } from './forms.js';
import { LineChart, BarChart } from './charts.js';
import { mapViewer, partSummary, scalarTable, isMap } from './render.js';
import { parseMetrics } from './metrics.js';
import { objectsView } from './objects.js';
import { reliefResult, reliefView } from './kinds/relief.js';
import { jobshopResult, jobshopView } from './kinds/jobshop.js';
import { vecResult, vecView } from './kinds/vec.js';
import { riskResult, riskView } from './kinds/risk.js';

const TOKEN_KEY = 'kiln.token';
const FINAL = new Set(['done', 'failed', 'cancelled', 'expired']);
const PRIORITIES = ['critical', 'high', 'normal', 'low', 'batch'];

const state = {
  client: null,
  welcome: null,
  connecting: false,
  authError: '',
  retryMs: 1000,
  stats: null,
  prevStats: null,
  metrics: null,
  prevMetrics: null,
  jobs: new Map(), // id -> {job, kind, state, submitted, pct}
  jobOrder: [],    // ids in the jobs view, newest first
  listNext: null,
  listDeeper: false, // pages past the first were loaded: the first page's reload keeps listNext
  listFilter: { state: '', kind: '' },
  view: null,      // {name, cleanup}
};

const $ = (sel, root = document) => root.querySelector(sel);
const viewRoot = () => $('#view');

/* ---- connection and sign-in ---- */

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

function setConn(text, kind) {
  const c = $('#conn');
  c.textContent = text;
  c.dataset.state = kind;
  document.body.dataset.conn = kind; /* the dashboard's figures are marked stale while down */
}

function renderSession() {
  const who = $('#who');
  const btn = $('#signout');
  if (state.welcome) {
    who.textContent = `${state.welcome.tenant} · ${state.welcome.role}`;
    who.title = state.welcome.server;
    btn.hidden = !token();
  } else {
    who.textContent = '';
    btn.hidden = true;
  }
  const signin = $('#nav-signin');
  signin.hidden = Boolean(state.welcome && token());
}

/* Opens a fresh connection and says hello with the stored token. An
 * `unauthorized` answer leads to the sign-in view; a lost connection retries. */
async function connect() {
  if (state.connecting) return;
  state.connecting = true;
  if (state.client) state.client.close();
  state.welcome = null;
  const client = new KilnClient(apiUrl());
  state.client = client;
  setConn('connecting…', 'connecting');
  try {
    await client.open();
  } catch (e) {
    state.connecting = false;
    setConn('offline — retrying', 'down');
    scheduleReconnect();
    return;
  }
  client.addEventListener('close', () => {
    if (state.client !== client) return;
    state.welcome = null;
    setConn('connection lost — retrying', 'down');
    renderSession();
    scheduleReconnect();
  });
  client.addEventListener('stats', (ev) => onStats(ev.detail));
  client.addEventListener('progress', (ev) => onProgress(ev.detail));
  client.addEventListener('done', (ev) => onDone(ev.detail));
  try {
    state.welcome = await client.hello(token());
    state.authError = '';
    state.retryMs = 1000;
    setConn('live', 'up');
    await client.request({ op: 'subscribe', topic: 'stats' });
  } catch (e) {
    state.welcome = null;
    if (e.code === 'unauthorized') {
      state.authError = token() ? `Sign-in failed: ${e.message}.` : 'This server requires a token.';
      setConn('signed out', 'down');
    } else if (state.client === client) {
      setConn('offline — retrying', 'down');
      scheduleReconnect();
    }
  } finally {
    state.connecting = false;
  }
  renderSession();
  // A reconnect (the server restarted, the network came back) keeps the page as it
  // is, with what was typed and the answers shown, when its view can take the new
  // connection and the tenant and role are the same; else the page is built anew.
  const v = state.view;
  if (state.welcome && v?.reconnect && v.who === whoKey()) v.reconnect(client);
  else if (state.welcome || state.authError || !v?.reconnect) route();
}

/* Who the views are built for: a view of another tenant or role is built anew. */
function whoKey() {
  return state.welcome ? `${state.welcome.tenant}\n${state.welcome.role}` : '';
}

let reconnectTimer = 0;
function scheduleReconnect() {
  clearTimeout(reconnectTimer);
  reconnectTimer = setTimeout(connect, state.retryMs);
  state.retryMs = Math.min(state.retryMs * 2, 10000);
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  state.jobs.clear();
  state.jobOrder = [];
  state.listNext = null;
  state.listDeeper = false;
  location.hash = '#/signin';
  connect();
}

/* ---- live data: stats, metrics, job events ---- */

const charts = {
  throughput: new LineChart({ title: 'Throughput (jobs finished per second)', series: [
    { key: 'done', label: 'done' }, { key: 'failed', label: 'failed / expired / cancelled' }] }),
  queue: new LineChart({ title: 'Queue (jobs)', integer: true, series: [
    { key: 'queued', label: 'queued' }, { key: 'running', label: 'running' }] }),
  batch: new LineChart({ title: 'Batches', series: [
    { key: 'mean', label: 'mean batch size' }, { key: 'rate', label: 'batches/s' }] }),
  cache: new LineChart({ title: 'Cache hit rate (%)', unit: ' %', series: [{ key: 'rate', label: 'hit rate' }] }),
  batchHist: new BarChart({ title: 'Batch sizes (all batches since start)' }),
};

const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/* The first number found at one of the dotted paths. */
function pick(obj, ...paths) {
  for (const p of paths) {
    let v = obj;
    for (const k of p.split('.')) v = v && typeof v === 'object' ? v[k] : undefined;
    if (num(v) !== undefined) return v;
  }
  return undefined;
}

function sumObj(o) {
  return o && typeof o === 'object' ? Object.values(o).reduce((a, v) => a + (num(v) || 0), 0) : undefined;
}

/* Cache numbers from the stats push, or else from /metrics. */
function cacheNumbers(s, m) {
  const c = (s && typeof s.cache === 'object' && s.cache) || {};
  const hits = pick(c, 'hits', 'hit') ?? m?.sum('kiln_cache_hits_total');
  const misses = pick(c, 'misses', 'miss') ?? m?.sum('kiln_cache_misses_total');
  const bytes = pick(c, 'bytes', 'size_bytes', 'used_bytes') ?? m?.sum('kiln_cache_bytes');
  const ratio = pick(c, 'hit_rate', 'hit_ratio');
  return { hits, misses, bytes, ratio, entries: pick(c, 'entries', 'items', 'count') };
}

/* The memory budget (stats.memory for an admin, or else /metrics): what kilnd
 * holds for inputs, results and output buffers against memory.max_bytes. */
function memoryNumbers(s, m) {
  const mem = (s && typeof s.memory === 'object' && s.memory) || {};
  return {
    used: pick(mem, 'used_bytes') ?? m?.sum('kiln_memory_used_bytes'),
    max: pick(mem, 'max_bytes') ?? m?.sum('kiln_memory_budget_bytes'),
    waits: pick(mem, 'waits') ?? m?.sum('kiln_memory_waits_total'),
  };
}

/* The store's room (stats.store for an admin, or else /metrics): what it can still
 * take, and whether new work is refused for lack of it. */
function storeNumbers(s, m) {
  const st = (s && typeof s.store === 'object' && s.store) || {};
  const full = st.full ?? (m ? m.sum('kiln_store_full') > 0 : undefined);
  return { room: pick(st, 'room_bytes') ?? m?.sum('kiln_store_room_bytes'), full };
}

/* Batch numbers: {count, sum} totals, from the stats push or /metrics. */
function batchNumbers(s, m) {
  const b = (s && typeof (s.batches ?? s.batch) === 'object' && (s.batches ?? s.batch)) || {};
  let count = pick(b, 'count', 'total', 'launched'), sum = pick(b, 'jobs', 'sum', 'size_sum');
  if (count === undefined && m) {
    count = m.sum('kiln_batch_size_count');
    sum = m.sum('kiln_batch_size_sum');
  }
  return { count, sum, mean: pick(b, 'mean_size', 'mean', 'avg_size') ?? pick(s || {}, 'mean_batch_size'),
    rate: pick(b, 'per_s', 'rate') ?? pick(s || {}, 'batches_per_s') };
}

function onStats(s) {
  const t = Date.now();
  state.prevStats = state.stats ? { ...state.stats, _t: state.stats._t } : null;
  s._t = t;
  state.stats = s;
  const p = state.prevStats;
  if (p) {
    const dt = (s._t - p._t) / 1000 || 1;
    const f = s.finished || {}, pf = p.finished || {};
    const done = (num(f.done) ?? 0) - (num(pf.done) ?? 0);
    const bad = ['failed', 'expired', 'cancelled'].reduce((a, k) => a + (num(f[k]) ?? 0) - (num(pf[k]) ?? 0), 0);
    charts.throughput.push(t, { done: Math.max(0, done) / dt, failed: Math.max(0, bad) / dt });
  }
  charts.queue.push(t, { queued: num(s.queued), running: num(s.running) });
  updateDerived(t);
  if (state.view?.onStats) state.view.onStats(s);
}

/* Rates that need two samples (cache hit rate, batches), from stats or /metrics. */
function updateDerived(t) {
  const s = state.stats, ps = state.prevStats, m = state.metrics, pm = state.prevMetrics;
  const c = cacheNumbers(s, m), pc = cacheNumbers(ps, pm);
  let rate;
  if (c.ratio !== undefined) rate = c.ratio <= 1 ? c.ratio * 100 : c.ratio;
  else if (c.hits !== undefined && pc.hits !== undefined) {
    const dh = c.hits - pc.hits, dm = (c.misses ?? 0) - (pc.misses ?? 0);
    rate = dh + dm > 0 ? (100 * dh) / (dh + dm) : undefined;
  }
  state.cacheRate = rate;
  state.cacheTotalRate = c.hits !== undefined && c.hits + (c.misses ?? 0) > 0 ? (100 * c.hits) / (c.hits + (c.misses ?? 0)) : undefined;
  charts.cache.push(t, { rate });
  const b = batchNumbers(s, m), pb = batchNumbers(ps, pm);
  let mean = b.mean, brate = b.rate;
  if (b.count !== undefined && pb.count !== undefined) {
    const dc = b.count - pb.count;
    const dt = ((s?._t ?? t) - (ps?._t ?? t)) / 1000 || 1;
    if (mean === undefined && dc > 0 && b.sum !== undefined) mean = (b.sum - pb.sum) / dc;
    if (brate === undefined) brate = Math.max(0, dc) / dt;
  }
  charts.batch.push(t, { mean, rate: brate });
}

let metricsTimer = 0, metricsFailures = 0;
/* /metrics (Prometheus text) fills what the stats push does not carry: batch size
 * histogram, cache counters, device utilisation. Polled every 2 s; given up
 * quietly when the endpoint is not reachable. */
async function pollMetrics() {
  clearTimeout(metricsTimer);
  try {
    const r = await fetch('/metrics', { cache: 'no-store', headers: token() ? { Authorization: `Bearer ${token()}` } : {} });
    if (!r.ok) throw new Error(String(r.status));
    state.prevMetrics = state.metrics;
    state.metrics = parseMetrics(await r.text());
    metricsFailures = 0;
    renderBatchHist();
  } catch (e) {
    metricsFailures++;
  }
  metricsTimer = setTimeout(pollMetrics, metricsFailures > 3 ? 30000 : 2000);
}

function renderBatchHist() {
  const m = state.metrics;
  if (!m) return;
  const buckets = m.histogram('kiln_batch_size');
  if (!buckets.length) return;
  const bars = [];
  let prev = 0;
  for (const [le, cum] of buckets) {
    const label = le === Infinity ? `>${bars.length ? buckets[bars.length - 1][0] : 0}` : `≤${le}`;
    bars.push([label, Math.max(0, cum - prev)]);
    prev = cum;
  }
  while (bars.length > 1 && bars[bars.length - 1][1] === 0) bars.pop();
  const count = m.sum('kiln_batch_size_count'), sum = m.sum('kiln_batch_size_sum');
  charts.batchHist.set(bars, count ? `${fmtNum(count)} batches, mean ${fmtNum(sum / count)} jobs` : 'no batches yet');
}

function onProgress(msg) {
  const j = state.jobs.get(msg.job);
  if (j) {
    j.pct = msg.pct;
    if (!FINAL.has(j.state)) j.state = 'running';
    updateJobRow(msg.job);
  }
  if (state.view?.onProgress) state.view.onProgress(msg);
}

function onDone(msg) {
  const j = state.jobs.get(msg.job);
  if (j) {
    j.state = msg.state;
    j.pct = 100;
    updateJobRow(msg.job);
  }
}

/* ---- router ---- */

function route() {
  const hash = location.hash || '#/';
  let parts = null;
  try {
    parts = hash.slice(2).split('/').map(decodeURIComponent);
  } catch {
    // A malformed %-escape (a link cut short or mistyped): parts stays null.
  }
  if (state.view?.cleanup) state.view.cleanup();
  state.view = null;
  for (const a of document.querySelectorAll('#nav a')) {
    if (parts && (a.getAttribute('href') === '#/' + parts[0] || (a.getAttribute('href') === '#/' && !parts[0]))) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!parts) {
    viewBadAddress(hash);
    return;
  }
  if (!state.welcome || parts[0] === 'signin') {
    if (!state.welcome && state.connecting) return;
    if (!state.welcome && !state.authError && !parts[0].startsWith('signin')) {
      show(el('section', { class: 'view' }, el('h1', {}, 'Connecting…'), el('p', { class: 'muted' }, 'Waiting for the server.')));
      return;
    }
    viewSignin();
    return;
  }
  switch (parts[0]) {
    case 'submit': viewSubmit(parts[1]); break;
    case 'jobs': parts[1] ? viewJob(parts[1]) : viewJobs(); break;
    case 'objects': viewObjects(); break;
    case 'relief': viewRelief(); break;
    case 'jobshop': viewJobshop(); break;
    case 'vec': viewVec(); break;
    case 'risk': viewRisk(); break;
    default: viewDashboard();
  }
}

/* An address whose %-escapes do not decode names no page. */
function viewBadAddress(hash) {
  const shown = hash.length > 200 ? hash.slice(0, 200) + '…' : hash;
  show(el('section', { class: 'view view-bad-address' }, el('h1', {}, 'Not a valid address'),
    el('p', {}, 'The address ', el('code', { class: 'mono' }, shown),
      ' holds a malformed %-escape, so it names no page here: was the link cut short or mistyped?'),
    el('p', {}, el('a', { href: '#/', class: 'button' }, 'Go to the dashboard'), ' ',
      el('a', { href: '#/jobs', class: 'button' }, 'All jobs'))));
}

/* Puts a view on screen. view: {name, cleanup(), onStats(s), onProgress(msg),
 * reconnect(client)}: a view with reconnect goes on with a new connection as it is
 * (connect()); one without is built anew. */
function show(node, view = {}) {
  view.who = whoKey();
  state.view = view;
  viewRoot().replaceChildren(node);
  const h = node.querySelector('h1');
  if (h) document.title = `${h.textContent} — kiln`;
}

/* Moves focus to the new view's heading after a navigation the user made. */
function focusHeading() {
  const h = viewRoot().querySelector('h1');
  if (h) {
    h.setAttribute('tabindex', '-1');
    h.focus({ preventScroll: true });
  }
}

/* ---- sign-in ---- */

function viewSignin() {
  const input = el('input', { type: 'password', id: 'signin-token', name: 'token', autocomplete: 'current-password',
    required: true, 'aria-describedby': 'signin-help signin-error', spellcheck: 'false' });
  const err = el('p', { id: 'signin-error', class: 'field-error', role: 'alert' }, state.authError || '');
  const authOff = state.welcome && !token();
  const form = el('form', { class: 'card signin', 'aria-label': 'Sign in', novalidate: true },
    el('h1', {}, 'Sign in'),
    el('p', { id: 'signin-help', class: 'muted' }, authOff
      ? `Signed in without a token as tenant “${state.welcome.tenant}” (this server does not require one). Enter a token to act as its tenant instead.`
      : 'Enter an API token (kilnctl token new NAME TENANT ROLE makes one). It is kept for this browser tab only.'),
    el('div', { class: 'field' }, el('label', { for: 'signin-token' }, 'Token'), input),
    err,
    el('div', { class: 'actions' }, el('button', { type: 'submit', class: 'primary', id: 'signin-submit' }, 'Sign in'),
      authOff ? el('a', { href: '#/', class: 'button' }, 'Continue without a token') : null));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = input.value.trim();
    if (!t) {
      err.textContent = 'Enter a token.';
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, t);
    state.authError = '';
    err.textContent = 'Signing in…';
    location.hash = '#/';
    connect();
  });
  show(el('section', { class: 'view view-signin' }, form));
  input.focus();
}

/* ---- dashboard ---- */

function tile(key, label) {
  return el('div', { class: 'tile', 'data-stat': key }, el('span', { class: 'label' }, label), el('span', { class: 'value' }, '—'));
}

function viewDashboard() {
  const tiles = el('div', { class: 'tiles', 'aria-live': 'off' },
    tile('uptime', 'Uptime'), tile('connections', 'Connections'), tile('queued', 'Queued'), tile('running', 'Running'),
    tile('throughput', 'Jobs/s (10 s)'), tile('done', 'Done'), tile('failed', 'Failed / expired'), tile('cache', 'Cache hit rate'),
    tile('memory', 'Memory: used / budget'), tile('store', 'Store: room left'));
  const devices = el('div', { class: 'card table-card devices' }, el('h2', {}, 'Devices and backends'), el('div', { class: 'devices-body' }));
  const queues = el('div', { class: 'card table-card queues' }, el('h2', {}, 'Queues by kind and priority'), el('div', { class: 'queues-body' }));
  const other = el('details', { class: 'card other' }, el('summary', {}, 'All stats fields'), el('pre', { class: 'raw' }));
  const grid = el('div', { class: 'charts' }, charts.throughput.node, charts.queue.node, charts.batch.node, charts.batchHist.node, charts.cache.node);
  const node = el('section', { class: 'view view-dashboard' }, el('h1', {}, 'Dashboard'), tiles, grid, devices, queues, other);
  const recent = [];

  const setTile = (key, text) => {
    const v = node.querySelector(`.tile[data-stat="${key}"] .value`);
    if (v && v.textContent !== text) v.textContent = text;
  };
  const update = (s) => {
    if (!s) return;
    setTile('uptime', fmtDuration(num(s.uptime_s)));
    setTile('connections', fmtNum(num(s.connections)));
    setTile('queued', fmtNum(num(s.queued)));
    setTile('running', fmtNum(num(s.running)));
    const f = s.finished || {};
    setTile('done', fmtNum(num(f.done)));
    setTile('failed', fmtNum((num(f.failed) ?? 0) + (num(f.expired) ?? 0)));
    recent.push([s._t, sumObj(f) ?? 0]);
    while (recent.length > 11) recent.shift();
    if (recent.length > 1) {
      const [t0, n0] = recent[0], [t1, n1] = recent[recent.length - 1];
      setTile('throughput', fmtNum(Math.max(0, n1 - n0) / ((t1 - t0) / 1000 || 1)));
    }
    const c = cacheNumbers(s, state.metrics);
    const lookups = c.hits !== undefined ? c.hits + (c.misses ?? 0) : undefined;
    setTile('cache', lookups === 0 ? `no lookups yet${c.bytes !== undefined ? ' · ' + fmtBytes(c.bytes) : ''}`
      : state.cacheTotalRate !== undefined || c.ratio !== undefined
      ? `${fmtNum(c.ratio !== undefined ? (c.ratio <= 1 ? c.ratio * 100 : c.ratio) : state.cacheTotalRate)} %${c.bytes !== undefined ? ' · ' + fmtBytes(c.bytes) : ''}`
      : '—');
    const mem = memoryNumbers(s, state.metrics);
    setTile('memory', mem.max !== undefined
      ? `${fmtBytes(mem.used ?? 0)} / ${fmtBytes(mem.max)}${mem.waits ? ` · ${fmtNum(mem.waits)} waited` : ''}`
      : '—');
    const st = storeNumbers(s, state.metrics);
    setTile('store', st.room !== undefined ? `${fmtBytes(st.room)}${st.full ? ' · full: new work refused' : ''}` : '—');
    renderDevices(devices.querySelector('.devices-body'), s);
    renderQueues(queues.querySelector('.queues-body'), s);
    other.querySelector('pre').textContent = JSON.stringify(Object.fromEntries(Object.entries(s).filter(([k]) => !k.startsWith('_'))), null, 1);
  };
  show(node, { onStats: update });
  update(state.stats);
  for (const c of Object.values(charts)) c.draw();
}

/* One row per device of stats.backends[].devices (scheduler.c's
 * sched_backends_json): name, backend, model, state, failures, probes, memory and
 * utilisation. Utilisation and memory fall back to /metrics when the push lacks
 * them. Each backend's own facts (CPU threads, the CUDA plugin) go below. */
function renderDevices(box, s) {
  const backends = (Array.isArray(s.backends) ? s.backends : []).filter((b) => b && typeof b === 'object');
  const devices = backends.flatMap((b) => (Array.isArray(b.devices) ? b.devices : []).map((d) => ({ ...d, backend: b.name })));
  if (!devices.length && Array.isArray(s.devices)) devices.push(...s.devices.filter((d) => d && typeof d === 'object'));
  const m = state.metrics;
  const dash = '—';
  const rows = devices.map((d) => {
    const name = String(d.name ?? '?');
    let util = num(d.utilization);
    if (util === undefined && m) util = m.value('kiln_device_utilization_ratio', { device: name });
    const used = num(d.memory_used_bytes) ?? m?.value('kiln_device_memory_used_bytes', { device: name });
    const total = num(d.memory_total_bytes);
    const pct = util !== undefined ? (util <= 1 ? util * 100 : util) : undefined;
    const memory = total ? `${fmtBytes(used ?? 0)} / ${fmtBytes(total)}` : used ? fmtBytes(used) : dash;
    const stateText = d.state === 'in_service' ? 'in service' : d.state === 'out_of_service' ? 'out of service' : (d.state ?? dash);
    return el('tr', { 'data-device': name, 'data-state': d.state ?? '' },
      el('th', { scope: 'row', class: 'mono' }, name),
      el('td', {}, d.backend ?? dash),
      el('td', {}, d.model || dash),
      el('td', {}, el('span', { class: `badge device-${d.state === 'in_service' ? 'up' : 'down'}` }, stateText)),
      el('td', { class: 'num' + (num(d.failures) ? ' nonzero' : '') }, fmtNum(num(d.failures))),
      el('td', { class: 'num' }, fmtNum(num(d.probes))),
      el('td', { class: 'num', title: total ? `${(used ?? 0).toLocaleString('en-US')} of ${total.toLocaleString('en-US')} bytes` : null }, memory),
      el('td', { class: 'util' }, pct !== undefined
        ? [el('meter', { min: 0, max: 100, value: pct.toFixed(1), 'aria-label': `${name} utilisation` }), ` ${pct.toFixed(0)} %`]
        : dash));
  });
  const notes = backends.map((b) => [b.name, b.threads !== undefined ? `${b.threads} threads` : null, b.plugin ? `plugin ${b.plugin}` : null]
    .filter(Boolean).join(' · '));
  const cols = [['device'], ['backend'], ['model'], ['state'], ['failures', 1], ['probes', 1], ['memory used / total', 1], ['utilisation']];
  setChildren(box, rows.length
    ? el('table', { class: 'grid-table devices-table' },
      el('thead', {}, el('tr', {}, cols.map(([h, n]) => el('th', { scope: 'col', class: n ? 'num' : null }, h)))),
      el('tbody', {}, rows))
    : el('p', { class: 'muted' }, 'No devices reported.'),
  notes.length ? el('p', { class: 'muted backends-note' }, notes.join('; ')) : null);
}

function renderQueues(box, s) {
  const q = s.queues && typeof s.queues === 'object' ? s.queues : {};
  const kinds = Object.keys(q);
  if (!kinds.length) {
    box.replaceChildren(el('p', { class: 'muted' }, 'No queues reported.'));
    return;
  }
  const prios = [...new Set([...PRIORITIES, ...kinds.flatMap((k) => Object.keys(q[k] || {}))])].filter((p) => kinds.some((k) => q[k] && p in q[k]));
  box.replaceChildren(el('table', { class: 'grid-table' },
    el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'kind'), prios.map((p) => el('th', { scope: 'col', class: 'num' }, p)))),
    el('tbody', {}, kinds.map((k) => el('tr', {}, el('th', { scope: 'row' }, k),
      prios.map((p) => el('td', { class: 'num' + (num(q[k]?.[p]) ? ' nonzero' : '') }, fmtNum(num(q[k]?.[p])))))))));
}

/* ---- submit ---- */

/* Kinds whose input is a file or an array (a binary part): submitted from their
 * own pages, not from the parameter form. */
const KIND_PAGES = {
  'image.relief': { href: '#/relief', title: 'Relief', input: 'an image (PNG or JPEG)' },
  'sched.jobshop': { href: '#/jobshop', title: 'Schedule', input: 'a job-shop instance' },
  'vec.search': { href: '#/vec', title: 'Search', input: 'query vectors against a stored collection' },
  'risk.score': { href: '#/risk', title: 'Risk', input: 'rows of features (a table or a file)' },
};

function viewSubmit(kind) {
  const kinds = state.welcome.kinds || Object.keys(state.welcome.schemas || {});
  if (!kind || !kinds.includes(kind)) kind = kinds[0];
  const schemas = state.welcome.schemas || {};
  const tabs = el('nav', { class: 'tabs', 'aria-label': 'Job kinds' }, kinds.map((k) =>
    el('a', { href: `#/submit/${encodeURIComponent(k)}`, 'aria-current': k === kind ? 'page' : null }, k)));
  let body;
  const page = KIND_PAGES[kind];
  if (!kind) body = el('p', { class: 'muted' }, 'This server announces no job kinds.');
  else if (page) {
    body = el('div', { class: 'kind-page-link' },
      el('p', {}, `${kind} takes ${page.input}, which this form cannot send. Its own page takes it, submits the job and shows the result.`),
      el('p', {}, el('a', { href: page.href, class: 'button primary' }, `Open the ${page.title} page`)));
  } else if (!schemas[kind]) body = el('p', { class: 'muted' }, `The server sent no parameter schema for ${kind}.`);
  else body = buildForm(kind, schemas[kind], submitJob);
  // submitJob takes state.client when it runs: the form goes on with a new connection.
  show(el('section', { class: 'view view-submit' }, el('h1', {}, 'Submit a job'), tabs, el('div', { class: 'card' }, body)),
    { name: 'submit', reconnect() {} });
}

async function submitJob({ kind, params, priority, cache }) {
  const acc = await state.client.request({ op: 'submit', kind, params, priority, cache, watch: true });
  addJob({ job: acc.job, kind, state: acc.state, submitted: new Date().toISOString(), pct: acc.state === 'done' ? 100 : 0 }, true);
  return el('span', {}, `Job ${shortId(acc.job)} accepted${acc.cached ? ' (from the cache)' : ''} — `,
    el('a', { href: `#/jobs/${acc.job}`, class: 'job-link' }, 'open its page'), ' or ', el('a', { href: '#/jobs' }, 'see all jobs'), '.');
}

/* ---- jobs list ---- */

function shortId(id) {
  return '…' + String(id).slice(-8);
}

function addJob(j, front) {
  const known = state.jobs.get(j.job);
  if (known) {
    if (!FINAL.has(known.state) || FINAL.has(j.state)) known.state = j.state;
    known.kind = j.kind;
    known.submitted = j.submitted ?? known.submitted;
    if (FINAL.has(known.state)) known.pct = 100;
  } else {
    state.jobs.set(j.job, { pct: FINAL.has(j.state) ? 100 : 0, ...j });
  }
  if (!state.jobOrder.includes(j.job)) {
    if (front) state.jobOrder.unshift(j.job);
    else state.jobOrder.push(j.job);
  }
}

function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleTimeString([], { hour12: false }) + (Date.now() - d > 86400000 ? ' ' + d.toLocaleDateString() : '');
}

/* A row of the jobs list. It is updated in place (refresh), never replaced, so
 * that a focused link or button in it keeps the focus. */
function jobRow(id) {
  const j = state.jobs.get(id);
  const progress = el('progress', { max: 100, value: 0, 'aria-label': `progress of job ${shortId(id)}` });
  const pct = el('span', { class: 'pct' });
  const badge = el('span', {});
  const when = el('td', {});
  const cancel = el('button', { type: 'button', class: 'small', 'aria-label': `Cancel job ${shortId(id)}`,
    onclick: async () => {
      cancel.disabled = true;
      try {
        const r = await state.client.request({ op: 'cancel', job: id });
        if (r.state) {
          j.state = r.state;
          updateJobRow(id);
        }
      } catch (e) {
        flash(`Cancel failed: ${e.message}`);
        cancel.disabled = FINAL.has(j.state);
      }
    } }, 'Cancel');
  const kind = el('td', {});
  const row = el('tr', { 'data-job-row': id },
    el('td', {}, el('a', { href: `#/jobs/${id}`, class: 'mono', title: id, 'aria-label': `job ${id}` }, shortId(id))),
    kind,
    el('td', {}, badge),
    el('td', {}, el('div', { class: 'progress-cell' }, progress, pct)),
    when,
    el('td', {}, cancel));
  row.refresh = () => {
    row.dataset.state = j.state;
    kind.textContent = j.kind;
    badge.className = `badge state-${j.state}`;
    badge.textContent = j.state;
    progress.value = j.pct ?? 0;
    pct.textContent = `${j.pct ?? 0} %`;
    when.textContent = fmtTime(j.submitted);
    if (FINAL.has(j.state)) cancel.disabled = true;
  };
  row.refresh();
  return row;
}

function updateJobRow(id) {
  document.querySelector(`tr[data-job-row="${CSS.escape(id)}"]`)?.refresh?.();
}

/* Watches the unfinished jobs of a list so that progress and done arrive. */
function watchUnfinished(ids) {
  for (const id of ids) {
    const j = state.jobs.get(id);
    if (!j || FINAL.has(j.state) || j.watched) continue;
    j.watched = true;
    state.client.request({ op: 'watch', job: id }).catch(() => {});
    state.client.request({ op: 'status', job: id }).then((st) => {
      if (typeof st.pct === 'number' && !FINAL.has(j.state)) j.pct = st.pct;
      if (st.state) j.state = FINAL.has(j.state) ? j.state : st.state;
      updateJobRow(id);
    }).catch(() => {});
  }
}

function viewJobs() {
  const f = state.listFilter;
  const kinds = state.welcome.kinds || [];
  const stateSel = el('select', { id: 'filter-state', 'aria-label': 'Filter by state' },
    el('option', { value: '' }, 'any state'), ['queued', 'running', 'done', 'failed', 'cancelled', 'expired'].map((s) => el('option', { value: s, selected: f.state === s }, s)));
  const kindSel = el('select', { id: 'filter-kind', 'aria-label': 'Filter by kind' },
    el('option', { value: '' }, 'any kind'), kinds.map((k) => el('option', { value: k, selected: f.kind === k }, k)));
  const tbody = el('tbody', {});
  const more = el('button', { type: 'button', id: 'jobs-more', hidden: true }, 'Load more');
  const empty = el('p', { class: 'muted', hidden: true }, 'No jobs yet — submit one.');
  const table = el('table', { class: 'grid-table jobs' }, el('caption', { class: 'sr-only' }, 'Jobs, newest first'),
    el('thead', {}, el('tr', {}, ['job', 'kind', 'state', 'progress', 'submitted', ''].map((h) => el('th', { scope: 'col' }, h)))), tbody);

  const visible = () => state.jobOrder.filter((id) => {
    const j = state.jobs.get(id);
    return j && (!f.kind || j.kind === f.kind) && (!f.state || j.state === f.state);
  });
  /* Rows are kept and moved only when their place changes (a moved node loses
   * the focus): the list refreshes every 3 s under a keyboard user. */
  const rows = new Map();
  const redraw = () => {
    const ids = visible();
    const keep = new Set(ids);
    for (const [id, row] of rows) {
      if (!keep.has(id)) {
        row.remove();
        rows.delete(id);
      }
    }
    let at = tbody.firstElementChild;
    for (const id of ids) {
      let row = rows.get(id);
      if (!row) {
        row = jobRow(id);
        rows.set(id, row);
      } else {
        row.refresh();
      }
      if (row === at) at = at.nextElementSibling;
      else tbody.insertBefore(row, at);
    }
    empty.hidden = ids.length > 0;
    more.hidden = !state.listNext;
  };
  /* Loads the first page (or the next one) and merges it in, newest first. The
   * periodic reload of the first page keeps the cursor of the pages loaded
   * beyond it (state.listDeeper, kept across visits as the cursor is). */
  const load = async (after) => {
    const msg = { op: 'list', limit: 25 };
    if (f.state) msg.state = f.state;
    if (f.kind) msg.kind = f.kind;
    if (after) msg.after = after;
    try {
      const r = await state.client.request(msg);
      for (const j of r.jobs || []) addJob(j, false);
      if (after) state.listDeeper = true;
      if (after || !state.listDeeper) state.listNext = r.next;
      const order = new Map(state.jobOrder.map((id, i) => [id, i]));
      // UUIDv7 ids are time-ordered: sort the merged list by id, newest first.
      state.jobOrder.sort((a, b) => (a < b ? 1 : a > b ? -1 : order.get(a) - order.get(b)));
      watchUnfinished((r.jobs || []).map((j) => j.job));
      if (state.view?.name === 'jobs') redraw();
    } catch (e) {
      flash(`Listing jobs failed: ${e.message}`);
    }
  };
  for (const [sel, key] of [[stateSel, 'state'], [kindSel, 'kind']]) {
    sel.addEventListener('change', () => {
      f[key] = sel.value;
      state.listNext = null;
      state.listDeeper = false;
      redraw();
      load();
    });
  }
  more.addEventListener('click', () => load(state.listNext));
  const refresh = setInterval(() => load(), 3000);
  show(el('section', { class: 'view view-jobs' },
    el('div', { class: 'view-head' }, el('h1', {}, 'Jobs'),
      el('div', { class: 'filters' }, stateSel, kindSel, el('a', { href: '#/submit', class: 'button primary' }, 'New job'))),
    el('div', { class: 'card table-card' }, table, empty, more)),
  { name: 'jobs', cleanup: () => clearInterval(refresh) });
  redraw();
  load();
}

/* ---- one job ---- */

function viewJob(id) {
  const head = el('div', { class: 'card job-head' });
  const results = el('div', { class: 'job-results' });
  const node = el('section', { class: 'view view-job' },
    el('div', { class: 'view-head' }, el('h1', {}, `Job ${shortId(id)}`), el('a', { href: '#/jobs', class: 'button' }, '← All jobs')),
    head, results);
  let alive = true, loadingResult = false, kindView = null;
  show(node, {
    name: 'job',
    cleanup: () => {
      alive = false;
      kindView?.destroy();
    },
    onProgress: (msg) => {
      if (msg.job !== id) return;
      const p = head.querySelector('progress');
      if (p) p.value = msg.pct;
      const t = head.querySelector('.pct');
      if (t) t.textContent = `${msg.pct} %`;
    },
  });

  const renderHead = (st, done) => {
    const final = FINAL.has(st.state);
    const rows = [
      ['job', el('span', { class: 'mono' }, id)],
      ['kind', st.kind ?? '—'],
      ['state', el('span', { class: `badge state-${st.state}`, id: 'job-state' }, st.state)],
      ['submitted', fmtTime(st.submitted)],
      ['finished', fmtTime(st.finished)],
    ];
    if (done) {
      if (done.backend) rows.push(['backend', done.backend]);
      if (done.batch !== undefined) rows.push(['batch', String(done.batch)]);
      if (done.ms) rows.push(['time', `queue ${fmtNum(done.ms.queue)} ms · run ${fmtNum(done.ms.run)} ms`]);
      if (done.error) rows.push(['error', el('span', { class: 'error-text' }, `${done.error.code || ''} ${done.error.message || ''}`.trim())]);
    }
    const cancel = !final ? el('button', { type: 'button', onclick: async () => {
      try {
        await state.client.request({ op: 'cancel', job: id });
      } catch (e) {
        flash(`Cancel failed: ${e.message}`);
      }
    } }, 'Cancel job') : null;
    setChildren(head,
      el('dl', { class: 'meta' }, rows.map(([k, v]) => [el('dt', {}, k), el('dd', {}, v)])),
      !final ? el('div', { class: 'progress-cell big' }, el('progress', { max: 100, value: st.pct ?? 0, 'aria-label': 'job progress' }), el('span', { class: 'pct' }, `${st.pct ?? 0} %`)) : null,
      cancel);
  };

  const showResult = async (st) => {
    if (loadingResult) return;
    loadingResult = true;
    if (!results.childElementCount) results.replaceChildren(el('p', { class: 'muted' }, 'Loading the result…'));
    try {
      const res = state.client.results.get(id) || await state.client.result(id);
      if (!alive) return;
      renderHead({ ...st, state: res.done.state, finished: st.finished || new Date().toISOString() }, res.done);
      const j = state.jobs.get(id);
      if (j) {
        j.state = res.done.state;
        j.pct = 100;
      }
      if (res.done.state !== 'done') {
        results.replaceChildren();
        return;
      }
      const parts = [...res.parts.values()];
      // A kind with its own renderer (web_ui/kinds/) shows its parts its way.
      kindView?.destroy();
      kindView = st.kind === 'image.relief' ? reliefResult(res, id)
        : st.kind === 'sched.jobshop' ? jobshopResult(res, id)
          : st.kind === 'vec.search' ? vecResult(res, id)
            : st.kind === 'risk.score' ? riskResult(res, id) : null;
      const own = new Set(kindView ? kindView.parts || ['mesh'] : []);
      const maps = parts.filter((p) => isMap(p) && !own.has(p.name)), others = parts.filter((p) => !isMap(p) && !own.has(p.name));
      setChildren(results,
        el('div', { class: 'card scalars-card' }, scalarTable(res.done.result),
          parts.length ? null : el('p', { class: 'muted' }, 'This job has no array parts.')),
        kindView?.node,
        maps.map((p) => mapViewer(p, id)),
        others.map((p) => partSummary(p, id)));
    } catch (e) {
      if (alive) results.replaceChildren(el('p', { class: 'error-text', role: 'alert' }, `Could not load the result: ${e.message}`));
    } finally {
      loadingResult = false;
    }
  };

  state.client.request({ op: 'status', job: id }).then((st) => {
    if (!alive) return;
    addJob({ job: id, kind: st.kind, state: st.state, submitted: st.submitted }, false);
    renderHead(st);
    if (FINAL.has(st.state)) {
      showResult(st);
    } else {
      // Not finished: the result request answers `ok` now and delivers done + parts later.
      results.replaceChildren(el('p', { class: 'muted' }, 'Waiting for the job to finish…'));
      showResult(st);
    }
  }).catch((e) => {
    if (!alive) return;
    head.replaceChildren(el('p', { class: 'error-text', role: 'alert' }, e.code === 'not_found' ? 'No such job (or it belongs to another tenant, or it was purged).' : `Status failed: ${e.message}`));
  });
}

/* ---- image.relief ---- */

function viewRelief() {
  const v = reliefView({ client: state.client, welcome: state.welcome, flash });
  show(v.node, { name: 'relief', cleanup: v.cleanup, reconnect: v.reconnect });
}

/* ---- sched.jobshop ---- */

function viewJobshop() {
  const v = jobshopView({ client: state.client, welcome: state.welcome, flash });
  show(v.node, { name: 'jobshop', cleanup: v.cleanup, reconnect: v.reconnect });
}

/* ---- vec.search ---- */

function viewVec() {
  const v = vecView({ client: state.client, welcome: state.welcome, flash });
  show(v.node, { name: 'vec', cleanup: v.cleanup, reconnect: v.reconnect });
}

/* ---- risk.score ---- */

function viewRisk() {
  const v = riskView({ client: state.client, welcome: state.welcome, flash });
  show(v.node, { name: 'risk', cleanup: v.cleanup, reconnect: v.reconnect });
}

/* ---- stored objects ---- */

function viewObjects() {
  const v = objectsView({ client: state.client, welcome: state.welcome, flash });
  show(v.node, { name: 'objects', reconnect: v.reconnect, cleanup: v.cleanup });
  v.refresh();
}

/* ---- chrome ---- */

function flash(text) {
  const f = $('#flash');
  f.textContent = text;
  f.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => {
    f.hidden = true;
  }, 6000);
}

window.addEventListener('hashchange', () => {
  route();
  focusHeading();
});
$('#signout').addEventListener('click', signOut);
document.addEventListener('visibilitychange', () => {
  if (!document.hidden) for (const c of Object.values(charts)) c.draw();
});
connect();
pollMetrics();
