// Notifications: channels (a service URL, rules, projects), each with a
// test button and its recent deliveries; a form to add one. URLs carry
// credentials: they are sent once and never shown again.
import { h, replace, when, duration } from '../dom.js';
import { api, enc } from '../api.js';
import { field, checkbox, clearErrors, showError } from './forms.js';

const EXAMPLES = {
  slack: 'slack://hook:TOKEN@webhook', discord: 'discord://token@webhookid', telegram: 'telegram://token@telegram?chats=@channel',
  teams: 'teams://group@tenant/altId/groupOwner?host=org.webhook.office.com', mattermost: 'mattermost://chat.example.com/token',
  smtp: 'smtp://user:password@mail.example.com:587/?from=berth@example.com&to=ops@example.com', gotify: 'gotify://gotify.example.com/Atoken',
  ntfy: 'ntfy://ntfy.sh/berth-alerts', pushover: 'pushover://shoutrrr:apitoken@userkey/', matrix: 'matrix://user:password@matrix.example.com/?rooms=!room:example.com',
  generic: 'generic://hooks.example.com/path',
};

export function notificationsView(el, ui) {
  const list = h('div', { class: 'stack' }, h('p', { class: 'meta' }, 'Loading…'));
  const form = h('form', { class: 'panel write', 'aria-label': 'Add a channel' });
  replace(el,
    h('div', { class: 'toolbar' }, h('div', {}, h('h1', {}, 'Notifications'),
      h('p', { class: 'sub' }, 'Channels told about deployments and thresholds. Each channel is sent from the log with retries; its URL is sealed.'))),
    h('div', { class: 'cols' }, list, form));

  let rules = [];
  async function load() {
    try {
      const [r, c] = await Promise.all([api('GET', '/notifications/rules'), api('GET', '/notifications/channels')]);
      rules = r.rules;
      if (!form.childElementCount) buildForm(r);
      replace(list, c.channels.length ? c.channels.map(card) : h('p', { class: 'empty' }, 'No channels yet.'));
    } catch (err) {
      replace(list, h('p', { class: 'form-error' }, err.message));
    }
  }

  function card(ch) {
    const deliveries = h('div', {});
    const showDeliveries = async () => {
      const { deliveries: ds } = await api('GET', `/notifications/channels/${enc(ch.id)}/deliveries?limit=10`);
      replace(deliveries, ds.length ? h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'When'), h('th', {}, 'Event'), h('th', {}, 'Outcome'), h('th', {}, 'Took'))),
        h('tbody', {}, ds.map((d) => h('tr', {},
          h('td', {}, when(d.attempted_at)),
          h('td', {}, d.event_type === 'test' ? 'test message' : `${d.event_type} #${d.position}`),
          h('td', {}, h('span', { class: 'badge', dataset: { status: d.outcome === 'sent' ? 'succeeded' : d.outcome === 'failed' ? 'failed' : 'queued' } }, d.outcome),
            d.error ? h('div', { class: 'meta' }, d.error) : null),
          h('td', {}, duration(d.duration_ms))))))
        : h('p', { class: 'meta' }, 'Nothing sent yet.'));
    };
    showDeliveries().catch(() => {});
    return h('section', { class: 'panel', dataset: { channel: ch.id } },
      h('h2', {}, ch.name, ' ', h('span', { class: 'meta' }, `${ch.service}${ch.target ? ' · ' + ch.target : ''}`)),
      h('p', {}, 'Rules: ', ch.rules.join(', '), ch.projects.length ? ` · projects: ${ch.projects.join(', ')}` : ' · all projects'),
      h('div', { class: 'actions write' },
        h('button', { type: 'button', class: 'secondary', onclick: async (e) => {
          e.target.disabled = true;
          try {
            const a = await api('POST', `/notifications/channels/${enc(ch.id)}/test`);
            ui.toast(a.outcome === 'sent' ? `Test message sent to ${ch.name}.` : `Test failed: ${a.error}`, a.outcome === 'sent' ? 'info' : 'error');
            await showDeliveries();
          } catch (err) { ui.toast(err.message, 'error'); } finally { e.target.disabled = false; }
        } }, 'Send test'),
        h('button', { type: 'button', class: 'danger', onclick: async () => {
          if (!(await ui.confirm(`Delete the channel ${ch.name}? Nothing more will be sent to it.`, 'Delete'))) return;
          try { await api('DELETE', `/notifications/channels/${enc(ch.id)}`); await load(); } catch (err) { ui.toast(err.message, 'error'); }
        } }, 'Delete')),
      h('h3', { class: 'meta' }, 'Recent deliveries'), deliveries);
  }

  function buildForm(r) {
    const name = field('Name', { name: 'name', placeholder: 'ops' });
    const service = field('Service', { name: 'service', options: r.services.map((s) => [s, s]) });
    const url = field('URL', { name: 'url', placeholder: EXAMPLES.slack, hint: 'Holds the credentials; sealed, never shown again.' });
    service.input.addEventListener('change', () => { url.input.placeholder = EXAMPLES[service.input.value] || ''; });
    const boxes = r.rules.map((rule) => {
      const label = rule.name + (rule.event_types.length ? '' : ' (once berth records it)');
      const c = checkbox(label, { name: rule.name, field: 'rules', checked: rule.name === 'deployment.failed' });
      c.rule = rule.name;
      return c;
    });
    const projects = field('Projects (comma-separated; empty: all)', { name: 'projects', field: 'projects' });
    replace(form, h('h2', {}, 'Add a channel'), name, service, url,
      h('fieldset', { class: 'field', dataset: { field: 'rules' } }, h('legend', {}, 'Tell about'), boxes, h('div', { class: 'field-error', hidden: true })),
      projects, h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Add channel')));
    form.onsubmit = async (e) => {
      e.preventDefault();
      clearErrors(form);
      const body = {
        name: name.input.value.trim(), url: url.input.value.trim(),
        rules: boxes.filter((b) => b.input.checked).map((b) => b.rule),
        projects: projects.input.value.split(',').map((p) => p.trim()).filter(Boolean),
      };
      try {
        await api('POST', '/notifications/channels', body);
        url.input.value = ''; name.input.value = '';
        ui.toast(`Channel ${body.name} added.`);
        await load();
      } catch (err) { showError(form, err); }
    };
  }
  load();
  const timer = setInterval(load, 15000);
  return () => clearInterval(timer);
}
