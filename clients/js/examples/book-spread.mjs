// Mirrors one symbol's order book (every checksum verified) and prints its spread.
//
//   node --experimental-websocket examples/book-spread.mjs ws://127.0.0.1:8080/ws AAPL [seconds]
//
// (Node >= 22 needs no flag.) A checksum mismatch is answered by a fresh snapshot on its own;
// the resync counter says how often that happened.

import { connect } from "../dist/index.js";

const [url, symbol, seconds] = process.argv.slice(2);
if (!url || !symbol) {
  console.error("usage: book-spread.mjs WS_URL SYMBOL [SECONDS]");
  process.exit(64);
}

const client = await connect(url);
await client.subscribe(`book:${symbol}`, { depth: 10 });
const book = client.book(symbol);
if (seconds) setTimeout(() => client.close(), Number(seconds) * 1000);

let last = 0;
for await (const ev of client) {
  if (ev.type === "reset") console.log(`reset: ${ev.reason}`);
  if (ev.type !== "book" || Date.now() - last < 1000) continue;
  last = Date.now();
  const { bids, asks } = book.levels();
  if (!bids.length || !asks.length) continue;
  console.log(
    `${symbol} bid ${bids[0][1]} @ ${bids[0][0]}  ask ${asks[0][1]} @ ${asks[0][0]}  spread ${book.spread().toPrecision(6)}  ` +
      `(seq ${book.seq}, ${book.verified} checksums verified, ${book.resyncs} resyncs)`,
  );
}
