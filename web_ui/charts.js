// Small canvas charts for the live dashboard: lines over the last few minutes
// (fed by the 1 Hz stats push) and bars for histograms. No library; colours come
// from the stylesheet's custom properties so the charts follow the theme.

import { el, fmtNum } from './dom.js';
import { niceTicks } from './render.js';

function cssVar(name, fallback) {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

/* Sizes the canvas backing store to its CSS box times the device pixel ratio. */
function fit(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth * dpr)), h = Math.max(1, Math.round(canvas.clientHeight * dpr));
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return { ctx, w: canvas.clientWidth, h: canvas.clientHeight };
}

const PALETTE = ['--c1', '--c2', '--c3', '--c4', '--c5', '--c6'];

/* A time-series line chart. series: [{key, label}]; push(tMs, {key: value}). */
export class LineChart {
  constructor({ title, series, windowS = 300, unit = '', integer = false }) {
    this.series = series.map((s, i) => ({ ...s, color: s.color || PALETTE[i % PALETTE.length], points: [] }));
    this.windowS = windowS;
    this.unit = unit;
    this.integer = integer;
    this.canvas = el('canvas', { class: 'chart', role: 'img', 'aria-label': title });
    this.latest = el('p', { class: 'chart-latest', 'aria-live': 'off' });
    this.legend = el('ul', { class: 'legend' }, this.series.map((s) =>
      el('li', { 'data-color': s.color }, el('span', { class: 'swatch ' + s.color.slice(2) }), s.label)));
    this.node = el('figure', { class: 'card chart-card' }, el('figcaption', {}, title), this.canvas, this.legend, this.latest);
    this.observer = new ResizeObserver(() => this.draw());
    this.observer.observe(this.canvas);
  }

  push(t, values) {
    for (const s of this.series) {
      const v = values[s.key];
      if (typeof v === 'number' && Number.isFinite(v)) s.points.push([t, v]);
      const cut = t - this.windowS * 1000 - 5000;
      while (s.points.length && s.points[0][0] < cut) s.points.shift();
    }
    this.latest.textContent = this.series.map((s) => {
      const last = s.points[s.points.length - 1];
      return `${s.label}: ${last ? fmtNum(last[1]) + this.unit : '—'}`;
    }).join(' · ');
    this.canvas.setAttribute('aria-label', `${this.node.querySelector('figcaption').textContent} — now ${this.latest.textContent}`);
    this.draw();
  }

  draw() {
    if (!this.canvas.isConnected) return;
    const { ctx, w, h } = fit(this.canvas);
    const fg = cssVar('--muted', '#9aa'), grid = cssVar('--grid', '#333');
    ctx.clearRect(0, 0, w, h);
    ctx.font = '11px system-ui, sans-serif';
    const now = Date.now(), t0 = now - this.windowS * 1000;
    let max = 0;
    for (const s of this.series) for (const [, v] of s.points) max = Math.max(max, v);
    if (max <= 0) max = this.integer ? 4 : 1;
    const ticks = niceTicks(0, max * 1.1, 4).filter((v) => !this.integer || Number.isInteger(v));
    const top = Math.max(max * 1.1, ticks[ticks.length - 1] || 1);
    const left = 44, right = 8, topPad = 8, bottom = 18;
    const pw = w - left - right, ph = h - topPad - bottom;
    const X = (t) => left + ((t - t0) / (now - t0)) * pw, Y = (v) => topPad + ph - (v / top) * ph;
    ctx.strokeStyle = grid;
    ctx.fillStyle = fg;
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (const v of ticks) {
      const y = Math.round(Y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(left, y);
      ctx.lineTo(w - right, y);
      ctx.stroke();
      ctx.fillText(fmtNum(v), left - 6, y);
    }
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    const minutes = this.windowS / 60;
    for (let m = 0; m <= minutes; m++) {
      const x = X(now - m * 60000);
      ctx.fillText(m === 0 ? 'now' : `−${m}m`, Math.min(Math.max(x, left + 10), w - right - 12), h - bottom + 4);
    }
    ctx.lineWidth = 2;
    ctx.lineJoin = 'round';
    for (const s of this.series) {
      if (!s.points.length) continue;
      ctx.strokeStyle = cssVar(s.color, '#8cf');
      ctx.beginPath();
      s.points.forEach(([t, v], i) => (i ? ctx.lineTo(X(t), Y(v)) : ctx.moveTo(X(t), Y(v))));
      ctx.stroke();
    }
  }
}

/* A bar chart of labelled values (a histogram: bucket label -> count). */
export class BarChart {
  constructor({ title, color = '--c2' }) {
    this.color = color;
    this.bars = [];
    this.canvas = el('canvas', { class: 'chart', role: 'img', 'aria-label': title });
    this.note = el('p', { class: 'chart-latest' });
    this.title = title;
    this.node = el('figure', { class: 'card chart-card' }, el('figcaption', {}, title), this.canvas, this.note);
    this.observer = new ResizeObserver(() => this.draw());
    this.observer.observe(this.canvas);
  }

  set(bars, note = '') {
    this.bars = bars;
    this.note.textContent = note;
    this.canvas.setAttribute('aria-label', `${this.title}: ${bars.map(([l, v]) => `${l}: ${fmtNum(v)}`).join(', ') || 'no data'}`);
    this.draw();
  }

  draw() {
    if (!this.canvas.isConnected) return;
    const { ctx, w, h } = fit(this.canvas);
    const fg = cssVar('--muted', '#9aa'), grid = cssVar('--grid', '#333');
    ctx.clearRect(0, 0, w, h);
    ctx.font = '11px system-ui, sans-serif';
    const left = 44, right = 8, topPad = 8, bottom = 18, pw = w - left - right, ph = h - topPad - bottom;
    if (!this.bars.length) {
      ctx.fillStyle = fg;
      ctx.textAlign = 'center';
      ctx.fillText('no data yet', w / 2, h / 2);
      return;
    }
    const max = Math.max(1, ...this.bars.map(([, v]) => v));
    const ticks = niceTicks(0, max, 4);
    const top = Math.max(max, ticks[ticks.length - 1]);
    ctx.strokeStyle = grid;
    ctx.fillStyle = fg;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (const v of ticks) {
      const y = Math.round(topPad + ph - (v / top) * ph) + 0.5;
      ctx.beginPath();
      ctx.moveTo(left, y);
      ctx.lineTo(w - right, y);
      ctx.stroke();
      ctx.fillText(fmtNum(v), left - 6, y);
    }
    const bw = pw / this.bars.length;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    this.bars.forEach(([label, v], i) => {
      const bh = (v / top) * ph;
      ctx.fillStyle = cssVar(this.color, '#8cf');
      ctx.fillRect(left + i * bw + bw * 0.15, topPad + ph - bh, bw * 0.7, bh);
      ctx.fillStyle = fg;
      ctx.fillText(label, left + (i + 0.5) * bw, h - bottom + 4);
    });
  }
}
