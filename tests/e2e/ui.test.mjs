// Browser tests of the web UI against the real kilnd, in Debian's chromium driven
// by playwright-core: sign in, live dashboard with its devices table, the generated
// lens.nfw form with its client-side validation, a job watched to the end, the
// rendered map (pixels, hover read-out, keyboard cursor), a .npy download, the
// Objects page (a collection and a model uploaded through its forms as binary
// parts, listed, refused with the server's field, dropped), an address with a
// malformed %-escape answered with a page that says so, and screenshots at
// laptop and tablet sizes (saved under $E2E_ARTEFACTS).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startKilnd } from './kilnd.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTEFACTS = process.env.E2E_ARTEFACTS || join(process.cwd(), 'artefacts');
const TOKEN = 'e2e-operator-token-0123456789';
const LAPTOP = { width: 1366, height: 768 };
const TABLET = { width: 820, height: 1180 };
// As the machine notes require: no sandbox as root, no GPU, no background traffic.
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];

let kilnd, browser, context, page;
const problems = []; // page errors and CSP violations: the test fails on any
const sentFrames = []; // text frames the page sent over its WebSocket
const sentBinary = []; // binary frames the page sent (Buffers)
let pageWs = null; // the page's latest WebSocket

/* A .npy file (format 1.0) of a 2-D array: descr '<f4' or '<f8', row-major. */
function npyBuffer(rows, descr = '<f4') {
  const shape = `(${rows.length}, ${rows[0].length})`;
  let dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  dict += ' '.repeat((64 - ((10 + dict.length + 1) % 64)) % 64) + '\n';
  const size = descr === '<f8' ? 8 : 4;
  const out = Buffer.alloc(10 + dict.length + rows.length * rows[0].length * size);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0], 0);
  out.writeUInt16LE(dict.length, 8);
  out.write(dict, 10, 'latin1');
  let at = 10 + dict.length;
  for (const r of rows) {
    for (const v of r) {
      if (size === 8) out.writeDoubleLE(v, at);
      else out.writeFloatLE(v, at);
      at += size;
    }
  }
  return out;
}

/* An XGBoost JSON model (the layout XGBoost 1.7 writes) of `trees` stumps. */
function xgbModel(trees, features) {
  const tree = (t) => ({
    base_weights: [0, -0.5, 0.5], categories: [], categories_nodes: [], categories_segments: [], categories_sizes: [],
    default_left: [1, 0, 0], id: t, left_children: [1, -1, -1], loss_changes: [1, 0, 0], parents: [2147483647, 0, 0],
    right_children: [2, -1, -1], split_conditions: [0.1 * t, -0.5, 0.5], split_indices: [t % features, 0, 0],
    split_type: [0, 0, 0], sum_hessian: [10, 5, 5],
    tree_param: { num_deleted: '0', num_feature: String(features), num_nodes: '3', size_leaf_vector: '0' },
  });
  return Buffer.from(JSON.stringify({
    learner: {
      attributes: {}, feature_names: [], feature_types: [],
      gradient_booster: { model: { gbtree_model_param: { num_parallel_tree: '1', num_trees: String(trees), size_leaf_vector: '0' },
        tree_info: Array(trees).fill(0), trees: Array.from({ length: trees }, (_, t) => tree(t)) }, name: 'gbtree' },
      learner_model_param: { base_score: '5E-1', boost_from_average: '1', num_class: '0', num_feature: String(features), num_target: '1' },
      objective: { name: 'binary:logistic', reg_loss_param: { scale_pos_weight: '1' } },
    },
    version: [1, 7, 4],
  }));
}

function frameHeader(buf) {
  if (buf.subarray(0, 4).toString('latin1') !== 'KLNB') return null;
  return JSON.parse(buf.subarray(8, 8 + buf.readUInt32LE(4)).toString('utf8'));
}

async function shot(name, viewport) {
  await page.setViewportSize(viewport);
  const tag = viewport === TABLET ? 'tablet' : 'laptop';
  await page.evaluate(() => window.scrollTo(0, 0)); // the sticky top bar stays on top in a full-page shot
  await page.screenshot({ path: join(ARTEFACTS, `${name}-${tag}.png`), fullPage: true });
  // Nothing may stick out sideways at this width.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `${name} overflows horizontally by ${overflow}px at ${viewport.width}px`);
}

describe('kiln web UI (auth required)', () => {
  let jobId;

  before(async () => {
    mkdirSync(ARTEFACTS, { recursive: true });
    // Messages of at most 64 KiB: a bigger upload must go in several frames.
    kilnd = await startKilnd({ tokens: [{ name: 'ops', tenant: 'acme', role: 'admin', token: TOKEN }],
      env: { KILN_SERVER_MAX_MESSAGE_BYTES: '65536' } });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
    context = await browser.newContext({ viewport: LAPTOP, acceptDownloads: true });
    page = await context.newPage();
    page.setDefaultTimeout(15000);
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(`console: ${m.text()}`);
    });
    page.on('websocket', (ws) => {
      pageWs = ws;
      ws.on('framesent', (f) => (typeof f.payload === 'string' ? sentFrames : sentBinary).push(f.payload));
    });
  });

  after(async () => {
    await browser?.close();
    await kilnd?.stop();
  });

  test('an unauthenticated visitor is asked for a token; a wrong one is refused, the right one signs in', async () => {
    await page.goto(kilnd.url + '/');
    const input = page.locator('#signin-token');
    await input.waitFor();
    await shot('signin', LAPTOP);
    await input.fill('not-the-token');
    await page.keyboard.press('Enter');
    await page.locator('#signin-error', { hasText: 'not valid' }).waitFor();
    await page.locator('#signin-token').fill(TOKEN);
    await page.click('#signin-submit');
    await page.locator('h1', { hasText: 'Dashboard' }).waitFor();
    await page.locator('#who', { hasText: 'acme · admin' }).waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('kiln.token')), TOKEN);
    // A reload keeps the session (the token is in session storage).
    await page.reload();
    await page.locator('h1', { hasText: 'Dashboard' }).waitFor();
  });

  test('the dashboard shows live numbers that move with the stats push', async () => {
    const uptime = page.locator('.tile[data-stat="uptime"] .value');
    await page.waitForFunction(() => /\d/.test(document.querySelector('.tile[data-stat="uptime"] .value')?.textContent || ''));
    const first = await uptime.textContent();
    await page.waitForFunction((t) => document.querySelector('.tile[data-stat="uptime"] .value').textContent !== t, first);
    // A second client (another tab: session storage is per tab, so it signs in
    // again) shows up in the connections tile.
    const conns = async () => Number((await page.locator('.tile[data-stat="connections"] .value').textContent()).replace(/\D/g, ''));
    const before = await conns();
    const other = await context.newPage();
    other.setDefaultTimeout(15000);
    await other.goto(kilnd.url + '/');
    await other.locator('#signin-token').fill(TOKEN);
    await other.keyboard.press('Enter');
    await other.locator('h1', { hasText: 'Dashboard' }).waitFor();
    await page.waitForFunction((n) => Number(document.querySelector('.tile[data-stat="connections"] .value').textContent.replace(/\D/g, '')) > n, before);
    assert.ok((await conns()) > before);
    await other.close();
    // The memory budget and the store's room are shown with their units.
    await page.waitForFunction(() => / \/ \d/.test(document.querySelector('.tile[data-stat="memory"] .value')?.textContent || ''));
    await page.waitForFunction(() => /\d.*B/.test(document.querySelector('.tile[data-stat="store"] .value')?.textContent || ''));
    // The queue chart has drawn samples.
    await page.locator('.chart-latest', { hasText: 'queued: 0' }).waitFor();
    await shot('dashboard', LAPTOP);
    await shot('dashboard', TABLET);
    await page.setViewportSize(LAPTOP);
  });

  test('the devices table names its columns and shows the CPU device', async () => {
    await page.click('#nav a[href="#/"]');
    const table = page.locator('.devices table.devices-table');
    await table.waitFor();
    const heads = await table.locator('thead th').allTextContents();
    assert.deepEqual(heads, ['device', 'backend', 'model', 'state', 'failures', 'probes', 'memory used / total', 'utilisation']);
    const cpu = table.locator('tr[data-device="cpu"]');
    await cpu.waitFor();
    const cells = await cpu.locator('th, td').allTextContents();
    assert.equal(cells[0], 'cpu');
    assert.equal(cells[1], 'cpu');
    assert.equal(cells[3], 'in service');
    assert.equal(cells[4], '0', 'no failures');
    assert.match(cells[5], /^\d+$/);
    assert.match(cells[7], /^ ?\d+ %$/, `utilisation as a percentage (got "${cells[7]}")`);
    assert.equal(await table.locator('td', { hasText: '{' }).count(), 0, 'no raw JSON in the table');
    // A 1280-pixel laptop sees the whole table without scrolling it sideways.
    await page.setViewportSize({ width: 1280, height: 800 });
    const sideways = await page.locator('.card.devices').evaluate((c) => c.scrollWidth - c.clientWidth);
    await page.setViewportSize(LAPTOP);
    assert.ok(sideways <= 0, `the devices table scrolls sideways by ${sideways}px at 1280px`);
  });

  test('the lens.nfw form is generated from the schema and validates on the client', async () => {
    await page.click('#nav a[href="#/submit"]');
    const form = page.locator('form[data-kind="lens.nfw"]');
    await form.waitFor();
    for (const name of ['mass', 'concentration', 'z_lens', 'z_source', 'grid_size', 'fov_arcsec', 'h', 'omega_m']) {
      await form.locator(`[name="params.${name}"]`).waitFor();
    }
    assert.equal(await form.locator('input[name="params.maps"]').count(), 7);
    assert.ok(await form.locator('input[name="params.maps"][value="kappa"]').isChecked(), 'the default map is checked');

    const submitsBefore = sentFrames.filter((f) => f.includes('"op":"submit"')).length;
    await form.locator('[name="params.mass"]').fill('1e20');
    await form.locator('[name="params.concentration"]').fill('5');
    await form.locator('button[type="submit"]').click();
    const message = 'params.mass must be between 1e+08 and 1e+17';
    await form.locator('.form-summary', { hasText: message }).waitFor();
    await form.locator('.field[data-field="params.mass"] .field-error', { hasText: message }).waitFor();
    assert.equal(await form.locator('[name="params.mass"]').getAttribute('aria-invalid'), 'true');
    assert.equal(await page.evaluate(() => document.activeElement.name), 'params.mass', 'focus moves to the bad field');
    // Integer and cross-field rules, as the server states them.
    await form.locator('[name="params.mass"]').fill('1e14');
    await form.locator('[name="params.grid_size"]').fill('64.5');
    await form.locator('[name="params.z_lens"]').fill('2');
    await form.locator('[name="params.z_source"]').fill('1');
    await form.locator('button[type="submit"]').click();
    await form.locator('.form-summary', { hasText: 'params.grid_size must be an integer' }).waitFor();
    await form.locator('[name="params.grid_size"]').fill('');
    await form.locator('button[type="submit"]').click();
    await form.locator('.form-summary', { hasText: 'params.z_source must be greater than z_lens (2)' }).waitFor();
    assert.equal(sentFrames.filter((f) => f.includes('"op":"submit"')).length, submitsBefore, 'invalid forms are not sent');
    await shot('form-invalid', LAPTOP);
  });

  test('a valid job is submitted from the keyboard (Tab to the button, Enter)', async () => {
    const form = page.locator('form[data-kind="lens.nfw"]');
    await form.locator('[name="params.z_lens"]').fill('');
    await form.locator('[name="params.z_source"]').fill('');
    await form.locator('[name="params.mass"]').fill('1e14');
    await form.locator('[name="params.concentration"]').fill('5');
    await form.locator('[name="params.grid_size"]').fill('65'); // odd: +Inf on the centre pixel of kappa
    await form.locator('input[name="params.maps"][value="gamma1"]').check();
    await form.locator('input[name="cache"]').focus();
    for (let i = 0; i < 5; i++) {
      if (await page.evaluate(() => document.activeElement?.type === 'submit')) break;
      await page.keyboard.press('Tab');
    }
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Submit lens.nfw');
    await page.keyboard.press('Enter');
    const link = form.locator('.form-status a.job-link');
    await link.waitFor();
    jobId = (await link.getAttribute('href')).split('/').pop();
    assert.match(jobId, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    const sent = JSON.parse(sentFrames.filter((f) => f.includes('"op":"submit"')).pop());
    assert.deepEqual(sent.params, { mass: 1e14, concentration: 5, grid_size: 65, maps: ['kappa', 'gamma1'] });
    await shot('form', LAPTOP);
    await shot('form', TABLET);
    await page.setViewportSize(LAPTOP);
  });

  test('the jobs list shows the job finished with a full progress bar', async () => {
    await page.click('#nav a[href="#/jobs"]');
    const row = page.locator(`tr[data-job-row="${jobId}"]`);
    await row.waitFor();
    await page.locator(`tr[data-job-row="${jobId}"][data-state="done"]`).waitFor();
    assert.equal(await row.locator('progress').getAttribute('value'), '100');
    assert.equal(await row.locator('.badge').textContent(), 'done');
    assert.ok(await row.locator('button', { hasText: 'Cancel' }).isDisabled(), 'a finished job cannot be cancelled');
    await shot('jobs', LAPTOP);
  });

  test('the job page renders the maps as colour images with a hover read-out', async () => {
    await page.locator(`tr[data-job-row="${jobId}"] a`).click();
    const canvas = page.locator('canvas.map[data-part="kappa"]');
    await canvas.waitFor();
    await page.locator('canvas.map[data-part="gamma1"]').waitFor();
    const colours = await page.evaluate(() => {
      const c = document.querySelector('canvas.map[data-part="kappa"]');
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      const seen = new Set();
      let opaque = 0;
      for (let i = 0; i < d.length; i += 4) {
        seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
        if (d[i + 3] === 255) opaque++;
      }
      return { distinct: seen.size, opaque, pixels: c.width * c.height, w: c.width };
    });
    assert.equal(colours.w, 65);
    assert.equal(colours.opaque, colours.pixels, 'every pixel is painted');
    assert.ok(colours.distinct >= 50, `the map has many colours (got ${colours.distinct})`);
    // The scalar table.
    await page.locator('table.scalars th', { hasText: 'r200_kpc' }).waitFor();
    assert.match(await page.locator('table.scalars tr', { hasText: 'kappa_s' }).locator('td').textContent(), /^0\.0\d+/);
    // Hover: the value under the pointer; the centre pixel of an odd grid is +Inf.
    const box = await canvas.boundingBox();
    await page.mouse.move(box.x + box.width * 0.21, box.y + box.height * 0.31);
    const readout = page.locator('.map-card[data-part="kappa"] .readout');
    await page.waitForFunction(() => /row \d+, col \d+: /.test(document.querySelector('.map-card[data-part="kappa"] .readout').textContent));
    assert.match(await readout.textContent(), /^row 20, col 13: \d+\.\d+(e[-+]\d+)?$/);
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await page.locator('.map-card[data-part="kappa"] .readout', { hasText: 'row 32, col 32: +Inf' }).waitFor();
    // Keyboard: the map takes focus and arrow keys move the read-out cursor.
    await canvas.focus();
    await page.keyboard.press('ArrowRight');
    await page.locator('.map-card[data-part="kappa"] .readout', { hasText: /^row 32, col 33: \d/ }).waitFor();
    // A colour bar with numeric ticks.
    assert.ok(await page.locator('.map-card[data-part="kappa"] .tick').count() >= 2);
    await page.mouse.move(box.x + box.width * 0.6, box.y + box.height * 0.45);
    await shot('job', LAPTOP);
    await shot('job', TABLET);
    await page.setViewportSize(LAPTOP);
  });

  test('a part downloads as a valid .npy file', async () => {
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.locator('a[download][data-part="kappa"]').click(),
    ]);
    const job = await page.locator('a[download][data-part="kappa"]').getAttribute('data-job');
    assert.equal(download.suggestedFilename(), `kappa-${job.slice(-8)}.npy`);
    const bytes = readFileSync(await download.path());
    assert.deepEqual([...bytes.subarray(0, 8)], [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
    const hlen = bytes.readUInt16LE(8);
    const header = bytes.subarray(10, 10 + hlen).toString('latin1');
    assert.equal((10 + hlen) % 64, 0, 'the data is 64-byte aligned');
    assert.match(header, /'descr': '<f4'/);
    assert.match(header, /'fortran_order': False/);
    assert.match(header, /'shape': \(65, 65\)/);
    assert.ok(header.endsWith('\n'));
    assert.equal(bytes.length, 10 + hlen + 4 * 65 * 65);
    const centre = bytes.readFloatLE(10 + hlen + 4 * (32 * 65 + 32));
    assert.equal(centre, Infinity, 'the cusp pixel is +Inf');
    const corner = bytes.readFloatLE(10 + hlen);
    assert.ok(corner > 0 && corner < 1, `a corner kappa is a small positive number (${corner})`);
  });

  test('the Objects page checks a collection upload on the client before sending anything', async () => {
    await page.click('#nav a[href="#/objects"]');
    await page.locator('h1', { hasText: 'Objects' }).waitFor();
    const form = page.locator('#coll-form');
    const putsBefore = sentFrames.filter((f) => f.includes('"op":"vec.put"')).length;
    const binaryBefore = sentBinary.length;
    await form.locator('#coll-name').fill('e2e-docs');
    await form.locator('#coll-file').setInputFiles({ name: 'wide.npy', mimeType: 'application/octet-stream',
      buffer: npyBuffer([[1, 2, 3], [4, 5, 6]], '<f8') });
    await form.locator('#coll-ids').fill('a\nb');
    await form.locator('#coll-upload').click();
    await form.locator('#coll-file-err', { hasText: 'wide.npy holds float64' }).waitFor();
    assert.equal(await form.locator('#coll-file').getAttribute('aria-invalid'), 'true');

    await form.locator('#coll-file').setInputFiles({ name: 'five.npy', mimeType: 'application/octet-stream',
      buffer: npyBuffer([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1]]) });
    await form.locator('#coll-upload').click();
    await form.locator('#coll-ids-err', { hasText: 'five.npy holds 5 vectors but there are 2 ids' }).waitFor();
    assert.equal(sentFrames.filter((f) => f.includes('"op":"vec.put"')).length, putsBefore, 'nothing was sent');
    assert.equal(sentBinary.length, binaryBefore, 'no part was sent');
  });

  test('a collection uploaded through the form is sent as a part and listed', async () => {
    const form = page.locator('#coll-form');
    await form.locator('#coll-ids').fill('a\nb\nc\nd\ne\n');
    await form.locator('#coll-metric').selectOption('l2');
    await form.locator('#coll-upload').click();
    const row = page.locator('table.objects-collections tr[data-collection="e2e-docs"]');
    await row.waitFor();
    const cells = await row.locator('th, td').allTextContents();
    assert.deepEqual(cells.slice(0, 5), ['e2e-docs', '1', '5', '3', 'l2']);
    await form.locator('.form-status', { hasText: 'Stored 5 vectors' }).waitFor();
    // On the wire: one KLNB frame with the rows, then vec.put naming it by its ref.
    const put = JSON.parse(sentFrames.filter((f) => f.includes('"op":"vec.put"')).pop());
    assert.deepEqual(put.ids, ['a', 'b', 'c', 'd', 'e']);
    assert.equal(put.metric, 'l2');
    const frame = sentBinary.map((b) => ({ b, h: frameHeader(b) })).filter((x) => x.h && x.h.ref === put.ref);
    assert.equal(frame.length, 1);
    assert.deepEqual(frame[0].h, { ref: put.ref, part: 'vectors', dtype: 'f32', shape: [5, 3] });
    const payload = frame[0].b.subarray(frame[0].b.length - 60);
    assert.deepEqual([0, 1, 2, 3, 4, 5].map((i) => payload.readFloatLE(4 * i)), [1, 0, 0, 0, 1, 0]);
    await shot('objects', LAPTOP);
    await shot('objects', TABLET);
    await page.setViewportSize(LAPTOP);
  });

  test('a server error is shown on the field it names', async () => {
    const form = page.locator('#coll-form');
    await form.locator('#coll-metric').selectOption('ip'); // the collection is l2
    await form.locator('#coll-upload').click();
    await form.locator('#coll-metric-err', { hasText: 'bad_params' }).waitFor();
    assert.match(await form.locator('#coll-metric-err').textContent(), /field metric/);
    assert.equal(await form.locator('#coll-metric').getAttribute('aria-invalid'), 'true');
    const cells = await page.locator('tr[data-collection="e2e-docs"] td').allTextContents();
    assert.equal(cells[1], '5', 'the collection is unchanged');
  });

  test('a collection larger than one message goes in frames with offsets', async () => {
    const form = page.locator('#coll-form');
    const rows = Array.from({ length: 400 }, (_, i) => Array.from({ length: 64 }, (_, j) => Math.sin(i * 64 + j)));
    await form.locator('#coll-name').fill('e2e-big');
    await form.locator('#coll-metric').selectOption('cosine');
    await form.locator('#coll-file').setInputFiles({ name: 'big.npy', mimeType: 'application/octet-stream', buffer: npyBuffer(rows) });
    await form.locator('#coll-ids-file').setInputFiles({ name: 'big-ids.txt', mimeType: 'text/plain',
      buffer: Buffer.from(rows.map((_, i) => `row-${i}\n`).join('')) });
    await form.locator('#coll-upload').click();
    const row = page.locator('table.objects-collections tr[data-collection="e2e-big"]');
    await row.waitFor();
    assert.deepEqual((await row.locator('th, td').allTextContents()).slice(0, 5), ['e2e-big', '1', '400', '64', 'cosine']);
    const put = JSON.parse(sentFrames.filter((f) => f.includes('"op":"vec.put"') && f.includes('e2e-big')).pop());
    assert.equal(put.ids.length, 400);
    const frames = sentBinary.map((b) => ({ b, h: frameHeader(b) })).filter((x) => x.h && x.h.ref === put.ref);
    assert.ok(frames.length >= 2, `several frames (got ${frames.length})`);
    let next = 0;
    for (const { b, h } of frames) {
      assert.ok(b.length <= 65536, `a frame of ${b.length} bytes`);
      assert.deepEqual(h.shape, [400, 64]);
      assert.equal(h.offset, next, 'the pieces follow each other');
      next += b.length - 8 - b.readUInt32LE(4);
    }
    assert.equal(next, 400 * 64 * 4, 'the pieces cover the part');
  });

  test('a model uploaded through the form is listed with its trees and features', async () => {
    const form = page.locator('#model-form');
    const model = xgbModel(6, 4);
    await form.locator('#model-file').setInputFiles({ name: 'credit.json', mimeType: 'application/json', buffer: model });
    assert.equal(await form.locator('#model-name').inputValue(), 'credit', 'the name follows the file');
    await form.locator('#model-upload').click();
    const row = page.locator('table.objects-models tr[data-model="credit"]');
    await row.waitFor();
    const cells = await row.locator('th, td').allTextContents();
    assert.deepEqual(cells.slice(0, 4), ['credit', '1', '6', '4']);
    assert.equal(await row.locator('td').nth(3).getAttribute('title'), `${model.length.toLocaleString('en-US')} bytes`);
  });

  test('drop asks for a second click, then the collection is gone', async () => {
    const drop = page.locator('tr[data-collection="e2e-docs"] button', { hasText: 'Drop' });
    await drop.click();
    await page.locator('tr[data-collection="e2e-docs"] button', { hasText: 'Confirm drop' }).click();
    await page.locator('tr[data-collection="e2e-docs"]').waitFor({ state: 'detached' });
    assert.ok(sentFrames.some((f) => f.includes('"op":"vec.drop"') && f.includes('"collection":"e2e-docs"')));
  });

  test('a kind that takes a file is sent from the Submit page to its own page', async () => {
    await page.goto(kilnd.url + '/#/submit/image.relief');
    const link = page.locator('.kind-page-link a[href="#/relief"]');
    await link.waitFor();
    assert.equal(await page.locator('form.job-form').count(), 0, 'no form that could never be sent');
    await link.click();
    await page.locator('.view-relief').waitFor();
  });

  test('the jobs list pages on past the second page, and keeps the focus as it refreshes', async () => {
    // 61 jobs (past two pages of 25, whatever the earlier tests left), through the
    // HTTP API.
    for (let i = 0; i < 61; i++) {
      const r = await fetch(`${kilnd.url}/api/v1/jobs`, { method: 'POST', headers: { Authorization: `Bearer ${TOKEN}` },
        body: JSON.stringify({ kind: 'lens.nfw', params: { mass: 1e13 * (1 + i), concentration: 5, grid_size: 16 } }) });
      assert.equal(r.status, 202);
    }
    await page.goto(kilnd.url + '/#/jobs');
    const rows = page.locator('tr[data-job-row]');
    await page.waitForFunction(() => document.querySelectorAll('tr[data-job-row]').length >= 25);
    // The list reloads its first page every 3 s: a reload between two clicks of
    // "Load more" must not send the next click back to the second page.
    // The next reload of the first page, its reply, and that reply handled by the
    // page (a task queued after the reply's).
    const text = (f) => (typeof f.payload === 'string' ? JSON.parse(f.payload) : {});
    const nextReload = async () => {
      const sent = await pageWs.waitForEvent('framesent',
        { predicate: (f) => text(f).op === 'list' && !('after' in text(f)), timeout: 10000 });
      const { ref } = text(sent);
      await pageWs.waitForEvent('framereceived', { predicate: (f) => text(f).op === 'jobs' && text(f).ref === ref });
      await page.evaluate(() => new Promise((r) => setTimeout(r)));
    };
    await page.click('#jobs-more');
    await page.waitForFunction(() => document.querySelectorAll('tr[data-job-row]').length >= 50);
    await nextReload();
    await page.click('#jobs-more');
    await page.waitForFunction(() => document.querySelectorAll('tr[data-job-row]').length >= 61);
    // A focused job link stays focused through the next reload.
    const link = rows.nth(3).locator('a');
    await link.focus();
    const focused = await link.getAttribute('href');
    await nextReload();
    assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('href')), focused);
  });

  test('an address with a malformed %-escape says so instead of blanking the page', async () => {
    await page.goto(kilnd.url + '/#/jobs/%E0%A4%A');
    await page.locator('h1', { hasText: 'Not a valid address' }).waitFor();
    assert.match(await page.locator('#view').textContent(), /#\/jobs\/%E0%A4%A holds a malformed %-escape/);
    await page.locator('#conn[data-state="up"]').waitFor();
    // Reached by a change of the hash from another page: the same, and no tab marked current.
    await page.goto(kilnd.url + '/#/jobs');
    await page.locator('.view-jobs').waitFor();
    await page.evaluate(() => { location.hash = '#/objects/%'; });
    await page.locator('h1', { hasText: 'Not a valid address' }).waitFor();
    assert.equal(await page.locator('#nav a[aria-current]').count(), 0);
    await page.click('#view a[href="#/"]');
    await page.locator('h1', { hasText: 'Dashboard' }).waitFor();
  });

  test('no page errors and no Content-Security-Policy violations', () => {
    assert.deepEqual(problems, []);
  });
});
