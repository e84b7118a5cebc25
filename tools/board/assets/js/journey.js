// @ts-check
// The Journey panel: the selected order's swimlane, step by step with why each step was safe.

import { $, el, money, svg } from './dom.js';
import { drawWaterfall } from './waterfall.js';

/** @typedef {import('./types.js').Journey} Journey */
/** @typedef {import('./types.js').JourneyAnswer} JourneyAnswer */
/** @typedef {import('./types.js').OrderRow} OrderRow */

/** @type {{id: string|null, timer: ReturnType<typeof setInterval>|null}} */
const shown = { id: null, timer: null };

/**
 * Show order `id`'s journey, and look again every few seconds: duplicates and DLQ hops add to
 * a journey without changing the order's status.
 * @param {string} id
 */
export function showJourney(id) {
  shown.id = id;
  loadJourney();
  if (shown.timer) clearInterval(shown.timer);
  shown.timer = setInterval(loadJourney, 3000);
}

/** Look at the shown journey again now (after an action changed it). */
export async function refreshJourney() {
  await loadJourney();
}

async function loadJourney() {
  const id = shown.id;
  if (!id) return;
  const path = `/api/orders/${encodeURIComponent(id)}/journey`;
  try {
    const response = await fetch(path);
    /** @type {JourneyAnswer & {error?: string}} */
    const data = await response.json();
    if (id !== shown.id) return;
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    $('#journey-text').href = `${path}?format=text`;
    $('#journey-mermaid').href = `${path}?format=mermaid`;
    $('#journey-links').hidden = false;
    drawJourney(data.lanes, data.journey);
    drawMoves(data.requestable || []);
    drawOrderLines(data.order);
    drawWaterfall(data.waterfall);
  } catch (error) {
    $('#journey-title').textContent = error instanceof Error ? error.message : String(error);
  }
}

/**
 * What the order holds: each line with its name and unit price as they were when it was
 * placed, and the total (or "price unknown" when order-svc kept no price).
 * @param {OrderRow|null} order
 */
function drawOrderLines(order) {
  const box = $('#journey-order');
  if (!order) {
    box.replaceChildren();
    return;
  }
  /** @param {number|null|undefined} minor @param {string|null|undefined} currency */
  const price = (minor, currency) => (minor !== null && minor !== undefined && currency ? money(minor, currency) : 'price unknown');
  const rows = order.lines.map((l) => el('tr', { 'data-item': l.item, 'data-qty': l.qty, 'data-unit-price': l.unit_price ?? '' },
    el('td', {}, l.item), el('td', {}, l.name || ''), el('td', { class: 'num' }, l.qty),
    el('td', { class: 'num' }, price(l.unit_price, l.currency)),
    el('td', { class: 'num' }, l.unit_price !== null && l.unit_price !== undefined && l.currency ? money(l.unit_price * l.qty, l.currency) : '')));
  box.replaceChildren(el('table', { class: 'grid lines', 'data-order-id': order.order_id, 'data-total': order.total ?? '' },
    el('thead', {}, el('tr', {}, el('th', {}, 'item'), el('th', {}, 'name'), el('th', {}, 'qty'), el('th', {}, 'unit price'), el('th', {}, 'line'))),
    el('tbody', {}, rows),
    el('tfoot', {}, el('tr', {}, el('td', { colspan: 4 }, `total (${order.lines.length} line${order.lines.length === 1 ? '' : 's'})`),
      el('td', { class: `num total${order.total === null ? ' unknown' : ''}` }, price(order.total, order.currency))))));
}

/**
 * The Ship and Deliver buttons: each asks for the status it names, and is enabled when the
 * server says the order may become it.
 * @param {string[]} requestable
 */
function drawMoves(requestable) {
  $('#journey-actions').hidden = false;
  for (const button of document.querySelectorAll('#journey-actions button[data-status]')) {
    if (!(button instanceof HTMLButtonElement)) continue;
    button.disabled = !requestable.includes(button.dataset.status || '');
  }
}

/**
 * @param {string[]} lanes
 * @param {Journey} journey
 */
function drawJourney(lanes, journey) {
  $('#journey-title').textContent = journey.headline;
  const steps = journey.steps;
  const width = 900;
  const laneWidth = (width - 90) / lanes.length;
  /** @param {string} name */
  const laneX = (name) => 90 + laneWidth * (lanes.indexOf(name) + 0.5);
  const rowHeight = 34;
  const top = 34;
  const height = top + rowHeight * Math.max(steps.length, 1) + 10;
  const start = steps.find((s) => s.at !== null);
  const t0 = start && start.at !== null ? start.at : 0;

  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'swimlane of the order' });
  const defs = svg('defs');
  // One arrowhead per kind of step this journey has (the server names the kinds).
  for (const kind of new Set(steps.map((s) => s.kind))) {
    defs.append(svg('marker', { id: `arrow-${kind}`, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
      svg('path', { d: 'M0,0L10,5L0,10z', class: `head k-${kind}` })));
  }
  chart.append(defs);
  for (const lane of lanes) {
    chart.append(
      svg('line', { x1: laneX(lane), x2: laneX(lane), y1: 24, y2: height - 4, class: 'lane' }),
      svg('text', { x: laneX(lane), y: 16, class: 'lane-name', 'text-anchor': 'middle' }, lane),
    );
  }
  steps.forEach((step, i) => {
    const yy = top + rowHeight * i + 22;
    const x1 = laneX(step.from);
    const x2 = laneX(step.to);
    const dir = x2 > x1 ? 1 : -1;
    const when = step.at === null ? '…' : `+${((step.at - t0) / 1000).toFixed(3)}s`;
    const group = svg('g', { class: `step k-${step.kind}`, 'data-kind': step.kind, 'data-step': i + 1 },
      svg('title', {}, `${step.what}\n${step.event ? `${step.event} ` : ''}${step.event_id || ''}\nsafe: ${step.why}`),
      svg('text', { x: 4, y: yy + 4, class: 'when' }, `${i + 1}. ${when}`),
      svg('line', { x1: x1 + dir * 3, x2: x2 - dir * 3, y1: yy, y2: yy, class: 'arrow', 'marker-end': `url(#arrow-${step.kind})` }),
      // A label may run past its arrow's ends: each row has a line of its own.
      svg('text', { x: (x1 + x2) / 2, y: yy - 6, class: 'what', 'text-anchor': 'middle' }, clip(step.what, Math.max(Math.abs(x2 - x1), laneWidth * 2) / 6)));
    chart.append(group);
  });
  $('#swimlane').replaceChildren(chart);
  $('#journey-why').replaceChildren(
    ...steps.map((s) => el('li', { class: `k-${s.kind}` },
      el('b', {}, s.what), s.event_id ? el('code', {}, ` ${s.event || 'event'} ${s.event_id}`) : null,
      el('div', { class: 'safe' }, s.why))),
    ...journey.notes.map((n) => el('li', { class: 'note' }, n)),
  );
}

/**
 * @param {string} text
 * @param {number} chars
 * @returns {string}
 */
function clip(text, chars) {
  const n = Math.max(12, Math.floor(chars));
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}
