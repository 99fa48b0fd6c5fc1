// The selected symbol's chart: candles of the picked interval (1 s by default), SMA/EMA overlays
// and an RSI pane (over 1 s candles, from the stored indicator history on load, then live), drawn by
// TradingView's lightweight-charts (vendored, see vendor/lightweight-charts/VERSION).

import {
  createChart,
  CandlestickSeries,
  LineSeries,
  ColorType,
  LineStyle,
} from "./vendor/lightweight-charts/lightweight-charts.standalone.production.mjs";

const MAX_POINTS = 3000; // per series; older points are dropped

/**
 * One series plus the points it shows, kept sorted by time so that out-of-order or repeated
 * updates (history arriving after live bars, a replay after reconnect) never reach the library,
 * which rejects updates older than its last point.
 */
class Buffer {
  constructor(series) {
    this.series = series;
    this.points = [];
  }

  upsert(p) {
    const pts = this.points;
    const last = pts.at(-1);
    if (!last || p.time > last.time) {
      pts.push(p);
      if (pts.length > MAX_POINTS) {
        pts.splice(0, pts.length - MAX_POINTS);
        this.series.setData(pts);
      } else {
        this.series.update(p);
      }
    } else if (p.time === last.time) {
      pts[pts.length - 1] = p;
      this.series.update(p);
    } else {
      this.merge([p]);
    }
  }

  /** Merges many points; those already present (same time) keep their current value. */
  merge(incoming) {
    const byTime = new Map(incoming.map((p) => [p.time, p]));
    for (const p of this.points) byTime.set(p.time, p);
    this.points = [...byTime.values()].sort((a, b) => a.time - b.time).slice(-MAX_POINTS);
    this.series.setData(this.points);
  }

  clear() {
    this.points = [];
    this.series.setData([]);
  }
}

export class SymbolChart {
  constructor(el, legend) {
    this.legend = legend;
    this.chart = createChart(el, {
      autoSize: true,
      layout: {
        background: { type: ColorType.Solid, color: "#11161d" },
        textColor: "#aab4c0",
        panes: { separatorColor: "#2a323d" },
      },
      grid: { vertLines: { color: "#1c232c" }, horzLines: { color: "#1c232c" } },
      timeScale: { timeVisible: true, secondsVisible: true, rightOffset: 3, barSpacing: 9 },
      crosshair: { mode: 0 },
    });
    const line = (color, pane = 0) =>
      new Buffer(
        this.chart.addSeries(
          LineSeries,
          { color, lineWidth: 2, priceLineVisible: false, lastValueVisible: false },
          pane,
        ),
      );
    this.candles = new Buffer(
      this.chart.addSeries(CandlestickSeries, {
        upColor: "#26a69a",
        downColor: "#ef5350",
        borderVisible: false,
        wickUpColor: "#26a69a",
        wickDownColor: "#ef5350",
      }),
    );
    this.sma = line("#f2c94c");
    this.ema = line("#56ccf2");
    this.rsi = line("#bb6bd9", 1);
    for (const level of [30, 70]) {
      this.rsi.series.createPriceLine({
        price: level,
        color: "#4a5563",
        lineStyle: LineStyle.Dashed,
        lineWidth: 1,
        axisLabelVisible: false,
      });
    }
    this.chart.panes()[1]?.setStretchFactor(0.35);
    this.periods = {};
    this.historyPoints = { sma: 0, ema: 0, rsi: 0 };
  }

  /** Empties every series (a new symbol, or a reset channel). */
  clear() {
    for (const b of [this.candles, this.sma, this.ema, this.rsi]) b.clear();
    this.periods = {};
    this.historyPoints = { sma: 0, ema: 0, rsi: 0 };
    this.legend.textContent = "";
  }

  clearIndicators() {
    for (const b of [this.sma, this.ema, this.rsi]) b.clear();
    this.historyPoints = { sma: 0, ema: 0, rsi: 0 };
  }

  /**
   * Indicator history from REST (`GET /api/v1/indicators/{symbol}?order=desc`): rows with the
   * closed 1 s bar's `start` (ms) and the fields as the server named them. Merged under the live
   * points (a point both in the history and live keeps the live value). Returns the points drawn.
   */
  indicatorHistory(rows) {
    const byKind = { sma: [], ema: [], rsi: [] };
    for (const row of rows) {
      const start = Number(row?.start);
      if (!Number.isFinite(start)) continue;
      const time = Math.floor(start / 1000);
      for (const [kind, value] of this.#overlayValues(row)) byKind[kind].push({ time, value });
    }
    let drawn = 0;
    for (const [kind, pts] of Object.entries(byKind)) {
      if (!pts.length) continue;
      this[kind].merge(pts);
      this.historyPoints[kind] += pts.length;
      drawn += pts.length;
    }
    this.#showLegend();
    return drawn;
  }

  /**
   * The overlay values of an `indicators` event or history row: for each of SMA, EMA and RSI the
   * shortest configured period (`sma_20` of `sma_20, sma_50, sma_200`). Periods are read from the
   * field names (`sma_20`, or `sma_3` with other settings), never assumed.
   */
  *#overlayValues(ev) {
    const chosen = {};
    for (const [key, value] of Object.entries(ev)) {
      const m = /^(sma|ema|rsi)_(\d+)$/.exec(key);
      if (!m) continue;
      const period = Number(m[2]);
      if (chosen[m[1]] === undefined || period < chosen[m[1]].period) chosen[m[1]] = { period, value };
    }
    for (const [kind, { period, value }] of Object.entries(chosen)) {
      this.periods[kind] = String(period);
      if (typeof value === "number" && Number.isFinite(value)) yield [kind, value];
    }
  }

  #showLegend() {
    const p = this.periods;
    this.legend.innerHTML =
      `<span class="sma">SMA(${p.sma ?? "?"})</span> <span class="ema">EMA(${p.ema ?? "?"})</span>` +
      ` <span class="rsi">RSI(${p.rsi ?? "?"})</span>`;
  }

  /** History from REST: bars with `start` in ms. */
  history(bars) {
    const pts = bars.map(toCandle).filter(Boolean);
    if (pts.length) this.candles.merge(pts);
    return pts.length;
  }

  /** A `bar` event from `bars.<interval>` (a `"final": false` one updates its candle). */
  bar(ev) {
    const c = toCandle(ev);
    if (c) this.candles.upsert(c);
  }

  /**
   * An `indicators` event. The pipeline computes indicators right after closing the 1 s bars,
   * so an event computed during second T belongs to the bar that started at T-1 (history rows
   * carry that start exactly).
   */
  indicators(ev) {
    const time = Math.floor(Number(ev.ts) / 1e9) - 1;
    for (const [kind, value] of this.#overlayValues(ev)) this[kind].upsert({ time, value });
    this.#showLegend();
  }

  counts() {
    return {
      candles: this.candles.points.length,
      /** Candle times (s), oldest first: unique by construction, for the seam checks. */
      times: this.candles.points.map((p) => p.time),
      sma: this.sma.points.length,
      ema: this.ema.points.length,
      rsi: this.rsi.points.length,
      /** Points of each overlay drawn from the REST indicator history. */
      history: { ...this.historyPoints },
      periods: { ...this.periods },
    };
  }
}

/** A candle in the library's shape (time in seconds), or null for anything malformed. */
function toCandle(b) {
  const start = Number(b.start ?? b.time);
  const c = { open: +b.open, high: +b.high, low: +b.low, close: +b.close };
  if (!Number.isFinite(start) || !Object.values(c).every(Number.isFinite)) return null;
  // `start` is epoch ms on the wire; accept seconds too (values below 1e11 cannot be ms today).
  return { time: Math.floor(start >= 1e11 ? start / 1000 : start), ...c };
}
