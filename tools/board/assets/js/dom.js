// @ts-check
// Small DOM helpers. Everything a visitor sees is set as text (never innerHTML), so no message
// body or reason can inject markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

/**
 * The element `selector` names; the page has every one it asks for.
 * @param {string} selector
 * @returns {any}
 */
export const $ = (selector) => document.querySelector(selector);

/**
 * @typedef {Record<string, unknown>|null|undefined} Attrs
 * @typedef {Node|string|number|null|undefined|false|Child[]} Child
 */

/**
 * An HTML element with attributes (`on...` are listeners) and children (text or nodes).
 * @param {string} tag
 * @param {Attrs} attrs
 * @param {...Child} children
 * @returns {HTMLElement}
 */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

/**
 * An SVG element, as {@link el}.
 * @param {string} tag
 * @param {Attrs} [attrs]
 * @param {...Child} children
 * @returns {SVGElement}
 */
export function svg(tag, attrs, ...children) {
  const node = /** @type {SVGElement} */ (document.createElementNS(SVG_NS, tag));
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

/**
 * @param {Element} node
 * @param {Child[]} children
 */
function append(node, children) {
  for (const child of /** @type {any[]} */ (children).flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/**
 * @param {Element} node
 * @param {Attrs} attrs
 */
function setAttrs(node, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    // data-* attributes keep false too: tests and styles read data-running="false".
    if (key.startsWith('data-')) {
      if (value !== null && value !== undefined) node.setAttribute(key, String(value));
      continue;
    }
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') node.setAttribute('class', String(value));
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), /** @type {EventListener} */ (value));
    else node.setAttribute(key, value === true ? '' : String(value));
  }
}

/**
 * @param {number} ms
 * @returns {string}
 */
export function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

/**
 * @param {number} ms
 * @returns {string}
 */
export function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}

/**
 * @param {string} id
 * @returns {string}
 */
export function short(id) {
  return id && id.length > 13 ? `${id.slice(0, 8)}…` : id;
}

/**
 * An amount in minor units as money: `money(899, 'EUR')` is "€8.99" (the currency's own
 * number of decimals; an unknown code shows the minor units as they are).
 * @param {number} minor
 * @param {string} currency
 * @returns {string}
 */
export function money(minor, currency) {
  try {
    const format = new Intl.NumberFormat(undefined, { style: 'currency', currency });
    const digits = format.resolvedOptions().maximumFractionDigits ?? 2;
    return format.format(minor / 10 ** digits);
  } catch (_) {
    return `${minor} ${currency} (minor units)`;
  }
}

/**
 * An order's lines in a few words: "2 × burger, 1 × pizza".
 * @param {{item: string, qty: number}[]} lines
 * @returns {string}
 */
export function linesText(lines) {
  return lines.map((l) => `${l.qty} × ${l.item}`).join(', ');
}
