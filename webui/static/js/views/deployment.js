// Deployment page: status and steps live, and the build log streaming
// line by line until it ends with the final status.
import { h, replace, badge, isActive, depStatus, when, duration, short, actorName, FINAL } from '../dom.js';
import { api, enc } from '../api.js';
import { explainFailure } from './explain.js';

export function deploymentView(el, ui, id) {
  let dep = null;
  let lastSeq = 0;
  const head = h('div', { class: 'toolbar' }, h('h1', {}, `Deployment ${short(id)}`));
  const info = h('section', { class: 'panel', 'aria-label': 'Deployment' });
  const log = h('pre', { class: 'log', id: 'build-log', tabindex: 0, 'aria-label': 'Build log', 'aria-live': 'off' });
  const final = h('div', { id: 'final', role: 'status' });
  const lines = h('span', { class: 'meta', id: 'line-count' }, '0 lines');
  replace(el, head, h('div', { class: 'cols' },
    h('section', { class: 'panel', 'aria-label': 'Build log' }, h('div', { class: 'toolbar' }, h('h2', {}, 'Build log'), lines), log, final),
    info));

  // The application's port, for explaining a failed health check.
  let port = null;
  let askedPort = false;
  const renderFinal = () => {
    if (!dep || !FINAL.includes(dep.status)) { final.replaceChildren(); return; }
    final.className = 'final';
    final.dataset.status = dep.status;
    const why = explainFailure(dep, port);
    if (why && !askedPort) {
      askedPort = true;
      api('GET', `/apps/${enc(dep.app)}`).then((a) => { port = (a.config.runtime || {}).port; renderFinal(); }).catch(() => {});
    }
    replace(final, h('div', { id: 'final-cause' }, `Deployment ${dep.status}` + (why ? `: ${why}` : '') +
      (dep.duration_ms ? ` after ${duration(dep.duration_ms)}` : '') + '.'),
    dep.failure_reason ? h('details', {}, h('summary', {}, 'Technical reason'), h('p', { class: 'mono' }, `${dep.failed_step}: ${dep.failure_reason}`)) : null);
  };

  function render() {
    const d = dep;
    replace(head, h('div', {}, h('h1', {}, `Deployment ${short(d.id)} `, badge(depStatus(d), { deployment: true })),
      h('p', { class: 'sub' }, 'of ', h('a', { href: `#/apps/${enc(d.app)}` }, d.app), ` · requested ${when(d.requested_at)} by ${actorName(d.actor)}`)),
    h('div', { class: 'actions' }, isActive(d) ? h('button', { type: 'button', id: 'cancel', class: 'secondary write', onclick: async () => {
      if (!await ui.confirm(`Cancel deployment ${short(d.id)}?`, 'Cancel deployment')) return;
      try { await api('POST', `/deployments/${enc(d.id)}/cancel`, { reason: 'cancelled from the UI' }); } catch (err) { ui.toast(err.message, 'error'); }
    } }, 'Cancel deployment') : null,
    d.correlation_id ? h('a', { class: 'button secondary', href: `#/audit?correlation=${enc(d.correlation_id)}` }, 'Follow correlation') : null));
    replace(info, h('h2', {}, 'Details'), h('dl', { class: 'kv' },
      h('dt', {}, 'Status'), h('dd', {}, d.status, d.queue_position ? ` (${queueText(d.queue_position)})` : ''),
      h('dt', {}, 'Step'), h('dd', {}, d.step),
      h('dt', {}, 'Trigger'), h('dd', {}, d.trigger.kind + (d.trigger.detail ? `: ${d.trigger.detail}` : '')),
      h('dt', {}, 'Commit'), h('dd', { class: 'mono' }, d.commit_sha || d.ref || '—'),
      h('dt', {}, 'Image'), h('dd', { class: 'mono' }, d.image_id ? d.image_id.slice(0, 19) : '—'),
      h('dt', {}, 'Attempts'), h('dd', {}, String(d.attempts)),
      h('dt', {}, 'Duration'), h('dd', {}, duration(d.duration_ms))),
    h('h3', { class: 'meta mt' }, 'Steps'),
    h('ol', { id: 'steps' }, (d.steps || []).map((s) => h('li', {}, `${s.name.replace('_', ' ')} `, h('span', { class: 'meta' }, `${duration(s.duration_ms)} · ${when(s.at)}`)))));
    renderFinal();
  }

  const unDep = ui.live.subscribe(`deployment:${id}`, (m) => {
    if (m.op === 'error') { replace(info, h('p', { class: 'form-error' }, m.error)); return; }
    const d = m.data && m.data.deployment;
    if (d && (!dep || (d.position || 0) >= (dep.position || 0))) { dep = d; render(); }
  });

  const unLog = ui.live.subscribe(`log:${id}`, (m) => {
    if (m.op === 'error') { log.append(h('span', { class: 'meta' }, `(${m.error})\n`)); return; }
    if (m.op === 'end') {
      const d = m.data && m.data.deployment;
      if (d && (!dep || (d.position || 0) >= (dep.position || 0))) { dep = d; render(); }
      log.append(h('span', { class: 'meta' }, '— end of log —\n'));
      return;
    }
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    const frag = document.createDocumentFragment();
    for (const l of (m.data && m.data.lines) || []) {
      if (l.seq <= lastSeq) continue; // a resubscription may repeat lines
      lastSeq = l.seq;
      frag.append(h('span', { class: l.stream === 'stderr' ? 'stderr' : null, dataset: { seq: l.seq } },
        h('span', { class: 'seq' }, String(l.seq)), l.line, '\n'));
    }
    log.append(frag);
    lines.textContent = `${lastSeq} line${lastSeq === 1 ? '' : 's'}`;
    if (atBottom) log.scrollTop = log.scrollHeight;
  });

  return () => { unDep(); unLog(); };
}

// queueText says where a waiting deployment is in the deploy queue.
export function queueText(n) { return n === 1 ? 'next in the deploy queue' : `${n - 1} ahead of it in the deploy queue`; }
