// Throughput of one client: events/s decoded from server frames and handed over by async
// iteration (decode, seq tracking, typed event, queue, consumer), JSON and MessagePack, without
// a socket so the client is what is measured.
//
//   npm run build && node --experimental-websocket bench.mjs [events]
//
// Frames are what the server sends for `ticks:*`: batches of 64 tick events (docs/PROTOCOL.md).

import { Client, decodeFrame } from "./dist/index.js";

const BATCH = 64;

// A minimal MessagePack encoder (the client decodes only): what the server's tick frames use.
function pack(v, out) {
  if (v === null) out.push(0xc0);
  else if (typeof v === "string") {
    const b = Buffer.from(v);
    if (b.length < 32) out.push(0xa0 | b.length);
    else out.push(0xd9, b.length);
    out.push(...b);
  } else if (Number.isInteger(v) && v >= 0 && v < 128) out.push(v);
  else if (Number.isInteger(v) && v >= 0) {
    const b = Buffer.alloc(9);
    b[0] = 0xcf;
    b.writeBigUInt64BE(BigInt(v), 1);
    out.push(...b);
  } else if (typeof v === "number") {
    const b = Buffer.alloc(9);
    b[0] = 0xcb;
    b.writeDoubleBE(v, 1);
    out.push(...b);
  } else if (Array.isArray(v)) {
    if (v.length < 16) out.push(0x90 | v.length);
    else out.push(0xdc, v.length >> 8, v.length & 0xff);
    for (const x of v) pack(x, out);
  } else throw new Error(`cannot pack ${typeof v}`);
  return out;
}

function frames(n, encoding) {
  const out = [];
  for (let start = 0; start < n; start += BATCH) {
    const evs = [];
    for (let i = start; i < Math.min(n, start + BATCH); i++) {
      const ch = `ticks:SYM${String(i % 50).padStart(4, "0")}`;
      evs.push([ch, Math.floor(i / 50) + 1, 1764070000123456789 + i, 189.23 + (i % 7) * 0.01, 100 + (i % 3), i % 2 ? "buy" : "sell", 1764070000120000000 + i]);
    }
    if (encoding === "json") {
      out.push(JSON.stringify(evs.map(([ch, seq, ts, price, size, side, xts]) => ({ type: "tick", ch, seq, ts, price, size, side, xts }))));
    } else {
      out.push(new Uint8Array(pack(evs.map((e) => [1, ...e]), [])).buffer);
    }
  }
  return out;
}

async function measure(encoding, n) {
  const data = frames(n, encoding);
  const client = new Client("ws://127.0.0.1:1/ws", { encoding });
  client.subs.set("ticks:*", {});
  const it = client[Symbol.asyncIterator]();
  let got = 0;
  const t0 = performance.now();
  for (const f of data) {
    for (const m of decodeFrame(f)) client.dispatch(m);
    while (client.queue.length) {
      await it.next();
      got++;
    }
  }
  const s = (performance.now() - t0) / 1000;
  client.conn.close();
  if (got !== n) throw new Error(`handed over ${got} of ${n}`);
  return n / s;
}

const n = Number(process.argv[2] ?? 200000);
for (const enc of ["json", "msgpack"]) {
  let best = 0;
  for (let i = 0; i < 3; i++) best = Math.max(best, await measure(enc, n));
  console.log(`node ${enc.padEnd(8)} ${Math.round(best).toLocaleString("en").padStart(10)} events/s (best of 3, ${n} tick events in frames of ${BATCH})`);
}
