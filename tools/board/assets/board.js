// The classroom board's page: plain JavaScript, no framework, no build step.
//
// One EventSource (/api/events) brings every topic: the page keeps the latest of each and
// redraws the panel it belongs to. Buttons POST small JSON bodies to /api/...; their answers
// and errors show in the Actions panel, and what was done appears under "Done from this board".
// Everything a visitor sees is set with textContent (never innerHTML), so no message body or
// reason can inject markup.
'use strict';

const SVG_NS = 'http://www.w3.org/2000/svg';
const WINDOW_MS = 5 * 60 * 1000;
const STATUSES = ['PLACED', 'CONFIRMED', 'FAILED', 'CANCELLING', 'CANCELLED'];
const DRILLS = ['smoke', 'backlog-drain', 'idempotency', 'dlq'];
const FINAL = new Set(['CONFIRMED', 'FAILED', 'CANCELLED']);
const QUEUE_COLORS = ['#1f6feb', '#7aa7f5', '#2da44e', '#8fd19e', '#bf8700', '#e3c26b', '#cf222e'];

// Every script error the page met, for a person (console) and for the browser test, which
// fails on any.
window.boardErrors = [];
window.addEventListener('error', (event) => window.boardErrors.push(String(event.message)));
window.addEventListener('unhandledrejection', (event) => window.boardErrors.push(String(event.reason)));

const state = {
  queues: [],
  points: [],
  orders: null,
  filter: 'ALL',
  selected: null,
  services: null,
  dlq: null,
  drill: null,
};

// --- small helpers -----------------------------------------------------------------------

const $ = (selector) => document.querySelector(selector);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function setAttrs(node, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    // data-* attributes keep false too: tests and styles read data-running="false".
    if (key.startsWith('data-')) {
      if (value !== null && value !== undefined) node.setAttribute(key, String(value));
      continue;
    }
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') node.setAttribute('class', value);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}

function short(id) {
  return id && id.length > 13 ? `${id.slice(0, 8)}…` : id;
}

// The board's token, if its address came with one (`#token=...`, which the board prints at
// start): every action sends it. A fragment never travels to a server, and it is taken off the
// address bar at once (kept for this tab only), so it is not shown on a projector.
const BOARD_TOKEN = (() => {
  const fromUrl = new URLSearchParams(location.hash.slice(1)).get('token');
  if (fromUrl) {
    sessionStorage.setItem('board-token', fromUrl);
    history.replaceState(null, '', location.pathname + location.search);
  }
  return sessionStorage.getItem('board-token');
})();

async function post(url, body) {
  const headers = { 'content-type': 'application/json' };
  if (BOARD_TOKEN) headers.authorization = `Bearer ${BOARD_TOKEN}`;
  const response = await fetch(url, {
    method: 'POST',
    headers,
    body: JSON.stringify(body || {}),
  });
  let data = null;
  try {
    data = await response.json();
  } catch (_) {
    data = null;
  }
  if (!response.ok) {
    const error = new Error((data && data.error) || `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

function say(text, ok = true, data = {}) {
  const out = $('#action-result');
  out.textContent = text;
  out.className = `result ${ok ? 'ok' : 'bad'}`;
  for (const key of Object.keys(out.dataset)) delete out.dataset[key];
  Object.assign(out.dataset, data);
}

// Run an async button action with the button disabled meanwhile.
async function busy(button, work) {
  button.disabled = true;
  button.classList.add('busy');
  try {
    await work();
  } catch (error) {
    say(error.message, false);
  } finally {
    button.disabled = false;
    button.classList.remove('busy');
  }
}

// A dangerous button asks again: the first click arms it for a few seconds.
function confirmFirst(button, question, action) {
  const label = button.textContent;
  let armed = null;
  button.addEventListener('click', () => {
    if (armed) {
      clearTimeout(armed);
      armed = null;
      button.textContent = label;
      button.classList.remove('armed');
      busy(button, action);
      return;
    }
    button.textContent = typeof question === 'function' ? question() : question;
    button.classList.add('armed');
    armed = setTimeout(() => {
      armed = null;
      button.textContent = label;
      button.classList.remove('armed');
    }, 5000);
  });
}

// --- the live stream ---------------------------------------------------------------------

const handlers = {
  'queue-history': (data) => {
    state.queues = data.queues;
    state.points = data.points;
    drawChart();
  },
  'queue-sample': (sample) => {
    state.points.push(sample);
    const oldest = sample.t - WINDOW_MS * 2;
    while (state.points.length && state.points[0].t < oldest) state.points.shift();
    drawChart();
  },
  queues: drawQueueTable,
  orders: (orders) => {
    state.orders = orders;
    drawOrders();
  },
  stock: drawStock,
  dlq: (dlq) => {
    state.dlq = dlq;
    drawDlq();
  },
  invariants: drawLights,
  services: (services) => {
    state.services = services;
    drawServices();
  },
  status: drawStatus,
  drill: (run) => {
    state.drill = run;
    drawDrill();
  },
  'drill-line': (line) => {
    if (state.drill) state.drill.lines.push(line);
    appendDrillLine(line);
  },
  activity: drawActivity,
};

function connect() {
  const events = new EventSource('/api/events');
  for (const [topic, handle] of Object.entries(handlers)) {
    events.addEventListener(topic, (event) => {
      try {
        handle(JSON.parse(event.data));
      } catch (error) {
        console.error(topic, error);
        window.boardErrors.push(`${topic}: ${error}`);
      }
    });
  }
  events.onopen = () => setLive(true);
  // EventSource reconnects by itself; the board sends everything again when it does.
  events.onerror = () => setLive(false);
}

function setLive(live) {
  document.body.dataset.live = live ? 'yes' : 'no';
  const pill = $('#pill-live');
  if (pill) {
    pill.className = `pill ${live ? 'up' : 'down'}`;
    pill.textContent = live ? 'live' : 'reconnecting…';
  }
}

// --- status ------------------------------------------------------------------------------

function drawStatus(status) {
  const pill = (name, up, text) => el('span', { class: `pill ${up ? 'up' : 'down'}`, 'data-dep': name }, text);
  const live = document.body.dataset.live === 'yes';
  const pills = [
    el('span', { id: 'pill-live', class: `pill ${live ? 'up' : 'down'}` }, live ? 'live' : 'connecting…'),
    pill('broker', status.broker, status.broker ? 'broker' : 'broker down'),
    pill('redis', status.redis, status.redis ? 'Redis' : 'Redis down'),
    pill('management', status.management, status.management ? 'management API' : 'no management API'),
    el('span', { class: 'pill info' }, `vhost ${status.vhost} · prefix ${status.prefix}`),
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

// --- queues ------------------------------------------------------------------------------

function niceMax(value) {
  if (value <= 10) return 10;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (value <= step * magnitude) return step * magnitude;
  }
  return 10 * magnitude;
}

function drawChart() {
  const box = $('#queue-chart');
  const width = 900;
  const height = 230;
  const pad = { left: 44, right: 12, top: 10, bottom: 24 };
  const now = state.points.length ? state.points[state.points.length - 1].t : Date.now();
  // The last five minutes; less while the board has not seen that much yet, so a fresh
  // board's first minute fills the width instead of a sliver at its right edge.
  const seen = state.points.length ? now - state.points[0].t : 0;
  const span = Math.min(WINDOW_MS, Math.max(60000, Math.ceil(seen / 60000) * 60000));
  const from = now - span;
  const visible = state.points.filter((p) => p.t >= from);
  let top = 0;
  for (const p of visible) for (const d of p.depth) if (d !== null && d > top) top = d;
  const ymax = niceMax(top);
  const x = (t) => pad.left + ((t - from) / span) * (width - pad.left - pad.right);
  const y = (v) => height - pad.bottom - (v / ymax) * (height - pad.top - pad.bottom);

  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'queue depths over time' });
  for (let i = 0; i <= 5; i += 1) {
    const v = (ymax / 5) * i;
    chart.append(
      svg('line', { x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v), class: 'gridline' }),
      svg('text', { x: pad.left - 6, y: y(v) + 4, class: 'axis', 'text-anchor': 'end' }, Math.round(v)),
    );
  }
  const step = span <= 60000 ? 10000 : 60000;
  for (let back = 0; back <= span; back += step) {
    const label = back === 0 ? 'now' : step < 60000 ? `-${back / 1000} s` : `-${back / 60000} min`;
    chart.append(svg('text', { x: x(now - back), y: height - 6, class: 'axis', 'text-anchor': back === span ? 'start' : 'middle' }, label));
  }
  const legend = [];
  state.queues.forEach((queue, i) => {
    const color = QUEUE_COLORS[i % QUEUE_COLORS.length];
    let d = '';
    let max = 0;
    let last = null;
    let pen = false;
    for (const p of visible) {
      const v = p.depth[i];
      if (v === null || v === undefined) {
        pen = false;
        continue;
      }
      d += `${pen ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
      max = Math.max(max, v);
      last = v;
    }
    const retry = queue.endsWith('.retry');
    chart.append(svg('path', {
      d: d || 'M0,0',
      class: `series${retry ? ' retry' : ''}`,
      stroke: color,
      'data-queue': queue,
      'data-max': max,
      'data-last': last === null ? '' : last,
    }));
    legend.push(el('span', { class: 'key', 'data-queue': queue },
      el('i', { style: `background:${color}` }), `${queue} `, el('b', {}, last === null ? '–' : last)));
  });
  box.replaceChildren(chart, el('div', { class: 'legend' }, legend));
}

function drawQueueTable(rows) {
  const cell = (v) => el('td', { class: 'num' }, v === null || v === undefined ? '–' : v);
  $('#queue-table tbody').replaceChildren(...rows.map((r) => el('tr', { class: r.retry ? 'retry' : '', 'data-queue': r.name },
    el('td', {}, r.name), cell(r.messages), cell(r.unacked), cell(r.consumers), cell(r.publish), cell(r.deliver))));
}

// --- orders ------------------------------------------------------------------------------

function drawOrders() {
  const orders = state.orders;
  if (!orders) return;
  const filters = ['ALL', ...STATUSES].map((status) => el('button', {
    type: 'button',
    class: `filter${state.filter === status ? ' on' : ''}`,
    'data-filter': status,
    onclick: () => {
      state.filter = status;
      drawOrders();
    },
  }, `${status === 'ALL' ? 'all' : status} ${orders.counts[status] ?? 0}`));
  $('#order-filters').replaceChildren(...filters);
  const ids = orders.lists[state.filter] || [];
  const rows = ids.map((id) => orders.orders[id]).filter(Boolean).map((o) => el('tr', {
    'data-order-id': o.order_id,
    'data-status': o.status,
    class: o.order_id === state.selected ? 'selected' : '',
    title: o.reason || o.order_id,
    onclick: () => select(o.order_id),
  },
  el('td', {}, clock(o.created_at)),
  el('td', { class: 'id' }, short(o.order_id)),
  el('td', {}, `${o.qty} × ${o.item}`),
  el('td', {}, el('span', { class: `status s-${o.status}` }, o.status))));
  if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: 4, class: 'empty' }, 'no orders yet')));
  $('#orders tbody').replaceChildren(...rows);
}

// --- the journey (swimlane) --------------------------------------------------------------

let journeyTimer = null;

function select(id) {
  state.selected = id;
  $('#duplicate').disabled = false;
  $('#duplicate').dataset.orderId = id;
  drawOrders();
  loadJourney();
  clearInterval(journeyTimer);
  // Duplicates and DLQ hops add to a journey without changing the order's status: look again.
  journeyTimer = setInterval(loadJourney, 3000);
}

async function loadJourney() {
  const id = state.selected;
  if (!id) return;
  const path = `/api/orders/${encodeURIComponent(id)}/journey`;
  try {
    const response = await fetch(path);
    const data = await response.json();
    if (id !== state.selected) return;
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    $('#journey-text').href = `${path}?format=text`;
    $('#journey-mermaid').href = `${path}?format=mermaid`;
    $('#journey-links').hidden = false;
    drawJourney(data.lanes, data.journey);
  } catch (error) {
    $('#journey-title').textContent = error.message;
  }
}

function drawJourney(lanes, journey) {
  $('#journey-title').textContent = journey.headline;
  const steps = journey.steps;
  const width = 900;
  const laneWidth = (width - 90) / lanes.length;
  const laneX = (name) => 90 + laneWidth * (lanes.indexOf(name) + 0.5);
  const rowHeight = 34;
  const top = 34;
  const height = top + rowHeight * Math.max(steps.length, 1) + 10;
  const start = steps.find((s) => s.at !== null);
  const t0 = start ? start.at : 0;

  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'swimlane of the order' });
  const defs = svg('defs');
  for (const kind of ['request', 'publish', 'deliver', 'redelivery', 'duplicate', 'late', 'dead-letter', 'compensation', 'notify']) {
    defs.append(svg('marker', { id: `arrow-${kind}`, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
      svg('path', { d: 'M0,0L10,5L0,10z', class: `head k-${kind}` })));
  }
  chart.append(defs);
  for (const lane of lanes) {
    chart.append(
      svg('line', { x1: laneX(lane), x2: laneX(lane), y1: 24, y2: height - 4, class: 'lane' }),
      svg('text', { x: laneX(lane), y: 16, class: 'lane-name', 'text-anchor': 'middle' }, lane),
    );
  }
  steps.forEach((step, i) => {
    const yy = top + rowHeight * i + 22;
    const x1 = laneX(step.from);
    const x2 = laneX(step.to);
    const dir = x2 > x1 ? 1 : -1;
    const when = step.at === null ? '…' : `+${((step.at - t0) / 1000).toFixed(3)}s`;
    const group = svg('g', { class: `step k-${step.kind}`, 'data-kind': step.kind, 'data-step': i + 1 },
      svg('title', {}, `${step.what}\n${step.event ? `${step.event} ` : ''}${step.event_id || ''}\nsafe: ${step.why}`),
      svg('text', { x: 4, y: yy + 4, class: 'when' }, `${i + 1}. ${when}`),
      svg('line', { x1: x1 + dir * 3, x2: x2 - dir * 3, y1: yy, y2: yy, class: 'arrow', 'marker-end': `url(#arrow-${step.kind})` }),
      // A label may run past its arrow's ends: each row has a line of its own.
      svg('text', { x: (x1 + x2) / 2, y: yy - 6, class: 'what', 'text-anchor': 'middle' }, clip(step.what, Math.max(Math.abs(x2 - x1), laneWidth * 2) / 6)));
    chart.append(group);
  });
  $('#swimlane').replaceChildren(chart);
  $('#journey-why').replaceChildren(
    ...steps.map((s) => el('li', { class: `k-${s.kind}` },
      el('b', {}, s.what), s.event_id ? el('code', {}, ` ${s.event || 'event'} ${s.event_id}`) : null,
      el('div', { class: 'safe' }, s.why))),
    ...journey.notes.map((n) => el('li', { class: 'note' }, n)),
  );
}

function clip(text, chars) {
  const n = Math.max(12, Math.floor(chars));
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

// --- stock -------------------------------------------------------------------------------

function drawStock(stock) {
  $('#stock tbody').replaceChildren(...stock.items.map((s) => el('tr', { 'data-item': s.item, 'data-balanced': s.balanced },
    el('td', {}, s.item), el('td', { class: 'num' }, s.available), el('td', { class: 'num' }, s.reserved),
    el('td', { class: 'num' }, s.released),
    el('td', { class: `equation ${s.balanced ? 'ok' : 'bad'}`, title: 'initial = available + reserved − released' },
      `${s.initial} ${s.balanced ? '=' : '≠'} ${s.available} + ${s.reserved} − ${s.released} ${s.balanced ? '✓' : '✗'}`))));
  const items = $('#items');
  items.replaceChildren(...stock.items.map((s) => el('option', { value: s.item })));
}

// --- the DLQ -----------------------------------------------------------------------------

function drawDlq() {
  const dlq = state.dlq;
  if (!dlq) return;
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
    el('button', { type: 'button', class: 'small', onclick: (e) => busy(e.target, () => replay(m)) }, 'replay')),
  el('div', { class: 'meta' },
    `from ${m.service} · ${m.routing_key || '?'}${m.at ? ` · ${ago(m.at * 1000)}` : ''}${m.attempts ? ` · gave up after ${m.attempts} attempts` : ''}`,
    m.order_id ? el('span', { class: 'link', onclick: () => select(m.order_id) }, ` · order ${short(m.order_id)}`) : null),
  el('code', { class: 'body' }, m.body_preview)));
  if (!entries.length) entries.push(el('p', { class: 'empty' }, 'empty: no poison so far'));
  $('#dlq-list').replaceChildren(...entries);
}

async function replay(message) {
  const done = await post('/api/dlq/replay', { position: message.position, key: message.key });
  say(`replayed #${message.position}: ${done.what}`);
}

// --- invariant lights --------------------------------------------------------------------

function drawLights(result) {
  if (result.error) {
    // Nothing is known right now (Redis away, say): grey, not green and not red.
    $('#checked-at').textContent = result.error;
    for (const light of document.querySelectorAll('#lights > li')) {
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

// --- drills ------------------------------------------------------------------------------

function drawDrillButtons() {
  $('#drills').replaceChildren(...DRILLS.map((name) => el('button', {
    type: 'button',
    'data-drill': name,
    // Not busy(): the drill's own state (from the stream) decides when the buttons work again.
    onclick: async () => {
      try {
        await post(`/api/drills/${name}`);
        say(`drill ${name} started`);
      } catch (error) {
        say(error.message, false);
      }
    },
  }, name)));
}

function drawDrill() {
  const run = state.drill;
  if (!run) return;
  const badge = $('#drill-state');
  badge.dataset.state = run.state;
  badge.dataset.drill = run.name;
  badge.textContent = `${run.name}: ${run.state === 'passed' ? 'PASS' : run.state === 'failed' ? 'FAIL' : 'running…'}`;
  for (const button of document.querySelectorAll('#drills button')) button.disabled = run.state === 'running';
  const out = $('#drill-output');
  out.textContent = run.lines.join('\n');
  out.scrollTop = out.scrollHeight;
}

function appendDrillLine(line) {
  const out = $('#drill-output');
  const atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
  out.append(document.createTextNode(`\n${line}`));
  if (atBottom) out.scrollTop = out.scrollHeight;
}

// --- faults ------------------------------------------------------------------------------

function drawServices() {
  const s = state.services;
  if (!s) return;
  const refused = $('#faults-refused');
  refused.hidden = !s.faults_refused;
  refused.textContent = s.faults_refused || '';
  const allowed = !s.faults_refused;
  $('#faults-panel').dataset.allowed = allowed;
  const action = (instance, name, label, cls) => el('button', {
    type: 'button',
    class: `small ${cls || ''}`,
    'data-instance': instance.name,
    'data-action': name,
    disabled: !allowed,
    onclick: (e) => busy(e.target, async () => {
      const done = await post(`/api/faults/services/${encodeURIComponent(instance.name)}/${name}`);
      say(done.done);
    }),
  }, label);
  $('#services tbody').replaceChildren(...s.instances.map((i) => el('tr', { 'data-instance': i.name, 'data-running': i.running },
    el('td', {}, i.name), el('td', { class: 'num' }, i.pid ?? '–'),
    el('td', {}, el('span', { class: `status ${i.running ? 's-CONFIRMED' : 's-FAILED'}` }, i.running ? 'running' : 'stopped')),
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

// --- activity ----------------------------------------------------------------------------

function drawActivity(entries) {
  $('#activity').replaceChildren(...entries.map((a) => el('li', { class: a.ok ? 'ok' : 'bad' },
    el('time', {}, clock(a.at)), ' ', el('code', {}, a.text))));
}

// --- the forms ---------------------------------------------------------------------------

function wire() {
  $('#place-form').addEventListener('submit', (event) => {
    event.preventDefault();
    busy($('#place'), async () => {
      const body = {
        item: $('#place-item').value.trim(),
        qty: Number($('#place-qty').value),
        count: Number($('#place-count').value),
      };
      const done = await post('/api/orders', body);
      const ids = done.order_ids;
      say(ids.length === 1 ? `placed order ${ids[0]}` : `placed ${ids.length} orders`, true, { action: 'place', orderIds: ids.join(' ') });
      if (ids.length === 1) select(ids[0]);
    });
  });
  $('#duplicate').addEventListener('click', () => busy($('#duplicate'), async () => {
    const id = state.selected;
    const done = await post(`/api/orders/${encodeURIComponent(id)}/duplicate`);
    say(`published a duplicate of ${id} (message_id ${done.message_id}): ${done.expect}`, true, { action: 'duplicate', orderId: id });
  }));
  $('#poison-form').addEventListener('submit', (event) => {
    event.preventDefault();
    busy($('#poison'), async () => {
      const done = await post('/api/poison', { kind: $('#poison-kind').value });
      say(`published poison about order ${done.order_id}; expect ${done.expect}`, true, { action: 'poison', orderId: done.order_id });
    });
  });
  $('#dlq-look').addEventListener('click', () => busy($('#dlq-look'), () => post('/api/dlq/look')));
  $('#dlq-replay-all').addEventListener('click', () => busy($('#dlq-replay-all'), async () => {
    const done = await post('/api/dlq/replay', { all: true });
    say(`replayed ${done.replayed}, left ${done.left}`);
  }));
  confirmFirst($('#dlq-purge'), () => `really delete all ${state.dlq ? state.dlq.depth : ''} messages?`, async () => {
    const done = await post('/api/dlq/purge', { confirm: true });
    say(`purged ${done.purged} message(s) from the DLQ`);
  });
  confirmFirst($('#close-connections'), 'really close them all?', async () => {
    const done = await post('/api/faults/connections');
    say(done.done);
  });
  $('#redis-form').addEventListener('submit', (event) => {
    event.preventDefault();
    busy($('#redis-stop'), async () => {
      const done = await post('/api/faults/redis', { seconds: Number($('#redis-seconds').value) });
      say(`Redis stopped; back at ${clock(done.back_at)}`);
    });
  });
  // The outage banner counts down between samples.
  setInterval(() => state.services && state.services.redis_outage && drawServices(), 1000);
}

drawDrillButtons();
wire();
connect();
