// Form helpers: labelled inputs that show the API's validation errors next
// to the field the 422 answer names.
import { h } from '../dom.js';

let seq = 0;

// field renders a labelled input; opts.field is the API's field name
// ("runtime.port"), opts.aliases other names the API may use for it.
export function field(label, opts = {}) {
  const id = `f${++seq}`;
  const { type = 'text', value = '', name, field: apiField, aliases = [], placeholder, options, required, hint, autocomplete } = opts;
  let input;
  if (options) {
    input = h('select', { id, name }, options.map(([v, l]) => h('option', { value: v, selected: v === value }, l)));
  } else {
    input = h('input', { id, name, type, value, placeholder, required, autocomplete: autocomplete || 'off', 'aria-describedby': `${id}-err` });
  }
  const err = h('div', { class: 'field-error', id: `${id}-err`, hidden: true });
  const wrap = h('div', { class: 'field', dataset: { field: [apiField || name, ...aliases].join(' ') } },
    h('label', { for: id }, label), input, hint ? h('div', { class: 'meta' }, hint) : null, err);
  wrap.input = input;
  return wrap;
}

export function checkbox(label, opts = {}) {
  const id = `f${++seq}`;
  const input = h('input', { id, type: 'checkbox', name: opts.name, checked: opts.checked });
  const wrap = h('div', { class: 'field', dataset: { field: opts.field || opts.name || '' } }, h('label', { class: 'check', for: id }, input, label),
    h('div', { class: 'field-error', hidden: true }));
  wrap.input = input;
  return wrap;
}

// clearErrors removes the errors shown in form.
export function clearErrors(form) {
  for (const e of form.querySelectorAll('.field-error')) { e.textContent = ''; e.hidden = true; }
  for (const i of form.querySelectorAll('[aria-invalid]')) i.removeAttribute('aria-invalid');
  const fe = form.querySelector('.form-error');
  if (fe) fe.textContent = '';
}

// showError puts err next to the input its field names, or at the form's
// foot when no input matches; it returns the input it marked, if any.
export function showError(form, err) {
  const f = err.field || '';
  let target = null;
  if (f) {
    const candidates = [...form.querySelectorAll('[data-field]')];
    const names = (el) => el.dataset.field.split(' ').filter(Boolean);
    target = candidates.find((el) => names(el).includes(f))
      || candidates.find((el) => names(el).some((n) => f.startsWith(n + '.') || f.startsWith(n + '[') || n.endsWith('.' + f)))
      || candidates.find((el) => names(el).some((n) => n.split('.').pop() === f.split('.').pop()));
  }
  if (target) {
    const box = target.querySelector('.field-error');
    // The message names the field ("runtime.port: must be …"); beside the
    // input the rule alone reads better.
    box.textContent = f && err.message.startsWith(f + ': ') ? err.message.slice(f.length + 2) : err.message;
    box.hidden = false;
    const input = target.querySelector('input, select, textarea');
    if (input) { input.setAttribute('aria-invalid', 'true'); input.focus(); }
    return input;
  }
  let fe = form.querySelector('.form-error');
  if (!fe) { fe = h('p', { class: 'form-error', role: 'alert' }); form.append(fe); }
  fe.textContent = err.message;
  return null;
}

// submitting disables form's buttons while fn runs and shows its error.
export async function submitting(form, fn) {
  clearErrors(form);
  const buttons = [...form.querySelectorAll('button')];
  for (const b of buttons) b.disabled = true;
  try {
    return await fn();
  } catch (err) {
    showError(form, err);
    return undefined;
  } finally {
    for (const b of buttons) b.disabled = false;
  }
}
