// Dashboard: projects and their applications with live status badges and
// the current deployment's progress.
import { h, replace, badge, isActive, progress, ago, source, short } from '../dom.js';
import { api, enc } from '../api.js';
import { field, submitting } from './forms.js';

export function dashboard(el, ui) {
  const state = { projects: new Map(), apps: new Map(), deployments: new Map(), loaded: false };
  const list = h('div', { id: 'projects' }, h('p', { class: 'meta' }, 'Loading…'));
  const createPanel = newAppForm(ui, state);
  replace(el,
    h('div', { class: 'toolbar' },
      h('div', {}, h('h1', {}, 'Applications'), h('p', { class: 'sub' }, 'Everything below updates live from the event log.')),
      h('div', { class: 'actions' },
        h('button', { type: 'button', id: 'new-app', class: 'write', onclick: () => { createPanel.hidden = !createPanel.hidden; if (!createPanel.hidden) createPanel.querySelector('input').focus(); } }, 'New application'))),
    createPanel, list);

  // keep merges a row unless the one held is newer.
  const keep = (map, key, row) => {
    const old = map.get(key);
    if (!old || (row.position || 0) >= (old.position || 0)) map.set(key, row);
  };

  const unsub = ui.live.subscribe('apps', (m) => {
    if (m.op === 'error') { ui.toast(m.error, 'error'); return; }
    const d = m.data || {};
    if (m.snapshot) { state.projects.clear(); state.apps.clear(); state.deployments.clear(); }
    for (const p of d.projects || []) keep(state.projects, p.name, p);
    for (const a of d.apps || []) {
      if (a.status === 'deleted') state.apps.delete(a.name);
      else keep(state.apps, a.name, a);
    }
    for (const name of d.removed || []) state.apps.delete(name);
    for (const dep of d.deployments || []) keep(state.deployments, dep.id, dep);
    state.loaded = true;
    render();
    createPanel.refreshProjects();
  });

  function render() {
    if (!state.loaded) return;
    const byProject = new Map([...state.projects.keys()].sort().map((p) => [p, []]));
    for (const a of [...state.apps.values()].sort((x, y) => x.name.localeCompare(y.name))) {
      if (!byProject.has(a.project)) byProject.set(a.project, []);
      byProject.get(a.project).push(a);
    }
    if (byProject.size === 0) {
      replace(list, h('div', { class: 'empty' }, 'No projects yet. Create an application to start.'));
      return;
    }
    replace(list, [...byProject].map(([project, apps]) => h('section', { class: 'project', 'aria-label': `Project ${project}` },
      h('h2', {}, project, h('span', { class: 'meta' }, `${apps.length} application${apps.length === 1 ? '' : 's'}`),
        h('button', { type: 'button', class: 'link write', dataset: { deleteProject: project }, onclick: () => deleteProject(project, apps) }, 'Delete project')),
      apps.length === 0 ? h('div', { class: 'empty' }, 'No applications in this project.')
        : h('div', { class: 'grid' }, apps.map(card)))));
  }

  // deleteProject deletes a project after a confirmation that names the
  // applications deleted with it.
  async function deleteProject(project, apps) {
    const names = apps.map((a) => a.name);
    const text = names.length
      ? `Delete project ${project} and its applications ${names.join(', ')}? Their containers and routes are removed; the history stays in the log.`
      : `Delete project ${project}? Its history stays in the log and its name can be used again.`;
    if (!await ui.confirm(text, 'Delete')) return;
    try {
      await api('DELETE', `/projects/${enc(project)}${names.length ? '?cascade=true' : ''}`);
      state.projects.delete(project);
      for (const n of names) state.apps.delete(n);
      render();
      ui.toast(`Project ${project} deleted`);
    } catch (err) {
      ui.toast(`Delete project: ${err.message}`, 'error');
    }
  }

  function card(a) {
    const d = a.current_deployment_id ? state.deployments.get(a.current_deployment_id) : null;
    const u = appURL(a);
    return h('div', { class: 'panel card', dataset: { app: a.name } },
      h('h3', {}, h('a', { class: 'card-link', href: `#/apps/${enc(a.name)}` }, a.name), badge(a.status)),
      u ? h('a', { class: 'app-url mono', href: u, target: '_blank', rel: 'noopener noreferrer', title: `Open ${u}` }, u.replace(/^https?:\/\//, ''))
        : h('div', { class: 'meta' }, 'No domain yet'),
      h('div', { class: 'meta mono' }, source(a)),
      d && isActive(d) ? [
        h('div', { class: 'progress', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': Math.round(progress(d) * 100),
          'aria-label': `Deployment ${short(d.id)} progress` }, bar(progress(d))),
        h('div', { class: 'meta' }, `Deployment ${short(d.id)}: ${d.step.replace('_', ' ')}` + (d.queue_position ? ` (#${d.queue_position} in queue)` : '')),
      ] : h('div', { class: 'meta' }, d ? `Last deployment ${short(d.id)} ${d.status} ${ago(d.finished_at || d.requested_at)}` : `Updated ${ago(a.updated_at)}`));
  }

  return unsub;
}

// appURL is where an application is served: its first domain.
export function appURL(a) {
  const d = ((a.config && a.config.domains) || [])[0];
  if (!d || !d.host) return '';
  return `${d.https ? 'https' : 'http'}://${d.host}${d.path_prefix || ''}`;
}

function bar(fraction) {
  const s = h('span');
  s.style.width = `${Math.round(fraction * 100)}%`;
  return s;
}

function newAppForm(ui, state) {
  const project = field('Project', { name: 'project', field: 'project', placeholder: 'default', autocomplete: 'off' });
  project.input.setAttribute('list', 'project-names');
  const names = h('datalist', { id: 'project-names' });
  const name = field('Application name', { name: 'name', field: 'name', placeholder: 'web', required: true });
  const kind = field('Source', { name: 'kind', options: [['image', 'Docker image'], ['git', 'Git repository'], ['compose', 'Compose file']], value: 'image' });
  const image = field('Image', { name: 'image', field: 'source.image', placeholder: 'nginx:1.27' });
  const gitURL = field('Git URL', { name: 'git_url', field: 'source.git_url', placeholder: 'https://example.com/repo.git' });
  const gitRef = field('Branch, tag or commit', { name: 'git_ref', field: 'source.git_ref', placeholder: 'main' });
  const port = field('Container port', { name: 'port', field: 'runtime.port', type: 'number', placeholder: '8080' });
  // A compose stack: the file pasted, or its path in the git repository.
  const composeInput = h('textarea', { id: 'compose-file', name: 'compose_file', rows: 10, spellcheck: 'false', placeholder: 'services:\n  web:\n    image: nginx:1.27' });
  const compose = h('div', { class: 'field', dataset: { field: 'source.compose' } }, h('label', { for: 'compose-file' }, 'Compose file'), composeInput,
    h('div', { class: 'meta' }, 'Or leave it empty and give the file\'s path in the Git repository below. ${VAR} resolves from the stack\'s env and secrets.'),
    h('div', { class: 'field-error', hidden: true }));
  const composePath = field('Compose file path', { name: 'compose_path', field: 'source.compose.path', placeholder: 'compose.yaml (in the Git repository)' });
  const sync = () => {
    const k = kind.input.value;
    image.hidden = k !== 'image'; port.hidden = k === 'compose';
    gitURL.hidden = k === 'image'; gitRef.hidden = k === 'image';
    compose.hidden = k !== 'compose'; composePath.hidden = k !== 'compose';
  };
  kind.input.addEventListener('change', sync);
  sync();
  const form = h('form', { class: 'panel', id: 'new-app-form', hidden: true, 'aria-label': 'New application', onsubmit: (e) => {
    e.preventDefault();
    submitting(form, async () => {
      const p = project.input.value.trim() || 'default';
      if (!state.projects.has(p)) {
        try {
          await api('POST', '/projects', { name: p });
        } catch (err) {
          if (err.status !== 409) { err.field = 'project'; throw err; }
        }
      }
      const body = { project: p, name: name.input.value.trim(), source: {}, runtime: {} };
      if (kind.input.value === 'compose') {
        if (composeInput.value.trim()) {
          body.source.compose = { file: composeInput.value };
        } else {
          body.source.compose = { path: composePath.input.value.trim() };
          body.source.git_url = gitURL.input.value.trim();
          if (gitRef.input.value.trim()) body.source.git_ref = gitRef.input.value.trim();
        }
      } else if (kind.input.value === 'git') {
        body.source.git_url = gitURL.input.value.trim();
        if (gitRef.input.value.trim()) body.source.git_ref = gitRef.input.value.trim();
      } else {
        body.source.image = image.input.value.trim();
      }
      if (port.input.value && kind.input.value !== 'compose') body.runtime.port = Number(port.input.value);
      try {
        await api('POST', '/apps', body);
      } catch (err) {
        // A refused compose key names the service and the key: keep them
        // in the message shown beside the file.
        if ((err.field || '').startsWith('source.compose.services.')) err.message = err.message.replace(/^source\.compose\./, '');
        throw err;
      }
      ui.go(`#/apps/${enc(body.name)}`);
    });
  } },
  h('h2', {}, 'New application'),
  h('div', { class: 'row' }, project, name, kind),
  h('div', { class: 'row' }, image, gitURL, gitRef, port),
  h('div', { class: 'row' }, compose, composePath),
  names,
  h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create'),
    h('button', { type: 'button', class: 'secondary', onclick: () => { form.hidden = true; } }, 'Close')));
  form.refreshProjects = () => replace(names, [...state.projects.keys()].map((p) => h('option', { value: p })));
  return form;
}
