// The order book panel: the selected symbol's `book:SYM` channel (docs/PROTOCOL.md "Order
// books"), held as a client copy that applies every `book` event exactly as the contract says,
// checks each event's CRC-32 against the copy, and asks for a fresh snapshot when they disagree;
// drawn as a depth ladder (asks above, bids below, the touch in the middle).

// The copy itself (CRC-32, checksum, ClientBook) is the shared client's (clients/js, compiled
// into web/client/ by its `npm run build`).
import { ClientBook, plainNumber } from "./client/book.js";

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
