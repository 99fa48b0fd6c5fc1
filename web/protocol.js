// The client side of docs/PROTOCOL.md v1: one WebSocket that reconnects with backoff, frames
// that hold one event or an array of events (JSON text, or MessagePack with `encoding=msgpack`),
// and per-channel `seq` tracking for resume.

import { decode } from "./msgpack.js";

/** Last `seq` seen per concrete channel ("ticks:AAPL" -> 1234). */
export class SeqTracker {
  constructor() {
    this.last = new Map();
  }

  /** Records an event's seq; returns how many events were skipped (0 when contiguous). */
  observe(ch, seq) {
    const prev = this.last.get(ch);
    this.last.set(ch, seq);
    return prev === undefined || seq <= prev ? 0 : seq - prev - 1;
  }

  /** Forgets every channel that `keep(ch)` rejects. */
  retain(keep) {
    for (const ch of this.last.keys()) if (!keep(ch)) this.last.delete(ch);
  }

  /** A `from` object for a subscribe: last seq of every known channel of `kind`. */
  fromFor(kind) {
    const from = {};
    for (const [ch, seq] of this.last) {
      if (ch.startsWith(kind + ":") && seq > 0) from[ch] = seq;
    }
    return from;
  }

  /** Like fromFor, for one concrete channel; undefined when nothing was seen yet. */
  fromOne(ch) {
    const seq = this.last.get(ch);
    return seq > 0 ? { [ch]: seq } : undefined;
  }
}

/** Splits "bars.1s:AAPL" into ["bars.1s", "AAPL"]. */
export function splitChannel(ch) {
  const i = ch.indexOf(":");
  return i < 0 ? [ch, ""] : [ch.slice(0, i), ch.slice(i + 1)];
}

// --- MessagePack frames (docs/PROTOCOL.md, "Encodings") ---

/** The kind codes that lead positional events. */
export const KIND_CODES = Object.freeze({ tick: 1, bar: 2, indicators: 3, portfolio: 4, book: 5 });

/**
 * Turns one message of a MessagePack frame into the object its JSON form parses to: a positional
 * event (`[1, ch, seq, ts, price, size, side, xts]`, `[5, ch, seq, ts, reset, bids, asks,
 * checksum]`, ...) into `{type: "tick", ch, ...}`, `{type: "book", ...}`, a map
 * (ack, error, pong, list, snapshot) into itself, with a snapshot's positional `data` converted
 * the same way. One difference is the contract's: a portfolio event's exact decimals are strings
 * of their digits (`"0.3"`) where JSON has numbers. Returns null for an event of a kind code this
 * client does not know (as the dashboard ignores JSON events of an unknown `type`); throws on a
 * malformed message.
 */
export function fromMsgpack(msg) {
  if (Array.isArray(msg)) return eventFromArray(msg);
  if (msg === null || typeof msg !== "object" || msg instanceof Uint8Array) {
    throw new Error(`msgpack message is neither an array nor a map: ${typeof msg}`);
  }
  if (msg.type !== "snapshot" || !Array.isArray(msg.data)) return msg;
  const data = [];
  for (const ev of msg.data) {
    // Positional per the contract; a map is taken as already in JSON shape.
    const e = Array.isArray(ev) ? eventFromArray(ev) : ev;
    if (e !== null) data.push(e);
  }
  return { ...msg, data };
}

// Fields after the kind code. Longer arrays are accepted (a later server may append fields);
// shorter ones are broken.
const TICK_LEN = 8;
const BAR_LEN = 12;
const INDICATORS_LEN = 5;
const PORTFOLIO_LEN = 5;
const BOOK_LEN = 8;

function eventFromArray(a) {
  const need = (n, type) => {
    if (a.length < n) throw new Error(`msgpack ${type} event has ${a.length} fields, expected ${n}`);
  };
  switch (a[0]) {
    case KIND_CODES.tick:
      need(TICK_LEN, "tick");
      return { type: "tick", ch: a[1], seq: a[2], ts: a[3], price: a[4], size: a[5], side: a[6], xts: a[7] };
    case KIND_CODES.bar:
      need(BAR_LEN, "bar");
      return {
        type: "bar",
        ch: a[1],
        seq: a[2],
        ts: a[3],
        start: a[4],
        open: a[5],
        high: a[6],
        low: a[7],
        close: a[8],
        volume: a[9],
        trades: a[10],
        final: a[11],
      };
    case KIND_CODES.indicators:
      need(INDICATORS_LEN, "indicators");
      return withMap("indicators", a);
    case KIND_CODES.portfolio:
      // `[4, "portfolio", seq, ts, {reason, positions, realized_pnl, unrealized_pnl, trades}]`;
      // its exact decimals stay the strings the server sent (MessagePack has no decimal type).
      need(PORTFOLIO_LEN, "portfolio");
      return withMap("portfolio", a);
    case KIND_CODES.book:
      // `[5, ch, seq, ts, reset, bids, asks, checksum]`, each side an array of `[price, size]`.
      need(BOOK_LEN, "book");
      if (!Array.isArray(a[5]) || !Array.isArray(a[6])) throw new Error("msgpack book event: a side is not an array");
      return { type: "book", ch: a[1], seq: a[2], ts: a[3], reset: a[4], bids: a[5], asks: a[6], checksum: a[7] };
    default:
      if (!Number.isInteger(a[0])) throw new Error("msgpack event does not start with an integer kind code");
      return null;
  }
}

/** `[code, ch, seq, ts, {name: value, ...}]` as `{type, ch, seq, ts, name: value, ...}`. */
function withMap(type, a) {
  const values = a[4];
  if (values === null || typeof values !== "object" || Array.isArray(values) || values instanceof Uint8Array) {
    throw new Error(`msgpack ${type} event: field 4 is not a map`);
  }
  // Spread (not Object.assign, which would run a "__proto__" key as the setter), in the JSON
  // field order; the fixed fields are set again so no key of the map can replace them.
  const ev = { type, ch: a[1], seq: a[2], ts: a[3], ...values };
  ev.type = type;
  ev.ch = a[1];
  ev.seq = a[2];
  ev.ts = a[3];
  return ev;
}

/**
 * The messages of one server frame, in JSON shape: a text frame is JSON (one object or an array
 * of them), a binary frame is a MessagePack array of messages. Throws on a malformed frame.
 *
 * @param {string | ArrayBuffer | ArrayBufferView} data a WebSocket message's `data`
 * @returns {object[]}
 */
export function decodeFrame(data) {
  if (typeof data === "string") {
    const parsed = JSON.parse(data);
    return Array.isArray(parsed) ? parsed : [parsed];
  }
  const msgs = decode(data);
  if (!Array.isArray(msgs)) throw new Error("msgpack frame is not an array of messages");
  const out = [];
  for (const m of msgs) {
    const ev = fromMsgpack(m);
    if (ev !== null) out.push(ev);
  }
  return out;
}

/**
 * A WebSocket that reconnects forever with exponential backoff and jitter.
 * Callbacks: onOpen(), onEvent(event), onState({state, detail}).
 * States: "connecting", "live", "reconnecting".
 * `encoding`: "json" (the default) or "msgpack", which asks the server for binary MessagePack
 * frames; either way onEvent gets the same event objects.
 */
export class Connection {
  constructor(url, { onOpen, onEvent, onState, encoding = "json" }) {
    if (encoding !== "json" && encoding !== "msgpack") throw new Error(`unknown encoding: ${encoding}`);
    this.encoding = encoding;
    if (encoding === "msgpack") {
      const u = new URL(url);
      u.searchParams.set("encoding", "msgpack");
      url = u.href;
    }
    this.url = url;
    this.onOpen = onOpen;
    this.onEvent = onEvent;
    this.onState = onState;
    this.ws = null;
    this.attempt = 0; // attempts since the last connection that stayed up
    this.openedAt = 0;
    this.reconnects = 0; // successful opens after the first
    this.opened = 0;
    this.lastFrameAt = 0;
    this.nextId = 1;
    // Frames received by type, and those that failed to decode (and were dropped).
    this.frames = { text: 0, binary: 0, bad: 0 };
    // Closes by code ("4001": the token expired unrefreshed), for tests and the curious.
    this.closes = {};
    // Backoff bounds (ms).
    this.minDelay = 250;
    this.maxDelay = 5000;
    // A live socket that is silent this long is presumed dead (the feed and the selected
    // symbol's once-a-second indicators keep a healthy socket busy).
    this.silenceMs = 10000;
    setInterval(() => this.watchdog(), 1000);
  }

  connect() {
    this.onState({ state: this.opened ? "reconnecting" : "connecting", detail: "" });
    const ws = new WebSocket(this.url);
    // Binary frames as ArrayBuffers, decoded synchronously (the default Blob needs an async read,
    // which could reorder frames).
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      if (this.opened++) this.reconnects++;
      this.openedAt = performance.now();
      this.lastFrameAt = performance.now();
      this.onState({ state: "live", detail: "" });
      this.onOpen();
    };
    ws.onmessage = (m) => {
      this.lastFrameAt = performance.now();
      // Decoded by the frame's own type, not by what we asked for: a server that predates
      // `encoding` ignores it and keeps sending JSON text, and the page still works.
      const text = typeof m.data === "string";
      this.frames[text ? "text" : "binary"]++;
      let events;
      try {
        events = decodeFrame(m.data);
      } catch {
        this.frames.bad++;
        return; // dropped, as an unparsable JSON frame always was (counted for tests)
      }
      for (const ev of events) this.onEvent(ev);
    };
    // The browser fires "error" then "close"; all the handling is in close.
    ws.onerror = () => {};
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.closes[e.code] = (this.closes[e.code] ?? 0) + 1;
      this.scheduleReconnect(e.code);
    };
  }

  /**
   * Drops the socket and opens a new one at once, without backoff: a fresh connection with
   * nothing of the old one's state (its authentication). onOpen runs again as after a reconnect.
   * While down, the reconnect already scheduled does the same.
   */
  reopen() {
    const ws = this.ws;
    if (!ws) return;
    this.ws = null;
    ws.close(1000, "reopen");
    this.connect();
  }

  scheduleReconnect(code) {
    // Backoff restarts only after a connection that stayed up: a server that accepts and then
    // drops us at once (overload, 1013) keeps getting the growing delay.
    if (this.openedAt && performance.now() - this.openedAt > 5000) this.attempt = 0;
    this.openedAt = 0;
    const base = Math.min(this.maxDelay, this.minDelay * 2 ** this.attempt);
    const delay = Math.round(base * (0.5 + Math.random() / 2));
    this.attempt++;
    const why =
      code === 1001
        ? "server going away"
        : code === 4000
          ? "silent socket"
          : code === 4001
            ? "token expired"
            : `closed (${code})`;
    this.onState({
      state: "reconnecting",
      detail: `${why}; retry ${this.attempt} in ${(delay / 1000).toFixed(1)} s`,
    });
    setTimeout(() => this.connect(), delay);
  }

  watchdog() {
    const ws = this.ws;
    if (ws && ws.readyState === WebSocket.OPEN && performance.now() - this.lastFrameAt > this.silenceMs) {
      // Detach first: a dead peer may never complete the close handshake.
      this.ws = null;
      ws.close(4000, "silent");
      this.scheduleReconnect(4000);
    }
  }

  /** Sends an op with a fresh id; returns the id (or 0 when not connected). */
  send(op) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return 0;
    const id = this.nextId++;
    this.ws.send(JSON.stringify({ ...op, id }));
    return id;
  }
}
