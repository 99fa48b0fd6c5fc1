// Unit tests of the dashboard's order book client (web/book.js): its CRC-32, the checksum text
// of docs/PROTOCOL.md "Order books", a copy applying resets and deltas at a depth, and the
// session's ops (subscribe, unsubscribe, resync, resume) over a stand-in connection. Plain Node,
// no server, no browser; zlib's crc32 is the reference for ours.
//
//   node --test tests/browser/book.test.mjs

import assert from "node:assert/strict";
import { test } from "node:test";
import zlib from "node:zlib";

import { BookSession, decimalsOf } from "../../web/book.js";
import { bookChecksum, checksumText, ClientBook, crc32 } from "../../web/client/book.js";

// --- CRC-32 ---

test("crc32 of the contract's example is zlib's", () => {
  const text = "187.25:100:187.3:5:187.2:0.5:187.35:12";
  assert.equal(crc32(text), 4035929231);
  assert.equal(crc32(text), zlib.crc32(text));
});

test("crc32: the standard check value, empty input, bytes and strings alike", () => {
  assert.equal(crc32("123456789"), 0xcbf43926);
  assert.equal(crc32(""), 0);
  assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
  assert.equal(crc32("é€"), zlib.crc32("é€")); // UTF-8 bytes, as zlib hashes them
});

test("crc32 agrees with zlib on random bytes of many lengths", () => {
  let seed = 12345;
  const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 16) & 0xff;
  for (let len = 0; len < 300; len += 7) {
    const bytes = Uint8Array.from({ length: len }, rand);
    const ours = crc32(bytes);
    assert.equal(ours, zlib.crc32(bytes), `length ${len}`);
    assert.ok(Number.isInteger(ours) && ours >= 0 && ours < 2 ** 32);
  }
});

// --- the checksum text ---

test("checksum text interleaves bids and asks, best first", () => {
  // The PROTOCOL.md example text.
  const bids = [[100, 10], [99.5, 11]];
  const asks = [[100.5, 20], [101, 21]];
  assert.equal(checksumText(bids, asks), "100:10:100.5:20:99.5:11:101:21");
  assert.equal(bookChecksum(bids, asks), zlib.crc32("100:10:100.5:20:99.5:11:101:21"));
  // Uneven sides: the levels that exist.
  assert.equal(checksumText([[3, 1], [2, 1], [1, 1]], [[4, 2]]), "3:1:4:2:2:1:1:1");
  assert.equal(checksumText([], [[4, 2], [5, 3]]), "4:2:5:3");
  assert.equal(checksumText([], []), "");
});

test("checksum text: only the top ten per side; numbers in plain shortest decimal", () => {
  const bids = Array.from({ length: 12 }, (_, i) => [100 - i, 1]);
  const text = checksumText(bids, []);
  assert.equal(text.split(":").length, 20);
  assert.ok(text.endsWith("91:1"));
  assert.equal(checksumText([[0.0000001, 1e21]], [[187.3, 0.5]]), "0.0000001:1000000000000000000000:187.3:0.5");
  assert.equal(checksumText([[0.1 + 0.2, 5]], []), "0.30000000000000004:5");
});

// --- the client copy ---

const ev = (seq, bids, asks, { reset = false, checksum } = {}) => ({
  type: "book",
  ch: "book:X",
  seq,
  ts: 0,
  reset,
  bids,
  asks,
  checksum,
});

/** An event carrying the checksum of the book it leads to (as the server computes it). */
function withSum(e, after) {
  return { ...e, checksum: bookChecksum(after.bids, after.asks) };
}

test("a reset sets the whole book; deltas set and remove levels; checksums agree", () => {
  const book = new ClientBook(10);
  const snap = ev(5, [[187.25, 100], [187.2, 0.5]], [[187.3, 5], [187.35, 12]], { reset: true, checksum: 4035929231 });
  assert.deepEqual(book.apply(snap), { ok: true });
  assert.equal(book.seq, 5);
  assert.equal(book.checksumText(), "187.25:100:187.3:5:187.2:0.5:187.35:12");
  assert.equal(book.checksum(), 4035929231);

  // A new size, a removal (size 0), a new level; order within a delta does not matter.
  const after = { bids: [[187.25, 80], [187.2, 0.5]], asks: [[187.35, 12], [187.4, 3]] };
  const r = book.apply(withSum(ev(6, [[187.25, 80]], [[187.4, 3], [187.3, 0]]), after));
  assert.deepEqual(r, { ok: true });
  assert.deepEqual(book.levels(), after);
  assert.equal(book.checksum(), zlib.crc32(book.checksumText()));

  // A reset clears what was there first.
  const fresh = { bids: [[10, 1]], asks: [] };
  assert.deepEqual(book.apply(withSum(ev(9, fresh.bids, [], { reset: true }), fresh)), { ok: true });
  assert.deepEqual(book.levels(), fresh);
  assert.equal(book.seq, 9);
});

test("the copy keeps its depth: a level pushed out goes, and a deeper one can come back", () => {
  const book = new ClientBook(3);
  const three = { bids: [[10, 1], [9, 1], [8, 1]], asks: [[11, 1], [12, 1], [13, 1]] };
  assert.ok(book.apply(withSum(ev(1, three.bids, three.asks, { reset: true }), three)).ok);
  // A better bid pushes 8 out (the server also sends 8 with size 0; here it does not, and the
  // copy still keeps three).
  const pushed = { bids: [[10.5, 2], [10, 1], [9, 1]], asks: three.asks };
  assert.ok(book.apply(withSum(ev(2, [[10.5, 2]], []), pushed)).ok);
  assert.deepEqual(book.levels(), pushed);
  // The best bid goes: the server's view brings 8 back into the top three.
  const back = { bids: [[10, 1], [9, 1], [8, 4]], asks: three.asks };
  assert.ok(book.apply(withSum(ev(3, [[10.5, 0], [8, 4]], []), back)).ok);
  assert.deepEqual(book.levels(), back);
  // A reset deeper than the depth is cut to it, best first.
  const deep = ev(4, [[1, 1], [5, 1], [3, 1], [4, 1]], [[9, 1], [6, 1], [7, 1], [8, 1]], { reset: true });
  const cut = { bids: [[5, 1], [4, 1], [3, 1]], asks: [[6, 1], [7, 1], [8, 1]] };
  assert.ok(book.apply(withSum(deep, cut)).ok);
  assert.deepEqual(book.levels(), cut);
});

test("a checksum mismatch gives the copy up until a reset", () => {
  const book = new ClientBook(10);
  const one = { bids: [[10, 1]], asks: [[11, 1]] };
  assert.ok(book.apply(withSum(ev(1, one.bids, one.asks, { reset: true }), one)).ok);
  // The server's book had another level the copy never heard of: its checksum says so.
  const r = book.apply({ ...ev(2, [[10, 2]], []), checksum: bookChecksum([[10, 2], [9, 5]], [[11, 1]]) });
  assert.equal(r.ok, false);
  assert.match(r.reason, /checksum mismatch at seq 2/);
  assert.equal(book.synced, false);
  // Nothing more is applied to it...
  const next = book.apply(ev(3, [[10, 3]], []));
  assert.deepEqual(next, { ok: false, reason: "delta without a snapshot" });
  // ...until a reset.
  const two = { bids: [[10, 3], [9, 5]], asks: [[11, 1]] };
  assert.ok(book.apply(withSum(ev(4, two.bids, two.asks, { reset: true }), two)).ok);
  assert.equal(book.synced, true);
});

test("seq: jumps are applied unless contiguous is asked for; going back is never explained", () => {
  const one = { bids: [[10, 1]], asks: [[11, 1]] };
  const snap = withSum(ev(1, one.bids, one.asks, { reset: true }), one);
  const moved = { bids: [[10, 2]], asks: [[11, 1]] };
  const jump = withSum(ev(7, [[10, 2]], []), moved);

  const narrow = new ClientBook(10); // a narrower depth or a throttle: net deltas, seq jumps
  narrow.apply(snap);
  assert.ok(narrow.apply(jump).ok);
  assert.equal(narrow.seq, 7);
  const back = narrow.apply(withSum(ev(6, [[10, 1]], []), one));
  assert.equal(back.ok, false);
  assert.match(back.reason, /seq went back from 7 to 6/);

  const full = new ClientBook(10, { contiguous: true });
  full.apply(snap);
  const gap = full.apply(jump);
  assert.equal(gap.ok, false);
  assert.match(gap.reason, /seq gap: 1 to 7/);
  assert.equal(full.synced, false);
});

test("an empty snapshot is an empty book; malformed events are refused", () => {
  const book = new ClientBook(10);
  book.empty(0);
  assert.equal(book.synced, true);
  assert.equal(book.checksumText(), "");
  const first = { bids: [[1.5, 2]], asks: [] };
  assert.ok(book.apply(withSum(ev(1, first.bids, [], { reset: true }), first)).ok);
  for (const bad of [
    ev(2, null, []),
    ev(2, [[1, "2"]], []),
    ev(2, [[1]], []),
    { ...ev(2, [], []), seq: "2" },
  ]) {
    const b = new ClientBook(10);
    b.apply(withSum(ev(1, first.bids, [], { reset: true }), first));
    assert.deepEqual(b.apply(bad), { ok: false, reason: "malformed event" });
  }
});

test("the ladder prints prices with the decimals they need, past binary residue", () => {
  assert.equal(decimalsOf([14514 * 0.01, 145.86, 145.9]), 2); // 145.14000000000001
  assert.equal(decimalsOf([100, 101]), 0);
  assert.equal(decimalsOf([0.0005, 1.5]), 4);
  assert.equal(decimalsOf([1 / 3]), 8);
  assert.equal(decimalsOf([]), 0);
});

// --- the session, over a stand-in connection and view ---

function session() {
  const sent = [];
  let nextId = 1;
  let up = true;
  const conn = {
    send(op) {
      if (!up) return 0;
      const id = nextId++;
      sent.push({ ...op, id });
      return id;
    },
  };
  const view = {
    root: { dataset: {} },
    renders: 0,
    shown: null,
    status(sym, text, state) {
      this.sym = sym;
      this.text = text;
      this.root.dataset.state = state;
    },
    resyncs(n) {
      this.resyncCount = n;
    },
    show(book) {
      this.shown = book;
    },
  };
  const epoch = 1764070000123456;
  // As app.js builds it: `from` with the page's epoch.
  const subscribeOp = (channels, from, extra = {}) => {
    const op = { op: "subscribe", channels, ...extra };
    if (Object.keys(from).length) Object.assign(op, { from, epoch });
    return op;
  };
  const s = new BookSession(view, { conn, subscribeOp, depth: 10 });
  return { s, sent, view, epoch, down: () => (up = false), upAgain: () => (up = true) };
}

const snapOf = (ch, seq, levels) => ({
  type: "snapshot",
  ch,
  seq,
  data: levels ? [{ ...withSum(ev(seq, levels.bids, levels.asks, { reset: true }), levels), ch }] : [],
});

test("session: select subscribes at depth 10 and unsubscribes the previous symbol", () => {
  const { s, sent, view } = session();
  s.select("AAPL");
  assert.deepEqual(sent, [{ op: "subscribe", channels: ["book:AAPL"], depth: 10, id: 1 }]);
  assert.equal(view.root.dataset.state, "loading");
  s.select("MSFT");
  assert.deepEqual(sent.slice(1), [
    { op: "unsubscribe", channels: ["book:AAPL"], id: 2 },
    { op: "subscribe", channels: ["book:MSFT"], depth: 10, id: 3 },
  ]);
  // A straggler of the old channel is counted, not applied.
  const one = { bids: [[10, 1]], asks: [[11, 1]] };
  s.snapshot(snapOf("book:AAPL", 3, one));
  assert.equal(s.stats.stale, 1);
  assert.equal(s.book.synced, false);
  assert.equal(s.debug().received["book:AAPL"], 1);
  // Back to AAPL: a delta of the first subscription still in flight is dropped, not a resync.
  s.select("AAPL");
  s.event({ ...ev(4, [[10, 2]], []), ch: "book:AAPL", checksum: 1 });
  assert.equal(s.stats.resyncs, 0);
  assert.equal(s.stats.ignored, 1);
  s.snapshot(snapOf("book:AAPL", 4, one));
  assert.equal(s.book.synced, true);
  assert.equal(s.stats.stale, 1);
});

test("session: an empty snapshot shows no book; the first event makes it live", () => {
  const { s, view } = session();
  s.select("AAPL");
  s.snapshot(snapOf("book:AAPL", 0, null));
  assert.equal(view.root.dataset.state, "empty");
  assert.equal(view.text, "no book");
  const one = { bids: [[10, 1]], asks: [[11, 1]] };
  s.event({ ...withSum(ev(1, one.bids, one.asks, { reset: true }), one), ch: "book:AAPL" });
  assert.equal(view.root.dataset.state, "live");
  assert.equal(s.lastChecksum, s.book.checksum());
});

test("session: a mismatch asks for a fresh snapshot and applies nothing else until it comes", () => {
  const { s, sent, view } = session();
  s.select("AAPL");
  const one = { bids: [[10, 1]], asks: [[11, 1]] };
  s.snapshot(snapOf("book:AAPL", 5, one));
  assert.equal(view.root.dataset.state, "live");
  s.event({ ...ev(6, [[10, 2]], []), ch: "book:AAPL", checksum: 1 });
  assert.equal(s.stats.resyncs, 1);
  assert.equal(view.resyncCount, 1);
  assert.equal(view.root.dataset.state, "resync");
  assert.deepEqual(sent.at(-1), { op: "subscribe", channels: ["book:AAPL"], depth: 10, snapshot: 1, id: 2 });
  // A delta in flight is dropped (not a second resync); the fresh snapshot restores the copy.
  s.event({ ...ev(7, [[10, 3]], []), ch: "book:AAPL", checksum: 2 });
  assert.equal(s.stats.resyncs, 1);
  assert.equal(s.stats.ignored, 1);
  const two = { bids: [[10, 3], [9, 1]], asks: [[11, 1]] };
  s.snapshot(snapOf("book:AAPL", 7, two));
  assert.equal(view.root.dataset.state, "live");
  assert.deepEqual(s.book.levels(), two);
  // Its errors are the panel's, not the page's notice.
  assert.equal(s.error({ type: "error", id: 2, code: "not_subscribed", message: "x" }), true);
  assert.equal(s.error({ type: "error", id: 99, code: "bad_request", message: "x" }), false);
});

test("session: a refused resync is asked again a second later", async () => {
  const { s, sent, view } = session();
  s.select("AAPL");
  s.snapshot(snapOf("book:AAPL", 5, { bids: [[10, 1]], asks: [[11, 1]] }));
  s.event({ ...ev(6, [[10, 2]], []), ch: "book:AAPL", checksum: 1 });
  const resync = sent.at(-1);
  assert.equal(s.error({ type: "error", id: resync.id, code: "rate_limited", message: "slow down" }), true);
  assert.match(view.text, /rate_limited/);
  await new Promise((r) => setTimeout(r, 1200));
  assert.deepEqual(sent.at(-1), { ...resync, id: resync.id + 1 });
});

test("session: a reconnect resumes from the copy's seq with the epoch, or afresh without a copy", () => {
  const { s, sent, epoch, down, upAgain } = session();
  s.select("AAPL");
  const one = { bids: [[10, 1]], asks: [[11, 1]] };
  s.snapshot(snapOf("book:AAPL", 5, one));
  s.onOpen();
  assert.deepEqual(sent.at(-1), { op: "subscribe", channels: ["book:AAPL"], depth: 10, from: { "book:AAPL": 5 }, epoch, id: 2 });
  // A copy given up while the socket was down: the next socket subscribes without `from`.
  down();
  s.event({ ...ev(6, [[10, 2]], []), ch: "book:AAPL", checksum: 1 });
  upAgain();
  s.onOpen();
  assert.deepEqual(sent.at(-1), { op: "subscribe", channels: ["book:AAPL"], depth: 10, id: 3 });
});
