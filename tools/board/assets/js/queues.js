// @ts-check
// The Queues panel: every queue's depth over the last minutes, and the table of rates.

import { $, el, svg } from './dom.js';

/**
 * @typedef {import('./types.js').Sample} Sample
 * @typedef {import('./types.js').QueueHistory} QueueHistory
 * @typedef {import('./types.js').QueueRow} QueueRow
 */

const WINDOW_MS = 5 * 60 * 1000;
const QUEUE_COLORS = ['#1f6feb', '#7aa7f5', '#2da44e', '#8fd19e', '#bf8700', '#e3c26b', '#cf222e'];

/** @type {{queues: string[], points: Sample[]}} */
const chart = { queues: [], points: [] };

/** @param {QueueHistory} history */
export function setHistory(history) {
  chart.queues = history.queues;
  chart.points = history.points;
  drawChart();
}

/** @param {Sample} sample */
export function addSample(sample) {
  chart.points.push(sample);
  const oldest = sample.t - WINDOW_MS * 2;
  while (chart.points.length && chart.points[0].t < oldest) chart.points.shift();
  drawChart();
}

/**
 * @param {number} value
 * @returns {number}
 */
function niceMax(value) {
  if (value <= 10) return 10;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (value <= step * magnitude) return step * magnitude;
  }
  return 10 * magnitude;
}

function drawChart() {
  const box = $('#queue-chart');
  const width = 900;
  const height = 230;
  const pad = { left: 44, right: 12, top: 10, bottom: 24 };
  const points = chart.points;
  const now = points.length ? points[points.length - 1].t : Date.now();
  // The last five minutes; less while the board has not seen that much yet, so a fresh
  // board's first minute fills the width instead of a sliver at its right edge.
  const seen = points.length ? now - points[0].t : 0;
  const span = Math.min(WINDOW_MS, Math.max(60000, Math.ceil(seen / 60000) * 60000));
  const from = now - span;
  const visible = points.filter((p) => p.t >= from);
  let top = 0;
  for (const p of visible) for (const d of p.depth) if (d !== null && d > top) top = d;
  const ymax = niceMax(top);
  /** @param {number} t */
  const x = (t) => pad.left + ((t - from) / span) * (width - pad.left - pad.right);
  /** @param {number} v */
  const y = (v) => height - pad.bottom - (v / ymax) * (height - pad.top - pad.bottom);

  const drawing = svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'queue depths over time' });
  for (let i = 0; i <= 5; i += 1) {
    const v = (ymax / 5) * i;
    drawing.append(
      svg('line', { x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v), class: 'gridline' }),
      svg('text', { x: pad.left - 6, y: y(v) + 4, class: 'axis', 'text-anchor': 'end' }, Math.round(v)),
    );
  }
  const step = span <= 60000 ? 10000 : 60000;
  for (let back = 0; back <= span; back += step) {
    const label = back === 0 ? 'now' : step < 60000 ? `-${back / 1000} s` : `-${back / 60000} min`;
    drawing.append(svg('text', { x: x(now - back), y: height - 6, class: 'axis', 'text-anchor': back === span ? 'start' : 'middle' }, label));
  }
  /** @type {HTMLElement[]} */
  const legend = [];
  chart.queues.forEach((queue, i) => {
    const color = QUEUE_COLORS[i % QUEUE_COLORS.length];
    let d = '';
    let max = 0;
    /** @type {number|null} */
    let last = null;
    let pen = false;
    for (const p of visible) {
      const v = p.depth[i];
      if (v === null || v === undefined) {
        pen = false;
        continue;
      }
      d += `${pen ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
      max = Math.max(max, v);
      last = v;
    }
    const retry = queue.endsWith('.retry');
    drawing.append(svg('path', {
      d: d || 'M0,0',
      class: `series${retry ? ' retry' : ''}`,
      stroke: color,
      'data-queue': queue,
      'data-max': max,
      'data-last': last === null ? '' : last,
    }));
    legend.push(el('span', { class: 'key', 'data-queue': queue },
      el('i', { style: `background:${color}` }), `${queue} `, el('b', {}, last === null ? '–' : last)));
  });
  box.replaceChildren(drawing, el('div', { class: 'legend' }, legend));
}

/** @param {QueueRow[]} rows */
export function drawQueueTable(rows) {
  /** @param {number|null} v */
  const cell = (v) => el('td', { class: 'num' }, v === null || v === undefined ? '–' : v);
  $('#queue-table tbody').replaceChildren(...rows.map((r) => el('tr', { class: r.retry ? 'retry' : '', 'data-queue': r.name },
    el('td', {}, r.name), cell(r.messages), cell(r.unacked), cell(r.consumers), cell(r.publish), cell(r.deliver))));
}
