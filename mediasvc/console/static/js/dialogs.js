// Modal dialogs (<dialog>): Escape closes them (the browser's cancel), focus goes back to
// what opened them, and a confirmation asks before anything is deleted.

import { byId, fill } from './dom.js';

const openers = new WeakMap();

/** Open `dialog` modally, remembering what had the focus. */
export function openDialog(dialog) {
  if (dialog.open) return;
  openers.set(dialog, document.activeElement);
  dialog.showModal();
}

/** Close `dialog`; the focus returns to its opener (if that is still on the page). */
export function closeDialog(dialog, value = '') {
  if (dialog.open) dialog.close(value);
}

/** Every open dialog closed (the session ended). */
export function closeAll() {
  for (const dialog of document.querySelectorAll('dialog[open]')) closeDialog(dialog);
}

/** Wire the close buttons and the focus return of every dialog of the page, once. */
export function setUpDialogs() {
  for (const dialog of document.querySelectorAll('dialog')) {
    dialog.addEventListener('close', () => {
      const opener = openers.get(dialog);
      openers.delete(dialog);
      if (opener && opener.isConnected && typeof opener.focus === 'function') opener.focus();
    });
    for (const button of dialog.querySelectorAll('[data-close]')) {
      button.addEventListener('click', () => closeDialog(dialog));
    }
  }
  byId('confirm-ok').addEventListener('click', () => closeDialog(byId('confirm'), 'ok'));
}

/** Ask to confirm; resolves true if the person chose `confirmLabel`. */
export function confirmAction({ title, message, confirmLabel = 'Delete' }) {
  const dialog = byId('confirm');
  fill(byId('confirm-title'), title);
  fill(byId('confirm-message'), message);
  const button = byId('confirm-ok');
  button.textContent = confirmLabel;
  return new Promise((resolve) => {
    const done = () => {
      dialog.removeEventListener('close', done);
      resolve(dialog.returnValue === 'ok');
    };
    dialog.returnValue = '';
    dialog.addEventListener('close', done);
    openDialog(dialog);
    byId('confirm-cancel').focus(); // the safe choice first
  });
}
