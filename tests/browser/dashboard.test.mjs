// Browser test of the dashboard: the real server binary, Debian's headless Chromium, driven by
// playwright-core (no browser download). Builds nothing: run `cargo build --bin tickcast` first.
//
//   SERVER_BIN=target/debug/tickcast node tests/browser/dashboard.test.mjs
//
// Every wait is bounded; the server and the browser are stopped on every exit path; the last
// line is "N passed, M failed" and the exit code is non-zero on any failure.
//
// The server runs on a SQLite file of its own (in a temporary directory, removed at the end)
// with an HS256 secret and a short token lifetime: the portfolio panel exchanges a user's API
// key (`tickcast user add`, run on that file before the server starts) and refreshes its token.

import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import zlib from "node:zlib";
import { chromium } from "playwright-core";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const BIN = path.resolve(ROOT, process.env.SERVER_BIN ?? "target/debug/tickcast");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const SCREENSHOT = path.join(ROOT, "target", "dashboard.png");
const SYMBOLS = 100; // the synthetic feed's default
const OVERALL_LIMIT_MS = 180_000;
const DB_DIR = mkdtempSync(path.join(os.tmpdir(), "tickcast-dashboard-"));
const JWT_SECRET = randomBytes(24).toString("hex"); // 48 bytes; HS256 needs at least 32
const TOKEN_TTL_S = 10; // the panel refreshes at 80 %: several times during the test
const USER = "dash-tester";

let server = null; // the running server process
let browser = null;
const serverLog = [];
let passed = 0;
let failed = 0;

// --- bounded waits and checks ---

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a truthy value or `ms` pass; returns the last value. */
async function waitFor(fn, ms, every = 100) {
  const deadline = Date.now() + ms;
  let v;
  for (;;) {
    try {
      v = await fn();
    } catch (e) {
      v = undefined;
    }
    if (v || Date.now() > deadline) return v;
    await sleep(every);
  }
}

function check(name, ok, detail = "") {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? "ok  " : "FAIL"} ${name}${detail ? ` (${detail})` : ""}`);
  return ok;
}

// --- the server ---

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** The environment of every tickcast command here: this test's database and auth settings. */
function tickcastEnv(extra = {}) {
  const env = { ...process.env };
  delete env.TICKCAST_DATABASE__URL; // DATABASE_URL names it (the two would race)
  return Object.assign(env, {
    DATABASE_URL: `sqlite://${path.join(DB_DIR, "tickcast.db")}?mode=rwc`,
    TICKCAST_AUTH__JWT_HS256_SECRET: JWT_SECRET,
    TICKCAST_AUTH__TOKEN_TTL_S: String(TOKEN_TTL_S),
    RUST_LOG: process.env.RUST_LOG ?? "warn",
    ...extra,
  });
}

/** `tickcast user add NAME` on the test's database; returns the API key it prints. */
function addUser(name) {
  const out = execFileSync(BIN, ["user", "add", name], {
    env: tickcastEnv(),
    timeout: 30_000,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
  const key = out.trim();
  if (!key || /\s/.test(key)) throw new Error(`tickcast user add printed no key: ${JSON.stringify(out)}`);
  return key;
}

async function startServer(port) {
  const env = tickcastEnv({
    TICKCAST_SERVER__LISTEN: `127.0.0.1:${port}`,
    // Short indicator periods: overlays appear within seconds instead of after 20 s of warm-up.
    // Two SMAs as a list (the chart draws the shortest), the others by their v1 keys.
    TICKCAST_PIPELINE__INDICATORS__SMA: "[3, 5]",
    TICKCAST_PIPELINE__EMA_PERIOD: "3",
    TICKCAST_PIPELINE__RSI_PERIOD: "3",
    TICKCAST_PIPELINE__VOLATILITY_PERIOD: "3",
  });
  // The port was just released by the previous server; retry a bind failure briefly.
  for (let attempt = 1; attempt <= 20; attempt++) {
    const child = spawn(BIN, ["serve"], { env, stdio: ["ignore", "pipe", "pipe"] });
    const exited = new Promise((r) => child.once("exit", (code, sig) => r({ code, sig })));
    child.exitedP = exited;
    for (const s of [child.stdout, child.stderr]) {
      s.on("data", (d) => serverLog.push(...String(d).trimEnd().split("\n")));
    }
    child.once("error", (e) => serverLog.push(`spawn failed: ${e.message}`));
    server = child;
    const up = await Promise.race([
      waitFor(async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok, 10_000),
      exited.then(() => false),
    ]);
    if (up) return;
    await stopServer();
    // Only a port still held by the previous server is worth another try.
    if (!serverLog.some((l) => l.includes("cannot bind"))) break;
    serverLog.length = 0;
    await sleep(250);
  }
  throw new Error(`server did not start on port ${port}:\n${serverLog.slice(-20).join("\n")}`);
}

/** SIGTERM (the server closes sockets with 1001), SIGKILL after 5 s. */
async function stopServer() {
  const child = server;
  server = null;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const done = await Promise.race([child.exitedP.then(() => true), sleep(5000).then(() => false)]);
  if (!done) {
    child.kill("SIGKILL");
    await Promise.race([child.exitedP, sleep(2000)]);
  }
}

// Last-resort cleanup: synchronous, for crashes and signals.
process.on("exit", () => {
  if (server && server.exitCode === null) server.kill("SIGKILL");
  rmSync(DB_DIR, { recursive: true, force: true });
});
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    console.log(`interrupted by ${sig}`);
    process.exit(130);
  });
}

// --- the portfolio panel ---

/** Records a trade over REST with the user's key; throws unless it is accepted. */
async function postTrade(base, key, trade) {
  const res = await fetch(`${base}api/v1/portfolio/trades`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify(trade),
    signal: AbortSignal.timeout(10_000),
  });
  if (!res.ok) throw new Error(`trade ${JSON.stringify(trade)}: HTTP ${res.status} ${await res.text()}`);
}

async function enterKey(page, key) {
  await page.fill("#pf-key", key);
  await page.click("#pf-form button[type=submit]");
}

/** What the panel shows: its state, status line, totals and rows, as text and classes. */
function panel(page) {
  return page.evaluate(() => {
    const root = document.getElementById("portfolio");
    const el = (sel) => root.querySelector(sel);
    return {
      state: root.dataset.state,
      status: el(".pf-status").textContent,
      shown: !el(".pf-body").hidden,
      realized: el(".pf-realized").textContent,
      realizedClass: el(".pf-realized").className,
      unrealized: el(".pf-unrealized").textContent,
      unrealizedClass: el(".pf-unrealized").className,
      trades: el(".pf-trades").textContent,
      updated: el(".pf-updated").textContent,
      rows: [...root.querySelectorAll("tbody tr")].map((tr) => ({
        symbol: tr.dataset.symbol ?? null,
        cells: [...tr.cells].map((td) => td.textContent),
        classes: [...tr.cells].map((td) => td.className),
      })),
    };
  });
}

/** One symbol's row of a `panel()` answer, by column; undefined when it has none. */
function row(p, sym) {
  const r = p?.rows.find((x) => x.symbol === sym);
  if (!r) return undefined;
  const [, quantity, avg, last, value, unrealized, realized] = r.cells;
  return { quantity, avg, last, value, unrealized, realized, unrealizedClass: r.classes[5], realizedClass: r.classes[6] };
}

/** A P&L figure is green when positive, red when negative, neither at zero or "—". */
function colouredBySign(text, className) {
  const classes = className.split(/\s+/);
  if (text.startsWith("-")) return classes.includes("down") && !classes.includes("up");
  if (text === "—" || /^0(\.0*)?$/.test(text)) return !classes.includes("up") && !classes.includes("down");
  return classes.includes("up") && !classes.includes("down");
}

// --- the order book panel ---

/** The book panel as drawn: its state, status line, and the ladder's filled rows and touch. */
function ladder(page) {
  return page.evaluate(() => {
    const root = document.getElementById("book");
    const rows = (side) =>
      [...root.querySelectorAll(`#book-ladder tr.${side}:not(.none)`)].map((tr) => ({
        price: tr.cells[0].textContent,
        size: tr.cells[1].textContent,
        bar: tr.cells[2].firstChild.style.width,
        label: tr.getAttribute("aria-label"),
      }));
    return {
      state: root.dataset.state,
      sym: root.querySelector(".book-sym").textContent,
      status: root.querySelector(".book-status").textContent,
      label: root.querySelector("#book-ladder").getAttribute("aria-label"),
      asks: rows("ask"),
      bids: rows("bid"),
      touch: root.querySelector("#book-ladder tr.touch").textContent,
    };
  });
}

/**
 * The selected symbol's ladder shows levels (bounded wait), and the page's copy agrees with the
 * server: its checksum is the last event's, zlib's CRC-32 of its checksum text too, the best bid
 * is below the best ask, and no resync was needed. Returns the symbol's `book` debug view.
 */
async function checkBook(page, label, sym, { minResets = 0 } = {}) {
  const dbg = (expr, arg) => page.evaluate(expr, arg);
  const shown = await waitFor(
    () =>
      Promise.all([dbg(() => window.__tickcast.book), ladder(page)]).then(
        ([b, l]) =>
          b.symbol === sym &&
          b.state === "live" &&
          b.resets >= minResets &&
          b.lastChecksum !== null &&
          l.bids.length > 0 &&
          l.asks.length > 0 && { b, l },
      ),
    10_000,
  );
  const l = shown ? shown.l : await ladder(page);
  check(
    `${label}: the ladder shows ${sym}'s book (asks above, bids below, spread and mid)`,
    shown &&
      l.sym === sym &&
      l.bids.length <= 10 &&
      l.asks.length <= 10 &&
      /^spread \d+(\.\d+)? · mid \d+(\.\d+)?$/.test(l.touch) &&
      l.label.includes(sym) &&
      l.bids.every((r) => /^bid \d+: /.test(r.label) && /^\d+(\.\d+)?%$/.test(r.bar)) &&
      [...l.bids, ...l.asks].some((r) => r.bar === "100%"),
    `${l.asks.length} asks, ${l.bids.length} bids, "${l.touch}", state ${l.state} "${l.status}"`,
  );
  // Several looks over two seconds: each a consistent moment of the page (events are applied
  // synchronously between them).
  let agree = 0;
  let last = null;
  const first = await dbg(() => window.__tickcast.book);
  const problems = [];
  for (let i = 0; i < 5; i++) {
    const b = await dbg(() => window.__tickcast.book);
    last = b;
    const best = b.bids[0]?.[0] < b.asks[0]?.[0];
    if (b.checksum === b.lastChecksum && zlib.crc32(b.text) === b.lastChecksum && best) agree++;
    else problems.push(`seq ${b.seq}: copy ${b.checksum}, event ${b.lastChecksum}, zlib ${zlib.crc32(b.text)}, best ${b.bids[0]?.[0]}/${b.asks[0]?.[0]}`);
    await sleep(400);
  }
  // At most one render per animation frame (and none without news).
  const events = last.events - first.events;
  const renders = last.renders - first.renders;
  check(
    `${label}: the copy's checksum is the last event's (and zlib's), best bid < best ask, no resync`,
    agree === 5 && last.resyncs === 0 && events > 0 && renders <= Math.min(events + 1, 150),
    `${events} events to seq ${last.seq} and ${renders} renders in 2 s, ${last.resets} resets, ${last.resyncs} resyncs` +
      (problems.length ? `; ${problems.join("; ")}` : ""),
  );
  return last;
}

/**
 * Selecting another symbol (keyboard: j, Enter) unsubscribes the old `book:` channel: after the
 * stragglers in flight, no more of its events arrive, while the new one's do.
 */
async function checkBookSwitch(page, label) {
  const dbg = (expr, arg) => page.evaluate(expr, arg);
  const old = await dbg(() => window.__tickcast.book);
  const oldCh = `book:${old.symbol}`;
  await page.focus("#symbols");
  await page.keyboard.press("j");
  await page.keyboard.press("Enter");
  const sym = await waitFor(() => dbg((s) => window.__tickcast.selected !== s && window.__tickcast.selected, old.symbol), 2000);
  const now = await checkBook(page, `${label}: after switching`, sym);
  await sleep(500); // stragglers sent before the unsubscribe was read
  const before = await dbg((ch) => window.__tickcast.book.received[ch] ?? 0, oldCh);
  const newBefore = now.received[`book:${sym}`] ?? 0;
  await sleep(2500);
  const after = await dbg(() => window.__tickcast.book);
  const oldAfter = after.received[oldCh] ?? 0;
  const newAfter = after.received[`book:${sym}`] ?? 0;
  check(
    `${label}: switching from ${old.symbol} to ${sym} unsubscribes ${oldCh}`,
    old.events > 1 && oldAfter === before && newAfter > newBefore && after.symbol === sym,
    `${oldCh}: ${old.events} events while selected, ${before} -> ${oldAfter} after the switch; ` +
      `book:${sym}: ${newBefore} -> ${newAfter}; ${after.stale} stragglers ignored`,
  );
  return sym;
}

// --- the test ---

async function run() {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/`;
  const apiKey = addUser(USER);
  await startServer(port);

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    timeout: 30_000,
  });
  // launch() gives every browser a fresh temporary profile (its own --user-data-dir).
  const page = await browser.newPage({ viewport: { width: 1400, height: 820 } });
  page.setDefaultTimeout(10_000);

  // Console errors, with the time they happened: the outage window may excuse some.
  const consoleErrors = [];
  page.on("console", (m) => {
    if (m.type() === "error") consoleErrors.push({ at: Date.now(), text: m.text(), url: m.location()?.url ?? "" });
  });
  page.on("pageerror", (e) => consoleErrors.push({ at: Date.now(), text: `pageerror: ${e.message}`, url: "" }));

  const dbg = (expr) => page.evaluate(expr);
  // Every history request the page makes, to check what it asks for.
  const historyRequests = [];
  page.on("request", (r) => {
    if (r.url().includes("/api/v1/bars/")) historyRequests.push(r.url());
  });

  // REST history (GET /api/v1/bars) may not exist in this build: then the page must say so in
  // its status line, and Chromium's own "404" log line for that request is the one excused error.
  const probe = await fetch(`http://127.0.0.1:${port}/api/v1/bars/AAPL?interval=1s&limit=1`);
  const historyMissing = probe.status === 404 && (await probe.text()).includes("no such route");
  // Stored indicator history to draw on first load: a few warm SMA(3) rows of the first
  // symbols (the synthetic feed trades every symbol every second, the page charts the first).
  const warmRows = async (sym) => {
    const r = await fetch(`http://127.0.0.1:${port}/api/v1/indicators/${sym}?order=desc&limit=10`);
    const body = r.ok ? await r.json() : {};
    return (body.indicators ?? []).filter((row) => typeof row.sma_3 === "number").length;
  };
  const stored = await waitFor(async () => {
    const r = await fetch(`http://127.0.0.1:${port}/api/v1/symbols`);
    const syms = ((await r.json()).symbols ?? []).map((s) => s.symbol);
    if (syms.length < SYMBOLS) return false;
    const counts = await Promise.all(syms.map(warmRows));
    return counts.every((n) => n >= 4) && counts;
    // A round is one request per symbol: every 2 s stays far below the REST rate limit the
    // page's own requests share (one client address).
  }, 30_000, 2000);
  check("indicator history is stored before the page loads", stored, stored ? `${Math.min(...stored)}+ warm rows per symbol` : "");
  const t0 = Date.now();
  const res = await page.goto(url, { waitUntil: "load" });
  check("page loads", res?.ok() && (await page.title()) === "tickcast", `HTTP ${res?.status()}`);

  const full = await waitFor(
    () => dbg(() => window.__tickcast.rows === 100 && window.__tickcast.filled === 100),
    5000 - (Date.now() - t0),
    50,
  );
  const rows = await page.locator("#symbols tbody tr").count();
  check(`table fills with all ${SYMBOLS} symbols within 5 s`, full && rows === SYMBOLS, `${rows} rows, ${Date.now() - t0} ms`);

  const drew = await waitFor(() => dbg(() => window.__tickcast.chart.candles >= 3), 10_000);
  const nonBlank = await page.evaluate(() => {
    // Distinct colours across every chart canvas: a blank chart has one or two.
    const colours = new Set();
    for (const c of document.querySelectorAll("#chart canvas")) {
      if (!c.width || !c.height) continue;
      const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      for (let i = 0; i < d.length; i += 4 * 7) colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
    }
    return colours.size;
  });
  const counts = await dbg(() => window.__tickcast.chart);
  check("chart draws candles", drew && nonBlank > 10, `${counts.candles} candles, ${nonBlank} colours on canvas`);

  const overlays = await waitFor(
    () => dbg(() => {
      const c = window.__tickcast.chart;
      return c.sma >= 2 && c.ema >= 2 && c.rsi >= 2 && c;
    }),
    15_000,
  );
  const legend = await page.locator("#legend").textContent();
  // The overlays' first points come from the stored history, drawn on first load.
  const fromHistory = await waitFor(
    () => dbg(() => {
      const h = window.__tickcast.chart.history;
      return h.sma >= 4 && h.ema >= 4 && h.rsi >= 4 && h;
    }),
    10_000,
  );
  check(
    "overlays are drawn from the indicator history on first load",
    fromHistory,
    JSON.stringify(fromHistory || (await dbg(() => window.__tickcast.chart))),
  );
  check(
    "SMA/EMA overlays and RSI pane draw, periods read from the wire",
    overlays && legend.includes("SMA(3)") && legend.includes("EMA(3)") && legend.includes("RSI(3)"),
    overlays ? `sma ${overlays.sma}, ema ${overlays.ema}, rsi ${overlays.rsi}; legend "${legend}"` : JSON.stringify(await dbg(() => window.__tickcast.chart)),
  );

  // Keyboard: focus the table, move down twice (arrow and j), back once (k), Enter.
  const order = await page.locator("#symbols tbody tr").evaluateAll((trs) => trs.map((t) => t.dataset.symbol));
  await page.focus("#symbols");
  await page.keyboard.press("Home");
  for (const key of ["ArrowDown", "j", "j", "k"]) await page.keyboard.press(key);
  await page.keyboard.press("Enter");
  const picked = await waitFor(() => dbg(() => window.__tickcast.selected), 2000);
  const title = await page.locator("#chart-title").textContent();
  const newCandles = await waitFor(() => dbg(() => window.__tickcast.chart.candles >= 1), 5000);
  check(
    "keyboard moves the selection and Enter charts it",
    picked === order[2] && title === order[2] && newCandles,
    `selected ${picked}, expected ${order[2]}`,
  );
  await checkBook(page, "book", order[2]);
  await checkBookSwitch(page, "book");

  const status = await waitFor(
    () => page.locator("#chart-status").textContent().then((t) => !t.startsWith("loading") && t),
    5000,
  );
  check(
    historyMissing ? "no REST history in this build: page says live bars only" : "candles backfilled from REST history",
    historyMissing ? /live bars only/.test(status) : /^\d+ bars of history/.test(status) && !status.startsWith("0 "),
    `status line "${status}"`,
  );
  if (!historyMissing) await checkIntervals(page, port, historyRequests);

  // Throttle: 1000 ms on ticks:* caps the event rate near one per symbol per second.
  await page.selectOption("#throttle", "1000");
  await sleep(3500);
  const epsSlow = await dbg(() => window.__tickcast.stats.eps);
  await page.selectOption("#throttle", "0");
  await sleep(2500);
  const epsFast = await dbg(() => window.__tickcast.stats.eps);
  check(
    "throttle selector sets throttle_ms",
    epsSlow < 300 && epsFast > epsSlow * 2,
    `${epsSlow.toFixed(0)} events/s at 1000 ms, ${epsFast.toFixed(0)} unthrottled`,
  );
  await page.selectOption("#throttle", "250");

  // The portfolio panel: a wrong key, then the user's key, an empty portfolio, two trades.
  const sym = order[0];
  // What this server cannot show itself: a server without a secret, and a token the socket
  // refuses (the exchange answered here by the test).
  const tokenRoute = "**/api/v1/auth/token";
  await page.route(tokenRoute, (route) =>
    route.fulfill({
      status: 404,
      contentType: "application/problem+json",
      body: JSON.stringify({ type: "urn:tickcast:problem:token_exchange_disabled", title: "Not Found", status: 404, code: "token_exchange_disabled" }),
    }),
  );
  await enterKey(page, "tc_any_key");
  const noTokens = await waitFor(() => panel(page).then((p) => p.state === "error" && /issues no tokens \(auth\.jwt_hs256_secret not set\)/.test(p.status) && p), 5000);
  check("portfolio: a server without token exchange is said so", noTokens, (noTokens || (await panel(page))).status);
  await page.unroute(tokenRoute);
  await page.route(tokenRoute, (route) =>
    route.fulfill({
      contentType: "application/json",
      body: JSON.stringify({ token: "not.a.jwt", user: USER, expires_at: Math.floor(Date.now() / 1000) + 600 }),
    }),
  );
  await enterKey(page, "tc_any_key");
  const refusedToken = await waitFor(() => panel(page).then((p) => p.state === "error" && p.status.startsWith("unauthorized: ") && p), 5000);
  check("portfolio: the socket's refusal of a token is shown with its message", refusedToken, (refusedToken || (await panel(page))).status);
  await page.unroute(tokenRoute);

  await enterKey(page, "tc_no_such_key_0123456789");
  const badKey = await waitFor(() => panel(page).then((p) => p.state === "error" && p.status === "invalid API key" && p), 5000);
  check('portfolio: a wrong key says "invalid API key"', badKey, badKey ? "" : JSON.stringify(await panel(page)));

  const connectedAt = Date.now();
  await enterKey(page, apiKey);
  const empty = await waitFor(
    () =>
      panel(page).then(
        (p) => p.state === "live" && p.shown && p.rows.length === 1 && p.rows[0].cells[0] === "no positions" && p.trades === "0" && p,
      ),
    10_000,
  );
  const keyKept = await page.evaluate(
    (k) => [JSON.stringify({ ...localStorage }), JSON.stringify({ ...sessionStorage }), document.getElementById("pf-key").value].some((v) => v.includes(k)),
    apiKey,
  );
  check(
    "portfolio: the key connects the panel, which shows an empty portfolio",
    empty && empty.status === `connected as ${USER}` && !keyKept,
    empty ? `"${empty.status}", realized ${empty.realized}, trades ${empty.trades}${keyKept ? "; the key is kept in storage or the input" : ""}` : JSON.stringify(await panel(page)),
  );

  await postTrade(url, apiKey, { symbol: sym, side: "buy", quantity: 0.1, price: 100.1 });
  await postTrade(url, apiKey, { symbol: sym, side: "buy", quantity: 0.2, price: 100.25 });
  const bought = await waitFor(() => panel(page).then((p) => row(p, sym)?.quantity === "0.3" && p.trades === "2" && p), 10_000);
  check(
    "portfolio: 0.1 then 0.2 bought shows quantity 0.3 exactly, average cost 100.2",
    bought && row(bought, sym).avg === "100.2",
    JSON.stringify(bought ? row(bought, sym) : await panel(page)),
  );
  const priced = await waitFor(
    () =>
      panel(page).then((p) => {
        const r = row(p, sym);
        return r && r.last !== "—" && r.unrealized !== "—" && p.unrealized !== "—" && { p, r };
      }),
    10_000,
  );
  check(
    "portfolio: valued at live prices, P&L coloured by sign, last update's time and reason",
    priced &&
      colouredBySign(priced.r.unrealized, priced.r.unrealizedClass) &&
      colouredBySign(priced.p.unrealized, priced.p.unrealizedClass) &&
      colouredBySign(priced.p.realized, priced.p.realizedClass) &&
      /\d\d:\d\d:\d\d \((trade|prices)\)$/.test(priced.p.updated),
    priced ? `last ${priced.r.last}, value ${priced.r.value}, unrealized ${priced.r.unrealized} (${priced.r.unrealizedClass}), updated "${priced.p.updated}"` : JSON.stringify(await panel(page)),
  );

  // Let the chart fill a little for the screenshot.
  await sleep(Math.max(0, 25_000 - (Date.now() - t0)));
  mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT });
  check("screenshot saved", true, path.relative(ROOT, SCREENSHOT));

  const lat = await page.locator("#p50").textContent();
  check("latency p50/p99 shown", /ms$/.test(lat), `p50 ${lat}, p99 ${await page.locator("#p99").textContent()}`);

  // The first token has expired by now: the panel must have refreshed it (no 4001 close).
  const refreshed = await waitFor(
    () =>
      dbg(() => window.__tickcast.portfolio).then(
        (pf) => pf.refreshes >= 1 && Date.now() - connectedAt > (TOKEN_TTL_S + 1) * 1000 && pf,
      ),
    (TOKEN_TTL_S + 15) * 1000,
  );
  const closes = await dbg(() => window.__tickcast.closes);
  check(
    `portfolio: the token (${TOKEN_TTL_S} s) is refreshed before it expires`,
    refreshed && !closes[4001] && (await panel(page)).state === "live",
    `${JSON.stringify(refreshed || (await dbg(() => window.__tickcast.portfolio)))}; closes ${JSON.stringify(closes)}`,
  );

  // Restart: stop the server, wait for the page to notice, start it again on the same port.
  const before = await dbg(() => ({ events: window.__tickcast.stats.events, resets: window.__tickcast.stats.resets }));
  const bookResets = await dbg(() => window.__tickcast.book.resets);
  const outageFrom = Date.now();
  await stopServer();
  const noticed = await waitFor(() => dbg(() => window.__tickcast.state !== "live"), 5000);
  check("page notices the server went away", noticed, await page.locator("#conn").textContent());
  await sleep(1500); // at least one refused reconnect: exercise the backoff
  await startServer(port);
  const back = await waitFor(() => dbg(() => window.__tickcast.state === "live"), 15_000);
  const outageTo = Date.now();
  check("page reconnects after restart", back, `${await page.locator("#conn").textContent()}, reconnects ${await dbg(() => window.__tickcast.reconnects)}`);

  const reset = await waitFor(
    () => dbg(() => window.__tickcast.stats.resets > 0 && !document.getElementById("notice").hidden),
    10_000,
  );
  const notice = await page.locator("#notice-text").textContent();
  check("resume with `from` answered by `reset` shows a notice", reset, notice.slice(0, 70));

  // The panel authenticated the new socket first, then resumed `portfolio` with `from` and the
  // old epoch: a reset snapshot (the run changed) with the stored positions.
  const reauthed = await waitFor(
    () =>
      page.evaluate(() => window.__tickcast.portfolio).then(async (pf) => {
        const p = await panel(page);
        return pf.resets >= 1 && p.state === "live" && row(p, sym)?.quantity === "0.3" && pf;
      }),
    15_000,
  );
  check(
    "portfolio: after the restart the panel authenticates again and resumes",
    reauthed,
    JSON.stringify(reauthed || (await dbg(() => window.__tickcast.portfolio))),
  );
  await postTrade(url, apiKey, { symbol: sym, side: "sell", quantity: 0.1, price: 101 });
  const sold = await waitFor(
    () => panel(page).then((p) => row(p, sym)?.quantity === "0.2" && p.trades === "3" && p.realized === "0.08" && p),
    10_000,
  );
  check(
    "portfolio: a sale after the restart shows 0.2 held and 0.08 realized, in green",
    sold && row(sold, sym).realized === "0.08" && colouredBySign("0.08", sold.realizedClass) && colouredBySign("0.08", row(sold, sym).realizedClass),
    JSON.stringify(sold ? row(sold, sym) : await panel(page)),
  );

  const mark = await dbg(() => ({ events: window.__tickcast.stats.events, candles: window.__tickcast.chart.candles }));
  const updating = await waitFor(
    () =>
      page.evaluate((m) => {
        const t = window.__tickcast;
        return t.filled === 100 && t.stats.events > m.events + 100 && t.chart.candles > m.candles && t.chart.sma > 0;
      }, mark),
    10_000,
  );
  const after = await dbg(() => window.__tickcast);
  check(
    "page keeps updating after the restart (table, candles, overlays)",
    updating,
    `events ${before.events} -> ${after.stats.events}, candles ${mark.candles} -> ${after.chart.candles}, ` +
      `sma ${after.chart.sma}, filled ${after.filled}`,
  );
  // The book resumed with `from` and the old epoch: a reset from the new run, checksums agree.
  await checkBook(page, "book after the restart", await dbg(() => window.__tickcast.selected), { minResets: bookResets + 1 });
  await page.screenshot({ path: path.join(ROOT, "target", "dashboard-after-restart.png") });

  // Backfill, whatever this build's REST does: answer the history request in each accepted
  // shape (an object with `bars`, a plain array) and check the candles land before the live ones.
  for (const shape of ["object", "array"]) {
    const nowMs = Math.floor(Date.now() / 1000) * 1000;
    const bars = Array.from({ length: 30 }, (_, i) => {
      const p = 100 + Math.sin(i / 3);
      return { start: nowMs - (40 - i) * 1000, open: p, high: p + 0.5, low: p - 0.5, close: p + 0.1, volume: 10, trades: 2 };
    });
    await page.route("**/api/v1/bars/**", (route) =>
      route.fulfill({ contentType: "application/json", body: JSON.stringify(shape === "array" ? bars : { bars }) }),
    );
    await page.focus("#symbols");
    await page.keyboard.press("j");
    await page.keyboard.press("Enter");
    const got = await waitFor(() => dbg(() => /^30 bars of history/.test(document.getElementById("chart-status").textContent) && window.__tickcast.chart.candles), 5000);
    check(`history backfill accepts the ${shape} shape`, got >= 30, `${got} candles, "${await page.locator("#chart-status").textContent()}"`);
    await page.unroute("**/api/v1/bars/**");
  }

  // Disconnect: the panel unsubscribes, forgets and clears, and the socket is reopened
  // anonymous (a connection cannot drop its identity otherwise).
  const reconnectsBefore = await dbg(() => window.__tickcast.reconnects);
  await page.click("#pf-disconnect");
  const gone = await waitFor(
    () =>
      page.evaluate((before) => {
        const t = window.__tickcast;
        const root = document.getElementById("portfolio");
        return (
          root.dataset.state === "idle" &&
          root.querySelector(".pf-body").hidden &&
          !root.querySelector("tbody tr") &&
          t.portfolio.user === null &&
          t.portfolio.seq === null &&
          t.reconnects > before &&
          t.state === "live"
        );
      }, reconnectsBefore),
    10_000,
  );
  check(
    "portfolio: Disconnect clears the panel and leaves an anonymous live socket",
    gone,
    `${JSON.stringify(await dbg(() => window.__tickcast.portfolio))}, reconnects ${reconnectsBefore} -> ${await dbg(() => window.__tickcast.reconnects)}`,
  );

  // While the server was down the browser itself reports each refused WebSocket connection as a
  // console error; those, and only in that window, are expected. So is a token refresh that fell
  // into that window, the 401 of the wrong key and the 404 routed for "no token exchange".
  const ws = `ws://127.0.0.1:${port}/ws`;
  const refused = (e) =>
    e.at >= outageFrom && e.at <= outageTo + 1000 && e.text.includes(ws) && /WebSocket connection .* failed/.test(e.text);
  const refusedRefresh = (e) =>
    e.at >= outageFrom && e.at <= outageTo + 1000 && e.url.includes("/api/v1/auth/token") && e.text.includes("ERR_CONNECTION_REFUSED");
  const wrongKey = (e) => e.url.includes("/api/v1/auth/token") && /status of (401|404)/.test(e.text);
  const noHistory = (e) =>
    historyMissing && e.url.includes("/api/v1/bars/") && e.text.includes("status of 404");
  const excused = (e) => refused(e) || refusedRefresh(e) || wrongKey(e) || noHistory(e);
  const unexpected = consoleErrors.filter((e) => !excused(e));
  for (const e of unexpected) console.log(`  console error: ${e.text} ${e.url}`);
  check(
    "no console errors or page errors",
    unexpected.length === 0,
    `${unexpected.length} unexpected; excused: ${consoleErrors.filter(refused).length} refused reconnects ` +
      `and ${consoleErrors.filter(refusedRefresh).length} refused token refreshes during the outage, ` +
      `${consoleErrors.filter(wrongKey).length} 401/404 of the wrong key and the routed no-exchange answer, ` +
      `${consoleErrors.filter(noHistory).length} 404s of the absent history route`,
  );

  await page.close(); // the next page gets the CPU to itself
  await checkMsgpack(url, historyMissing, apiKey, order);
}

/**
 * The dashboard at `?encoding=msgpack` (docs/PROTOCOL.md, "Encodings"): it must ask for it, get
 * only binary frames, decode every one, and show the same live data as with JSON.
 */
/**
 * The chart opens on the latest bars (`order=desc`) and hands over to live without a duplicated
 * or missing candle at the seam; the interval picker switches to `bars.1m` (history and live)
 * and back.
 */
async function checkIntervals(page, port, historyRequests) {
  const dbg = (expr) => page.evaluate(expr);
  const sym = await dbg(() => window.__tickcast.selected);
  const latest = historyRequests.filter((u) => u.includes(`/bars/${sym}?`) && /interval=1s/.test(u) && /order=desc/.test(u));
  check("chart history asks for the latest 1 s bars (order=desc)", latest.length > 0, historyRequests.at(-1) ?? "no request");
  // Let a few live candles follow the history, then compare with what the server stored.
  await sleep(3000);
  const times = await dbg(() => window.__tickcast.chart.times);
  const increasing = times.every((t, i) => i === 0 || t > times[i - 1]);
  const from = times[0] * 1000;
  const to = (times.at(-1) - 2) * 1000; // the newest bars may not be stored yet
  const res = await fetch(`http://127.0.0.1:${port}/api/v1/bars/${sym}?interval=1s&from=${from}&to=${to}&limit=1000`);
  const stored = res.ok ? (await res.json()).bars.map((b) => b.start / 1000) : [];
  const drawn = new Set(times);
  const missing = stored.filter((t) => !drawn.has(t));
  check(
    "history hands over to live with no duplicated or missing candle",
    increasing && stored.length >= 3 && missing.length === 0,
    `${times.length} candles, ${stored.length} stored in range, missing ${JSON.stringify(missing.slice(0, 5))}, increasing ${increasing}`,
  );
  await page.selectOption("#interval", "1m");
  const minute = await waitFor(
    () => dbg(() => window.__tickcast.interval === "1m" && window.__tickcast.chart.candles >= 1 && window.__tickcast.chart),
    8000,
  );
  const asked1m = historyRequests.some((u) => u.includes(`/bars/${sym}?`) && /interval=1m/.test(u) && /order=desc/.test(u));
  check(
    "interval picker: 1 m candles from bars.1m and /bars?interval=1m",
    minute && asked1m && minute.times.every((t) => t % 60 === 0),
    minute ? `${minute.candles} candles at ${JSON.stringify(minute.times.slice(-3))}` : "no 1 m candle",
  );
  await page.selectOption("#interval", "1s");
  const back = await waitFor(
    () => dbg(() => window.__tickcast.interval === "1s" && window.__tickcast.chart.candles >= 3 && window.__tickcast.chart),
    8000,
  );
  check("interval picker: back to 1 s candles", back && back.times.some((t) => t % 60 !== 0), back ? `${back.candles} candles` : "none");
}

async function checkMsgpack(url, historyMissing, apiKey, order) {
  const page = await browser.newPage({ viewport: { width: 1400, height: 820 } });
  page.setDefaultTimeout(10_000);
  const errors = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push({ text: m.text(), url: m.location()?.url ?? "" });
  });
  page.on("pageerror", (e) => errors.push({ text: `pageerror: ${e.message}`, url: "" }));
  const sockets = [];
  page.on("websocket", (ws) => sockets.push(ws.url()));
  const dbg = (expr) => page.evaluate(expr);

  const t0 = Date.now();
  const res = await page.goto(`${url}?encoding=msgpack`, { waitUntil: "load" });
  check("msgpack: page loads", res?.ok() && (await dbg(() => window.__tickcast?.encoding)) === "msgpack", `HTTP ${res?.status()}`);

  const full = await waitFor(() => dbg(() => window.__tickcast.rows === 100 && window.__tickcast.filled === 100), 10_000, 50);
  check(
    `msgpack: table fills with all ${SYMBOLS} symbols`,
    full && sockets.some((u) => new URL(u).searchParams.get("encoding") === "msgpack"),
    `${await dbg(() => window.__tickcast.filled)} filled in ${Date.now() - t0} ms; sockets ${sockets.join(", ")}`,
  );

  // Live ticks keep arriving (snapshots alone would fill the table), and so do the selected
  // symbol's bars (new candles beyond the REST history) and indicators: all three positional kinds.
  const mark = await dbg(() => ({ events: window.__tickcast.stats.events, candles: window.__tickcast.chart.candles }));
  const live = await waitFor(
    () =>
      page.evaluate((m) => {
        const t = window.__tickcast;
        return t.stats.events > m.events + 100 && t.stats.latencySamples > 0 && t.chart.candles > m.candles && t.chart.sma >= 1;
      }, mark),
    15_000,
  );
  const after = await dbg(() => window.__tickcast);
  check(
    "msgpack: live ticks, candles and indicators",
    live,
    `events ${mark.events} -> ${after.stats.events}, latency samples ${after.stats.latencySamples}, ` +
      `candles ${mark.candles} -> ${after.chart.candles}, sma ${after.chart.sma}`,
  );

  // Book events in MessagePack (kind code 5): the same copy, the same checksums.
  await checkBook(page, "msgpack: book", await dbg(() => window.__tickcast.selected));
  await checkBookSwitch(page, "msgpack: book");

  // The portfolio in MessagePack: its exact decimals arrive as strings and are printed as they
  // came, also digits a double cannot hold (JSON.parse would round 1234567.123456789012).
  const [sym, sym2] = order;
  await enterKey(page, apiKey);
  const held = await waitFor(() => panel(page).then((p) => p.state === "live" && row(p, sym)?.quantity === "0.2" && p), 10_000);
  check(
    "msgpack: the portfolio panel connects and shows the position",
    held && row(held, sym).realized === "0.08" && row(held, sym).avg === "100.2",
    JSON.stringify(held ? row(held, sym) : await panel(page)),
  );
  await postTrade(url, apiKey, { symbol: sym, side: "buy", quantity: 0.1, price: 100.5 });
  await postTrade(url, apiKey, { symbol: sym2, side: "buy", quantity: "1234567.123456789012", price: "1" });
  const exact = await waitFor(
    () => panel(page).then((p) => row(p, sym)?.quantity === "0.3" && row(p, sym2)?.quantity === "1234567.123456789012" && p),
    10_000,
  );
  check(
    "msgpack: trades show with their exact digits (0.3 at 100.3; 1234567.123456789012)",
    exact && row(exact, sym).avg === "100.3" && exact.trades === "5",
    JSON.stringify(exact ? [row(exact, sym), row(exact, sym2), exact.trades] : await panel(page)),
  );

  // The page decodes text frames too (a server that predates `encoding` sends them): only the
  // frame counts tell that the server really sent MessagePack.
  const frames = await dbg(() => window.__tickcast.frames);
  check(
    "msgpack: every frame binary, every one decoded",
    frames.binary > 0 && frames.text === 0 && frames.bad === 0,
    `${frames.binary} binary, ${frames.text} text${frames.text ? " (the server ignored ?encoding=msgpack)" : ""}, ${frames.bad} undecodable`,
  );

  const noHistory = (e) => historyMissing && e.url.includes("/api/v1/bars/") && e.text.includes("status of 404");
  const unexpected = errors.filter((e) => !noHistory(e));
  for (const e of unexpected) console.log(`  console error: ${e.text} ${e.url}`);
  check("msgpack: no console errors or page errors", unexpected.length === 0, `${unexpected.length} unexpected`);
  await page.close();
}

const overall = setTimeout(() => {
  console.log(`FAIL overall time limit of ${OVERALL_LIMIT_MS / 1000} s`);
  failed++;
  finish(1);
}, OVERALL_LIMIT_MS);

async function finish(code) {
  clearTimeout(overall);
  try {
    await Promise.race([browser?.close(), sleep(5000)]);
  } catch {}
  await stopServer();
  rmSync(DB_DIR, { recursive: true, force: true });
  if (failed) console.log(`server log (last 40 lines):\n${serverLog.slice(-40).join("\n")}`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(code || (failed ? 1 : 0));
}

try {
  await run();
  await finish(0);
} catch (e) {
  console.log(`FAIL ${e.stack ?? e}`);
  failed++;
  await finish(1);
}
