// Market page: every symbol with its last price and change (kept current by quote pushes);
// with a symbol in the address (#/market/SPX) also its chart and signal (symbol.js).

import { h, replace, status } from '../dom.js';
import * as api from '../api.js';
import * as live from '../live.js';
import { money, change } from '../format.js';
import { renderSymbol } from './symbol.js';

export async function renderMarket(main, params, ctx) {
  const selected = params[0] ? params[0].toUpperCase() : null;
  const listStatus = status('Loading symbols…');
  const listHolder = h('div', {});
  main.append(
    h('h1', {}, selected ? `Market: ${selected}` : 'Market'),
    h('section', { class: 'card', 'aria-labelledby': 'symbols-title' },
      h('h2', { id: 'symbols-title' }, 'Symbols'), listStatus, listHolder));

  const detail = h('div', {});
  main.append(detail);
  if (selected) renderSymbol(detail, selected, ctx);
  else detail.append(h('p', {}, 'Choose a symbol to see its chart and today\'s signal.'));

  let symbols;
  try {
    ({ symbols } = await api.get('/api/stocks'));
  } catch (err) {
    if (ctx.alive) replace(listStatus, `Could not load the symbols: ${err.message}`);
    return;
  }
  if (!ctx.alive) return;
  const rows = new Map();
  const tbody = h('tbody', {});
  for (const s of symbols) {
    const row = symbolRow(s, s.symbol === selected);
    rows.set(s.symbol, row);
    tbody.append(row.tr);
  }
  replace(listHolder, h('div', { class: 'table-wrap' }, h('table', { dataset: { testid: 'symbol-list' } },
    h('caption', {}, 'Symbols with their last price and change from the previous close'),
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col' }, 'Symbol'), h('th', { scope: 'col' }, 'Name'),
      h('th', { scope: 'col', class: 'num' }, 'Last price'), h('th', { scope: 'col', class: 'num' }, 'Change'),
      h('th', { scope: 'col' }, 'As of'))),
    tbody)));
  listStatus.textContent = `${symbols.length} symbols.`;

  // Join each symbol's room for quote pushes; leave them with the page.
  for (const s of symbols) ctx.onLeave(live.join(s.symbol));
  ctx.onLeave(live.on('quote', (q) => rows.get(q.symbol)?.show(q)));

  await Promise.all(symbols.map(async (s) => {
    try {
      const d = await api.get(`/api/stocks/${encodeURIComponent(s.symbol)}/details`);
      if (ctx.alive) rows.get(s.symbol).show(d);
    } catch (err) {
      if (ctx.alive) rows.get(s.symbol).failed(err.message);
    }
  }));
}

function symbolRow(s, current) {
  const price = h('td', { class: 'num' }, '…');
  const delta = h('td', { class: 'num' }, '…');
  const asOf = h('td', {}, '');
  const tr = h('tr', { dataset: { symbol: s.symbol } },
    h('th', { scope: 'row' }, h('a', { href: `#/market/${encodeURIComponent(s.symbol)}`,
      'aria-current': current ? 'true' : null }, s.symbol)),
    h('td', {}, s.name || ''), price, delta, asOf);
  return {
    tr,
    show(d) {
      const c = change(d.change, d.change_percent);
      price.textContent = `${money(d.price)}${d.stale ? ' (stale)' : ''}`;
      delta.textContent = c.text;
      delta.className = `num ${c.direction}`;
      asOf.textContent = d.as_of || '';
    },
    failed(message) {
      price.textContent = 'unavailable';
      delta.textContent = '—';
      asOf.textContent = message;
    },
  };
}
