// @ts-check
// Talking to the board: the token, JSON POSTs, and how a button shows its answer.

import { $ } from './dom.js';

// The board's token, if its address came with one (`#token=...`, which the board prints at
// start): every action sends it. A fragment never travels to a server, and it is taken off the
// address bar at once (kept for this tab only), so it is not shown on a projector.
export const BOARD_TOKEN = (() => {
  const fromUrl = new URLSearchParams(location.hash.slice(1)).get('token');
  if (fromUrl) {
    sessionStorage.setItem('board-token', fromUrl);
    history.replaceState(null, '', location.pathname + location.search);
  }
  return sessionStorage.getItem('board-token');
})();

/**
 * POST a JSON body; the JSON answer, or an error with the board's reason.
 * @param {string} url
 * @param {object} [body]
 * @returns {Promise<any>}
 */
export async function post(url, body) {
  /** @type {Record<string, string>} */
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
  if (!response.ok) throw new Error((data && data.error) || `HTTP ${response.status}`);
  return data;
}

/**
 * Show an action's outcome (and, as data-* attributes, what the tests read).
 * @param {string} text
 * @param {boolean} [ok]
 * @param {Record<string, string>} [data]
 */
export function say(text, ok = true, data = {}) {
  const out = $('#action-result');
  out.textContent = text;
  out.className = `result ${ok ? 'ok' : 'bad'}`;
  for (const key of Object.keys(out.dataset)) delete out.dataset[key];
  Object.assign(out.dataset, data);
}

/**
 * Run an async button action with the button disabled meanwhile.
 * @param {HTMLButtonElement} button
 * @param {() => Promise<unknown>} work
 */
export async function busy(button, work) {
  button.disabled = true;
  button.classList.add('busy');
  try {
    await work();
  } catch (error) {
    say(error instanceof Error ? error.message : String(error), false);
  } finally {
    button.disabled = false;
    button.classList.remove('busy');
  }
}

/**
 * A dangerous button asks again: the first click arms it for a few seconds.
 * @param {HTMLButtonElement} button
 * @param {string|(() => string)} question
 * @param {() => Promise<unknown>} action
 */
export function confirmFirst(button, question, action) {
  const label = button.textContent;
  /** @type {ReturnType<typeof setTimeout>|null} */
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
