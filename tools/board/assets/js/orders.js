// @ts-check
// The Orders panel: counts per status as filters, the newest orders, and which one is selected
// (its journey shows beside it).

import { $, clock, el, linesText, money, short } from './dom.js';
import { showJourney } from './journey.js';

/**
 * @typedef {import('./types.js').Orders} Orders
 */

/** The list of every status (the server's name for it). */
const ALL = 'ALL';

/**
 * @type {{orders: Orders|null, statuses: string[], tones: Record<string, string>,
 *   filter: string, selected: string|null}}
 */
const panel = { orders: null, statuses: [], tones: {}, filter: ALL, selected: null };

/**
 * The statuses to filter by, in the server's order, and the tone each is coloured by (both
 * from the vocabulary).
 * @param {string[]} statuses
 * @param {Record<string, string>} tones
 */
export function setStatuses(statuses, tones) {
  panel.statuses = statuses;
  panel.tones = tones;
  drawOrders();
}

/** @param {Orders} orders */
export function setOrders(orders) {
  panel.orders = orders;
  drawOrders();
}

/** @returns {string|null} */
export function selectedOrder() {
  return panel.selected;
}

/**
 * Select an order: its row is marked and its journey shown.
 * @param {string} id
 */
export function select(id) {
  panel.selected = id;
  const duplicate = $('#duplicate');
  duplicate.disabled = false;
  duplicate.dataset.orderId = id;
  drawOrders();
  showJourney(id);
}

function drawOrders() {
  const orders = panel.orders;
  if (!orders) return;
  const filters = [ALL, ...panel.statuses].map((status) => el('button', {
    type: 'button',
    class: `filter${panel.filter === status ? ' on' : ''}`,
    'data-filter': status,
    onclick: () => {
      panel.filter = status;
      drawOrders();
    },
  }, `${status === ALL ? 'all' : status} ${orders.counts[status] ?? 0}`));
  $('#order-filters').replaceChildren(...filters);
  const ids = orders.lists[panel.filter] || [];
  const rows = ids.map((id) => orders.orders[id]).filter(Boolean).map((o) => el('tr', {
    'data-order-id': o.order_id,
    'data-status': o.status,
    class: o.order_id === panel.selected ? 'selected' : '',
    title: o.reason || o.order_id,
    onclick: () => select(o.order_id),
  },
  el('td', {}, clock(o.created_at)),
  el('td', { class: 'id' }, short(o.order_id)),
  el('td', { class: 'what', 'data-lines': o.lines.length },
    linesText(o.lines.length ? o.lines : [{ item: o.item, qty: o.qty }]),
    ' ',
    el('span', { class: `price${o.total === null ? ' unknown' : ''}`, 'data-total': o.total ?? '' },
      o.total !== null && o.currency ? money(o.total, o.currency) : 'price unknown')),
  el('td', {}, el('span', { class: `status tone-${panel.tones[o.status] || 'unknown'}` }, o.status))));
  if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: 4, class: 'empty' }, 'no orders yet')));
  $('#orders tbody').replaceChildren(...rows);
}
