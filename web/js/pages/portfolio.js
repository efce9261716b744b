// Portfolio page: cash, holdings with live P&L (quote pushes for held symbols), the order form
// (order.js), and an aria-live list of trade confirmations pushed over the WebSocket.

import { h, replace, status, table } from '../dom.js';
import * as api from '../api.js';
import * as live from '../live.js';
import * as session from '../session.js';
import { money, signedMoney, integer } from '../format.js';
import { orderForm } from './order.js';

export function requireSignIn(main, what) {
  if (session.signedIn()) return false;
  if (session.flash()) {
    // The session just expired (a 401 dropped the token): the sign-in page says so.
    location.hash = '#/signin';
    return true;
  }
  main.append(h('h1', {}, what),
    h('p', {}, h('a', { href: '#/signin' }, 'Sign in'), ` to see your ${what.toLowerCase()}.`));
  return true;
}

export async function renderPortfolio(main, _params, ctx) {
  if (requireSignIn(main, 'Portfolio')) return;
  const loadStatus = status('Loading your portfolio…');
  const summary = h('div', { class: 'summary' });
  const holdingsHolder = h('div', {});
  const confirmations = h('ul', { class: 'confirmations', 'aria-live': 'polite', dataset: { testid: 'confirmations' } });
  const seen = new Set(); // transaction ids already confirmed (push or answer, whichever first)

  main.append(h('h1', {}, 'Portfolio'), loadStatus,
    h('section', { class: 'card', 'aria-labelledby': 'cash-title' }, h('h2', { id: 'cash-title' }, 'Cash and value'), summary),
    h('section', { class: 'card', 'aria-labelledby': 'holdings-title' }, h('h2', { id: 'holdings-title' }, 'Holdings'), holdingsHolder));

  const confirm = (t) => {
    if (!t.transaction_id || seen.has(t.transaction_id)) return;
    seen.add(t.transaction_id);
    const verb = t.action === 'sell' ? 'Sold' : 'Bought';
    confirmations.prepend(h('li', {}, `${verb} ${t.quantity} ${t.symbol}${t.price ? ` at ${money(t.price)}` : ''}`,
      h('span', { class: 'muted' }, ` (transaction ${t.transaction_id})`)));
  };

  let holdings = [];
  const rooms = new Map(); // symbol -> leave()
  ctx.onLeave(() => rooms.forEach((leave) => leave()));

  const load = async () => {
    let p;
    try {
      p = await api.get('/api/users/portfolio', { auth: true });
    } catch (err) {
      if (ctx.alive) loadStatus.textContent = `Could not load your portfolio: ${err.message}`;
      return;
    }
    if (!ctx.alive) return;
    loadStatus.textContent = '';
    replace(summary, h('dl', { class: 'facts' },
      h('dt', {}, 'Cash (USD)'), h('dd', { dataset: { testid: 'cash' } }, money(p.cash)),
      p.available_cash !== undefined && p.available_cash !== p.cash
        ? [h('dt', {}, 'Available (not reserved by a trade in progress)'), h('dd', {}, money(p.available_cash))] : null,
      h('dt', {}, 'Market value of holdings'), h('dd', {}, money(p.market_value)),
      h('dt', {}, 'Total value'), h('dd', {}, money(p.total_value)),
      h('dt', {}, 'Realised P&L'), h('dd', {}, signedMoney(p.realised_pnl))));
    holdings = (p.holdings || []).map((x) => ({ ...x }));
    renderHoldings();
    // Follow the held symbols' rooms (and only those).
    const held = new Set(holdings.map((x) => x.symbol));
    for (const [symbol, leave] of rooms) if (!held.has(symbol)) { leave(); rooms.delete(symbol); }
    for (const symbol of held) if (!rooms.has(symbol)) rooms.set(symbol, live.join(symbol));
    for (const row of holdings.filter((x) => x.price === null || x.price === undefined)) {
      api.get(`/api/stocks/${encodeURIComponent(row.symbol)}/details`)
        .then((d) => ctx.alive && reprice(d))
        .catch(() => {}); // the row keeps showing "—" for the price
    }
  };

  const renderHoldings = () => {
    replace(holdingsHolder, table({
      caption: 'Shares held, their average cost, last price and unrealised profit or loss (USD)',
      testid: 'holdings',
      empty: 'No shares yet: buy some with the form below.',
      rowAttrs: (row) => ({ dataset: { symbol: row.symbol } }),
      columns: [
        { key: 'symbol', label: 'Symbol' },
        { key: 'shares', label: 'Shares', numeric: true, format: integer },
        { key: 'average_cost', label: 'Average cost', numeric: true, format: money },
        { key: 'price', label: 'Last price', numeric: true, format: money },
        { key: 'market_value', label: 'Market value', numeric: true, format: money },
        { key: 'unrealised_pnl', label: 'Unrealised P&L', numeric: true,
          format: (v) => (v === null || v === undefined ? '—' : `${Number(v) >= 0 ? '▲' : '▼'} ${signedMoney(v)}`) },
      ],
      rows: holdings,
    }));
  };

  // A quote (pushed, or fetched when the portfolio had no price) re-prices the holding:
  // value = price x shares, P&L = value - cost basis.
  const reprice = (q) => {
    const row = holdings.find((x) => x.symbol === q.symbol);
    const price = Number(q.price);
    if (!row || !Number.isFinite(price)) return;
    const valueCents = Math.round(price * 100) * row.shares;
    Object.assign(row, { price: q.price, market_value: valueCents / 100,
      unrealised_pnl: (valueCents - row.cost_basis_cents) / 100 });
    renderHoldings();
  };
  ctx.onLeave(live.on('quote', reprice));
  ctx.onLeave(live.on('trade', (t) => {
    confirm(t);
    load();
  }));

  main.append(
    orderForm({ ctx, onTraded: (t) => { confirm(t); load(); } }),
    h('section', { class: 'card', 'aria-labelledby': 'confirm-title' },
      h('h2', { id: 'confirm-title' }, 'Trade confirmations'),
      h('p', { class: 'hint' }, 'Your trades appear here as they are confirmed, newest first.'),
      confirmations));
  await load();
}
