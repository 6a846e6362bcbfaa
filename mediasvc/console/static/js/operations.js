// The operations page (admins): the job queue (queued, running, failed with their reasons
// and a retry), busy workers, and the health of the database and the storage.

import * as api from './api.js';
import { ago, announce, byId, fill, h, show } from './dom.js';
import { icon } from './icons.js';

const REFRESH = 5000;
const STATES = [
  ['queued', 'Queued'],
  ['running', 'Running'],
  ['failed', 'Failed'],
];
const HEALTH_TEXT = { ok: 'OK', timeout: 'Not answering (timed out)', unavailable: 'Unavailable', restarting: 'Restarting' };

let timer = 0;
let active = false;
let wired = false;

/** Show the page and keep it fresh while it is shown. */
export function start() {
  if (!wired) {
    wired = true;
    byId('ops-refresh').addEventListener('click', () => load(true));
  }
  active = true;
  load();
}

export function stop() {
  active = false;
  clearTimeout(timer);
}

async function load(asked = false) {
  clearTimeout(timer);
  if (!active) return;
  try {
    const overview = await api.operations();
    if (!active) return;
    show(byId('ops-error'), false);
    render(overview);
    byId('ops-updated').textContent = `Updated ${new Date().toLocaleTimeString()}`;
    if (asked) announce('Operations refreshed.');
  } catch (error) {
    if (error.status === 401 || !active) return;
    byId('ops-error').textContent = `The overview could not be loaded: ${error.message}`;
    show(byId('ops-error'), true);
  }
  if (active) timer = setTimeout(load, REFRESH);
}

function render({ health, jobs, workers }) {
  fill(byId('ops-health'), ...Object.entries(health).map(([name, value]) => h('li', { class: `health health-${value === 'ok' ? 'ok' : 'bad'}` },
    icon(value === 'ok' ? 'check' : 'warning'),
    h('span', { class: 'health-name', text: name === 'database' ? 'Database' : 'Storage' }),
    h('span', { class: 'health-value', text: HEALTH_TEXT[value] || value }))));
  if (!jobs) {
    fill(byId('ops-workers'), 'Not known while the database does not answer.');
    fill(byId('ops-jobs'));
    return;
  }
  renderWorkers(workers);
  const focused = document.activeElement && document.activeElement.closest('[data-job]');
  fill(byId('ops-jobs'), ...STATES.map(([state, title]) => jobSection(state, title, jobs)));
  if (focused) { // a refresh must not take the focus away from a keyboard user
    const again = byId('ops-jobs').querySelector(`[data-job="${focused.dataset.job}"] button`);
    (again || byId('ops-title')).focus();
  }
}

function renderWorkers(workers) {
  const processes = workers.processes.length;
  fill(byId('ops-workers'),
    h('p', { text: `${workers.busy} busy worker${workers.busy === 1 ? '' : 's'}${processes ? ` in ${processes} process${processes === 1 ? '' : 'es'}` : ''}; each server process runs ${workers.per_process}.` }),
    processes ? h('ul', { class: 'plain' }, ...workers.processes.map((p) => h('li', { text: `${p.owner}: ${p.busy} busy` }))) : null);
}

function jobSection(state, title, jobs) {
  const listed = jobs[state];
  const count = jobs.counts[state] ?? listed.length;
  const headingId = `ops-${state}-title`;
  const more = count > listed.length ? h('p', { class: 'muted', text: `The newest ${listed.length} of ${count} are shown.` }) : null;
  return h('section', { class: 'ops-jobs', 'aria-labelledby': headingId },
    h('h3', { id: headingId, text: `${title} (${count})` }),
    listed.length ? h('ul', { class: 'job-list' }, ...listed.map(jobItem)) : h('p', { class: 'muted', text: 'None.' }),
    more);
}

function jobItem(job) {
  const media = job.media;
  const name = media ? media.filename : `deleted media ${job.media_id.slice(0, 8)}`;
  const facts = [
    ['Operations', job.operations.join(', ')],
    ['Attempts', String(job.attempts)],
    ['Queued', ago(job.created_at)],
    ['Started', job.started_at ? ago(job.started_at) : ''],
    ['Worker', job.owner || ''],
    ['Lane', job.lane],
  ].filter(([, value]) => value);
  const parts = [
    h('div', { class: 'job-head' },
      media && media.thumbnail_url ? h('img', { src: media.thumbnail_url, alt: '', class: 'job-thumb' }) : h('span', { class: 'job-thumb job-thumb-icon' }, icon(media ? media.media_type : 'document')),
      h('span', { class: 'job-name', text: name })),
    h('dl', { class: 'job-facts' }, ...facts.flatMap(([k, v]) => [h('dt', { text: k }), h('dd', { text: v })])),
  ];
  if (job.state === 'failed') {
    parts.push(h('p', { class: 'job-reason', text: `Reason: ${job.error || 'none given'}` }));
    if (!media) parts.push(h('p', { class: 'muted', text: 'Its media has been deleted.' }));
    else if (!job.current) parts.push(h('p', { class: 'muted', text: 'Its media has been processed again since.' }));
    else parts.push(retryButton(job, name));
  }
  return h('li', { class: `job job-${job.state}`, 'data-job': job.id }, ...parts);
}

function retryButton(job, name) {
  const button = h('button', { type: 'button', class: 'small' }, icon('refresh'), 'Retry', h('span', { class: 'visually-hidden', text: ` ${name}` }));
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      const options = job.options && Object.keys(job.options).length ? job.options : undefined;
      await api.processMedia(job.media_id, job.operations, options);
      announce(`${name} is queued again.`);
      load();
    } catch (error) {
      button.disabled = false;
      if (error.status !== 401) announce(`${name} could not be queued: ${error.message}`);
    }
  });
  return button;
}
