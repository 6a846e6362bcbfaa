// The signed-in caller: a bearer token kept in sessionStorage (this tab only), its claims
// read from the JWT payload, and the end of the session when the token expires.

const STORAGE_KEY = 'mediasvc.console.token';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const LONGEST_TIMER = 2 ** 31 - 1; // setTimeout's limit, in milliseconds

/** `session` events: `signed-in`, `signed-out` (detail: {message} when it ended by itself). */
export const events = new EventTarget();

let current = null; // {token, claims}
let expiryTimer = 0;

/** The claims of a JWT (not verified here: the service does that on every request). */
export function decodeToken(token) {
  const parts = token.trim().split('.');
  if (parts.length !== 3 || !parts[0] || !parts[1]) throw new Error('This is not a token: a token has three parts separated by dots.');
  let claims;
  try {
    const base64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const padded = base64 + '='.repeat((4 - (base64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    claims = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new Error('This is not a token: its middle part is not readable.');
  }
  if (typeof claims !== 'object' || claims === null || typeof claims.sub !== 'string') {
    throw new Error('This token names no caller (it has no "sub" claim).');
  }
  if (typeof claims.exp !== 'number') throw new Error('This token has no expiry ("exp" claim).');
  return claims;
}

/** The token of this session, or null. */
export function token() {
  return current ? current.token : null;
}

/** Who is signed in: sub, admin, entity grants, and when the session ends. */
export function caller() {
  if (!current) return null;
  const { claims } = current;
  const roles = Array.isArray(claims.roles) ? claims.roles : [];
  const grants = Array.isArray(claims.entities) ? claims.entities.filter((g) => typeof g === 'string') : [];
  return {
    sub: claims.sub,
    admin: roles.includes('admin'),
    roles,
    grants,
    ownEntity: UUID.test(claims.sub) ? { type: 'user', id: claims.sub.toLowerCase() } : null,
    expiresAt: new Date(claims.exp * 1000),
  };
}

/** Start a session with `token` (throws an Error with a message for the person if it is
 * malformed or already expired). */
export function signIn(rawToken) {
  const value = rawToken.trim();
  const claims = decodeToken(value);
  if (claims.exp * 1000 <= Date.now()) {
    throw new Error(`This token expired at ${new Date(claims.exp * 1000).toLocaleString()}. Ask for a new one.`);
  }
  current = { token: value, claims };
  sessionStorage.setItem(STORAGE_KEY, value);
  scheduleExpiry();
  events.dispatchEvent(new CustomEvent('signed-in'));
}

/** End the session; `message` says why when it was not the person's choice. */
export function signOut(message = '') {
  if (!current) return;
  current = null;
  clearTimeout(expiryTimer);
  sessionStorage.removeItem(STORAGE_KEY);
  events.dispatchEvent(new CustomEvent('signed-out', { detail: { message } }));
}

/** The service refused the token (a 401): the session is over. */
export function refused(serviceMessage) {
  const reason = serviceMessage ? ` The service said: “${serviceMessage}”.` : '';
  signOut(`Your session has ended: the service no longer accepts your token.${reason} Sign in again with a new link or token.`);
}

function scheduleExpiry() {
  clearTimeout(expiryTimer);
  const left = current.claims.exp * 1000 - Date.now();
  if (left <= 0) {
    expired();
    return;
  }
  expiryTimer = setTimeout(left > LONGEST_TIMER ? scheduleExpiry : expired, Math.min(left, LONGEST_TIMER));
}

function expired() {
  const at = new Date(current.claims.exp * 1000).toLocaleTimeString();
  signOut(`Your session has ended: the token expired at ${at}. Sign in again with a new link (mediasvc console-url) or paste a new token.`);
}

/** A token handed over in the address (`#token=...`, from `mediasvc console-url`), taken
 * out of the address bar and the history at once; else the one this tab already had. */
export function takeStartingToken() {
  const match = location.hash.match(/^#(?:.*&)?token=([^&]*)/);
  if (match) {
    history.replaceState(null, '', `${location.pathname}${location.search}`);
    return decodeURIComponent(match[1]);
  }
  return sessionStorage.getItem(STORAGE_KEY);
}
