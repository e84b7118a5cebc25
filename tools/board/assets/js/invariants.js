// @ts-check
// The Invariants panel: one light per rule of the checker, as the server judged it.

import { $, clock, el } from './dom.js';

/** @typedef {import('./types.js').Invariants} Invariants */

/** @param {Invariants} result */
export function drawLights(result) {
  if (result.error !== undefined) {
    // Nothing is known right now (Redis away, say): grey, not green and not red.
    $('#checked-at').textContent = result.error;
    for (const light of document.querySelectorAll('#lights > li')) {
      if (!(light instanceof HTMLElement)) continue;
      light.dataset.state = 'unknown';
      light.className = 'unknown';
    }
    return;
  }
  $('#checked-at').textContent = `checked ${clock(result.at)} (${result.took_ms} ms)`;
  $('#lights').replaceChildren(...result.lights.map((light) => el('li', { 'data-rule': light.id, 'data-state': light.state, class: light.state },
    el('span', { class: 'dot' }), el('span', { class: 'title' }, light.title),
    light.detail.length ? el('ul', { class: 'detail' }, light.detail.map((d) => el('li', {}, d))) : null)));
}
