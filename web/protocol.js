// The client side of docs/PROTOCOL.md v1: one WebSocket that reconnects with backoff, frames
// that hold one event or an array of events, and per-channel `seq` tracking for resume.

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

/**
 * A WebSocket that reconnects forever with exponential backoff and jitter.
 * Callbacks: onOpen(), onEvent(event), onState({state, detail}).
 * States: "connecting", "live", "reconnecting".
 */
export class Connection {
  constructor(url, { onOpen, onEvent, onState }) {
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
      let parsed;
      try {
        parsed = JSON.parse(m.data);
      } catch {
        return; // the contract says text JSON; ignore anything else
      }
      if (Array.isArray(parsed)) for (const ev of parsed) this.onEvent(ev);
      else this.onEvent(parsed);
    };
    // The browser fires "error" then "close"; all the handling is in close.
    ws.onerror = () => {};
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.scheduleReconnect(e.code);
    };
  }

  scheduleReconnect(code) {
    // Backoff restarts only after a connection that stayed up: a server that accepts and then
    // drops us at once (overload, 1013) keeps getting the growing delay.
    if (this.openedAt && performance.now() - this.openedAt > 5000) this.attempt = 0;
    this.openedAt = 0;
    const base = Math.min(this.maxDelay, this.minDelay * 2 ** this.attempt);
    const delay = Math.round(base * (0.5 + Math.random() / 2));
    this.attempt++;
    const why = code === 1001 ? "server going away" : code === 4000 ? "silent socket" : `closed (${code})`;
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
