// Analytics page (from the data warehouse): the signals' hit rate by month for a symbol (table
// and line chart) and paper trading by day (table and realised P&L histogram).

import { h, replace, status, table } from '../dom.js';
import * as api from '../api.js';
import { cents, integer, percent } from '../format.js';
import { lineChart, histogramChart, safely } from '../charts.js';

export async function renderAnalytics(main, params, ctx) {
  const symbol = (params[0] || 'SPX').toUpperCase();
  const signals = h('section', { class: 'card', 'aria-labelledby': 'signals-title' },
    h('h2', { id: 'signals-title' }, `Signal hit rate by month: ${symbol}`));
  const trading = h('section', { class: 'card', 'aria-labelledby': 'trading-title' },
    h('h2', { id: 'trading-title' }, 'Paper trading by day'));
  main.append(h('h1', {}, 'Analytics'),
    h('p', {}, 'Read from the data warehouse, which the nightly load brings up to date: today\'s trades may not be here yet.'),
    symbolPicker(symbol), signals, trading);
  await Promise.all([loadSignals(signals, symbol, ctx), loadTrading(trading, ctx)]);
}

/** Links to each symbol's analytics (a plain link per symbol: keyboard friendly, no script). */
function symbolPicker(current) {
  const nav = h('nav', { 'aria-label': 'Analytics symbol' }, h('p', {}, 'Symbol: '));
  api.get('/api/stocks').then(({ symbols }) => {
    replace(nav.firstChild, 'Symbol: ', symbols.flatMap((s, i) => [i ? ' · ' : '',
      h('a', { href: `#/analytics/${encodeURIComponent(s.symbol)}`, 'aria-current': s.symbol === current ? 'page' : null }, s.symbol)]));
  }).catch(() => {});
  return nav;
}

async function loadSignals(section, symbol, ctx) {
  const st = status('Loading…');
  section.append(st);
  let data;
  try {
    data = await api.get('/api/analytics/signals', { query: { symbol } });
  } catch (err) {
    if (ctx.alive) st.textContent = `Could not load the signal analytics: ${err.message}`;
    return;
  }
  if (!ctx.alive) return;
  const rows = [...(data.by_month || [])].sort((a, b) => String(a.month).localeCompare(String(b.month)));
  const rated = rows.filter((r) => r.hit_rate !== null && r.hit_rate !== undefined);
  st.textContent = '';
  const chartEl = h('div', { class: 'chart small' });
  const summary = h('p', { class: 'visually-hidden' }, rated.length
    ? `Line chart of the hit rate for ${rated.length} months from ${rated[0].month} to ${rated[rated.length - 1].month}, between ${percent(Math.min(...rated.map((r) => r.hit_rate)))} and ${percent(Math.max(...rated.map((r) => r.hit_rate)))}.`
    : 'No months with a known outcome yet: nothing to chart.');
  section.append(
    h('div', { dataset: { testid: 'hit-rate' } },
      table({
        caption: `${symbol}: predictions, share that were right (hit rate) and mean next-day return, by month`,
        empty: 'No predictions in the warehouse yet.',
        columns: [
          { key: 'month', label: 'Month' },
          { key: 'predictions', label: 'Predictions', numeric: true, format: integer },
          { key: 'hit_rate', label: 'Hit rate', numeric: true, format: (v) => percent(v) },
          { key: 'buys', label: 'Buys', numeric: true, format: integer },
          { key: 'sells', label: 'Sells', numeric: true, format: integer },
          { key: 'mean_return_after_buy', label: 'Mean return after buy', numeric: true, format: (v) => percent(v, 2) },
          { key: 'mean_return_after_sell', label: 'Mean return after sell', numeric: true, format: (v) => percent(v, 2) },
        ],
        rows,
      })),
    summary, chartEl);
  if (rated.length) {
    const chart = safely(chartEl, () => lineChart(chartEl,
      rated.map((r) => ({ time: `${r.month}-01`, value: Number(r.hit_rate) })),
      { format: (v) => percent(v) }));
    ctx.onLeave(() => chart.remove());
  } else {
    chartEl.remove();
  }
}

async function loadTrading(section, ctx) {
  const st = status('Loading…');
  section.append(st);
  let data;
  try {
    data = await api.get('/api/analytics/trading');
  } catch (err) {
    if (ctx.alive) st.textContent = `Could not load the trading analytics: ${err.message}`;
    return;
  }
  if (!ctx.alive) return;
  const rows = [...(data.by_day || [])].sort((a, b) => String(a.date).localeCompare(String(b.date)));
  st.textContent = '';
  const chartEl = h('div', { class: 'chart small' });
  const total = rows.reduce((sum, r) => sum + (Number(r.realised_pnl_cents) || 0), 0);
  const summary = h('p', { class: 'visually-hidden' }, rows.length
    ? `Histogram of realised profit and loss for ${rows.length} days from ${rows[0].date} to ${rows[rows.length - 1].date}; total ${cents(total)} USD.`
    : 'No trading days yet: nothing to chart.');
  section.append(
    h('div', { dataset: { testid: 'pnl' } },
      table({
        caption: 'Trades, shares, volume and realised profit or loss per day, all users (USD)',
        empty: 'No trades in the warehouse yet.',
        columns: [
          { key: 'date', label: 'Date' },
          { key: 'trades', label: 'Trades', numeric: true, format: integer },
          { key: 'shares', label: 'Shares', numeric: true, format: integer },
          { key: 'volume_cents', label: 'Volume', numeric: true, format: cents },
          { key: 'realised_pnl_cents', label: 'Realised P&L', numeric: true, format: cents },
        ],
        rows,
      })),
    summary, chartEl);
  if (rows.length) {
    const chart = safely(chartEl, () => histogramChart(chartEl,
      rows.map((r) => ({ time: r.date, value: (Number(r.realised_pnl_cents) || 0) / 100 }))));
    ctx.onLeave(() => chart.remove());
  } else {
    chartEl.remove();
  }
}
