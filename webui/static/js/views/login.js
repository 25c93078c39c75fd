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
      await ui.signedIn(back);
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

// setupView creates the first administrator with the one-time token of
// the setup link berth serve logs on its first start.
export function setupView(el, ui, token) {
  const err = h('p', { class: 'form-error', role: 'alert' });
  const email = h('input', { id: 'setup-email', name: 'email', type: 'email', autocomplete: 'username', required: true });
  const pass = h('input', { id: 'setup-pass', name: 'password', type: 'password', autocomplete: 'new-password', required: true, minlength: 12 });
  const again = h('input', { id: 'setup-again', name: 'again', type: 'password', autocomplete: 'new-password', required: true });
  const form = h('form', { class: 'panel login', onsubmit: async (e) => {
    e.preventDefault();
    err.textContent = '';
    if (pass.value !== again.value) { err.textContent = 'The passwords differ.'; return; }
    try {
      await api('POST', '/setup', { token, email: email.value, password: pass.value });
      const res = await api('POST', '/login', { email: email.value, password: pass.value });
      if (res && res.csrf_token) setCSRF(res.csrf_token);
      await ui.signedIn('#/');
    } catch (e2) {
      err.textContent = e2.message;
    }
  } },
  h('h1', {}, 'Set up berth'),
  h('p', { class: 'meta' }, 'Create the first administrator. This link works once.'),
  h('div', {}, h('label', { for: 'setup-email' }, 'Email'), email),
  h('div', { class: 'mt' }, h('label', { for: 'setup-pass' }, 'Password (12 characters or more)'), pass),
  h('div', { class: 'mt' }, h('label', { for: 'setup-again' }, 'Password again'), again),
  err,
  h('div', { class: 'actions mt' }, h('button', { type: 'submit' }, 'Create administrator')));
  replace(el, form);
  email.focus();
}
