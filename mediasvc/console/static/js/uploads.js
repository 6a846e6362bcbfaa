// Uploads through tus (tus-js-client, vendored): files and folders picked or dropped, sent
// in chunks with retries, resumable (fingerprints in localStorage), each with its progress,
// pause, resume and cancel (termination); a refused file shows the service's own message.

import { TUS } from './api.js';
import { announce, byId, fill, formatBytes, h, show } from './dom.js';
import { parseEntity, uploadTargets } from './entities.js';
import { icon } from './icons.js';
import * as session from './session.js';

const CHUNK = 8 * 1024 * 1024;
const AT_ONCE = 3;
const RETRY_DELAYS = [0, 1000, 3000, 5000, 10000, 20000];
const OTHER = '__other__';

/** `uploaded` events: detail {id, entity, filename} once a file is stored. */
export const events = new EventTarget();

const items = [];
let caller = null;
let wired = false;
let counter = 0;

/** Offer the caller's upload targets. */
export function start(who) {
  caller = who;
  if (!wired) wire();
  const { targets, free } = uploadTargets(who);
  const select = byId('upload-entity');
  fill(select, ...targets.map((t) => h('option', { value: t.value, text: t.label })),
    free ? h('option', { value: OTHER, text: 'Another entity…' }) : null);
  if (!targets.length && !free) {
    fill(select, h('option', { value: '', text: 'No entity to upload to' }));
  }
  select.disabled = !targets.length && !free;
  showOther();
}

/** The session ended: every transfer stops where it is (Resume continues it later). */
export function stop() {
  for (const item of items) if (item.state === 'uploading' || item.state === 'queued') pause(item);
}

function wire() {
  wired = true;
  byId('upload-entity').addEventListener('change', showOther);
  byId('choose-files').addEventListener('click', () => byId('file-input').click());
  byId('choose-folder').addEventListener('click', () => byId('folder-input').click());
  for (const id of ['file-input', 'folder-input']) {
    const input = byId(id);
    input.addEventListener('change', () => {
      add([...input.files].map((file) => ({ file, path: file.webkitRelativePath || file.name })));
      input.value = '';
    });
  }
  const zone = byId('dropzone');
  zone.addEventListener('dragover', (event) => {
    event.preventDefault();
    zone.classList.add('dragging');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('dragging'));
  zone.addEventListener('drop', async (event) => {
    event.preventDefault();
    zone.classList.remove('dragging');
    add(await droppedFiles(event.dataTransfer));
  });
  byId('upload-clear').addEventListener('click', clearFinished);
}

function showOther() {
  const other = byId('upload-entity').value === OTHER;
  show(byId('upload-other'), other);
}

/** The entity chosen for new uploads, or null (and the field says why). */
function chosenEntity() {
  const value = byId('upload-entity').value;
  const error = byId('upload-entity-error');
  const field = byId('upload-entity-other');
  show(error, false);
  field.removeAttribute('aria-invalid');
  if (!value) return null;
  try {
    return parseEntity(value === OTHER ? field.value : value, { needId: true });
  } catch (failure) {
    error.textContent = failure.message;
    show(error, true);
    field.setAttribute('aria-invalid', 'true');
    field.focus();
    return null;
  }
}

async function droppedFiles(transfer) {
  const entries = [...transfer.items].map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry()).filter(Boolean);
  if (!entries.length) return [...transfer.files].map((file) => ({ file, path: file.name }));
  const found = [];
  for (const entry of entries) await walk(entry, '', found);
  return found;
}

async function walk(entry, prefix, found) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    found.push({ file, path: prefix + entry.name });
    return;
  }
  const reader = entry.createReader();
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) break;
    for (const child of batch) {
      if (!child.name.startsWith('.')) await walk(child, `${prefix}${entry.name}/`, found);
    }
  }
}

function add(picked) {
  if (!picked.length) return;
  const entity = chosenEntity();
  if (!entity) return;
  for (const { file, path } of picked) {
    const item = { id: ++counter, file, path, entity, state: 'queued', sent: 0, total: file.size, upload: null, error: '' };
    item.element = itemElement(item);
    items.push(item);
    byId('upload-list').append(item.element);
  }
  announce(`${picked.length} file${picked.length === 1 ? '' : 's'} added to the uploads.`);
  show(byId('upload-queue'), true);
  pump();
  summarize();
}

function pump() {
  const busy = items.filter((i) => i.state === 'uploading').length;
  for (const item of items.filter((i) => i.state === 'queued').slice(0, Math.max(0, AT_ONCE - busy))) begin(item);
}

function begin(item) {
  item.state = 'uploading';
  item.error = '';
  if (!item.upload) item.upload = newUpload(item);
  render(item);
  const upload = item.upload;
  upload.findPreviousUploads().then((previous) => {
    if (item.state !== 'uploading') return;
    if (previous.length && !upload.url) upload.resumeFromPreviousUpload(previous[0]);
    upload.start();
  });
}

function newUpload(item) {
  const { file, entity } = item;
  return new window.tus.Upload(file, {
    endpoint: TUS,
    chunkSize: CHUNK,
    retryDelays: RETRY_DELAYS,
    metadata: { filename: file.name, filetype: file.type, entity_type: entity.type, entity_id: entity.id },
    storeFingerprintForResuming: true,
    removeFingerprintOnSuccess: true,
    fingerprint: (blob) => Promise.resolve(['mediasvc', caller.sub, entity.type, entity.id, item.path, blob.size, blob.lastModified].join('|')),
    onBeforeRequest: (request) => {
      request.setHeader('Authorization', `Bearer ${session.token()}`);
    },
    onShouldRetry: (error, attempt, options) => {
      const status = error.originalResponse ? error.originalResponse.getStatus() : 0;
      if (status === 401 || !session.token()) return false;
      return (status === 0 || status >= 500 || status === 409 || status === 423 || status === 429) && attempt < options.retryDelays.length;
    },
    onProgress: (sent, total) => {
      item.sent = sent;
      item.total = total;
      render(item);
      summarize();
    },
    onSuccess: () => {
      item.state = 'done';
      item.sent = item.total;
      render(item);
      summarize();
      const id = item.upload.url.replace(/\/+$/, '').split('/').pop();
      events.dispatchEvent(new CustomEvent('uploaded', { detail: { id, entity, filename: file.name } }));
      pump();
    },
    onError: (error) => failed(item, error),
  });
}

function failed(item, error) {
  const response = error.originalResponse;
  const status = response ? response.getStatus() : 0;
  item.state = 'failed';
  item.status = status;
  item.error = serviceMessage(response) || (status ? `The service answered ${status}.` : 'The service could not be reached; Retry continues where it stopped.');
  render(item);
  summarize();
  announce(`${item.path} was not uploaded: ${item.error}`);
  if (status === 401) session.refused(item.error);
  pump();
}

function serviceMessage(response) {
  if (!response) return '';
  try {
    const body = JSON.parse(response.getBody() || '');
    return typeof body.error === 'string' ? body.error : '';
  } catch {
    return '';
  }
}

function pause(item) {
  const wasRunning = item.state === 'uploading';
  item.state = 'paused';
  if (wasRunning && item.upload) item.upload.abort(false);
  render(item);
  summarize();
  pump();
}

function resume(item) {
  item.state = 'queued';
  render(item);
  pump();
}

async function cancel(item, done = 'Cancelled') {
  const upload = item.upload;
  item.state = 'cancelled';
  render(item);
  summarize();
  if (upload) {
    try {
      await upload.abort(true); // tus termination: the service drops what it received
    } catch {
      // nothing was created yet, or it is already gone
    }
  }
  item.element.remove();
  items.splice(items.indexOf(item), 1);
  announce(`${done} ${item.path}.`);
  summarize();
  pump();
  focusAfterRemoval();
}

/** Take a file that was not uploaded off the list (its partial upload, if any, is
 * terminated like a cancel). */
function dismiss(item) {
  cancel(item, 'Removed');
}

function clearFinished() {
  for (const item of [...items]) {
    if (item.state === 'done' || item.state === 'failed') {
      item.element.remove();
      items.splice(items.indexOf(item), 1);
    }
  }
  summarize();
  focusAfterRemoval();
}

function focusAfterRemoval() {
  if (!items.length) {
    show(byId('upload-queue'), false);
    byId('choose-files').focus();
  } else if (!document.activeElement || document.activeElement === document.body) {
    byId('upload-summary').focus();
  }
}

// ---- showing

function itemElement(item) {
  const name = item.path;
  const progress = h('progress', { max: 100, value: 0, 'aria-label': `Upload of ${name}` });
  const preview = item.file.type.startsWith('image/') && item.file.size < 20 * 1024 * 1024
    ? h('img', { class: 'upload-preview', src: URL.createObjectURL(item.file), alt: '' })
    : h('span', { class: 'upload-preview upload-preview-icon' }, icon(iconFor(item.file.type)));
  const button = (label, action, cls) => h('button', { type: 'button', class: `small ${cls}`, onclick: () => action(item) },
    label, h('span', { class: 'visually-hidden', text: ` ${name}` }));
  const element = h('li', { class: 'upload-item' },
    preview,
    h('div', { class: 'upload-info' },
      h('span', { class: 'upload-name', text: name }),
      progress,
      h('span', { class: 'upload-detail' }),
      h('p', { class: 'upload-error' })),
    h('div', { class: 'upload-actions' },
      button('Pause', pause, 'act-pause'),
      button('Resume', resume, 'act-resume'),
      button('Retry', resume, 'act-retry'),
      button('Cancel', cancel, 'act-cancel'),
      button('Remove', dismiss, 'act-remove')));
  element.progress = progress;
  return element;
}

function iconFor(type) {
  if (type.startsWith('video/')) return 'video';
  if (type.startsWith('audio/')) return 'audio';
  if (type.startsWith('image/')) return 'image';
  return 'document';
}

const STATE_TEXT = { queued: 'Waiting', uploading: 'Uploading', paused: 'Paused', done: 'Uploaded', failed: 'Not uploaded', cancelled: 'Cancelling…' };

function render(item) {
  const { element } = item;
  element.dataset.state = item.state;
  const percent = item.total ? Math.floor((item.sent / item.total) * 100) : 0;
  element.progress.value = item.state === 'done' ? 100 : percent;
  const amount = `${formatBytes(item.sent)} of ${formatBytes(item.total)}`;
  element.querySelector('.upload-detail').textContent = `${STATE_TEXT[item.state]} · ${amount}${item.state === 'uploading' ? ` · ${percent}%` : ''}`;
  const error = element.querySelector('.upload-error');
  error.textContent = item.error;
  show(error, Boolean(item.error));
  const can = {
    'act-pause': item.state === 'uploading' || item.state === 'queued',
    'act-resume': item.state === 'paused',
    'act-retry': item.state === 'failed' && retryable(item),
    'act-cancel': ['queued', 'uploading', 'paused'].includes(item.state),
    'act-remove': item.state === 'failed',
  };
  for (const [cls, visible] of Object.entries(can)) show(element.querySelector(`.${cls}`), visible);
  if (item.state === 'done' || item.state === 'failed') keepFocus(element);
}

/** A refusal (400, 403, 413, 415) will not change by trying again; a lost connection may. */
function retryable(item) {
  const status = item.status || 0;
  return !(status >= 400 && status < 500 && status !== 408 && status !== 409 && status !== 423 && status !== 429);
}

function keepFocus(element) {
  // a button that had the focus may just have been hidden: keep the focus in the row
  const focused = document.activeElement;
  if (focused && element.contains(focused) && focused.closest('[hidden]')) {
    const visible = [...element.querySelectorAll('button')].find((b) => !b.hidden);
    (visible || byId('upload-summary')).focus();
  }
}

function summarize() {
  const live = items.filter((i) => i.state !== 'cancelled');
  const sent = live.reduce((sum, i) => sum + (i.state === 'done' ? i.total : i.sent), 0);
  const total = live.reduce((sum, i) => sum + i.total, 0);
  const done = live.filter((i) => i.state === 'done').length;
  const failedCount = live.filter((i) => i.state === 'failed').length;
  const progress = byId('upload-total');
  progress.value = total ? Math.floor((sent / total) * 100) : 0;
  const refused = failedCount ? ` · ${failedCount} not uploaded` : '';
  byId('upload-summary').textContent = `${done} of ${live.length} file${live.length === 1 ? '' : 's'} uploaded · ${formatBytes(sent)} of ${formatBytes(total)}${refused}`;
  byId('upload-clear').disabled = !live.some((i) => i.state === 'done' || i.state === 'failed');
}
