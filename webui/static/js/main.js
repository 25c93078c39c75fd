// The berth web UI: a hash router over a few views, one live socket.
import { Live } from './live.js';
import { h, replace, actorName } from './dom.js';
import { api, setCSRF } from './api.js';
import { dashboard } from './views/dashboard.js';
import { appView, appAsOf } from './views/app.js';
import { deploymentView } from './views/deployment.js';
import { auditView } from './views/audit.js';
import { domainsView } from './views/domains.js';
import { databasesView } from './views/databases.js';
import { loginView, setupView } from './views/login.js';
import { notificationsView } from './views/notifications.js';
import { monitoringView } from './views/monitoring.js';
import { serversView } from './views/servers.js';
import { swarmsView } from './views/swarms.js';
import { usersView, tokensView, webhooksView } from './views/admin.js';
import { registriesView } from './views/registries.js';

const view = document.getElementById('view');
const liveEl = document.getElementById('live');
const LIVE_TEXT = { live: 'live', connecting: 'connecting…', reconnecting: 'reconnecting…' };

// Signed-out pages (login, setup) open no socket: the server would refuse
// it, and the page would say "reconnecting…" for nothing.
const signedOutHash = () => location.hash.startsWith('#/login') || location.hash.startsWith('#setup=');
liveEl.hidden = signedOutHash();
const live = new Live((state) => {
  liveEl.dataset.state = state;
  liveEl.textContent = LIVE_TEXT[state] || state;
}, { paused: signedOutHash() });

// ui is what every view gets: the socket, navigation and dialogs.
const ui = {
  live,
  go(hash) { location.hash = hash; },
  toast(msg, kind = 'info') {
    const t = document.getElementById('toast');
    t.textContent = msg;
    t.dataset.kind = kind;
    t.hidden = false;
    clearTimeout(t._timer);
    t._timer = setTimeout(() => { t.hidden = true; }, 6000);
  },
  confirm(text, okLabel = 'Confirm') {
    const d = document.getElementById('confirm');
    document.getElementById('confirm-text').textContent = text;
    document.getElementById('confirm-ok').textContent = okLabel;
    return new Promise((resolve) => {
      d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true });
      d.returnValue = '';
      d.showModal();
    });
  },
};

const routes = [
  [/^#?\/?$/, () => dashboard],
  [/^#\/apps\/([^/?]+)\/at\/(\d+)$/, (m) => (el, u) => appAsOf(el, u, decodeURIComponent(m[1]), Number(m[2]))],
  [/^#\/apps\/([^/?]+)$/, (m) => (el, u) => appView(el, u, decodeURIComponent(m[1]))],
  [/^#\/deployments\/([^/?]+)$/, (m) => (el, u) => deploymentView(el, u, decodeURIComponent(m[1]))],
  [/^#\/domains$/, () => domainsView],
  [/^#\/databases$/, () => databasesView],
  [/^#\/audit(\?.*)?$/, (m) => (el, u) => auditView(el, u, new URLSearchParams((m[1] || '').slice(1)))],
  [/^#\/monitoring(\?.*)?$/, (m) => (el, u) => monitoringView(el, u, new URLSearchParams((m[1] || '').slice(1)))],
  [/^#\/notifications$/, () => notificationsView],
  [/^#\/servers$/, () => serversView],
  [/^#\/swarms$/, () => swarmsView],
  [/^#\/users$/, () => usersView],
  [/^#\/tokens$/, () => tokensView],
  [/^#\/webhooks$/, () => webhooksView],
  [/^#\/registries$/, () => registriesView],
  [/^#\/login$/, () => loginView],
  [/^#setup=([A-Za-z0-9_-]+)$/, (m) => (el, u) => setupView(el, u, m[1])],
];

let dispose = null;

function route() {
  if (dispose) { dispose(); dispose = null; }
  document.getElementById('toast').hidden = true;
  const hash = location.hash || '#/';
  let render = null;
  for (const [re, make] of routes) {
    const m = hash.match(re);
    if (m) { render = make(m); break; }
  }
  const section = ['audit', 'databases', 'domains', 'monitoring', 'notifications', 'servers', 'swarms', 'users', 'tokens', 'webhooks', 'registries'].find((n) => hash.startsWith('#/' + n)) || 'dashboard';
  // Signed-out pages have no live socket to speak of.
  const signedOut = signedOutHash();
  liveEl.hidden = signedOut;
  if (signedOut) live.pause();
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  view.replaceChildren();
  if (!render) {
    replace(view, h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/' }, 'Back to the dashboard')));
    return;
  }
  dispose = render(view, ui) || null;
  view.focus({ preventScroll: true });
}

// The session (when accounts are enabled) gives the CSRF token and the
// role; write controls are hidden from read-only roles.
async function session() {
  try {
    const s = await api('GET', '/session');
    setCSRF(s.csrf_token);
    document.body.dataset.role = s.role || '';
    const who = document.getElementById('who');
    replace(who, actorName(s.actor), ' ', h('button', { type: 'button', class: 'link', onclick: async () => {
      try { await api('POST', '/logout'); } finally { location.hash = '#/login'; location.reload(); }
    } }, 'Sign out'));
  } catch {
    // No accounts on this server (loopback), or not signed in: the 401
    // handler shows the login page.
  }
}

// signedIn is called by the login and setup pages: the session cookie is
// set, so read the session, reconnect the socket and show the page.
ui.signedIn = async (hash) => {
  await session();
  live.restart();
  if (location.hash === hash) route();
  else location.hash = hash;
};

window.addEventListener('hashchange', route);
window.addEventListener('berth:unauthorized', () => {
  if (!location.hash.startsWith('#/login') && !location.hash.startsWith('#setup=')) {
    sessionStorage.setItem('berth:after-login', location.hash);
    location.hash = '#/login';
  }
});
session().finally(route);
