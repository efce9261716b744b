// Transactions page: the signed-in user's ledger, newest first, as a table.

import { h, replace, status, table } from '../dom.js';
import * as api from '../api.js';
import { money, cents, signedMoney, integer, timestamp } from '../format.js';
import { requireSignIn } from './portfolio.js';

export async function renderTransactions(main, _params, ctx) {
  if (requireSignIn(main, 'Transactions')) return;
  const loadStatus = status('Loading your transactions…');
  const holder = h('div', {});
  main.append(h('h1', {}, 'Transactions'), loadStatus, holder);
  let ledger;
  try {
    const profile = await api.profile();
    ledger = await api.get('/api/transactions', { auth: true, query: { user_id: profile.user_id, limit: 1000 } });
  } catch (err) {
    if (ctx.alive) loadStatus.textContent = `Could not load your transactions: ${err.message}`;
    return;
  }
  if (!ctx.alive) return;
  const rows = ledger.transactions || [];
  loadStatus.textContent = `${rows.length} transaction${rows.length === 1 ? '' : 's'}.`;
  replace(holder, table({
    caption: 'Your ledger, newest first (amounts in USD)',
    testid: 'transactions',
    empty: 'No trades yet.',
    columns: [
      { key: 'timestamp', label: 'Time (UTC)', format: timestamp },
      { key: 'action', label: 'Action', format: (v) => (v === 'buy' ? 'Buy' : v === 'sell' ? 'Sell' : v) },
      { key: 'symbol', label: 'Symbol' },
      { key: 'quantity', label: 'Shares', numeric: true, format: integer },
      { key: 'price', label: 'Price', numeric: true, format: money },
      { key: 'amount_cents', label: 'Amount', numeric: true, format: cents },
      { key: 'realised_pnl_cents', label: 'Realised P&L', numeric: true,
        format: (v) => (v === null || v === undefined ? '—' : signedMoney(v / 100)) },
      { key: 'transaction_id', label: 'Transaction id' },
    ],
    rows,
  }));
}
