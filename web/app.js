// tickcast dashboard: wires the connection, the symbol table and the chart together, and is the
// reference client of docs/PROTOCOL.md (batched frames, per-channel seq, resume with `from`,
// `reset` snapshots, `throttle_ms`, token auth for the private `portfolio` channel, and the
// selected symbol's order book with its checksums).

import { Connection } from "./client/connection.js";
import { SeqTracker, splitChannel } from "./client/seq.js";
import { SymbolTable } from "./table.js";
import { SymbolChart } from "./chart.js";
import { PortfolioSession, PortfolioView } from "./portfolio.js";
import { BookSession, BookView } from "./book.js";

const $ = (id) => document.getElementById(id);
const HISTORY_BARS = 600; // the latest bars asked from REST (`order=desc`): ten minutes of 1 s bars
const LATENCY_WINDOW_MS = 10_000;
const BOOK_DEPTH = 10; // levels per side of the ladder (`"depth"` of the book subscribe)

const seqs = new SeqTracker();
let selected = null; // symbol shown in the chart
let interval = "1s"; // the chart's candles: `bars.<interval>` live, `/bars?interval=` history
let epoch = null; // server run our seqs belong to (from its acks); sent back with `from`
let historyToken = 0; // invalidates a REST answer for a symbol no longer selected

// Counters behind the header and the debug object.
const stats = { events: 0, resets: 0, gaps: 0, windowEvents: 0, eps: 0 };
const latency = []; // [receivedAtMs, latencyMs], the last LATENCY_WINDOW_MS

const table = new SymbolTable($("symbols"), { onSelect: select });
const chart = new SymbolChart($("chart"), $("legend"));
// `?encoding=msgpack` on the page asks the server for MessagePack frames; JSON otherwise.
const encoding = new URLSearchParams(location.search).get("encoding") === "msgpack" ? "msgpack" : "json";
const conn = new Connection(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`, {
  onOpen: subscribeAll,
  onEvent: handle,
  onState: showState,
  encoding,
});
const portfolio = new PortfolioSession(new PortfolioView($("portfolio")), {
  conn,
  resumeOp: () => subscribeOp(["portfolio"], seqs.fromOne("portfolio") ?? {}),
  forget: () => seqs.last.delete("portfolio"),
});
// The book keeps its own seq (its copy's): it resumes only from a copy its checksums trust.
const book = new BookSession(new BookView($("book"), BOOK_DEPTH), { conn, subscribeOp, depth: BOOK_DEPTH });

// --- subscriptions ---

const throttle = () => Number($("throttle").value);

/**
 * On every (re)connect: ask for the symbols, then resume every channel from its last seq; the
 * portfolio authenticates the new socket first and resumes once that is acked.
 */
function subscribeAll() {
  conn.send({ op: "list" });
  subscribeTicks();
  if (selected) subscribeSymbol(selected);
  book.onOpen();
  portfolio.onOpen();
}

/** A subscribe op that resumes from `from` (seqs of the run named by the page's `epoch`). */
function subscribeOp(channels, from, extra = {}) {
  const op = { op: "subscribe", channels, ...extra };
  if (Object.keys(from).length) Object.assign(op, { from, epoch });
  return op;
}

function subscribeTicks() {
  conn.send(subscribeOp(["ticks:*"], seqs.fromFor("ticks"), { throttle_ms: throttle() }));
}

/** The chart's bar channel kind, `bars.1s` ... `bars.1d`. */
const barsKind = () => `bars.${interval}`;

function subscribeSymbol(sym) {
  const channels = [`${barsKind()}:${sym}`, `indicators:${sym}`];
  conn.send(subscribeOp(channels, { ...seqs.fromOne(channels[0]), ...seqs.fromOne(channels[1]) }));
}

function select(sym) {
  if (selected) {
    conn.send({ op: "unsubscribe", channels: [`${barsKind()}:${selected}`, `indicators:${selected}`] });
    seqs.retain((ch) => splitChannel(ch)[1] !== selected || ch.startsWith("ticks:"));
  }
  selected = sym;
  $("chart-title").textContent = sym;
  chart.clear();
  subscribeSymbol(sym);
  book.select(sym);
  loadHistory(sym);
}

/**
 * Another candle interval: the old bar channel is dropped and forgotten, the new one subscribed
 * (live first, so no bar closes unseen between the two), then its history loaded. The seam needs
 * no care beyond that: candles are keyed by `start`, so a bar both in the history and live is
 * drawn once (the live one wins).
 */
function pickInterval(value) {
  if (value === interval) return;
  if (selected) {
    const old = `${barsKind()}:${selected}`;
    conn.send({ op: "unsubscribe", channels: [old] });
    seqs.last.delete(old);
  }
  interval = value;
  chart.clear();
  if (!selected) return;
  conn.send(subscribeOp([`${barsKind()}:${selected}`], {}));
  loadHistory(selected);
}

/**
 * Backfills the latest candles of the chart's interval from REST (`order=desc`: the newest
 * `HISTORY_BARS`, not the first ones the server stored); any failure leaves the chart on live
 * bars only.
 */
async function loadHistory(sym) {
  const token = ++historyToken;
  const status = $("chart-status");
  status.textContent = "loading history…";
  let text;
  try {
    const q = `interval=${interval}&limit=${HISTORY_BARS}&order=desc`;
    const res = await fetch(`/api/v1/bars/${encodeURIComponent(sym)}?${q}`, {
      headers: { accept: "application/json" },
    });
    if (token !== historyToken) return;
    if (!res.ok) {
      text = `history unavailable (HTTP ${res.status}): live bars only`;
    } else {
      const body = await res.json();
      if (token !== historyToken) return;
      // `{"bars": [...]}` or a plain array (the REST resource's shape is not final yet).
      const bars = Array.isArray(body) ? body : [body?.bars, body?.data, body?.items].find(Array.isArray);
      text = bars
        ? `${chart.history(bars)} bars of history, then live`
        : "history in an unknown shape: live bars only";
    }
  } catch {
    if (token !== historyToken) return;
    text = "history unavailable (network): live bars only";
  }
  status.textContent = text;
  // The overlays are computed over 1 s closes: drawn (history and live) over 1 s candles only.
  if (interval === "1s") {
    const rows = await loadIndicatorHistory(sym, token);
    if (token === historyToken && rows !== null) status.textContent = `${text}; ${rows} indicator rows`;
  }
}

/**
 * Backfills the SMA/EMA/RSI overlays from the stored indicator history (the newest
 * `HISTORY_BARS` rows, one per closed 1 s bar). Returns the rows read, or null when the history
 * could not be read (the overlays then fill from live events only).
 */
async function loadIndicatorHistory(sym, token = historyToken) {
  try {
    const q = `limit=${HISTORY_BARS}&order=desc`;
    const res = await fetch(`/api/v1/indicators/${encodeURIComponent(sym)}?${q}`, {
      headers: { accept: "application/json" },
    });
    if (token !== historyToken || !res.ok) return null;
    const body = await res.json();
    if (token !== historyToken || !Array.isArray(body?.indicators)) return null;
    chart.indicatorHistory(body.indicators);
    return body.indicators.length;
  } catch {
    return null;
  }
}

// --- events ---

function handle(ev) {
  stats.events++;
  stats.windowEvents++;
  switch (ev.type) {
    case "snapshot":
      return snapshot(ev);
    case "tick":
    case "bar":
    case "indicators":
      return live(ev);
    case "book":
      return book.event(ev);
    case "portfolio":
      // Stragglers after the panel disconnected are not tracked.
      if (!portfolio.active) return;
      seqs.observe(ev.ch, ev.seq);
      return portfolio.event(ev);
    case "list":
      return table.ensure(ev.symbols ?? []);
    case "error":
      // The portfolio's own ops (auth, its subscribe) answer in its panel.
      if (portfolio.error(ev) || book.error(ev)) return;
      return showNotice(`server: ${ev.code}: ${ev.message}`, "error");
    case "ack":
      // A restarted server has a new epoch: the seqs we hold are then answered with `reset`.
      if (typeof ev.epoch === "number") epoch = ev.epoch;
      portfolio.ack(ev);
      book.ack(ev);
      return;
    default:
      return; // ack, pong, and kinds this page does not show
  }
}

/**
 * A snapshot starts (or restarts) a channel: with `reset` the events after our `from` are gone
 * (the server restarted, or we were away longer than its ring holds), so the channel's local
 * state is dropped and rebuilt from the snapshot.
 */
function snapshot(ev) {
  if (ev.ch === "portfolio") {
    if (!portfolio.active) return;
    // Each portfolio event is the whole state: a reset loses nothing, so it needs no notice.
    seqs.last.set(ev.ch, ev.seq);
    return portfolio.snapshot(ev);
  }
  // A book snapshot is one reset event, the whole book: like the portfolio's, its `reset` loses
  // nothing (a resume at a narrower depth is always answered that way) and needs no notice.
  if (ev.ch.startsWith("book:")) return book.snapshot(ev);
  const [kind, sym] = splitChannel(ev.ch);
  const data = Array.isArray(ev.data) ? ev.data : [];
  if (kind !== "ticks" && sym !== selected) return;
  if (ev.reset) {
    stats.resets++;
    showNotice(
      "The server no longer held the events this page missed (it restarted or we were away too long): " +
        "state was reset from fresh snapshots.",
      "reset",
    );
  }
  seqs.last.set(ev.ch, ev.seq);
  if (kind === "ticks") {
    if (ev.reset) table.reset(sym);
    for (const t of data) table.tick(sym, t.price, t.seq);
    return;
  }
  if (kind === barsKind()) {
    if (ev.reset) {
      chart.clear();
      loadHistory(sym);
    }
    for (const b of data) chart.bar(b);
  } else if (kind === "indicators" && interval === "1s") {
    if (ev.reset) {
      chart.clearIndicators();
      loadIndicatorHistory(sym);
    }
    for (const i of data) chart.indicators(i);
  }
}

function live(ev) {
  const [kind, sym] = splitChannel(ev.ch);
  // Stragglers of a symbol just unselected: not tracked, or a later re-select would resume them.
  if (kind !== "ticks" && sym !== selected) return;
  stats.gaps += seqs.observe(ev.ch, ev.seq) > 0 ? 1 : 0;
  // Same-host latency: ts is ns since the epoch at ingest (or computation).
  const now = Date.now();
  latency.push([now, now - Number(ev.ts) / 1e6]);
  if (kind === "ticks") table.tick(sym, ev.price, ev.seq);
  else if (sym === selected && kind === barsKind()) chart.bar(ev);
  // Indicators are computed over 1 s closes: drawn over 1 s candles only.
  else if (sym === selected && kind === "indicators" && interval === "1s") chart.indicators(ev);
}

// --- header: state, events/s, latency ---

function showState({ state, detail }) {
  const el = $("conn");
  el.dataset.state = state;
  el.textContent = detail ? `${state}: ${detail}` : state;
}

function showNotice(text, kind) {
  const n = $("notice");
  n.dataset.kind = kind;
  $("notice-text").textContent = text;
  n.hidden = false;
}

function percentile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

let lastStatsAt = performance.now();
setInterval(() => {
  const now = performance.now();
  stats.eps = (stats.windowEvents * 1000) / (now - lastStatsAt);
  stats.windowEvents = 0;
  lastStatsAt = now;
  const cutoff = Date.now() - LATENCY_WINDOW_MS;
  let drop = 0;
  while (drop < latency.length && latency[drop][0] < cutoff) drop++;
  latency.splice(0, drop);
  const sorted = latency.map((l) => l[1]).sort((a, b) => a - b);
  const ms = (v) => (v === undefined ? "–" : `${v.toFixed(v < 10 ? 1 : 0)} ms`);
  $("eps").textContent = stats.eps.toFixed(0);
  $("p50").textContent = ms(percentile(sorted, 0.5));
  $("p99").textContent = ms(percentile(sorted, 0.99));
}, 1000);

// --- controls ---

$("throttle").addEventListener("change", () => subscribeTicks());
$("interval").addEventListener("change", (e) => pickInterval(e.target.value));
$("notice-close").addEventListener("click", () => ($("notice").hidden = true));
$("pf-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = $("pf-key");
  const key = input.value;
  input.value = ""; // not kept in the DOM either; the session holds it in memory
  portfolio.connect(key);
});
$("pf-disconnect").addEventListener("click", () => portfolio.disconnect());

// The first symbol is selected as soon as the table has one.
const firstRow = new MutationObserver(() => {
  if (table.order.length) {
    firstRow.disconnect();
    table.select(0);
  }
});
firstRow.observe(table.tbody, { childList: true });

// A small read-only view for tests and curious users (`__tickcast` in the console).
window.__tickcast = {
  get state() {
    return $("conn").dataset.state;
  },
  get rows() {
    return table.order.length;
  },
  get filled() {
    return table.filled();
  },
  get selected() {
    return selected;
  },
  get interval() {
    return interval;
  },
  get throttle() {
    return throttle();
  },
  get reconnects() {
    return conn.reconnects;
  },
  get encoding() {
    return conn.encoding;
  },
  get frames() {
    return { ...conn.frames };
  },
  get stats() {
    return { ...stats, latencySamples: latency.length };
  },
  get chart() {
    return chart.counts();
  },
  get closes() {
    return { ...conn.closes };
  },
  get book() {
    return book.debug();
  },
  get portfolio() {
    return {
      state: $("portfolio").dataset.state,
      user: portfolio.authedUser,
      seq: seqs.last.get("portfolio") ?? null,
      renders: portfolio.view.renders,
      ...portfolio.stats,
    };
  },
};

conn.connect();
$("symbols").focus();
