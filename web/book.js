// The order book panel: the selected symbol's `book:SYM` channel (docs/PROTOCOL.md "Order
// books"), held as a client copy that applies every `book` event exactly as the contract says,
// checks each event's CRC-32 against the copy, and asks for a fresh snapshot when they disagree;
// drawn as a depth ladder (asks above, bids below, the touch in the middle).

import { plainNumber } from "./portfolio.js";

// --- CRC-32 and the book checksum ---

/** CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), as zlib's `crc32`: one entry a byte. */
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

const utf8 = new TextEncoder();

/** The CRC-32 of a string (its UTF-8 bytes) or of bytes, as an unsigned 32-bit number. */
export function crc32(data) {
  const bytes = typeof data === "string" ? utf8.encode(data) : data;
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Levels per side the checksum covers. */
export const CHECKSUM_LEVELS = 10;

/**
 * The text the checksum is taken of: for i in 0..9 the i-th bid then the i-th ask, each one that
 * exists written `price:size`, joined by `:`; numbers as their shortest plain decimal.
 * `bids` and `asks` are `[price, size]` levels, best first.
 */
export function checksumText(bids, asks) {
  const parts = [];
  for (let i = 0; i < CHECKSUM_LEVELS; i++) {
    for (const level of [bids[i], asks[i]]) {
      if (level) parts.push(`${plainNumber(level[0])}:${plainNumber(level[1])}`);
    }
  }
  return parts.join(":");
}

/** The checksum a book event carries for a book whose sides are `bids` and `asks`. */
export function bookChecksum(bids, asks) {
  return crc32(checksumText(bids, asks));
}

// --- the client copy ---

/** Is `l` a `[price, size]` level of finite numbers? */
const isLevel = (l) => Array.isArray(l) && Number.isFinite(l[0]) && Number.isFinite(l[1]);

/**
 * One symbol's book as a subscriber holds it: `depth` levels per side.
 *
 * `apply(ev)` takes a `book` event and answers what became of it:
 * - `{ok: true}`: applied, and the copy's checksum is the event's;
 * - `{ok: false, reason}`: the copy can no longer be trusted (a checksum mismatch, a delta
 *   without a snapshot to apply it to, a seq that went backwards, or, when `contiguous`, a jump
 *   in seq): the caller gets a fresh snapshot (a `reset` event) and nothing else is applied
 *   until one comes.
 *
 * A seq jump is expected on a subscription with a `throttle_ms` (it gets net deltas): there the
 * checksum is what tells a lost update. `contiguous` says every seq must follow the last: an
 * unthrottled subscription at any depth gets every seq (an event outside its depth as an empty
 * delta), so a jump there means it fell behind.
 */
export class ClientBook {
  constructor(depth, { contiguous = false } = {}) {
    this.depth = depth;
    this.contiguous = contiguous;
    this.bids = new Map(); // price -> size
    this.asks = new Map();
    this.seq = 0;
    this.synced = false; // holds a book a reset started (or the empty book of an empty snapshot)
    this.sorted = null; // {bids, asks} best first, until the next change
  }

  /** Forgets everything: the copy waits for a reset. */
  clear() {
    this.bids.clear();
    this.asks.clear();
    this.seq = 0;
    this.synced = false;
    this.sorted = null;
  }

  /** The empty book at `seq` (a snapshot with no data: the symbol has no book yet). */
  empty(seq) {
    this.clear();
    this.seq = seq;
    this.synced = true;
  }

  apply(ev) {
    const bids = Array.isArray(ev.bids) ? ev.bids : null;
    const asks = Array.isArray(ev.asks) ? ev.asks : null;
    if (!bids || !asks || !bids.every(isLevel) || !asks.every(isLevel) || !Number.isInteger(ev.seq)) {
      this.synced = false;
      return { ok: false, reason: "malformed event" };
    }
    if (ev.reset) {
      this.bids.clear();
      this.asks.clear();
    } else if (!this.synced) {
      return { ok: false, reason: "delta without a snapshot" };
    } else if (ev.seq <= this.seq) {
      this.synced = false;
      return { ok: false, reason: `seq went back from ${this.seq} to ${ev.seq}` };
    } else if (this.contiguous && ev.seq !== this.seq + 1) {
      this.synced = false;
      return { ok: false, reason: `seq gap: ${this.seq} to ${ev.seq}` };
    }
    for (const [price, size] of bids) setLevel(this.bids, price, size);
    for (const [price, size] of asks) setLevel(this.asks, price, size);
    this.sorted = null;
    this.trim();
    this.seq = ev.seq;
    this.synced = true;
    if (typeof ev.checksum === "number" && ev.checksum !== this.checksum()) {
      this.synced = false;
      return { ok: false, reason: `checksum mismatch at seq ${ev.seq}` };
    }
    return { ok: true };
  }

  /** Keeps the `depth` best levels per side (a deeper one may come back into view later). */
  trim() {
    const { bids, asks } = this.levels();
    for (const [price] of bids.slice(this.depth)) this.bids.delete(price);
    for (const [price] of asks.slice(this.depth)) this.asks.delete(price);
    if (bids.length > this.depth || asks.length > this.depth) this.sorted = null;
  }

  /** Both sides as `[price, size]` arrays, best first (bids high to low, asks low to high). */
  levels() {
    if (!this.sorted) {
      this.sorted = {
        bids: [...this.bids].sort((a, b) => b[0] - a[0]),
        asks: [...this.asks].sort((a, b) => a[0] - b[0]),
      };
    }
    return this.sorted;
  }

  /** The checksum text of the copy (for tests: zlib's crc32 of it must be the checksum). */
  checksumText() {
    const { bids, asks } = this.levels();
    return checksumText(bids, asks);
  }

  checksum() {
    return crc32(this.checksumText());
  }
}

function setLevel(side, price, size) {
  if (size === 0) side.delete(price);
  else side.set(price, size);
}

// --- the view ---

/**
 * Decimals enough to print every price of the ladder alike (at most 8). A price on a cent grid
 * may carry binary residue (145.87000000000001): within a relative 1e-12 it counts as printed.
 */
export function decimalsOf(prices) {
  for (let d = 0; d < 8; d++) {
    if (prices.every((p) => Math.abs(Number(p.toFixed(d)) - p) <= Math.abs(p) * 1e-12)) return d;
  }
  return 8;
}

/**
 * The panel's DOM: a status line and a fixed ladder of `depth` ask rows, the touch, and `depth`
 * bid rows. Renders at most once per animation frame, whatever the event rate.
 */
export class BookView {
  constructor(root, depth) {
    const q = (sel) => root.querySelector(sel);
    this.root = root;
    this.depth = depth;
    this.titleEl = q(".book-sym");
    this.statusEl = q(".book-status");
    this.resyncsEl = q(".book-resyncs");
    this.table = q("table");
    this.tbody = q("tbody");
    this.frameQueued = false;
    this.renders = 0;
    this.book = null; // what the next frame draws
    this.askRows = [];
    this.bidRows = [];
    const row = (side, i) => {
      const tr = document.createElement("tr");
      tr.className = side;
      tr.dataset.level = String(i);
      const price = tr.insertCell();
      price.className = "num price";
      const size = tr.insertCell();
      size.className = "num size";
      const bar = tr.insertCell();
      bar.className = "bar";
      bar.setAttribute("aria-hidden", "true");
      bar.append(document.createElement("span"));
      return tr;
    };
    // Asks: the worst at the top, the best just above the middle.
    for (let i = depth - 1; i >= 0; i--) this.askRows[i] = row("ask", i);
    const mid = document.createElement("tr");
    mid.className = "touch";
    const cell = mid.insertCell();
    cell.colSpan = 3;
    this.touchEl = cell;
    for (let i = 0; i < depth; i++) this.bidRows[i] = row("bid", i);
    this.tbody.replaceChildren(...this.askRows.slice().reverse(), mid, ...this.bidRows);
  }

  /** The symbol shown, and the status line (`state`: idle, loading, live, empty, resync, error). */
  status(sym, text, state) {
    this.titleEl.textContent = sym ?? "–";
    this.statusEl.textContent = text;
    this.root.dataset.state = state;
    this.table.setAttribute(
      "aria-label",
      sym ? `order book of ${sym}: asks above, bids below, best prices next to the spread` : "order book",
    );
  }

  resyncs(n) {
    this.resyncsEl.textContent = n ? `resyncs ${n}` : "";
  }

  /** Draws `book` (a ClientBook, or null for none) on the next frame. */
  show(book) {
    this.book = book;
    if (!this.frameQueued) {
      this.frameQueued = true;
      requestAnimationFrame(() => this.render());
    }
  }

  render() {
    this.frameQueued = false;
    this.renders++;
    const { bids, asks } = this.book ? this.book.levels() : { bids: [], asks: [] };
    const shown = [...bids.slice(0, this.depth), ...asks.slice(0, this.depth)];
    const decimals = decimalsOf(shown.map((l) => l[0]));
    const maxSize = Math.max(0, ...shown.map((l) => l[1]));
    const fill = (rows, levels, side) => {
      rows.forEach((tr, i) => {
        const l = levels[i];
        const [price, size, bar] = tr.cells;
        if (!l) {
          tr.removeAttribute("aria-label");
          tr.classList.add("none");
          price.textContent = size.textContent = "";
          bar.firstChild.style.width = "0";
          return;
        }
        tr.classList.remove("none");
        price.textContent = l[0].toFixed(decimals);
        size.textContent = plainNumber(l[1]);
        bar.firstChild.style.width = `${maxSize > 0 ? (100 * l[1]) / maxSize : 0}%`;
        tr.setAttribute("aria-label", `${side} ${i + 1}: ${price.textContent}, size ${size.textContent}`);
      });
    };
    fill(this.askRows, asks, "ask");
    fill(this.bidRows, bids, "bid");
    if (bids.length && asks.length) {
      const spread = asks[0][0] - bids[0][0];
      const mid = (asks[0][0] + bids[0][0]) / 2;
      this.touchEl.textContent = `spread ${spread.toFixed(decimals)} · mid ${mid.toFixed(decimals + 1)}`;
    } else {
      // Nothing drawn yet (a symbol just selected) says nothing; an empty book says so.
      this.touchEl.textContent = !this.book ? "" : bids.length || asks.length ? "one-sided book" : "no book";
    }
  }
}

// --- the session: one `book:SYM` subscription at a time ---

const RESYNC_RETRY_MS = 1000; // after a refused resync subscribe

/**
 * Follows the selected symbol's book over the dashboard's connection.
 * `conn`: the Connection (send); `subscribeOp(channels, from, extra)`: app.js's op builder,
 * which adds the page's `epoch` to a `from`; `depth`: levels per side subscribed and shown.
 */
export class BookSession {
  constructor(view, { conn, subscribeOp, depth = 10 }) {
    this.view = view;
    this.conn = conn;
    this.subscribeOp = subscribeOp;
    this.depth = depth;
    this.sym = null;
    // Unthrottled: every seq arrives (docs/PROTOCOL.md "Order books"), a jump is a loss.
    this.book = new ClientBook(depth, { contiguous: true });
    this.resyncing = false; // a mismatch asked for a fresh snapshot
    this.waiting = false; // no copy: only a reset (or an empty snapshot) can start one
    this.retryTimer = 0;
    this.opIds = new Set(); // ids of our subscribes (their errors are shown here)
    this.lastChecksum = null; // the checksum of the last event applied
    // events: book events of the selected channel; stale: of another (sent before an
    // unsubscribe took effect); received: book events by channel, stale or not.
    this.stats = { events: 0, resets: 0, resyncs: 0, ignored: 0, stale: 0, lastResync: "" };
    this.received = new Map();
    this.view.status(null, "select a symbol", "idle");
  }

  get ch() {
    return this.sym ? `book:${this.sym}` : null;
  }

  /** A new symbol: unsubscribe the old channel, forget its copy, subscribe the new one. */
  select(sym) {
    if (sym === this.sym) return;
    if (this.sym) this.conn.send({ op: "unsubscribe", channels: [this.ch] });
    this.sym = sym;
    clearTimeout(this.retryTimer);
    this.book.clear();
    this.resyncing = this.waiting = false;
    this.lastChecksum = null;
    this.view.show(null);
    this.subscribe({});
  }

  /** Every (re)connect: resume the channel from the copy's seq (a snapshot if it has none). */
  onOpen() {
    if (!this.sym) return;
    this.subscribe(this.resumeFrom());
  }

  /** A `from` for the channel: the copy's seq while it is trusted, nothing otherwise. */
  resumeFrom() {
    return this.book.synced && this.book.seq > 0 ? { [this.ch]: this.book.seq } : {};
  }

  subscribe(from) {
    // Without `from`, deltas still in flight from an earlier subscription of the channel have
    // nothing to apply to: dropped until the snapshot comes.
    if (!Object.keys(from).length) this.waiting = true;
    this.view.status(this.sym, "loading…", "loading");
    this.track(this.conn.send(this.subscribeOp([this.ch], from, { depth: this.depth })));
  }

  track(id) {
    if (!id) return; // the socket is down: onOpen subscribes again
    this.opIds.add(id);
    if (this.opIds.size > 16) this.opIds.delete(this.opIds.values().next().value);
  }

  /**
   * The copy cannot be trusted: a fresh snapshot is asked for (a re-subscribe naming `snapshot`
   * gets one on the same socket) and nothing but a reset is applied until it comes.
   */
  resync(reason) {
    this.stats.resyncs++;
    this.stats.lastResync = reason;
    this.resyncing = this.waiting = true;
    this.view.resyncs(this.stats.resyncs);
    this.view.status(this.sym, `resyncing (${reason})`, "resync");
    this.requestSnapshot();
  }

  requestSnapshot() {
    this.track(this.conn.send({ op: "subscribe", channels: [this.ch], depth: this.depth, snapshot: 1 }));
  }

  /** Counts a book message; false when it belongs to a channel no longer selected. */
  mine(ch) {
    this.received.set(ch, (this.received.get(ch) ?? 0) + 1);
    if (ch === this.ch) return true;
    this.stats.stale++;
    return false;
  }

  /** The channel's snapshot: one reset event, or none while the symbol has no book. */
  snapshot(ev) {
    if (!this.mine(ev.ch)) return;
    const data = Array.isArray(ev.data) ? ev.data : [];
    if (!data.length) {
      this.book.empty(ev.seq);
      this.resyncing = this.waiting = false;
      this.lastChecksum = null;
      this.showLive();
      this.view.show(this.book);
      return;
    }
    for (const e of data) this.apply(e);
  }

  event(ev) {
    if (!this.mine(ev.ch)) return;
    this.apply(ev);
  }

  apply(ev) {
    this.stats.events++;
    if (this.waiting && !ev.reset) {
      this.stats.ignored++; // a delta for a copy given up, or not started yet
      return;
    }
    if (ev.reset) this.stats.resets++;
    const r = this.book.apply(ev);
    if (!r.ok) return this.resync(r.reason);
    this.lastChecksum = typeof ev.checksum === "number" ? ev.checksum : null;
    this.resyncing = this.waiting = false;
    this.showLive();
    this.view.show(this.book);
  }

  /** The status line of a trusted copy: live, or "no book" while it has no level. */
  showLive() {
    const any = this.book.bids.size > 0 || this.book.asks.size > 0;
    const state = any ? "live" : "empty";
    if (this.view.root.dataset.state !== state) this.view.status(this.sym, any ? "live" : "no book", state);
  }

  /** An `ack` of one of our subscribes: a resume that had nothing to replay leaves the copy live. */
  ack(ev) {
    if (ev.op !== "subscribe" || !this.opIds.has(ev.id)) return false;
    if (this.book.synced && !this.resyncing) this.showLive();
    return true;
  }

  /** An `error` answering one of our subscribes: shown in the panel. True when it was ours. */
  error(ev) {
    if (!ev.id || !this.opIds.has(ev.id)) return false;
    this.view.status(this.sym, `no book: ${ev.code}: ${ev.message}`, "error");
    if (this.resyncing) {
      // The fresh snapshot was refused (rate limited, say): asked again in a while.
      clearTimeout(this.retryTimer);
      const sym = this.sym;
      this.retryTimer = setTimeout(() => {
        if (this.resyncing && this.sym === sym) this.requestSnapshot();
      }, RESYNC_RETRY_MS);
    }
    return true;
  }

  /** The read-only test view. */
  debug() {
    const { bids, asks } = this.book.levels();
    return {
      symbol: this.sym,
      state: this.view.root.dataset.state,
      seq: this.book.seq,
      synced: this.book.synced,
      bids: bids.map((l) => [...l]),
      asks: asks.map((l) => [...l]),
      text: this.book.checksumText(),
      checksum: this.book.checksum(),
      lastChecksum: this.lastChecksum,
      renders: this.view.renders,
      received: Object.fromEntries(this.received),
      ...this.stats,
    };
  }
}
