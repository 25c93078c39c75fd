// Application page: settings, environment, domains, actions and the
// deployment history, all live; and the same application as of a past
// log position.
import { h, replace, badge, isActive, depStatus, when, duration, short, actorName, ago, FINAL } from '../dom.js';
import { api, enc } from '../api.js';
import { field, submitting } from './forms.js';
import { domainsPanel } from './domains.js';
import { logsPanel } from './logs.js';
import { gitHookPanel } from './githook.js';
import { previewsPanel } from './previews.js';
import { explainFailure } from './explain.js';

// ROLLBACK_MODES label the rollback choices.
const ROLLBACK_MODES = { instant: ' · instant', rebuild: ' · rebuilt from its commit', unavailable: ' · unavailable (image gone)' };

export function appView(el, ui, name) {
  const state = { app: null, deployments: new Map(), editing: false };
  const header = h('div', { class: 'toolbar' });
  const actions = h('div', { class: 'actions', role: 'group', 'aria-label': 'Application actions' });
  const settings = h('section', { class: 'panel', 'aria-label': 'Settings' });
  const env = h('section', { class: 'panel', 'aria-label': 'Environment' });
  const domains = h('section', { class: 'panel', 'aria-label': 'Domains' });
  const history = h('section', { class: 'panel', 'aria-label': 'Deployments' });
  const side = h('section', { class: 'panel', 'aria-label': 'Status' });
  const services = h('section', { class: 'panel', id: 'services', 'aria-label': 'Services', hidden: true });
  const failure = h('section', { class: 'panel failure', id: 'last-failure', 'aria-label': 'Why the last deployment failed', hidden: true });
  const overview = h('div', { class: 'cols' }, h('div', { class: 'stack' }, failure, services, history, settings, env, domains), h('div', { class: 'stack' }, side, gitHookPanel(name, ui), previewsPanel(name, ui)));
  const logs = logsPanel(name);
  replace(el, header, tabs([['overview', 'Overview', overview], ['logs', 'Logs', logs.el, logs.start, logs.stop]]), overview, logs.el);
  header.append(h('p', { class: 'meta' }, 'Loading…'));

  const keep = (d) => {
    // A deployment of an earlier application of this name (deleted) is
    // not this one's.
    if (state.app && d.incarnation && state.app.incarnation && d.incarnation !== state.app.incarnation) return;
    const old = state.deployments.get(d.id);
    if (!old || (d.position || 0) >= (old.position || 0)) state.deployments.set(d.id, d);
  };
  let renderedConfig = -1;
  const unsub = ui.live.subscribe(`app:${name}`, (m) => {
    if (m.op === 'error') { replace(header, h('h1', {}, name), h('p', { class: 'form-error' }, m.error)); return; }
    const d = m.data || {};
    if (m.snapshot) state.deployments.clear();
    if (d.app && (!state.app || (d.app.position || 0) >= (state.app.position || 0))) {
      // The name deleted and created again: a new application.
      if (state.app && d.app.incarnation !== state.app.incarnation) state.deployments.clear();
      state.app = d.app;
    }
    for (const dep of d.deployments || []) keep(dep);
    if (d.deployment) keep(d.deployment);
    if (!state.app) return;
    renderHeader();
    renderSide();
    renderHistory();
    renderServices();
    renderFailure();
    // Forms are rebuilt only when the configuration changed, so typing is
    // never lost to an unrelated live update.
    if (state.app.stream_version !== renderedConfig) {
      renderedConfig = state.app.stream_version;
      renderSettings(); renderEnv(); renderDomains();
    }
  });

  const sorted = () => [...state.deployments.values()].sort((a, b) => (b.requested_at || '').localeCompare(a.requested_at || ''));
  const current = () => sorted().find(isActive);

  async function act(label, fn) {
    try { await fn(); } catch (err) { ui.toast(`${label}: ${err.message}`, 'error'); }
  }

  // How a rollback to each successful deployment would run (GET
  // /apps/{app}/rollbacks), read again when the deployments or the serving
  // one change.
  const rollbackModes = new Map();
  let rollbackKey = '';
  function loadRollbackModes(succeeded, serving) {
    const key = succeeded.map((d) => d.id).join(',') + '|' + (serving || '');
    if (key === rollbackKey) return;
    rollbackKey = key;
    api('GET', `/apps/${enc(name)}/rollbacks`).then((res) => {
      rollbackModes.clear();
      for (const r of (res && res.rollbacks) || []) rollbackModes.set(r.deployment_id, r.mode);
      if (state.app) renderHeader();
    }).catch(() => { /* the labels are a hint; the list still works */ });
  }

  function renderHeader() {
    const a = state.app;
    const cur = current();
    // Rollback targets: earlier successful deployments, never the one
    // already serving (rolling back to it would change nothing).
    const succeeded = sorted().filter((d) => d.status === 'succeeded' && d.id !== a.serving_deployment_id);
    loadRollbackModes(succeeded, a.serving_deployment_id);
    const rollbackSel = h('select', { id: 'rollback-to', 'aria-label': 'Deployment to roll back to' },
      succeeded.length ? succeeded.map((d) => h('option', { value: d.id, dataset: { mode: rollbackModes.get(d.id) || '' } },
        `${short(d.id)} · ${when(d.finished_at)}${d.commit_sha ? ' · ' + d.commit_sha.slice(0, 7) : ''}${ROLLBACK_MODES[rollbackModes.get(d.id)] || ''}`))
        : h('option', { value: '' }, 'no earlier successful deployment'));
    replace(actions,
      h('button', { type: 'button', id: 'deploy', class: 'write', onclick: () => act('Deploy', async () => {
        const res = await api('POST', `/apps/${enc(name)}/deployments`, {});
        if (res && res.deployment_id) ui.toast(`Deployment ${short(res.deployment_id)} requested` + (res.queue_position ? ` (#${res.queue_position} in queue)` : ''));
      }) }, 'Deploy'),
      cur ? h('button', { type: 'button', id: 'cancel', class: 'secondary write', onclick: () => act('Cancel', async () => {
        if (await ui.confirm(`Cancel deployment ${short(cur.id)}?`, 'Cancel deployment')) await api('POST', `/deployments/${enc(cur.id)}/cancel`, { reason: 'cancelled from the UI' });
      }) }, 'Cancel deployment') : null,
      a.desired_status === 'stopped'
        ? h('button', { type: 'button', id: 'start', class: 'secondary', onclick: () => act('Start', () => api('POST', `/apps/${enc(name)}/start`)) }, 'Start')
        : h('button', { type: 'button', id: 'stop', class: 'secondary', onclick: () => act('Stop', async () => {
          if (await ui.confirm(`Stop ${name}? Its container stops serving traffic.`, 'Stop')) await api('POST', `/apps/${enc(name)}/stop`);
        }) }, 'Stop'),
      h('span', { class: 'actions' }, rollbackSel, h('button', { type: 'button', class: 'secondary', id: 'rollback', disabled: !succeeded.length, onclick: () => act('Rollback', async () => {
        const to = rollbackSel.value;
        if (to && await ui.confirm(`Roll ${name} back to deployment ${short(to)} (its image and configuration)?`, 'Roll back')) {
          await api('POST', `/apps/${enc(name)}/rollback`, { deployment_id: to });
        }
      }) }, 'Roll back')),
      h('button', { type: 'button', class: 'danger write', id: 'delete', onclick: () => act('Delete', async () => {
        if (await ui.confirm(`Delete ${name}? Its containers and routes are removed; its history stays in the log.`, 'Delete')) {
          await api('DELETE', `/apps/${enc(name)}`);
          ui.go('#/');
        }
      }) }, 'Delete'));
    replace(header,
      h('div', {}, h('h1', {}, a.name, ' ', badge(a.status)),
        h('p', { class: 'sub' }, `Project ${a.project} · version ${a.stream_version} · updated ${ago(a.updated_at)} · `,
          h('a', { href: `#/audit?app=${enc(a.name)}` }, 'history'), ' · ',
          h('a', { href: `#/monitoring?app=${enc(a.name)}` }, 'metrics'), ' · ',
          h('a', { href: `#/apps/${enc(a.name)}/at/${a.position}` }, 'as of now'))),
      actions);
  }

  function renderSide() {
    const a = state.app;
    const cur = current();
    replace(side, h('h2', {}, 'Status'), h('dl', { class: 'kv' },
      h('dt', {}, 'Status'), h('dd', {}, badge(a.status)),
      h('dt', {}, 'Desired'), h('dd', {}, a.desired_status),
      h('dt', {}, 'Serving'), h('dd', { class: 'mono' }, a.serving_deployment_id ? h('a', { href: `#/deployments/${enc(a.serving_deployment_id)}` }, short(a.serving_deployment_id)) : '—'),
      h('dt', {}, 'Image'), h('dd', { class: 'mono' }, a.serving_image ? a.serving_image.slice(0, 19) : '—'),
      h('dt', {}, 'Upstream'), h('dd', { class: 'mono' }, a.upstream_host ? `${a.upstream_host}:${a.upstream_port}` : '—')),
    h('details', { class: 'mt', id: 'log-position' }, h('summary', { class: 'meta' }, 'Event log'),
      h('p', { class: 'meta' }, `This page shows the application as of event #${a.position} of berth's event log (version ${a.stream_version} of the application). Every change is an event; `,
        h('a', { href: `#/apps/${enc(a.name)}/at/${a.position}` }, 'view it as of any event'), '.')),
    cur ? h('p', { class: 'mt' }, 'In progress: ', h('a', { href: `#/deployments/${enc(cur.id)}` }, `deployment ${short(cur.id)}`), ` (${cur.step.replace('_', ' ')})`) : null);
  }

  // earlier lists the deployments of the deleted applications that had
  // this name before (GET …/deployments?incarnation=N), loaded once.
  const earlier = h('div', { id: 'earlier' });
  let earlierOf = 0;
  function renderEarlier() {
    const a = state.app;
    if (!a.incarnation || a.incarnation < 2 || earlierOf === a.incarnation) return;
    earlierOf = a.incarnation;
    const parts = [];
    for (let n = a.incarnation - 1; n >= 1; n--) {
      const body = h('div', {}, h('p', { class: 'meta' }, 'Loading…'));
      parts.push(h('details', { class: 'mt', dataset: { incarnation: n } },
        h('summary', {}, `Application #${n} of this name (deleted)`), body));
      api('GET', `/apps/${enc(name)}/deployments?incarnation=${n}`).then(({ deployments }) => {
        replace(body, deployments.length === 0 ? h('p', { class: 'meta' }, 'Never deployed.') : h('ul', { class: 'meta' },
          deployments.map((d) => h('li', { dataset: { deployment: d.id } }, h('a', { href: `#/deployments/${enc(d.id)}` }, short(d.id)),
            ` · ${depStatus(d)} · ${when(d.requested_at)}`))));
      }).catch((err) => replace(body, h('p', { class: 'form-error' }, err.message)));
    }
    replace(earlier, h('h3', { class: 'meta mt' }, `Earlier applications named ${name}: their history stays theirs`), parts);
  }

  function renderHistory() {
    const rows = sorted();
    renderEarlier();
    replace(history, h('h2', {}, 'Deployments'), rows.length === 0 ? h('p', { class: 'meta' }, 'Not deployed yet.') : h('div', { class: 'table-wrap' }, h('table', { id: 'deployments' },
      h('thead', {}, h('tr', {}, ['Deployment', 'Status', 'Trigger', 'Actor', 'Commit', 'Requested', 'Duration', 'Steps'].map((t, i) => h('th', { class: i > 4 && i < 7 ? 'hide-narrow' : null, scope: 'col' }, t)))),
      h('tbody', {}, rows.map((d) => h('tr', { dataset: { deployment: d.id } },
        h('td', { class: 'mono' }, h('a', { href: `#/deployments/${enc(d.id)}` }, short(d.id)), d.rollback_of ? h('div', { class: 'meta' }, `rollback to ${short(d.rollback_of)}`) : null),
        h('td', {}, badge(depStatus(d), { deployment: true }), d.queue_position ? h('div', { class: 'meta' }, `#${d.queue_position} in queue`) : null,
          d.failure_reason ? h('div', { class: 'meta', title: explainFailure(d, (state.app.config.runtime || {}).port) }, explainFailure(d, (state.app.config.runtime || {}).port).split(': ')[0]) : null),
        h('td', {}, d.trigger.kind, d.trigger.detail ? h('div', { class: 'meta' }, d.trigger.detail) : null),
        h('td', {}, actorName(d.actor)),
        h('td', { class: 'mono' }, d.commit_sha ? d.commit_sha.slice(0, 7) : (d.ref || '—')),
        h('td', { class: 'hide-narrow' }, when(d.requested_at)),
        h('td', { class: 'hide-narrow' }, FINAL.includes(d.status) ? duration(d.duration_ms) : '…'),
        h('td', {}, h('details', {}, h('summary', {}, `${(d.steps || []).length} steps`),
          h('ul', { class: 'meta' }, (d.steps || []).map((s) => h('li', {}, `${s.name.replace('_', ' ')} · ${duration(s.duration_ms)}`)))))))))));
    history.append(earlier);
  }

  // renderServices shows, for a compose stack, each service's state as
  // the latest deployment that reached it recorded (live: every service
  // step updates it), with a link to that service's logs.
  function renderServices() {
    const compose = (state.app.config.source || {}).compose;
    if (!compose) { services.hidden = true; return; }
    services.hidden = false;
    const byService = new Map();
    for (const d of sorted().reverse()) {
      for (const [svc, st] of Object.entries(d.services || {})) byService.set(svc, { ...st, deployment: d.id });
    }
    for (const svc of compose.services || []) if (!byService.has(svc)) byService.set(svc, null);
    logs.setServices([...byService.keys()].sort());
    const names = [...byService.keys()].sort();
    replace(services, h('h2', {}, 'Services'), names.length === 0 ? h('p', { class: 'meta' }, 'The compose file is read when the stack deploys.') : h('div', { class: 'table-wrap' }, h('table', { id: 'services-table' },
      h('thead', {}, h('tr', {}, ['Service', 'State', 'Container', 'Configuration', 'Deployment', 'Logs'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, names.map((svc) => {
        const st = byService.get(svc);
        return h('tr', { dataset: { service: svc } },
          h('td', { class: 'mono' }, svc),
          h('td', {}, st ? h('span', { class: 'badge', dataset: { status: st.step } }, st.step) : '—'),
          h('td', { class: 'mono' }, st && st.container_name ? st.container_name : '—'),
          h('td', { class: 'mono', title: 'hash of the resolved configuration and image' }, st && st.config_hash ? st.config_hash.slice(0, 12) : '—'),
          h('td', { class: 'mono' }, st ? h('a', { href: `#/deployments/${enc(st.deployment)}` }, short(st.deployment)) : '—'),
          h('td', {}, h('button', { type: 'button', class: 'secondary', dataset: { logs: svc }, onclick: () => { logs.show(svc); document.querySelector('#tab-logs').click(); } }, 'Logs')));
      })))));
  }

  // renderFailure explains the latest deployment when it failed: the cause
  // in words and the tail of its log, loaded once per deployment.
  let failureShown = '';
  function renderFailure() {
    const last = sorted()[0];
    const why = explainFailure(last, (state.app.config.runtime || {}).port);
    if (!why) { failure.hidden = true; failureShown = ''; return; }
    failure.hidden = false;
    if (failureShown === last.id) return;
    failureShown = last.id;
    const tail = h('pre', { class: 'log tail', 'aria-label': 'Last lines of the log' }, 'Loading the log…');
    replace(failure, h('h2', {}, 'The last deployment failed'),
      h('p', { class: 'cause' }, why[0].toUpperCase() + why.slice(1) + '.'),
      h('details', {}, h('summary', { class: 'meta' }, 'Technical reason'), h('p', { class: 'mono' }, `${last.failed_step}: ${last.failure_reason}`)),
      h('h3', { class: 'meta' }, 'Last lines of its log ', h('a', { href: `#/deployments/${enc(last.id)}` }, '(whole log)')), tail);
    api('GET', `/deployments/${enc(last.id)}/logs?limit=5000`).then((page) => {
      const lines = (page.lines || []).slice(-15);
      replace(tail, lines.length ? lines.map((l) => h('span', { class: l.stream === 'stderr' ? 'stderr' : null }, l.line, '\n')) : 'The log is empty.');
    }).catch((err) => replace(tail, err.message));
  }

  function renderSettings() {
    const c = state.app.config;
    const f = {
      git_url: field('Git URL', { name: 'git_url', field: 'source.git_url', value: c.source.git_url || '' }),
      git_ref: field('Branch, tag or commit', { name: 'git_ref', field: 'source.git_ref', value: c.source.git_ref || '' }),
      image: field('Image', { name: 'image', field: 'source.image', value: c.source.image || '' }),
      dockerfile: field('Dockerfile', { name: 'dockerfile', field: 'build.dockerfile', value: c.build.dockerfile || '' }),
      context: field('Build context', { name: 'context', field: 'build.context', value: c.build.context || '' }),
      target: field('Build target', { name: 'target', field: 'build.target', value: c.build.target || '' }),
      port: field('Container port', { name: 'port', field: 'runtime.port', type: 'number', value: c.runtime.port || '' }),
      replicas: field('Replicas', { name: 'replicas', field: 'runtime.replicas', type: 'number', value: c.runtime.replicas || '' }),
      health_check_path: field('Health check path', { name: 'health_check_path', field: 'runtime.health_check.path', value: (c.runtime.health_check || {}).path || '' }),
      health_check_timeout_seconds: field('Health check timeout (s)', { name: 'health_check_timeout_seconds', field: 'runtime.health_check.timeout_seconds', type: 'number', value: (c.runtime.health_check || {}).timeout_seconds || '' }),
      cpu_millis: field('CPU (millicores)', { name: 'cpu_millis', field: 'runtime.resources.cpu_millis', type: 'number', value: (c.runtime.resources || {}).cpu_millis || '' }),
      memory_bytes: field('Memory (MiB)', { name: 'memory_bytes', field: 'runtime.resources.memory_bytes', type: 'number', value: (c.runtime.resources || {}).memory_bytes ? Math.round(c.runtime.resources.memory_bytes / 1048576) : '' }),
      restart_policy: field('Restart policy', { name: 'restart_policy', field: 'runtime.restart_policy', value: c.runtime.restart_policy || '', placeholder: 'unless-stopped' }),
    };
    const numbers = ['port', 'replicas', 'health_check_timeout_seconds', 'cpu_millis', 'memory_bytes'];
    const form = h('form', { id: 'settings-form', 'aria-label': 'Settings', onsubmit: (e) => {
      e.preventDefault();
      submitting(form, async () => {
        const patch = {};
        for (const [k, w] of Object.entries(f)) {
          const v = w.input.value.trim();
          if (numbers.includes(k)) {
            if (v === '') continue;
            patch[k] = k === 'memory_bytes' ? Math.round(Number(v) * 1048576) : Number(v);
          } else {
            patch[k] = v;
          }
        }
        await api('PATCH', `/apps/${enc(name)}`, patch);
        ui.toast('Settings saved');
      });
    } },
    h('h2', {}, 'Settings'),
    h('h3', { class: 'meta' }, 'Source'), h('div', { class: 'row' }, f.git_url, f.git_ref, f.image),
    h('h3', { class: 'meta' }, 'Build'), h('div', { class: 'row' }, f.dockerfile, f.context, f.target),
    h('h3', { class: 'meta' }, 'Runtime'), h('div', { class: 'row' }, f.port, f.replicas, f.health_check_path, f.health_check_timeout_seconds, f.cpu_millis, f.memory_bytes, f.restart_policy),
    h('div', { class: 'actions write' }, h('button', { type: 'submit', id: 'save-settings' }, 'Save settings')));
    replace(settings, form);
  }

  function renderEnv() {
    const rows = h('tbody');
    const addRow = (v = { key: '', value: '', secret: false }, existing = false) => {
      const key = h('input', { 'aria-label': 'Key', value: v.key, class: 'mono' });
      const secret = h('input', { type: 'checkbox', 'aria-label': 'Secret', checked: v.secret });
      const value = h('input', { 'aria-label': 'Value', class: 'mono', type: v.secret ? 'password' : 'text', value: v.secret ? '' : (v.value || ''),
        placeholder: v.secret && existing ? '•••••••• (unchanged)' : '', autocomplete: 'new-password' });
      secret.addEventListener('change', () => { value.type = secret.checked ? 'password' : 'text'; });
      const tr = h('tr', {}, h('td', {}, key), h('td', {}, value), h('td', {}, secret),
        h('td', {}, h('button', { type: 'button', class: 'link', onclick: () => tr.remove() }, 'Remove')));
      tr.read = () => {
        const out = { key: key.value.trim(), value: value.value, secret: secret.checked };
        if (out.secret && existing && v.secret && out.value === '' && out.key === v.key) { out.keep = true; }
        return out;
      };
      rows.append(tr);
    };
    for (const v of state.app.config.env || []) addRow(v, true);
    const form = h('form', { id: 'env-form', 'aria-label': 'Environment', onsubmit: (e) => {
      e.preventDefault();
      submitting(form, async () => {
        const envs = [...rows.children].map((tr) => tr.read()).filter((v) => v.key !== '');
        await api('PUT', `/apps/${enc(name)}/env`, { env: envs });
        ui.toast('Environment saved');
      });
    } },
    h('h2', {}, 'Environment'),
    h('p', { class: 'meta' }, 'Secret values are write-only: they are encrypted at rest and never shown again.'),
    h('div', { class: 'table-wrap', dataset: { field: 'env' } }, h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Key'), h('th', {}, 'Value'), h('th', {}, 'Secret'), h('th', {}, ''))), rows),
      h('div', { class: 'field-error', hidden: true })),
    h('div', { class: 'actions mt' }, h('button', { type: 'button', class: 'secondary', onclick: () => addRow() }, 'Add variable'), h('button', { type: 'submit' }, 'Save environment')));
    replace(env, form);
  }

  // The domains panel reads the domains with their certificate states
  // itself and keeps them fresh; a configuration change reloads it.
  let domainsStop = null;
  function renderDomains() {
    if (domainsStop) domainsStop.reload();
    else domainsStop = domainsPanel(domains, ui, name);
  }

  return () => { unsub(); logs.stop(); if (domainsStop) domainsStop(); };
}

// tabs renders a tab bar over panels: [id, label, panel, onShow, onHide].
function tabs(list) {
  const bar = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Application' });
  const show = (id) => {
    for (const [tid, , panel, onShow, onHide] of list) {
      const on = tid === id;
      const was = !panel.hidden;
      panel.hidden = !on;
      bar.querySelector(`[data-tab="${tid}"]`).setAttribute('aria-selected', String(on));
      if (on && !was && onShow) onShow();
      if (!on && was && onHide) onHide();
    }
  };
  for (const [id, label, panel] of list) {
    panel.setAttribute('role', 'tabpanel');
    bar.append(h('button', { type: 'button', role: 'tab', id: `tab-${id}`, dataset: { tab: id }, 'aria-selected': String(id === list[0][0]), onclick: () => show(id) }, label));
  }
  return bar;
}

// appAsOf shows the application as it was at log position at.
export function appAsOf(el, ui, name, at) {
  const body = h('div', { class: 'panel asof' }, h('p', { class: 'meta' }, 'Loading…'));
  replace(el, h('div', { class: 'toolbar' }, h('div', {}, h('h1', {}, `${name} as of position ${at}`),
    h('p', { class: 'sub' }, 'Rebuilt from the event log up to this position. ',
      h('a', { href: `#/apps/${enc(name)}` }, 'Back to the live application'), ' · ',
      h('a', { href: `#/audit?app=${enc(name)}` }, 'history')))),
  h('div', { class: 'actions' },
    at > 1 ? h('a', { class: 'button secondary', href: `#/apps/${enc(name)}/at/${at - 1}` }, '← previous position') : null,
    h('a', { class: 'button secondary', href: `#/apps/${enc(name)}/at/${at + 1}` }, 'next position →')),
  h('div', { class: 'mt' }, body));
  api('GET', `/apps/${enc(name)}?at=${at}`).then((a) => {
    const c = a.config;
    replace(body, h('dl', { class: 'kv' },
      h('dt', {}, 'Status'), h('dd', {}, badge(a.status)),
      h('dt', {}, 'Version'), h('dd', {}, String(a.stream_version)),
      h('dt', {}, 'Source'), h('dd', { class: 'mono' }, c.source.image || `${c.source.git_url || ''} ${c.source.git_ref || ''}`),
      h('dt', {}, 'Port'), h('dd', {}, String(c.runtime.port || '—')),
      h('dt', {}, 'Env'), h('dd', { class: 'mono' }, (c.env || []).map((e) => `${e.key}=${e.secret ? '••••' : e.value}`).join('  ') || '—'),
      h('dt', {}, 'Domains'), h('dd', {}, (c.domains || []).map((d) => d.host + (d.https ? ' (https)' : '')).join(', ') || '—'),
      h('dt', {}, 'Serving'), h('dd', { class: 'mono' }, a.serving_deployment_id || '—')),
    h('details', { class: 'mt' }, h('summary', {}, 'Raw state'), h('pre', { class: 'mono' }, JSON.stringify(a, null, 2))));
  }).catch((err) => replace(body, h('p', { class: 'form-error' }, err.message)));
}
