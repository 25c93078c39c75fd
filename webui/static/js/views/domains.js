// Domains: every domain with its options and certificate state, kept
// live; the form that adds a domain with its options; uploading and
// removing a domain's own certificate. domainsView is the Domains screen
// (#/domains), domainsPanel the same for one application on its page.
import { h, replace, when } from '../dom.js';
import { api, enc, lastWrite } from '../api.js';
import { field, checkbox, submitting } from './forms.js';

// REFRESH is how often the certificate states are read again while a
// domains list is on screen: issuance happens in Traefik, outside any
// request of this page.
const REFRESH = 3000;

const STATE_LABELS = {
  off: 'HTTP only', pending: 'certificate pending', issued: 'certificate issued',
  expired: 'certificate expired', failed: 'certificate failed',
};

// certBadge shows a certificate state; pending pulses.
function certBadge(c) {
  return h('span', { class: 'badge' + (c.state === 'pending' ? ' pulse' : ''), dataset: { cert: c.state } }, STATE_LABELS[c.state] || c.state);
}

// certDetail says what the state means in words.
function certDetail(c) {
  const src = c.source === 'custom' ? 'uploaded certificate' : c.source === 'acme' ? "Let's Encrypt" : '';
  switch (c.state) {
    case 'issued': return `${src}, valid until ${when(c.not_after)}${c.issuer ? ' · ' + c.issuer : ''}`;
    case 'expired': return `${src}, expired on ${when(c.not_after)}`;
    case 'pending': return "waiting for Let's Encrypt to issue the certificate";
    case 'failed': return `the last attempt failed${c.since ? ' (' + when(c.since) + ')' : ''}: ${c.reason || 'no reason given'}`;
    default: return c.reason || 'served over plain HTTP';
  }
}

// mount renders the domains of app (every application when app is empty)
// into el and keeps them fresh; it returns the function that stops it.
function mount(el, ui, app) {
  const state = { page: null, apps: [], editingCert: '' };
  const acmeNote = h('p', { class: 'meta', id: 'acme-note' });
  const listEl = h('div', { id: 'domain-list' });
  const formEl = h('div');
  replace(el, h('h2', {}, 'Domains'), acmeNote, listEl, formEl);
  let stopped = false;

  async function act(label, fn) {
    try { await fn(); await load(); } catch (err) { ui.toast(`${label}: ${err.message}`, 'error'); }
  }

  async function load() {
    const q = new URLSearchParams();
    if (app) q.set('app', app);
    if (lastWrite()) q.set('min_position', String(lastWrite()));
    try {
      const page = await api('GET', '/domains?' + q.toString());
      if (stopped) return;
      const first = !state.page;
      const acmeChanged = !state.page || state.page.acme.enabled !== page.acme.enabled;
      state.page = page;
      renderList();
      if (first || acmeChanged) {
        if (!app) state.apps = ((await api('GET', '/apps')).apps || []).map((a) => a.name);
        renderForm();
      }
    } catch (err) {
      if (!stopped) replace(listEl, h('p', { class: 'form-error' }, err.message));
    }
  }

  function renderList() {
    const { acme, domains } = state.page;
    acmeNote.textContent = acme.enabled
      ? "HTTPS certificates come from Let's Encrypt (ACME) unless a domain has its own."
      : acme.message;
    if (domains.length === 0) { replace(listEl, h('p', { class: 'meta' }, 'No domains.')); return; }
    replace(listEl, h('ul', { id: 'domains', class: 'domains' }, domains.map(row)));
  }

  function row(d) {
    const c = d.certificate;
    const opts = [];
    if (d.path_prefix) opts.push(`path ${d.path_prefix} (stripped)`);
    if (d.port) opts.push(`port ${d.port}`);
    if (d.redirect_to) opts.push(`redirects to ${d.redirect_to}`);
    if (d.basic_auth_users.length) opts.push(`basic auth: ${d.basic_auth_users.join(', ')}`);
    const scheme = d.certificate.state === 'off' ? 'http' : 'https';
    const li = h('li', { dataset: { host: d.host } },
      h('div', {},
        h('a', { href: `${scheme}://${d.host}${d.path_prefix || ''}`, rel: 'noopener noreferrer', target: '_blank' }, `${d.host}${d.path_prefix || ''}`),
        ' ', certBadge(c),
        app ? null : h('span', { class: 'meta' }, ' · ', h('a', { href: `#/apps/${enc(d.app)}` }, d.app))),
      h('div', { class: 'meta cert-detail' }, certDetail(c)),
      opts.length ? h('div', { class: 'meta' }, opts.join(' · ')) : null,
      h('div', { class: 'actions write' },
        h('button', { type: 'button', class: 'link', onclick: () => { state.editingCert = state.editingCert === d.host ? '' : d.host; renderList(); } },
          c.source === 'custom' ? 'Replace certificate' : 'Upload certificate'),
        c.source === 'custom' ? h('button', { type: 'button', class: 'link', onclick: () => act('Remove certificate', async () => {
          if (await ui.confirm(`Remove the uploaded certificate of ${d.host}?`, 'Remove')) {
            await api('DELETE', `/apps/${enc(d.app)}/domains/${enc(d.host)}/certificate`);
          }
        }) }, 'Remove certificate') : null,
        h('button', { type: 'button', class: 'link', onclick: () => act('Remove domain', async () => {
          if (await ui.confirm(`Remove ${d.host}?`, 'Remove')) await api('DELETE', `/apps/${enc(d.app)}/domains/${enc(d.host)}`);
        }) }, 'Remove')),
      state.editingCert === d.host ? certForm(d) : null);
    return li;
  }

  function certForm(d) {
    const cert = textarea('Certificate (PEM, leaf first)', 'certificate', '-----BEGIN CERTIFICATE-----');
    const key = textarea('Private key (PEM)', 'private_key', '-----BEGIN PRIVATE KEY-----');
    const form = h('form', { class: 'cert-form', 'aria-label': `Certificate of ${d.host}`, onsubmit: (e) => {
      e.preventDefault();
      submitting(form, async () => {
        await api('PUT', `/apps/${enc(d.app)}/domains/${enc(d.host)}/certificate`, { certificate: cert.input.value, private_key: key.input.value });
        state.editingCert = '';
        ui.toast(`Certificate of ${d.host} uploaded`);
        await load();
      });
    } }, cert, key,
    h('p', { class: 'meta' }, 'The key is encrypted with the application\'s key before it is stored and is only decrypted to hand it to Traefik.'),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Upload')));
    return form;
  }

  function renderForm() {
    const { acme } = state.page;
    const appSel = app ? null : field('Application', { name: 'app', field: 'app', options: state.apps.map((n) => [n, n]) });
    const host = field('Host', { name: 'host', field: 'host', placeholder: 'app.example.com', required: true });
    const path = field('Path prefix', { name: 'path_prefix', field: 'path_prefix', placeholder: '/', hint: 'stripped before the request reaches the app' });
    const port = field('Port', { name: 'port', field: 'port', type: 'number', placeholder: 'app port' });
    const service = field('Service', { name: 'service', field: 'service', placeholder: 'compose stacks: the service', hint: 'a compose stack routes to one of its services (with its port)' });
    const https = checkbox(acme.enabled ? "HTTPS (Let's Encrypt)" : "HTTPS (Let's Encrypt) — ACME is not configured", { name: 'https', field: 'https', checked: acme.enabled });
    if (!acme.enabled) {
      https.input.disabled = true;
      https.append(h('div', { class: 'meta', id: 'https-why' }, 'Add the domain, then upload its certificate to serve it over HTTPS.'));
    }
    const redirect = field('Redirect', { name: 'redirect', field: 'redirect_to', options: [['', 'no redirect'], ['apex', 'www → apex (to the host without www.)'], ['www', 'apex → www (to www. + host)']] });
    const user = field('Basic auth user', { name: 'basic_user', field: 'basic_auth', aliases: ['basic_auth[0].username'], placeholder: 'optional' });
    const pass = field('Basic auth password', { name: 'basic_password', field: 'basic_auth[0].password', type: 'password', autocomplete: 'new-password', placeholder: '8 characters or more' });
    const form = h('form', { id: 'domain-form', 'aria-label': 'Add domain', onsubmit: (e) => {
      e.preventDefault();
      submitting(form, async () => {
        const target = app || appSel.input.value;
        if (!target) throw Object.assign(new Error('create an application first'), { field: 'app' });
        const hostName = host.input.value.trim().toLowerCase();
        const body = { host: hostName, https: https.input.checked };
        if (path.input.value.trim()) body.path_prefix = path.input.value.trim();
        if (port.input.value) body.port = Number(port.input.value);
        if (service.input.value.trim()) body.service = service.input.value.trim();
        if (redirect.input.value === 'apex') body.redirect_to = hostName.replace(/^www\./, '');
        if (redirect.input.value === 'www') body.redirect_to = 'www.' + hostName;
        if (user.input.value.trim()) body.basic_auth = [{ username: user.input.value.trim(), password: pass.input.value }];
        await api('POST', `/apps/${enc(target)}/domains`, body);
        form.reset();
        https.input.checked = acme.enabled;
        await load();
      });
    } },
    h('div', { class: 'row' }, appSel, host, path, port, service),
    h('div', { class: 'row' }, redirect, user, pass),
    h('div', { class: 'row' }, https),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Add domain')));
    replace(formEl, h('div', { class: 'write' }, h('h3', {}, 'Add a domain'), form));
  }

  load();
  const timer = setInterval(() => { if (!document.hidden) load(); }, REFRESH);
  const stop = () => { stopped = true; clearInterval(timer); };
  stop.reload = load;
  return stop;
}

function textarea(label, name, placeholder) {
  const id = `cert-${name}-${Math.random().toString(36).slice(2)}`;
  const input = h('textarea', { id, name, rows: 6, placeholder, spellcheck: 'false' });
  const wrap = h('div', { class: 'field', dataset: { field: name } }, h('label', { for: id }, label), input,
    h('div', { class: 'field-error', hidden: true }));
  wrap.input = input;
  return wrap;
}

// domainsView is the Domains screen: every application's domains.
export function domainsView(el, ui) {
  const panel = h('section', { class: 'panel', 'aria-label': 'Domains' });
  replace(el, h('div', { class: 'toolbar' }, h('h1', {}, 'Domains')), panel);
  return mount(panel, ui, '');
}

// domainsPanel renders one application's domains into el.
export function domainsPanel(el, ui, app) {
  return mount(el, ui, app);
}
