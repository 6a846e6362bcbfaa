// One media in the grid: its thumbnail (a placeholder until there is one), name, status,
// and a checkbox to select it. Cards are updated in place so focus stays where it was.

import { h, fill } from './dom.js';
import { icon } from './icons.js';

export const STATUS_LABELS = {
  pending: 'Uploading',
  processing: 'Processing',
  ready: 'Ready',
  failed: 'Failed',
};

const TYPE_ICONS = { image: 'image', video: 'video', audio: 'audio', document: 'document' };

/** A new card for `media`; `onOpen(media, card)` and `onSelect(id, selected)` are called
 * on the person's actions. */
export function createCard(media, { onOpen, onSelect }) {
  const statusId = `card-status-${media.id}`;
  const checkbox = h('input', { type: 'checkbox', class: 'card-check', 'aria-label': `Select ${media.filename}` });
  checkbox.addEventListener('change', () => onSelect(media.id, checkbox.checked));
  const open = h('button', { type: 'button', class: 'card-open', 'aria-describedby': statusId });
  open.addEventListener('click', () => onOpen(card.media));
  const card = h('li', { class: 'card', 'data-id': media.id },
    open,
    h('div', { class: 'card-meta', id: statusId }),
    h('div', { class: 'card-select' }, checkbox),
  );
  updateCard(card, media);
  return card;
}

/** Show `media`'s current state on its card. */
export function updateCard(card, media) {
  card.media = media;
  card.dataset.status = media.status;
  const open = card.querySelector('.card-open');
  const previous = open.querySelector('img.thumb-image');
  if (!(previous && previous.dataset.key === thumbKey(media))) {
    fill(open, thumbnail(media), h('span', { class: 'card-name', text: media.filename }));
  } else {
    open.querySelector('.card-name').textContent = media.filename;
  }
  fill(card.querySelector('.card-meta'), ...badges(media));
}

function thumbKey(media) {
  // a signed URL changes with each answer; the variant itself is named by its path
  return media.thumbnail_url ? new URL(media.thumbnail_url, location.href).pathname : '';
}

function thumbnail(media) {
  if (media.thumbnail_url) {
    const image = h('img', { class: 'thumb-image', src: media.thumbnail_url, alt: '', loading: 'lazy', decoding: 'async' });
    image.dataset.key = thumbKey(media);
    return h('span', { class: 'thumb' }, image);
  }
  const waiting = media.status === 'failed' ? 'No preview' : media.status === 'ready' ? 'No preview' : `${STATUS_LABELS[media.status]}…`;
  return h('span', { class: `thumb thumb-placeholder placeholder-${media.status}` },
    icon(TYPE_ICONS[media.media_type] || 'document'),
    h('span', { class: 'placeholder-text', text: waiting }));
}

function badges(media) {
  const list = [h('span', { class: `badge badge-${media.status}`, text: STATUS_LABELS[media.status] || media.status })];
  if (media.is_primary) list.push(h('span', { class: 'badge badge-primary' }, icon('star'), 'Primary'));
  if (!media.alt_text && ['image', 'video'].includes(media.media_type)) {
    list.push(h('span', { class: 'badge badge-alt' }, 'No alt text'));
  }
  return list;
}

/** Arrow keys move between the cards' buttons in reading order, row by row. */
export function gridKeys(grid) {
  grid.addEventListener('keydown', (event) => {
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: 'down', ArrowUp: 'up', Home: 'home', End: 'end' };
    const move = moves[event.key];
    if (move === undefined || !event.target.classList.contains('card-open')) return;
    const buttons = [...grid.querySelectorAll('.card-open')];
    const index = buttons.indexOf(event.target);
    const columns = columnsOf(buttons);
    let target = index;
    if (move === 'down') target = index + columns;
    else if (move === 'up') target = index - columns;
    else if (move === 'home') target = 0;
    else if (move === 'end') target = buttons.length - 1;
    else target = index + move;
    if (target < 0 || target >= buttons.length) return;
    event.preventDefault();
    buttons[target].focus();
  });
}

function columnsOf(buttons) {
  if (!buttons.length) return 1;
  const top = buttons[0].getBoundingClientRect().top;
  const sameRow = buttons.findIndex((b) => b.getBoundingClientRect().top > top + 1);
  return sameRow === -1 ? buttons.length : sameRow;
}
