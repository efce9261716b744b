// Form helpers: labelled fields with an error line each (#<id>-error), and showing an
// API error beside its fields (`fields`) or as the form's alert.

import { h, replace } from './dom.js';

/** A labelled input with its hint and error line; `id` is also the API field name unless `name`. */
export function field({ id, label, type = 'text', autocomplete, hint, required = true, attrs = {} }) {
  const errorId = `${id}-error`;
  const hintId = hint ? `${id}-hint` : null;
  const input = h('input', {
    id, name: id, type, autocomplete, required,
    'aria-describedby': [hintId, errorId].filter(Boolean).join(' '),
    ...attrs,
  });
  return h('div', { class: 'field' },
    h('label', { for: id }, label),
    hint ? h('p', { id: hintId, class: 'hint' }, hint) : null,
    input,
    h('p', { id: errorId, class: 'field-error', 'aria-live': 'polite' }));
}

/** Clears every field error and the form alert. */
export function clearErrors(form) {
  for (const el of form.querySelectorAll('.field-error')) el.textContent = '';
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  const alertBox = form.querySelector('.form-alert');
  if (alertBox) replace(alertBox);
}

/** Shows one message beside a field. */
export function fieldError(form, id, message) {
  const input = form.querySelector(`#${CSS.escape(id)}`);
  const line = form.querySelector(`#${CSS.escape(id)}-error`);
  if (!input || !line) return false;
  const label = form.querySelector(`label[for="${CSS.escape(id)}"]`);
  line.textContent = `${label ? label.textContent : id}: ${message}`;
  input.setAttribute('aria-invalid', 'true');
  return true;
}

/**
 * Shows an ApiError: each `fields` entry beside its input (names mapped by `fieldIds`), the
 * rest, and the summary, in the form's alert (role=alert). Focuses the first invalid field.
 */
export function showError(form, err, fieldIds = {}) {
  const leftovers = [];
  for (const [name, message] of Object.entries(err.fields || {})) {
    if (!fieldError(form, fieldIds[name] || name, message)) leftovers.push(`${name}: ${message}`);
  }
  const alertBox = form.querySelector('.form-alert');
  replace(alertBox, h('p', { role: 'alert', class: 'alert' }, [err.message, ...leftovers].join(' — ')));
  const invalid = form.querySelector('[aria-invalid=true]');
  if (invalid) invalid.focus();
}

/** The empty container showForm's alert goes in. */
export function alertBox() {
  return h('div', { class: 'form-alert' });
}
