// Login: posts the credentials to the session endpoint, then returns to
// the page that needed them.
import { h, replace } from '../dom.js';
import { api, setCSRF } from '../api.js';

export function loginView(el, ui) {
  const err = h('p', { class: 'form-error', role: 'alert' });
  const user = h('input', { id: 'login-user', name: 'email', type: 'email', autocomplete: 'username', required: true });
  const pass = h('input', { id: 'login-pass', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const form = h('form', { class: 'panel login', onsubmit: async (e) => {
    e.preventDefault();
    err.textContent = '';
    try {
      const res = await api('POST', '/login', { email: user.value, password: pass.value });
      if (res && res.csrf_token) setCSRF(res.csrf_token);
      const back = sessionStorage.getItem('berth:after-login') || '#/';
      sessionStorage.removeItem('berth:after-login');
      location.hash = back;
      location.reload();
    } catch (e2) {
      err.textContent = e2.message;
    }
  } },
  h('h1', {}, 'Sign in to berth'),
  h('div', {}, h('label', { for: 'login-user' }, 'Email'), user),
  h('div', { class: 'mt' }, h('label', { for: 'login-pass' }, 'Password'), pass),
  err,
  h('div', { class: 'actions mt' }, h('button', { type: 'submit' }, 'Sign in')));
  replace(el, form);
  user.focus();
}
