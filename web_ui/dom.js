// Small DOM helpers: no framework, no innerHTML with data (CSP and escaping).

/* el('div', {class: 'x', 'aria-label': 'y', onclick: fn}, child, [children], 'text').
 * Attributes true/false toggle boolean attributes; on* attributes add listeners;
 * null and undefined children are skipped. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
    else if (k === 'checked' || k === 'selected' || k === 'disabled') node[k] = Boolean(v);
    else if (k === 'value' && (tag === 'input' || tag === 'select' || tag === 'textarea')) node.value = v;
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  append(node, children);
  return node;
}

/* Saves `blob` as a file `name`: a blob: URL for one click of a hidden link, given
 * back a minute later (time enough for the browser to take the file). */
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = el('a', { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

/* node.replaceChildren() that skips null/undefined/false (which the DOM would print). */
export function setChildren(node, ...children) {
  node.replaceChildren();
  append(node, children);
}

/* Shows a new answer in `box` (the results of a search, scores): its children are
 * replaced, and a mark of markPrevious() is gone. */
export function showAnswer(box, ...children) {
  box.classList.remove('previous');
  box.dataset.answered = 'true';
  setChildren(box, ...children);
}

/* Marks the answer `box` shows (by showAnswer) as an earlier request's, once a newer
 * one is under way or has failed: `note` first, the rest dimmed (.previous in
 * style.css). Nothing when the box holds no answer or is marked already. */
export function markPrevious(box, note) {
  if (!box.dataset.answered || box.classList.contains('previous')) return;
  box.classList.add('previous');
  box.prepend(el('p', { class: 'previous-note' }, note));
}

function append(node, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(node, c);
    else node.append(c instanceof Node ? c : String(c));
  }
}

/* The values of number fields ({name, input, err, emptyMeans}) into p, an empty
 * field left out (the server's default). Text a number field cannot read ("300e")
 * reads as '' in the browser: such a field is marked, named in status, and false
 * returned (nothing is to be sent). f.emptyMeans says what emptying f asks for
 * ("the default" when unset). */
export function readNumberFields(fields, p, status) {
  const bad = [];
  for (const f of fields) {
    f.err.textContent = '';
    f.input.removeAttribute('aria-invalid');
    if (f.input.validity.badInput) {
      f.err.textContent = `${f.name} is not a number: correct it, or empty the field for ${f.emptyMeans ?? 'the default'}.`;
      f.input.setAttribute('aria-invalid', 'true');
      bad.push(f);
    } else if (f.input.value !== '') {
      p[f.name] = Number(f.input.value);
    }
  }
  if (bad.length) {
    status.textContent = `Not sent: ${bad.map((f) => f.name).join(', ')} ${bad.length === 1 ? 'is' : 'are'} not a number.`;
    bad[0].input.focus();
  }
  return !bad.length;
}

/* A number for people: 3 significant digits, thousands grouped, SI suffix for big ones. */
export function fmtNum(x, digits = 3) {
  if (x === null || x === undefined || Number.isNaN(x)) return '—';
  if (x === Infinity) return '+Inf';
  if (x === -Infinity) return '−Inf';
  const a = Math.abs(x);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return x.toExponential(digits - 1).replace('e+', 'e');
  if (Number.isInteger(x)) return x.toLocaleString('en-US');
  return Number(x.toPrecision(digits)).toLocaleString('en-US', { maximumFractionDigits: 6 });
}

export function fmtBytes(n) {
  if (typeof n !== 'number') return '—';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}

export function fmtDuration(s) {
  if (typeof s !== 'number') return '—';
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  if (d) return `${d}d ${h}h ${m}m`;
  if (h) return `${h}h ${m}m ${sec}s`;
  if (m) return `${m}m ${sec}s`;
  return `${sec}s`;
}
