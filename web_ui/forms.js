// Submit forms generated from a kind's parameter schema (welcome.schemas), and
// client-side validation that mirrors the server's rules (gpu/kinds/params.c):
// required, number / integer, min / max / min_exclusive, choices, string sets,
// nested objects, with the same field names ("params.mass") and sentences.

import { el } from './dom.js';

/* C's printf("%g"): six significant digits, exponent form below 1e-4 and from 1e6. */
export function fmtG(x) {
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return '0';
  let s;
  const p = Number(x.toPrecision(6));
  const e = Math.floor(Math.log10(Math.abs(p)));
  if (e < -4 || e >= 6) {
    const [m, ex] = p.toExponential(5).split('e');
    const mant = m.includes('.') ? m.replace(/0+$/, '').replace(/\.$/, '') : m;
    const n = Number(ex);
    s = `${mant}e${n < 0 ? '-' : '+'}${String(Math.abs(n)).padStart(2, '0')}`;
  } else {
    s = p.toFixed(Math.max(0, 5 - e));
    if (s.includes('.')) s = s.replace(/0+$/, '').replace(/\.$/, '');
  }
  return s;
}

const NUMBER_RE = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

function hasMin(p) {
  return typeof p.min === 'number' && Number.isFinite(p.min);
}
function hasMax(p) {
  return typeof p.max === 'number' && Number.isFinite(p.max);
}

/* The server's bounds sentence for a value out of range, or null when in range. */
function boundsError(p, d, field) {
  const lo = hasMin(p), hi = hasMax(p);
  const low = lo && (p.min_exclusive ? d <= p.min : d < p.min);
  const high = hi && d > p.max;
  if (!low && !high) return null;
  if (lo && hi) {
    return p.min_exclusive
      ? `${field} must be greater than ${fmtG(p.min)} and at most ${fmtG(p.max)}`
      : `${field} must be between ${fmtG(p.min)} and ${fmtG(p.max)}`;
  }
  if (lo) return p.min_exclusive ? `${field} must be greater than ${fmtG(p.min)}` : `${field} must be at least ${fmtG(p.min)}`;
  return `${field} must be at most ${fmtG(p.max)}`;
}

/* A short human range, e.g. "1e+08 – 1e+17" or "> 0, ≤ 1e+06". */
function rangeText(p) {
  const lo = hasMin(p), hi = hasMax(p);
  if (lo && hi && !p.min_exclusive) return `${fmtG(p.min)} – ${fmtG(p.max)}`;
  const bits = [];
  if (lo) bits.push(`${p.min_exclusive ? '>' : '≥'} ${fmtG(p.min)}`);
  if (hi) bits.push(`≤ ${fmtG(p.max)}`);
  return bits.join(', ');
}

/* Validates one raw form value of parameter p. Returns {value} (undefined = omit) or {error}. */
export function validateValue(p, raw, field) {
  switch (p.type) {
    case 'number':
    case 'integer': {
      const s = String(raw ?? '').trim();
      if (s === '') return { value: undefined };
      if (!NUMBER_RE.test(s)) return { error: `${field} must be ${p.type === 'integer' ? 'an integer' : 'a number'}` };
      const d = Number(s);
      if (!Number.isFinite(d)) return { error: `${field} must be a finite number` };
      if (p.type === 'integer' && !Number.isInteger(d)) return { error: `${field} must be an integer` };
      const b = boundsError(p, d, field);
      if (b) return { error: b };
      return { value: d };
    }
    case 'bool':
      return { value: Boolean(raw) };
    case 'string': {
      const s = String(raw ?? '');
      if (s === '') return { value: undefined };
      if (p.choices && !p.choices.includes(s)) return { error: `${field} must be one of ${p.choices.join(', ')}` };
      return { value: s };
    }
    case 'string_set': {
      const list = Array.isArray(raw) ? raw : String(raw ?? '').split(',').map((x) => x.trim()).filter(Boolean);
      for (let i = 0; i < list.length; i++) {
        if (p.choices && !p.choices.includes(list[i])) {
          return { error: `${field}[${i}] must be one of ${p.choices.join(', ')}` };
        }
      }
      const uniq = [...new Set(list)];
      if (uniq.length === 0) {
        return { error: p.choices ? `${field} must name at least one of ${p.choices.join(', ')}` : `${field} must name at least one string` };
      }
      return { value: p.choices ? p.choices.filter((c) => uniq.includes(c)) : uniq };
    }
    default:
      return { error: `${field} has an unknown type in the schema` };
  }
}

/* Rules the schema cannot state, mirrored from the kinds' finish() hooks:
 * a source plane behind the lens (lens.nfw, lens.raytrace and any kind with both). */
function crossFieldErrors(schema, params) {
  const errors = [];
  const byName = Object.fromEntries(schema.map((p) => [p.name, p]));
  if (byName.z_lens && byName.z_source) {
    const zl = params.z_lens ?? byName.z_lens.default;
    const zs = params.z_source ?? byName.z_source.default;
    if (typeof zl === 'number' && typeof zs === 'number' && !(zs > zl)) {
      errors.push({ field: 'params.z_source', message: `params.z_source must be greater than z_lens (${fmtG(zl)})` });
    }
  }
  return errors;
}

function fieldId(kind, path) {
  return 'f-' + (kind + '-' + path).replace(/[^A-Za-z0-9_-]/g, '_');
}

/* Builds the inputs of one schema level into `parent`; returns the readers:
 * [{param, field, read(), input, errorEl}] (objects nest their own readers). */
function buildFields(kind, schema, prefix, parent) {
  const readers = [];
  for (const p of schema) {
    const field = `${prefix}.${p.name}`;
    const id = fieldId(kind, field);
    const errId = id + '-err', helpId = id + '-help';
    const help = [p.doc, rangeText(p), p.default !== undefined ? `default ${JSON.stringify(p.default)}` : '']
      .filter(Boolean).join(' · ');
    const errorEl = el('p', { class: 'field-error', id: errId, 'aria-live': 'polite' });
    const helpEl = el('p', { class: 'field-help', id: helpId }, help);
    const reader = { param: p, field, errorEl };

    if (p.type === 'object') {
      const fs = el('fieldset', { class: 'field field-object', 'data-field': field },
        el('legend', {}, p.name + (p.required ? ' *' : '')), helpEl);
      reader.children = buildFields(kind, p.fields || [], field, fs);
      fs.append(errorEl);
      parent.append(fs);
      readers.push(reader);
      continue;
    }
    if (p.type === 'string_set' && p.choices) {
      const def = Array.isArray(p.default) ? p.default : [];
      const boxes = p.choices.map((c) => el('input', { type: 'checkbox', name: field, value: c, id: `${id}-${c}`, checked: def.includes(c) }));
      const fs = el('fieldset', { class: 'field field-set', 'data-field': field, 'aria-describedby': `${helpId} ${errId}` },
        el('legend', {}, p.name + (p.required ? ' *' : '')),
        el('div', { class: 'choices' }, boxes.map((b) => el('label', { class: 'choice', for: b.id }, b, ' ', b.value))),
        helpEl, errorEl);
      reader.input = boxes[0];
      reader.inputs = boxes;
      reader.read = () => boxes.filter((b) => b.checked).map((b) => b.value);
      parent.append(fs);
      readers.push(reader);
      continue;
    }
    let input;
    if (p.type === 'bool') {
      input = el('input', { type: 'checkbox', id, name: field, checked: p.default === true });
      reader.read = () => input.checked;
    } else if (p.type === 'string' && p.choices) {
      const opts = p.choices.map((c) => el('option', { value: c, selected: c === p.default }, c));
      if (p.default === undefined) opts.unshift(el('option', { value: '' }, p.required ? '— choose —' : '(none)'));
      input = el('select', { id, name: field }, opts);
      reader.read = () => input.value;
    } else {
      const numeric = p.type === 'number' || p.type === 'integer';
      input = el('input', {
        type: 'text', id, name: field, autocomplete: 'off', spellcheck: 'false',
        inputmode: numeric ? (p.type === 'integer' ? 'numeric' : 'decimal') : 'text',
        placeholder: p.default !== undefined ? String(Array.isArray(p.default) ? p.default.join(',') : p.default) : (p.required ? 'required' : ''),
      });
      if (p.required) input.setAttribute('aria-required', 'true');
      reader.read = () => input.value;
    }
    input.setAttribute('aria-describedby', `${helpId} ${errId}`);
    reader.input = input;
    const label = el('label', { for: id }, p.name, p.required ? el('span', { class: 'req', 'aria-hidden': 'true' }, ' *') : null);
    parent.append(el('div', { class: 'field' + (p.type === 'bool' ? ' field-bool' : ''), 'data-field': field }, label, input, helpEl, errorEl));
    readers.push(reader);
  }
  return readers;
}

/* Reads and validates a reader tree into a params object; pushes errors. */
function collect(readers, errors) {
  const out = {};
  for (const r of readers) {
    const p = r.param;
    if (p.type === 'object') {
      const sub = collect(r.children, errors);
      if (Object.keys(sub).length || p.required) {
        if (!Object.keys(sub).length && p.required) {
          // Let the nested required fields speak (the server names the inner field).
          for (const c of r.children) {
            if (c.param.required) errors.push({ field: c.field, message: `${c.field} is required` });
          }
        }
        out[p.name] = sub;
      }
      continue;
    }
    const raw = r.read();
    const res = validateValue(p, raw, r.field);
    if (res.error) {
      errors.push({ field: res.error.match(/^(\S+?)(\[\d+\])? /)?.[1] || r.field, message: res.error });
      continue;
    }
    if (res.value === undefined) {
      if (p.required) errors.push({ field: r.field, message: `${r.field} is required` });
      continue;
    }
    out[p.name] = res.value;
  }
  return out;
}

function flatten(readers, acc = []) {
  for (const r of readers) {
    acc.push(r);
    if (r.children) flatten(r.children, acc);
  }
  return acc;
}

/* Validates a params object (not form values) against a schema, as the server does;
 * returns a list of {field, message}. Used by tests and by the form. */
export function validateParams(schema, params, prefix = 'params') {
  const errors = [];
  for (const key of Object.keys(params || {})) {
    if (!schema.some((p) => p.name === key)) errors.push({ field: `${prefix}.${key}`, message: `${prefix}.${key} is not a parameter` });
  }
  for (const p of schema) {
    const field = `${prefix}.${p.name}`;
    const v = params ? params[p.name] : undefined;
    if (v === undefined) {
      if (p.required) errors.push({ field, message: `${field} is required` });
      continue;
    }
    if (p.type === 'object') {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) errors.push({ field, message: `${field} must be an object` });
      else errors.push(...validateParams(p.fields || [], v, field));
      continue;
    }
    if ((p.type === 'number' || p.type === 'integer') && typeof v !== 'number') {
      errors.push({ field, message: `${field} must be ${p.type === 'integer' ? 'an integer' : 'a number'}` });
      continue;
    }
    const res = validateValue(p, p.type === 'number' || p.type === 'integer' ? String(v) : v, field);
    if (res.error) errors.push({ field, message: res.error });
  }
  if (prefix === 'params') errors.push(...crossFieldErrors(schema, params || {}));
  return errors;
}

/* The submit form of one kind. onSubmit({kind, params, priority, cache}) returns a
 * promise; a rejection carrying .field (a server error) is shown on that field. */
export function buildForm(kind, kindSchema, onSubmit) {
  const schema = kindSchema.params || [];
  const summary = el('div', { class: 'form-summary', role: 'alert', 'aria-live': 'assertive' });
  const fieldsBox = el('div', { class: 'fields' });
  const readers = buildFields(kind, schema, 'params', fieldsBox);
  const all = flatten(readers);

  const prio = el('select', { id: fieldId(kind, 'priority'), name: 'priority' },
    ['critical', 'high', 'normal', 'low', 'batch'].map((p) => el('option', { value: p, selected: p === 'normal' }, p)));
  const cache = el('input', { type: 'checkbox', id: fieldId(kind, 'cache'), name: 'cache', checked: true });
  const submit = el('button', { type: 'submit', class: 'primary', id: 'submit-' + fieldId(kind, 'job') }, `Submit ${kind}`);
  const status = el('div', { class: 'form-status', role: 'status', 'aria-live': 'polite' });

  const form = el('form', { class: 'job-form', novalidate: true, 'aria-label': `Submit a ${kind} job`, 'data-kind': kind },
    el('p', { class: 'kind-doc' }, kindSchema.doc || ''),
    summary,
    fieldsBox,
    el('fieldset', { class: 'field-row submit-options' },
      el('legend', {}, 'Job options'),
      el('div', { class: 'field' }, el('label', { for: prio.id }, 'priority'), prio),
      el('div', { class: 'field field-bool' }, el('label', { for: cache.id }, 'use cached result'), cache)),
    el('div', { class: 'actions' }, submit, status));

  function clearErrors() {
    summary.replaceChildren();
    summary.classList.remove('shown');
    for (const r of all) {
      r.errorEl.textContent = '';
      for (const i of r.inputs || (r.input ? [r.input] : [])) i.removeAttribute('aria-invalid');
    }
  }

  function showErrors(errors) {
    summary.classList.add('shown');
    summary.append(el('p', {}, errors.length === 1 ? 'Please fix this field:' : `Please fix these ${errors.length} fields:`),
      el('ul', {}, errors.map((e) => el('li', {}, e.message))));
    let first = null;
    for (const e of errors) {
      const r = all.find((x) => x.field === e.field) || all.find((x) => e.field.startsWith(x.field + '['));
      if (!r) continue;
      r.errorEl.textContent = e.message;
      for (const i of r.inputs || (r.input ? [r.input] : [])) i.setAttribute('aria-invalid', 'true');
      if (!first && r.input) first = r.input;
    }
    (first || summary).focus?.();
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors();
    status.textContent = '';
    const errors = [];
    const params = collect(readers, errors);
    if (!errors.length) errors.push(...crossFieldErrors(schema, params));
    if (errors.length) {
      showErrors(errors);
      return;
    }
    submit.disabled = true;
    status.textContent = 'Submitting…';
    try {
      const node = await onSubmit({ kind, params, priority: prio.value, cache: cache.checked });
      status.replaceChildren(node || 'Submitted.');
    } catch (e) {
      status.textContent = '';
      // Only an answer naming one of the form's fields is the user's to fix; any
      // other (not connected, forbidden, queue full) is said as it is.
      if (e.field && all.some((x) => x.field === e.field || e.field.startsWith(x.field + '['))) {
        showErrors([{ field: e.field, message: e.message }]);
      } else {
        status.textContent = `Not submitted: ${e.message}`;
      }
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}
