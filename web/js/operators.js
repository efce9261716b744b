// The operators' pages (Logs, Operations) are for users with the admin role: this checks the
// signed-in user's role and, when it is missing, says so on the page instead of rendering it.

import { h } from './dom.js';
import * as api from './api.js';
import * as session from './session.js';

function operatorsOnly(main, title, text = 'Operators only') {
  main.append(h('h1', {}, title), h('p', { class: 'alert', role: 'alert' }, text),
    h('p', {}, `The ${title.toLowerCase()} page is for users with the admin role.`));
}

/** True when the signed-in user is an operator; else the page says why and this is false. */
export async function requireOperator(main, ctx, title) {
  if (!session.signedIn()) {
    operatorsOnly(main, title);
    main.append(h('p', {}, h('a', { href: '#/signin' }, 'Sign in'), ' with an operator account.'));
    return false;
  }
  let profile;
  try {
    profile = await api.profile();
  } catch (err) {
    if (ctx.alive && err.status !== 401) operatorsOnly(main, title, `Could not check your role: ${err.message}`);
    return false;
  }
  if (!ctx.alive) return false;
  if (!(profile.roles || []).includes('admin')) {
    operatorsOnly(main, title);
    return false;
  }
  return true;
}
