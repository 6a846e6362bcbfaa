// The console's entry point: sign-in (a link from `mediasvc console-url`, or a pasted
// token), the views (library: upload and gallery; operations for admins), sign-out and the
// end of the session.

import { listUrl } from './api.js';
import { closeAll, setUpDialogs } from './dialogs.js';
import { byId, fill, h, show } from './dom.js';
import * as gallery from './gallery.js';
import * as operations from './operations.js';
import * as session from './session.js';
import * as uploads from './uploads.js';

const VIEWS = ['library', 'operations'];

function boot() {
  setUpDialogs();
  byId('signin-form').addEventListener('submit', (event) => {
    event.preventDefault();
    trySignIn(byId('signin-token').value, { pasted: true });
  });
  byId('sign-out').addEventListener('click', () => session.signOut());
  session.events.addEventListener('signed-in', signedIn);
  session.events.addEventListener('signed-out', (event) => signedOut(event.detail.message));
  uploads.events.addEventListener('uploaded', (event) => gallery.uploaded(event.detail));
  window.addEventListener('hashchange', route);
  const starting = session.takeStartingToken();
  if (starting) trySignIn(starting, { pasted: false });
  else showSignIn('');
}

/** Check the token with the service before starting (a 401 names what is wrong with it). */
async function trySignIn(rawToken, { pasted }) {
  const error = byId('signin-error');
  show(error, false);
  let claims;
  try {
    claims = session.decodeToken(rawToken);
    if (claims.exp * 1000 <= Date.now()) throw new Error(`This token expired at ${new Date(claims.exp * 1000).toLocaleString()}. Ask for a new one.`);
    const answer = await fetch(listUrl({ limit: 1 }), { headers: { Authorization: `Bearer ${rawToken.trim()}` }, cache: 'no-store' });
    if (answer.status === 401) {
      const body = await answer.json().catch(() => ({}));
      throw new Error(`The service refused this token: ${body.error || 'not accepted'}.`);
    }
    session.signIn(rawToken);
  } catch (failure) {
    const message = failure instanceof TypeError ? 'The service could not be reached.' : failure.message;
    showSignIn(pasted ? '' : `The sign-in link did not work. ${message}`);
    if (pasted) {
      error.textContent = message;
      show(error, true);
      byId('signin-token').setAttribute('aria-invalid', 'true');
      byId('signin-token').focus();
    }
  }
}

function signedIn() {
  const who = session.caller();
  byId('signin-token').value = '';
  byId('signin-token').removeAttribute('aria-invalid');
  show(byId('view-signin'), false);
  show(byId('nav'), true);
  show(byId('who'), true);
  show(byId('nav-operations'), who.admin);
  fill(byId('who-name'), who.sub, who.admin ? h('span', { class: 'badge badge-role', text: 'admin' }) : null);
  byId('who-expiry').textContent = `until ${who.expiresAt.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}`;
  byId('who-expiry').dateTime = who.expiresAt.toISOString();
  uploads.start(who);
  gallery.start(who);
  route();
}

function signedOut(message) {
  closeAll();
  uploads.stop();
  gallery.stop();
  operations.stop();
  showSignIn(message || 'You have signed out.');
}

function showSignIn(message) {
  for (const view of VIEWS) show(byId(`view-${view}`), false);
  show(byId('nav'), false);
  show(byId('who'), false);
  show(byId('view-signin'), true);
  const notice = byId('signin-message');
  notice.textContent = message;
  show(notice, Boolean(message));
  byId('signin-title').focus();
}

/** `#library` (the default) or `#operations` (admins). */
function route() {
  const who = session.caller();
  if (!who) return;
  let view = location.hash.replace(/^#/, '') || 'library';
  if (!VIEWS.includes(view) || (view === 'operations' && !who.admin)) view = 'library';
  for (const name of VIEWS) {
    show(byId(`view-${name}`), name === view);
    const link = byId(`nav-${name}`);
    if (name === view) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (view === 'operations') operations.start();
  else operations.stop();
  const heading = byId(`${view}-title`);
  if (heading && document.activeElement !== byId('signin-token')) heading.focus({ preventScroll: true });
}

boot();
