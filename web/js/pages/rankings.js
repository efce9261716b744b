// Rankings page: the universes (#/rankings), and one universe's ranking of the day
// (#/rankings/TECH): its out-of-sample record in words and every member's place, best first.

import { h, replace, status, table } from '../dom.js';
import * as api from '../api.js';
import { integer, percent, signedPercent, timestamp } from '../format.js';

const RANKERS = { ridge: 'ridge', hgb: 'gradient-boosted trees' };

export async function renderRankings(main, params, ctx) {
  if (params[0]) await renderUniverse(main, params[0], ctx);
  else await renderUniverses(main, ctx);
}

/** "next-day" for 1, "5-day" for 5. */
function horizonWords(days) {
  return !days || Number(days) === 1 ? 'next-day' : `${days}-day`;
}

function fixed(value, digits = 2) {
  return value === null || value === undefined || !Number.isFinite(Number(value)) ? 'n/a' : Number(value).toFixed(digits);
}

function signedFixed(value, digits) {
  const text = fixed(value, digits);
  return Number(value) > 0 ? `+${text}` : text.replace(/^-/, '−');
}

async function renderUniverses(main, ctx) {
  const loadStatus = status('Loading the universes…');
  const holder = h('div', {});
  main.append(h('h1', {}, 'Rankings'),
    h('p', {}, 'Each universe is a set of stocks ranked against each other after every close: '
      + 'the best-ranked are those its model expects to beat the others over the next day.'),
    loadStatus, holder);
  let universes;
  try {
    ({ universes } = await api.get('/api/universes'));
  } catch (err) {
    if (ctx.alive) loadStatus.textContent = `Could not load the universes: ${err.message}`;
    return;
  }
  if (!ctx.alive) return;
  loadStatus.textContent = `${universes.length} universe${universes.length === 1 ? '' : 's'}.`;
  replace(holder, table({
    caption: 'Universes of stocks ranked against each other',
    testid: 'universes',
    empty: 'No universes yet: create one with `stockpred universe create NAME`, then rank it with '
      + '`stockpred train-universe NAME`.',
    columns: [
      { key: 'name', label: 'Universe', format: (name) => h('a', { href: `#/rankings/${encodeURIComponent(name)}` }, name) },
      { key: 'size', label: 'Members', numeric: true, format: integer },
      { key: 'updated_at', label: 'Members changed (UTC)', format: timestamp },
    ],
    rows: universes,
    rowAttrs: (u) => ({ dataset: { universe: u.name } }),
  }));
}

async function renderUniverse(main, name, ctx) {
  const loadStatus = status('Loading the ranking…');
  const holder = h('div', {});
  main.append(h('h1', {}, `Rankings: ${name}`),
    h('p', {}, h('a', { href: '#/rankings' }, 'All universes')),
    loadStatus, holder);
  let ranking;
  try {
    ranking = await api.get(`/api/universes/${encodeURIComponent(name)}/ranking`);
  } catch (err) {
    if (!ctx.alive) return;
    // No such universe, or none ranked yet: the API's message says what to do.
    loadStatus.textContent = err.status === 404 ? err.message : `Could not load the ranking: ${err.message}`;
    loadStatus.dataset.testid = 'ranking-error';
    return;
  }
  if (!ctx.alive) return;
  const members = ranking.ranking || [];
  loadStatus.textContent = '';
  const model = ranking.model || {};
  replace(holder,
    h('p', { class: 'as-of', dataset: { testid: 'ranking-as-of' } },
      `Ranked on ${ranking.as_of} by a ${RANKERS[model.kind] || model.kind} ranker, `
      + `${horizonWords(ranking.horizon_days)} horizon.`),
    recordSection(ranking.record || {}),
    h('section', { class: 'card', 'aria-labelledby': 'ranking-title' },
      h('h2', { id: 'ranking-title' }, `${members.length} members, best first`),
      h('p', { class: 'hint', dataset: { testid: 'ranking-means' } },
        `Expected excess return: ${ranking.expected_excess_return_means || 'not explained'}.`),
      table({
        caption: `${ranking.universe || name} on ${ranking.as_of}: rank 1, percentile 100 and decile 10 are the best`,
        testid: 'ranking',
        empty: 'No member could be ranked on this day.',
        columns: [
          { key: 'rank', label: 'Rank', numeric: true, format: integer },
          { key: 'symbol', label: 'Symbol', format: (s) => h('a', { href: `#/market/${encodeURIComponent(s)}` }, s) },
          { key: 'percentile', label: 'Percentile', numeric: true, format: (v) => fixed(v, 1) },
          { key: 'decile', label: 'Decile', numeric: true, format: integer },
          { key: 'expected_excess_return', label: `Expected excess return (${Number(ranking.horizon_days) > 1 ? `${ranking.horizon_days} days` : 'a day'})`, numeric: true,
            format: (v) => signedPercent(v) },
        ],
        rows: members,
        rowAttrs: (m) => ({ dataset: { symbol: m.symbol } }),
      }),
      leftOut(ranking)));
}

/** The walk-forward record in words: rank IC, the long-only top decile against equal weight, the edge. */
function recordSection(r) {
  const oos = r.out_of_sample || {};
  const ic = r.ic || {};
  const longOnly = r.long_only || {};
  const equal = r.equal_weight || {};
  const period = oos.start && oos.end ? `, ${oos.start} to ${oos.end}` : '';
  const icWords = ic.ic_mean === null || ic.ic_mean === undefined
    ? 'No rank IC: too few days out of sample.'
    : `Mean daily rank IC ${signedFixed(ic.ic_mean, 3)} (Newey-West t = ${fixed(ic.t_newey_west, 1)} over `
      + `${integer(ic.days)} days; positive on ${percent(ic.positive, 0)} of them): the correlation of `
      + 'the ranking with the next day\'s order of returns.';
  const pWords = `corrected p = ${fixed(r.p_value, 3)}`;
  const edge = r.edge
    ? `Edge: the top-ranked stocks beat the equal-weight universe after costs (${pWords}).`
    : `No edge: no evidence the top-ranked stocks beat the equal-weight universe after costs (${pWords}).`;
  return h('section', { class: 'card', 'aria-labelledby': 'record-title' },
    h('h2', { id: 'record-title' }, `Out-of-sample record${period}`),
    h('div', { dataset: { testid: 'ranking-record' } },
      h('p', { dataset: { testid: 'ranking-ic' } }, icWords),
      h('p', { dataset: { testid: 'ranking-sharpe' } },
        `Holding the top decile (long only): Sharpe ratio ${fixed(longOnly.sharpe)} after costs, `
        + `against ${fixed(equal.sharpe)} for holding the whole universe in equal weights.`)),
    h('p', { class: 'edge', dataset: { testid: 'ranking-edge' } }, edge));
}

function leftOut(ranking) {
  const notRanked = ranking.not_ranked || [];
  const left = Object.entries(ranking.left_out || {});
  return [
    notRanked.length ? h('p', { class: 'muted' },
      `Not ranked (a feature missing on ${ranking.as_of}): ${notRanked.join(', ')}.`) : null,
    left.length ? h('p', { class: 'muted' },
      `Left out of the universe: ${left.map(([s, why]) => `${s} (${why})`).join('; ')}.`) : null,
  ];
}
