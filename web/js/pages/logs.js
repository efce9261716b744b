// Logs page (operators, the admin role): search every function's log lines by correlation id,
// level and service, in time order, and the errors per minute (table and histogram).

import { h, replace, status, table } from '../dom.js';
import * as api from '../api.js';
import { requireOperator } from '../operators.js';
import { integer, timestamp } from '../format.js';
import { histogramChart, safely } from '../charts.js';
import { clearErrors, showError, alertBox } from '../forms.js';

const LEVELS = ['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'];

export async function renderLogs(main, _params, ctx) {
  if (!(await requireOperator(main, ctx, 'Logs'))) return;

  const results = h('div', {});
  const searchStatus = status('');
  const errors = h('section', { class: 'card', 'aria-labelledby': 'errors-title' },
    h('h2', { id: 'errors-title' }, 'Errors per minute, last 2 hours'));
  const form = searchForm();
  main.append(h('h1', {}, 'Logs'),
    h('section', { class: 'card', 'aria-labelledby': 'search-title' },
      h('h2', { id: 'search-title' }, 'Search the log lines'), form, searchStatus, results),
    errors);

  let chart = null;
  ctx.onLeave(() => chart && chart.remove());

  const search = async () => {
    clearErrors(form);
    const query = Object.fromEntries([...new FormData(form)].map(([k, v]) => [k, String(v).trim()]));
    searchStatus.textContent = 'Searching…';
    try {
      const data = await api.get('/api/logs', { auth: true, query });
      if (!ctx.alive) return;
      const lines = [...(data.logs || [])].sort((a, b) => String(a.timestamp).localeCompare(String(b.timestamp)));
      searchStatus.textContent = `${data.count ?? lines.length} line(s) shown of ${data.total ?? lines.length} matching, oldest first.`;
      replace(results, logTable(lines));
    } catch (err) {
      if (!ctx.alive) return;
      searchStatus.textContent = '';
      if (err.status === 403) replace(results, h('p', { class: 'alert', role: 'alert' }, 'Operators only'));
      else showError(form, err, { correlation_id: 'log-correlation', level: 'log-level', service: 'log-service', since: 'log-since' });
    }
  };
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    search();
  });

  // Errors per minute, alongside the search.
  const errStatus = status('Loading…');
  const errHolder = h('div', { dataset: { testid: 'errors-per-minute' } });
  errors.append(errStatus, errHolder);
  replace(results, logTable([]));
  try {
    const data = await api.get('/api/logs/errors', { auth: true, query: { since: '2h' } });
    if (!ctx.alive) return;
    const minutes = [...(data.minutes || [])].sort((a, b) => String(a.minute).localeCompare(String(b.minute)));
    const total = minutes.reduce((s, m) => s + (Number(m.errors) || 0), 0);
    errStatus.textContent = `${integer(total)} error line(s) in ${minutes.length} minute(s) with errors.`;
    const chartEl = h('div', { class: 'chart small' });
    replace(errHolder, table({
      caption: 'ERROR and CRITICAL lines per minute (UTC)',
      empty: 'No errors in the last 2 hours.',
      columns: [{ key: 'minute', label: 'Minute', format: timestamp }, { key: 'errors', label: 'Errors', numeric: true, format: integer }],
      rows: minutes,
    }), chartEl);
    if (minutes.length) {
      chart = safely(chartEl, () => histogramChart(chartEl,
        minutes.map((m) => ({ time: Math.floor(Date.parse(m.minute) / 1000), value: Number(m.errors) || 0 })),
        { intraday: true }));
    } else {
      chartEl.remove();
    }
  } catch (err) {
    if (ctx.alive) errStatus.textContent = `Could not count the errors: ${err.message}`;
  }
}

function searchForm() {
  const text = (id, name, label, hint) => h('div', { class: 'field' },
    h('label', { for: id }, label),
    h('input', { id, name, type: 'text', autocomplete: 'off', 'aria-describedby': [hint ? `${id}-hint` : null, `${id}-error`].filter(Boolean).join(' ') }),
    hint ? h('p', { id: `${id}-hint`, class: 'hint' }, hint) : null,
    h('p', { id: `${id}-error`, class: 'field-error' }));
  return h('form', { class: 'inline-form', dataset: { testid: 'log-search' }, 'aria-labelledby': 'search-title' },
    alertBox(),
    text('log-correlation', 'correlation_id', 'Correlation id'),
    h('div', { class: 'field' },
      h('label', { for: 'log-level' }, 'Level'),
      h('select', { id: 'log-level', name: 'level' },
        h('option', { value: '' }, 'Any level'), LEVELS.map((l) => h('option', { value: l }, l))),
      h('p', { id: 'log-level-error', class: 'field-error' })),
    text('log-service', 'service', 'Service', 'e.g. stocks, users, trading, saga'),
    text('log-since', 'since', 'Since', 'e.g. 15m, 2h, 7d or an ISO time; default 24 h'),
    h('button', { type: 'submit', class: 'primary' }, 'Search'));
}

function logTable(lines) {
  return table({
    caption: 'Log lines in time order (UTC)',
    testid: 'log-lines',
    empty: 'No lines yet: search above.',
    columns: [
      { key: 'timestamp', label: 'Time', format: timestamp },
      { key: 'level', label: 'Level' },
      { key: 'function', label: 'Function' },
      { key: 'service', label: 'Service' },
      { key: 'correlation_id', label: 'Correlation id' },
      { key: 'message', label: 'Message' },
      { key: 'transaction_id', label: 'Transaction id' },
    ],
    rows: lines,
  });
}
