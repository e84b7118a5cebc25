// @ts-check
// The classroom board's page: plain JavaScript modules, no framework, no build step.
//
// One EventSource (/api/events) brings every topic of the page contract (tools/board/src/page.rs;
// their types: js/types.js), first the vocabulary (statuses, drills, poison kinds), then each
// topic's latest value, then every change. Each panel is a module of its own (js/*.js) that
// draws what its topics bring; buttons POST small JSON bodies to /api/..., their answers show
// in the Actions panel, and what was done appears under "Done from this board".

import { drawActivity } from './js/activity.js';
import { setPoisonKinds, wireActions } from './js/actions.js';
import { drawAlerts } from './js/alerts.js';
import { drawCatalog } from './js/catalog.js';
import { drawDlq, wireDlq } from './js/dlq.js';
import { appendDrillLine, drawDrill, drawDrillButtons } from './js/drills.js';
import { setServices, wireFaults } from './js/faults.js';
import { drawLights } from './js/invariants.js';
import { setOrders, setStatuses } from './js/orders.js';
import { addSample, drawQueueTable, setHistory } from './js/queues.js';
import { drawStatus, setLive } from './js/status.js';
import { drawStock } from './js/stock.js';

/** @typedef {import('./js/types.js').Vocabulary} Vocabulary */

/** @type {Window & {boardErrors?: string[]}} */
const page = window;
// Every script error the page met, for a person (console) and for the browser test, which
// fails on any.
const boardErrors = /** @type {string[]} */ ([]);
page.boardErrors = boardErrors;
window.addEventListener('error', (event) => boardErrors.push(String(event.message)));
window.addEventListener('unhandledrejection', (event) => boardErrors.push(String(event.reason)));

/** @param {Vocabulary} words */
function setVocabulary(words) {
  setStatuses(words.statuses, words.tones);
  drawDrillButtons(words.drills);
  setPoisonKinds(words.poison_kinds);
}

/**
 * What each topic's payload is drawn with (the keys are the topics' names).
 * @type {Record<string, (payload: any) => void>}
 */
const handlers = {
  vocabulary: setVocabulary,
  'queue-history': setHistory,
  'queue-sample': addSample,
  queues: drawQueueTable,
  orders: setOrders,
  stock: drawStock,
  catalog: drawCatalog,
  alerts: drawAlerts,
  dlq: drawDlq,
  invariants: drawLights,
  services: setServices,
  status: drawStatus,
  drill: drawDrill,
  'drill-line': appendDrillLine,
  activity: drawActivity,
};

function connect() {
  const events = new EventSource('/api/events');
  for (const [topic, handle] of Object.entries(handlers)) {
    events.addEventListener(topic, (event) => {
      try {
        handle(JSON.parse(/** @type {MessageEvent} */ (event).data));
      } catch (error) {
        console.error(topic, error);
        boardErrors.push(`${topic}: ${error}`);
      }
    });
  }
  events.onopen = () => setLive(true);
  // EventSource reconnects by itself; the board sends everything again when it does.
  events.onerror = () => setLive(false);
}

wireActions();
wireDlq();
wireFaults();
connect();
