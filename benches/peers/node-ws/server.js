'use strict';
// Reference Node.js peer for benches/compare.sh: the tickcast v1 WebSocket subset on `ws`.
//
// Speaks GET /ws with ops subscribe (ticks:SYM, ticks:*, indicators:SYM), unsubscribe, ping and
// list; replies ack, one snapshot per concrete ticks channel, then live ticks with per-channel
// seq and ts (ns since the epoch). A synthetic feed makes RATE ticks/s over SYMBOLS symbols in
// BATCH_MS batches. Each event is serialized once and the same string goes to every subscriber;
// wildcard subscribers get one JSON array per batch, also built once. Sockets whose
// bufferedAmount is over MAX_BUFFERED are skipped (the client sees a seq jump).
// throttle_ms on ticks:SYM is honoured by conflation (newest wins, one timer per channel).
// Not implemented (allowed for the peer): `from` resume, throttle on ticks:*, bars, REST,
// indicator events (indicators:SYM subscriptions are acked and stay silent).
//
// Config: --port N --symbols N --rate N --batch-ms N --max-buffered BYTES --host ADDR,
// or env PORT, SYMBOLS, RATE, BATCH_MS, MAX_BUFFERED, HOST. Loopback only.

const http = require('node:http');
const { WebSocketServer } = require('ws');

function opt(name, env, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  if (i > 0 && process.argv[i + 1] !== undefined) return process.argv[i + 1];
  return process.env[env] ?? dflt;
}
const HOST = opt('host', 'HOST', '127.0.0.1');
const PORT = Number(opt('port', 'PORT', 8090));
const NSYM = Number(opt('symbols', 'SYMBOLS', 100));
const RATE = Number(opt('rate', 'RATE', 1000));
const BATCH_MS = Number(opt('batch-ms', 'BATCH_MS', 10));
const MAX_BUFFERED = Number(opt('max-buffered', 'MAX_BUFFERED', 1 << 20));
if (!['127.0.0.1', 'localhost', '::1'].includes(HOST)) throw new Error(`loopback only, not ${HOST}`);

// ns since the epoch as an integer string, without BigInt: timeOrigin + now() is a float of ms
// with sub-µs precision; split it into whole ms and the ns within the ms.
function nowNs() {
  const ms = performance.timeOrigin + performance.now();
  const whole = Math.floor(ms);
  const ns = Math.min(999999, Math.floor((ms - whole) * 1e6));
  return `${whole}${String(ns).padStart(6, '0')}`;
}

// === feed state ===
const symbols = Array.from({ length: NSYM }, (_, i) => `S${String(i).padStart(3, '0')}`);
const state = new Map(symbols.map((s, i) => [s, { seq: 0, price: 50 + i, last: null }]));
const bySymbol = new Map(symbols.map((s) => [s, new Set()])); // ticks:SYM subscribers
const wildcard = new Set(); // ticks:* subscribers
const stats = { ticks: 0, sent: 0, skipped: 0, conns: 0 };

function send(ws, str) {
  if (ws.readyState !== 1) return;
  if (ws.bufferedAmount > MAX_BUFFERED) { stats.skipped++; return; }
  ws.send(str);
  stats.sent++;
}

// Ticks owed follow the wall clock, not the timer count: a late timer makes a bigger batch, so
// the feed rate holds under load instead of quietly dropping.
// Per socket and channel: `null` (unthrottled) or { ms, next, pending, timer } for throttle_ms.
function deliver(ws, th, ev) {
  if (th === null) return send(ws, ev);
  const now = performance.now();
  if (now >= th.next && th.timer === null) { th.next = now + th.ms; return send(ws, ev); }
  th.pending = ev; // newest wins
  if (th.timer === null) {
    th.timer = setTimeout(() => {
      th.timer = null;
      th.next = performance.now() + th.ms;
      const p = th.pending;
      th.pending = null;
      if (p !== null) send(ws, p);
    }, Math.max(0, th.next - now));
  }
}

let carry = 0;
let lastBatch = performance.now();
function batch() {
  const now = performance.now();
  carry += (RATE * (now - lastBatch)) / 1000;
  lastBatch = now;
  const n = Math.floor(carry);
  carry -= n;
  if (n === 0) return;
  const events = new Array(n);
  for (let k = 0; k < n; k++) {
    const sym = symbols[(Math.random() * NSYM) | 0];
    const st = state.get(sym);
    st.seq += 1;
    st.price = Math.max(1, st.price * (1 + (Math.random() - 0.5) * 0.001));
    const size = 1 + ((Math.random() * 500) | 0);
    const side = Math.random() < 0.5 ? 'buy' : 'sell';
    // A template, not JSON.stringify: ts exceeds 2^53 and must stay an exact integer.
    const ev = `{"type":"tick","ch":"ticks:${sym}","seq":${st.seq},"ts":${nowNs()},` +
      `"price":${st.price.toFixed(2)},"size":${size},"side":"${side}"}`;
    st.last = ev;
    events[k] = ev;
    for (const ws of bySymbol.get(sym)) if (!ws.wild) deliver(ws, ws.subs.get(sym), ev);
  }
  stats.ticks += n;
  if (wildcard.size > 0) {
    const frame = n === 1 ? events[0] : `[${events.join(',')}]`;
    for (const ws of wildcard) send(ws, frame);
  }
}
const feedTimer = setInterval(batch, BATCH_MS);

// === protocol ===
const SYM_RE = /^[A-Z0-9._-]{1,32}$/;
const reply = (ws, obj) => send(ws, JSON.stringify(obj));
const snapshot = (sym) => {
  const st = state.get(sym);
  return `{"type":"snapshot","ch":"ticks:${sym}","seq":${st.seq},"data":[${st.last ?? ''}]}`;
};

function subscribe(ws, msg) {
  const chans = Array.isArray(msg.channels) ? msg.channels : null;
  if (!chans) return reply(ws, { type: 'error', id: msg.id, code: 'bad_request', message: 'channels must be an array' });
  for (const ch of chans) {
    const [kind, sym] = String(ch).split(':');
    const known = sym === '*' || state.has(sym);
    if (!(kind === 'ticks' || kind === 'indicators') || !known || !(sym === '*' || SYM_RE.test(sym))) {
      return reply(ws, { type: 'error', id: msg.id, code: 'unknown_channel', message: `no such channel: ${ch}` });
    }
  }
  reply(ws, { type: 'ack', id: msg.id, op: 'subscribe', channels: chans });
  const snaps = [];
  for (const ch of chans) {
    const [kind, sym] = ch.split(':');
    if (kind !== 'ticks') continue; // indicators: ack only
    if (sym === '*') {
      if (!ws.wild) { ws.wild = true; wildcard.add(ws); for (const s of symbols) snaps.push(snapshot(s)); }
    } else if (!ws.subs.has(sym)) {
      const ms = Number(msg.throttle_ms) > 0 ? Number(msg.throttle_ms) : 0;
      ws.subs.set(sym, ms ? { ms, next: 0, pending: null, timer: null } : null);
      bySymbol.get(sym).add(ws);
      if (!ws.wild) snaps.push(snapshot(sym));
    }
  }
  if (snaps.length) send(ws, snaps.length === 1 ? snaps[0] : `[${snaps.join(',')}]`);
}

function unsubscribe(ws, msg) {
  const chans = Array.isArray(msg.channels) ? msg.channels : [];
  for (const ch of chans) {
    const [kind, sym] = String(ch).split(':');
    if (kind !== 'ticks') continue;
    if (sym === '*') { ws.wild = false; wildcard.delete(ws); continue; }
    const th = ws.subs.get(sym);
    if (th) clearTimeout(th.timer);
    if (ws.subs.delete(sym)) bySymbol.get(sym).delete(ws);
  }
  reply(ws, { type: 'ack', id: msg.id, op: 'unsubscribe', channels: chans });
}

function onMessage(ws, data, isBinary) {
  let msg;
  try { msg = JSON.parse(isBinary ? '' : data.toString()); } catch { msg = null; }
  if (!msg || typeof msg !== 'object') return reply(ws, { type: 'error', code: 'bad_request', message: 'malformed json' });
  switch (msg.op) {
    case 'subscribe': return subscribe(ws, msg);
    case 'unsubscribe': return unsubscribe(ws, msg);
    case 'ping': return send(ws, `{"type":"pong"${msg.id === undefined ? '' : `,"id":${JSON.stringify(msg.id)}`},"ts":${nowNs()}}`);
    case 'list': return reply(ws, { type: 'list', id: msg.id, symbols, kinds: ['ticks', 'indicators'] });
    default: return reply(ws, { type: 'error', id: msg.id, code: 'bad_request', message: `unknown op: ${msg.op}` });
  }
}

function drop(ws) {
  wildcard.delete(ws);
  for (const [sym, th] of ws.subs) { if (th) clearTimeout(th.timer); bySymbol.get(sym).delete(ws); }
  ws.subs.clear();
  stats.conns--;
}

// === server ===
const server = http.createServer((req, res) => {
  res.writeHead(req.url === '/healthz' ? 200 : 404, { 'content-type': 'text/plain' });
  res.end(req.url === '/healthz' ? 'ok\n' : 'not found\n');
});
const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024, perMessageDeflate: false });
server.on('upgrade', (req, socket, head) => {
  if (req.url.split('?')[0] !== '/ws') { socket.destroy(); return; }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws));
});
wss.on('connection', (ws) => {
  ws.subs = new Map(); // symbol -> throttle state or null
  ws.wild = false;
  ws.alive = true;
  stats.conns++;
  ws.on('message', (data, isBinary) => onMessage(ws, data, isBinary));
  ws.on('pong', () => { ws.alive = true; });
  ws.on('close', () => drop(ws));
  ws.on('error', () => {});
});
const heartbeat = setInterval(() => {
  for (const ws of wss.clients) {
    if (!ws.alive) { ws.terminate(); continue; }
    ws.alive = false;
    ws.ping();
  }
}, 15000);

function shutdown() {
  clearInterval(feedTimer);
  clearInterval(heartbeat);
  for (const ws of wss.clients) ws.close(1001, 'shutting down');
  server.close();
  console.error(`node-ws peer: ticks=${stats.ticks} sent=${stats.sent} skipped=${stats.skipped}`);
  setTimeout(() => process.exit(0), 500).unref();
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
server.listen(PORT, HOST, () => {
  console.error(`node-ws peer listening on ws://${HOST}:${PORT}/ws symbols=${NSYM} rate=${RATE}/s batch=${BATCH_MS}ms`);
});
