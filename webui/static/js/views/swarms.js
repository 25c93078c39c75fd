// Swarms: every Docker Swarm berth runs applications on, with its nodes
// as the manager lists them now (state, availability, role, engine,
// labels); draining and reactivating a node; a join command, shown once
// (each request rotates the token); running the swarm's own image
// registry. It follows the "swarms" topic of the live socket: a swarm is
// sent again, nodes read from its manager, each time one of its events is
// recorded (the swarm watcher records nodes joining and changing state).
import { h, replace } from '../dom.js';
import { api } from '../api.js';

export function swarmsView(el, ui) {
  const listEl = h('div', { id: 'swarm-list' });
  replace(el, h('div', { class: 'toolbar' }, h('h1', {}, 'Swarms')), h('section', { class: 'panel', 'aria-label': 'Swarms' }, listEl));
  const joins = {}; // swarm name → the join command shown once
  const state = new Map(); // swarm name → the swarm as last sent
  let loaded = false;

  async function act(label, fn) {
    try { await fn(); load(); } catch (err) { ui.toast(`${label}: ${err.message}`, 'error'); }
  }

  const unsub = ui.live.subscribe('swarms', (m) => {
    if (m.op === 'error') { replace(listEl, h('p', { class: 'form-error' }, m.error)); return; }
    if (m.snapshot) state.clear();
    for (const s of (m.data || {}).swarms || []) state.set(s.name, s);
    loaded = true;
    load();
  });

  // load renders the swarms as the live socket last sent them.
  function load() {
    if (!loaded) return;
    const swarms = [...state.values()].sort((a, b) => a.name.localeCompare(b.name));
    if (!swarms.length) {
      replace(listEl, h('p', { class: 'meta' }, 'No swarm. An admin initialises or adopts one with POST /api/v1/swarms.'));
      return;
    }
    replace(listEl, swarms.map(swarmEl));
  }

  function swarmEl(s) {
    const head = h('h2', {}, `${s.name} `, h('span', { class: 'meta' }, `on server ${s.server}`));
    const registry = h('p', { class: 'meta registry' }, s.registry
      ? `Registry: every node reaches it at ${s.registry}; images built for this swarm's applications are pushed there.`
      : 'No registry of its own: images reach the nodes through a registry you configure (build.push).');
    const body = s.reachable
      ? h('table', { class: 'nodes', 'aria-label': `Nodes of ${s.name}` },
        h('thead', {}, h('tr', {}, ['Node', 'Role', 'State', 'Availability', 'Engine', 'Labels', ''].map((c) => h('th', {}, c)))),
        h('tbody', {}, s.nodes.map((n) => nodeEl(s, n))))
      : h('p', { class: 'form-error' }, `The manager cannot be reached: ${s.error || 'unknown error'}`);
    const join = joins[s.name];
    return h('article', { class: 'swarm', dataset: { swarm: s.name } }, head, registry, body,
      h('div', { class: 'actions admin-only' },
        s.registry ? null : h('button', {
          type: 'button', class: 'secondary', dataset: { action: 'registry' },
          onclick: () => act('registry', () => api('POST', `/swarms/${encodeURIComponent(s.name)}/registry`, {})),
        }, 'Run a registry for this swarm'),
        ['worker', 'manager'].map((role) => h('button', {
          type: 'button', class: 'secondary', dataset: { join: role },
          onclick: () => act('join command', async () => {
            const res = await api('POST', `/swarms/${encodeURIComponent(s.name)}/join-tokens/${role}`);
            joins[s.name] = res.join;
          }),
        }, `Show a ${role} join command`))),
      join ? h('div', { class: 'join' },
        h('p', { class: 'meta' }, `Run this on the new ${join.role} node. It is shown this once; the previous token no longer works.`),
        h('pre', { class: 'join-command' }, join.command)) : null);
  }

  function nodeEl(s, n) {
    const labels = Object.entries(n.labels || {}).map(([k, v]) => `${k}=${v}`).join(', ');
    const next = n.availability === 'active' ? 'drain' : 'active';
    return h('tr', { dataset: { node: n.id, state: n.state, availability: n.availability } },
      h('td', {}, n.hostname, n.leader ? ' (leader)' : ''),
      h('td', {}, n.role),
      h('td', {}, h('span', { class: 'badge', dataset: { status: n.state === 'ready' ? 'running' : 'failed' } }, n.state)),
      h('td', { class: 'availability' }, n.availability),
      h('td', {}, n.engine),
      h('td', {}, labels || '—'),
      h('td', {}, h('button', {
        type: 'button', class: 'secondary admin-only',
        onclick: () => act(next === 'drain' ? 'drain' : 'reactivate', () =>
          api('PUT', `/swarms/${encodeURIComponent(s.name)}/nodes/${encodeURIComponent(n.id)}/availability`, { availability: next })),
      }, next === 'drain' ? 'Drain' : 'Reactivate')));
  }

  return unsub;
}
