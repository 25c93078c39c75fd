// Databases: the managed databases with their state, connection URL
// (password hidden), backups (verified or not) and schedule; the forms that
// create a database and add a backup storage; start, stop, restart, back
// up, restore drill and delete. databasesView is the screen (#/databases);
// it follows the "databases" topic of the live socket, so state changes,
// scheduled backups and other people's actions show as they are recorded.
import { h, replace, when } from '../dom.js';
import { api, enc } from '../api.js';
import { field, checkbox, submitting } from './forms.js';

function stateBadge(d) {
  return h('span', { class: 'badge', dataset: { state: d.state } }, d.state);
}

function size(n) {
  if (n >= 1 << 30) return (n / (1 << 30)).toFixed(1) + ' GiB';
  if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + ' MiB';
  if (n >= 1 << 10) return (n / (1 << 10)).toFixed(1) + ' KiB';
  return n + ' B';
}

export function databasesView(el, ui) {
  const state = { dbs: new Map(), storages: [], loaded: false };
  const listEl = h('div', { id: 'database-list' }, h('p', { class: 'meta' }, 'Loading…'));
  const formEl = h('div');
  const storageListEl = h('div');
  const storageFormEl = h('div');
  replace(el, h('h2', {}, 'Databases'), listEl, formEl, storageListEl, storageFormEl);

  // keep merges a database unless the one held is newer.
  const keep = (d) => {
    const old = state.dbs.get(d.name);
    if (!old || (d.position || 0) >= (old.position || 0)) state.dbs.set(d.name, d);
  };

  async function act(label, fn) {
    try { await fn(); } catch (err) { ui.toast(`${label}: ${err.message}`, 'error'); }
  }

  const unsub = ui.live.subscribe('databases', (m) => {
    if (m.op === 'error') { replace(listEl, h('p', { class: 'form-error' }, m.error)); return; }
    const data = m.data || {};
    if (m.snapshot) state.dbs.clear();
    for (const d of data.databases || []) keep(d);
    for (const name of data.removed || []) state.dbs.delete(name);
    if (data.storages) { state.storages = data.storages; renderStorages(); }
    state.loaded = true;
    renderList();
  });

  function renderList() {
    if (!state.loaded) return;
    const list = [...state.dbs.values()].sort((a, b) => a.name.localeCompare(b.name));
    if (list.length === 0) { replace(listEl, h('p', { class: 'meta' }, 'No databases.')); return; }
    replace(listEl, h('ul', { id: 'databases', class: 'domains' }, list.map(row)));
  }

  function row(d) {
    const storage = state.storages[0]?.name;
    const backups = (d.backups || []).filter((b) => !b.expired).slice(-5).reverse();
    return h('li', { dataset: { database: d.name } },
      h('div', {}, h('strong', {}, d.name), ' ', stateBadge(d), h('span', { class: 'meta' }, ` ${d.engine} ${d.version}`),
        h('span', { class: 'meta db-place' }, d.swarm ? ` · swarm ${d.swarm}, node ${d.node.slice(0, 12)}${d.node_picked ? ' (picked by berth)' : ''}` : ` · server ${d.server}`)),
      d.reason ? h('div', { class: 'form-error' }, d.reason) : null,
      h('div', { class: 'meta' }, h('code', { class: 'db-url' }, d.url),
        ' · env reference ', h('code', {}, `database:${d.name}`), d.public_port ? ` · public port ${d.public_host ? d.public_host + ':' : ''}${d.public_port}` : ''),
      d.schedule ? h('div', { class: 'meta' }, `backups ${d.schedule.cron} to ${d.schedule.storage}, keep ${d.schedule.keep || 'all'}${d.schedule.drill ? ', drilled' : ''}`) : null,
      backups.length ? h('ul', { class: 'backups' }, backups.map((b) => h('li', { dataset: { backup: b.backup, verified: String(b.verified) } },
        `${when(b.started_at)} · ${size(b.size)} · `, h('code', {}, b.sha256.slice(0, 12)), ' · ',
        b.verified ? h('span', { class: 'badge', dataset: { state: 'verified' } }, `verified: ${b.check}`) : h('span', { class: 'meta' }, 'not verified'),
        h('span', { class: 'write' }, ' ',
          h('button', { type: 'button', class: 'link drill', onclick: () => act('Restore drill', async () => {
            const r = await api('POST', `/databases/${enc(d.name)}/backups/${enc(b.backup)}/drill`);
            ui.toast(`Backup verified: ${r.backup.check}`);
          }) }, 'Drill')))))
        : null,
      h('div', { class: 'actions write' },
        d.state === 'running'
          ? h('button', { type: 'button', class: 'link', onclick: () => act('Stop', () => api('POST', `/databases/${enc(d.name)}/stop`)) }, 'Stop')
          : h('button', { type: 'button', class: 'link', onclick: () => act('Start', () => api('POST', `/databases/${enc(d.name)}/start`)) }, 'Start'),
        h('button', { type: 'button', class: 'link', onclick: () => act('Restart', () => api('POST', `/databases/${enc(d.name)}/restart`)) }, 'Restart'),
        storage ? h('button', { type: 'button', class: 'link backup', onclick: () => act('Back up', async () => {
          const r = await api('POST', `/databases/${enc(d.name)}/backups`, { storage });
          ui.toast(`Backup of ${d.name}: ${size(r.backup.size)}`);
        }) }, `Back up to ${storage}`) : null,
        h('button', { type: 'button', class: 'link', onclick: () => act('Delete', async () => {
          if (await ui.confirm(`Delete ${d.name}? Its volume ${d.volume} is kept.`, 'Delete')) await api('DELETE', `/databases/${enc(d.name)}`);
        }) }, 'Delete')));
  }

  function renderForm() {
    const name = field('Name', { name: 'name', required: true, placeholder: 'orders-db' });
    const engine = field('Engine', { name: 'engine', options: [['postgres', 'PostgreSQL'], ['mariadb', 'MariaDB'], ['mysql', 'MySQL'], ['redis', 'Redis'], ['mongo', 'MongoDB']] });
    const version = field('Version (image tag)', { name: 'version', placeholder: 'default' });
    const image = field('Image', { name: 'image', placeholder: 'official image' });
    const user = field('User', { name: 'user', placeholder: 'from the name' });
    const port = field('Public port', { name: 'public_port', type: 'number', placeholder: 'none' });
    const server = field('Server', { name: 'server', placeholder: 'local' });
    const swarm = field('or swarm', { name: 'swarm', placeholder: 'none' });
    const node = field('Swarm node', { name: 'node', placeholder: 'picked by berth' });
    const form = h('form', { id: 'database-form', class: 'write', 'aria-label': 'New database', onsubmit: (e) => {
      e.preventDefault();
      submitting(form, async () => {
        const body = { name: name.input.value.trim(), engine: engine.input.value };
        if (version.input.value.trim()) body.version = version.input.value.trim();
        if (image.input.value.trim()) body.image = image.input.value.trim();
        if (user.input.value.trim()) body.user = user.input.value.trim();
        if (port.input.value) body.public_port = Number(port.input.value);
        for (const f of [server, swarm, node]) if (f.input.value.trim()) body[f.input.name] = f.input.value.trim();
        const d = await api('POST', '/databases', body);
        keep(d);
        renderList();
        ui.toast(`${d.name} is ${d.state}`);
        form.reset();
      });
    } }, h('h3', {}, 'New database'), name, engine, version, image, user, port, server, swarm, node, h('button', { type: 'submit' }, 'Create'));
    replace(formEl, form);
  }

  function renderStorageForm() {
    const name = field('Name', { name: 'name', required: true, placeholder: 's3' });
    const endpoint = field('Endpoint (host:port)', { name: 'endpoint', required: true, placeholder: 's3.example.com' });
    const bucket = field('Bucket', { name: 'bucket', required: true });
    const access = field('Access key', { name: 'access_key', required: true });
    const secret = field('Secret key', { name: 'secret_key', type: 'password', required: true, autocomplete: 'new-password' });
    const insecure = checkbox('Plain HTTP', { name: 'insecure' });
    const form = h('form', { id: 'storage-form', class: 'write', 'aria-label': 'New backup storage', onsubmit: (e) => {
      e.preventDefault();
      submitting(form, async () => {
        await api('POST', '/backup-storages', { name: name.input.value.trim(), endpoint: endpoint.input.value.trim(), bucket: bucket.input.value.trim(),
          access_key: access.input.value.trim(), secret_key: secret.input.value, insecure: insecure.input.checked });
        ui.toast('Backup storage added');
        form.reset();
      });
    } }, h('h3', {}, 'Backup storage (S3)'), name, endpoint, bucket, access, secret, insecure, h('button', { type: 'submit' }, 'Add'));
    replace(storageFormEl, form);
  }

  function renderStorages() {
    replace(storageListEl, state.storages.length
      ? h('ul', { id: 'storages' }, state.storages.map((s) => h('li', { dataset: { storage: s.name } }, `${s.name}: ${s.bucket} at ${s.endpoint}`)))
      : h('p', { class: 'meta' }, 'No backup storage.'));
    renderList();
  }

  renderForm();
  renderStorageForm();
  renderStorages();
  return unsub;
}
