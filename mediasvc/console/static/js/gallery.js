// The gallery: a grid of the media the caller may see, filtered and searched as the list
// API offers, paged endlessly by its cursor links, with statuses that update by themselves
// and a selection for bulk delete and bulk update.

import * as api from './api.js';
import { createCard, gridKeys, updateCard } from './cards.js';
import * as detail from './detail.js';
import { confirmAction, closeDialog, openDialog } from './dialogs.js';
import { announce, byId, fill, h, show } from './dom.js';
import { filterSuggestions, parseEntity } from './entities.js';
import { Watcher } from './watcher.js';

const PAGE = 40;
const BULK_MAX = 100; // the service's max_bulk_ids default; larger selections go in batches

const state = {
  filters: {},
  cards: new Map(), // id -> <li>
  next: null,
  loading: false,
  generation: 0,
  count: 0,
  selected: new Set(),
};
let observer = null;
let watcher = null;
let wired = false;

/** Show the gallery for the signed-in caller (first page of the current filters). */
export function start(caller) {
  if (!wired) wire();
  fill(byId('entity-options'), ...filterSuggestions(caller).map((value) => h('option', { value })));
  watcher = new Watcher(apply, forget);
  observer = new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting)) loadMore();
  }, { rootMargin: '600px 0px' });
  observer.observe(byId('sentinel'));
  reload();
}

/** Stop paging and polling (the session ended). */
export function stop() {
  state.generation += 1;
  if (observer) observer.disconnect();
  if (watcher) watcher.stop();
  observer = watcher = null;
  clearSelection();
  state.cards.clear();
  fill(byId('grid'));
}

function wire() {
  wired = true;
  const form = byId('filters');
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    applyFilters();
  });
  for (const id of ['f-type', 'f-status']) byId(id).addEventListener('change', applyFilters);
  let typing = 0;
  byId('f-search').addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(applyFilters, 350);
  });
  byId('f-entity').addEventListener('change', applyFilters);
  byId('load-more').addEventListener('click', loadMore);
  byId('bulk-select-all').addEventListener('click', selectAllShown);
  byId('bulk-clear').addEventListener('click', clearSelection);
  byId('bulk-delete').addEventListener('click', bulkDelete);
  byId('bulk-edit-open').addEventListener('click', () => openDialog(byId('bulk-edit')));
  byId('bulk-edit-form').addEventListener('submit', bulkEdit);
  gridKeys(byId('grid'));
}

function applyFilters() {
  const entityField = byId('f-entity');
  const entityError = byId('f-entity-error');
  let entity = null;
  try {
    entity = entityField.value.trim() ? parseEntity(entityField.value) : null;
    show(entityError, false);
    entityField.removeAttribute('aria-invalid');
  } catch (error) {
    entityError.textContent = error.message;
    show(entityError, true);
    entityField.setAttribute('aria-invalid', 'true');
    return;
  }
  state.filters = {
    entity,
    mediaType: byId('f-type').value,
    status: byId('f-status').value,
    search: byId('f-search').value.trim(),
  };
  reload();
}

async function reload() {
  state.generation += 1;
  state.cards.clear();
  clearSelection();
  fill(byId('grid'));
  state.next = api.listUrl({ ...state.filters, limit: PAGE });
  state.loading = false;
  await loadMore();
}

async function loadMore() {
  if (!state.next || state.loading) return;
  const generation = state.generation;
  state.loading = true;
  show(byId('gallery-loading'), true);
  show(byId('gallery-error'), false);
  try {
    const page = await api.request(api.sameOrigin(state.next));
    if (generation !== state.generation) return;
    state.count = page.count;
    state.next = page.next;
    for (const media of page.results) place(media, 'end');
  } catch (error) {
    if (generation !== state.generation || error.status === 401) return;
    fill(byId('gallery-error'), `The media could not be loaded: ${error.message}`);
    show(byId('gallery-error'), true);
  } finally {
    if (generation === state.generation) {
      state.loading = false;
      show(byId('gallery-loading'), false);
      summarize();
    }
  }
  // the sentinel may still be in view (a tall screen, a short page): keep filling
  if (generation === state.generation && state.next && sentinelVisible()) loadMore();
}

function sentinelVisible() {
  const box = byId('sentinel').getBoundingClientRect();
  return box.top < window.innerHeight + 600;
}

function summarize() {
  const shown = state.cards.size;
  const empty = shown === 0 && !state.loading;
  show(byId('gallery-empty'), empty);
  byId('gallery-count').textContent = shown ? `${shown} of ${state.count} shown` : '';
  show(byId('load-more'), Boolean(state.next));
}

/** Put a card for `media` into the grid (or update its card), and watch it while it is
 * still uploading or processing. */
function place(media, where) {
  const existing = state.cards.get(media.id);
  if (existing) {
    updateCard(existing, media);
  } else {
    const card = createCard(media, { onOpen: openDetail, onSelect: select });
    state.cards.set(media.id, card);
    const grid = byId('grid');
    if (where === 'start') grid.prepend(card);
    else grid.append(card);
  }
  if (watcher) watcher.follow(media);
}

/** The service has news of a media (a poll, an edit, an upload): show it. */
export function apply(media) {
  if (media.is_primary) {
    for (const card of state.cards.values()) {
      const other = card.media;
      if (other.id !== media.id && other.is_primary && other.entity_type === media.entity_type && other.entity_id === media.entity_id) {
        updateCard(card, { ...other, is_primary: false });
      }
    }
  }
  if (state.cards.has(media.id)) place(media);
  else if (matches(media)) {
    place(media, 'start');
    state.count += 1;
    summarize();
  } else if (watcher) watcher.follow(media); // not shown here, but it may come to match
  detail.refresh(media);
}

/** A media is gone (deleted here, or no longer found). */
export function forget(id) {
  const card = state.cards.get(id);
  if (card) {
    if (card.contains(document.activeElement) || !document.activeElement || document.activeElement === document.body) {
      focusNear(card);
    }
    card.remove();
    state.cards.delete(id);
    state.count = Math.max(0, state.count - 1);
  }
  if (watcher) watcher.unfollow(id);
  state.selected.delete(id);
  updateBulkBar();
  summarize();
}

function focusNear(card) {
  const near = card.nextElementSibling || card.previousElementSibling;
  if (near) near.querySelector('.card-open').focus();
  else byId('gallery-title').focus();
}

/** A finished upload: find its record and show it at the top. */
export function uploaded({ id, entity, filename }) {
  if (watcher) watcher.lookFor({ id, entity_type: entity.type, entity_id: entity.id, filename, status: 'processing' });
}

function matches(media) {
  const { entity, mediaType, status, search } = state.filters;
  if (entity && (media.entity_type !== entity.type || (entity.id && media.entity_id !== entity.id))) return false;
  if (mediaType && media.media_type !== mediaType) return false;
  if (status && media.status !== status) return false;
  if (search) {
    const text = [media.filename, media.title, media.description].join('\u001f').toLowerCase();
    if (!text.includes(search.toLowerCase())) return false;
  }
  return true;
}

function openDetail(media) {
  detail.open(media, { onChange: apply, onDelete: forget });
}

// ---- selection and bulk actions

function select(id, selected) {
  if (selected) state.selected.add(id);
  else state.selected.delete(id);
  updateBulkBar();
}

function selectAllShown() {
  for (const [id, card] of state.cards) {
    state.selected.add(id);
    card.querySelector('.card-check').checked = true;
  }
  updateBulkBar();
}

function clearSelection() {
  for (const id of state.selected) {
    const card = state.cards.get(id);
    if (card) card.querySelector('.card-check').checked = false;
  }
  state.selected.clear();
  updateBulkBar();
}

function updateBulkBar() {
  const count = state.selected.size;
  byId('bulk-count').textContent = count ? `${count} selected` : 'None selected';
  for (const id of ['bulk-clear', 'bulk-delete', 'bulk-edit-open']) byId(id).disabled = count === 0;
}

function batches(ids) {
  const out = [];
  for (let i = 0; i < ids.length; i += BULK_MAX) out.push(ids.slice(i, i + BULK_MAX));
  return out;
}

async function bulkDelete() {
  const ids = [...state.selected];
  const sure = await confirmAction({
    title: `Delete ${ids.length} media?`,
    message: 'Their files and derived files are deleted too. This cannot be undone.',
    confirmLabel: `Delete ${ids.length}`,
  });
  if (!sure) return;
  let deleted = 0;
  const failed = [];
  try {
    for (const batch of batches(ids)) {
      const answer = await api.bulkDelete(batch);
      deleted += answer.deleted;
      const refused = new Set(answer.failed.map((f) => f.id));
      failed.push(...answer.failed);
      for (const id of batch) if (!refused.has(id)) forget(id);
    }
  } catch (error) {
    announce(`Bulk delete stopped: ${error.message}`);
    return;
  }
  byId('gallery-title').focus(); // the button that had the focus is disabled now
  announce(failed.length ? `Deleted ${deleted}; ${failed.length} could not be deleted (${failed[0].error}).` : `Deleted ${deleted} media.`);
}

async function bulkEdit(event) {
  event.preventDefault();
  const form = byId('bulk-edit-form');
  const updates = {};
  for (const name of ['title', 'description', 'alt_text']) {
    const value = form.elements[name].value;
    if (value.trim()) updates[name] = value.trim();
  }
  const status = byId('bulk-edit-status');
  if (!Object.keys(updates).length) {
    status.textContent = 'Fill in at least one field: empty fields are left as they are.';
    return;
  }
  const ids = [...state.selected];
  let updated = 0;
  try {
    for (const batch of batches(ids)) updated += (await api.bulkUpdate(batch, updates)).updated;
  } catch (error) {
    status.textContent = `Not saved: ${error.message}`;
    return;
  }
  for (const id of ids) {
    const card = state.cards.get(id);
    if (card) apply({ ...card.media, ...updates });
  }
  form.reset();
  status.textContent = '';
  closeDialog(byId('bulk-edit'));
  announce(`Updated ${updated} media.`);
}
