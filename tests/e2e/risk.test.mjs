// Browser tests of the Risk page (web_ui/kinds/risk.js) against the real kilnd in
// Debian's chromium: the built-in and stored models to pick from; pasted CSV rows
// sent as the binary part `rows` and scored with Altman's Z'' (a table with zones
// and a histogram coloured by zone); a stored model's pd and margin from a .npy
// file; rows of the wrong width refused before anything is sent, and the server's
// refusal shown on the field, the scores of the job before marked as such; the
// scores on the job's page; screenshots.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { LAPTOP, TABLET, download, openPage, shot } from './browser.mjs';
import { startKilnd } from './kilnd.mjs';


let kilnd, browser, page;
const problems = [];
const sentBinary = [];

/* A one-tree XGBoost JSON model: feature 0 < 0.5 goes to a leaf of -1, else +1;
 * missing goes left. pd = sigmoid(leaf). */
function stumpModel(features) {
  const tree = { base_weights: [0, -1, 1], categories: [], categories_nodes: [], categories_segments: [],
    categories_sizes: [], default_left: [1, 0, 0], id: 0, left_children: [1, -1, -1], loss_changes: [1, 0, 0],
    parents: [2147483647, 0, 0], right_children: [2, -1, -1], split_conditions: [0.5, -1, 1], split_indices: [0, 0, 0],
    split_type: [0, 0, 0], sum_hessian: [2, 1, 1],
    tree_param: { num_deleted: '0', num_feature: String(features), num_nodes: '3', size_leaf_vector: '0' } };
  return JSON.stringify({ learner: { attributes: {}, feature_names: [], feature_types: [],
    gradient_booster: { model: { gbtree_model_param: { num_parallel_tree: '1', num_trees: '1', size_leaf_vector: '0' },
      tree_info: [0], trees: [tree] }, name: 'gbtree' },
    learner_model_param: { base_score: '5E-1', boost_from_average: '1', num_class: '0', num_feature: String(features), num_target: '1' },
    objective: { name: 'binary:logistic', reg_loss_param: { scale_pos_weight: '1' } } }, version: [1, 7, 4] });
}

/* model.put from inside the page (its own WebSocket). */
async function putModel(name, text) {
  const reply = await page.evaluate(async ({ url, name, text }) => {
    const ws = new WebSocket(url, 'kiln.v1');
    await new Promise((r) => ws.addEventListener('open', r, { once: true }));
    const replies = [];
    ws.addEventListener('message', (e) => typeof e.data === 'string' && replies.push(JSON.parse(e.data)));
    const wait = (ref) => new Promise((resolve) => {
      const t = setInterval(() => {
        const m = replies.find((x) => x.ref === ref);
        if (m) {
          clearInterval(t);
          resolve(m);
        }
      }, 10);
    });
    ws.send(JSON.stringify({ op: 'hello', client: 'e2e', ref: 1 }));
    await wait(1);
    const data = new TextEncoder().encode(text);
    const header = new TextEncoder().encode(JSON.stringify({ ref: 2, part: 'model', dtype: 'bytes', shape: [data.length] }));
    const frame = new Uint8Array(8 + header.length + data.length);
    frame.set([0x4b, 0x4c, 0x4e, 0x42]);
    new DataView(frame.buffer).setUint32(4, header.length, true);
    frame.set(header, 8);
    frame.set(data, 8 + header.length);
    ws.send(frame);
    ws.send(JSON.stringify({ op: 'model.put', name, ref: 2 }));
    const r = await wait(2);
    ws.close();
    return r;
  }, { url: kilnd.url.replace('http', 'ws') + '/ws', name, text });
  assert.equal(reply.op, 'model', JSON.stringify(reply));
  return reply;
}

/* The score table's rows as text. */
async function tableRows(scope) {
  return page.locator(`${scope} table.risk-table tbody tr`).evaluateAll((rows) =>
    rows.map((tr) => [...tr.children].map((td) => td.textContent)));
}

describe('the Risk page', () => {
  let jobHref;

  before(async () => {
    kilnd = await startKilnd();
    ({ browser, page } = await openPage(problems, sentBinary));
    await page.goto(kilnd.url + '/#/');
    await putModel('stump', stumpModel(3));
  });

  after(async () => {
    await browser?.close();
    await kilnd?.stop();
    assert.deepEqual(problems, []);
  });

  test('the built-in and the stored models are offered', async () => {
    await page.goto(kilnd.url + '/#/risk');
    await page.locator('h1', { hasText: 'Risk' }).waitFor();
    assert.equal(await page.locator('#nav a[href="#/risk"]').getAttribute('aria-current'), 'page');
    await page.locator('#risk-model option[value="stump"]').waitFor({ state: 'attached' });
    assert.deepEqual(await page.locator('#risk-model option').allTextContents(), ['altman-z', 'altman-z2', 'stump']);
    await page.selectOption('#risk-model', 'stump');
    await page.locator('.risk-note', { hasText: '3 features' }).waitFor();
    assert.equal(await page.locator('#risk-margin').isDisabled(), false);
  });

  test('pasted CSV rows are scored with Z\'\' and their zones', async () => {
    await page.selectOption('#risk-model', 'altman-z2');
    assert.equal(await page.locator('#risk-margin').isDisabled(), true);
    await page.locator('#risk-rows').fill('x1,x2,x3,x4\n0.1,0.1,0.1,0.5\n-0.2,0,0.05,0.3\n0.3,0.4,0.2,1.0');
    sentBinary.length = 0;
    await page.click('.risk-form button[type="submit"]');
    await page.locator('.risk-status', { hasText: 'Done: 3 rows' }).waitFor();
    const rows = await tableRows('.risk-out');
    assert.deepEqual(rows.map((r) => r[2]), ['grey', 'distress', 'safe']);
    assert.equal(Number(rows[0][1]).toFixed(3), '2.179');
    // The histogram colours its bars by zone: one bar of each here.
    for (const zone of ['distress', 'grey', 'safe']) {
      assert.equal(await page.locator(`.risk-out svg.risk-hist rect.zone-${zone}:not([data-count="0"])`).count(), 1, zone);
    }
    const frame = sentBinary.find((b) => b.subarray(0, 4).toString() === 'KLNB');
    assert.ok(frame, 'a binary part was sent');
    const hl = frame.readUInt32LE(4), header = JSON.parse(frame.subarray(8, 8 + hl).toString());
    assert.deepEqual([header.part, header.dtype, header.shape], ['rows', 'f32', [3, 4]]);
    assert.equal(frame.subarray(8 + hl).readFloatLE(4 * 4), Math.fround(-0.2));
    jobHref = await page.locator('.risk-out a', { hasText: 'Open the job' }).getAttribute('href');
    await shot(page, 'risk', LAPTOP);
    await shot(page, 'risk', TABLET);
    await page.setViewportSize(LAPTOP);
  });

  test('a stored model scores rows from a .npy file, with the margin', async () => {
    const data = Buffer.alloc(3 * 3 * 4);
    [0, 9, 9, 1, 9, 9, NaN, 9, 9].forEach((v, i) => data.writeFloatLE(v, 4 * i));
    let head = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 3), }";
    head += ' '.repeat(64 - ((10 + head.length + 1) % 64)) + '\n';
    const npy = Buffer.concat([Buffer.from([0x93]), Buffer.from('NUMPY'), Buffer.from([1, 0]),
      Buffer.from([head.length & 0xff, head.length >> 8]), Buffer.from(head, 'latin1'), data]);
    await page.selectOption('#risk-model', 'stump');
    await page.check('#risk-margin');
    await page.setInputFiles('#risk-file', { name: 'rows.npy', mimeType: 'application/octet-stream', buffer: npy });
    await page.locator('.risk-status', { hasText: '3 rows of 3 values' }).waitFor();
    await page.click('.risk-form button[type="submit"]');
    await page.locator('.risk-status', { hasText: 'Done: 3 rows' }).waitFor();
    const rows = await tableRows('.risk-out');
    // 0 < 0.5 and NaN (missing goes left): leaf -1; 1: leaf +1.
    assert.deepEqual(rows.map((r) => [Number(r[1]).toFixed(5), r[2]]),
      [['0.26894', '-1.00000'], ['0.73106', '1.00000'], ['0.26894', '-1.00000']]);
    assert.ok(await page.locator('.risk-out svg.risk-hist rect.risk-bar.zone-pd').count() > 0);
    // Every row's pd and margin download as .npy files.
    for (const part of ['pd', 'margin']) {
      const { name, bytes } = await download(page, `.risk-out a[download][data-part="${part}"]`);
      assert.match(name, new RegExp(`^${part}-[0-9a-f]{8}\\.npy$`));
      assert.match(bytes.subarray(0, 128).toString('latin1'), /\(3,\)/);
      const v = bytes.subarray(bytes.length - 12);
      assert.equal(v.readFloatLE(4).toFixed(5), part === 'pd' ? '0.73106' : '1.00000'); // the second row
    }
  });

  test('rows of the wrong width are refused before sending; the server\'s refusal shows on the field', async () => {
    await page.selectOption('#risk-model', 'altman-z');
    await page.locator('#risk-rows').fill('1,2,3,4');
    sentBinary.length = 0;
    await page.click('.risk-form button[type="submit"]');
    await page.locator('#risk-rows-err', { hasText: 'altman-z takes 5' }).waitFor();
    assert.equal(sentBinary.length, 0);
    // The scores on screen are the earlier job's: marked so, and no "Done" beside the error.
    assert.equal(await page.locator('.risk-status').textContent(), '');
    await page.locator('.risk-out.previous .previous-note', { hasText: 'earlier job' }).waitFor();
    await page.locator('#risk-rows').fill('1,2,x,4,5');
    await page.click('.risk-form button[type="submit"]');
    await page.locator('#risk-rows-err', { hasText: 'line 1, column 3' }).waitFor();
    // A value that float32 cannot hold is refused before sending, not sent as infinity.
    await page.locator('#risk-rows').fill('1,2,1e39,4,5');
    await page.click('.risk-form button[type="submit"]');
    await page.locator('#risk-rows-err', { hasText: 'row 1, value 3 (1e+39) is beyond the float32 range' }).waitFor();
    assert.equal(sentBinary.length, 0);
    // A missing value is the server's to refuse for Altman's models.
    await page.locator('#risk-rows').fill('1,2,,4,5');
    await page.click('.risk-form button[type="submit"]');
    await page.locator('#risk-rows-err', { hasText: 'params.rows[0][2] is missing' }).waitFor();
    assert.doesNotMatch(await page.locator('.risk-status').textContent(), /Done/);
    assert.equal(await page.locator('.risk-out .previous-note').count(), 1);
    // Scored again: the mark is gone.
    await page.locator('#risk-rows').fill('1,2,3,4,5');
    await page.click('.risk-form button[type="submit"]');
    await page.locator('.risk-status', { hasText: 'Done: 1 rows' }).waitFor();
    assert.equal(await page.locator('.risk-out.previous, .risk-out .previous-note').count(), 0);
  });

  test('the job page shows the scores and the histogram, not a map', async () => {
    await page.goto(kilnd.url + '/' + jobHref);
    await page.locator('.risk-card table.risk-table').waitFor();
    assert.deepEqual((await tableRows('.risk-card')).map((r) => r[2]), ['grey', 'distress', 'safe']);
    assert.equal(await page.locator('.risk-card svg.risk-hist').count(), 1);
    assert.equal(await page.locator('.map-card, canvas.map').count(), 0);
    await shot(page, 'risk-job', LAPTOP);
  });
});
