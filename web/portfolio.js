// The portfolio panel: an API key is exchanged for a connection token (POST /api/v1/auth/token),
// the dashboard's socket authenticates with it (`auth` op) and subscribes to the private
// `portfolio` channel (docs/PROTOCOL.md "Authentication" and "Portfolio"). The token is refreshed
// before it expires and, after a reconnect, the socket authenticates again before `portfolio`
// is resumed with `from` and `epoch` like every other channel.
//
// The API key lives in this module's memory only, not in localStorage nor sessionStorage: it is
// a long-lived credential (unlike the token, which expires), and sessionStorage would hand it to
// any script on the origin and keep it across reloads of the tab. A reload asks for it again.

// plainNumber (a JSON number's digits without an exponent) is the shared client's.
import { plainNumber } from "./client/book.js";

// --- exact decimals ---


/**
 * A portfolio value as received: a MessagePack decimal is a string of its digits, printed as
 * is; a JSON number (a double once JSON.parse has read it) in its shortest form; null "—".
 */
export function fmtExact(v) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "number") return plainNumber(v);
  return String(v);
}

/** -1, 0 or 1 for a value as fmtExact takes it (0 for null). */
export function signOf(v) {
  if (v === null || v === undefined) return 0;
  if (typeof v === "number") return Math.sign(v) || 0;
  const s = String(v).trim();
  if (/^[-+]?0*\.?0*$/.test(s)) return 0;
  return s.startsWith("-") ? -1 : 1;
}

const signClass = (v) => ["down", "", "up"][signOf(v) + 1];

// --- the view ---

const COLUMNS = [
  ["symbol", ""],
  ["quantity", "num"],
  ["avg_cost", "num"],
  ["last_price", "num"],
  ["market_value", "num"],
  ["unrealized_pnl", "num pnl"],
  ["realized_pnl", "num pnl"],
];

/** The panel's DOM: status line, totals and positions. Renders at most once per frame. */
export class PortfolioView {
  constructor(root) {
    const q = (sel) => root.querySelector(sel);
    this.root = root;
    this.statusEl = q(".pf-status");
    this.body = q(".pf-body");
    this.tbody = q("table tbody");
    this.totals = {
      realized_pnl: q(".pf-realized"),
      unrealized_pnl: q(".pf-unrealized"),
      trades: q(".pf-trades"),
    };
    this.updated = q(".pf-updated");
    this.disconnectBtn = q(".pf-disconnect");
    this.latest = null; // the newest portfolio event not yet drawn
    this.frameQueued = false;
    this.renders = 0;
  }

  /** The status line; `state` (idle, connecting, live, error) is also the panel's data-state. */
  status(text, state, active) {
    this.statusEl.textContent = text;
    this.root.dataset.state = state;
    this.disconnectBtn.disabled = !active;
  }

  /** A portfolio event (live or a snapshot's): the whole state, drawn on the next frame. */
  show(ev) {
    this.latest = ev;
    this.body.hidden = false;
    if (!this.frameQueued) {
      this.frameQueued = true;
      requestAnimationFrame(() => this.render());
    }
  }

  render() {
    this.frameQueued = false;
    const ev = this.latest;
    if (!ev) return;
    this.latest = null;
    this.renders++;
    const positions = Array.isArray(ev.positions) ? ev.positions : [];
    const rows = positions.map((p) => {
      const tr = document.createElement("tr");
      tr.dataset.symbol = p.symbol;
      for (const [key, cls] of COLUMNS) {
        const td = tr.insertCell();
        const v = p[key];
        td.textContent = key === "symbol" ? String(v) : fmtExact(v);
        td.className = `${key.replace(/_/g, "-")} ${cls} ${cls.includes("pnl") ? signClass(v) : ""}`.trim();
      }
      return tr;
    });
    if (!rows.length) {
      const tr = document.createElement("tr");
      tr.className = "pf-empty";
      const td = tr.insertCell();
      td.colSpan = COLUMNS.length;
      td.textContent = "no positions";
      rows.push(tr);
    }
    this.tbody.replaceChildren(...rows);
    for (const [key, el] of Object.entries(this.totals)) {
      el.textContent = fmtExact(ev[key]);
      if (key !== "trades") el.className = `pf-${key.split("_")[0]} ${signClass(ev[key])}`.trim();
    }
    const ms = Number(ev.ts) / 1e6;
    const at = Number.isFinite(ms) ? new Date(ms).toLocaleTimeString([], { hourCycle: "h23" }) : "?";
    this.updated.textContent = `${at} (${ev.reason ?? "?"})`;
  }

  clear() {
    this.latest = null;
    this.tbody.replaceChildren();
    for (const el of Object.values(this.totals)) {
      el.textContent = "";
      el.className = el.className.replace(/ ?\b(up|down)\b/g, "");
    }
    this.updated.textContent = "";
    this.body.hidden = true;
  }
}

// --- the session: key -> token -> auth -> subscribe ---

/** The messages for the ways a key exchange fails. */
async function exchangeKey(key) {
  let res;
  try {
    res = await fetch("/api/v1/auth/token", {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, accept: "application/json" },
    });
  } catch {
    return { error: "cannot reach the server to exchange the key", retry: true };
  }
  let body = null;
  try {
    body = await res.json();
  } catch {}
  if (res.ok && typeof body?.token === "string" && Number.isFinite(body?.expires_at)) return { token: body };
  if (res.status === 401) return { error: "invalid API key" };
  if (res.status === 404 && body?.code === "token_exchange_disabled") {
    return { error: "this server issues no tokens (auth.jwt_hs256_secret not set)" };
  }
  if (res.status === 429) {
    return { error: `too many requests; retry in ${res.headers.get("retry-after") ?? "a few"} s`, retry: true };
  }
  const detail = body?.detail ? `: ${body.detail}` : "";
  return { error: `token exchange failed (HTTP ${res.status}${detail})`, retry: res.status >= 500 };
}

/**
 * The token's lifetime in seconds: `exp - iat` from its own claims, so a client clock that is
 * off does not move the refresh; `expires_at` against our clock when the token has no `iat`.
 */
function lifetimeOf(token, expiresAt) {
  try {
    const b64 = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(b64));
    if (Number.isFinite(claims.exp) && Number.isFinite(claims.iat) && claims.exp > claims.iat) {
      return claims.exp - claims.iat;
    }
  } catch {}
  return Math.max(1, expiresAt - Date.now() / 1000);
}

const REFRESH_AT = 0.8; // of the token's lifetime
const RETRY_MS = 2000; // after a failed refresh (the server may be restarting)
const MIN_LEFT_MS = 3000; // a token with less than this left is exchanged anew before an `auth`

/**
 * Drives the panel over the dashboard's connection.
 * `conn`: the Connection (send, reopen); `resumeOp()`: the subscribe op for `portfolio` with the
 * `from` and `epoch` the page holds for it (app.js builds it as for every channel); `forget()`:
 * drops the channel's seq.
 */
export class PortfolioSession {
  constructor(view, { conn, resumeOp, forget }) {
    this.view = view;
    this.conn = conn;
    this.resumeOp = resumeOp;
    this.forget = forget;
    this.key = null;
    this.token = null; // {token, user, receivedAt, lifetimeMs}
    this.gen = 0; // bumped by connect/disconnect: a late exchange result of an older one is dropped
    this.authedUser = null; // who the current socket is authenticated as (null on a fresh socket)
    this.authId = 0;
    this.subId = 0;
    this.pendingSub = null; // subscribe op to send once `auth` is acked
    this.subscribed = false;
    this.retryAuth = false; // one fresh exchange is tried when a reconnect's `auth` is refused
    this.refreshTimer = 0;
    this.stats = { exchanges: 0, refreshes: 0, auths: 0, events: 0, resets: 0 };
    this.status("enter an API key to see your portfolio", "idle");
  }

  get active() {
    return this.key !== null;
  }

  status(text, state) {
    this.view.status(text, state, this.active);
  }

  /** The Connect button: exchanges the key, then authenticates the socket and subscribes. */
  async connect(key) {
    key = key.trim();
    if (this.active) this.stop();
    if (!key) return this.status("enter an API key", "error");
    // A header value must be visible ASCII; anything else cannot be a key of this server.
    if (/[^\x21-\x7e]/.test(key)) return this.status("invalid API key", "error");
    this.gen++;
    this.key = key;
    this.status("exchanging the key for a token…", "connecting");
    const got = await this.exchange();
    if (got.stale) return;
    if (got.error) {
      this.key = null;
      this.release(); // a session this one replaced
      return this.status(got.error, "error");
    }
    this.pendingSub = this.resumeOp();
    this.retryAuth = false;
    if (this.authedUser && this.authedUser !== this.token.user) {
      // This socket belongs to another user, and a token cannot switch it (`forbidden`): a
      // fresh socket authenticates from onOpen.
      this.conn.reopen();
    } else {
      this.sendAuth();
    }
  }

  /** Forget the key: unsubscribe, clear the panel and give the socket up as anonymous. */
  disconnect() {
    this.stop();
    this.status("disconnected; the key is forgotten", "idle");
    this.release();
  }

  /**
   * Gives up the socket's identity. There is no op that makes a connection anonymous again, and
   * a token no longer refreshed would close it with 4001 when it expires: a fresh, anonymous
   * socket is opened now instead (every public channel resumes with `from`, as after any
   * reconnect).
   */
  release() {
    if (!this.authedUser) return;
    this.authedUser = null;
    this.conn.reopen();
  }

  /** Ends the session on this page (the socket stays as it is): unsubscribe, forget, clear. */
  stop() {
    this.gen++;
    clearTimeout(this.refreshTimer);
    if (this.subscribed) this.conn.send({ op: "unsubscribe", channels: ["portfolio"] });
    this.forget();
    this.key = this.token = this.pendingSub = null;
    this.subscribed = false;
    this.authId = this.subId = 0;
    this.view.clear();
  }

  /** Every (re)connect: the new socket is anonymous; authenticate it, then resume `portfolio`. */
  onOpen() {
    this.authedUser = null;
    this.subscribed = false;
    this.authId = this.subId = 0;
    if (!this.token) return; // not connected, or the first exchange is still running
    // The resume point is taken now, before this socket's acks replace the page's epoch.
    this.pendingSub = this.resumeOp();
    this.retryAuth = true;
    this.status("authenticating…", "connecting");
    if (Date.now() > this.token.receivedAt + this.token.lifetimeMs - MIN_LEFT_MS) this.refresh();
    else this.sendAuth();
  }

  /**
   * Exchanges the key; the new token is kept (and its refresh scheduled) only if no connect or
   * disconnect came meanwhile. Returns `{stale: true}` when one did.
   */
  async exchange() {
    const gen = this.gen;
    this.stats.exchanges++;
    const got = await exchangeKey(this.key);
    if (gen !== this.gen) return { stale: true };
    if (got.token) {
      const t = got.token;
      this.token = { token: t.token, user: t.user, receivedAt: Date.now(), lifetimeMs: lifetimeOf(t.token, t.expires_at) * 1000 };
      this.scheduleRefresh();
    }
    return got;
  }

  scheduleRefresh(delay) {
    clearTimeout(this.refreshTimer);
    if (delay === undefined) delay = Math.max(1000, this.token.lifetimeMs * REFRESH_AT);
    this.refreshTimer = setTimeout(() => this.refresh(), delay);
  }

  /** A new token before the current one expires, sent with `auth` on the live socket. */
  async refresh() {
    if (!this.active) return;
    const got = await this.exchange();
    if (got.stale) return;
    if (got.error) {
      if (got.retry) {
        // Kept until it works: if the token expires meanwhile the server closes the socket
        // (4001) and onOpen starts over with a fresh exchange.
        this.status(`token refresh failed (${got.error}); retrying`, "error");
        this.scheduleRefresh(RETRY_MS);
      } else {
        // The key no longer works (revoked), or the server stopped issuing tokens.
        const why = got.error;
        this.disconnect();
        this.status(why, "error");
      }
      return;
    }
    this.stats.refreshes++;
    this.sendAuth();
  }

  sendAuth() {
    // 0 when the socket is down: onOpen authenticates the next one.
    this.authId = this.conn.send({ op: "auth", token: this.token.token });
    if (this.authId) this.stats.auths++;
  }

  /** An `ack`; true when it answered one of ours. */
  ack(ev) {
    if (!this.active) return false;
    if (ev.op === "auth" && ev.id === this.authId) {
      this.authedUser = ev.user ?? this.token.user;
      if (this.pendingSub) {
        this.subId = this.conn.send(this.pendingSub);
        this.subscribed = this.subId !== 0;
        this.pendingSub = null;
        this.status(`subscribing as ${this.authedUser}…`, "connecting");
      } else if (this.subscribed) {
        this.status(`connected as ${this.authedUser}`, "live");
      }
      return true;
    }
    if (ev.op === "subscribe" && ev.id === this.subId) {
      this.status(`connected as ${this.authedUser}`, "live");
      return true;
    }
    return false;
  }

  /** An `error`; true when it answered one of ours (it is then shown here, not in the notice). */
  error(ev) {
    if (!this.active || !ev.id || (ev.id !== this.authId && ev.id !== this.subId)) return false;
    if (ev.id === this.authId && ev.code === "unauthorized" && this.retryAuth) {
      // After a reconnect the held token may no longer verify (the server restarted with another
      // secret, say): one fresh exchange before giving up.
      this.retryAuth = false;
      this.refresh();
      return true;
    }
    if (ev.id === this.subId) this.subscribed = false;
    this.status(`${ev.code}: ${ev.message}`, "error");
    return true;
  }

  /** The channel's snapshot: its newest event (if any) is the whole state. */
  snapshot(ev) {
    if (ev.reset) this.stats.resets++;
    const data = Array.isArray(ev.data) ? ev.data : [];
    const last = data.at(-1);
    if (last) this.view.show(last);
    else this.status(`connected as ${this.authedUser}; no state yet`, "live");
  }

  event(ev) {
    this.stats.events++;
    this.view.show(ev);
  }
}
