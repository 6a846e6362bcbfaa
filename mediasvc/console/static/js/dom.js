// Small DOM helpers: elements built in code (never from HTML strings of data), formats.

/** An element: `h('button', {class: 'x', type: 'button', onclick: f}, 'text', child)`.
 * Attributes are set as attributes (aria-*, data-*), `on*` keys add listeners, `text`
 * sets textContent; there is deliberately no way to set a style attribute (CSP). */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2), value);
    } else if (name === 'text') {
      element.textContent = value;
    } else if (name === 'value') {
      element.value = value; // a textarea has no value attribute
    } else if (name === 'class') {
      element.className = value;
    } else if (name in element && typeof value !== 'string') {
      element[name] = value; // properties such as checked, value, disabled
    } else {
      element.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** The element with this id (they are all in index.html). */
export const byId = (id) => document.getElementById(id);

/** Replace an element's children. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
}

/** Show or hide (the `hidden` attribute, which the style sheet makes win). */
export function show(element, visible = true) {
  element.hidden = !visible;
}

const SIZE_UNITS = ['bytes', 'KB', 'MB', 'GB', 'TB'];

/** 1536 -> "1.5 KB" (1024-based, as the service words its limits). */
export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return '';
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < SIZE_UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} bytes` : `${value.toFixed(value < 10 ? 1 : 0)} ${SIZE_UNITS[unit]}`;
}

/** An ISO time as the reader's local date and time. */
export function formatTime(iso) {
  if (!iso) return '';
  return new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

/** Seconds as m:ss or h:mm:ss. */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return '';
  const total = Math.round(seconds);
  const parts = [Math.floor(total / 3600), Math.floor((total % 3600) / 60), total % 60];
  const [hours, minutes, secs] = parts;
  const mmss = `${String(minutes).padStart(hours ? 2 : 1, '0')}:${String(secs).padStart(2, '0')}`;
  return hours ? `${hours}:${mmss}` : mmss;
}

/** How long ago an ISO time was, roughly ("3 min ago"). */
export function ago(iso) {
  if (!iso) return '';
  const seconds = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

/** A short message in the page's polite live region. */
export function announce(message) {
  const region = byId('toast');
  region.textContent = '';
  // a fresh text node after a tick, so the same message twice is read twice
  setTimeout(() => {
    region.textContent = message;
  }, 50);
  clearTimeout(announce.timer);
  announce.timer = setTimeout(() => {
    region.textContent = '';
  }, 6000);
}
