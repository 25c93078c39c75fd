// Pull request previews of one application: each preview's URL (a stack's:
// one per routed service), state and
// latest deployment, and the settings (on or off, base domain, HTTPS, limit,
// which env values and secrets previews get).
import { h, replace, badge, short } from '../dom.js';
import { api, enc } from '../api.js';

const keys = (s) => s.split(',').map((k) => k.trim()).filter(Boolean);

export function previewsPanel(name, ui) {
  const panel = h('section', { class: 'panel', id: 'previews', 'aria-label': 'Previews' }, h('h2', {}, 'Previews'), h('p', { class: 'meta' }, 'Loading…'));
  let timer = 0;

  async function load() {
    clearTimeout(timer);
    if (!panel.isConnected && timer) return;
    let v;
    try { v = await api('GET', `/apps/${enc(name)}/previews`); } catch (err) { replace(panel, h('h2', {}, 'Previews'), h('p', { class: 'form-error' }, err.message)); return; }
    const s = v.settings;
    const open = v.previews.filter((p) => p.state === 'open');
    const rows = v.previews.map((p) => h('li', { class: 'preview', dataset: { number: String(p.number), state: p.state } },
      h('div', {}, h('strong', {}, `#${p.number}`), ' ',
        p.state === 'open' ? badge(p.deployment_status || 'requested', { deployment: true }) : h('span', { class: 'meta' }, `closed (${p.closed_reason})`),
        ' ', h('span', { class: 'meta mono' }, p.commit.slice(0, 10)), ' · ',
        h('a', { href: `#/deployments/${enc(p.deployment_id)}`, class: 'mono' }, short(p.deployment_id)), ' · ',
        p.state === 'open' ? h('a', { href: `#/apps/${enc(p.app)}`, class: 'mono' }, p.app) : h('span', { class: 'mono' }, p.app)),
      ...(p.routes && p.routes.length ? p.routes : [{ host: p.host }]).map((r) => {
        const url = `${p.url.split('://')[0]}://${r.host}`;
        return h('div', { class: 'mono', style: 'overflow-wrap:anywhere' }, r.service ? h('span', { class: 'meta' }, `${r.service}: `) : null,
          p.state === 'open' ? h('a', { href: url, target: '_blank', rel: 'noopener', class: 'preview-url' }, url) : r.host);
      })));
    const form = h('form', { class: 'write', id: 'previews-form' },
      h('label', {}, h('input', { type: 'checkbox', name: 'enabled', checked: s.enabled }), ' Deploy pull requests as previews'),
      h('label', {}, 'Base domain', h('input', { name: 'base_domain', value: s.base_domain ? `*.${s.base_domain}` : '', placeholder: '*.preview.example.com' })),
      h('label', {}, h('input', { type: 'checkbox', name: 'https', checked: s.https }), ' HTTPS'),
      h('label', {}, 'At most', h('input', { type: 'number', name: 'limit', min: 1, max: 50, value: s.limit }), ' previews at once (the oldest stops)'),
      h('label', {}, 'Env values (comma-separated; empty: all plain values)', h('input', { name: 'env_keys', value: s.env_keys.join(', ') })),
      h('label', {}, 'Secrets previews get (none unless listed)', h('input', { name: 'secret_keys', value: s.secret_keys.join(', ') })),
      h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'previews-save' }, 'Save')));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const f = form.elements;
      const body = {
        enabled: f.enabled.checked, base_domain: f.base_domain.value.trim(), https: f.https.checked,
        limit: Number(f.limit.value) || 0, env_keys: keys(f.env_keys.value), secret_keys: keys(f.secret_keys.value),
      };
      if (s.report) body.report = { provider: s.report.provider, api_url: s.report.api_url, repository: s.report.repository };
      try { await api('PUT', `/apps/${enc(name)}/previews`, body); ui.toast('Preview settings saved'); } catch (err) { ui.toast(`Previews: ${err.message}`, 'error'); }
      await load();
    });
    replace(panel, h('h2', {}, 'Previews'),
      h('p', { class: 'meta', id: 'previews-summary' }, s.enabled
        ? `On: pull requests opened on GitHub, GitLab or Gitea deploy at pr-<number>-${name}.${s.base_domain}; ${open.length} of ${s.limit} running.`
        : 'Off: pull requests deploy nothing.'),
      rows.length ? h('ul', { class: 'list', id: 'previews-list', style: 'list-style:none;padding:0' }, rows) : h('p', { class: 'meta' }, 'No previews yet.'),
      form);
    if (open.some((p) => !['succeeded', 'failed', 'cancelled', 'interrupted', 'dead_lettered'].includes(p.deployment_status))) {
      timer = setTimeout(load, 2000);
    } else {
      timer = setTimeout(load, 10000);
    }
  }
  load();
  return panel;
}
