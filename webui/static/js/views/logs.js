// The Logs tab of the application page: the runtime logs of every container
// of the application (GET /api/v1/apps/{app}/logs as JSON Lines), the last
// lines then, while "Follow" is on, new ones as they are written. Each line
// shows its time, container and stream (stderr is marked).
import { h, replace, short } from '../dom.js';
import { enc } from '../api.js';

const MAX_LINES = 5000; // lines kept on the page; older ones scroll away

export function logsPanel(name) {
  const out = h('div', { class: 'logs mono', id: 'app-logs', role: 'log', 'aria-live': 'polite', tabindex: '0' });
  const status = h('span', { class: 'meta', id: 'logs-status' });
  const tail = h('select', { id: 'logs-tail', 'aria-label': 'Past lines' },
    [100, 200, 1000, 5000].map((n) => h('option', { value: n, selected: n === 200 }, `last ${n} lines`)));
  const since = h('select', { id: 'logs-since', 'aria-label': 'Since' },
    [['', 'any time'], ['10m', 'last 10 minutes'], ['1h', 'last hour'], ['24h', 'last day']].map(([v, t]) => h('option', { value: v }, t)));
  const follow = h('input', { type: 'checkbox', id: 'logs-follow', checked: true });
  // A compose stack's logs can be narrowed to one service.
  const service = h('select', { id: 'logs-service', 'aria-label': 'Service', hidden: true }, h('option', { value: '' }, 'every service'));
  const stderrOnly = h('input', { type: 'checkbox', id: 'logs-stderr' });
  const el = h('section', { class: 'panel', 'aria-label': 'Logs', hidden: true },
    h('div', { class: 'toolbar' }, h('h2', {}, 'Logs'),
      h('div', { class: 'actions' }, service, tail, since,
        h('label', { class: 'check' }, follow, ' Follow'),
        h('label', { class: 'check' }, stderrOnly, ' stderr only'),
        h('button', { type: 'button', class: 'secondary', id: 'logs-reload', onclick: () => start() }, 'Reload'))),
    h('p', { class: 'meta' }, 'Every container of the application, all replicas, including containers that start while you watch. ', status),
    out);

  let ctrl = null;
  let count = 0;

  function line(l) {
    const row = h('div', { class: 'logline', dataset: { stream: l.stream, deployment: l.deployment || '' } },
      h('span', { class: 'at' }, l.at ? new Date(l.at).toLocaleTimeString() : ''), ' ',
      h('span', { class: 'ctr', title: `${l.container} (deployment ${l.deployment || '?'})` }, short(l.deployment) || l.container), ' ',
      l.stream === 'stderr' ? h('span', { class: 'err' }, 'stderr') : h('span', { class: 'out' }, 'stdout'), ' ',
      h('span', { class: 'text' }, l.line));
    row.hidden = stderrOnly.checked && l.stream !== 'stderr';
    const atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 8;
    out.append(row);
    if (++count > MAX_LINES) { out.firstChild.remove(); count--; }
    if (atBottom) out.scrollTop = out.scrollHeight;
  }

  async function start() {
    stop();
    replace(out);
    count = 0;
    const c = new AbortController();
    ctrl = c;
    const q = new URLSearchParams({ format: 'jsonl', tail: tail.value });
    if (since.value) q.set('since', since.value);
    if (service.value) q.set('service', service.value);
    if (follow.checked) q.set('follow', '1');
    status.textContent = 'loading…';
    try {
      const res = await fetch(`/api/v1/apps/${enc(name)}/logs?${q}`, { credentials: 'same-origin', signal: c.signal, headers: { Accept: 'application/x-ndjson' } });
      if (!res.ok) {
        let msg = res.statusText;
        try { msg = (await res.json()).error.message; } catch { /* not JSON */ }
        status.textContent = `could not read the logs: ${msg}`;
        return;
      }
      status.textContent = follow.checked ? 'following…' : '';
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const s = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (s) { try { line(JSON.parse(s)); } catch { /* a partial or foreign line */ } }
        }
      }
      if (ctrl === c) status.textContent = count ? `${count} lines` : 'no lines (no container, or nothing written)';
    } catch (err) {
      if (err.name !== 'AbortError') status.textContent = `the log stream ended: ${err.message}`;
    }
  }

  function stop() {
    if (ctrl) { ctrl.abort(); ctrl = null; }
  }

  for (const c of [tail, since, follow, service]) c.addEventListener('change', () => start());
  // setServices lists a stack's services in the filter.
  function setServices(names) {
    const have = [...service.options].map((o) => o.value).filter(Boolean).join(',');
    if (have === names.join(',')) return;
    const cur = service.value;
    replace(service, h('option', { value: '' }, 'every service'), names.map((n) => h('option', { value: n, selected: n === cur }, n)));
    service.hidden = names.length === 0;
  }
  // show selects one service's logs (the Logs tab starts them).
  function show(name) { service.value = name; }
  stderrOnly.addEventListener('change', () => {
    for (const row of out.children) row.hidden = stderrOnly.checked && row.dataset.stream !== 'stderr';
  });
  return { el, start, stop, setServices, show };
}
