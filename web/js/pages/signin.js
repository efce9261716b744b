// Sign-in and registration pages: labelled forms, the API's messages beside the fields or as
// an alert; a successful sign-in (or registration, which signs in) goes to the portfolio.

import { h } from '../dom.js';
import * as api from '../api.js';
import * as session from '../session.js';
import { field, clearErrors, fieldError, showError, alertBox } from '../forms.js';

const PASSWORD_MIN = 12; // the API's rule, checked here too to spare a round trip
const PASSWORD_MAX = 128;

async function signInWith(email, password) {
  const { token } = await api.post('/api/users/login', { email, password });
  session.setToken(token);
  location.hash = '#/portfolio';
}

function submitting(form, busy, label) {
  const button = form.querySelector('button[type=submit]');
  button.disabled = busy;
  button.textContent = busy ? `${label}…` : label;
  form.setAttribute('aria-busy', String(busy));
}

export function renderSignIn(main, _params, ctx) {
  const flash = session.flash();
  ctx.onLeave(() => session.clearFlash());
  const form = h('form', { novalidate: true, class: 'card narrow', 'aria-labelledby': 'signin-title' },
    alertBox(),
    field({ id: 'email', label: 'Email', type: 'email', autocomplete: 'email' }),
    field({ id: 'password', label: 'Password', type: 'password', autocomplete: 'current-password' }),
    h('button', { type: 'submit', class: 'primary' }, 'Sign in'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (form.getAttribute('aria-busy') === 'true') return;
    clearErrors(form);
    submitting(form, true, 'Sign in');
    try {
      await signInWith(form.elements.email.value.trim(), form.elements.password.value);
    } catch (err) {
      const retry = err.status === 429 ? ' Too many attempts: wait a little before trying again.' : '';
      if (retry) err.message += retry;
      showError(form, err);
    } finally {
      if (ctx.alive) submitting(form, false, 'Sign in');
    }
  });
  main.append(
    h('h1', { id: 'signin-title' }, 'Sign in'),
    flash ? h('p', { class: 'alert', role: 'alert' }, flash) : null,
    form,
    h('p', {}, 'No account yet? ', h('a', { href: '#/register' }, 'Register')));
}

export function renderRegister(main, _params, ctx) {
  const form = h('form', { novalidate: true, class: 'card narrow', 'aria-labelledby': 'register-title' },
    alertBox(),
    field({ id: 'name', label: 'Name', autocomplete: 'name' }),
    field({ id: 'email', label: 'Email', type: 'email', autocomplete: 'email' }),
    field({ id: 'password', label: 'Password', type: 'password', autocomplete: 'new-password',
      hint: `${PASSWORD_MIN} to ${PASSWORD_MAX} characters; not easy to guess, and without your name or email.` }),
    h('button', { type: 'submit', class: 'primary' }, 'Register'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (form.getAttribute('aria-busy') === 'true') return;
    clearErrors(form);
    const body = { name: form.elements.namedItem('name').value.trim(), email: form.elements.email.value.trim(), password: form.elements.password.value };
    if (body.password.length < PASSWORD_MIN || body.password.length > PASSWORD_MAX) {
      fieldError(form, 'password', `must be ${PASSWORD_MIN} to ${PASSWORD_MAX} characters`);
      form.elements.password.focus();
      return;
    }
    submitting(form, true, 'Register');
    try {
      await api.post('/api/users/register', body);
    } catch (err) {
      showError(form, err);
      if (ctx.alive) submitting(form, false, 'Register');
      return;
    }
    try {
      await signInWith(body.email, body.password);
    } catch {
      location.hash = '#/signin'; // registered; signing in by hand is the fallback
    }
  });
  main.append(
    h('h1', { id: 'register-title' }, 'Register'),
    h('p', {}, 'A new account starts with 100,000.00 USD of paper money.'),
    form,
    h('p', {}, 'Already registered? ', h('a', { href: '#/signin' }, 'Sign in')));
}
