// What the browser tests of the kind pages share: Debian's Chromium driven by
// playwright-core, a page that records its errors and the binary frames it sends,
// and screenshots that also check nothing sticks out sideways.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const ARTEFACTS = process.env.E2E_ARTEFACTS || join(process.cwd(), 'artefacts');
export const LAPTOP = { width: 1366, height: 768 };
export const TABLET = { width: 820, height: 1180 };
export const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];

/* The file a download link of the page gives: {name, bytes}. */
export async function download(page, selector) {
  const [d] = await Promise.all([page.waitForEvent('download'), page.locator(selector).click()]);
  return { name: d.suggestedFilename(), bytes: readFileSync(await d.path()) };
}

/* A browser and a page: page errors and console errors go to `problems`, binary
 * WebSocket frames the page sends to `sentBinary`. */
export async function openPage(problems, sentBinary) {
  mkdirSync(ARTEFACTS, { recursive: true });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  const context = await browser.newContext({ viewport: LAPTOP, acceptDownloads: true });
  const page = await context.newPage();
  page.setDefaultTimeout(30000);
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  page.on('websocket', (ws) => ws.on('framesent', (f) => {
    if (typeof f.payload !== 'string') sentBinary.push(Buffer.from(f.payload));
  }));
  return { browser, page };
}

/* A full-page screenshot at `viewport` into ARTEFACTS; fails when the page is wider
 * than the viewport. */
export async function shot(page, name, viewport) {
  await page.setViewportSize(viewport);
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(ARTEFACTS, `${name}-${viewport === TABLET ? 'tablet' : 'laptop'}.png`), fullPage: true });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `${name} overflows horizontally by ${overflow}px at ${viewport.width}px`);
}
