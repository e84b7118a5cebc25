// @ts-check
// The Stock panel: each item's books and whether they balance.

import { $, el } from './dom.js';

/** @typedef {import('./types.js').Stock} Stock */

/** @param {Stock} stock */
export function drawStock(stock) {
  $('#stock tbody').replaceChildren(...stock.items.map((s) => el('tr', { 'data-item': s.item, 'data-balanced': s.balanced },
    el('td', {}, s.item), el('td', { class: 'num' }, s.available), el('td', { class: 'num' }, s.reserved),
    el('td', { class: 'num' }, s.released),
    el('td', { class: `equation ${s.balanced ? 'ok' : 'bad'}`, title: 'initial = available + reserved − released' },
      `${s.initial} ${s.balanced ? '=' : '≠'} ${s.available} + ${s.reserved} − ${s.released} ${s.balanced ? '✓' : '✗'}`))));
  $('#items').replaceChildren(...stock.items.map((s) => el('option', { value: s.item })));
}
