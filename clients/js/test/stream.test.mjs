// The streaming client against the real server (run with --experimental-websocket on Node 20).

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { connect, Rest, ServerError } from "../dist/index.js";
import { Server, sleep, take } from "./server.mjs";

const server = new Server({ tokenTtlS: 3 });
let syms = [];

before(async () => {
  await server.start();
  syms = await server.symbols();
});
after(() => server.stop());

const isTick = (e) => e.type === "tick";

test("subscribe acks, refused channels are listed, typed events flow", async () => {
  const c = await connect(server.ws);
  try {
    const ack = await c.subscribe([`ticks:${syms[0]}`, "ticks:NOPE"]);
    assert.deepEqual(ack.channels, [`ticks:${syms[0]}`]);
    assert.deepEqual(ack.errors.map((e) => e.code), ["unknown_channel"]);
    const [snap] = await take(c, 1, (e) => e.type === "snapshot");
    assert.equal(snap.ch, `ticks:${syms[0]}`);
    const ticks = await take(c, 20, isTick);
    assert.deepEqual(ticks.map((t) => t.seq), ticks.map((_, i) => ticks[0].seq + i));
  } finally {
    c.close();
  }
});

test("refused ops reject with the server's error code", async () => {
  const c = await connect(server.ws);
  try {
    await assert.rejects(c.subscribe("ticks:NOPE"), (e) => e instanceof ServerError && e.code === "unknown_channel");
    await assert.rejects(c.unsubscribe(`ticks:${syms[0]}`), (e) => e instanceof ServerError && e.code === "not_subscribed");
    await assert.rejects(c.auth("nope"), (e) => e instanceof ServerError && e.code === "unauthorized");
  } finally {
    c.close();
  }
});

test("a dropped socket resumes without loss or repeat", async () => {
  const ch = `ticks:${syms[1]}`;
  const gaps = [];
  const c = await connect(server.ws, { onGap: (g) => gaps.push(g) });
  try {
    await c.subscribe([ch, "bars.1s:*"]);
    const seen = await take(c, 50, isTick);
    c.conn.ws.close(); // the socket goes; the client reconnects and resumes
    const later = await take(c, 200, isTick);
    assert.equal(c.reconnects, 1);
    const seqs = [...seen, ...later].map((t) => t.seq);
    assert.deepEqual(seqs, seqs.map((_, i) => seqs[0] + i));
    assert.deepEqual(gaps, []);
  } finally {
    c.close();
  }
});

test("a server killed and restarted is reported as a reset", async () => {
  const own = await new Server().start();
  const c = await connect(own.ws, { maxDelayMs: 1000 });
  try {
    const ch = `ticks:${(await own.symbols())[0]}`;
    await c.subscribe(ch);
    await take(c, 30, isTick);
    const epoch = c.epoch;
    await own.kill();
    await own.start();
    const [reset] = await take(c, 1, (e) => e.type === "reset", 45_000);
    assert.equal(reset.ch, ch);
    assert.notEqual(c.epoch, epoch);
    const next = await take(c, 20, isTick);
    assert.ok(next[0].seq > reset.seq);
    assert.deepEqual(next.map((t) => t.seq), next.map((_, i) => next[0].seq + i));
  } finally {
    c.close();
    await own.stop();
  }
});

for (const encoding of ["json", "msgpack"]) {
  test(`a thousand book deltas are verified (${encoding})`, async () => {
    const c = await connect(server.ws, { encoding });
    try {
      await c.subscribe("book:*");
      await take(c, 1000, (e) => e.type === "book" && !e.reset, 60_000);
      const verified = syms.reduce((n, s) => n + c.book(s).verified, 0);
      assert.ok(verified >= 1000, `verified ${verified}`);
      assert.equal(c.resyncs, 0);
      const { bids, asks } = c.book(syms[0]).levels();
      assert.ok(bids[0][0] < asks[0][0]);
      assert.ok(c.book(syms[0]).spread() > 0);
    } finally {
      c.close();
    }
  });
}

test("a corrupted book is resynced from a fresh snapshot", async () => {
  const c = await connect(server.ws);
  try {
    await c.subscribe(`book:${syms[2]}`);
    await take(c, 5, (e) => e.type === "book");
    const book = c.book(syms[2]);
    book.bids.set(1e9, 1); // a level the server never sent: the next checksum fails
    const [reset] = await take(c, 1, (e) => e.type === "reset");
    assert.match(reset.reason, /^book resync: checksum mismatch/);
    assert.equal(book.resyncs, 1);
    assert.ok(book.synced && !book.bids.has(1e9));
    await take(c, 20, (e) => e.type === "book");
    assert.equal(c.resyncs, 1);
  } finally {
    c.close();
  }
});

test("a token is refreshed on a live connection", async () => {
  const rest = new Rest(server.http, { apiKey: server.addUser("js-refresh") });
  const c = await connect(server.ws, { tokenProvider: () => rest.token() });
  try {
    await c.subscribe(`ticks:${syms[0]}`);
    // Three lifetimes of the 3 s token: unrefreshed, the server would close it with 4001.
    const end = Date.now() + 9000;
    while (Date.now() < end) await take(c, 1, isTick);
    assert.ok(c.stats.tokenRefreshes >= 2, `refreshes ${c.stats.tokenRefreshes}`);
    assert.equal(c.reconnects, 0);
    assert.equal(c.conn.closes[4001], undefined);
  } finally {
    c.close();
  }
});

test("portfolio events keep exact decimals", async () => {
  const rest = new Rest(server.http, { apiKey: server.addUser("js-portfolio") });
  const c = await connect(server.ws, { tokenProvider: () => rest.token() });
  try {
    await c.subscribe("portfolio");
    await rest.recordTrade({ symbol: syms[3], side: "buy", quantity: "0.1", price: "10" });
    await rest.recordTrade({ symbol: syms[3], side: "buy", quantity: "0.2", price: "20" });
    const [pf] = await take(c, 1, (e) => e.type === "portfolio" && e.trades === 2);
    assert.equal(pf.positions[0].quantity, "0.3");
  } finally {
    c.close();
  }
});

test("the REST history of ten pages and more is read through", async () => {
  const rest = new Rest(server.http);
  let pages = 0;
  const orig = rest.request.bind(rest);
  rest.request = (...a) => (pages++, orig(...a));
  let end;
  for (;;) {
    end = Date.now();
    const page = await orig("GET", `/api/v1/ticks/${syms[0]}`, { to: end, limit: 1000 });
    if (page.ticks.length >= 250) break;
    await sleep(500);
  }
  const ticks = [];
  for await (const t of rest.ticks(syms[0], { to: end, pageSize: 20 })) ticks.push(t);
  assert.ok(pages >= 10, `pages ${pages}`);
  assert.ok(ticks.length >= 200);
  const keys = ticks.map((t) => `${t.ts}/${t.seq}`);
  assert.equal(new Set(keys).size, keys.length);
  assert.deepEqual(ticks.map((t) => t.ts), [...ticks.map((t) => t.ts)].sort((a, b) => a - b));
});

test("REST problems are typed; trades and portfolio are exact", async () => {
  const rest = new Rest(server.http, { apiKey: server.addUser("js-rest") });
  await assert.rejects(
    new Rest(server.http).portfolio(),
    (e) => e.name === "ProblemError" && e.status === 401 && e.code === "unauthorized",
  );
  await assert.rejects(rest.book("NOSUCH"), (e) => e.status === 404);
  const t = await rest.recordTrade({ symbol: syms[4], side: "buy", quantity: "0.1", price: "0.1" }, "js-1");
  assert.equal(t.quantity, "0.1");
  const again = await rest.recordTrade({ symbol: syms[4], side: "buy", quantity: "0.1", price: "0.1" }, "js-1");
  assert.equal(again.id, t.id);
  await rest.recordTrade({ symbol: syms[4], side: "buy", quantity: "0.2", price: "0.2" });
  const pf = await rest.portfolio();
  assert.equal(pf.positions.find((p) => p.symbol === syms[4]).quantity, "0.3");
  const book = await rest.book(syms[4], 5);
  assert.ok(book.bids.length <= 5 && book.bids[0][0] < book.asks[0][0]);
});
