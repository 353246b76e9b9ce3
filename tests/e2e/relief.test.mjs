// Browser tests of the Relief page (web_ui/kinds/relief.js, web_ui/mesh3d.js)
// against the real kilnd, in Debian's chromium (WebGL through SwiftShader): an
// image chosen and one dropped, the job's mesh drawn in 3-D (pixels on the canvas
// that change when the view is dragged and zoomed), the figures, STL and GLB
// downloads that are the files the server made, a damaged image refused on its
// field (and text a number field cannot read on its own), the mesh on the job's page,
// and screenshots at laptop and tablet sizes.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import { chromium } from 'playwright-core';
import { startKilnd } from './kilnd.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTEFACTS = process.env.E2E_ARTEFACTS || join(process.cwd(), 'artefacts');
const LAPTOP = { width: 1366, height: 768 };
const TABLET = { width: 820, height: 1180 };
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];

/* A grey 8-bit PNG of w x h pixels from f(x, y) in [0, 1]. */
function png(w, h, f) {
  const raw = Buffer.alloc(h * (w + 1));
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) raw[y * (w + 1) + 1 + x] = Math.round(255 * f(x / w, y / h));
  }
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(Buffer.concat([Buffer.from(type, 'latin1'), data])));
    return Buffer.concat([len, Buffer.from(type, 'latin1'), data, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8;
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

// A dome with a ring and a notch: it should look like something from any side.
const dome = (x, y) => {
  const r = Math.hypot(x - 0.5, y - 0.5);
  return Math.min(1, Math.max(0, 0.85 - 1.2 * r * r + (Math.abs(r - 0.33) < 0.03 ? 0.15 : 0) - (x > 0.7 && y < 0.2 ? 0.4 : 0)));
};

let kilnd, browser, page;
const problems = [];
const sentBinary = [];

/* How many of the canvas's pixels are not the background, and a hash of them. */
async function canvasPixels() {
  return page.evaluate(() => {
    const c = document.querySelector('.relief-canvas');
    const copy = document.createElement('canvas');
    copy.width = c.width;
    copy.height = c.height;
    const ctx = copy.getContext('2d');
    ctx.drawImage(c, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    let lit = 0, hash = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (Math.abs(d[i] - 18) + Math.abs(d[i + 1] - 23) + Math.abs(d[i + 2] - 31) > 12) lit++;
      hash = (hash * 31 + d[i] + 7 * d[i + 1] + 13 * d[i + 2]) >>> 0;
    }
    return { lit, hash, total: d.length / 4 };
  });
}

/* Waits until the 3-D view has drawn its next frame. */
async function settled() {
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
}

async function shot(name, viewport) {
  await page.setViewportSize(viewport);
  await settled();
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(ARTEFACTS, `${name}-${viewport === TABLET ? 'tablet' : 'laptop'}.png`), fullPage: true });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `${name} overflows horizontally by ${overflow}px at ${viewport.width}px`);
}

describe('the Relief page', () => {
  const image = png(96, 72, dome);
  let jobHref;

  before(async () => {
    mkdirSync(ARTEFACTS, { recursive: true });
    kilnd = await startKilnd();
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
    const context = await browser.newContext({ viewport: LAPTOP, acceptDownloads: true });
    page = await context.newPage();
    page.setDefaultTimeout(20000);
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(`console: ${m.text()}`);
    });
    page.on('websocket', (ws) => ws.on('framesent', (f) => {
      if (typeof f.payload !== 'string') sentBinary.push(f.payload);
    }));
  });

  after(async () => {
    await browser?.close();
    await kilnd?.stop();
    assert.deepEqual(problems, []);
  });

  test('a chosen image becomes a mesh drawn in 3-D, with its figures', async () => {
    await page.goto(kilnd.url + '/#/relief');
    await page.locator('h1', { hasText: 'Relief' }).waitFor();
    assert.equal(await page.locator('#nav a[href="#/relief"]').getAttribute('aria-current'), 'page');
    // The fields come from the kind's schema, with its defaults.
    assert.equal(await page.locator('#relief-width_mm').inputValue(), '100');
    assert.equal(await page.locator('#relief-max_side_px').inputValue(), '256');
    assert.ok(await page.locator('button[type="submit"]', { hasText: 'Make the relief' }).isDisabled());
    await page.setInputFiles('#relief-file', { name: 'dome.png', mimeType: 'image/png', buffer: image });
    await page.locator('.relief-preview canvas.relief-thumb').waitFor();
    await page.locator('#relief-base_mm').fill('1.5');
    await page.click('button[type="submit"]');
    await page.locator('.relief-canvas').waitFor();
    await page.locator('.relief-status', { hasText: 'Done' }).waitFor();
    // The image went as the part `image`, its bytes as they are.
    const frame = sentBinary.map((b) => Buffer.from(b)).find((b) => b.subarray(0, 4).toString() === 'KLNB');
    const header = JSON.parse(frame.subarray(8, 8 + frame.readUInt32LE(4)).toString());
    assert.equal(header.part, 'image');
    assert.equal(header.dtype, 'bytes');
    assert.deepEqual(frame.subarray(8 + frame.readUInt32LE(4)), image);
    // A 96 x 72 grid: 2 * 95 * 71 top triangles and 3 per boundary edge.
    const triangles = 2 * 95 * 71 + 3 * (2 * 95 + 2 * 71);
    assert.equal(await page.locator('[data-stat="triangles"]').textContent(), triangles.toLocaleString('en-US'));
    assert.equal(Number(await page.locator('.relief-canvas').getAttribute('data-triangles')), triangles);
    await settled();
    const first = await canvasPixels();
    assert.ok(first.lit > first.total * 0.05, `the mesh covers ${first.lit} of ${first.total} pixels`);
    await shot('relief', LAPTOP);
    await shot('relief', TABLET);
    await page.setViewportSize(LAPTOP);
    await settled();
    jobHref = await page.locator('a', { hasText: 'Open the job' }).getAttribute('href');
  });

  test('dragging turns the view, the wheel zooms, a double-click resets it', async () => {
    const canvas = page.locator('.relief-canvas');
    const box = await canvas.boundingBox();
    await settled();
    const start = await canvasPixels();
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width / 2 + 120, box.y + box.height / 2 + 40, { steps: 6 });
    await page.mouse.up();
    await settled();
    const turned = await canvasPixels();
    assert.notEqual(turned.hash, start.hash, 'the drag turned the view');
    await page.mouse.wheel(0, -600);
    await settled();
    const zoomed = await canvasPixels();
    assert.ok(zoomed.lit > turned.lit, `zooming in covers more pixels (${turned.lit} -> ${zoomed.lit})`);
    await canvas.dblclick();
    await settled();
    assert.equal((await canvasPixels()).hash, start.hash, 'a double-click puts the camera back');
    // From the keyboard too.
    await canvas.focus();
    await page.keyboard.press('ArrowLeft');
    await settled();
    assert.notEqual((await canvasPixels()).hash, start.hash);
  });

  test('STL and GLB downloads are the meshes the server made', async () => {
    const [stl] = await Promise.all([page.waitForEvent('download'), page.click('button[data-format="stl"]')]);
    assert.equal(stl.suggestedFilename(), 'dome.stl');
    const s = readFileSync(await stl.path());
    const n = s.readUInt32LE(80);
    assert.equal(s.length, 84 + 50 * n);
    assert.equal(n, 2 * 95 * 71 + 3 * (2 * 95 + 2 * 71));
    // GLB: made by a second job with the same image and params.
    const [glb] = await Promise.all([page.waitForEvent('download', { timeout: 30000 }), page.click('button[data-format="glb"]')]);
    assert.equal(glb.suggestedFilename(), 'dome.glb');
    const g = readFileSync(await glb.path());
    assert.equal(g.subarray(0, 4).toString(), 'glTF');
    assert.equal(g.readUInt32LE(8), g.length);
    const json = JSON.parse(g.subarray(20, 20 + g.readUInt32LE(12)).toString());
    assert.equal(json.accessors[1].count, 3 * n);
    assert.equal(json.accessors[1].componentType, 5125);
  });

  test('a dropped image is taken like a chosen one; a damaged one is refused on its field', async () => {
    const broken = image.subarray(0, image.length - 30);
    await page.evaluate((bytes) => {
      const dt = new DataTransfer();
      dt.items.add(new File([new Uint8Array(bytes)], 'broken.png', { type: 'image/png' }));
      const zone = document.querySelector('.dropzone');
      zone.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
      zone.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, [...broken]);
    await page.locator('.relief-preview p', { hasText: 'broken.png' }).waitFor();
    await page.click('button[type="submit"]');
    await page.locator('#relief-file-err', { hasText: 'truncated PNG' }).waitFor();
    await page.locator('.relief-status', { hasText: 'Refused' }).waitFor();
    // A value out of range is the server's word too, shown on its field.
    await page.setInputFiles('#relief-file', { name: 'dome.png', mimeType: 'image/png', buffer: image });
    await page.locator('#relief-max_side_px').fill('5000');
    await page.click('button[type="submit"]');
    await page.locator('.field[data-field="params.max_side_px"] .field-error', { hasText: 'max_side_px' }).waitFor();
    // Text a number field cannot read ("50e") is refused on its field, not sent as the default.
    await page.locator('#relief-max_side_px').fill('256');
    await page.locator('#relief-width_mm').fill('');
    await page.locator('#relief-width_mm').pressSequentially('50e');
    const sent = sentBinary.length;
    await page.click('button[type="submit"]');
    await page.locator('#relief-width_mm-err', { hasText: 'width_mm is not a number' }).waitFor();
    assert.equal(await page.locator('#relief-width_mm').getAttribute('aria-invalid'), 'true');
    assert.match(await page.locator('.relief-status').textContent(), /Not sent: width_mm is not a number/);
    assert.equal(sentBinary.length, sent, 'nothing was sent');
  });

  test('the job page shows the mesh in 3-D as well', async () => {
    await page.goto(kilnd.url + '/' + jobHref);
    await page.locator('.relief-card .relief-canvas').waitFor();
    await settled();
    const px = await canvasPixels();
    assert.ok(px.lit > px.total * 0.05);
    await page.locator('.relief-card button', { hasText: 'Download STL' }).waitFor();
    await shot('relief-job', LAPTOP);
  });
});
