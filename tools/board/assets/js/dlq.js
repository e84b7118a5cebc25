// @ts-check
// The DLQ panel: its depth, its first messages with their reasons, replay and purge.

import { $, ago, el, short } from './dom.js';
import { busy, confirmFirst, post, say } from './api.js';
import { select } from './orders.js';

/**
 * @typedef {import('./types.js').Dlq} Dlq
 * @typedef {import('./types.js').DlqEntry} DlqEntry
 */

/** @type {{dlq: Dlq|null}} */
const panel = { dlq: null };

/** @param {Dlq} dlq */
export function drawDlq(dlq) {
  panel.dlq = dlq;
  const depth = dlq.depth ?? '?';
  const shown = dlq.peeked_depth === dlq.depth
    ? (dlq.entries.length < (dlq.depth || 0) ? `, first ${dlq.entries.length} shown` : '')
    : ', changed: the list follows once it is quiet for a few seconds';
  $('#dlq-depth').textContent = `${depth} message(s)${shown}`;
  $('#dlq-panel').dataset.depth = depth;
  const note = $('#dlq-note');
  note.hidden = !dlq.note;
  note.textContent = dlq.note || '';
  const entries = dlq.entries.map((m) => el('div', {
    class: 'dlq-entry', 'data-key': m.key, 'data-position': m.position, 'data-order-id': m.order_id || '',
  },
  el('div', { class: 'head' }, el('b', {}, `#${m.position}`), ' ', el('span', { class: 'reason' }, m.reason),
    el('button', { type: 'button', class: 'small', onclick: (/** @type {Event} */ e) => busy(/** @type {HTMLButtonElement} */ (e.target), () => replay(m)) }, 'replay')),
  el('div', { class: 'meta' },
    `from ${m.service} · ${m.routing_key || '?'}${m.at ? ` · ${ago(m.at * 1000)}` : ''}${m.attempts ? ` · gave up after ${m.attempts} attempts` : ''}`,
    m.order_id ? el('span', { class: 'link', onclick: () => m.order_id && select(m.order_id) }, ` · order ${short(m.order_id)}`) : null),
  el('code', { class: 'body' }, m.body_preview)));
  if (!entries.length) entries.push(el('p', { class: 'empty' }, 'empty: no poison so far'));
  $('#dlq-list').replaceChildren(...entries);
}

/** @param {DlqEntry} message */
async function replay(message) {
  const done = await post('/api/dlq/replay', { position: message.position, key: message.key });
  say(`replayed #${message.position}: ${done.what}`);
}

/** The panel's buttons. */
export function wireDlq() {
  $('#dlq-look').addEventListener('click', () => busy($('#dlq-look'), () => post('/api/dlq/look')));
  $('#dlq-replay-all').addEventListener('click', () => busy($('#dlq-replay-all'), async () => {
    const done = await post('/api/dlq/replay', { all: true });
    say(`replayed ${done.replayed}, left ${done.left}`);
  }));
  confirmFirst($('#dlq-purge'), () => `really delete all ${panel.dlq ? panel.dlq.depth : ''} messages?`, async () => {
    const done = await post('/api/dlq/purge', { confirm: true });
    say(`purged ${done.purged} message(s) from the DLQ`);
  });
}
