// @ts-check
// The Catalog panel: every product with its price, stock and low/out markers (inventory-svc
// owns the catalog), and how old order-svc's replica of each is (it copies names and prices
// into new orders from it).

import { $, el, money } from './dom.js';

/** @typedef {import('./types.js').Catalog} Catalog */

/**
 * @param {number|null} ms
 * @returns {string}
 */
function age(ms) {
  if (ms === null) return 'not in the replica';
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120000) return `${Math.round(ms / 1000)} s`;
  return `${Math.round(ms / 60000)} min`;
}

/** @param {Catalog} catalog */
export function drawCatalog(catalog) {
  const rows = catalog.products.map((p) => el('tr', { 'data-item': p.item, 'data-low': p.low, 'data-out': p.out, class: p.out ? 'out' : p.low ? 'low' : '' },
    el('td', {}, p.item), el('td', {}, p.name || ''),
    el('td', { class: 'num' }, p.unit_price !== null && p.currency ? money(p.unit_price, p.currency) : 'price unknown',
      p.replica_price !== null && p.currency ? el('span', { class: 'note', title: 'the replica has not heard of the new price yet' }, ` (replica: ${money(p.replica_price, p.currency)})`) : null),
    el('td', { class: 'num' }, p.stock ?? '?'),
    el('td', {}, p.out ? el('span', { class: 'marker out' }, 'OUT') : p.low ? el('span', { class: 'marker low', title: `under its threshold of ${p.low_threshold}` }, 'LOW') : ''),
    el('td', { class: 'num age' }, age(p.age_ms))));
  if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: 6, class: 'empty' }, 'no products')));
  $('#catalog tbody').replaceChildren(...rows);
  const notes = $('#catalog-notes');
  notes.hidden = !catalog.notes.length;
  notes.textContent = catalog.notes.join('; ');
}
