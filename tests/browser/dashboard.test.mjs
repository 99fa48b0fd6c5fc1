// Browser test of the dashboard: the real server binary, Debian's headless Chromium, driven by
// playwright-core (no browser download). Builds nothing: run `cargo build --bin tickcast` first.
//
//   SERVER_BIN=target/debug/tickcast node tests/browser/dashboard.test.mjs
//
// Every wait is bounded; the server and the browser are stopped on every exit path; the last
// line is "N passed, M failed" and the exit code is non-zero on any failure.

import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const BIN = path.resolve(ROOT, process.env.SERVER_BIN ?? "target/debug/tickcast");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const SCREENSHOT = path.join(ROOT, "target", "dashboard.png");
const SYMBOLS = 100; // the synthetic feed's default
const OVERALL_LIMIT_MS = 180_000;

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

async function startServer(port) {
  const env = Object.assign({ ...process.env }, {
    TICKCAST_SERVER__LISTEN: `127.0.0.1:${port}`,
    // Short indicator periods: overlays appear within seconds instead of after 20 s of warm-up.
    TICKCAST_PIPELINE__SMA_PERIOD: "3",
    TICKCAST_PIPELINE__EMA_PERIOD: "3",
    TICKCAST_PIPELINE__RSI_PERIOD: "3",
    TICKCAST_PIPELINE__VOLATILITY_PERIOD: "3",
    RUST_LOG: process.env.RUST_LOG ?? "warn",
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
});
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    console.log(`interrupted by ${sig}`);
    process.exit(130);
  });
}

// --- the test ---

async function run() {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/`;
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

  // REST history (GET /api/v1/bars) may not exist in this build: then the page must say so in
  // its status line, and Chromium's own "404" log line for that request is the one excused error.
  const probe = await fetch(`http://127.0.0.1:${port}/api/v1/bars/AAPL?interval=1s&limit=1`);
  const historyMissing = probe.status === 404 && (await probe.text()).includes("no such route");
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

  const status = await waitFor(
    () => page.locator("#chart-status").textContent().then((t) => !t.startsWith("loading") && t),
    5000,
  );
  check(
    historyMissing ? "no REST history in this build: page says live bars only" : "candles backfilled from REST history",
    historyMissing ? /live bars only/.test(status) : /^\d+ bars of history/.test(status) && !status.startsWith("0 "),
    `status line "${status}"`,
  );

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

  // Let the chart fill a little for the screenshot.
  await sleep(Math.max(0, 25_000 - (Date.now() - t0)));
  mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT });
  check("screenshot saved", true, path.relative(ROOT, SCREENSHOT));

  const lat = await page.locator("#p50").textContent();
  check("latency p50/p99 shown", /ms$/.test(lat), `p50 ${lat}, p99 ${await page.locator("#p99").textContent()}`);

  // Restart: stop the server, wait for the page to notice, start it again on the same port.
  const before = await dbg(() => ({ events: window.__tickcast.stats.events, resets: window.__tickcast.stats.resets }));
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

  // While the server was down the browser itself reports each refused WebSocket connection as a
  // console error; those, and only in that window, are expected.
  const ws = `ws://127.0.0.1:${port}/ws`;
  const refused = (e) =>
    e.at >= outageFrom && e.at <= outageTo + 1000 && e.text.includes(ws) && /WebSocket connection .* failed/.test(e.text);
  const noHistory = (e) =>
    historyMissing && e.url.includes("/api/v1/bars/") && e.text.includes("status of 404");
  const excused = (e) => refused(e) || noHistory(e);
  const unexpected = consoleErrors.filter((e) => !excused(e));
  for (const e of unexpected) console.log(`  console error: ${e.text} ${e.url}`);
  check(
    "no console errors or page errors",
    unexpected.length === 0,
    `${unexpected.length} unexpected; excused: ${consoleErrors.filter(refused).length} refused reconnects ` +
      `during the outage, ${consoleErrors.filter(noHistory).length} 404s of the absent history route`,
  );

  await page.close(); // the next page gets the CPU to itself
  await checkMsgpack(url, historyMissing);
}

/**
 * The dashboard at `?encoding=msgpack` (docs/PROTOCOL.md, "Encodings"): it must ask for it, get
 * only binary frames, decode every one, and show the same live data as with JSON.
 */
async function checkMsgpack(url, historyMissing) {
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
