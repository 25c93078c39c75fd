// Git auto-deploy of one application: the URL to give the git host, the
// secret (shown once when generated), and turning deploy-on-push on or off.
import { h, replace, when } from '../dom.js';
import { api, enc } from '../api.js';

export function gitHookPanel(name, ui) {
  const panel = h('section', { class: 'panel', id: 'githook', 'aria-label': 'Git auto-deploy' }, h('h2', {}, 'Git auto-deploy'), h('p', { class: 'meta' }, 'Loading…'));
  const shown = h('div');
  const url = (path) => `${location.origin}${path}`;

  async function load() {
    let st;
    try { st = await api('GET', `/apps/${enc(name)}/hooks/git`); } catch (err) { replace(panel, h('h2', {}, 'Git auto-deploy'), h('p', { class: 'form-error' }, err.message)); return; }
    const act = (label, fn) => async () => { try { await fn(); } catch (err) { ui.toast(`${label}: ${err.message}`, 'error'); } await load(); };
    const generate = act('Secret', async () => {
      if (st.configured && !await ui.confirm('Generate a new secret? The current one stops working; update it at your git host.', 'Generate')) return;
      const res = await api('POST', `/apps/${enc(name)}/hooks/git/secret`);
      const input = h('input', { id: 'githook-secret', class: 'mono', readonly: true, value: res.secret, 'aria-label': 'Git webhook secret' });
      replace(shown, h('div', { class: 'secret', role: 'status' },
        h('p', {}, h('strong', {}, 'Secret'), ' — paste it into your git host now: it is shown only this once.'), input));
    });
    replace(panel, h('h2', {}, 'Git auto-deploy'),
      h('p', { class: 'meta' }, 'A push to the application\'s branch on GitHub, GitLab or Gitea deploys it. Add a webhook at your git host with this URL, content type application/json, and the secret.'),
      h('dl', { class: 'kv' },
        h('dt', {}, 'Hook URL'), h('dd', { class: 'mono', id: 'githook-url' }, url(st.url)),
        h('dt', {}, 'Secret'), h('dd', {}, st.configured ? `set ${when(st.secret_set_at)}` : 'not generated yet'),
        h('dt', {}, 'Deploy on push'), h('dd', { id: 'githook-state' }, !st.configured ? '—' : st.enabled ? 'on' : 'off')),
      shown,
      h('div', { class: 'actions mt write' },
        h('button', { type: 'button', id: 'githook-generate', class: st.configured ? 'secondary' : null, onclick: generate }, st.configured ? 'New secret' : 'Generate secret'),
        st.configured ? h('button', { type: 'button', id: 'githook-toggle', class: 'secondary', onclick: act('Auto-deploy', () => api('PUT', `/apps/${enc(name)}/hooks/git`, { enabled: !st.enabled })) },
          st.enabled ? 'Turn off' : 'Turn on') : null));
  }
  load();
  return panel;
}
