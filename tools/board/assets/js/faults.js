// @ts-check
// The Faults panel: the demo's processes with stop / kill -9 / start, closing the broker's
// connections, and a Redis outage. The server says whether any of it is allowed.

import { $, el } from './dom.js';
import { busy, confirmFirst, post, say } from './api.js';

/**
 * @typedef {import('./types.js').Services} Services
 * @typedef {import('./types.js').Instance} Instance
 */

/** @type {{services: Services|null}} */
const panel = { services: null };

/** @param {Services} services */
export function setServices(services) {
  panel.services = services;
  drawServices();
}

function drawServices() {
  const s = panel.services;
  if (!s) return;
  const refused = $('#faults-refused');
  refused.hidden = !s.faults_refused;
  refused.textContent = s.faults_refused || '';
  const allowed = !s.faults_refused;
  $('#faults-panel').dataset.allowed = allowed;
  /** @type {(instance: Instance, name: string, label: string, cls?: string) => HTMLElement} */
  const action = (instance, name, label, cls) => el('button', {
    type: 'button',
    class: `small ${cls || ''}`,
    'data-instance': instance.name,
    'data-action': name,
    disabled: !allowed,
    onclick: (/** @type {Event} */ e) => busy(/** @type {HTMLButtonElement} */ (e.target), async () => {
      const done = await post(`/api/faults/services/${encodeURIComponent(instance.name)}/${name}`);
      say(done.done);
    }),
  }, label);
  $('#services tbody').replaceChildren(...s.instances.map((i) => el('tr', { 'data-instance': i.name, 'data-running': i.running },
    el('td', {}, i.name), el('td', { class: 'num' }, i.pid ?? '–'),
    el('td', {}, el('span', { class: `status ${i.running ? 'tone-done' : 'tone-refused'}` }, i.running ? 'running' : 'stopped')),
    el('td', { class: 'buttons' },
      i.running ? action(i, 'stop', 'stop') : null,
      i.running ? action(i, 'kill', 'kill -9', 'danger') : null,
      !i.running && i.startable ? action(i, 'start', 'start') : null))));
  $('#close-connections').disabled = !allowed;
  $('#redis-stop').disabled = !s.redis_stop || Boolean(s.redis_outage);
  $('#redis-form').hidden = !s.redis_stop;
  const banner = $('#outage');
  banner.hidden = !s.redis_outage;
  if (s.redis_outage) {
    const left = Math.max(0, Math.round((s.redis_outage.back_at - Date.now()) / 1000));
    banner.textContent = `Redis stopped by the board: back in ${left} s (${s.redis_outage.restart})`;
  }
}

/** The panel's buttons. */
export function wireFaults() {
  confirmFirst($('#close-connections'), 'really close them all?', async () => {
    const done = await post('/api/faults/connections');
    say(done.done);
  });
  $('#redis-form').addEventListener('submit', (/** @type {Event} */ event) => {
    event.preventDefault();
    busy($('#redis-stop'), async () => {
      const done = await post('/api/faults/redis', { seconds: Number($('#redis-seconds').value) });
      say(`Redis stopped; back at ${new Date(done.back_at).toLocaleTimeString([], { hour12: false })}`);
    });
  });
  // The outage banner counts down between samples.
  setInterval(() => panel.services && panel.services.redis_outage && drawServices(), 1000);
}
