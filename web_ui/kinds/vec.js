// vec.search in the web UI: the Search page (the tenant's collections with their
// counts, dims, metrics and versions; a form that searches one of them with pasted
// query vectors, the rows of a float32 .npy file or the vector of a stored id; the
// nearest ids and scores, each id a button that searches from that item) and the
// renderer of a vec.search job's result on its job page.
//
// The queries go to the server as the binary part `queries`, f32[q][dim] (SPEC
// §1.4), or a stored item's id as params.query_id (no part: the server reads the
// vector from the collection version the job runs against); the answer comes back
// as `ids` (in the result) and the part `scores`. There is no op that lists a
// collection's ids, so the id is typed or picked from an earlier answer.
// Collections are made and changed on the Objects page (objects.js).

import { el, fmtNum, markPrevious, setChildren, showAnswer } from '../dom.js';
import { f32RowsPart, npyRowsPicker } from '../npy.js';
import { downloadLink, jsonDownloadLink } from '../render.js';
import { connectionLost, jobResult, lostBeforeAccepted } from '../ws.js';

const KIND = 'vec.search';
const SHOWN = 20;            // queries whose answers are tabled; the rest are counted
const MAX_QUERIES = 10000;   // SPEC §1.4
const MAX_ID_BYTES = 256;    // a stored id's longest (UTF-8 bytes)

/* Query vectors from pasted text: one JSON array of numbers, a JSON array of such
 * arrays, or lines of numbers separated by spaces or commas (one vector a line).
 * Returns {data: Float32Array, n, dim}; throws an Error whose message says what is
 * wrong, naming the line or vector. */
export function parseQueries(text) {
  const t = text.trim();
  if (!t) throw new Error('paste at least one vector');
  let rows;
  if (t.startsWith('[')) {
    let v;
    try {
      v = JSON.parse(t);
    } catch (e) {
      throw new Error(`not JSON: ${e.message}`);
    }
    rows = Array.isArray(v[0]) ? v : [v];
  } else {
    rows = t.split('\n').map((l) => l.trim()).filter(Boolean).map((l) => l.split(/[\s,]+/).filter(Boolean).map(Number));
  }
  const dim = rows[0]?.length || 0;
  if (!dim) throw new Error('the first vector is empty');
  if (rows.length > MAX_QUERIES) throw new Error(`${rows.length} vectors: a search takes at most ${MAX_QUERIES}`);
  const data = new Float32Array(rows.length * dim);
  rows.forEach((r, i) => {
    if (!Array.isArray(r) || r.length !== dim) {
      throw new Error(`vector ${i + 1} has ${Array.isArray(r) ? r.length : 'no'} values; the first has ${dim}`);
    }
    r.forEach((x, j) => {
      const f = typeof x === 'number' ? x : Number.NaN;
      if (!Number.isFinite(f)) throw new Error(`vector ${i + 1}, value ${j + 1} is not a finite number`);
      if (!Number.isFinite(Math.fround(f))) {
        throw new Error(`vector ${i + 1}, value ${j + 1} (${f}) is beyond the float32 range (±3.4e38)`);
      }
      data[i * dim + j] = f;
    });
  });
  return { data, n: rows.length, dim };
}

/* An id as text to show: an id may hold line breaks, tabs and other control
 * characters, which are shown escaped (\n, \r, \t, \u0001) rather than lost. */
export function idText(id) {
  const named = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };
  return String(id).replace(/[\u0000-\u001f\u007f]/g, (c) => named[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/* The scores of a `scores` part as float32 values (its bytes, little-endian). */
function scoresOf(part) {
  const d = part.data;
  return new Float32Array(d.buffer, d.byteOffset, d.byteLength / 4);
}

/* One query's answer: rank, id, score. With onPick, each id is a button that
 * calls onPick(id) (search from that item). */
function answerTable(ids, scores, offset, q, onPick) {
  const idCell = (id) => el('td', { class: 'mono vec-id' }, onPick
    ? el('button', { type: 'button', class: 'vec-from', title: 'Search from this item',
      'aria-label': `Search from ${idText(id)}`, onclick: () => onPick(id) }, idText(id))
    : idText(id));
  return el('table', { class: 'grid-table vec-answer', 'data-query': q, 'aria-label': `nearest neighbours of query ${q + 1}` },
    el('caption', {}, `query ${q + 1}`),
    el('thead', {}, el('tr', {}, el('th', { scope: 'col', class: 'num' }, 'rank'), el('th', { scope: 'col' }, 'id'),
      el('th', { scope: 'col', class: 'num' }, 'score'))),
    el('tbody', {}, ids.map((id, r) => el('tr', {},
      el('td', { class: 'num' }, String(r + 1)), idCell(id),
      el('td', { class: 'num' }, scores ? scores[offset + r].toPrecision(7) : '—')))));
}

/* The answers of a finished job: a table per query (the first SHOWN of them). */
function answers(result, part, jobId, onPick) {
  const ids = Array.isArray(result?.ids) ? result.ids : [];
  const scores = part ? scoresOf(part) : null;
  const k = part?.shape?.[1] ?? (ids[0]?.length || 0);
  const tables = ids.slice(0, SHOWN).map((row, q) => answerTable(row, scores, q * k, q, onPick));
  const more = ids.length > SHOWN ? el('p', { class: 'muted' }, `… and ${fmtNum(ids.length - SHOWN)} more queries ` +
    '(in the downloads below).') : null;
  const links = [part && downloadLink(part, jobId), ids.length && jsonDownloadLink('ids', ids, jobId)].filter(Boolean);
  const downloads = links.length ? el('p', { class: 'downloads' }, links) : null;
  return el('div', { class: 'vec-answers' }, ids.length ? tables : el('p', { class: 'muted' }, 'No ids.'), more, downloads);
}

/* The result of a vec.search job (its job page): the answers and what was searched.
 * Returns {node, destroy, parts}: `parts` names the parts shown here. */
export function vecResult(res, jobId) {
  const r = res.done.result || {};
  const node = el('section', { class: 'card vec-card', 'aria-label': 'nearest neighbours' },
    el('h2', {}, 'Nearest neighbours'),
    el('p', { class: 'muted' }, `${fmtNum(r.count)} vectors searched exactly (collection version ${r.collection_version}); ` +
      'best first, equal scores in id order.'),
    answers(r, res.parts.get('scores'), jobId));
  return { node, destroy() {}, parts: ['scores'] };
}

/* The Search page: {node, cleanup, reconnect(client)}. ctx: {client, welcome, flash}. */
export function vecView({ client, welcome, flash }) {
  const kSpec = (welcome?.schemas?.[KIND]?.params || []).find((p) => p.name === 'k') || {};
  const collections = new Map(); // name -> the vec.list entry
  const body = el('tbody', {});
  const empty = el('p', { class: 'muted', hidden: true }, 'No collections yet: put one on the ',
    el('a', { href: '#/objects' }, 'Objects page'), '.');
  const table = el('table', { class: 'grid-table vec-collections', 'aria-label': 'Collections' },
    el('thead', {}, el('tr', {}, ['name', 'count', 'dim', 'metric', 'version', ''].map((h, i) =>
      el('th', { scope: 'col', class: i >= 1 && i <= 2 || i === 4 ? 'num' : null }, h)))), body);

  const select = el('select', { id: 'vec-collection', required: true });
  const k = el('input', { type: 'number', id: 'vec-k', min: kSpec.min ?? 1, max: kSpec.max ?? 1000, step: 1,
    value: kSpec.default ?? 10, required: true });
  const text = el('textarea', { id: 'vec-queries', rows: 6, spellcheck: false,
    placeholder: '[0.12, -0.5, 0.33, …]  or one vector a line: 0.12 -0.5 0.33 …' });
  const queryId = el('input', { type: 'text', id: 'vec-query-id', autocomplete: 'off', spellcheck: false,
    placeholder: 'an id of the collection' });
  queryId.setAttribute('aria-describedby', 'vec-query-id-help vec-query-id-err');
  const file = el('input', { type: 'file', id: 'vec-file', accept: '.npy' });
  const fileNote = el('p', { class: 'muted vec-file-note' });
  const errs = { collection: el('p', { class: 'field-error', 'aria-live': 'polite' }),
    k: el('p', { class: 'field-error', 'aria-live': 'polite' }),
    queries: el('p', { class: 'field-error', id: 'vec-queries-err', 'aria-live': 'polite' }),
    queryId: el('p', { class: 'field-error', id: 'vec-query-id-err', 'aria-live': 'polite' }) };
  text.setAttribute('aria-describedby', 'vec-queries-help vec-queries-err');
  const go = el('button', { type: 'submit', class: 'primary' }, 'Search');
  const status = el('p', { class: 'muted vec-status', role: 'status', 'aria-live': 'polite' });
  const out = el('div', { class: 'vec-out' }, el('p', { class: 'muted' }, 'The nearest ids appear here.'));
  let alive = true;

  const describe = () => {
    const c = collections.get(select.value);
    setChildren(fileNote, c ? `${c.metric} · dim ${fmtNum(c.dim)} · ${fmtNum(c.count)} vectors · version ${c.version}` : '');
  };
  select.addEventListener('change', describe);

  const refresh = async () => {
    try {
      const v = await client.request({ op: 'vec.list' });
      if (!alive) return;
      const list = [...(v.collections || [])].map((c) => ({ ...c, name: c.collection ?? c.name }))
        .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      const keep = select.value;
      collections.clear();
      for (const c of list) collections.set(c.name, c);
      body.replaceChildren(...list.map((c) => el('tr', { 'data-collection': c.name },
        el('th', { scope: 'row', class: 'mono' }, c.name), el('td', { class: 'num' }, fmtNum(c.count)),
        el('td', { class: 'num' }, fmtNum(c.dim)), el('td', {}, c.metric ?? '—'), el('td', { class: 'num' }, fmtNum(c.version)),
        el('td', {}, el('button', { type: 'button', class: 'small', 'aria-label': `Search ${c.name}`, onclick: () => {
          select.value = c.name;
          describe();
          text.focus();
        } }, 'Search')))));
      select.replaceChildren(...list.map((c) => el('option', { value: c.name }, c.name)));
      if (collections.has(keep)) select.value = keep;
      empty.hidden = list.length > 0;
      describe();
    } catch (e) {
      flash?.(`Listing collections failed: ${e.message}`);
    }
  };

  const queries = npyRowsPicker({
    file, text, error: errs.queries, max: MAX_QUERIES,
    tooMany: (name, n) => `${name} holds ${n} vectors: a search takes at most ${MAX_QUERIES}`,
    picked: (h) => { status.textContent = `${h.file.name}: ${fmtNum(h.n)} queries of dim ${fmtNum(h.dim)}.`; },
  });

  const serverError = (e) => {
    if (connectionLost(e)) {
      status.textContent = lostBeforeAccepted(e, 'the search', 'search again');
      return;
    }
    const where = e.field === 'params.collection' ? 'collection' : e.field === 'params.k' ? 'k'
      : e.field === 'params.query_id' ? 'queryId' : 'queries';
    errs[where].textContent = e.message;
    status.textContent = '';
  };

  /* An id picked from the answers, {id, shown}: the text field shows it escaped
   * (an <input> drops line breaks), the search sends the id itself. Typing in the
   * field forgets it. */
  let picked = null;
  queryId.addEventListener('input', () => { picked = null; });

  /* An id of an answer: search collection `name` from that item. */
  const searchFrom = (name, id) => {
    if (collections.has(name)) select.value = name;
    describe();
    picked = { id, shown: idText(id) };
    queryId.value = picked.shown;
    text.value = '';
    queries.clear();
    form.requestSubmit();
  };

  // Each search asked for takes the next number; an answer to any but the last is dropped
  // (an id of the answers searches while an earlier search is still under way).
  let seq = 0;

  const form = el('form', { class: 'card vec-form', novalidate: true, onsubmit: async (ev) => {
    ev.preventDefault();
    const mine = ++seq;
    const stale = () => !alive || mine !== seq;
    for (const e of Object.values(errs)) e.textContent = '';
    // Until this search is answered, what is on screen is the answer of an earlier one.
    status.textContent = '';
    markPrevious(out, 'These answers are of an earlier search, not of the last one asked for.');
    try {
      let c = collections.get(select.value);
      if (!c) {
        errs.collection.textContent = 'Choose a collection.';
        refresh(); // one made since the list was read shows up
        return;
      }
      const kv = Number(k.value);
      if (!Number.isInteger(kv) || kv < (kSpec.min ?? 1) || kv > (kSpec.max ?? 1000)) {
        errs.k.textContent = `k is a whole number from ${kSpec.min ?? 1} to ${kSpec.max ?? 1000}.`;
        return;
      }
      const qid = picked && queryId.value === picked.shown ? picked.id : queryId.value;
      let part = null;
      if (qid) {
        if (queries.get() || text.value.trim()) {
          errs.queryId.textContent = 'Give query vectors or a stored id, not both: clear one of them.';
          return;
        }
        if (new TextEncoder().encode(qid).length > MAX_ID_BYTES) {
          errs.queryId.textContent = `An id is at most ${MAX_ID_BYTES} bytes long.`;
          return;
        }
      }
      try {
        // With a stored id there is no part: the server reads the item's vector.
        if (!qid && queries.get()) part = f32RowsPart('queries', queries.get());
        else if (!qid) part = f32RowsPart('queries', null, parseQueries(text.value));
      } catch (e) {
        errs.queries.textContent = e.message;
        text.setAttribute('aria-invalid', 'true');
        return;
      }
      text.removeAttribute('aria-invalid');
      if (part && part.shape[1] !== c.dim) {
        // The list may be out of date (another client may have made the collection
        // anew with another dim): read it again before refusing.
        const name = c.name;
        status.textContent = 'Checking the collection…';
        await refresh();
        if (stale()) return;
        status.textContent = '';
        c = collections.get(name);
        if (!c) {
          errs.collection.textContent = `There is no collection ${name} any more: choose another.`;
          return;
        }
        if (part.shape[1] !== c.dim) {
          errs.queries.textContent = `The queries have dim ${part.shape[1]}; ${c.name} holds vectors of dim ${c.dim}.`;
          return;
        }
      }
      go.disabled = true;
      status.textContent = 'Searching…';
      try {
        const params = qid ? { collection: c.name, k: kv, query_id: qid } : { collection: c.name, k: kv };
        const msg = { op: 'submit', kind: KIND, params, watch: true };
        const acc = part ? await client.upload(msg, [part]) : await client.request(msg);
        const res = await jobResult(() => client, acc, { alive: () => alive && !stale(), status });
        if (stale()) return;
        if (res.done.state !== 'done') {
          const err = res.done.error || {};
          if (err.code === 'bad_params') errs[qid ? 'queryId' : 'queries'].textContent = err.message;
          status.textContent = `The search ${res.done.state}${err.message ? ': ' + err.message : ''}.`;
          refresh(); // the collection may have changed under the search
          return;
        }
        const r = res.done.result;
        const from = qid ? [' from ', el('span', { class: 'mono' }, idText(qid))] : [];
        showAnswer(out, el('p', { class: 'muted' }, `${fmtNum(r.count)} vectors of ${c.name} (version ${r.collection_version}) ` +
          'searched exactly', from, ` in ${fmtNum(res.done.ms?.run)} ms on ${res.done.backend || 'the server'}` +
          `${acc.cached ? ' (from the cache)' : ''}. `,
          el('a', { href: `#/jobs/${acc.job}` }, 'Open the job')), answers(r, res.parts.get('scores'), acc.job, (id) => searchFrom(c.name, id)));
        status.textContent = `Done: ${fmtNum(r.ids.length)} ${r.ids.length === 1 ? 'query' : 'queries'}, ` +
          `${fmtNum(r.ids[0]?.length ?? 0)} neighbours each.`;
        // Another client changed the collection since the list was read: read it again.
        if (r.collection_version !== c.version || r.count !== c.count) refresh();
      } catch (e) {
        if (stale()) return;
        serverError(e);
        refresh(); // a refusal (no such collection, another dim) may mean the list is out of date
      }
    } finally {
      if (mine === seq) go.disabled = false;
    }
  } },
  el('h2', {}, 'Search'),
  el('div', { class: 'vec-fields' },
    el('div', { class: 'field', 'data-field': 'params.collection' }, el('label', { for: 'vec-collection' }, 'collection'), select,
      fileNote, errs.collection),
    el('div', { class: 'field', 'data-field': 'params.k' }, el('label', { for: 'vec-k' }, 'k'), k,
      el('p', { class: 'field-help' }, kSpec.doc || 'neighbours per query'), errs.k)),
  el('div', { class: 'field', 'data-field': 'inputs.queries' }, el('label', { for: 'vec-queries' }, 'queries'), text,
    el('p', { class: 'field-help', id: 'vec-queries-help' },
      'One vector as a JSON array, several as an array of arrays or one a line; or the rows of a float32 .npy file.'),
    errs.queries),
  el('div', { class: 'field', 'data-field': 'params.query_id' }, el('label', { for: 'vec-query-id' }, 'or a stored id'), queryId,
    el('p', { class: 'field-help', id: 'vec-query-id-help' },
      'The vector of a stored item as the query, instead of pasted ones: type its id, or pick an id in the answers ',
      'below. The item itself usually comes first.'),
    errs.queryId),
  el('div', { class: 'actions' }, el('label', { for: 'vec-file', class: 'button small' }, 'Queries from a .npy file…'), file,
    go),
  status);

  const node = el('section', { class: 'view view-vec' },
    el('div', { class: 'view-head' }, el('h1', {}, 'Search'),
      el('p', { class: 'muted' }, 'Exact nearest neighbours in a stored collection: every vector scored, ties in id order.')),
    el('div', { class: 'vec-layout' },
      el('div', { class: 'card table-card' }, el('h2', {}, 'Collections'), table, empty,
        el('div', { class: 'actions' }, el('button', { type: 'button', class: 'small', onclick: refresh }, 'Refresh'),
          el('a', { href: '#/objects', class: 'button small' }, 'Put or drop collections…'))),
      form),
    el('div', { class: 'card vec-results', 'aria-label': 'search results' }, el('h2', {}, 'Nearest neighbours'), out));
  if (!welcome?.kinds?.includes(KIND)) flash?.(`This server does not offer ${KIND}.`);
  refresh();
  return {
    node,
    cleanup: () => { alive = false; },
    // A new connection (the server restarted): what was typed and the answers stay; the list is read again.
    reconnect: (c) => {
      client = c;
      refresh();
    },
  };
}
