// @ts-check
// The header's pills: the live stream, the dependencies, and who may act.

import { BOARD_TOKEN } from './api.js';
import { $, el } from './dom.js';

/** @typedef {import('./types.js').Status} Status */

/** @param {boolean} live */
export function setLive(live) {
  document.body.dataset.live = live ? 'yes' : 'no';
  const pill = $('#pill-live');
  if (pill) {
    pill.className = `pill ${live ? 'up' : 'down'}`;
    pill.textContent = live ? 'live' : 'reconnecting…';
  }
}

/** @param {Status} status */
export function drawStatus(status) {
  /** @type {(name: string, up: boolean, text: string) => HTMLElement} */
  const pill = (name, up, text) => el('span', { class: `pill ${up ? 'up' : 'down'}`, 'data-dep': name }, text);
  const live = document.body.dataset.live === 'yes';
  const pills = [
    el('span', { id: 'pill-live', class: `pill ${live ? 'up' : 'down'}` }, live ? 'live' : 'connecting…'),
    pill('broker', status.broker, status.broker ? 'broker' : 'broker down'),
    pill('redis', status.redis, status.redis ? 'Redis' : 'Redis down'),
    pill('management', status.management, status.management ? 'management API' : 'no management API'),
    el('span', { class: 'pill info' }, `vhost ${status.vhost} · prefix ${status.prefix}`),
    el('span', { class: 'pill info', 'data-traces': status.traces, title: 'traces the services exported to this board (POST /v1/traces), for the waterfalls' },
      status.traces ? `${status.traces} traces · ${status.spans} spans` : 'no spans yet'),
  ];
  if (status.drill) pills.push(el('span', { class: 'pill busy' }, `drill: ${status.drill}`));
  if (status.actions === 'refused') {
    pills.push(el('span', { class: 'pill down', 'data-actions': 'refused' }, 'watch only: actions need the board\'s token'));
  } else if (status.actions === 'token') {
    pills.push(el('span', { class: `pill ${BOARD_TOKEN ? 'info' : 'down'}`, 'data-actions': 'token' },
      BOARD_TOKEN ? 'actions with token' : 'watch only: open the address with #token='));
  }
  $('#status').replaceChildren(...pills);
}
