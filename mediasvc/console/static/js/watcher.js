// Statuses that update by themselves: media still uploading or processing are looked up
// again through the list API (a read of one media would count a view), with a backoff.
// New uploads have display_order 0 and are the newest, so they are on the first page of
// their entity's list; older ones being processed again are found by their filename.

import * as api from './api.js';

const UNSETTLED = new Set(['pending', 'processing']);
const FIRST_DELAY = 1000;
const LONGEST_DELAY = 10000;
const BACKOFF = 1.5;
const ENTITY_PAGE = 100; // the service's max_page_size default
const SEARCH_LIMIT = 200; // its max_search_length default
const MISSES = 3;

export class Watcher {
  /** `onNews(media)` for a changed record, `onGone(id)` for one no longer found. */
  constructor(onNews, onGone) {
    this.onNews = onNews;
    this.onGone = onGone;
    this.watched = new Map(); // id -> {media, misses, seen}
    this.delay = FIRST_DELAY;
    this.timer = 0;
    this.running = false;
    this.stopped = false;
  }

  /** Keep an eye on `media` while it is unsettled (and forget it once it is settled). */
  follow(media) {
    if (!UNSETTLED.has(media.status)) {
      this.watched.delete(media.id);
      return;
    }
    const known = this.watched.get(media.id);
    this.watched.set(media.id, { media, misses: 0, seen: true });
    if (!known) this.soon();
  }

  /** Look for a media that was just made (an upload): reported when found. */
  lookFor(partial) {
    this.watched.set(partial.id, { media: partial, misses: 0, seen: false });
    this.soon(200);
  }

  unfollow(id) {
    this.watched.delete(id);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.watched.clear();
  }

  soon(delay = FIRST_DELAY) {
    this.delay = FIRST_DELAY;
    if (this.running) return; // the running round schedules the next
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.round(), delay);
  }

  async round() {
    if (this.stopped || !this.watched.size) return;
    this.running = true;
    try {
      for (const group of this.byEntity()) await this.check(group);
    } catch (error) {
      if (error.status === 401) return; // the session is over
    } finally {
      this.running = false;
    }
    if (this.stopped || !this.watched.size) return;
    this.timer = setTimeout(() => this.round(), this.delay);
    this.delay = Math.min(this.delay * BACKOFF, LONGEST_DELAY);
  }

  byEntity() {
    const groups = new Map();
    for (const entry of this.watched.values()) {
      const key = `${entry.media.entity_type}:${entry.media.entity_id}`;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(entry);
    }
    return groups.values();
  }

  async check(entries) {
    const { entity_type: type, entity_id: id } = entries[0].media;
    const page = await api.request(api.listUrl({ entity: { type, id }, limit: ENTITY_PAGE }));
    const found = new Map(page.results.map((media) => [media.id, media]));
    for (const entry of entries) {
      const media = found.get(entry.media.id) || (await this.search(entry.media));
      if (this.stopped) return;
      if (media) this.report(entry, media);
      else this.missed(entry);
    }
  }

  async search(media) {
    const search = media.filename.toLowerCase().slice(0, SEARCH_LIMIT);
    const entity = { type: media.entity_type, id: media.entity_id };
    const page = await api.request(api.listUrl({ entity, search, limit: ENTITY_PAGE }));
    return page.results.find((item) => item.id === media.id) || null;
  }

  report(entry, media) {
    const before = entry.media;
    const changed = !entry.seen || before.status !== media.status || before.updated_at !== media.updated_at
      || Boolean(before.thumbnail_url) !== Boolean(media.thumbnail_url);
    entry.misses = 0;
    entry.seen = true;
    entry.media = media;
    if (!UNSETTLED.has(media.status)) this.watched.delete(media.id);
    if (changed) this.onNews(media);
  }

  missed(entry) {
    entry.misses += 1;
    if (entry.misses < MISSES) return;
    this.watched.delete(entry.media.id);
    if (entry.seen) this.onGone(entry.media.id);
  }
}
