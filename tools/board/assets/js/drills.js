// @ts-check
// The Lab drills panel: one button per drill (from the vocabulary), and the running drill's
// output as it comes.

import { $, el } from './dom.js';
import { post, say } from './api.js';

/** @typedef {import('./types.js').DrillRun} DrillRun */

/** @type {{run: DrillRun|null}} */
const panel = { run: null };

/**
 * One button per drill, in the order the lab teaches them.
 * @param {string[]} drills
 */
export function drawDrillButtons(drills) {
  $('#drills').replaceChildren(...drills.map((name) => el('button', {
    type: 'button',
    'data-drill': name,
    disabled: panel.run !== null && panel.run.state === 'running',
    // Not busy(): the drill's own state (from the stream) decides when the buttons work again.
    onclick: async () => {
      try {
        await post(`/api/drills/${name}`);
        say(`drill ${name} started`);
      } catch (error) {
        say(error instanceof Error ? error.message : String(error), false);
      }
    },
  }, name)));
}

/** @param {DrillRun} run */
export function drawDrill(run) {
  panel.run = run;
  const badge = $('#drill-state');
  badge.dataset.state = run.state;
  badge.dataset.drill = run.name;
  badge.textContent = `${run.name}: ${run.state === 'passed' ? 'PASS' : run.state === 'failed' ? 'FAIL' : 'running…'}`;
  for (const button of document.querySelectorAll('#drills button')) {
    if (button instanceof HTMLButtonElement) button.disabled = run.state === 'running';
  }
  const out = $('#drill-output');
  out.textContent = run.lines.join('\n');
  out.scrollTop = out.scrollHeight;
}

/** @param {string} line */
export function appendDrillLine(line) {
  if (panel.run) panel.run.lines.push(line);
  const out = $('#drill-output');
  const atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
  out.append(document.createTextNode(`\n${line}`));
  if (atBottom) out.scrollTop = out.scrollHeight;
}
