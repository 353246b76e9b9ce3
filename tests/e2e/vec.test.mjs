// Browser tests of the Search page (web_ui/kinds/vec.js) against the real kilnd in
// Debian's chromium: the collections with their counts, dims, metrics and versions;
// a pasted query sent as the binary part `queries` and answered with the exact
// nearest ids, ties in id order; queries from a .npy file; a query of the wrong dim
// refused before anything is sent and one the server refuses shown on its field;
// a stored id as the query (params.query_id, no part) and an id of the answers
// searching from that item (exactly, a line break and all), the last search asked
// for winning over an earlier one answered late; the collections read again when
// another client changed them (the Objects page's Refresh too); earlier answers
// marked as such after a failed search; values beyond float32 refused; the answers
// on the job's page, the ids of many queries summed up in its scalar table; the
// page kept as it is (typed queries, answers) across a server restart; screenshots
// at laptop and tablet sizes.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { LAPTOP, TABLET, download, openPage, shot } from './browser.mjs';
import { startKilnd } from './kilnd.mjs';


let kilnd, browser, page;
const problems = [];
const sentBinary = [];
const sentText = [];

/* vec.put from inside the page (its own WebSocket): rows f32[n][dim] and ids. */
async function putCollection(collection, metric, rows, ids) {
  const reply = await page.evaluate(async ({ url, collection, metric, rows, ids }) => {
    const ws = new WebSocket(url, 'kiln.v1');
    ws.binaryType = 'arraybuffer';
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
    const data = new Float32Array(rows.flat());
    const header = new TextEncoder().encode(JSON.stringify({ ref: 2, part: 'vectors', dtype: 'f32', shape: [rows.length, rows[0].length] }));
    const frame = new Uint8Array(8 + header.length + data.byteLength);
    frame.set([0x4b, 0x4c, 0x4e, 0x42]);
    new DataView(frame.buffer).setUint32(4, header.length, true);
    frame.set(header, 8);
    frame.set(new Uint8Array(data.buffer), 8 + header.length);
    ws.send(frame);
    ws.send(JSON.stringify({ op: 'vec.put', collection, metric, ids, ref: 2 }));
    const r = await wait(2);
    ws.close();
    return r;
  }, { url: kilnd.url.replace('http', 'ws') + '/ws', collection, metric, rows, ids });
  assert.equal(reply.op, 'vec', JSON.stringify(reply));
  return reply;
}

/* One message from another client (its own WebSocket from inside the page): the reply. */
async function otherClient(msg) {
  return page.evaluate(async ({ url, msg }) => {
    const ws = new WebSocket(url, 'kiln.v1');
    await new Promise((r) => ws.addEventListener('open', r, { once: true }));
    const replies = new Map();
    ws.addEventListener('message', (e) => {
      const m = JSON.parse(e.data);
      replies.set(m.ref, m);
    });
    const ask = (m) => new Promise((resolve) => {
      ws.send(JSON.stringify(m));
      const t = setInterval(() => {
        if (replies.has(m.ref)) {
          clearInterval(t);
          resolve(replies.get(m.ref));
        }
      }, 10);
    });
    await ask({ op: 'hello', client: 'e2e', ref: 1 });
    const r = await ask({ ...msg, ref: 2 });
    ws.close();
    return r;
  }, { url: kilnd.url.replace('http', 'ws') + '/ws', msg });
}

/* The answer tables of the page: [[id, score], ...] per query. */
async function answersOn(scope) {
  return page.locator(`${scope} table.vec-answer`).evaluateAll((tables) => tables.map((t) =>
    [...t.querySelectorAll('tbody tr')].map((tr) => [tr.children[1].textContent, Number(tr.children[2].textContent)])));
}

/* A second page whose WebSocket passes through a route: what it sends is recorded
 * in `sent` (text messages, parsed), and hold() keeps back everything the server
 * says about the next job submitted until release() lets it through, in order. */
async function routedPage() {
  const p = await browser.newPage();
  p.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  const sent = [], held = [];
  let holding = null, holdRef = null, heldJob = null, toPage = null;
  const jobOf = (m) => {
    if (typeof m === 'string') return JSON.parse(m).job;
    if (m.subarray(0, 4).toString('latin1') !== 'KLNB') return undefined;
    return JSON.parse(m.subarray(8, 8 + m.readUInt32LE(4)).toString()).job;
  };
  await p.routeWebSocket(/\/ws$/, (ws) => {
    const server = ws.connectToServer();
    ws.onMessage((m) => {
      if (typeof m === 'string') {
        const msg = JSON.parse(m);
        sent.push(msg);
        if (holding && msg.op === 'submit' && holdRef === null) holdRef = msg.ref;
      }
      server.send(m);
    });
    server.onMessage((m) => {
      if (holding && heldJob === null && typeof m === 'string' && JSON.parse(m).ref === holdRef) heldJob = JSON.parse(m).job;
      if (heldJob !== null && jobOf(m) === heldJob) held.push(m);
      else ws.send(m);
    });
    toPage = (m) => ws.send(m);
  });
  return {
    page: p, sent,
    hold() {
      holding = true;
      holdRef = heldJob = null;
    },
    heldJob: () => heldJob,
    release() {
      holding = false;
      heldJob = null;
      for (const m of held.splice(0)) toPage(m);
    },
  };
}

describe('the Search page', () => {
  let jobHref;

  before(async () => {
    kilnd = await startKilnd();
    ({ browser, page } = await openPage(problems, sentBinary));
    page.on('websocket', (ws) => ws.on('framesent', (f) => {
      if (typeof f.payload === 'string') sentText.push(JSON.parse(f.payload));
    }));
    await page.goto(kilnd.url + '/#/');
    await putCollection('docs', 'ip', [[1, 0, 0], [0, 1, 0], [2, 0, 0], [1, 1, 0], [-1, 0, 0]], ['a', 'b', 'c', 'd', 'e']);
    await putCollection('unit', 'cosine', [[1, 0], [0, 1]], ['x', 'y']);
  });

  after(async () => {
    await browser?.close();
    await kilnd?.stop();
    assert.deepEqual(problems, []);
  });

  test('the collections are listed with count, dim, metric and version', async () => {
    await page.goto(kilnd.url + '/#/vec');
    await page.locator('h1', { hasText: 'Search' }).waitFor();
    assert.equal(await page.locator('#nav a[href="#/vec"]').getAttribute('aria-current'), 'page');
    const row = page.locator('table.vec-collections tr[data-collection="docs"]');
    await row.waitFor();
    assert.deepEqual(await row.locator('th, td').allTextContents(), ['docs', '5', '3', 'ip', '1', 'Search']);
    assert.equal(await page.locator('table.vec-collections tbody tr').count(), 2);
    assert.equal(await page.locator('#vec-k').inputValue(), '10');
  });

  test('a pasted query gets the exact nearest ids, ties in id order', async () => {
    await page.locator('tr[data-collection="docs"] button', { hasText: 'Search' }).click();
    assert.equal(await page.locator('#vec-collection').inputValue(), 'docs');
    await page.locator('#vec-k').fill('4');
    await page.locator('#vec-queries').fill('[1, 0, 0]');
    sentBinary.length = 0;
    await page.click('.vec-form button[type="submit"]');
    await page.locator('.vec-status', { hasText: 'Done' }).waitFor();
    // c scores 2, then a and d tie at 1 (a before d), then b at 0.
    assert.deepEqual(await answersOn('.vec-out'), [[['c', 2], ['a', 1], ['d', 1], ['b', 0]]]);
    // What went out: the part `queries`, f32[1][3], the pasted values.
    const frame = sentBinary.find((b) => b.subarray(0, 4).toString() === 'KLNB');
    assert.ok(frame, 'a binary part was sent');
    const hl = frame.readUInt32LE(4), header = JSON.parse(frame.subarray(8, 8 + hl).toString());
    assert.equal(header.part, 'queries');
    assert.equal(header.dtype, 'f32');
    assert.deepEqual(header.shape, [1, 3]);
    const body = frame.subarray(8 + hl);
    assert.deepEqual([0, 1, 2].map((i) => body.readFloatLE(4 * i)), [1, 0, 0]);
    jobHref = await page.locator('.vec-out a', { hasText: 'Open the job' }).getAttribute('href');
    await shot(page, 'vec', LAPTOP);
    await shot(page, 'vec', TABLET);
    await page.setViewportSize(LAPTOP);
  });

  test('queries from a .npy file are searched together', async () => {
    const data = Buffer.alloc(2 * 3 * 4);
    [0, 1, 0, -1, 0, 0].forEach((v, i) => data.writeFloatLE(v, 4 * i));
    let head = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    head += ' '.repeat(64 - ((10 + head.length + 1) % 64)) + '\n';
    const npy = Buffer.concat([Buffer.from([0x93]), Buffer.from('NUMPY'), Buffer.from([1, 0]),
      Buffer.from([head.length & 0xff, head.length >> 8]), Buffer.from(head, 'latin1'), data]);
    await page.locator('#vec-k').fill('2');
    await page.setInputFiles('#vec-file', { name: 'q.npy', mimeType: 'application/octet-stream', buffer: npy });
    await page.locator('.vec-status', { hasText: '2 queries of dim 3' }).waitFor();
    await page.click('.vec-form button[type="submit"]');
    await page.locator('.vec-status', { hasText: 'Done: 2 queries' }).waitFor();
    assert.deepEqual(await answersOn('.vec-out'), [[['b', 1], ['d', 1]], [['e', 1], ['b', 0]]]);
    // The ids and the scores of every query download.
    const ids = await download(page, '.vec-out a[download][data-part="ids"]');
    assert.match(ids.name, /^ids-[0-9a-f]{8}\.json$/);
    assert.deepEqual(JSON.parse(ids.bytes.toString('utf8')), [['b', 'd'], ['e', 'b']]);
    const scores = await download(page, '.vec-out a[download][data-part="scores"]');
    assert.match(scores.bytes.subarray(0, 128).toString('latin1'), /\(2, 2\)/);
  });

  test('a query of the wrong dim is refused before sending; the server\'s refusals show on the field', async () => {
    await page.locator('#vec-queries').fill('[1, 2]');
    sentBinary.length = 0;
    await page.click('.vec-form button[type="submit"]');
    await page.locator('#vec-queries-err', { hasText: 'dim 2' }).waitFor();
    assert.equal(sentBinary.length, 0);
    await page.locator('#vec-queries').fill('[1, null, 2]');
    await page.click('.vec-form button[type="submit"]');
    await page.locator('#vec-queries-err', { hasText: 'not a finite number' }).waitFor();
    // An all-zero query has no direction under cosine: the server says so.
    await page.selectOption('#vec-collection', 'unit');
    await page.locator('#vec-queries').fill('[0, 0]');
    await page.click('.vec-form button[type="submit"]');
    await page.locator('#vec-queries-err', { hasText: 'inputs.queries[0]' }).waitFor();
    assert.match(await page.locator('#vec-queries-err').textContent(), /all zeros/);
  });

  test('a stored id is the query, and an id of the answers searches from that item', async () => {
    await page.selectOption('#vec-collection', 'docs');
    await page.locator('#vec-queries').fill('');
    await page.locator('#vec-k').fill('3');
    await page.locator('#vec-query-id').fill('d');
    sentBinary.length = 0;
    sentText.length = 0;
    await page.click('.vec-form button[type="submit"]');
    await page.locator('.vec-out p', { hasText: 'from d' }).waitFor();
    // d = (1, 1, 0) under ip: c and d at 2 (c first), then a at 1 (a before b).
    assert.deepEqual(await answersOn('.vec-out'), [[['c', 2], ['d', 2], ['a', 1]]]);
    assert.equal(sentBinary.length, 0, 'no part is sent for a stored id');
    const submit = sentText.find((m) => m.op === 'submit');
    assert.deepEqual(submit.params, { collection: 'docs', k: 3, query_id: 'd' });
    await shot(page, 'vec-from-id', LAPTOP);

    // Each id of the answers is a button: a, (1, 0, 0), searched from.
    await page.locator('.vec-out button.vec-from', { hasText: /^a$/ }).click();
    await page.locator('.vec-out p', { hasText: 'from a' }).waitFor();
    assert.equal(await page.locator('#vec-query-id').inputValue(), 'a');
    assert.deepEqual(await answersOn('.vec-out'), [[['c', 2], ['a', 1], ['d', 1]]]);

    // An id the collection does not hold: the server's refusal on the field.
    await page.locator('#vec-query-id').fill('zz');
    await page.click('.vec-form button[type="submit"]');
    await page.locator('#vec-query-id-err', { hasText: 'params.query_id' }).waitFor();
    assert.match(await page.locator('#vec-query-id-err').textContent(), /"zz" is not an id of the collection/);

    // Vectors and an id together: refused before anything is sent.
    await page.locator('#vec-query-id').fill('a');
    await page.locator('#vec-queries').fill('[1, 0, 0]');
    sentText.length = 0;
    await page.click('.vec-form button[type="submit"]');
    await page.locator('#vec-query-id-err', { hasText: 'not both' }).waitFor();
    assert.equal(sentText.filter((m) => m.op === 'submit').length, 0);
    await page.locator('#vec-query-id').fill('');
  });

  test('the job page shows the answers, not the scores as a map', async () => {
    await page.goto(kilnd.url + '/' + jobHref);
    await page.locator('.vec-card table.vec-answer').waitFor();
    assert.deepEqual(await answersOn('.vec-card'), [[['c', 2], ['a', 1], ['d', 1], ['b', 0]]]);
    assert.equal(await page.locator('.map-card, canvas.map').count(), 0);
    await shot(page, 'vec-job', LAPTOP);
  });

  test('an id holding a line break is searched from exactly, and the last search asked for wins', async () => {
    await putCollection('lines', 'l2', [[0, 0], [10, 10], [100, 100]], ['a\nb', 'ab', 'far']);
    const r = await routedPage();
    const p = r.page;
    try {
      await p.goto(kilnd.url + '/#/vec');
      await p.locator('table.vec-collections tr[data-collection="lines"]').waitFor();
      await p.selectOption('#vec-collection', 'lines');
      await p.locator('#vec-k').fill('3');
      await p.locator('#vec-queries').fill('[0, 0]');
      await p.click('.vec-form button[type="submit"]');
      await p.locator('.vec-status', { hasText: 'Done' }).waitFor();
      // The line break of the id is shown escaped, and the id itself is what is searched from.
      assert.deepEqual(await p.locator('.vec-out button.vec-from').allTextContents(), ['a\\nb', 'ab', 'far']);
      await p.locator('.vec-out button.vec-from').first().click();
      await p.locator('.vec-out > p', { hasText: 'from a\\nb' }).waitFor();
      assert.equal(r.sent.filter((m) => m.op === 'submit').pop().params.query_id, 'a\nb');
      assert.equal(await p.locator('#vec-query-id').inputValue(), 'a\\nb');
      assert.equal(await p.locator('.vec-out td.vec-id').first().textContent(), 'a\\nb');
      // Submitted again unchanged, the field still means the picked id.
      await p.click('.vec-form button[type="submit"]');
      await p.locator('.vec-status', { hasText: 'Done' }).waitFor();
      assert.equal(r.sent.filter((m) => m.op === 'submit').pop().params.query_id, 'a\nb');

      // A search whose answer is late, then an id of the answers on screen: the later search's answer stays.
      r.hold();
      await p.locator('#vec-query-id').fill('');
      await p.locator('#vec-queries').fill('[100, 99]');
      await p.click('.vec-form button[type="submit"]');
      await p.waitForFunction(() => document.querySelector('.vec-status').textContent === 'Searching…');
      await p.locator('.vec-out button.vec-from', { hasText: /^ab$/ }).click();
      await p.locator('.vec-out > p', { hasText: 'from ab' }).waitFor();
      assert.ok(r.heldJob(), 'the first search\'s answer was held back');
      r.release();
      await p.waitForTimeout(300);
      assert.match(await p.locator('.vec-out > p').first().textContent(), /from ab/);
      assert.deepEqual((await p.locator('.vec-out td.vec-id').allTextContents()), ['ab', 'a\\nb', 'far']);
      assert.match(await p.locator('.vec-status').textContent(), /^Done/);
      assert.equal(await p.locator('.vec-form button[type="submit"]').isDisabled(), false);
    } finally {
      await p.close();
    }
  });

  test('a collection another client made anew with another dim is read again, not refused on its old dim', async () => {
    await putCollection('shift', 'l2', [[1, 0, 0], [0, 1, 0]], ['p', 'q']);
    await page.goto(kilnd.url + '/#/vec');
    await page.locator('table.vec-collections tr[data-collection="shift"]').waitFor();
    // Behind the page's back: dropped and put again with dim 4.
    assert.equal((await otherClient({ op: 'vec.drop', collection: 'shift' })).op, 'ok');
    await putCollection('shift', 'l2', [[1, 0, 0, 0], [0, 0, 0, 1], [0, 1, 0, 0]], ['r', 's', 't']);
    await page.selectOption('#vec-collection', 'shift');
    await page.locator('#vec-query-id').fill('');
    await page.locator('#vec-k').fill('2');
    await page.locator('#vec-queries').fill('[0, 0, 0, 1]');
    await page.click('.vec-form button[type="submit"]');
    await page.locator('.vec-status', { hasText: 'Done' }).waitFor();
    assert.deepEqual((await answersOn('.vec-out'))[0].map(([id]) => id), ['s', 'r']);
    assert.deepEqual((await page.locator('tr[data-collection="shift"] td').allTextContents()).slice(0, 3), ['3', '4', 'l2']);
    // A 3-d query now is refused before sending, with the collection's dim as read just now.
    await page.locator('#vec-queries').fill('[0, 0, 1]');
    await page.click('.vec-form button[type="submit"]');
    await page.locator('#vec-queries-err', { hasText: 'holds vectors of dim 4' }).waitFor();

    // Dropped behind the page's back: the server's not_found, and the list read again.
    await otherClient({ op: 'vec.drop', collection: 'shift' });
    await page.locator('#vec-queries').fill('[0, 0, 0, 1]');
    await page.click('.vec-form button[type="submit"]');
    await page.locator('.vec-form .field-error', { hasText: 'shift' }).first().waitFor();
    await page.locator('table.vec-collections tr[data-collection="shift"]').waitFor({ state: 'detached' });
  });

  test('the Objects page reads the collections again on Refresh', async () => {
    await page.goto(kilnd.url + '/#/objects');
    await page.locator('table.objects-collections tr[data-collection="docs"]').waitFor();
    await putCollection('later', 'l2', [[1, 2]], ['one']);
    await otherClient({ op: 'vec.drop', collection: 'unit' });
    await page.locator('#objects-refresh').click();
    await page.locator('table.objects-collections tr[data-collection="later"]').waitFor();
    assert.equal(await page.locator('table.objects-collections tr[data-collection="unit"]').count(), 0);
    await page.goto(kilnd.url + '/#/vec');
    await page.locator('table.vec-collections tr[data-collection="later"]').waitFor();
  });

  test('the Objects page follows other clients\' changes on its own', async () => {
    await page.goto(kilnd.url + '/#/objects');
    await page.locator('table.objects-collections tr[data-collection="later"]').waitFor();
    await putCollection('polled', 'ip', [[0, 1]], ['p']);
    // No Refresh: the page's poll (every 5 s) shows it.
    await page.locator('table.objects-collections tr[data-collection="polled"]').waitFor({ timeout: 15000 });
    await otherClient({ op: 'vec.drop', collection: 'polled' });
    await page.locator('table.objects-collections tr[data-collection="polled"]').waitFor({ state: 'detached', timeout: 15000 });
    await page.goto(kilnd.url + '/#/vec'); // where the tests below begin
    await page.locator('#vec-queries').waitFor();
  });

  test('a failed search leaves the earlier answers marked as such', async () => {
    await page.selectOption('#vec-collection', 'docs');
    await page.locator('#vec-k').fill('2');
    await page.locator('#vec-queries').fill('[1, 0, 0]');
    await page.click('.vec-form button[type="submit"]');
    await page.locator('.vec-status', { hasText: 'Done' }).waitFor();
    assert.equal(await page.locator('.vec-out.previous').count(), 0);
    // The server fails the search: no "Done" beside the error, the answers marked as the earlier search's.
    await page.locator('#vec-queries').fill('');
    await page.locator('#vec-query-id').fill('nope');
    await page.click('.vec-form button[type="submit"]');
    await page.locator('#vec-query-id-err', { hasText: 'nope' }).waitFor();
    assert.doesNotMatch(await page.locator('.vec-status').textContent(), /Done/);
    await page.locator('.vec-out.previous .previous-note', { hasText: 'earlier search' }).waitFor();
    assert.equal(await page.locator('.vec-out .previous-note').count(), 1);
    // A search answered clears the mark.
    await page.locator('#vec-query-id').fill('a');
    await page.click('.vec-form button[type="submit"]');
    await page.locator('.vec-out > p', { hasText: 'from a' }).waitFor();
    assert.equal(await page.locator('.vec-out.previous, .vec-out .previous-note').count(), 0);
    // Refused in the browser: the status is emptied too, and the answers marked.
    await page.locator('#vec-query-id').fill('');
    await page.locator('#vec-queries').fill('[1, "x", 0]');
    await page.click('.vec-form button[type="submit"]');
    await page.locator('#vec-queries-err', { hasText: 'vector 1, value 2 is not a finite number' }).waitFor();
    assert.equal(await page.locator('.vec-status').textContent(), '');
    await page.locator('.vec-out.previous').waitFor();
  });

  test('a value beyond the float32 range is refused before sending, naming the query and the value', async () => {
    sentBinary.length = 0;
    await page.locator('#vec-queries').fill('1 0 0\n1 1e39 0');
    await page.click('.vec-form button[type="submit"]');
    await page.locator('#vec-queries-err', { hasText: 'vector 2, value 2 (1e+39) is beyond the float32 range' }).waitFor();
    await page.locator('#vec-queries').fill('-3.5e38 0 0');
    await page.click('.vec-form button[type="submit"]');
    await page.locator('#vec-queries-err', { hasText: 'vector 1, value 1 (-3.5e+38) is beyond the float32 range' }).waitFor();
    assert.equal(sentBinary.length, 0);
    // A value within the range is the server's to judge (it refuses a norm this big).
    await page.locator('#vec-queries').fill('[1e38, 0, 0]');
    await page.click('.vec-form button[type="submit"]');
    await page.locator('#vec-queries-err', { hasText: 'inputs.queries[0]' }).waitFor();
    assert.equal(sentBinary.length, 1);
  });

  test('the job page of many queries sums up the ids in the scalar table; the answers table a bounded number', async () => {
    const rows = Array.from({ length: 12 }, (_, i) => [i, 12 - i, 1]);
    await putCollection('many', 'l2', rows, rows.map((_, i) => `item-${String(i).padStart(4, '0')}`));
    await page.goto(kilnd.url + '/#/vec');
    await page.locator('.vec-layout button', { hasText: 'Refresh' }).click();
    await page.locator('table.vec-collections tr[data-collection="many"]').waitFor();
    await page.selectOption('#vec-collection', 'many');
    await page.locator('#vec-k').fill('5');
    await page.locator('#vec-query-id').fill('');
    await page.locator('#vec-queries').fill(Array.from({ length: 40 }, (_, i) => `${i % 12} ${i % 7} 0`).join('\n'));
    await page.click('.vec-form button[type="submit"]');
    await page.locator('.vec-status', { hasText: 'Done: 40 queries' }).waitFor();
    const href = await page.locator('.vec-out a', { hasText: 'Open the job' }).getAttribute('href');
    await page.goto(kilnd.url + '/' + href);
    await page.locator('.vec-card table.vec-answer').first().waitFor();
    const ids = await page.locator('table.scalars tr', { has: page.locator('th', { hasText: /^ids$/ }) }).locator('td').textContent();
    // 40 x 5 ids are some 1,700 characters of JSON: the cell holds their count and the first few.
    assert.ok(ids.length <= 200, `the ids cell holds ${ids.length} characters`);
    assert.match(ids, /^\[40 arrays\] \[\["item-\d{4}",/);
    assert.ok(ids.endsWith('…'));
    assert.equal(await page.locator('.vec-card table.vec-answer').count(), 20);
    assert.match(await page.locator('.vec-card').textContent(), /and 20 more queries/);
  });
  test('a server restart keeps the page as it is: what was typed and the answers shown', async () => {
    await page.goto(kilnd.url + '/#/vec');
    await page.locator('table.vec-collections tr[data-collection="docs"]').waitFor();
    await page.selectOption('#vec-collection', 'docs');
    await page.locator('#vec-k').fill('2');
    await page.locator('#vec-query-id').fill('');
    await page.locator('#vec-queries').fill('[0, 1, 0]');
    await page.click('.vec-form button[type="submit"]');
    await page.locator('.vec-status', { hasText: 'Done' }).waitFor();
    const answers = await answersOn('.vec-out');
    await page.locator('#vec-queries').fill('[1, 1, 0]  typed, not sent yet');
    await kilnd.restart();
    await page.locator('#conn[data-state="down"]').waitFor();
    await page.locator('#conn[data-state="up"]').waitFor();
    assert.equal(await page.inputValue('#vec-queries'), '[1, 1, 0]  typed, not sent yet');
    assert.equal(await page.inputValue('#vec-collection'), 'docs');
    assert.equal(await page.inputValue('#vec-k'), '2');
    assert.deepEqual(await answersOn('.vec-out'), answers);
    // The page searches on the new connection.
    await page.locator('#vec-queries').fill('[1, 1, 0]');
    await page.click('.vec-form button[type="submit"]');
    await page.locator('.vec-status', { hasText: 'Done' }).waitFor();
    assert.deepEqual((await answersOn('.vec-out'))[0].map(([id]) => id), ['c', 'd']);
  });
});
