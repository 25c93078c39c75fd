// Line charts in SVG, no library: a chart of one or more series sharing a
// time axis, with a light grid, the latest values in the legend and a
// hover read-out. Values reach the page as text only.
import { h } from './dom.js';

const NS = 'http://www.w3.org/2000/svg';

function s(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

// Formats of values.
export const fmt = {
  percent: (v) => `${v.toFixed(v < 10 ? 1 : 0)}%`,
  bytes: (v) => {
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (Math.abs(v) >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    return `${v.toFixed(v < 10 && i > 0 ? 1 : 0)} ${u[i]}`;
  },
  rate: (v) => `${fmt.bytes(v)}/s`,
  count: (v) => (Number.isInteger(v) ? String(v) : ''),
};

// niceMax rounds a maximum up to 1, 2 or 5 times a power of ten (or of
// 1024 for bytes), so grid lines fall on round values.
function niceMax(max, binary) {
  if (!(max > 0)) return 1;
  // Scale bytes to their unit (KiB, MiB, …), then round in tens.
  const unit = binary ? Math.pow(1024, Math.max(0, Math.floor(Math.log(max) / Math.log(1024)))) : 1;
  const v = max / unit;
  const q = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * q) return m * q * unit;
  return 10 * q * unit;
}

// lineChart renders series [{label, values, color}] over times at (Date
// strings). opts: title, format (fmt.*), min/max (fixed y range), span
// (milliseconds shown, ending now), binary (byte scales).
export function lineChart(at, series, opts = {}) {
  const W = 520, H = 170, L = 56, R = 10, T = 10, B = 24;
  const times = at.map((t) => new Date(t).getTime());
  const end = Date.now();
  const start = opts.span ? end - opts.span : (times[0] || end - 1);
  let max = opts.max;
  if (max === undefined) {
    max = 0;
    for (const sr of series) for (const v of sr.values) if (v > max) max = v;
    max = niceMax(max, opts.binary);
  }
  const min = opts.min || 0;
  const x = (t) => L + ((t - start) / Math.max(end - start, 1)) * (W - L - R);
  const y = (v) => T + (1 - (v - min) / Math.max(max - min, 1e-9)) * (H - T - B);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart-svg', role: 'img', 'aria-label': opts.title || 'chart' });
  for (let i = 0; i <= 4; i++) {
    const v = min + ((max - min) * i) / 4;
    svg.append(s('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), class: 'grid' }),
      s('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'axis' }, opts.format ? opts.format(v) : v));
  }
  for (let i = 0; i <= 4; i++) {
    const t = start + ((end - start) * i) / 4;
    const d = new Date(t);
    const label = (end - start) > 36e5 * 30 ? d.toLocaleDateString([], { month: 'short', day: 'numeric' })
      : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    svg.append(s('text', { x: x(t), y: H - 6, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle', class: 'axis' }, label));
  }
  // A gap longer than three steps breaks the line (no sampling then).
  const gap = (opts.step || 10) * 1000 * 3;
  for (const sr of series) {
    let d = '';
    for (let i = 0; i < times.length; i++) {
      if (times[i] < start) continue;
      const move = d === '' || times[i] - times[i - 1] > gap;
      d += `${move ? 'M' : 'L'}${x(times[i]).toFixed(1)},${y(Math.min(sr.values[i], max)).toFixed(1)}`;
    }
    svg.append(s('path', { d, class: 'line', stroke: sr.color, fill: 'none' }));
  }
  const cursor = s('line', { x1: 0, x2: 0, y1: T, y2: H - B, class: 'cursor', visibility: 'hidden' });
  svg.append(cursor);
  const legend = h('div', { class: 'legend' });
  const showAt = (i) => {
    legend.replaceChildren(...series.map((sr) => h('span', {},
      h('i', { style: `background:${sr.color}` }), `${sr.label} `,
      h('strong', {}, i >= 0 && sr.values.length ? (opts.format || String)(sr.values[i]) : '—'))),
    i >= 0 && i < times.length - 1 ? h('span', { class: 'meta' }, new Date(times[i]).toLocaleTimeString()) : '');
  };
  showAt(times.length - 1);
  svg.addEventListener('mousemove', (e) => {
    const r = svg.getBoundingClientRect();
    const t = start + ((e.clientX - r.left) / r.width * W - L) / (W - L - R) * (end - start);
    let best = -1;
    for (let i = 0; i < times.length; i++) if (best < 0 || Math.abs(times[i] - t) < Math.abs(times[best] - t)) best = i;
    if (best < 0) return;
    cursor.setAttribute('x1', x(times[best])); cursor.setAttribute('x2', x(times[best]));
    cursor.setAttribute('visibility', 'visible');
    showAt(best);
  });
  svg.addEventListener('mouseleave', () => { cursor.setAttribute('visibility', 'hidden'); showAt(times.length - 1); });
  return h('figure', { class: 'chart' }, h('figcaption', {}, opts.title || ''), svg, legend);
}
