// The signal panel of a symbol: today's action and confidence, how much of one's capital to hold
// and why (exposure, volatility forecasts), the evidence for an edge in words (direction skill:
// the sized signal against the same sizing with no direction, its corrected p-value and interval),
// risk timing apart (volatility targeting against holding), the symbol's rank in each universe
// that ranks it, and the out-of-sample record beside both. Pure rendering: market.js feeds it.

import { h, replace } from '../dom.js';
import { money, percent, signedPercent, timestamp } from '../format.js';

const EDGE_TRUE = "Edge: on this symbol's past, the model's buy/sell calls added to plain volatility targeting after costs, traded a day late, by more than luck across every test made would explain — past, not a promise.";
const EDGE_FALSE = "No edge: no evidence the model's buy/sell calls add anything to plain volatility targeting; read them as a coin flip with a slight lean.";

/** The panel's fixed parts; fill them with show()/training()/failed(). */
export function signalPanel() {
  const body = h('div', { class: 'signal-body', 'aria-live': 'polite' }, h('p', { class: 'status' }, 'Loading the signal…'));
  const risk = h('div', { class: 'risk', dataset: { testid: 'risk' } });
  const edge = h('p', { class: 'edge', dataset: { testid: 'edge' } });
  const timing = h('p', { class: 'risk-timing', dataset: { testid: 'risk-timing' } });
  const ranks = h('div', { class: 'universe-ranks' });
  const record = h('div', { class: 'record' });
  const liveLine = h('p', { class: 'signal-live', 'aria-live': 'polite', dataset: { testid: 'signal-live' } });
  const el = h('section', { class: 'card signal', 'aria-labelledby': 'signal-title' },
    h('h2', { id: 'signal-title' }, "Today's signal"),
    h('div', { dataset: { testid: 'signal' } }, body),
    risk, edge, timing, ranks, record, liveLine);
  return {
    el,
    show(p) {
      replace(body, actionLine(p), details(p),
        h('p', { class: 'explained', dataset: { testid: 'prediction-explained' } }, p.prediction_explained || ''));
      replace(risk, ...riskLines(p));
      edge.textContent = edgeWords(p);
      timing.textContent = timingWords(p.record);
      replace(ranks, universeRanks(p.universe_ranks));
      replace(record, p.record ? recordTable(p.record) : h('p', {}, 'No out-of-sample record for this model.'));
    },
    training(seconds) {
      replace(body, h('p', { class: 'status' }, `Model training… asking again in ${seconds} s.`));
    },
    failed(message) {
      replace(body, h('p', { class: 'alert', role: 'alert' }, `No signal: ${message}`));
    },
    liveAt(text) {
      liveLine.textContent = text;
    },
  };
}

function actionLine(p) {
  const buy = p.action === 'buy';
  return h('p', { class: `action ${buy ? 'up' : 'down'}` },
    h('span', { class: 'arrow', 'aria-hidden': 'true' }, buy ? '▲ ' : '▼ '),
    h('strong', {}, buy ? 'buy' : 'sell'),
    ` — confidence ${percent(p.confidence)}`);
}

function details(p) {
  const rows = [
    ['Last trading day used', p.as_of],
    ['Probability of an up day', percent(p.probability)],
    ['Predicted next close', `${money(p.prediction)} (expected return ${percent(p.expected_return, 2)})`],
    ['Model', p.model_version],
    ['Made at', timestamp(p.timestamp)],
  ];
  return h('dl', { class: 'facts' }, rows.filter(([, v]) => v !== undefined && v !== null)
    .map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

/** How much to hold and why; nothing for a prediction stored before sizing existed. */
function riskLines(p) {
  if (p.exposure === null || p.exposure === undefined) return [];
  const vol = p.volatility || {};
  const sizing = p.sizing || {};
  return [
    h('p', { class: 'exposure' }, 'Recommended exposure: ', h('strong', {}, percent(p.exposure, 0)),
      ' of your capital', sizing.max_exposure > 1 ? ` (at most ${percent(sizing.max_exposure, 0)})` : ''),
    h('p', { class: 'reason' }, sizing.reason || ''),
    h('p', { class: 'volatility' },
      `Forecast volatility, a year: ${percent(vol.next_day, 0)} for the next day, `
      + `${percent(vol.next_21_days, 0)} over the next 21 days (${volatilityModel(vol.model)}).`),
  ];
}

function volatilityModel(kind) {
  return { garch: 'GARCH(1,1)', gjr: 'GJR-GARCH', har: 'HAR of realised variance', naive: '21-day average' }[kind] || kind || 'model not recorded';
}

/** The edge (direction skill) in words, with the evidence: the corrected p-value and the 90%
 * interval of the Sharpe difference to plain volatility targeting. */
function edgeWords(p) {
  const base = p.edge === true ? EDGE_TRUE : p.edge === false ? EDGE_FALSE : '';
  const r = p.record || {};
  if (r.p_value === null || r.p_value === undefined) return base;
  const [low, high] = r.sharpe_difference_interval_90 || [];
  const chance = Math.max(1, Math.round(r.p_value * 100));
  const luck = `a strategy with no edge would do at least this well about ${chance} times in 100`;
  const interval = low === null || low === undefined ? ''
    : ` The Sharpe ratio's difference to the same sizing with no direction is likely between ${fixed(low)} and ${fixed(high)}.`;
  return `${base} (p = ${fixed(r.p_value, 2)}: ${luck}.)${interval}`;
}

/** Risk timing, apart from the edge: what holding less when swings are forecast large did
 * against holding the index; nothing for a record made before it was reported. */
function timingWords(r) {
  const t = r && r.risk_timing;
  if (!t) return '';
  return `Risk timing (volatility targeting, no direction) against holding the index: ${t.verdict}.`;
}

/** One line per universe ranking the symbol; nothing for none (or a body stored before ranks). */
function universeRanks(ranks) {
  if (!Array.isArray(ranks) || !ranks.length) return null;
  return h('ul', { 'aria-label': 'Rank in each universe' }, ranks.map((r) => {
    const period = Number(r.horizon_days) > 1 ? `over ${r.horizon_days} days` : 'a day';
    const earned = r.expected_excess_return === null || r.expected_excess_return === undefined ? ''
      : `; its decile earned ${signedPercent(r.expected_excess_return, 2)} ${period} over the universe out of sample`;
    return h('li', { dataset: { testid: 'universe-rank' } },
      `Ranked ${r.rank} of ${r.of} in `,
      h('a', { href: `#/rankings/${encodeURIComponent(r.universe)}` }, r.universe),
      ` on ${r.as_of} (${ordinal(Math.round(Number(r.percentile)))} percentile, decile ${r.decile}${earned}).`,
      r.edge ? ' Its ranker has an edge after costs.' : ' Its ranker has no proven edge after costs.');
  }));
}

/** 1 -> "1st", 12 -> "12th", 98 -> "98th". */
function ordinal(n) {
  const tens = n % 100;
  const suffix = tens >= 11 && tens <= 13 ? 'th' : { 1: 'st', 2: 'nd', 3: 'rd' }[n % 10] || 'th';
  return `${n}${suffix}`;
}

function fixed(value, digits = 2) {
  return value === null || value === undefined ? '—' : Number(value).toFixed(digits);
}

function recordTable(r) {
  const oos = r.out_of_sample || {};
  const period = oos.start && oos.end ? `${oos.start} to ${oos.end}` : 'period not recorded';
  return h('table', { dataset: { testid: 'record' } },
    h('caption', {}, `Out-of-sample record, ${period}`),
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col' }, 'Measure'),
      h('th', { scope: 'col', class: 'num' }, 'Following the signal'),
      h('th', { scope: 'col', class: 'num' }, 'Same sizing, no direction'),
      h('th', { scope: 'col', class: 'num' }, 'Holding the index (buy and hold, always up)'))),
    h('tbody', {},
      h('tr', {}, h('th', { scope: 'row' }, 'Sharpe ratio after costs'),
        h('td', { class: 'num' }, fixed(r.sharpe)), h('td', { class: 'num' }, fixed(r.vol_target_sharpe)),
        h('td', { class: 'num' }, fixed(r.buy_and_hold_sharpe))),
      h('tr', {}, h('th', { scope: 'row' }, 'Average exposure'),
        h('td', { class: 'num' }, percent(r.mean_exposure, 0)), h('td', { class: 'num' }, '—'),
        h('td', { class: 'num' }, '100%')),
      h('tr', {}, h('th', { scope: 'row' }, 'Direction accuracy'),
        h('td', { class: 'num' }, percent(r.accuracy)), h('td', { class: 'num' }, '—'),
        h('td', { class: 'num' }, percent(r.always_up_accuracy)))));
}
