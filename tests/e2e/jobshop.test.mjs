// Browser tests of the Schedule page (web_ui/kinds/jobshop.js) against the real
// kilnd in Debian's chromium: a pasted instance sent as the part `instance`, the
// live best and bound as the search improves, the Gantt chart redrawn from each
// progress's schedule while the search runs and drawn from the result (one bar
// per operation, where the schedule puts it, jobs in their colours),
// an uploaded file, a bad instance refused on its field (and text a number field
// cannot read), the chart on the job's
// page, and screenshots at laptop and tablet sizes.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LAPTOP, TABLET, openPage, shot } from './browser.mjs';
import { startKilnd } from './kilnd.mjs';

const INSTANCES = join(process.cwd(), '..', 'bench', 'jobshop', 'instances');

let kilnd, browser, page;
const problems = [];
const sentBinary = [];

function orlib(text) {
  const nums = text.split(/\s+/).filter(Boolean).map(Number);
  const [n, m] = nums;
  return Array.from({ length: n }, (_, j) => Array.from({ length: m }, (_, k) =>
    [nums[2 + 2 * (j * m + k)], nums[3 + 2 * (j * m + k)]]));
}

/* HSL (degrees, %, %) to [r, g, b] 0..255, as the browser computes it. */
function hsl(h, sat, light) {
  const S = sat / 100, L = light / 100, a = S * Math.min(L, 1 - L);
  const f = (n) => {
    const k = (n + h / 30) % 12;
    return Math.round(255 * (L - a * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return [f(0), f(8), f(4)];
}

/* Reads the chart's pixels where the schedule puts each operation (the page's
 * layout: 48 px of labels, 16 px right margin, 10 px top, rows of 24 px for up to
 * 20 machines) and returns the operations whose pixel is not their job's colour. */
async function misdrawn(selector, jobs, starts, span) {
  return page.evaluate(({ sel, jobs, starts, span }) => {
    const c = document.querySelector(sel);
    const ctx = c.getContext('2d');
    const dpr = c.width / c.clientWidth, plotW = c.clientWidth - 48 - 16;
    const x = (t) => 48 + (t / span) * plotW;
    const out = [];
    jobs.forEach((ops, j) => ops.forEach(([mach, d], k) => {
      const bx = x(starts[j][k]), bw = x(starts[j][k] + d) - bx;
      const px = ctx.getImageData(Math.round((bx + Math.min(3, bw / 2)) * dpr), Math.round((10 + mach * 24 + 3) * dpr), 1, 1).data;
      out.push({ j, k, rgb: [px[0], px[1], px[2]] });
    }));
    return out;
  }, { sel: selector, jobs, starts, span }).then((px) => px.filter(({ j, rgb }) => {
    const want = hsl((j * 137.508) % 360, 62, 58);
    return rgb.some((v, i) => Math.abs(v - want[i]) > 3);
  }));
}

describe('the Schedule page', () => {
  const ft06 = readFileSync(join(INSTANCES, 'ft06.txt'), 'utf8');
  const la02 = readFileSync(join(INSTANCES, 'la02.txt'), 'utf8');
  let jobHref;

  before(async () => {
    kilnd = await startKilnd();
    ({ browser, page } = await openPage(problems, sentBinary));
  });

  after(async () => {
    await browser?.close();
    await kilnd?.stop();
    assert.deepEqual(problems, []);
  });

  test('a pasted instance is scheduled and drawn as a Gantt chart', async () => {
    await page.goto(kilnd.url + '/#/jobshop');
    await page.locator('h1', { hasText: 'Schedule' }).waitFor();
    assert.equal(await page.locator('#nav a[href="#/jobshop"]').getAttribute('aria-current'), 'page');
    // The search's fields come from the kind's schema, with its defaults.
    assert.equal(await page.locator('#jobshop-time_limit_ms').inputValue(), '2000');
    assert.equal(await page.locator('#jobshop-seed').inputValue(), '0');
    await page.locator('button', { hasText: 'Example: ft06' }).click();
    assert.equal(await page.locator('#jobshop-instance').inputValue(), ft06);
    await page.locator('#jobshop-target').fill('55');
    await page.locator('#jobshop-walks').fill('1');
    await page.click('button[type="submit"]');
    await page.locator('.jobshop-status', { hasText: 'Done' }).waitFor();
    // The instance went as the part `instance`, its bytes as they are.
    const frame = sentBinary.find((b) => b.subarray(0, 4).toString() === 'KLNB');
    const header = JSON.parse(frame.subarray(8, 8 + frame.readUInt32LE(4)).toString());
    assert.equal(header.part, 'instance');
    assert.equal(header.dtype, 'bytes');
    assert.equal(frame.subarray(8 + frame.readUInt32LE(4)).toString(), ft06);
    assert.equal(await page.locator('[data-stat="makespan"]').textContent(), '55');
    assert.equal(await page.locator('[data-live="best"]').textContent(), '55');
    const canvas = page.locator('.view-jobshop .gantt-canvas');
    assert.equal(await canvas.getAttribute('data-bars'), '36');   // 6 jobs x 6 operations
    assert.equal(await canvas.getAttribute('data-best'), '55');
    assert.equal(await page.locator('.view-jobshop .gantt-legend li').count(), 6);
    // Hovering a bar names its operation, consistent with the schedule.
    await canvas.focus();
    await page.keyboard.press('ArrowRight');
    const tip = await page.locator('.view-jobshop .gantt-tip').textContent();
    assert.match(tip, /^job \d+, operation \d+: machine \d+, \d+ to \d+ \(\d+\)$/);
    const [, j, k, mach, s, e, d] = tip.match(/job (\d+), operation (\d+): machine (\d+), (\d+) to (\d+) \((\d+)\)/).map(Number);
    const jobs = orlib(ft06);
    assert.deepEqual([jobs[j][k][0], jobs[j][k][1]], [mach, d]);
    assert.equal(e - s, d);
    await shot(page, 'jobshop', LAPTOP);
    await shot(page, 'jobshop', TABLET);
    await page.setViewportSize(LAPTOP);
    jobHref = await page.locator('.jobshop-result a', { hasText: 'Open the job' }).getAttribute('href');
  });

  test('the best makespan and the bound update while the search runs', async () => {
    await page.setInputFiles('#jobshop-file', { name: 'la02.txt', mimeType: 'text/plain', buffer: Buffer.from(la02) });
    await page.waitForFunction((t) => document.querySelector('#jobshop-instance').value === t, la02);
    await page.locator('#jobshop-target').fill('');
    await page.locator('#jobshop-seed').fill('4');
    await page.locator('#jobshop-time_limit_ms').fill('3000');
    // Record every value the live figures and the chart's mark take.
    await page.evaluate(() => {
      window.__seen = [];
      const best = document.querySelector('[data-live="best"]');
      new MutationObserver(() => window.__seen.push(best.textContent)).observe(best, { childList: true, characterData: true, subtree: true });
    });
    await page.click('button[type="submit"]');
    await page.locator('.jobshop-status', { hasText: 'Done' }).waitFor();
    const seen = (await page.evaluate(() => window.__seen)).filter((v) => v !== '—').map((v) => Number(v.replace(/,/g, '')));
    assert.ok(seen.length >= 1, 'the best was shown while searching');
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i] <= seen[i - 1], `the best only falls: ${seen}`);
    assert.equal(await page.locator('[data-stat="makespan"]').textContent(), '655');
    assert.equal(await page.locator('[data-live="lower_bound"]').textContent(), '655');
    assert.equal(await page.locator('.view-jobshop .gantt-canvas').getAttribute('data-bars'), '50');
    assert.equal(await page.locator('[data-stat="optimal"]').textContent(), 'yes (meets the bound)');
  });

  test('the Gantt chart redraws with each better schedule while the search runs', async () => {
    const ta01 = readFileSync(join(INSTANCES, 'ta01.txt'), 'utf8');
    // The page keeps the latest `progress` it received (its listener runs before the
    // app's), so that each redraw can be checked against the schedule it came with.
    await page.addInitScript(() => {
      const Native = window.WebSocket;
      window.WebSocket = class extends Native {
        constructor(...args) {
          super(...args);
          this.addEventListener('message', (e) => {
            if (typeof e.data !== 'string') return;
            const m = JSON.parse(e.data);
            if (m.op === 'progress') window.__progress = m;
          });
        }
      };
    });
    await page.reload();
    await page.locator('h1', { hasText: 'Schedule' }).waitFor();
    await page.locator('#jobshop-instance').fill(ta01);
    await page.locator('#jobshop-target').fill('');
    await page.locator('#jobshop-seed').fill('7');
    await page.locator('#jobshop-walks').fill('1');
    await page.locator('#jobshop-time_limit_ms').fill('2500');
    // At every new schedule drawn: what the chart says, whether the search still
    // runs, and the operations whose bar is not where that progress's schedule puts
    // it, in its job's colour (bars of 4 px and more; 15 machines: rows of 24 px).
    await page.evaluate((jobs) => {
      window.__frames = [];
      const c = document.querySelector('.view-jobshop .gantt-canvas');
      const status = document.querySelector('.jobshop-status');
      const hsl = (h, sat, light) => {
        const S = sat / 100, L = light / 100, a = S * Math.min(L, 1 - L);
        const f = (n) => {
          const k = (n + h / 30) % 12;
          return Math.round(255 * (L - a * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
        };
        return [f(0), f(8), f(4)];
      };
      let last = c.dataset.schedules;
      new MutationObserver(() => {
        if (c.dataset.schedules === last) return;
        last = c.dataset.schedules;
        const m = window.__progress;
        const frame = { bars: Number(c.dataset.bars), end: c.dataset.end, best: c.dataset.best,
          searching: /^Searching/.test(status.textContent), wrong: [] };
        if (frame.searching && m && Array.isArray(m.starts)) {
          frame.sent = String(m.best);
          const ctx = c.getContext('2d'), dpr = c.width / c.clientWidth, plotW = c.clientWidth - 48 - 16;
          const x = (t) => 48 + (t / m.best) * plotW;
          jobs.forEach((ops, j) => ops.forEach(([mach, d], k) => {
            const bx = x(m.starts[j][k]), bw = x(m.starts[j][k] + d) - bx;
            if (bw < 4) return;
            const px = ctx.getImageData(Math.round((bx + 2) * dpr), Math.round((10 + mach * 24 + 3) * dpr), 1, 1).data;
            const want = hsl((j * 137.508) % 360, 62, 58);
            if (want.some((v, i) => Math.abs(v - px[i]) > 3)) frame.wrong.push([j, k]);
          }));
        }
        window.__frames.push(frame);
      }).observe(c, { attributes: true });
    }, orlib(ta01));
    await page.click('button[type="submit"]');
    await page.locator('.jobshop-status', { hasText: 'Done' }).waitFor();
    const frames = await page.evaluate(() => window.__frames);
    const live = frames.filter((f) => f.searching && f.sent);
    assert.ok(live.length >= 2, `the chart was redrawn before done: ${JSON.stringify(frames)}`);
    for (const f of live) {
      assert.equal(f.bars, 225, 'every operation of ta01 is drawn');
      assert.equal(f.best, f.sent, 'the mark is the progress\'s best');
      assert.equal(f.end, f.sent, 'the bars drawn end at that best: they are its schedule');
      assert.deepEqual(f.wrong, [], 'each bar where that schedule puts it');
    }
    assert.ok(new Set(live.map((f) => f.best)).size >= 2, `redrawn as the best fell: ${live.map((f) => f.best)}`);
    // Then the result's schedule, drawn the same way.
    const canvas = page.locator('.view-jobshop .gantt-canvas');
    const makespan = (await page.locator('[data-stat="makespan"]').textContent()).replace(/,/g, '');
    assert.equal(await canvas.getAttribute('data-bars'), '225');
    assert.equal(await canvas.getAttribute('data-end'), makespan);
    assert.ok(Number(makespan) <= Number(live[live.length - 1].best));
  });

  test('a bad instance is refused on its field', async () => {
    await page.locator('#jobshop-instance').fill('2 2\n0 5 0 3\n1 2 0 2\n');
    await page.click('button[type="submit"]');
    await page.locator('#jobshop-instance-err', { hasText: 'params.instance' }).waitFor();
    assert.match(await page.locator('#jobshop-instance-err').textContent(), /twice/);
    assert.equal(await page.locator('#jobshop-instance').getAttribute('aria-invalid'), 'true');
    await page.locator('#jobshop-instance').fill(ft06);
    await page.locator('#jobshop-time_limit_ms').fill('0');
    await page.click('button[type="submit"]');
    await page.locator('.field[data-field="params.time_limit_ms"] .field-error', { hasText: 'time_limit_ms' }).waitFor();
    // Text a number field cannot read is refused on its field, not sent as the default.
    await page.locator('#jobshop-time_limit_ms').fill('');
    await page.locator('#jobshop-time_limit_ms').pressSequentially('300e');
    assert.equal(await page.locator('#jobshop-time_limit_ms').evaluate((i) => i.validity.badInput), true);
    const sent = sentBinary.length;
    await page.click('button[type="submit"]');
    await page.locator('#jobshop-time_limit_ms-err', { hasText: 'time_limit_ms is not a number' }).waitFor();
    assert.equal(await page.locator('#jobshop-time_limit_ms').getAttribute('aria-invalid'), 'true');
    assert.match(await page.locator('.jobshop-status').textContent(), /Not sent: time_limit_ms is not a number/);
    assert.equal(sentBinary.length, sent, 'nothing was sent');
    await page.locator('#jobshop-time_limit_ms').fill('200');
  });

  test('the job page draws the same chart, every operation where the schedule puts it', async () => {
    await page.goto(kilnd.url + '/' + jobHref);
    // Drawn (data-bars set) once the chart is on the page and laid out, which a
    // ResizeObserver reports after the canvas is attached: wait for the drawing.
    const canvas = page.locator('.jobshop-card .gantt-canvas[data-bars]');
    await canvas.waitFor();
    assert.equal(await canvas.getAttribute('data-bars'), '36');
    assert.equal(await canvas.getAttribute('data-best'), '55');
    // The start times as the server sent them (the scalar table), checked against
    // the instance, then found on the chart in their jobs' colours.
    const starts = JSON.parse(await page.locator('table.scalars tr', { has: page.locator('th', { hasText: /^starts$/ }) })
      .locator('td').textContent());
    const jobs = orlib(ft06);
    let end = 0;
    jobs.forEach((ops, j) => ops.forEach(([, d], k) => {
      if (k) assert.ok(starts[j][k] >= starts[j][k - 1] + ops[k - 1][1]);
      end = Math.max(end, starts[j][k] + d);
    }));
    assert.equal(end, 55);
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    assert.deepEqual(await misdrawn('.jobshop-card .gantt-canvas', jobs, starts, 55), []);
    await shot(page, 'jobshop-job', LAPTOP);
  });

  test('a job accepted before kilnd is killed shows its result once the page reconnects', async () => {
    await page.goto(kilnd.url + '/#/jobshop');
    await page.locator('#jobshop-instance').fill(ft06);
    await page.locator('#jobshop-target').fill('');
    await page.locator('#jobshop-seed').fill('11');
    await page.locator('#jobshop-time_limit_ms').fill('3000');
    await page.click('button[type="submit"]');
    await page.locator('.jobshop-status', { hasText: 'accepted' }).waitFor();
    // Waited for from before the kill: the message lasts only until the job, run
    // again after the restart, is done.
    const lost = page.locator('.jobshop-status', { hasText: 'connection to kilnd was lost' }).waitFor();
    await kilnd.restart({ signal: 'SIGKILL' }); // the accepted job runs again after the restart
    await lost;
    await page.locator('.jobshop-status', { hasText: 'Done: makespan' }).waitFor({ timeout: 60000 });
    assert.equal(await page.locator('.jobshop-form [aria-invalid="true"]').count(), 0, 'no field blamed');
  });
});
