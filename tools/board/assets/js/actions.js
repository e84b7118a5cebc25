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

/** The panel's forms and buttons. */
export function wireActions() {
  $('#place-form').addEventListener('submit', (/** @type {Event} */ event) => {
    event.preventDefault();
    busy($('#place'), async () => {
      const body = {
        item: $('#place-item').value.trim(),
        qty: Number($('#place-qty').value),
        count: Number($('#place-count').value),
      };
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
