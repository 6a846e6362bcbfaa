// Entities: where the caller may upload (its own user entity, its grants, any for admins),
// and the TYPE or TYPE:ID text people type into the entity fields.

const TYPE = /^[a-z][a-z0-9_-]{0,63}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** `{type, id}` from "type" or "type:uuid"; throws an Error with a message otherwise. */
export function parseEntity(text, { needId = false } = {}) {
  const value = text.trim();
  const [type, id, ...rest] = value.split(':');
  if (rest.length || !TYPE.test(type || '')) {
    throw new Error('Write the entity as TYPE:ID, e.g. service:123e4567-e89b-12d3-a456-426614174000.');
  }
  if (id === undefined || id === '' || id === '*') {
    if (needId) throw new Error('Add the entity’s id: TYPE:ID, the id a UUID.');
    return { type };
  }
  if (!UUID.test(id)) throw new Error('The entity id must be a UUID (e.g. 123e4567-e89b-12d3-a456-426614174000).');
  return { type, id: id.toLowerCase() };
}

export const entityText = (entity) => (entity.id ? `${entity.type}:${entity.id}` : entity.type);

/** The upload targets offered in the chooser: `{value, label}`; `free` says whether the
 * caller may also type one (admins, and holders of a `type:*` grant). */
export function uploadTargets(caller) {
  const targets = [];
  if (caller.ownEntity) {
    targets.push({ value: entityText(caller.ownEntity), label: `My media (user:${caller.ownEntity.id.slice(0, 8)}…)` });
  }
  for (const grant of caller.grants) {
    const [type, id] = grant.split(':');
    if (id && UUID.test(id)) targets.push({ value: `${type}:${id.toLowerCase()}`, label: grant });
  }
  const free = caller.admin || caller.grants.some((grant) => grant.endsWith(':*'));
  return { targets, free };
}

/** Suggestions for the gallery's entity filter: every entity and type the caller has. */
export function filterSuggestions(caller) {
  const values = new Set();
  if (caller.ownEntity) values.add(entityText(caller.ownEntity));
  for (const grant of caller.grants) values.add(grant.endsWith(':*') ? grant.slice(0, -2) : grant);
  return [...values];
}
