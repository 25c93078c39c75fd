// Small DOM helpers. Every user-supplied value reaches the page as text
// (textContent or attribute values), never as HTML.

// h builds an element: h('a', {href: '#/', class: 'x', onclick: fn}, 'text', child…).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// replace swaps el's children for children.
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// STATUS_LABELS are what the badges say.
const STATUS_LABELS = { running: 'healthy · running' };

// badge renders a status badge; active statuses pulse.
export function badge(status, { deployment = false } = {}) {
  const s = status || 'unknown';
  const active = ['queued', 'building', 'deploying', 'requested', 'cancelling'].includes(s) || (deployment && s === 'running');
  const data = deployment && s === 'running' ? 'running-deploy' : s;
  const label = deployment && s === 'running' ? 'in progress' : (STATUS_LABELS[s] || s.replace('_', ' '));
  return h('span', { class: 'badge' + (active ? ' pulse' : ''), dataset: { status: data } }, label);
}

// STEPS are a deployment's steps in order.
export const STEPS = ['requested', 'queued', 'started', 'source_fetched', 'image_built', 'container_started',
  'health_passed', 'traffic_switched', 'previous_stopped', 'succeeded'];

export const FINAL = ['succeeded', 'failed', 'cancelled', 'interrupted', 'dead_lettered'];

export function isActive(d) { return d && !FINAL.includes(d.status); }

// depStatus is what a deployment's badge shows: "cancelling" between the
// cancel request and the deployer's answer.
export function depStatus(d) { return d.cancel_requested && isActive(d) ? 'cancelling' : d.status; }

// progress is how far a deployment got, 0..1.
export function progress(d) {
  const i = STEPS.indexOf(d.step);
  return i < 0 ? 0 : (i + 1) / STEPS.length;
}

export function ago(t) {
  if (!t) return '';
  const s = Math.round((Date.now() - new Date(t).getTime()) / 1000);
  if (s < 5) return 'just now';
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return new Date(t).toLocaleString();
}

export function when(t) { return t ? new Date(t).toLocaleString() : ''; }

export function duration(ms) {
  if (!ms && ms !== 0) return '';
  if (ms < 1000) return `${ms} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  return `${Math.floor(s / 60)}m ${Math.round(s % 60)}s`;
}

export function short(id) { return id ? String(id).slice(0, 8) : ''; }

export function actorName(a) {
  if (!a) return '';
  return a.name || a.id ? `${a.kind}:${a.name || a.id}` : a.kind;
}

export function source(app) {
  const s = (app.config && app.config.source) || {};
  if (s.compose) return s.git_url ? `compose ${s.compose.path} in ${s.git_url}${s.git_ref ? ' @ ' + s.git_ref : ''}` : `compose stack · ${(s.compose.services || []).join(', ')}`;
  if (s.image) return s.image;
  if (s.git_url) return s.git_url + (s.git_ref ? ` @ ${s.git_ref}` : '');
  return 'no source';
}
