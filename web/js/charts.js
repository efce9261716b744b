// Chart helpers over TradingView lightweight-charts v5 (window.LightweightCharts, loaded by a
// classic script): candles with volume and signal markers, a line, and a histogram.

const UP = '#1a7f37';
const DOWN = '#c62828';

function lib() {
  const LC = window.LightweightCharts;
  if (!LC) throw new Error('The chart library did not load');
  return LC;
}

function baseChart(el, height) {
  const LC = lib();
  return LC.createChart(el, {
    autoSize: true,
    height,
    layout: {
      background: { type: 'solid', color: '#ffffff' },
      textColor: '#1f2328',
      attributionLogo: false, // the footer carries the attribution and link
    },
    grid: { vertLines: { color: '#eef0f2' }, horzLines: { color: '#eef0f2' } },
    rightPriceScale: { borderColor: '#c9cdd2' },
    timeScale: { borderColor: '#c9cdd2' },
  });
}

/** The chart's own canvas is decorative for screen readers: the page gives a text summary. */
function holder(el, height) {
  el.setAttribute('aria-hidden', 'true');
  el.style.height = `${height}px`;
}

/**
 * A candlestick chart with volume below. Returns {setBars(bars), setMarkers(markers), update(bar), remove()}.
 * bars: [{date, open, high, low, close, volume}].
 */
export function candleChart(el, height = 360) {
  const LC = lib();
  holder(el, height);
  const chart = baseChart(el, height);
  const candles = chart.addSeries(LC.CandlestickSeries, {
    upColor: UP, downColor: DOWN, borderUpColor: UP, borderDownColor: DOWN,
    wickUpColor: UP, wickDownColor: DOWN,
  });
  candles.priceScale().applyOptions({ scaleMargins: { top: 0.08, bottom: 0.25 } });
  const volume = chart.addSeries(LC.HistogramSeries, {
    priceFormat: { type: 'volume' }, priceScaleId: '', lastValueVisible: false, priceLineVisible: false,
  });
  volume.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
  const markers = LC.createSeriesMarkers(candles, []);

  const volumeBar = (b) => ({ time: b.date, value: Number(b.volume) || 0,
    color: b.close >= b.open ? 'rgba(26,127,55,0.45)' : 'rgba(198,40,40,0.45)' });
  const candle = (b) => ({ time: b.date, open: b.open, high: b.high, low: b.low, close: b.close });

  return {
    setBars(bars) {
      candles.setData(bars.map(candle));
      volume.setData(bars.map(volumeBar));
      chart.timeScale().fitContent();
    },
    /** markers: [{date, action}] -> arrows with the words "buy"/"sell" (colour is not the only cue). */
    setMarkers(list) {
      markers.setMarkers(list.map((m) => (m.action === 'buy'
        ? { time: m.date, position: 'belowBar', shape: 'arrowUp', color: UP, text: 'buy' }
        : { time: m.date, position: 'aboveBar', shape: 'arrowDown', color: DOWN, text: 'sell' })));
    },
    update(bar) {
      candles.update(candle(bar));
      if (bar.volume !== undefined) volume.update(volumeBar(bar));
    },
    remove() {
      chart.remove();
    },
  };
}

/** A small line chart: points [{time: 'YYYY-MM-DD', value}]. -> {remove()} */
export function lineChart(el, points, { height = 200, color = '#0b5cad', format } = {}) {
  const LC = lib();
  holder(el, height);
  const chart = baseChart(el, height);
  const series = chart.addSeries(LC.LineSeries, { color, lineWidth: 2,
    priceFormat: format ? { type: 'custom', formatter: format } : undefined });
  series.setData(points);
  chart.timeScale().fitContent();
  return { remove: () => chart.remove() };
}

/** A histogram: points [{time, value}], negative bars in the "down" colour. -> {remove()} */
export function histogramChart(el, points, { height = 200, format, intraday = false } = {}) {
  const LC = lib();
  holder(el, height);
  const chart = baseChart(el, height);
  if (intraday) chart.applyOptions({ timeScale: { timeVisible: true, secondsVisible: false } });
  const series = chart.addSeries(LC.HistogramSeries, {
    priceFormat: format ? { type: 'custom', formatter: format } : undefined,
  });
  series.setData(points.map((p) => ({ ...p, color: p.value < 0 ? DOWN : UP })));
  chart.timeScale().fitContent();
  return { remove: () => chart.remove() };
}

/** Runs fn, and on a chart failure shows a short message instead (the tables still work). */
export function safely(el, fn) {
  try {
    return fn();
  } catch (err) {
    el.removeAttribute('aria-hidden');
    el.style.height = '';
    el.textContent = `Chart unavailable: ${err.message}`;
    return { remove() {}, setBars() {}, setMarkers() {}, update() {} };
  }
}
