// image.relief in the web UI: the Relief page (drop a PNG or JPEG, set the
// parameters from the kind's schema, see the mesh in a 3-D view, download it as
// STL or GLB) and the renderer of an image.relief job's result on its job page.
// The image goes to the server as the binary part `image` (SPEC §1.6); the mesh
// comes back as the part `mesh` and is drawn by mesh3d.js.

import { el, fmtBytes, fmtNum, readNumberFields, saveBlob, setChildren } from '../dom.js';
import { MeshViewer, parseMesh } from '../mesh3d.js';
import { connectionLost, jobResult, lostBeforeAccepted } from '../ws.js';

const KIND = 'image.relief';
const PREVIEW_MAX_TRIANGLES = 3_000_000; // beyond this the mesh is offered for download only
const ACCEPT = ['image/png', 'image/jpeg'];
const FIELDS = ['width_mm', 'base_mm', 'max_height_mm', 'max_side_px', 'tolerance_mm'];

function meshFormat(bytes) {
  return bytes.length >= 4 && bytes[0] === 0x67 && bytes[1] === 0x6c && bytes[2] === 0x54 && bytes[3] === 0x46 ? 'glb' : 'stl';
}

function saveAs(bytes, name) {
  saveBlob(new Blob([bytes], { type: name.endsWith('.glb') ? 'model/gltf-binary' : 'model/stl' }), name);
}

/* The 3-D view of a mesh file's bytes: {node, destroy}. */
function meshView(bytes, label) {
  const hint = el('p', { class: 'muted relief-hint' }, 'Drag to turn, scroll or pinch to zoom, double-click to reset; ',
    'arrow keys and + / − when the view has focus.');
  let mesh;
  try {
    mesh = parseMesh(bytes);
  } catch (e) {
    return { node: el('p', { class: 'error-text' }, `The mesh could not be read: ${e.message}`), destroy() {} };
  }
  if (mesh.triangles > PREVIEW_MAX_TRIANGLES) {
    return { node: el('p', { class: 'muted' }, `${fmtNum(mesh.triangles)} triangles: too many to preview here; download the file.`),
      destroy() {} };
  }
  const canvas = el('canvas', { class: 'relief-canvas', tabindex: 0, role: 'img', 'data-triangles': mesh.triangles,
    'aria-label': `${label}: 3-D view of ${fmtNum(mesh.triangles)} triangles, ${fmtNum(mesh.max[0] - mesh.min[0])} × ` +
      `${fmtNum(mesh.max[1] - mesh.min[1])} × ${fmtNum(mesh.max[2] - mesh.min[2])} mm` });
  const node = el('div', { class: 'relief-view' }, canvas, hint);
  let viewer = null;
  try {
    viewer = new MeshViewer(canvas);
    viewer.setMesh(mesh);
  } catch (e) {
    setChildren(node, el('p', { class: 'error-text' }, `No 3-D view: ${e.message}`));
  }
  return { node, destroy: () => viewer?.destroy() };
}

function statsTable(result) {
  const rows = [['triangles', fmtNum(result.triangles)], ['vertices', fmtNum(result.vertices)],
    ['size', `${fmtNum(result.width_mm)} × ${fmtNum(result.depth_mm)} mm`], ['volume', `${fmtNum(result.volume_mm3)} mm³`]];
  return el('dl', { class: 'meta relief-stats' }, rows.map(([k, v]) => [el('dt', {}, k), el('dd', { 'data-stat': k }, v)]));
}

/* The result of an image.relief job (its job page): the 3-D view, the mesh's
 * figures and a download of the file. Returns {node, destroy}. */
export function reliefResult(res, jobId) {
  const part = res.parts.get('mesh');
  if (!part) return { node: el('p', { class: 'muted' }, 'This job has no mesh.'), destroy() {} };
  const bytes = part.data;
  const fmt = meshFormat(bytes);
  const view = meshView(bytes, `relief of job ${jobId}`);
  const name = `relief-${String(jobId).slice(-8)}.${fmt}`;
  const node = el('section', { class: 'card relief-card', 'aria-label': 'the relief mesh' },
    el('h2', {}, 'Mesh'), view.node, statsTable(res.done.result || {}),
    el('div', { class: 'actions' },
      el('button', { type: 'button', class: 'primary', onclick: () => saveAs(bytes, name) },
        `Download ${fmt.toUpperCase()} (${fmtBytes(bytes.length)})`)));
  return { node, destroy: view.destroy };
}

/* One parameter input from the kind's schema entry. */
function paramField(name, spec) {
  const id = `relief-${name}`;
  const input = spec.type === 'bool'
    ? el('input', { type: 'checkbox', id, checked: spec.default === true })
    : el('input', { type: 'number', id, value: spec.default ?? '', min: spec.min, max: spec.max,
      step: spec.type === 'integer' ? 1 : 'any', required: true });
  const err = el('p', { class: 'field-error', id: `${id}-err`, 'aria-live': 'polite' });
  input.setAttribute('aria-describedby', `${id}-help ${id}-err`);
  return { name, input, err, node: el('div', { class: 'field', 'data-field': `params.${name}` },
    el('label', { for: id }, name), input, el('p', { class: 'field-help', id: `${id}-help` }, spec.doc || ''), err) };
}

/* The kind's parameters by name, from welcome.schemas[kind].params. */
function schemaProps(schema) {
  const out = {};
  for (const p of schema?.params || []) out[p.name] = p;
  return out;
}

/* The Relief page: {node, cleanup, reconnect(client)}. ctx: {client, welcome, flash}. */
export function reliefView({ client, welcome, flash }) {
  const props = schemaProps(welcome?.schemas?.[KIND]);
  const fields = FIELDS.map((n) => paramField(n, props[n] || {}));
  const invert = paramField('invert', props.invert || { type: 'bool', default: false });
  const format = el('select', { id: 'relief-format' }, ['stl', 'glb'].map((f) => el('option', { value: f }, f.toUpperCase())));
  const file = el('input', { type: 'file', id: 'relief-file', accept: ACCEPT.join(',') });
  const fileErr = el('p', { class: 'field-error', id: 'relief-file-err', 'aria-live': 'polite' });
  const preview = el('div', { class: 'relief-preview', hidden: true });
  const drop = el('label', { class: 'dropzone', for: 'relief-file' },
    el('span', { class: 'dropzone-text' }, 'Drop a PNG or JPEG image here, or choose one'), file);
  const go = el('button', { type: 'submit', class: 'primary', disabled: true }, 'Make the relief');
  const status = el('p', { class: 'muted relief-status', role: 'status', 'aria-live': 'polite' });
  const result = el('div', { class: 'relief-result' },
    el('p', { class: 'muted' }, 'The relief appears here, in 3-D, when the job is done.'));
  let image = null, view = null, last = null, alive = true;

  const pick = (f) => {
    fileErr.textContent = '';
    if (!f) return;
    if (f.type && !ACCEPT.includes(f.type)) {
      fileErr.textContent = `${f.name} is ${f.type}: choose a PNG or JPEG image.`;
      return;
    }
    image = f;
    // A thumbnail drawn from the file itself (the page's CSP allows no blob: images).
    const thumb = el('canvas', { class: 'relief-thumb', role: 'img', 'aria-label': `the image ${f.name}` });
    setChildren(preview, thumb, el('p', { class: 'muted' }, `${f.name} · ${fmtBytes(f.size)}`));
    preview.hidden = false;
    go.disabled = false;
    createImageBitmap(f).then((bmp) => {
      const k = Math.min(1, 144 / bmp.width, 112 / bmp.height);
      thumb.width = Math.max(1, Math.round(bmp.width * k));
      thumb.height = Math.max(1, Math.round(bmp.height * k));
      const ctx = thumb.getContext('2d');
      ctx.fillStyle = '#fff'; // alpha over white, as the relief composites it
      ctx.fillRect(0, 0, thumb.width, thumb.height);
      ctx.drawImage(bmp, 0, 0, thumb.width, thumb.height);
      bmp.close();
    }, () => thumb.replaceWith(el('p', { class: 'muted' }, 'The browser cannot show this image; the server will say whether it can read it.')));
  };
  file.addEventListener('change', () => pick(file.files[0]));
  drop.addEventListener('dragover', (e) => {
    e.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    pick(e.dataTransfer?.files?.[0]);
  });

  /* The params of the form, or null when a field holds text that is not a number
   * (a number field reads "50e" as '': refused, not taken as the default). */
  const params = (fmt) => {
    const p = { invert: invert.input.checked, format: fmt };
    return readNumberFields(fields, p, status) ? p : null;
  };

  /* Submits the image with these params and waits for the mesh. */
  const run = async (p) => {
    const acc = await client.upload({ op: 'submit', kind: KIND, params: p, watch: true },
      [{ name: 'image', dtype: 'bytes', shape: [image.size], blob: image, bytes: image.size }],
      (f) => { status.textContent = `Sending the image… ${Math.round(f * 100)} %`; });
    status.textContent = `Job …${acc.job.slice(-8)} accepted: making the mesh…`;
    const res = await jobResult(() => client, acc, { alive: () => alive, status });
    if (res.done.state !== 'done') throw new Error(`the job ${res.done.state}: ${res.done.error?.message || ''}`);
    return { job: acc.job, res };
  };

  const showError = (e) => {
    if (connectionLost(e)) {
      status.textContent = lostBeforeAccepted(e);
      return;
    }
    const f = e.field && fields.find((x) => `params.${x.name}` === e.field);
    if (f) {
      f.err.textContent = e.message;
      f.input.setAttribute('aria-invalid', 'true');
    } else if (e.field === 'inputs.image') {
      fileErr.textContent = e.message;
    }
    status.textContent = `Refused: ${e.message}`;
  };

  const downloads = el('div', { class: 'actions relief-downloads' });
  const offer = (fmt) => el('button', { type: 'button', 'data-format': fmt, onclick: async (ev) => {
    const btn = ev.currentTarget;
    const have = last && last.fmt === fmt ? last : last?.other?.[fmt];
    const name = `${(image?.name || 'relief').replace(/\.[^.]*$/, '')}.${fmt}`;
    if (have) {
      saveAs(have.bytes, name);
      return;
    }
    btn.disabled = true;
    btn.textContent = `Preparing ${fmt.toUpperCase()}…`;
    try {
      const { res } = await run({ ...last.params, format: fmt });
      const bytes = res.parts.get('mesh').data;
      last.other = { ...(last.other || {}), [fmt]: { bytes } };
      saveAs(bytes, name);
      status.textContent = `${fmt.toUpperCase()} ready (${fmtBytes(bytes.length)}).`;
    } catch (e) {
      showError(e);
    } finally {
      btn.disabled = false;
      btn.textContent = `Download ${fmt.toUpperCase()}`;
    }
  } }, `Download ${fmt.toUpperCase()}`);

  const form = el('form', { class: 'card relief-form', novalidate: true, onsubmit: async (e) => {
    e.preventDefault();
    if (!image) return;
    const fmt = format.value;
    const p = params(fmt);
    if (!p) return;
    go.disabled = true;
    try {
      const { job, res } = await run(p);
      if (!alive) return;
      const bytes = res.parts.get('mesh').data;
      last = { fmt, bytes, params: p, other: {} };
      view?.destroy();
      view = meshView(bytes, `relief of ${image.name}`);
      setChildren(downloads, offer('stl'), offer('glb'),
        el('a', { href: `#/jobs/${job}`, class: 'button' }, 'Open the job'));
      setChildren(result, view.node, statsTable(res.done.result), downloads);
      status.textContent = `Done: ${fmtNum(res.done.result.triangles)} triangles, ${fmtBytes(bytes.length)} of ` +
        `${fmt.toUpperCase()}, made in ${fmtNum(res.done.ms?.run)} ms on ${res.done.backend || 'the server'}.`;
    } catch (err) {
      if (alive) showError(err);
    } finally {
      go.disabled = !image;
    }
  } },
  el('h2', {}, 'Image'), drop, fileErr, preview,
  el('h2', {}, 'Parameters'),
  el('div', { class: 'relief-fields' }, fields.map((f) => f.node), invert.node,
    el('div', { class: 'field' }, el('label', { for: 'relief-format' }, 'format'), format,
      el('p', { class: 'field-help' }, 'STL in millimetres, GLB (glTF 2.0) in metres'))),
  el('div', { class: 'actions' }, go), status);

  const node = el('section', { class: 'view view-relief' },
    el('div', { class: 'view-head' }, el('h1', {}, 'Relief'),
      el('p', { class: 'muted' }, 'A printable relief or lithophane (closed, manifold) from a picture.')),
    el('div', { class: 'relief-layout' }, form, el('div', { class: 'card relief-out' }, el('h2', {}, 'Mesh'), result)));
  if (!welcome?.kinds?.includes(KIND)) flash?.(`This server does not offer ${KIND}.`);
  return {
    node,
    cleanup: () => {
      alive = false;
      view?.destroy();
    },
    // A new connection (the server restarted): the image, the fields and the mesh stay.
    reconnect: (c) => {
      client = c;
    },
  };
}
