// Audit: the event history, live, filterable by application, actor, type,
// correlation and time; each event with its actor, correlation and raw
// payload, and a link to the application as of that event.
import { h, replace, when, actorName } from '../dom.js';
import { enc } from '../api.js';
import { field } from './forms.js';

const MAX_EVENTS = 2000;

export function auditView(el, ui, params) {
  const events = new Map(); // position -> event
  let truncated = false;
  const f = {
    app: field('Application', { name: 'app', value: params.get('app') || '' }),
    actor: field('Actor', { name: 'actor', value: params.get('actor') || '', placeholder: 'user:alice' }),
    type: field('Event type', { name: 'type', value: params.get('type') || '', placeholder: 'deployment.' }),
    correlation: field('Correlation id', { name: 'correlation', value: params.get('correlation') || '' }),
    since: field('Since', { name: 'since', type: 'datetime-local', value: params.get('since') || '' }),
    until: field('Until', { name: 'until', type: 'datetime-local', value: params.get('until') || '' }),
  };
  const list = h('div', { id: 'events' }, h('p', { class: 'meta' }, 'Loading…'));
  const count = h('span', { class: 'meta', role: 'status' });
  const apply = () => {
    const q = new URLSearchParams();
    for (const [k, w] of Object.entries(f)) if (w.input.value) q.set(k, w.input.value);
    history.replaceState(null, '', `#/audit${q.size ? '?' + q : ''}`);
    render();
  };
  for (const w of Object.values(f)) w.input.addEventListener('input', apply);
  replace(el,
    h('div', { class: 'toolbar' }, h('div', {}, h('h1', {}, 'Audit trail'),
      h('p', { class: 'sub' }, 'Every action and outcome, as recorded in the hash-chained event log. New events appear live.')), count),
    h('form', { class: 'panel filters', role: 'search', 'aria-label': 'Filter events', onsubmit: (e) => { e.preventDefault(); apply(); } },
      Object.values(f), h('div', { class: 'actions' }, h('button', { type: 'button', class: 'secondary', onclick: () => {
        for (const w of Object.values(f)) w.input.value = '';
        apply();
      } }, 'Clear filters'))),
    h('section', { class: 'panel mt', 'aria-label': 'Events' }, list));

  const matches = (e) => {
    const v = (k) => f[k].input.value.trim().toLowerCase();
    if (v('app') && (e.app || '').toLowerCase() !== v('app')) return false;
    if (v('actor') && !actorName(e.actor).toLowerCase().includes(v('actor'))) return false;
    if (v('type') && !e.type.toLowerCase().startsWith(v('type'))) return false;
    if (v('correlation') && (e.correlation_id || '').toLowerCase() !== v('correlation')) return false;
    if (f.since.input.value && new Date(e.recorded_at) < new Date(f.since.input.value)) return false;
    if (f.until.input.value && new Date(e.recorded_at) >= new Date(f.until.input.value)) return false;
    return true;
  };

  function row(e) {
    return h('details', { class: 'event', dataset: { position: e.position, type: e.type } },
      h('summary', {},
        h('span', { class: 'mono' }, `#${e.position}`),
        h('strong', {}, e.type),
        h('span', {}, actorName(e.actor)),
        h('span', { class: 'meta' }, when(e.recorded_at)),
        h('span', { class: 'meta mono' }, e.stream_id)),
      h('dl', { class: 'kv mt' },
        h('dt', {}, 'Actor'), h('dd', {}, actorName(e.actor)),
        h('dt', {}, 'Stream'), h('dd', { class: 'mono' }, `${e.stream_id} v${e.stream_version}`),
        h('dt', {}, 'Event id'), h('dd', { class: 'mono' }, e.event_id),
        h('dt', {}, 'Correlation'), h('dd', { class: 'mono' }, e.correlation_id || '—', ' ',
          e.correlation_id ? h('button', { type: 'button', class: 'link', onclick: () => { f.correlation.input.value = e.correlation_id; apply(); } }, 'follow this correlation id') : null),
        h('dt', {}, 'Causation'), h('dd', { class: 'mono' }, e.causation_id || '—'),
        h('dt', {}, 'Origin'), h('dd', { class: 'mono' }, e.origin || '—')),
      h('div', { class: 'actions mt' },
        e.app ? h('a', { href: `#/apps/${enc(e.app)}/at/${e.position}` }, `${e.app} as of this event`) : null,
        e.deployment_id ? h('a', { href: `#/deployments/${enc(e.deployment_id)}` }, 'deployment') : null),
      h('pre', { class: 'mono' }, JSON.stringify(e.data, null, 2)));
  }

  function render() {
    const shown = [...events.values()].sort((a, b) => b.position - a.position).filter(matches);
    count.textContent = `${shown.length} of ${events.size} events loaded`;
    if (shown.length === 0) {
      replace(list, h('p', { class: 'empty' }, events.size ? 'No event matches these filters.' : 'No events yet.'));
      return;
    }
    replace(list, truncated ? h('p', { class: 'meta' }, 'Older events are in the log; this page shows the most recent ones.') : null, shown.slice(0, 500).map(row));
  }

  const unsub = ui.live.subscribe('audit', (m) => {
    if (m.op === 'error') { replace(list, h('p', { class: 'form-error' }, m.error)); return; }
    const d = m.data || {};
    if (d.truncated) truncated = true;
    for (const e of d.events || []) events.set(e.position, e);
    if (events.size > MAX_EVENTS) {
      for (const p of [...events.keys()].sort((a, b) => a - b).slice(0, events.size - MAX_EVENTS)) events.delete(p);
      truncated = true;
    }
    render();
  });
  return unsub;
}
