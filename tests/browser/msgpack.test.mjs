// Unit tests of the dashboard's MessagePack path (web/msgpack.js, the frame conversion in
// web/protocol.js (book events included, checked with web/book.js), and how web/portfolio.js prints the exact decimals of either encoding), in
// plain Node: no server, no browser, no dependencies.
//
//   node --test tests/browser/msgpack.test.mjs
//
// The fixtures are hand-built bytes, written out per the MessagePack spec
// (https://github.com/msgpack/msgpack/blob/master/spec.md), so they do not depend on any encoder.

import assert from "node:assert/strict";
import { test } from "node:test";

import { decode } from "../../web/client/msgpack.js";
import { decodeFrame, fromMsgpack, KIND_CODES } from "../../web/client/frames.js";
import { fmtExact, signOf } from "../../web/portfolio.js";
import { ClientBook, plainNumber } from "../../web/client/book.js";

// --- fixture helpers: bytes written out, plus the few headers that carry a length ---

/** Concatenates bytes and byte arrays into one Uint8Array. */
function b(...parts) {
  return Uint8Array.from(parts.flatMap((p) => (typeof p === "number" ? [p] : [...p])));
}

/** A fixstr (up to 31 bytes of UTF-8). */
function fixstr(s) {
  const u = new TextEncoder().encode(s);
  assert.ok(u.length < 32);
  return b(0xa0 | u.length, u);
}

/** uint64 0xcf and its 8 big-endian bytes. */
function u64(n) {
  const out = new Uint8Array(9);
  out[0] = 0xcf;
  new DataView(out.buffer).setBigUint64(1, BigInt(n));
  return out;
}

/** float64 0xcb and its 8 big-endian bytes. */
function f64(x) {
  const out = new Uint8Array(9);
  out[0] = 0xcb;
  new DataView(out.buffer).setFloat64(1, x);
  return out;
}

const TS = 1764070000123456789n; // the PROTOCOL.md example: over 2^53
const XTS = 1764070000120000000n;

// --- the decoder, one type family at a time ---

test("nil and bool", () => {
  assert.equal(decode(b(0xc0)), null);
  assert.equal(decode(b(0xc2)), false);
  assert.equal(decode(b(0xc3)), true);
});

test("positive and negative fixint", () => {
  assert.equal(decode(b(0x00)), 0);
  assert.equal(decode(b(0x01)), 1);
  assert.equal(decode(b(0x7f)), 127);
  assert.equal(decode(b(0xff)), -1);
  assert.equal(decode(b(0xe0)), -32);
});

test("uint8/16/32/64", () => {
  assert.equal(decode(b(0xcc, 0x80)), 128);
  assert.equal(decode(b(0xcc, 0xff)), 255);
  assert.equal(decode(b(0xcd, 0x01, 0x00)), 256);
  assert.equal(decode(b(0xcd, 0xff, 0xff)), 65535);
  assert.equal(decode(b(0xce, 0x00, 0x01, 0x00, 0x00)), 65536);
  assert.equal(decode(b(0xce, 0xff, 0xff, 0xff, 0xff)), 4294967295);
  assert.equal(decode(b(0xcf, 0, 0, 0, 0x01, 0, 0, 0, 0)), 4294967296);
  assert.equal(decode(b(0xcf, 0x00, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)), Number.MAX_SAFE_INTEGER);
  assert.equal(decode(b(0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)), 2 ** 64);
});

test("int8/16/32/64", () => {
  assert.equal(decode(b(0xd0, 0xdf)), -33);
  assert.equal(decode(b(0xd0, 0x80)), -128);
  assert.equal(decode(b(0xd0, 0x7f)), 127); // a positive value in a signed type is still valid
  assert.equal(decode(b(0xd1, 0x80, 0x00)), -32768);
  assert.equal(decode(b(0xd2, 0x80, 0x00, 0x00, 0x00)), -2147483648);
  assert.equal(decode(b(0xd2, 0xff, 0xff, 0xff, 0xfe)), -2);
  assert.equal(decode(b(0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)), -1);
  assert.equal(decode(b(0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0)), -(2 ** 63));
  assert.equal(decode(b(0xd3, 0xff, 0xe0, 0, 0, 0, 0, 0, 0x01)), Number.MIN_SAFE_INTEGER);
});

test("64-bit integers past 2^53 decode as JSON.parse reads the same digits", () => {
  const ns = decode(u64(TS));
  assert.equal(typeof ns, "number");
  assert.equal(ns, JSON.parse(TS.toString()));
  assert.equal(ns, Number(TS));
  // Rounded to the nearest double, both ways the same: 2^53 + 1 is not representable.
  assert.equal(decode(u64(2n ** 53n + 1n)), JSON.parse(String(2n ** 53n + 1n)));
  assert.equal(decode(u64(2n ** 53n + 3n)), JSON.parse(String(2n ** 53n + 3n)));
  const neg = new Uint8Array(9);
  neg[0] = 0xd3;
  new DataView(neg.buffer).setBigInt64(1, -TS);
  assert.equal(decode(neg), JSON.parse(`-${TS}`));
});

test("float32 and float64", () => {
  assert.equal(decode(b(0xca, 0x3f, 0xc0, 0x00, 0x00)), 1.5);
  assert.equal(decode(b(0xca, 0x3d, 0xcc, 0xcc, 0xcd)), Math.fround(0.1));
  assert.equal(decode(b(0xcb, 0x40, 0x67, 0xa7, 0x5c, 0x28, 0xf5, 0xc2, 0x8f)), 189.23);
  assert.equal(decode(f64(-0.012)), -0.012);
  assert.ok(Number.isNaN(decode(b(0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0))));
  assert.equal(decode(b(0xcb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0)), Infinity);
});

test("fixstr, str8/16/32, UTF-8", () => {
  assert.equal(decode(b(0xa0)), "");
  assert.equal(decode(b(0xa3, 0x62, 0x75, 0x79)), "buy");
  assert.equal(decode(b(0xa5, 0xc3, 0xa9, 0xe2, 0x82, 0xac)), "é€");
  assert.equal(decode(b(0xa4, 0xf0, 0x9f, 0x93, 0x88)), "📈");
  assert.equal(decode(b(0xd9, 0x03, 0x61, 0x62, 0x63)), "abc");
  const s40 = "x".repeat(40);
  assert.equal(decode(b(0xd9, 40, new TextEncoder().encode(s40))), s40);
  assert.equal(decode(b(0xda, 0x00, 0x02, 0x68, 0x69)), "hi");
  const s300 = "ab".repeat(150);
  assert.equal(decode(b(0xda, 0x01, 0x2c, new TextEncoder().encode(s300))), s300);
  assert.equal(decode(b(0xdb, 0, 0, 0, 0x02, 0x68, 0x69)), "hi");
  assert.equal(decode(b(0xdb, 0, 0, 0, 0)), "");
});

test("bin8/16/32 become Uint8Array copies", () => {
  const frame = b(0xc4, 0x03, 0x01, 0x02, 0x03);
  const bin = decode(frame);
  assert.ok(bin instanceof Uint8Array);
  assert.deepEqual([...bin], [1, 2, 3]);
  frame[2] = 9; // the frame's buffer is not shared
  assert.equal(bin[0], 1);
  assert.deepEqual([...decode(b(0xc4, 0x00))], []);
  assert.deepEqual([...decode(b(0xc5, 0x00, 0x02, 0xaa, 0xbb))], [0xaa, 0xbb]);
  assert.deepEqual([...decode(b(0xc6, 0, 0, 0, 0x01, 0xff))], [0xff]);
});

test("fixarray, array16/32", () => {
  assert.deepEqual(decode(b(0x90)), []);
  assert.deepEqual(decode(b(0x93, 0x01, 0xc0, 0xa1, 0x78)), [1, null, "x"]);
  assert.deepEqual(decode(b(0x92, 0x91, 0x01, 0x90)), [[1], []]);
  assert.deepEqual(decode(b(0xdc, 0x00, 0x02, 0xc3, 0xc2)), [true, false]);
  const sixteen = decode(b(0xdc, 0x00, 0x10, Array(16).fill(0x07)));
  assert.deepEqual(sixteen, Array(16).fill(7));
  assert.deepEqual(decode(b(0xdd, 0, 0, 0, 0x01, 0xff)), [-1]);
  assert.deepEqual(decode(b(0xdd, 0, 0, 0, 0)), []);
});

test("fixmap, map16/32", () => {
  assert.deepEqual(decode(b(0x80)), {});
  assert.deepEqual(decode(b(0x82, 0xa1, 0x61, 0x01, 0xa1, 0x62, 0xc0)), { a: 1, b: null });
  assert.deepEqual(decode(b(0xde, 0x00, 0x01, 0xa1, 0x6b, 0x92, 0x01, 0x02)), { k: [1, 2] });
  assert.deepEqual(decode(b(0xdf, 0, 0, 0, 0x01, 0xa1, 0x6b, 0x81, 0xa1, 0x6a, 0xc3)), { k: { j: true } });
  // Integer keys are named by their digits, as a JSON object would have them.
  assert.deepEqual(decode(b(0x81, 0x07, 0xa1, 0x78)), { 7: "x" });
  // "__proto__" is an own key (as JSON.parse makes it), not the object's prototype.
  const m = decode(b(0x81, 0xa9, new TextEncoder().encode("__proto__"), 0x81, 0xa1, 0x78, 0x01));
  assert.equal(Object.getPrototypeOf(m), Object.prototype);
  assert.deepEqual(Object.keys(m), ["__proto__"]);
  assert.equal(m.x, undefined);
});

test("accepts ArrayBuffer, Uint8Array views and Node Buffers", () => {
  const bytes = b(0xff, 0x92, 0x01, 0x02, 0xff);
  assert.deepEqual(decode(bytes.subarray(1, 4)), [1, 2]);
  assert.deepEqual(decode(bytes.buffer.slice(1, 4)), [1, 2]);
  assert.deepEqual(decode(Buffer.from([0x92, 0x01, 0x02])), [1, 2]);
  assert.throws(() => decode("\x92\x01\x02"), /^Error: msgpack: input is not/);
});

// --- invalid input: every case is a clear Error, never a hang or an out-of-bounds read ---

test("ext types and the reserved 0xc1 are rejected", () => {
  assert.throws(() => decode(b(0xc1)), /msgpack: reserved byte 0xc1 at offset 0/);
  assert.throws(() => decode(b(0x91, 0xc1)), /reserved byte 0xc1 at offset 1/);
  for (const ext of [0xc7, 0xc8, 0xc9, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8]) {
    assert.throws(() => decode(b(ext, 0x01, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)), /msgpack: ext type 0x[cd][0-9] at offset 0 is not supported/);
  }
  // The timestamp extension (-1) too: the server sends times as integers.
  assert.throws(() => decode(b(0xd6, 0xff, 0x5f, 0x5e, 0x10, 0x00)), /ext type 0xd6/);
});

test("every truncation of every type family throws, with the offset", () => {
  const whole = [
    b(0xcc, 0x80),
    b(0xcd, 0x01, 0x00),
    b(0xce, 0, 1, 0, 0),
    u64(TS),
    b(0xd0, 0x80),
    b(0xd1, 0x80, 0x00),
    b(0xd2, 0x80, 0, 0, 0),
    b(0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0),
    b(0xca, 0x3f, 0xc0, 0, 0),
    f64(189.23),
    b(0xa3, 0x62, 0x75, 0x79),
    b(0xd9, 0x03, 0x61, 0x62, 0x63),
    b(0xda, 0x00, 0x02, 0x68, 0x69),
    b(0xdb, 0, 0, 0, 0x02, 0x68, 0x69),
    b(0xc4, 0x02, 0x01, 0x02),
    b(0xc5, 0x00, 0x02, 0x01, 0x02),
    b(0xc6, 0, 0, 0, 0x02, 0x01, 0x02),
    b(0x92, 0x01, 0x02),
    b(0xdc, 0x00, 0x02, 0x01, 0x02),
    b(0xdd, 0, 0, 0, 0x02, 0x01, 0x02),
    b(0x81, 0xa1, 0x61, 0x01),
    b(0xde, 0x00, 0x01, 0xa1, 0x61, 0x01),
    b(0xdf, 0, 0, 0, 0x01, 0xa1, 0x61, 0x01),
  ];
  for (const bytes of whole) {
    decode(bytes); // the whole value is fine
    for (let n = 0; n < bytes.length; n++) {
      assert.throws(() => decode(bytes.subarray(0, n)), /^Error: msgpack: truncated .* at offset \d+/, `0x${bytes[0].toString(16)} cut to ${n} bytes`);
    }
  }
});

test("lengths that claim more than the frame holds fail before allocating", () => {
  // array32 and map32 of 2^32-1 items in a 5-byte frame: an error at once, not a 4-billion loop.
  assert.throws(() => decode(b(0xdd, 0xff, 0xff, 0xff, 0xff)), /truncated array at offset 5: 4294967295 items claimed, 0 bytes left/);
  assert.throws(() => decode(b(0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0)), /truncated map at offset 5/);
  assert.throws(() => decode(b(0xdb, 0xff, 0xff, 0xff, 0xff)), /truncated str at offset 5: needs 4294967295 bytes/);
  assert.throws(() => decode(b(0xc6, 0xff, 0xff, 0xff, 0xff)), /truncated bin/);
  // A map needs two bytes per entry: one key and one value are not enough for two entries.
  assert.throws(() => decode(b(0x82, 0xa0, 0xc0, 0xa0)), /truncated map/);
});

test("other malformed input", () => {
  assert.throws(() => decode(b()), /msgpack: truncated value at offset 0: needs 1 bytes, 0 left/);
  assert.throws(() => decode(b(0x01, 0x02)), /msgpack: 1 trailing bytes after the value at offset 1/);
  assert.throws(() => decode(b(0xa2, 0xc3, 0x28)), /msgpack: str at offset 1 is not valid UTF-8/);
  assert.throws(() => decode(b(0x81, 0xc0, 0x01)), /msgpack: map key at offset 1 is not a string/);
  assert.throws(() => decode(b(0x81, 0x91, 0x01, 0x01)), /map key at offset 1 is not a string/);
  // Nesting past the limit is an Error, not a stack overflow (RangeError).
  assert.throws(() => decode(b(Array(100_000).fill(0x91), 0xc0)), /^Error: msgpack: array nested deeper than 64/);
  assert.deepEqual(decode(b(Array(10).fill(0x91), 0xc0)).flat(Infinity), [null]);
});

// --- frames: positional events and maps in the JSON shape ---

// The PROTOCOL.md examples, as the server's JSON has them (ts, xts as JSON.parse reads them).
const tickJSON = JSON.parse(
  `{"type":"tick","ch":"ticks:AAPL","seq":102,"ts":${TS},"price":189.23,"size":100,"side":"buy","xts":${XTS}}`,
);
const barJSON = JSON.parse(
  '{"type":"bar","ch":"bars.1s:AAPL","seq":7,"ts":1764070001000000000,"start":1764070000000,"open":1.0,"high":1.2,"low":0.9,"close":1.1,"volume":300,"trades":3,"final":true}',
);
const indicatorsJSON = JSON.parse(
  '{"type":"indicators","ch":"indicators:AAPL","seq":7,"ts":1764070001000000000,"sma_20":1.0,"ema_20":1.0,"rsi_14":null,"volatility":0.012,"vwap":1.05}',
);

// Their positional forms, byte by byte (integers in their smallest form, reals as float64).
const tickBytes = b(
  0x98, // fixarray 8
  0x01, // kind: tick
  fixstr("ticks:AAPL"),
  0x66, // seq 102
  u64(TS),
  f64(189.23),
  0x64, // size 100
  fixstr("buy"),
  u64(XTS),
);
const barBytes = b(
  0x9c, // fixarray 12
  0x02, // kind: bar
  fixstr("bars.1s:AAPL"),
  0x07,
  u64(1764070001000000000n),
  0xcf, 0x00, 0x00, 0x01, 0x9a, 0xba, 0xc4, 0x05, 0x80, // start 1764070000000 (ms), uint64
  f64(1.0),
  f64(1.2),
  f64(0.9),
  f64(1.1),
  0xcd, 0x01, 0x2c, // volume 300, uint16
  0x03,
  0xc3, // final: true
);
const indicatorsBytes = b(
  0x95, // fixarray 5
  0x03, // kind: indicators
  fixstr("indicators:AAPL"),
  0x07,
  u64(1764070001000000000n),
  0x85, // fixmap 5
  fixstr("sma_20"),
  f64(1.0),
  fixstr("ema_20"),
  f64(1.0),
  fixstr("rsi_14"),
  0xc0, // not warmed up yet: nil, as JSON's null
  fixstr("volatility"),
  f64(0.012),
  fixstr("vwap"),
  f64(1.05),
);

// The PROTOCOL.md portfolio example. JSON has its exact decimals as numbers, MessagePack as
// strings of their digits; `last_price` (market data) and `trades` are numbers in both.
const portfolioText =
  '{"type":"portfolio","ch":"portfolio","seq":3,"ts":1764070001000000000,"reason":"trade",' +
  '"positions":[{"symbol":"ETH-USD","quantity":0.3,"avg_cost":2450.5,"last_price":2461.25,' +
  '"market_value":738.375,"unrealized_pnl":3.225,"realized_pnl":0}],' +
  '"realized_pnl":0,"unrealized_pnl":3.225,"trades":2}';
const portfolioJSON = JSON.parse(portfolioText);
const portfolioMsgpack = {
  ...portfolioJSON,
  positions: [
    {
      symbol: "ETH-USD",
      quantity: "0.3",
      avg_cost: "2450.5",
      last_price: 2461.25,
      market_value: "738.375",
      unrealized_pnl: "3.225",
      realized_pnl: "0",
    },
  ],
  realized_pnl: "0",
  unrealized_pnl: "3.225",
};
const positionBytes = b(
  0x87, // fixmap 7
  fixstr("symbol"), fixstr("ETH-USD"),
  fixstr("quantity"), fixstr("0.3"),
  fixstr("avg_cost"), fixstr("2450.5"),
  fixstr("last_price"), f64(2461.25),
  fixstr("market_value"), fixstr("738.375"),
  fixstr("unrealized_pnl"), fixstr("3.225"),
  fixstr("realized_pnl"), fixstr("0"),
);
const portfolioBytes = b(
  0x95, // fixarray 5
  0x04, // kind: portfolio
  fixstr("portfolio"),
  0x03,
  u64(1764070001000000000n),
  0x85, // fixmap 5: the JSON keys after ts, in order
  fixstr("reason"), fixstr("trade"),
  fixstr("positions"), 0x91, positionBytes,
  fixstr("realized_pnl"), fixstr("0"),
  fixstr("unrealized_pnl"), fixstr("3.225"),
  fixstr("trades"), 0x02,
);

test("the kind codes are the contract's", () => {
  assert.deepEqual({ ...KIND_CODES }, { tick: 1, bar: 2, indicators: 3, portfolio: 4, book: 5 });
});

// The checksum example of PROTOCOL.md "Order books" as a book event in both encodings.
const bookText =
  '{"type":"book","ch":"book:AAPL","seq":42,"ts":1764070000123456789,"reset":true,' +
  '"bids":[[187.25,100],[187.2,0.5]],"asks":[[187.3,5],[187.35,12]],"checksum":4035929231}';
const bookJSON = JSON.parse(bookText);
const bookBytes = b(
  0x98, // fixarray 8
  0x05, // kind: book
  fixstr("book:AAPL"),
  0x2a, // seq 42
  u64(TS),
  0xc3, // reset: true
  0x92, 0x92, f64(187.25), 0x64, 0x92, f64(187.2), f64(0.5), // bids: [[187.25, 100], [187.2, 0.5]]
  0x92, 0x92, f64(187.3), 0x05, 0x92, f64(187.35), 0x0c, // asks: [[187.3, 5], [187.35, 12]]
  0xce, 0xf0, 0x8f, 0x64, 0x8f, // checksum 4035929231, uint32
);

test("a book frame gives the JSON book event, and a copy of it has its checksum", () => {
  const [event] = decodeFrame(b(0x91, bookBytes));
  assert.deepEqual(event, bookJSON);
  assert.deepEqual(Object.keys(event), Object.keys(bookJSON));
  const copy = new ClientBook(10);
  assert.deepEqual(copy.apply(event), { ok: true });
  assert.equal(copy.checksum(), event.checksum);
  // A delta (reset false, a removal), also inside a snapshot's data.
  const delta = b(0x98, 0x05, fixstr("book:AAPL"), 0x2b, u64(TS), 0xc2, 0x91, 0x92, f64(187.2), 0x00, 0x90, 0x00);
  const snap = fromMsgpack({ type: "snapshot", ch: "book:AAPL", seq: 43, data: [decode(delta)] });
  assert.deepEqual(snap.data, [
    { type: "book", ch: "book:AAPL", seq: 43, ts: Number(TS), reset: false, bids: [[187.2, 0]], asks: [], checksum: 0 },
  ]);
  // Too short, or a side that is not an array.
  assert.throws(() => decodeFrame(b(0x91, 0x97, bookBytes.subarray(1, 1 + bookBytes.length - 6))), /book event has 7 fields, expected 8/);
  assert.throws(() => fromMsgpack([5, "book:A", 1, 2, true, null, [], 0]), /book event: a side is not an array/);
});

test("a tick frame gives the JSON tick, same keys in the same order", () => {
  const events = decodeFrame(b(0x91, tickBytes));
  assert.equal(events.length, 1);
  assert.deepEqual(events[0], tickJSON);
  assert.deepEqual(Object.keys(events[0]), Object.keys(tickJSON));
  assert.equal(events[0].ts, Number(TS)); // lossy past 2^53, exactly as from JSON
  // A tick whose source gave no side: nil, as JSON's null.
  const noSide = b(0x91, 0x98, 0x01, fixstr("ticks:X"), 0x01, u64(TS), f64(2.5), f64(0.5), 0xc0, u64(XTS));
  assert.deepEqual(decodeFrame(noSide)[0], {
    type: "tick", ch: "ticks:X", seq: 1, ts: Number(TS), price: 2.5, size: 0.5, side: null, xts: Number(XTS),
  });
});

test("a bar frame gives the JSON bar", () => {
  const [bar] = decodeFrame(b(0x91, barBytes));
  assert.deepEqual(bar, barJSON);
  assert.deepEqual(Object.keys(bar), Object.keys(barJSON));
});

test("an indicators frame gives the JSON indicators event, names spread in", () => {
  const [ind] = decodeFrame(b(0x91, indicatorsBytes));
  assert.deepEqual(ind, indicatorsJSON);
  assert.deepEqual(Object.keys(ind), Object.keys(indicatorsJSON));
  // An indicator named like a fixed field cannot replace it.
  const clash = b(0x91, 0x95, 0x03, fixstr("indicators:A"), 0x01, 0x02, 0x82, fixstr("ch"), 0x05, fixstr("sma_3"), f64(1.5));
  assert.deepEqual(decodeFrame(clash)[0], { type: "indicators", ch: "indicators:A", seq: 1, ts: 2, sma_3: 1.5 });
});

test("a portfolio frame gives the JSON portfolio event, its decimals as strings", () => {
  const [ev] = decodeFrame(b(0x91, portfolioBytes));
  assert.deepEqual(ev, portfolioMsgpack);
  assert.deepEqual(Object.keys(ev), Object.keys(portfolioJSON));
  assert.deepEqual(Object.keys(ev.positions[0]), Object.keys(portfolioJSON.positions[0]));
  // Nothing in the map replaces the fixed fields.
  const clash = b(0x91, 0x95, 0x04, fixstr("portfolio"), 0x01, 0x02, 0x83,
    fixstr("type"), fixstr("tick"), fixstr("seq"), 0x09, fixstr("trades"), 0x00);
  assert.deepEqual(decodeFrame(clash)[0], { type: "portfolio", ch: "portfolio", seq: 1, ts: 2, trades: 0 });
  // No live price yet: nil, as JSON's null.
  const unpriced = b(0x91, 0x95, 0x04, fixstr("portfolio"), 0x01, 0x02, 0x82,
    fixstr("unrealized_pnl"), 0xc0, fixstr("positions"), 0x90);
  assert.deepEqual(decodeFrame(unpriced)[0], {
    type: "portfolio", ch: "portfolio", seq: 1, ts: 2, unrealized_pnl: null, positions: [],
  });
  // In a snapshot's data too (the channel's snapshot holds its latest event).
  const snap = b(0x91, 0x84, fixstr("type"), fixstr("snapshot"), fixstr("ch"), fixstr("portfolio"),
    fixstr("seq"), 0x03, fixstr("data"), 0x91, portfolioBytes);
  assert.deepEqual(decodeFrame(snap), [{ type: "snapshot", ch: "portfolio", seq: 3, data: [portfolioMsgpack] }]);
  // Malformed: too few fields, or no map where the body belongs.
  assert.throws(() => decodeFrame(b(0x91, 0x94, 0x04, fixstr("portfolio"), 0x01, 0x02)), /portfolio event has 4 fields, expected 5/);
  assert.throws(() => decodeFrame(b(0x91, 0x95, 0x04, fixstr("portfolio"), 0x01, 0x02, 0x90)), /portfolio event: field 4 is not a map/);
  assert.throws(() => decodeFrame(b(0x91, 0x95, 0x04, fixstr("portfolio"), 0x01, 0x02, 0xc4, 0x01, 0x00)), /portfolio event: field 4 is not a map/);
});

test("the panel prints a portfolio the same from either encoding, exactly as sent", () => {
  const fromJson = decodeFrame(portfolioText)[0];
  const fromMp = decodeFrame(b(0x91, portfolioBytes))[0];
  const cells = (ev) => [
    ...["realized_pnl", "unrealized_pnl", "trades"].map((k) => fmtExact(ev[k])),
    ...Object.values(ev.positions[0]).map(fmtExact),
  ];
  assert.deepEqual(cells(fromJson), ["0", "3.225", "2", "ETH-USD", "0.3", "2450.5", "2461.25", "738.375", "3.225", "0"]);
  assert.deepEqual(cells(fromMp), cells(fromJson));
  // 0.1 + 0.2 bought: the server prints 0.3, JSON.parse reads the double nearest it, and its
  // shortest form is the server's digits again.
  assert.equal(fmtExact(JSON.parse("0.3")), "0.3");
  assert.equal(fmtExact(JSON.parse("-1234.000000000001")), "-1234.000000000001");
  // Strings are printed as they came, digits the double could not hold included.
  assert.equal(fmtExact("0.3333333333333333333333333333"), "0.3333333333333333333333333333");
  assert.equal(fmtExact(null), "—");
  assert.equal(fmtExact(undefined), "—");
});

test("decimal numbers print without an exponent", () => {
  assert.equal(plainNumber(1e-7), "0.0000001");
  assert.equal(plainNumber(1.5e-12), "0.0000000000015");
  assert.equal(plainNumber(-2.5e-7), "-0.00000025");
  assert.equal(plainNumber(1e21), "1000000000000000000000");
  assert.equal(plainNumber(-1.25e22), "-12500000000000000000000");
  assert.equal(plainNumber(0.000001), "0.000001");
  assert.equal(plainNumber(123.45), "123.45");
  assert.equal(plainNumber(0), "0");
  assert.equal(plainNumber(-0), "0");
});

test("P&L sign of either encoding's values", () => {
  for (const [v, want] of [
    [3.225, 1], ["3.225", 1], [-0.08, -1], ["-0.08", -1], [0, 0], ["0", 0], ["0.000", 0], ["-0", 0],
    [null, 0], [undefined, 0],
  ]) {
    assert.equal(signOf(v), want, `signOf(${JSON.stringify(v)})`);
  }
});

test("a batched frame keeps its order; the same events as the JSON batch", () => {
  const frame = b(0x93, tickBytes, barBytes, indicatorsBytes);
  const json = `[${JSON.stringify(tickJSON)},${JSON.stringify(barJSON)},${JSON.stringify(indicatorsJSON)}]`;
  assert.deepEqual(decodeFrame(frame), [tickJSON, barJSON, indicatorsJSON]);
  assert.deepEqual(decodeFrame(frame), decodeFrame(json));
  assert.deepEqual(decodeFrame(b(0x90)), []);
});

test("an ack frame is its map, epoch exact", () => {
  // {"type":"ack","id":1,"op":"subscribe","channels":["ticks:AAPL","indicators:*"],"epoch":1764070000123456}
  const ack = b(
    0x91,
    0x85,
    fixstr("type"), fixstr("ack"),
    fixstr("id"), 0x01,
    fixstr("op"), fixstr("subscribe"),
    fixstr("channels"), 0x92, fixstr("ticks:AAPL"), fixstr("indicators:*"),
    fixstr("epoch"), 0xcf, 0x00, 0x06, 0x44, 0x69, 0x8d, 0xb7, 0x5e, 0x40, // uint64 1764070000123456
  );
  const want = { type: "ack", id: 1, op: "subscribe", channels: ["ticks:AAPL", "indicators:*"], epoch: 1764070000123456 };
  assert.deepEqual(decodeFrame(ack), [want]);
  assert.ok(Number.isSafeInteger(decodeFrame(ack)[0].epoch));
});

test("error, pong and list frames are their maps", () => {
  const frame = b(
    0x93,
    0x84, fixstr("type"), fixstr("error"), fixstr("id"), 0x01, fixstr("code"), fixstr("unknown_channel"),
    fixstr("message"), fixstr("no such symbol: AAPLX"),
    0x83, fixstr("type"), fixstr("pong"), fixstr("id"), 0x03, fixstr("ts"), u64(TS),
    0x84, fixstr("type"), fixstr("list"), fixstr("id"), 0x04, fixstr("symbols"), 0x92, fixstr("AAPL"), fixstr("MSFT"),
    fixstr("kinds"), 0x91, fixstr("ticks"),
  );
  assert.deepEqual(decodeFrame(frame), [
    { type: "error", id: 1, code: "unknown_channel", message: "no such symbol: AAPLX" },
    { type: "pong", id: 3, ts: Number(TS) },
    { type: "list", id: 4, symbols: ["AAPL", "MSFT"], kinds: ["ticks"] },
  ]);
});

test("a snapshot's positional data becomes JSON events", () => {
  const tick2 = b(0x98, 0x01, fixstr("ticks:AAPL"), 0x67, u64(TS + 1000n), f64(189.24), 0x32, fixstr("sell"), u64(XTS));
  const snap = b(
    0x91,
    0x85,
    fixstr("type"), fixstr("snapshot"),
    fixstr("ch"), fixstr("ticks:AAPL"),
    fixstr("seq"), 0x67,
    fixstr("data"), 0x92, tickBytes, tick2,
    fixstr("reset"), 0xc3,
  );
  const [ev] = decodeFrame(snap);
  assert.deepEqual(ev, {
    type: "snapshot",
    ch: "ticks:AAPL",
    seq: 103,
    data: [tickJSON, { ...tickJSON, seq: 103, ts: Number(TS + 1000n), price: 189.24, size: 50, side: "sell" }],
    reset: true,
  });
  // An empty snapshot (a channel with no event yet).
  const empty = b(0x91, 0x84, fixstr("type"), fixstr("snapshot"), fixstr("ch"), fixstr("bars.1s:AAPL"), fixstr("seq"), 0x00, fixstr("data"), 0x90);
  assert.deepEqual(decodeFrame(empty), [{ type: "snapshot", ch: "bars.1s:AAPL", seq: 0, data: [] }]);
  // Indicators and bars in snapshots too.
  const mixed = fromMsgpack({ type: "snapshot", ch: "indicators:AAPL", seq: 7, data: [decode(indicatorsBytes)] });
  assert.deepEqual(mixed.data, [indicatorsJSON]);
});

test("fields a later server appends are ignored; unknown kind codes are skipped", () => {
  const longer = b(0x92, 0x99, tickBytes.subarray(1), 0xa1, 0x7a, 0x99, 0x09, Array(8).fill(0xc0));
  assert.deepEqual(decodeFrame(longer), [tickJSON]);
  assert.equal(fromMsgpack([9, "x:Y", 1, 2]), null);
  const snap = fromMsgpack({ type: "snapshot", ch: "x:Y", seq: 1, data: [[9, "x:Y", 1, 2]] });
  assert.deepEqual(snap.data, []);
});

test("malformed messages and frames throw", () => {
  // Not an array of messages.
  assert.throws(() => decodeFrame(b(0x80)), /msgpack frame is not an array of messages/);
  assert.throws(() => decodeFrame(b(0x01)), /not an array of messages/);
  // A bare event where the frame's array belongs: its kind code is not a message.
  assert.throws(() => decodeFrame(tickBytes), /neither an array nor a map/);
  // Too few fields.
  assert.throws(() => decodeFrame(b(0x91, 0x93, 0x01, fixstr("ticks:A"), 0x01)), /tick event has 3 fields, expected 8/);
  assert.throws(() => decodeFrame(b(0x91, 0x9b, barBytes.subarray(1, barBytes.length - 1))), /bar event has 11 fields, expected 12/);
  assert.throws(() => decodeFrame(b(0x91, 0x95, 0x03, fixstr("i:A"), 0x01, 0x02, 0x90)), /indicators event: field 4 is not a map/);
  // A positional message without an integer kind code (a reply encoded as a tuple).
  assert.throws(() => decodeFrame(b(0x91, 0x92, fixstr("ack"), 0x01)), /does not start with an integer kind code/);
  assert.throws(() => decodeFrame(b(0x91, 0xc0)), /neither an array nor a map/);
  // Decoder errors come through, and a frame cut anywhere throws.
  const frame = b(0x93, tickBytes, barBytes, indicatorsBytes);
  for (let n = 0; n < frame.length; n++) assert.throws(() => decodeFrame(frame.subarray(0, n)), /msgpack: truncated/);
});

test("text frames still parse as JSON (one object or an array)", () => {
  assert.deepEqual(decodeFrame(JSON.stringify(tickJSON)), [tickJSON]);
  assert.deepEqual(decodeFrame(`[${JSON.stringify(tickJSON)}]`), [tickJSON]);
  assert.throws(() => decodeFrame("{"), SyntaxError);
});
