// One symbol on the market page: price, a year of daily candles with volume and the stored
// signals as buy/sell markers, and today's signal; quote and prediction pushes update it live.

import { h, replace, status } from '../dom.js';
import * as api from '../api.js';
import * as live from '../live.js';
import { money, change, clock, daysBefore } from '../format.js';
import { candleChart, safely } from '../charts.js';
import { signalPanel } from './signal.js';

// Our own predict request pushes its answer to the room too: ignore pushes while it is in
// flight, and a push of that same prediction arriving just after its answer.

export async function renderSymbol(root, symbol, ctx) {
  const path = `/api/stocks/${encodeURIComponent(symbol)}`;
  const heading = h('h2', { id: 'symbol-title' }, symbol);
  const priceLine = h('p', { class: 'price-line', 'aria-live': 'polite' }, 'Loading the price…');
  const chartStatus = status('Loading the chart…');
  const chartEl = h('div', { class: 'chart' });
  const summary = h('p', { class: 'visually-hidden', dataset: { testid: 'chart-summary' } });
  const panel = signalPanel();
  root.append(
    h('section', { class: 'card', 'aria-labelledby': 'symbol-title' },
      heading, priceLine, chartStatus, chartEl, summary,
      h('p', { class: 'legend' }, 'Markers: ▲ "buy" below a candle, ▼ "sell" above it, on the day each signal was made.')),
    panel.el);

  // --- price and chart -------------------------------------------------------------------------
  let bars = [];
  const markers = new Map(); // as_of -> action
  let chart = null;
  ctx.onLeave(() => chart && chart.remove());

  const showPrice = (d) => {
    if (d.name) heading.textContent = `${d.name} (${symbol})`;
    const c = change(d.change, d.change_percent);
    replace(priceLine,
      h('span', { class: 'price' }, `${money(d.price)} ${d.currency || ''}`), ' ',
      h('span', { class: c.direction }, c.text), ` · as of ${d.as_of || '—'}${d.stale ? ' (stale: the provider is not answering)' : ''}`);
  };
  const updateSummary = () => {
    const inRange = [...markers.keys()].filter((date) => bars.some((b) => b.date === date));
    summary.textContent = bars.length
      ? `${bars.length} daily candles from ${bars[0].date} to ${bars[bars.length - 1].date}; ${inRange.length} signal markers`
      : `0 daily candles; ${inRange.length} signal markers`;
    if (chart) {
      chart.setMarkers(inRange.sort().map((date) => ({ date, action: markers.get(date) })));
    }
  };

  const loadChart = async () => {
    let details = null;
    try {
      details = await api.get(`${path}/details`);
      if (ctx.alive) showPrice(details);
    } catch (err) {
      if (ctx.alive) priceLine.textContent = `Price unavailable: ${err.message}`;
    }
    const to = details?.as_of;
    const query = to ? { from: daysBefore(to, 365), to } : {};
    const [history, stored] = await Promise.allSettled([
      api.get(`${path}/history`, { query }),
      api.get(`/api/predictions/${encodeURIComponent(symbol)}`, { query: { limit: 500 } }),
    ]);
    if (!ctx.alive) return;
    if (history.status === 'rejected') {
      chartStatus.textContent = `Could not load the price history: ${history.reason.message}`;
      return;
    }
    bars = history.value.bars || [];
    if (stored.status === 'fulfilled') {
      for (const p of stored.value.predictions || []) {
        if (p.as_of && !markers.has(p.as_of)) markers.set(p.as_of, p.action); // newest first wins
      }
    }
    chart = safely(chartEl, () => candleChart(chartEl));
    chart.setBars(bars);
    updateSummary();
    chartStatus.textContent = stored.status === 'rejected'
      ? `Chart loaded; the signal markers could not be loaded: ${stored.reason.message}`
      : 'Chart loaded.';
  };

  const onQuote = (q) => {
    if (q.symbol !== symbol) return;
    showPrice(q);
    const price = Number(q.price);
    const last = bars[bars.length - 1];
    if (!chart || !last || !q.as_of || !Number.isFinite(price) || q.as_of < last.date) return;
    if (q.as_of === last.date) {
      Object.assign(last, { close: price, high: Math.max(last.high, price), low: Math.min(last.low, price) });
      chart.update(last);
    } else {
      const open = Number(q.previous_close) || price;
      const bar = { date: q.as_of, open, high: Math.max(open, price), low: Math.min(open, price), close: price, volume: 0 };
      bars.push(bar);
      chart.update(bar);
      updateSummary();
    }
  };

  // --- today's signal --------------------------------------------------------------------------
  // Our own request's correlation id: the push it causes is an echo of what we show, not news.
  // (Matching on the prediction's _id would also swallow someone else's request for it.)
  let ownRequest = null;
  let fetching = false;
  let retryTimer = null;
  ctx.onLeave(() => clearTimeout(retryTimer));

  const loadSignal = async () => {
    fetching = true;
    ownRequest = crypto.randomUUID();
    try {
      const { status: code, body } = await api.request('GET', `/api/predict/${encodeURIComponent(symbol)}`,
        { headers: { 'X-Correlation-Id': ownRequest } });
      if (!ctx.alive) return;
      if (code === 202) {
        fetching = false;
        const wait = Math.max(1, Number(body.retry_after) || 15);
        panel.training(wait);
        retryTimer = setTimeout(loadSignal, wait * 1000);
        return;
      }
      // Show it once the room is joined (or there is no live connection): from the moment the
      // signal is on screen, a new prediction for this symbol reaches it.
      await live.ready(symbol);
      fetching = false;
      if (!ctx.alive) return;
      panel.show(body);
      addMarker(body);
    } catch (err) {
      fetching = false;
      if (ctx.alive) panel.failed(err.message);
    }
  };
  const addMarker = (p) => {
    if (p.as_of && p.action) {
      markers.set(p.as_of, p.action);
      if (chart) updateSummary();
    }
  };
  const onPrediction = (p) => {
    if (p.symbol !== symbol || fetching) return;
    if (p.correlation_id && p.correlation_id === ownRequest) return;
    clearTimeout(retryTimer); // a push answers a pending "training" too
    panel.show(p);
    panel.liveAt(`Updated live at ${clock()}`);
    addMarker(p);
  };

  ctx.onLeave(live.join(symbol));
  // The panel says when the server has confirmed this symbol's room (data-room="joined"): from
  // then on a prediction pushed to the room reaches the page (the browser tests wait for it).
  const joined = () => { if (ctx.alive) panel.el.dataset.room = 'joined'; };
  ctx.onLeave(live.on('subscribed', (m) => m.symbol === symbol.toUpperCase() && joined()));
  live.ready(symbol).then((confirmed) => confirmed && joined());
  ctx.onLeave(live.on('quote', onQuote));
  ctx.onLeave(live.on('prediction', onPrediction));
  await Promise.all([loadChart(), loadSignal()]);
}
