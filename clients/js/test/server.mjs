// The real tickcast server for the tests: the binary named by SERVER_BIN (default
// target/debug/tickcast), on an ephemeral port of 127.0.0.1, with a SQLite file of its own, an
// HS256 secret, short token lifetimes and a synthetic feed of 5 symbols (busy channels).

import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const BIN = path.resolve(ROOT, process.env.SERVER_BIN ?? "target/debug/tickcast");
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

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

export class Server {
  constructor({ tokenTtlS = 900 } = {}) {
    this.dir = mkdtempSync(path.join(os.tmpdir(), "tickcast-js-"));
    this.secret = randomBytes(24).toString("hex");
    this.tokenTtlS = tokenTtlS;
    this.child = null;
    this.log = [];
  }

  get http() {
    return `http://127.0.0.1:${this.port}`;
  }

  get ws() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  env() {
    const env = { ...process.env };
    delete env.TICKCAST_DATABASE__URL;
    return Object.assign(env, {
      DATABASE_URL: `sqlite://${path.join(this.dir, "tickcast.db")}?mode=rwc`,
      TICKCAST_SERVER__LISTEN: `127.0.0.1:${this.port}`,
      TICKCAST_AUTH__JWT_HS256_SECRET: this.secret,
      TICKCAST_AUTH__TOKEN_TTL_S: String(this.tokenTtlS),
      TICKCAST_FEEDS__SYNTHETIC__SYMBOLS: "5",
      TICKCAST_API__REQUESTS_PER_SECOND: "1000",
      TICKCAST_API__BURST: "1000",
      RUST_LOG: process.env.RUST_LOG ?? "warn",
    });
  }

  addUser(name) {
    return execFileSync(BIN, ["user", "add", name], { env: this.env(), timeout: 30_000, encoding: "utf8" }).trim();
  }

  async start() {
    this.port ??= await freePort();
    for (let attempt = 0; attempt < 40; attempt++) {
      const child = spawn(BIN, ["serve"], { env: this.env(), stdio: ["ignore", "pipe", "pipe"] });
      for (const s of [child.stdout, child.stderr]) s.on("data", (d) => this.log.push(String(d)));
      child.exited = new Promise((r) => child.once("exit", r));
      this.child = child;
      const deadline = Date.now() + 15_000;
      while (Date.now() < deadline && child.exitCode === null) {
        try {
          if ((await fetch(`${this.http}/healthz`)).ok) return this;
        } catch {
          await sleep(100);
        }
      }
      await this.kill();
      await sleep(250); // the port may still be held for a moment after a kill
    }
    throw new Error(`tickcast did not start:\n${this.log.slice(-20).join("")}`);
  }

  /** SIGKILL: no close frames, as a crash. */
  async kill() {
    const child = this.child;
    this.child = null;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGKILL");
    await Promise.race([child.exited, sleep(5000)]);
  }

  async stop() {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  async symbols() {
    const r = await fetch(`${this.http}/api/v1/symbols`);
    return (await r.json()).symbols.map((s) => s.symbol);
  }
}

/** The next `n` events matching `pred`, within `ms` (others are skipped). */
export async function take(client, n, pred = () => true, ms = 30_000) {
  const out = [];
  const it = client[Symbol.asyncIterator]();
  const deadline = Date.now() + ms;
  while (out.length < n) {
    const left = deadline - Date.now();
    const r = await Promise.race([it.next(), sleep(Math.max(0, left)).then(() => null)]);
    if (r === null) throw new Error(`timed out with ${out.length} of ${n} events`);
    if (r.done) throw new Error("the client closed");
    if (pred(r.value)) out.push(r.value);
  }
  return out;
}
