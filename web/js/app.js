// Entry point: registers the pages with the router, wires the session to the nav and the
// WebSocket, and starts everything.

import * as router from './router.js';
import * as session from './session.js';
import * as live from './live.js';
import * as nav from './nav.js';
import * as api from './api.js';
import { h } from './dom.js';
import { renderMarket } from './pages/market.js';
import { renderSignIn, renderRegister } from './pages/signin.js';
import { renderPortfolio } from './pages/portfolio.js';
import { renderTransactions } from './pages/transactions.js';
import { renderAnalytics } from './pages/analytics.js';
import { renderLogs } from './pages/logs.js';
import { renderRankings } from './pages/rankings.js';
import { renderOperations } from './pages/operations.js';

router.route('market', renderMarket, 'Market');
router.route('rankings', renderRankings, 'Rankings');
router.route('signin', renderSignIn, 'Sign in');
router.route('register', renderRegister, 'Register');
router.route('portfolio', renderPortfolio, 'Portfolio');
router.route('transactions', renderTransactions, 'Transactions');
router.route('analytics', renderAnalytics, 'Analytics');
router.route('logs', renderLogs, 'Logs');
router.route('operations', renderOperations, 'Operations');
router.route('notfound', (main) => {
  main.append(h('h1', {}, 'Page not found'), h('p', {}, h('a', { href: '#/market' }, 'Go to the market')));
}, 'Not found');

async function signOut() {
  if (session.signedIn() && !session.tokenExpired()) {
    try {
      await api.post('/api/users/logout', {}, { auth: true });
    } catch {
      // Signing out locally is what matters; the token expires on its own.
    }
  }
  session.signOut();
  router.go('#/market');
}

/** Loads the profile (for the nav's name and the admin-only Logs link) when signed in. */
async function loadProfile() {
  if (!session.signedIn() || session.cachedProfile()) return;
  try {
    await api.profile();
  } catch {
    // A 401 has already sent the user to sign-in; other errors leave the nav as it is.
  }
}

let lastToken = session.token();
session.onChange(() => {
  if (session.token() !== lastToken) {
    lastToken = session.token();
    live.restart();
    loadProfile();
  }
});

router.onChange((name) => {
  nav.setCurrent(name);
});

// The skip link focuses the content itself: its "#main" must not reach the hash router.
document.querySelector('.skip-link').addEventListener('click', (event) => {
  event.preventDefault();
  document.getElementById('main').focus();
});

nav.init({ signOut });
if (session.tokenExpired()) {
  // Before the first render: replaceState does not fire hashchange, so sign-in renders once.
  session.signOut(session.EXPIRED);
  history.replaceState(null, '', '#/signin');
}
live.sync();
loadProfile();
router.start();
