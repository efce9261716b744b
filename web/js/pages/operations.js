// Operations page (operators, the admin role): is the system healthy now, and since when not?
// The health of each dependency (GET /api/health?deep=true), the alarms and their states
// (GET /api/ops/alarms), and the last hour's requests, errors and latency per function and route
// with the trades and pushes counted (GET /api/ops/metrics). Refreshed every 30 s while open.

import { h, replace, status, table } from '../dom.js';
import * as api from '../api.js';
import { requireOperator } from '../operators.js';
import { integer, percent, timestamp } from '../format.js';

const REFRESH_MS = 30_000;
const TRADES = ['TradesCommitted', 'TradesAborted', 'TradesFailed', 'TradesPending'];
const PUSHES = ['PushesDelivered', 'PushesGone', 'PushesFailed'];
const WORDS = { ok: 'OK', degraded: 'Degraded', down: 'Down', up: 'Up', OK: 'OK', ALARM: 'Alarm', INSUFFICIENT_DATA: 'Insufficient data' };

export async function renderOperations(main, _params, ctx) {
  if (!(await requireOperator(main, ctx, 'Operations'))) return;

  const section = (id, title, ...children) => h('section', { class: 'card', 'aria-labelledby': id },
    h('h2', { id }, title), ...children);
  const healthStatus = status('Probing the dependencies…', 'health-status');
  const healthHolder = h('div', {});
  const alarmStatus = status('Loading the alarms…', 'alarm-status');
  const alarmHolder = h('div', {});
  const trafficStatus = status('Loading the metrics…');
  const trafficHolder = h('div', {});
  const countsHolder = h('div', {});
  const refreshed = status('');
  const refresh = h('button', { type: 'button', class: 'primary' }, 'Refresh');
  main.append(h('h1', {}, 'Operations'),
    h('div', { class: 'toolbar' }, refresh, refreshed),
    section('health-title', 'Health of each dependency', healthStatus, healthHolder),
    section('alarms-title', 'Alarms', alarmStatus, alarmHolder),
    section('traffic-title', 'Requests in the last hour, per function and route', trafficStatus, trafficHolder),
    section('counts-title', 'Trades and pushes in the last hour', countsHolder));

  const loadHealth = async () => {
    let report;
    try {
      report = await api.get('/api/health', { auth: true, query: { deep: 'true' } });
    } catch (err) {
      // 503 with a report: a critical store is down, which is what this page is for.
      if (err.status !== 503 || !err.body.dependencies) throw err;
      report = err.body;
    }
    if (!ctx.alive) return;
    healthStatus.textContent = `Overall: ${WORDS[report.status] || report.status} (checked ${timestamp(report.checked_at)})`;
    healthStatus.dataset.state = report.status;
    const rows = Object.entries(report.dependencies || {}).map(([name, d]) => ({ name, ...d }));
    replace(healthHolder, table({
      caption: 'Each dependency, probed within 2 seconds',
      testid: 'health',
      columns: [
        { key: 'name', label: 'Dependency' },
        { key: 'status', label: 'Status', format: (v) => h('span', { class: `badge state-${v}` }, WORDS[v] || v) },
        { key: 'latency_ms', label: 'Latency (ms)', numeric: true, format: (v) => (v === null || v === undefined ? 'no answer' : v.toFixed(1)) },
        { key: 'detail', label: 'Detail' },
      ],
      rows,
      rowAttrs: (row) => ({ dataset: { dependency: row.name, state: row.status } }),
    }));
  };

  const loadAlarms = async () => {
    const data = await api.get('/api/ops/alarms', { auth: true });
    if (!ctx.alive) return;
    const counts = data.counts || {};
    alarmStatus.textContent = `${integer(counts.ALARM || 0)} in alarm, ${integer(counts.OK || 0)} OK, `
      + `${integer(counts.INSUFFICIENT_DATA || 0)} without data here.`;
    const columns = [
      { key: 'state', label: 'State', format: (v) => h('span', { class: `badge state-${v}` }, WORDS[v] || v) },
      { key: 'name', label: 'Alarm' },
      { key: 'description', label: 'What it watches' },
      { key: 'reason', label: 'Why' },
      { key: 'since', label: 'Since', format: (v) => (v ? timestamp(v) : '—') },
    ];
    const rowAttrs = (row) => ({ dataset: { alarm: row.name, state: row.state } });
    const all = data.alarms || [];
    const noData = all.filter((a) => a.state === 'INSUFFICIENT_DATA');
    replace(alarmHolder, table({
      caption: 'In alarm first, then OK',
      testid: 'alarms',
      empty: 'No alarm has data yet.',
      columns,
      rows: all.filter((a) => a.state !== 'INSUFFICIENT_DATA'),
      rowAttrs,
    }), noData.length ? h('details', {},
      h('summary', {}, `${noData.length} without data here (most watch metrics that exist on AWS only)`),
      table({ caption: 'Alarms without data', testid: 'alarms-no-data', columns, rows: noData, rowAttrs })) : null);
  };

  const loadTraffic = async () => {
    const data = await api.get('/api/ops/metrics', { auth: true, query: { since: '1h' } });
    if (!ctx.alive) return;
    const routes = data.routes || [];
    const total = routes.reduce((s, r) => s + r.requests, 0);
    trafficStatus.textContent = `${integer(total)} request(s) on ${routes.length} route(s).`;
    const ms = (key) => (v, row) => (row.duration_ms[key] === null || row.duration_ms[key] === undefined ? '—' : row.duration_ms[key].toFixed(1));
    replace(trafficHolder, table({
      caption: 'Busiest first; the error ratio is 5xx over requests',
      testid: 'traffic',
      empty: 'No request in the last hour.',
      columns: [
        { key: 'function', label: 'Function' },
        { key: 'route', label: 'Route' },
        { key: 'requests', label: 'Requests', numeric: true, format: integer },
        { key: 'rate_per_s', label: 'Per second', numeric: true, format: (v) => v.toFixed(3) },
        { key: 'errors_4xx', label: '4xx', numeric: true, format: integer },
        { key: 'errors_5xx', label: '5xx', numeric: true, format: integer },
        { key: 'error_ratio', label: 'Error ratio', numeric: true, format: (v) => percent(v, 1) },
        { key: 'p50', label: 'p50 ms', numeric: true, format: ms('p50') },
        { key: 'p95', label: 'p95 ms', numeric: true, format: ms('p95') },
        { key: 'p99', label: 'p99 ms', numeric: true, format: ms('p99') },
      ],
      rows: routes,
    }));
    const sums = {};
    for (const counts of Object.values(data.functions || {})) {
      for (const [name, value] of Object.entries(counts)) sums[name] = (sums[name] || 0) + (Number(value) || 0);
    }
    replace(countsHolder, table({
      caption: 'Counted by the functions (their metric lines)',
      testid: 'counts',
      columns: [{ key: 'name', label: 'Count' }, { key: 'value', label: 'Last hour', numeric: true, format: integer }],
      rows: [...TRADES, ...PUSHES].map((name) => ({ name, value: sums[name] || 0 })),
    }));
  };

  const load = async () => {
    refresh.disabled = true;
    const failures = (await Promise.allSettled([loadHealth(), loadAlarms(), loadTraffic()]))
      .map((r, i) => [r, [healthStatus, alarmStatus, trafficStatus][i]])
      .filter(([r]) => r.status === 'rejected');
    if (!ctx.alive) return;
    for (const [r, line] of failures) line.textContent = `Could not load: ${r.reason.message}`;
    refresh.disabled = false;
    refreshed.textContent = `Updated at ${new Date().toLocaleTimeString()}.`;
  };
  refresh.addEventListener('click', load);
  const timer = setInterval(load, REFRESH_MS);
  ctx.onLeave(() => clearInterval(timer));
  await load();
}
