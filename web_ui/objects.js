// The Objects page: the tenant's stored models (risk.score) and vector collections
// (vec.search), SPEC §2.4. Lists from model.list and vec.list; upload forms that
// send the file as a binary part (model: the XGBoost JSON as bytes; collection: the
// rows of a float32 .npy) ahead of model.put / vec.put; delete and drop buttons that
// ask for a second click. Server errors are shown on the field they name.

import { el, fmtBytes, fmtNum } from './dom.js';
import { readVectorsNpy } from './npy.js';

const METRICS = ['cosine', 'ip', 'l2'];
const ID_MAX = 256;
const ROLE_RANK = { read: 0, submit: 1, writer: 2, admin: 3 };
const MSG_ROOM = 1024; // bytes of a vec.put message kept for all but its ids

/* The ids of a text: one per line (\n or \r\n), blank lines at the end ignored.
 * Returns {ids} or {error} naming the line. */
export function parseIds(text) {
  const lines = text.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  while (lines.length && lines[lines.length - 1] === '') lines.pop();
  const enc = new TextEncoder();
  for (let i = 0; i < lines.length; i++) {
    const n = enc.encode(lines[i]).length;
    if (n === 0) return { error: `line ${i + 1} is empty (ids are 1 to ${ID_MAX} bytes)` };
    if (n > ID_MAX) return { error: `line ${i + 1}: the id is ${n} bytes long, over ${ID_MAX}` };
  }
  return { ids: lines };
}

/* Splits ids into runs whose JSON fits in one message of maxMessage bytes beside
 * the rest of a vec.put: [[from, to], ...]. */
export function idBatches(ids, maxMessage, collection) {
  const enc = new TextEncoder();
  const budget = Math.max(maxMessage - MSG_ROOM - 6 * collection.length, Math.floor(maxMessage / 2));
  const out = [];
  let from = 0, used = 0;
  for (let i = 0; i < ids.length; i++) {
    const cost = enc.encode(JSON.stringify(ids[i])).length + 1;
    if (i > from && used + cost > budget) {
      out.push([from, i]);
      from = i;
      used = 0;
    }
    used += cost;
  }
  if (from < ids.length) out.push([from, ids.length]);
  return out;
}

/* A form field: label, input, help and error lines; errors by SPEC field name. */
function field(id, label, input, help) {
  const err = el('p', { class: 'field-error', id: `${id}-err`, 'aria-live': 'polite' });
  input.id = id;
  input.setAttribute('aria-describedby', `${id}-help ${id}-err`);
  return {
    input,
    err,
    node: el('div', { class: 'field', 'data-field': id }, el('label', { for: id }, label), input,
      el('p', { class: 'field-help', id: `${id}-help` }, help || ''), err),
  };
}

/* Form plumbing shared by both upload forms: a summary, per-field errors, a status. */
function formKit(fields) {
  const summary = el('div', { class: 'form-summary', role: 'alert', 'aria-live': 'assertive' });
  const status = el('div', { class: 'form-status', role: 'status', 'aria-live': 'polite' });
  const clear = () => {
    summary.replaceChildren();
    summary.classList.remove('shown');
    status.textContent = '';
    for (const f of Object.values(fields)) {
      f.err.textContent = '';
      f.input.removeAttribute('aria-invalid');
    }
  };
  /* errors: [{key (a field of `fields`, or ''), message}] */
  const show = (errors) => {
    summary.classList.add('shown');
    summary.append(el('p', {}, errors.length === 1 ? 'Please fix this:' : `Please fix these ${errors.length} things:`),
      el('ul', {}, errors.map((e) => el('li', {}, e.message))));
    let first = null;
    for (const e of errors) {
      const f = fields[e.key];
      if (!f) continue;
      f.err.textContent = e.message;
      f.input.setAttribute('aria-invalid', 'true');
      first = first || f.input;
    }
    (first || summary).focus?.();
  };
  return { summary, status, clear, show };
}

/* The key of the form field a server error names (SPEC field -> form field). */
function serverKey(e, map) {
  const f = e.field || '';
  for (const [prefix, key] of map) if (f === prefix || f.startsWith(prefix + '.') || f.startsWith(prefix + '[')) return key;
  return '';
}

function serverError(e, map) {
  const text = e.code ? `${e.code}: ${e.message}${e.field ? ` (field ${e.field})` : ''}` : e.message;
  return { key: serverKey(e, map), message: text };
}

/* A button that acts on its second click within 5 s (no blocking dialog). */
function twoStepButton(label, confirmLabel, aria, action) {
  let armed = 0;
  const b = el('button', { type: 'button', class: 'small danger', 'aria-label': aria }, label);
  b.addEventListener('click', async () => {
    if (!armed) {
      b.textContent = confirmLabel;
      b.dataset.armed = 'true';
      armed = setTimeout(() => {
        armed = 0;
        b.textContent = label;
        delete b.dataset.armed;
      }, 5000);
      return;
    }
    clearTimeout(armed);
    armed = 0;
    b.disabled = true;
    try {
      await action();
    } finally {
      b.disabled = false;
      b.textContent = label;
      delete b.dataset.armed;
    }
  });
  return b;
}

function bytesCell(n) {
  return el('td', { class: 'num', title: typeof n === 'number' ? `${n.toLocaleString('en-US')} bytes` : null }, fmtBytes(n));
}

/* Builds the page. ctx: {client, welcome, flash}; ctx.client is read when a request
 * goes out, so that reconnect(client) lets the page go on with a new connection.
 * Returns {node, refresh, reconnect}. */
const POLL_MS = 5000;

export function objectsView(ctx) {
  const { welcome, flash } = ctx;
  const rank = ROLE_RANK[welcome.role] ?? 0;
  const canModels = rank >= ROLE_RANK.admin, canVectors = rank >= ROLE_RANK.writer;
  const maxMessage = welcome.limits?.max_message_bytes || 64 << 20;

  const modelsBody = el('tbody', {});
  const collsBody = el('tbody', {});
  const modelsEmpty = el('p', { class: 'muted', hidden: true }, 'No models yet.');
  const collsEmpty = el('p', { class: 'muted', hidden: true }, 'No collections yet.');
  const head = (cols) => el('thead', {}, el('tr', {}, cols.map(([h, num]) => el('th', { scope: 'col', class: num ? 'num' : null }, h))));
  const modelsTable = el('table', { class: 'grid-table objects-models', 'aria-label': 'Models' },
    head([['name'], ['version', 1], ['trees', 1], ['features', 1], ['bytes', 1], ['']]), modelsBody);
  const collsTable = el('table', { class: 'grid-table objects-collections', 'aria-label': 'Collections' },
    head([['name'], ['version', 1], ['count', 1], ['dim', 1], ['metric'], ['']]), collsBody);

  const known = new Map(); // collection name -> its list entry, for the form's metric
  let shown = null; // what the tables show, as text: a poll that finds the same redraws nothing
  const refresh = async () => {
    try {
      const [m, v] = await Promise.all([ctx.client.request({ op: 'model.list' }), ctx.client.request({ op: 'vec.list' })]);
      const models = [...(m.models || [])].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      const colls = [...(v.collections || [])].map((c) => ({ ...c, name: c.collection ?? c.name }))
        .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      const text = JSON.stringify([models, colls]);
      // Unchanged: the rows stay, and a Delete or Drop half-confirmed on one stays so.
      if (text === shown) return;
      shown = text;
      modelsBody.replaceChildren(...models.map((x) => el('tr', { 'data-model': x.name },
        el('th', { scope: 'row', class: 'mono' }, x.name),
        el('td', { class: 'num' }, fmtNum(x.version)), el('td', { class: 'num' }, fmtNum(x.trees)),
        el('td', { class: 'num' }, fmtNum(x.features)), bytesCell(x.bytes),
        el('td', {}, canModels ? twoStepButton('Delete', 'Confirm delete', `Delete model ${x.name}`, async () => {
          try {
            await ctx.client.request({ op: 'model.delete', name: x.name });
          } catch (e) {
            flash(`Deleting model ${x.name} failed: ${e.message}`);
          }
          await refresh();
        }) : null))));
      collsBody.replaceChildren(...colls.map((x) => el('tr', { 'data-collection': x.name },
        el('th', { scope: 'row', class: 'mono' }, x.name),
        el('td', { class: 'num' }, fmtNum(x.version)), el('td', { class: 'num' }, fmtNum(x.count)),
        el('td', { class: 'num' }, fmtNum(x.dim)), el('td', {}, x.metric ?? '—'),
        el('td', {}, canVectors ? twoStepButton('Drop', 'Confirm drop', `Drop collection ${x.name}`, async () => {
          try {
            await ctx.client.request({ op: 'vec.drop', collection: x.name });
          } catch (e) {
            flash(`Dropping collection ${x.name} failed: ${e.message}`);
          }
          await refresh();
        }) : null))));
      known.clear();
      for (const c of colls) known.set(c.name, c);
      modelsEmpty.hidden = models.length > 0;
      collsEmpty.hidden = colls.length > 0;
    } catch (e) {
      flash(`Listing objects failed: ${e.message}`);
    }
  };

  // Other clients (kilnctl, another tab) put, delete and drop too: the lists are read
  // again every few seconds while the page shows (poll), and on demand.
  const again = el('button', { type: 'button', class: 'small', id: 'objects-refresh', onclick: async () => {
    again.disabled = true;
    try {
      await refresh();
    } finally {
      again.disabled = false;
    }
  } }, 'Refresh');
  const node = el('section', { class: 'view view-objects' },
    el('div', { class: 'view-head' }, el('h1', {}, 'Objects'),
      el('p', { class: 'muted' }, `Models and vector collections of tenant “${welcome.tenant}”.`), again),
    el('div', { class: 'two' },
      el('div', { class: 'card table-card' }, el('h2', {}, 'Models'), modelsTable, modelsEmpty),
      el('div', { class: 'card table-card' }, el('h2', {}, 'Collections'), collsTable, collsEmpty)),
    el('div', { class: 'two' },
      modelForm(ctx, canModels, refresh),
      collectionForm(ctx, canVectors, maxMessage, refresh, (name) => known.get(name))));
  // A new connection (the server restarted): the forms keep what was typed; the lists are read again.
  const reconnect = (c) => {
    ctx.client = c;
    refresh();
  };
  let polling = false;
  const timer = setInterval(async () => {
    if (document.hidden || polling) return;
    polling = true;
    try {
      await refresh();
    } finally {
      polling = false;
    }
  }, POLL_MS);
  const cleanup = () => clearInterval(timer);
  return { node, refresh, reconnect, cleanup };
}

function roleNote(allowed, needs) {
  return allowed ? null : el('p', { class: 'muted role-note' }, `Your role cannot upload here: it needs ${needs}.`);
}

function modelForm(ctx, allowed, refresh) {
  const fields = {
    file: field('model-file', 'XGBoost JSON model', el('input', { type: 'file', name: 'model', accept: '.json,application/json' }),
      'A gbtree model with objective binary:logistic, as XGBoost saves it (save_model("m.json")).'),
    name: field('model-name', 'name', el('input', { type: 'text', name: 'name', autocomplete: 'off', spellcheck: 'false' }),
      'Putting a name that exists stores a new version.'),
  };
  const kit = formKit(fields);
  const submit = el('button', { type: 'submit', class: 'primary', id: 'model-upload', disabled: !allowed }, 'Upload model');
  const form = el('form', { class: 'card object-form', id: 'model-form', novalidate: true, 'aria-label': 'Upload a model' },
    el('h2', {}, 'Upload a model'), roleNote(allowed, 'admin'), kit.summary,
    el('div', { class: 'fields' }, fields.file.node, fields.name.node),
    el('div', { class: 'actions' }, submit, kit.status));
  fields.file.input.addEventListener('change', () => {
    const f = fields.file.input.files[0];
    if (f && !fields.name.input.value) fields.name.input.value = f.name.replace(/\.json$/i, '');
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    kit.clear();
    const file = fields.file.input.files[0], name = fields.name.input.value.trim();
    const errors = [];
    if (!file) errors.push({ key: 'file', message: 'Choose the model file.' });
    else if (!file.size) errors.push({ key: 'file', message: `${file.name} is empty.` });
    if (!name) errors.push({ key: 'name', message: 'name is required.' });
    if (errors.length) {
      kit.show(errors);
      return;
    }
    submit.disabled = true;
    kit.status.textContent = 'Uploading…';
    try {
      const r = await ctx.client.upload({ op: 'model.put', name },
        [{ name: 'model', dtype: 'bytes', shape: [file.size], blob: file, bytes: file.size }],
        (f) => { kit.status.textContent = `Uploading… ${Math.floor(f * 100)} %`; });
      kit.status.textContent = `Stored model ${r.name} version ${r.version}: ${r.trees} trees, ${r.features} features, ${fmtBytes(r.bytes)}.`;
      await refresh();
    } catch (e) {
      kit.status.textContent = '';
      kit.show([serverError(e, [['name', 'name'], ['model', 'file'], ['parts', 'file'], ['learner', 'file']])]);
    } finally {
      submit.disabled = !allowed;
    }
  });
  return form;
}

function collectionForm(ctx, allowed, maxMessage, refresh, lookup) {
  const metric = el('select', { name: 'metric' }, METRICS.map((m) => el('option', { value: m, selected: m === 'cosine' }, m)));
  const fields = {
    name: field('coll-name', 'collection', el('input', { type: 'text', name: 'collection', autocomplete: 'off', spellcheck: 'false' }),
      'A new name creates the collection; an existing one adds or replaces ids.'),
    file: field('coll-file', 'vectors (.npy)', el('input', { type: 'file', name: 'vectors', accept: '.npy' }),
      'float32 array of shape [n][dim], as numpy.save writes it.'),
    ids: field('coll-ids', 'ids', el('textarea', { name: 'ids', rows: 4, spellcheck: 'false', placeholder: 'one id per line' }),
      'n ids, one per line, in the order of the rows; or pick a text file below.'),
    idsFile: field('coll-ids-file', 'ids file', el('input', { type: 'file', name: 'ids-file', accept: '.txt,text/plain' }),
      'Takes the place of the text above when chosen.'),
    metric: field('coll-metric', 'metric', metric, 'Fixed when the collection is created.'),
  };
  const kit = formKit(fields);
  // Adding to a collection that exists: its metric is the one to send.
  fields.name.input.addEventListener('input', () => {
    const c = lookup(fields.name.input.value.trim());
    if (c && METRICS.includes(c.metric)) metric.value = c.metric;
  });
  const submit = el('button', { type: 'submit', class: 'primary', id: 'coll-upload', disabled: !allowed }, 'Upload vectors');
  const form = el('form', { class: 'card object-form', id: 'coll-form', novalidate: true, 'aria-label': 'Upload vectors' },
    el('h2', {}, 'Upload vectors'), roleNote(allowed, 'writer or admin'), kit.summary,
    el('div', { class: 'fields' }, fields.name.node, fields.metric.node, fields.file.node, fields.ids.node, fields.idsFile.node),
    el('div', { class: 'actions' }, submit, kit.status));

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    kit.clear();
    const collection = fields.name.input.value.trim();
    const file = fields.file.input.files[0], idsFile = fields.idsFile.input.files[0];
    const errors = [];
    if (!collection) errors.push({ key: 'name', message: 'collection is required.' });
    let shape = null;
    if (!file) errors.push({ key: 'file', message: 'Choose a .npy file of vectors.' });
    else {
      try {
        shape = await readVectorsNpy(file);
      } catch (e) {
        errors.push({ key: 'file', message: e.message });
      }
    }
    const idsText = idsFile ? await idsFile.text() : fields.ids.input.value;
    const idsKey = idsFile ? 'idsFile' : 'ids';
    const parsed = parseIds(idsText);
    if (parsed.error) errors.push({ key: idsKey, message: `${idsFile ? idsFile.name : 'ids'} ${parsed.error}` });
    else if (!parsed.ids.length) errors.push({ key: idsKey, message: 'Give one id per vector.' });
    else if (shape && parsed.ids.length !== shape.n) {
      errors.push({ key: idsKey, message: `${file.name} holds ${shape.n} vectors but there are ${parsed.ids.length} ids: one id per vector.` });
    }
    if (errors.length) {
      kit.show(errors);
      return;
    }
    submit.disabled = true;
    const ids = parsed.ids, batches = idBatches(ids, maxMessage, collection);
    const errMap = [['collection', 'name'], ['metric', 'metric'], ['ids', idsKey], ['vectors', 'file'], ['parts', 'file']];
    let done = 0;
    try {
      let r;
      for (const [from, to] of batches) {
        const rows = to - from;
        r = await ctx.client.upload({ op: 'vec.put', collection, metric: metric.value, ids: ids.slice(from, to) },
          [{ name: 'vectors', dtype: 'f32', shape: [rows, shape.dim], blob: file, start: shape.dataOffset + from * shape.dim * 4,
            bytes: rows * shape.dim * 4 }],
          (f) => { kit.status.textContent = `Uploading… ${Math.floor(((done + f * rows) / ids.length) * 100)} %`; });
        done += rows;
      }
      kit.status.textContent = `Stored ${fmtNum(ids.length)} vectors: collection ${r.collection} version ${r.version} holds ${fmtNum(r.count)} of dim ${r.dim} (${r.metric}).`;
      await refresh();
    } catch (e) {
      kit.status.textContent = '';
      const err = serverError(e, errMap);
      if (done) err.message = `The first ${fmtNum(done)} vectors were stored; then ${err.message}`;
      kit.show([err]);
      if (done) await refresh();
    } finally {
      submit.disabled = !allowed;
    }
  });
  return form;
}
