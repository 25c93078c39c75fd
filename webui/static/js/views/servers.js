// Servers: the Docker Engines applications are placed on, with their
// reachability, engine version, CPUs, memory and disk; a form to add a
// remote engine over SSH or TCP with TLS (its key is sealed and never shown
// again); verify, rename, concurrency and removal per server. It follows the
// "servers" topic of the live socket: the background checks' reachability
// changes and other people's actions show as they are recorded.
import { h, replace, when } from '../dom.js';
import { api, enc } from '../api.js';
import { field, submitting } from './forms.js';

function bytes(n) {
  if (!n) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function serversView(el, ui) {
  const list = h('div', { class: 'stack', id: 'server-list' }, h('p', { class: 'meta' }, 'Loading…'));
  const form = h('form', { class: 'panel write', id: 'server-form', 'aria-label': 'Add a server' });
  replace(el,
    h('div', { class: 'toolbar' }, h('div', {}, h('h1', {}, 'Servers'),
      h('p', { class: 'sub' }, 'Docker Engines applications run on. Each has its own deploy queue; deployments on one server run one at a time unless its concurrency is raised.'))),
    h('div', { class: 'cols' }, list, form));
  // servers by id (a rename keeps it); each card is rebuilt only when its
  // server changed, and an open edit form stays open with what was typed.
  const servers = new Map(); // id -> {s, el}
  const editing = new Set(); // ids whose edit form is open

  function render() {
    const all = [...servers.values()].sort((a, b) =>
      (a.s.id === 'local' ? -1 : b.s.id === 'local' ? 1 : a.s.name.localeCompare(b.s.name)));
    replace(list, all.map((v) => v.el));
  }

  const unsub = ui.live.subscribe('servers', (m) => {
    if (m.op === 'error') { replace(list, h('p', { class: 'form-error' }, m.error)); return; }
    const data = m.data || {};
    if (m.snapshot) servers.clear();
    for (const s of data.servers || []) {
      const old = servers.get(s.id);
      if (old && (old.s.position || 0) > (s.position || 0)) continue;
      if (old && old.s.position === s.position && !m.snapshot) continue;
      const el = card(s);
      if (old && editing.has(s.id)) {
        const from = old.el.querySelector('form.inline'), to = el.querySelector('form.inline');
        for (const n of ['name', 'concurrency']) to.elements[n].value = from.elements[n].value;
      }
      servers.set(s.id, { s, el });
    }
    for (const id of data.removed || []) servers.delete(id);
    render();
  });

  async function act(label, fn) {
    try { await fn(); } catch (err) { ui.toast(`${label}: ${err.message}`, 'error'); }
  }

  function card(s) {
    const f = s.facts || {};
    const rename = h('form', { class: 'inline write', hidden: !editing.has(s.id) },
      field('New name', { name: 'name', field: 'name', value: s.name }),
      field('Concurrency', { name: 'concurrency', field: 'concurrency', type: 'number', value: String(s.concurrency) }),
      h('button', { type: 'submit' }, 'Save'));
    rename.addEventListener('submit', (e) => {
      e.preventDefault();
      submitting(rename, async () => {
        const body = { concurrency: Number(rename.elements.concurrency.value) };
        if (rename.elements.name.value !== s.name) body.name = rename.elements.name.value;
        await api('PATCH', `/servers/${enc(s.name)}`, body);
        editing.delete(s.id);
        const shown = servers.get(s.id)?.el.querySelector('form.inline');
        if (shown) shown.hidden = true;
      });
    });
    const local = s.kind === 'local';
    return h('section', { class: 'panel', dataset: { server: s.name, state: s.state, position: String(s.position) } },
      h('h2', {}, s.name, ' ', h('span', { class: 'badge', dataset: { status: s.state === 'reachable' ? 'succeeded' : s.state === 'unreachable' ? 'failed' : 'queued' } }, s.state)),
      h('p', { class: 'meta' }, local ? 'the Docker Engine beside berth' : s.url),
      s.reason ? h('p', { class: 'form-error server-reason' }, s.reason) : null,
      h('dl', { class: 'facts' },
        h('dt', {}, 'Engine'), h('dd', { class: 'engine' }, f.engine_version || '–'),
        h('dt', {}, 'CPUs'), h('dd', { class: 'cpus' }, f.cpus ? String(f.cpus) : '–'),
        h('dt', {}, 'Memory'), h('dd', {}, bytes(f.memory_bytes)),
        h('dt', {}, 'Disk used'), h('dd', {}, bytes(f.disk_bytes)),
        h('dt', {}, 'Concurrency'), h('dd', { class: 'concurrency' }, String(s.concurrency)),
        h('dt', {}, 'Applications'), h('dd', {}, s.apps.length ? s.apps.join(', ') : 'none'),
        s.verified_at ? [h('dt', {}, 'Verified'), h('dd', {}, when(s.verified_at))] : null,
        s.host_key ? [h('dt', {}, 'Host key'), h('dd', { class: 'mono' }, s.host_key.slice(0, 40) + '…')] : null),
      h('div', { class: 'actions write' },
        h('button', { type: 'button', class: 'secondary verify', onclick: (e) => {
          e.target.disabled = true;
          act('Verify', () => api('POST', `/servers/${enc(s.name)}/verify`)).finally(() => { e.target.disabled = false; });
        } }, 'Verify'),
        h('button', { type: 'button', class: 'secondary edit', onclick: () => {
          rename.hidden = !rename.hidden;
          if (rename.hidden) editing.delete(s.id); else editing.add(s.id);
        } }, 'Edit'),
        local ? null : h('button', { type: 'button', class: 'danger remove', onclick: async () => {
          if (await ui.confirm(`Remove the server ${s.name}?`, 'Remove')) act('Remove', () => api('DELETE', `/servers/${enc(s.name)}`));
        } }, 'Remove')),
      rename);
  }

  const name = field('Name', { name: 'name', field: 'name', placeholder: 'edge-1', required: true });
  const url = field('URL', { name: 'url', field: 'url', placeholder: 'ssh://deploy@203.0.113.7 or tcp://203.0.113.7:2376', required: true });
  const key = h('div', { class: 'field', dataset: { field: 'key' } }, h('label', { for: 'server-key' }, 'Private key (SSH key, or the TLS client key)'),
    h('textarea', { id: 'server-key', name: 'key', rows: 4, placeholder: '-----BEGIN OPENSSH PRIVATE KEY-----' }), h('div', { class: 'field-error', hidden: true }));
  const hostKey = field('SSH host key (empty: trusted at the first verification)', { name: 'host_key', field: 'host_key', placeholder: 'ssh-ed25519 AAAA…' });
  const ca = h('div', { class: 'field', dataset: { field: 'ca_pem' } }, h('label', { for: 'server-ca' }, 'TLS: CA certificate'),
    h('textarea', { id: 'server-ca', name: 'ca_pem', rows: 3 }), h('div', { class: 'field-error', hidden: true }));
  const cert = h('div', { class: 'field', dataset: { field: 'cert_pem' } }, h('label', { for: 'server-cert' }, 'TLS: client certificate'),
    h('textarea', { id: 'server-cert', name: 'cert_pem', rows: 3 }), h('div', { class: 'field-error', hidden: true }));
  const conc = field('Concurrency', { name: 'concurrency', field: 'concurrency', type: 'number', value: '1' });
  replace(form, h('h2', {}, 'Add a server'), name, url, key, hostKey, ca, cert, conc, h('button', { type: 'submit' }, 'Add server'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    submitting(form, async () => {
      const v = (n) => form.elements[n].value.trim();
      const body = { name: v('name'), url: v('url'), key: form.elements.key.value, concurrency: Number(v('concurrency') || '1') };
      if (v('host_key')) body.host_key = v('host_key');
      if (v('ca_pem')) body.ca_pem = form.elements.ca_pem.value;
      if (v('cert_pem')) body.cert_pem = form.elements.cert_pem.value;
      await api('POST', '/servers', body);
      form.reset();
      ui.toast(`Server ${body.name} added: verify it to start deploying there.`);
    });
  });

  return unsub;
}
