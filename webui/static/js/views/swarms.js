// Swarms: every Docker Swarm berth runs applications on, with its nodes
// as the manager lists them now (state, availability, role, engine,
// labels), refreshed while on screen; draining and reactivating a node;
// a join command, shown once (each request rotates the token); running
// the swarm's own image registry.
import { h, replace } from '../dom.js';
import { api } from '../api.js';

// REFRESH is how often the nodes are read again: their state changes in
// the swarm, outside any request of this page.
const REFRESH = 3000;

export function swarmsView(el, ui) {
  const listEl = h('div', { id: 'swarm-list' });
  replace(el, h('div', { class: 'toolbar' }, h('h1', {}, 'Swarms')), h('section', { class: 'panel', 'aria-label': 'Swarms' }, listEl));
  let stopped = false;
  const joins = {}; // swarm name → the join command shown once

  async function act(label, fn) {
    try { await fn(); await load(); } catch (err) { ui.toast(`${label}: ${err.message}`, 'error'); }
  }

  async function load() {
    try {
      const { swarms } = await api('GET', '/swarms');
      if (stopped) return;
      if (!swarms.length) {
        replace(listEl, h('p', { class: 'meta' }, 'No swarm. An admin initialises or adopts one with POST /api/v1/swarms.'));
        return;
      }
      replace(listEl, swarms.map(swarmEl));
    } catch (err) {
      if (!stopped) replace(listEl, h('p', { class: 'form-error' }, err.message));
    }
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

  load();
  const timer = setInterval(load, REFRESH);
  return () => { stopped = true; clearInterval(timer); };
}
