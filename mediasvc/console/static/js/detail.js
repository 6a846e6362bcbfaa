// The detail view of one media (a modal dialog): the original (image, video, audio with
// its waveform, PDF preview), every variant with its size, metadata editing with a nudge
// when alt text is empty, and set primary, reprocess, retry and delete.

import * as api from './api.js';
import { closeDialog, confirmAction, openDialog } from './dialogs.js';
import { announce, byId, fill, formatBytes, formatDuration, formatTime, h, show } from './dom.js';
import { icon } from './icons.js';
import { STATUS_LABELS } from './cards.js';

const REPROCESS = { image: ['thumbnail', 'optimize'], video: ['thumbnail', 'optimize'], audio: ['thumbnail'] };
const EDITABLE = ['title', 'description', 'alt_text'];

let current = null; // the media shown
let hooks = { onChange: () => {}, onDelete: () => {} };
let wired = false;
let dirty = false;

/** Open the dialog on `media`; `onChange(media)` and `onDelete(id)` tell the gallery. */
export function open(media, callbacks) {
  if (!wired) wire();
  hooks = callbacks;
  current = media;
  dirty = false;
  render(media, { form: true });
  byId('detail-status').textContent = '';
  openDialog(byId('detail'));
}

/** News of a media (a poll): shown if it is the one open; edits in progress are kept. */
export function refresh(media) {
  if (!current || current.id !== media.id || !byId('detail').open) return;
  current = media;
  render(media, { form: !dirty });
}

function wire() {
  wired = true;
  const form = byId('detail-form');
  form.addEventListener('input', () => {
    dirty = true;
    nudge();
  });
  form.addEventListener('submit', save);
  byId('detail-primary').addEventListener('click', () => act('set_primary'));
  byId('detail-reprocess').addEventListener('click', () => act('reprocess'));
  byId('detail-retry').addEventListener('click', () => act('retry'));
  byId('detail-delete').addEventListener('click', remove);
  byId('detail').addEventListener('close', () => {
    for (const player of byId('detail-preview').querySelectorAll('video, audio')) player.pause();
    current = null;
  });
}

function render(media, { form }) {
  fill(byId('detail-title'), media.title || media.filename);
  renderPreview(media);
  renderFacts(media);
  renderVariants(media);
  const failed = media.status === 'failed';
  byId('detail-failure').textContent = failed ? `Processing failed: ${media.error || (media.job && media.job.error) || 'no reason given'}` : '';
  show(byId('detail-failure'), failed);
  const primary = byId('detail-primary');
  primary.disabled = media.is_primary || media.status === 'pending';
  primary.lastChild.textContent = media.is_primary ? 'Primary' : 'Set as primary';
  const operations = reprocessOperations(media);
  show(byId('detail-reprocess'), !failed && operations.length > 0);
  byId('detail-reprocess').disabled = media.status !== 'ready';
  show(byId('detail-retry'), failed && operations.length > 0);
  const original = byId('detail-original');
  show(original, media.status !== 'pending');
  original.href = media.url;
  if (form) {
    const fields = byId('detail-form').elements;
    for (const name of EDITABLE) fields[name].value = media[name] || '';
    dirty = false;
  }
  nudge();
}

function renderPreview(media) {
  const box = byId('detail-preview');
  const name = media.filename;
  if (media.status === 'pending') {
    fill(box, h('p', { class: 'preview-note', text: 'The file has not been uploaded yet.' }));
    return;
  }
  const thumb = media.thumbnail_url;
  const parts = [];
  if (media.media_type === 'image') {
    parts.push(h('img', { src: media.url, alt: media.alt_text || '', class: 'preview-image' }));
  } else if (media.media_type === 'video') {
    parts.push(h('video', { src: media.url, poster: thumb || undefined, controls: true, preload: 'metadata', class: 'preview-video', 'aria-label': `Video: ${name}` }));
  } else if (media.media_type === 'audio') {
    if (thumb) parts.push(h('img', { src: thumb, alt: `Waveform of ${name}`, class: 'preview-waveform' }));
    parts.push(h('audio', { src: media.url, controls: true, preload: 'metadata', 'aria-label': `Audio: ${name}` }));
  } else if (thumb) {
    parts.push(h('img', { src: thumb, alt: `First page of ${name}`, class: 'preview-image' }));
  } else {
    parts.push(h('p', { class: 'preview-note' }, icon('document'), ` ${media.content_type}: no preview.`));
  }
  if (!thumb && media.status === 'processing') parts.push(h('p', { class: 'preview-note', text: 'Derived files are being made…' }));
  fill(box, ...parts);
}

function renderFacts(media) {
  const rows = [
    ['Status', STATUS_LABELS[media.status] || media.status],
    ['File', media.filename],
    ['Type', media.content_type],
    ['Size', formatBytes(media.file_size)],
    ['Dimensions', media.width && media.height ? `${media.width} × ${media.height}` : ''],
    ['Duration', formatDuration(media.duration)],
    ['Entity', `${media.entity_type}:${media.entity_id}`],
    ['Primary', media.is_primary ? 'Yes' : 'No'],
    ['Uploaded', formatTime(media.created_at)],
    ['Changed', formatTime(media.updated_at)],
    ['Views', String(media.view_count)],
    ['Downloads', String(media.download_count)],
    ['Last job', jobText(media.job)],
  ].filter(([, value]) => value);
  fill(byId('detail-facts'), ...rows.flatMap(([name, value]) => [h('dt', { text: name }), h('dd', { text: value })]));
}

function jobText(job) {
  if (!job) return '';
  const attempts = job.attempts ? `, attempt ${job.attempts}` : '';
  return `${job.operations.join(', ')}: ${job.state}${attempts}`;
}

function renderVariants(media) {
  const list = byId('detail-variants');
  const items = media.variants.map((variant) => h('li', {},
    h('a', { href: variant.url, target: '_blank', rel: 'noopener noreferrer', text: variant.name }),
    h('span', { class: 'variant-facts', text: [
      variant.content_type,
      variant.width && variant.height ? `${variant.width} × ${variant.height}` : '',
      formatBytes(variant.size),
    ].filter(Boolean).join(' · ') })));
  fill(list, ...(items.length ? items : [h('li', { class: 'muted', text: media.status === 'ready' ? 'None.' : 'None yet.' })]));
}

function nudge() {
  const altField = byId('detail-form').elements.alt_text;
  show(byId('alt-nudge'), !altField.value.trim());
}

function reprocessOperations(media) {
  if (media.job && media.job.operations && media.job.operations.length) return media.job.operations;
  if (REPROCESS[media.media_type]) return REPROCESS[media.media_type];
  return media.content_type === 'application/pdf' ? ['thumbnail'] : [];
}

async function save(event) {
  event.preventDefault();
  if (!current) return;
  const fields = byId('detail-form').elements;
  const changes = {};
  for (const name of EDITABLE) changes[name] = fields[name].value.trim();
  await run('Saved.', () => api.updateMedia(current.id, changes), { form: true });
}

async function act(action) {
  if (!current) return;
  const media = current;
  if (action === 'set_primary') {
    await run('This is now the primary media of its entity.', () => api.setPrimary(media.id));
  } else {
    const options = media.job && media.job.options && Object.keys(media.job.options).length ? media.job.options : undefined;
    const label = action === 'retry' ? 'Queued again.' : 'Queued for processing.';
    await run(label, () => api.processMedia(media.id, reprocessOperations(media), options));
  }
}

async function run(done, call, { form = false } = {}) {
  const status = byId('detail-status');
  status.textContent = 'Working…';
  try {
    const media = await call();
    if (form) dirty = false;
    if (current && current.id === media.id) {
      current = media;
      render(media, { form: form || !dirty });
    }
    hooks.onChange(media);
    status.textContent = done;
  } catch (error) {
    if (error.status !== 401) status.textContent = `Not done: ${error.message}`;
  }
}

async function remove() {
  if (!current) return;
  const media = current;
  const sure = await confirmAction({
    title: `Delete ${media.filename}?`,
    message: 'The file and its derived files are deleted too. This cannot be undone.',
  });
  if (!sure) return;
  try {
    await api.deleteMedia(media.id);
  } catch (error) {
    if (error.status !== 401) byId('detail-status').textContent = `Not deleted: ${error.message}`;
    return;
  }
  closeDialog(byId('detail'));
  hooks.onDelete(media.id);
  announce(`Deleted ${media.filename}.`);
}
