// @ts-check
// The selected order's waterfall: from the spans the services export to the board (OTLP,
// `POST /v1/traces`), one row per request and per event delivered to a queue, with the time
// the event spent in the outbox, in its queue and in its handler.

import { $, el, svg } from './dom.js';

/** @typedef {import('./types.js').Waterfall} Waterfall */

/** What each phase is, for the legend and each bar's tooltip. */
const PHASES = {
  request: 'HTTP request served',
  outbox: 'in the outbox (written with the order, until the relay published it)',
  publish: 'published from a handler, until the broker confirmed',
  queue: 'in the queue, waiting for a consumer',
  handler: 'in the consumer\u2019s handler',
};

/**
 * @param {number} ms
 * @returns {string}
 */
function duration(ms) {
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 10) return `${ms.toFixed(0)} ms`;
  return `${ms.toFixed(1)} ms`;
}

/** @param {Waterfall|null} fall */
export function drawWaterfall(fall) {
  const box = $('#waterfall');
  if (!fall || !fall.rows.length) {
    box.dataset.rows = '0';
    box.replaceChildren(el('p', { class: 'note' },
      'No spans for this order: start the services with OTEL_EXPORTER_OTLP_ENDPOINT set to this board\u2019s address (scripts/up.sh does) to see where each event spent its time.'));
    return;
  }
  const width = 900;
  const labelWidth = 300;
  const rowHeight = 22;
  const top = 18;
  const height = top + rowHeight * fall.rows.length + 6;
  const span = Math.max(fall.total_ms, 1);
  /** @param {number} ms */
  const x = (ms) => labelWidth + ((width - labelWidth - 200) * ms) / span;
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'waterfall of the order\u2019s events' },
    svg('text', { x: labelWidth, y: 12, class: 'axis' }, '0'),
    svg('text', { x: width - 200, y: 12, class: 'axis', 'text-anchor': 'end' }, duration(span)));
  fall.rows.forEach((row, i) => {
    const y = top + rowHeight * i;
    const last = row.phases[row.phases.length - 1];
    const group = svg('g', { class: `row${row.error ? ' failed' : ''}`, 'data-label': row.label, 'data-queue': row.queue ?? '' },
      svg('title', {}, `${row.label} (${row.service})${row.error ? `\nfailed: ${row.error}` : ''}`),
      svg('text', { x: 4, y: y + 14, class: 'label' }, row.label.length > 44 ? `${row.label.slice(0, 43)}\u2026` : row.label),
      row.phases.map((p) => svg('rect', {
        x: x(p.start_ms), y: y + 4, width: Math.max(x(p.start_ms + p.ms) - x(p.start_ms), 1.5), height: rowHeight - 8,
        class: `phase p-${p.phase}`, 'data-phase': p.phase, 'data-ms': p.ms,
      }, svg('title', {}, `${PHASES[p.phase]}: ${duration(p.ms)}`))),
      last ? svg('text', { x: x(last.start_ms + last.ms) + 4, y: y + 14, class: 'took' },
        row.phases.filter((p) => p.phase !== 'request').map((p) => `${p.phase[0]} ${duration(p.ms)}`).join(' \u00b7 ') || duration(last.ms)) : null);
    chart.append(group);
  });
  box.dataset.rows = String(fall.rows.length);
  box.replaceChildren(
    el('div', { class: 'legend' }, Object.entries(PHASES).map(([phase, what]) => el('span', { class: 'key', title: what }, el('i', { class: `p-${phase}` }), phase))),
    chart);
}
