// Administration: users and their roles, API tokens (the secret shown
// once), outbound webhooks with their deliveries. Admin only; the API
// refuses other roles whatever the page shows.
import { h, replace, when, ago, actorName, short } from '../dom.js';
import { api, enc } from '../api.js';
import { field, submitting } from './forms.js';

const ROLES = [['deployer', 'deployer: manage and deploy applications'], ['auditor', 'auditor: read everything, change nothing'], ['admin', 'admin: everything, users, tokens, webhooks']];

function page(el, title, sub, ...body) {
  replace(el, h('div', { class: 'toolbar' }, h('div', {}, h('h1', {}, title), h('p', { class: 'sub' }, sub))), ...body);
}

// secretBox shows a secret once, with a copy button and the warning.
function secretBox(id, label, secret) {
  const input = h('input', { id, class: 'mono', readonly: true, value: secret, 'aria-label': label });
  return h('div', { class: 'secret', role: 'status' },
    h('p', {}, h('strong', {}, label), ' — copy it now: it is shown only this once and berth keeps only its hash.'),
    h('div', { class: 'actions' }, input, h('button', { type: 'button', class: 'secondary', onclick: async () => {
      input.select();
      try { await navigator.clipboard.writeText(secret); } catch { document.execCommand('copy'); }
    } }, 'Copy')));
}

export function usersView(el, ui) {
  const list = h('div', { class: 'table-wrap' }, h('p', { class: 'meta' }, 'Loading…'));
  const email = field('Email', { name: 'email', field: 'email', type: 'email', required: true, autocomplete: 'off' });
  const role = field('Role', { name: 'role', field: 'role', options: ROLES, value: 'deployer' });
  const pass = field('Initial password (12 characters or more)', { name: 'password', field: 'password', type: 'password', required: true, autocomplete: 'new-password' });
  const form = h('form', { class: 'panel', id: 'user-form', 'aria-label': 'New user', onsubmit: (e) => {
    e.preventDefault();
    submitting(form, async () => {
      await api('POST', '/users', { email: email.input.value.trim(), role: role.input.value, password: pass.input.value });
      ui.toast(`User ${email.input.value.trim()} created`);
      form.reset();
      await load();
    });
  } }, h('h2', {}, 'New user'), h('div', { class: 'row' }, email, role, pass), h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create user')));
  page(el, 'Users', 'Who may sign in, and what each role may do. A disabled account cannot sign in again and its sessions end at once.',
    h('div', { class: 'stack' }, h('section', { class: 'panel', 'aria-label': 'Users' }, h('h2', {}, 'Users'), list), form));

  async function load() {
    let users;
    try { ({ users } = await api('GET', '/users')); } catch (err) { replace(list, h('p', { class: 'form-error' }, err.message)); return; }
    replace(list, h('table', { id: 'users' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Email'), h('th', { scope: 'col' }, 'Role'), h('th', { scope: 'col' }, 'Status'), h('th', { scope: 'col' }, ''))),
      h('tbody', {}, users.map((u) => {
        const sel = h('select', { 'aria-label': `Role of ${u.email}`, disabled: u.disabled, onchange: async () => {
          try { await api('PATCH', `/users/${enc(u.id)}`, { role: sel.value }); ui.toast(`${u.email} is now ${sel.value}`); } catch (err) { ui.toast(err.message, 'error'); }
          await load();
        } }, ROLES.map(([v]) => h('option', { value: v, selected: v === u.role }, v)));
        return h('tr', { dataset: { user: u.email } },
          h('td', {}, u.email),
          h('td', {}, sel),
          h('td', {}, u.disabled ? h('span', { class: 'badge', dataset: { status: 'stopped' } }, 'disabled') : h('span', { class: 'badge', dataset: { status: 'succeeded' } }, 'active')),
          h('td', {}, u.disabled ? null : h('button', { type: 'button', class: 'link danger-text', onclick: async () => {
            if (!await ui.confirm(`Disable ${u.email}? Their sessions end now and the account cannot be enabled again.`, 'Disable')) return;
            try { await api('PATCH', `/users/${enc(u.id)}`, { disabled: true }); } catch (err) { ui.toast(err.message, 'error'); }
            await load();
          } }, 'Disable')));
      }))));
  }
  load();
}

export function tokensView(el, ui) {
  const list = h('div', { class: 'table-wrap' }, h('p', { class: 'meta' }, 'Loading…'));
  const shown = h('div', { id: 'new-token' });
  const name = field('Name', { name: 'name', field: 'name', required: true, placeholder: 'ci' });
  const role = field('Role', { name: 'role', field: 'role', options: ROLES, value: 'deployer' });
  const days = field('Expires in (days, empty: never)', { name: 'days', field: 'expires_at', type: 'number', placeholder: '90' });
  const form = h('form', { class: 'panel', id: 'token-form', 'aria-label': 'New token', onsubmit: (e) => {
    e.preventDefault();
    submitting(form, async () => {
      const body = { name: name.input.value.trim(), role: role.input.value };
      if (days.input.value) body.expires_at = new Date(Date.now() + Number(days.input.value) * 86400000).toISOString();
      const res = await api('POST', '/tokens', body);
      form.reset();
      replace(shown, secretBox('token-secret', `Token ${res.token.name}`, res.token.token));
      await load();
    });
  } }, h('h2', {}, 'New token'), h('p', { class: 'meta' }, 'Send it as Authorization: Bearer <token>.'),
  h('div', { class: 'row' }, name, role, days), h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create token')), shown);
  page(el, 'API tokens', 'Tokens for scripts and CI. berth stores only their hash; revoke one and it stops working at once.',
    h('div', { class: 'stack' }, form, h('section', { class: 'panel', 'aria-label': 'Tokens' }, h('h2', {}, 'Tokens'), list)));

  async function load() {
    let tokens;
    try { ({ tokens } = await api('GET', '/tokens')); } catch (err) { replace(list, h('p', { class: 'form-error' }, err.message)); return; }
    if (!tokens.length) { replace(list, h('p', { class: 'meta' }, 'No tokens yet.')); return; }
    replace(list, h('table', { id: 'tokens' },
      h('thead', {}, h('tr', {}, ['Name', 'Role', 'Created', 'Expires', 'Status', ''].map((t, i) => h('th', { scope: 'col', class: i === 2 ? 'hide-narrow' : null }, t)))),
      h('tbody', {}, tokens.map((t) => h('tr', { dataset: { token: t.name } },
        h('td', {}, t.name, h('div', { class: 'meta' }, `by ${actorName(t.created_by)}`)),
        h('td', {}, t.role),
        h('td', { class: 'hide-narrow' }, when(t.created_at)),
        h('td', {}, t.expires_at ? when(t.expires_at) : 'never'),
        h('td', {}, t.revoked_at ? h('span', { class: 'badge', dataset: { status: 'stopped' } }, 'revoked') : h('span', { class: 'badge', dataset: { status: 'succeeded' } }, 'active')),
        h('td', {}, t.revoked_at ? h('span', { class: 'meta' }, ago(t.revoked_at)) : h('button', { type: 'button', class: 'link', onclick: async () => {
          if (!await ui.confirm(`Revoke token ${t.name}? Whatever uses it stops working now.`, 'Revoke')) return;
          try { await api('DELETE', `/tokens/${enc(t.id)}`); } catch (err) { ui.toast(err.message, 'error'); }
          await load();
        } }, 'Revoke')))))));
  }
  load();
}

const OUTCOME_STATUS = { delivered: 'succeeded', retrying: 'queued', failed: 'failed' };

export function webhooksView(el, ui) {
  const list = h('div', {}, h('p', { class: 'meta' }, 'Loading…'));
  const shown = h('div', { id: 'new-webhook' });
  const url = field('Endpoint URL', { name: 'url', field: 'url', required: true, placeholder: 'https://hooks.example.com/berth' });
  const types = field('Event types (comma separated, * at the end matches a prefix)', { name: 'types', field: 'types', placeholder: 'deployment.*' });
  const desc = field('Description', { name: 'description', field: 'description', placeholder: 'deploy notifications' });
  const form = h('form', { class: 'panel', id: 'webhook-form', 'aria-label': 'New webhook', onsubmit: (e) => {
    e.preventDefault();
    submitting(form, async () => {
      const body = { url: url.input.value.trim() };
      const ts = types.input.value.split(',').map((s) => s.trim()).filter(Boolean);
      if (ts.length) body.types = ts;
      if (desc.input.value.trim()) body.description = desc.input.value.trim();
      const res = await api('POST', '/webhooks', body);
      form.reset();
      replace(shown, secretBox('webhook-secret', 'Signing secret', res.secret));
      await load();
    });
  } }, h('h2', {}, 'New webhook'),
  h('p', { class: 'meta' }, 'Events are POSTed as CloudEvents (application/cloudevents+json), signed with the Standard Webhooks headers, in log order, retried with backoff for an hour. An endpoint answering 410 Gone is paused.'),
  h('div', { class: 'row' }, url, types, desc), h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create webhook')), shown);
  page(el, 'Webhooks', 'Outbound webhooks: every event of the log that matches, delivered to your endpoint.',
    h('div', { class: 'stack' }, form, h('section', { class: 'panel', 'aria-label': 'Webhooks' }, h('h2', {}, 'Subscriptions'), list)));

  async function load() {
    let webhooks;
    try { ({ webhooks } = await api('GET', '/webhooks')); } catch (err) { replace(list, h('p', { class: 'form-error' }, err.message)); return; }
    if (!webhooks.length) { replace(list, h('p', { class: 'meta' }, 'No webhooks yet.')); return; }
    replace(list, h('ul', { class: 'hooks', id: 'webhooks' }, webhooks.map((w) => {
      const deliveries = h('div', { class: 'table-wrap' });
      const act = (label, fn) => async () => { try { await fn(); } catch (err) { ui.toast(`${label}: ${err.message}`, 'error'); } await load(); };
      return h('li', { class: 'hook', dataset: { webhook: w.id, status: w.status } },
        h('div', { class: 'toolbar' },
          h('div', {}, h('div', { class: 'mono' }, w.url),
            h('div', { class: 'meta' }, `${(w.types && w.types.length) ? w.types.join(', ') : 'every event'}${w.description ? ' · ' + w.description : ''} · created ${ago(w.created_at)} · ${w.cursor ? `delivered up to event #${w.cursor}` : 'nothing delivered yet'}`),
            w.status === 'paused' && w.paused_reason ? h('div', { class: 'meta warn-text' }, `Paused: ${w.paused_reason}`) : null),
          h('div', { class: 'actions' },
            h('span', { class: 'badge', dataset: { status: w.status === 'active' ? 'succeeded' : 'stopped' } }, w.status),
            w.status === 'active'
              ? h('button', { type: 'button', class: 'secondary', dataset: { action: 'pause' }, onclick: act('Pause', () => api('POST', `/webhooks/${enc(w.id)}/pause`, { reason: 'paused from the UI' })) }, 'Pause')
              : h('button', { type: 'button', class: 'secondary', dataset: { action: 'resume' }, onclick: act('Resume', () => api('POST', `/webhooks/${enc(w.id)}/resume`)) }, 'Resume'),
            h('button', { type: 'button', class: 'link', dataset: { action: 'delete' }, onclick: async () => {
              if (await ui.confirm(`Delete the webhook to ${w.url}? Its secret is destroyed.`, 'Delete')) await act('Delete', () => api('DELETE', `/webhooks/${enc(w.id)}`))();
            } }, 'Delete'))),
        h('details', { ontoggle: async (e) => {
          if (!e.target.open) return;
          replace(deliveries, h('p', { class: 'meta' }, 'Loading…'));
          try {
            const page = await api('GET', `/webhooks/${enc(w.id)}/deliveries?limit=50`);
            replace(deliveries, page.deliveries.length === 0 ? h('p', { class: 'meta' }, 'No deliveries yet.') : h('table', { class: 'deliveries' },
              h('thead', {}, h('tr', {}, ['Event', 'Attempt', 'Outcome', 'Answer', 'When'].map((t) => h('th', { scope: 'col' }, t)))),
              h('tbody', {}, page.deliveries.map((a) => h('tr', {},
                h('td', {}, a.event_type, h('div', { class: 'meta mono' }, `#${a.position} · ${short(a.event_id)}`)),
                h('td', {}, String(a.attempt)),
                h('td', {}, h('span', { class: 'badge', dataset: { status: OUTCOME_STATUS[a.outcome] || a.outcome } }, a.outcome)),
                h('td', {}, a.status_code ? String(a.status_code) : '—', a.error ? h('div', { class: 'meta' }, a.error) : null),
                h('td', {}, ago(a.attempted_at)))))));
          } catch (err) { replace(deliveries, h('p', { class: 'form-error' }, err.message)); }
        } }, h('summary', {}, 'Deliveries'), deliveries));
    })));
  }
  load();
}
