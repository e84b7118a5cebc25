// @ts-check
// The Alerts panel: the rules of deploy/prometheus/alerts.yml, each light named after its rule:
// green (not holding), amber (holding, not yet for its `for:` time: pending; or cannot tell), red
// (firing). The board judges the queue rules from what it samples; the rules on the services'
// own metrics come from Prometheus when the board was given one (--prometheus-url).

import { $, el } from './dom.js';

/** @typedef {import('./types.js').Alerts} Alerts */

/**
 * @param {number} secs
 * @returns {string}
 */
function forText(secs) {
  if (secs === 0) return 'fires at once';
  return secs % 60 === 0 ? `for ${secs / 60} min` : `for ${secs} s`;
}

/** @param {Alerts} alerts */
export function drawAlerts(alerts) {
  $('#alert-lights').replaceChildren(...alerts.lights.map((light) => el('li', { 'data-alert': light.alert, 'data-state': light.state, class: light.state },
    el('span', { class: 'dot' }),
    el('span', { class: 'title' }, el('code', {}, light.alert), ` ${light.title} `, el('small', {}, `(${light.severity}, ${forText(light.for_secs)}, judged by ${light.judged_by})`)),
    light.detail.length ? el('ul', { class: 'detail' }, light.detail.map((d) => el('li', {}, d))) : null)));
  $('#alerts-elsewhere').textContent = alerts.prometheus
    ? `The rules on the services' own metrics are Prometheus's, at ${alerts.prometheus}.`
    : `Judged by Prometheus only (they read the services' /metrics; start the board with --prometheus-url to light them here): ${alerts.needs_prometheus.join(', ')}.`;
}
