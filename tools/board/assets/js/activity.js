// @ts-check
// The "Done from this board" panel: what was done, and how a person would do it by hand.

import { $, clock, el } from './dom.js';

/** @typedef {import('./types.js').Activity} Activity */

/** @param {Activity[]} entries */
export function drawActivity(entries) {
  $('#activity').replaceChildren(...entries.map((a) => el('li', { class: a.ok ? 'ok' : 'bad' },
    el('time', {}, clock(a.at)), ' ', el('code', {}, a.text))));
}
