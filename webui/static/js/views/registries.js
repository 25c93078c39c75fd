// Image registries: where berth pulls image sources from and pushes built
// images to, with their credentials. A password is sent once, sealed, and
// never shown again: the list only says whether one is kept, and changing
// a registry keeps it unless a new one is typed. Admin only; the API
// refuses other roles whatever the page shows.
import { h, replace } from '../dom.js';
import { api, enc } from '../api.js';
import { field, submitting } from './forms.js';

export function registriesView(el, ui) {
  const list = h('div', { class: 'table-wrap' }, h('p', { class: 'meta' }, 'Loading…'));
  const name = field('Name', { name: 'name', field: 'name', required: true, placeholder: 'team' });
  const address = field('Address', { name: 'address', field: 'address', required: true, placeholder: 'registry.example.com:5000', hint: 'The host (and port) image references name; no scheme, no path.' });
  const user = field('User name (empty: anonymous)', { name: 'username', field: 'username', autocomplete: 'off' });
  const pass = field('Password or token', { name: 'password', field: 'password', type: 'password', autocomplete: 'new-password', hint: 'Sealed before it is recorded; never shown again.' });
  const form = h('form', { class: 'panel', id: 'registry-form', 'aria-label': 'Add a registry', onsubmit: (e) => {
    e.preventDefault();
    submitting(form, async () => {
      const body = { name: name.input.value.trim(), address: address.input.value.trim() };
      if (user.input.value.trim()) body.username = user.input.value.trim();
      if (pass.input.value) body.password = pass.input.value;
      await api('POST', '/registries', body);
      ui.toast(`Registry ${body.name} added`);
      form.reset();
      await load();
    });
  } }, h('h2', {}, 'Add a registry'), h('div', { class: 'row' }, name, address), h('div', { class: 'row' }, user, pass),
  h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Add registry')));
  replace(el, h('div', { class: 'toolbar' }, h('div', {}, h('h1', {}, 'Registries'),
    h('p', { class: 'sub' }, 'Registries berth pulls images from and pushes built images to. Credentials are sealed like secrets.'))),
  h('div', { class: 'stack' }, h('section', { class: 'panel', 'aria-label': 'Registries' }, h('h2', {}, 'Registries'), list), form));

  // changeForm edits one registry in place: address and user name filled
  // in, the password empty (typing one replaces the sealed one).
  function changeForm(r, row) {
    const addr = field('Address', { name: 'address', field: 'address', value: r.address, required: true });
    const u = field('User name (empty: anonymous)', { name: 'username', field: 'username', value: r.username || '' });
    const p = field(r.has_password ? 'New password (empty: keep the current one)' : 'Password or token', { name: 'password', field: 'password', type: 'password', autocomplete: 'new-password' });
    const f = h('form', { class: 'change-form', 'aria-label': `Change ${r.name}`, onsubmit: (e) => {
      e.preventDefault();
      submitting(f, async () => {
        const body = {};
        if (addr.input.value.trim() !== r.address) body.address = addr.input.value.trim();
        if (u.input.value.trim() !== (r.username || '')) body.username = u.input.value.trim();
        if (p.input.value) body.password = p.input.value;
        const res = await api('PATCH', `/registries/${enc(r.name)}`, body);
        ui.toast(res && res.changed === false ? `Registry ${r.name} unchanged` : `Registry ${r.name} changed`);
        await load();
      });
    } }, h('div', { class: 'row' }, addr, u, p), h('div', { class: 'actions' },
      h('button', { type: 'submit' }, 'Save'),
      h('button', { type: 'button', class: 'secondary', onclick: () => load() }, 'Cancel')));
    replace(row, h('td', { colspan: 4 }, h('strong', {}, r.name), f));
    addr.input.focus();
  }

  async function load() {
    let registries;
    try { ({ registries } = await api('GET', '/registries')); } catch (err) { replace(list, h('p', { class: 'form-error' }, err.message)); return; }
    if (!registries.length) { replace(list, h('p', { class: 'empty' }, 'No registries yet: images are pulled anonymously.')); return; }
    replace(list, h('table', { id: 'registries' },
      h('thead', {}, h('tr', {}, ['Name', 'Address', 'Credentials', ''].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, registries.map((r) => {
        const row = h('tr', { dataset: { registry: r.name } },
          h('td', {}, r.name),
          h('td', { class: 'mono' }, r.address),
          h('td', { class: 'credentials' }, r.username ? `${r.username} · ${r.has_password ? 'password kept (sealed)' : 'no password'}` : 'anonymous'),
          h('td', {}, h('div', { class: 'actions' },
            h('button', { type: 'button', class: 'link change', onclick: () => changeForm(r, row) }, 'Change'),
            h('button', { type: 'button', class: 'link danger-text remove', onclick: async () => {
              if (!await ui.confirm(`Remove the registry ${r.name}? Images from ${r.address} are then pulled anonymously.`, 'Remove')) return;
              try { await api('DELETE', `/registries/${enc(r.name)}`); ui.toast(`Registry ${r.name} removed`); } catch (err) { ui.toast(err.message, 'error'); }
              await load();
            } }, 'Remove'))));
        return row;
      }))));
  }
  load();
}
