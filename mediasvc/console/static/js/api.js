// The service's public API, with the session's bearer token; errors carry the service's own
// message (`{"error": ...}`), and a 401 ends the session.

import * as session from './session.js';

export const MEDIA = '/api/v1/drf/media/';
export const TUS = '/api/v1/drf/media/tus/';
export const OPERATIONS = '/console/api/operations';

/** An answer that was not a success: its status and the service's message. */
export class ApiError extends Error {
  constructor(status, message, body = null) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

/** The path and query of a link the service gave (its `next`): the console is served by
 * the same service, so links are followed on this origin whatever host they name. */
export function sameOrigin(url) {
  const parsed = new URL(url, location.href);
  return `${parsed.pathname}${parsed.search}`;
}

/** A JSON request; resolves with the parsed answer (null for a 204). */
export async function request(path, { method = 'GET', body, signal } = {}) {
  const headers = { Authorization: `Bearer ${session.token()}`, Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: 'no-store',
    });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, 'The service could not be reached. Check the connection and try again.');
  }
  const data = response.status === 204 ? null : await readJson(response);
  if (!response.ok) {
    const message = (data && data.error) || `${response.status} ${response.statusText}`;
    if (response.status === 401) session.refused(message);
    throw new ApiError(response.status, message, data);
  }
  return data;
}

async function readJson(response) {
  const text = await response.text();
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

/** The list URL for these filters (`entity`: {type, id?}). */
export function listUrl({ entity, mediaType, status, search, limit = 40 } = {}) {
  const query = new URLSearchParams();
  if (entity && entity.type) query.set('entity_type', entity.type);
  if (entity && entity.id) query.set('entity_id', entity.id);
  if (mediaType) query.set('media_type', mediaType);
  if (status) query.set('status', status);
  if (search) query.set('search', search);
  query.set('limit', String(limit));
  return `${MEDIA}?${query}`;
}

export const mediaUrl = (id, action = '') => `${MEDIA}${encodeURIComponent(id)}/${action ? `${action}/` : ''}`;

export const updateMedia = (id, changes) => request(mediaUrl(id), { method: 'PATCH', body: changes });
export const deleteMedia = (id) => request(mediaUrl(id), { method: 'DELETE' });
export const setPrimary = (id) => request(mediaUrl(id, 'set_primary'), { method: 'POST' });
export const processMedia = (id, operations, options) =>
  request(mediaUrl(id, 'process'), { method: 'POST', body: options ? { operations, options } : { operations } });
export const bulkDelete = (ids) => request(`${MEDIA}bulk_delete/`, { method: 'POST', body: { media_ids: ids } });
export const bulkUpdate = (ids, updates) =>
  request(`${MEDIA}bulk_update/`, { method: 'POST', body: { media_ids: ids, updates } });
export const operations = () => request(OPERATIONS);
