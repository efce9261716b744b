// The header: navigation links (aria-current on the current page; Logs and Operations for
// admins only), sign-in / sign-out, and the WebSocket state in words.

import { h, replace } from './dom.js';
import * as session from './session.js';
import * as live from './live.js';

let currentName = 'market';
let onSignOut = () => {};

const PAGES = [
  ['market', 'Market'],
  ['rankings', 'Rankings'],
  ['portfolio', 'Portfolio'],
  ['transactions', 'Transactions'],
  ['analytics', 'Analytics'],
];

export function init({ signOut }) {
  onSignOut = signOut;
  session.onChange(renderNav);
  live.on('state', renderState);
  renderState(live.currentState());
  renderNav();
}

export function setCurrent(name) {
  currentName = name;
  renderNav();
}

function link(name, label) {
  return h('li', {}, h('a', {
    href: `#/${name}`,
    'aria-current': name === currentName ? 'page' : null,
  }, label));
}

function renderNav() {
  const items = PAGES.map(([name, label]) => link(name, label));
  if (session.isAdmin()) items.push(link('logs', 'Logs'), link('operations', 'Operations'));
  if (session.signedIn()) {
    const who = session.cachedProfile();
    items.push(h('li', { class: 'nav-user' },
      who ? h('span', { class: 'who' }, `Signed in as ${who.name}`) : null,
      h('button', { type: 'button', class: 'link-button', onclick: () => onSignOut() }, 'Sign out')));
  } else {
    items.push(link('signin', 'Sign in'), link('register', 'Register'));
  }
  replace(document.getElementById('nav-links'), items);
}

function renderState(state) {
  const el = document.getElementById('connection');
  el.textContent = state.text;
  el.dataset.state = state.kind;
}
