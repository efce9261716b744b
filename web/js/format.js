// Formatting of money, prices, percentages, dates and times for display (en-US, words not colour).

const money2 = new Intl.NumberFormat('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const int = new Intl.NumberFormat('en-US');

/** "97493.15" or 97493.15 -> "97,493.15" (no currency sign; the column says USD). */
export function money(value) {
  if (value === null || value === undefined || value === '') return '—';
  const n = Number(value);
  return Number.isFinite(n) ? money2.format(n) : String(value);
}

/** Integer cents -> "1,234.56". */
export function cents(value) {
  return value === null || value === undefined ? '—' : money(value / 100);
}

export function integer(value) {
  return value === null || value === undefined ? '—' : int.format(Number(value));
}

/** 0.5331 -> "53.3%". */
export function percent(value, digits = 1) {
  if (value === null || value === undefined || value === '') return '—';
  return `${(Number(value) * 100).toFixed(digits)}%`;
}

/** A fraction as a signed percent: 0.00247 -> "+0.247%", null -> "n/a". */
export function signedPercent(value, digits = 3) {
  if (value === null || value === undefined || !Number.isFinite(Number(value))) return 'n/a';
  const n = Number(value) * 100;
  const sign = n > 0 ? '+' : n < 0 ? '−' : '';
  return `${sign}${Math.abs(n).toFixed(digits)}%`;
}

/** A signed change with an arrow and a word, so colour is never the only cue. */
export function change(change, changePercent) {
  const n = Number(change);
  if (!Number.isFinite(n)) return { text: '—', direction: 'flat' };
  const direction = n > 0 ? 'up' : n < 0 ? 'down' : 'flat';
  const arrow = direction === 'up' ? '▲' : direction === 'down' ? '▼' : '■';
  const sign = n > 0 ? '+' : n < 0 ? '−' : '±';
  const pct = changePercent ? ` (${sign}${String(changePercent).replace(/^[-+]/, '')})` : '';
  const word = direction === 'up' ? 'up' : direction === 'down' ? 'down' : 'unchanged';
  return { text: `${arrow} ${word} ${sign}${money(Math.abs(n))}${pct}`, direction };
}

/** A signed amount: "+1,234.56" / "−12.00". */
export function signedMoney(value) {
  const n = Number(value);
  if (value === null || value === undefined || !Number.isFinite(n)) return '—';
  return `${n > 0 ? '+' : n < 0 ? '−' : ''}${money(Math.abs(n))}`;
}

/** Date -> "HH:MM:SS" local time. */
export function clock(date = new Date()) {
  return date.toTimeString().slice(0, 8);
}

/** ISO timestamp -> "2026-11-24 17:20:46" (UTC, as the logs are). */
export function timestamp(iso) {
  if (!iso) return '—';
  return String(iso).replace('T', ' ').replace(/(\.\d+)?Z$/, '');
}

/** "2018-12-31" minus n days, as "YYYY-MM-DD". */
export function daysBefore(isoDate, days) {
  const d = new Date(`${isoDate}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() - days);
  return d.toISOString().slice(0, 10);
}
