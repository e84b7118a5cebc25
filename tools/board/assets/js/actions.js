// @ts-check
// The Actions panel: place orders, publish a duplicate of the selected order, publish poison
// (the kinds come from the vocabulary).

import { $, el } from './dom.js';
import { busy, post, say } from './api.js';
import { select, selectedOrder } from './orders.js';
import { refreshJourney } from './journey.js';

/** @typedef {import('./types.js').PoisonKind} PoisonKind */

/**
 * The poison kinds to choose from, the first one chosen.
 * @param {PoisonKind[]} kinds
 */
export function setPoisonKinds(kinds) {
  $('#poison-kind').replaceChildren(...kinds.map((k) => el('option', { value: k.kind }, k.label)));
}

/** One more line for the order: its item and quantity, and a button that takes it away. */
function addLine() {
  const line = el('div', { class: 'row place-line' },
    el('label', {}, 'item ', el('input', { class: 'line-item', list: 'items', size: 8, required: true })),
    el('label', {}, 'qty ', el('input', { class: 'line-qty', type: 'number', value: 1, min: 1, max: 10000, size: 4 })),
    el('button', { type: 'button', class: 'small', title: 'remove this line', onclick: () => line.remove() }, '×'));
  $('#place-lines').append(line);
}

/**
 * The order the form describes: one line as the lab's `item` and `qty`, several as `items`.
 * @returns {{item?: string, qty?: number, items?: {item: string, qty: number}[]}}
 */
function orderLines() {
  const first = { item: $('#place-item').value.trim(), qty: Number($('#place-qty').value) };
  const more = [...document.querySelectorAll('#place-lines .place-line')].map((line) => ({
    item: /** @type {HTMLInputElement} */ (line.querySelector('.line-item')).value.trim(),
    qty: Number(/** @type {HTMLInputElement} */ (line.querySelector('.line-qty')).value),
  }));
  return more.length ? { items: [first, ...more] } : first;
}

/** The panel's forms and buttons. */
export function wireActions() {
  $('#add-line').addEventListener('click', addLine);
  $('#place-form').addEventListener('submit', (/** @type {Event} */ event) => {
    event.preventDefault();
    busy($('#place'), async () => {
      const body = { ...orderLines(), count: Number($('#place-count').value) };
      const done = await post('/api/orders', body);
      /** @type {string[]} */
      const ids = done.order_ids;
      say(ids.length === 1 ? `placed order ${ids[0]}` : `placed ${ids.length} orders`, true, { action: 'place', orderIds: ids.join(' ') });
      if (ids.length === 1) select(ids[0]);
    });
  });
  $('#duplicate').addEventListener('click', () => busy($('#duplicate'), async () => {
    const id = selectedOrder();
    if (!id) return;
    const done = await post(`/api/orders/${encodeURIComponent(id)}/duplicate`);
    say(`published a duplicate of ${id} (message_id ${done.message_id}): ${done.expect}`, true, { action: 'duplicate', orderId: id });
  }));
  for (const button of [$('#ship'), $('#deliver')]) {
    button.addEventListener('click', async () => {
      const id = selectedOrder();
      const status = button.dataset.status;
      if (!id || !status) return;
      await busy(button, async () => {
        /** @type {import('./types.js').Moved} */
        const done = await post(`/api/orders/${encodeURIComponent(id)}/status`, { status });
        say(`order ${id} is now ${done.status}`, true, { action: 'status', orderId: id, status: done.status });
      });
      // After busy() gave the button back: the journey says what the order may become now.
      await refreshJourney();
    });
  }
  $('#poison-form').addEventListener('submit', (/** @type {Event} */ event) => {
    event.preventDefault();
    busy($('#poison'), async () => {
      const done = await post('/api/poison', { kind: $('#poison-kind').value });
      say(`published poison about order ${done.order_id}; expect ${done.expect}`, true, { action: 'poison', orderId: done.order_id });
    });
  });
}
