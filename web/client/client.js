// The streaming client: typed events by async iteration over one reconnecting socket, with what
// exactly-once needs: per-channel seq tracking, resume of every channel with `from` and `epoch`,
// resets and gaps surfaced, verified order books, and a token refreshed before it expires.
import { ClientBook } from "./book.js";
import { Connection } from "./connection.js";
import { ServerError, TickcastError } from "./errors.js";
import { covers } from "./seq.js";
const KEEPALIVE_MS = 15000; // a ping op when idle: the server's own pings are invisible to JS
/** The `exp` claim of a JWT (unverified: the server verifies; we only schedule a refresh). */
export function jwtExp(token) {
    try {
        const b64 = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
        const claims = JSON.parse(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)));
        return Number.isInteger(claims?.exp) ? claims.exp : undefined;
    }
    catch {
        return undefined;
    }
}
/** Opens a client; resolves once the first socket is open, rejects when it cannot open. */
export function connect(url, opts = {}) {
    const client = new Client(url, opts);
    return client.start().then(() => client);
}
export class Client {
    url;
    opts;
    conn;
    /** Counters for monitoring and tests. */
    stats = { gaps: 0, duplicates: 0, resets: 0, tokenRefreshes: 0 };
    epoch;
    subs = new Map(); // channel as subscribed -> its options
    seqs = new Map(); // concrete channel -> last seq
    books = new Map();
    resyncing = new Map(); // book channel -> why its copy was given up
    pending = new Map();
    pingFor = new Map(); // ping id -> the op id it closes
    queue = [];
    waiters = [];
    done = false;
    token;
    exp;
    refreshTimer = null;
    keepalive = null;
    firstOpen = null;
    opTimeoutMs;
    constructor(url, opts = {}) {
        this.url = url;
        this.opts = opts;
        this.token = opts.token;
        this.exp = opts.token ? jwtExp(opts.token) : undefined;
        this.opTimeoutMs = opts.opTimeoutMs ?? 10000;
        this.conn = new Connection(() => this.href(), {
            encoding: opts.encoding,
            exactDecimals: true,
            minDelayMs: opts.minDelayMs,
            maxDelayMs: opts.maxDelayMs ?? 10000,
            silenceMs: 3 * KEEPALIVE_MS,
            WebSocket: opts.WebSocket,
            onOpen: () => this.opened(),
            onEvent: (m) => this.dispatch(m),
            onClose: (code) => this.dropped(code),
            beforeReconnect: (code) => this.beforeReconnect(code),
        });
    }
    async start() {
        if (!this.token && this.opts.tokenProvider)
            this.setToken(await this.opts.tokenProvider());
        await new Promise((resolve, reject) => {
            this.firstOpen = { resolve, reject };
            this.conn.connect();
        });
        this.keepalive = setInterval(() => {
            if (this.conn.live && performance.now() - this.conn.lastFrameAt > KEEPALIVE_MS)
                this.conn.send({ op: "ping" });
        }, KEEPALIVE_MS);
    }
    close() {
        this.conn.close();
        if (this.refreshTimer)
            clearTimeout(this.refreshTimer);
        if (this.keepalive)
            clearInterval(this.keepalive);
        this.failPending(new TickcastError("client closed"));
        this.done = true;
        for (const w of this.waiters.splice(0))
            w({ value: undefined, done: true });
    }
    // --- ops ---
    /** Subscribes; resolves with the ack (whose `errors` name refused channels), or rejects with
     * ServerError when every channel was refused. `book:SYM` channels get a local book. */
    async subscribe(channels, opts = {}) {
        const list = typeof channels === "string" ? [channels] : [...channels];
        for (const ch of list)
            if (ch.startsWith("book:") && !ch.endsWith("*"))
                this.bookFor(ch, opts.depth);
        const ack = await this.op(this.subscribeOp(list, opts));
        for (const ch of ack.channels)
            this.subs.set(ch, { throttleMs: opts.throttleMs, depth: opts.depth });
        return ack;
    }
    async unsubscribe(channels) {
        const list = typeof channels === "string" ? [channels] : [...channels];
        const ack = await this.op({ op: "unsubscribe", channels: list });
        for (const ch of ack.channels) {
            this.subs.delete(ch);
            this.books.delete(ch);
        }
        for (const ch of this.seqs.keys())
            if (![...this.subs.keys()].some((p) => covers(p, ch)))
                this.seqs.delete(ch);
        return ack;
    }
    /** Authenticates the live connection, or refreshes its token (same user). */
    async auth(token) {
        const ack = await this.op({ op: "auth", token });
        this.setToken(token, ack.exp);
        this.stats.tokenRefreshes++;
        return ack;
    }
    /** The local, verified copy of `book:SYMBOL` (subscribe to it first). */
    book(symbol) {
        const b = this.books.get(`book:${symbol}`);
        if (!b)
            throw new TickcastError(`not subscribed to book:${symbol}`);
        return b;
    }
    /** Fresh snapshots asked for after a book failed its checksum, over every book. */
    get resyncs() {
        let n = 0;
        for (const b of this.books.values())
            n += b.resyncs;
        return n;
    }
    get reconnects() {
        return this.conn.reconnects;
    }
    lastSeq(ch) {
        return this.seqs.get(ch);
    }
    [Symbol.asyncIterator]() {
        return {
            next: () => {
                const value = this.queue.shift();
                if (value !== undefined)
                    return Promise.resolve({ value, done: false });
                if (this.done)
                    return Promise.resolve({ value: undefined, done: true });
                return new Promise((resolve) => this.waiters.push(resolve));
            },
            return: () => {
                this.close();
                return Promise.resolve({ value: undefined, done: true });
            },
        };
    }
    // --- the socket ---
    href() {
        const u = new URL(this.url);
        u.searchParams.set("v", "1");
        if (this.token)
            u.searchParams.set("token", this.token);
        else
            u.searchParams.delete("token");
        return u.href;
    }
    opened() {
        if (this.firstOpen) {
            this.firstOpen.resolve();
            this.firstOpen = null;
            return;
        }
        void this.resume();
    }
    dropped(code) {
        this.failPending(new TickcastError(`connection lost (${code})`));
        if (this.firstOpen) {
            this.conn.close();
            this.firstOpen.reject(new TickcastError(`cannot connect to ${this.url} (close ${code}): refused or unreachable`));
            this.firstOpen = null;
        }
    }
    async beforeReconnect(code) {
        const expired = this.exp !== undefined && this.exp * 1000 <= Date.now();
        if (this.opts.tokenProvider && (code === 4001 || expired))
            this.setToken(await this.opts.tokenProvider());
    }
    /** Restores every subscription on a new socket, each channel from its last seq. */
    async resume() {
        const groups = new Map();
        for (const [ch, o] of this.subs) {
            const key = JSON.stringify([o.throttleMs ?? null, o.depth ?? null]);
            groups.set(key, [...(groups.get(key) ?? []), ch]);
        }
        for (const [key, channels] of groups) {
            const [throttleMs, depth] = JSON.parse(key);
            const op = this.subscribeOp(channels, { throttleMs: throttleMs ?? undefined, depth: depth ?? undefined });
            const from = {};
            for (const [ch, s] of this.seqs) {
                const book = this.books.get(ch);
                const seq = book ? (book.synced ? book.seq : 0) : s;
                if (seq > 0 && channels.some((p) => covers(p, ch)))
                    from[ch] = seq;
            }
            if (Object.keys(from).length && this.epoch !== undefined)
                Object.assign(op, { from, epoch: this.epoch });
            try {
                await this.op(op);
            }
            catch (e) {
                console.warn(`tickcast: resume of ${channels.join(",")} refused: ${e.message}`);
            }
        }
    }
    subscribeOp(channels, o) {
        const op = { op: "subscribe", channels };
        if (o.throttleMs !== undefined)
            op.throttle_ms = o.throttleMs;
        if (o.depth !== undefined)
            op.depth = o.depth;
        if (o.snapshot !== undefined)
            op.snapshot = o.snapshot;
        return op;
    }
    /** Sends an op and a ping after it: ops are answered in order, so the pong marks the end of
     * the op's replies, which tells an op refused whole (errors, no ack) from a slow one. */
    op(op) {
        return this.request(op, true);
    }
    request(op, closingPing) {
        return new Promise((resolve, reject) => {
            const id = this.conn.send(op);
            if (!id)
                return reject(new TickcastError("not connected"));
            const timer = setTimeout(() => {
                this.pending.delete(id);
                reject(new TickcastError(`no answer to ${String(op.op)} within ${this.opTimeoutMs} ms`));
            }, this.opTimeoutMs);
            this.pending.set(id, { resolve, reject, errors: [], timer });
            if (closingPing)
                this.pingFor.set(this.conn.send({ op: "ping" }), id);
        });
    }
    failPending(e) {
        for (const p of this.pending.values()) {
            clearTimeout(p.timer);
            p.reject(e);
        }
        this.pending.clear();
        this.pingFor.clear();
    }
    // --- replies and events ---
    emit(ev) {
        const w = this.waiters.shift();
        if (w)
            w({ value: ev, done: false });
        else
            this.queue.push(ev);
    }
    dispatch(m) {
        switch (m.type) {
            case "ack":
            case "error":
            case "pong":
            case "list":
                return this.reply(m);
            case "snapshot":
                return this.snapshot(m);
            default:
                if (typeof m.ch === "string" && Number.isInteger(m.seq))
                    this.event(m);
        }
    }
    reply(m) {
        if (m.type === "pong") {
            const opId = this.pingFor.get(m.id);
            this.pingFor.delete(m.id);
            const p = opId === undefined ? undefined : this.pending.get(opId);
            if (p && opId !== undefined) {
                this.pending.delete(opId);
                clearTimeout(p.timer);
                const first = p.errors[0] ?? { code: "no_answer", message: "no ack" };
                p.reject(new ServerError(first.code, first.message, p.errors));
            }
            return;
        }
        const p = this.pending.get(m.id);
        if (!p) {
            if (m.type === "error")
                console.warn(`tickcast: server error ${m.code}: ${m.message}`);
            return;
        }
        if (m.type === "error") {
            p.errors.push({ code: m.code, message: m.message });
            return;
        }
        this.pending.delete(m.id);
        clearTimeout(p.timer);
        if (m.type === "ack") {
            if (typeof m.epoch === "number")
                this.epoch = m.epoch;
            p.resolve({ op: m.op, channels: m.channels ?? [], epoch: m.epoch, user: m.user, exp: m.exp, errors: p.errors });
        }
        else {
            p.resolve(m);
        }
    }
    expectsJumps(ch) {
        for (const [p, o] of this.subs) {
            if (covers(p, ch))
                return Boolean(o.throttleMs) || (ch.startsWith("book:") && o.depth !== undefined);
        }
        return false;
    }
    event(ev) {
        const prev = this.seqs.get(ev.ch);
        if (prev !== undefined && ev.seq <= prev) {
            this.stats.duplicates++; // a replay overlapping what was already delivered
            return;
        }
        this.seqs.set(ev.ch, ev.seq);
        const bookReset = ev.type === "book" && ev.reset;
        if (prev !== undefined && ev.seq > prev + 1 && !bookReset && !this.expectsJumps(ev.ch)) {
            const gap = { type: "gap", ch: ev.ch, first: prev + 1, last: ev.seq - 1, missed: ev.seq - prev - 1 };
            this.stats.gaps++;
            this.emit(gap);
            this.opts.onGap?.(gap);
        }
        if (ev.type === "book")
            this.bookEvent(ev);
        this.emit(ev);
    }
    snapshot(m) {
        const ch = m.ch;
        const events = Array.isArray(m.data) ? m.data : [];
        this.seqs.set(ch, m.seq);
        const why = this.resyncing.get(ch);
        this.resyncing.delete(ch);
        if (ch.startsWith("book:")) {
            const book = this.bookFor(ch);
            if (!events.length)
                book.empty(m.seq);
            for (const e of events)
                if (e.type === "book")
                    this.bookEvent(e);
        }
        if (m.reset || why !== undefined) {
            this.stats.resets++;
            const reason = m.reset ? "the server could not resume (restarted, or the gap is gone)" : `book resync: ${why}`;
            this.emit({ type: "reset", ch, seq: m.seq, events, reason });
        }
        else {
            this.emit({ type: "snapshot", ch, seq: m.seq, events });
        }
    }
    bookFor(ch, depth) {
        let b = this.books.get(ch);
        if (!b) {
            const d = depth ?? [...this.subs].find(([p]) => covers(p, ch))?.[1].depth;
            b = new ClientBook(d ?? Number.MAX_SAFE_INTEGER);
            this.books.set(ch, b);
        }
        return b;
    }
    bookEvent(ev) {
        const book = this.bookFor(ev.ch);
        if (this.resyncing.has(ev.ch) && !ev.reset)
            return; // only the fresh snapshot restarts it
        const r = book.apply(ev);
        if (r.ok) {
            this.resyncing.delete(ev.ch);
            return;
        }
        book.resyncs++;
        this.resyncing.set(ev.ch, r.reason);
        const depth = [...this.subs].find(([p]) => covers(p, ev.ch))?.[1].depth;
        this.op(this.subscribeOp([ev.ch], { snapshot: 1, depth })).catch((e) => console.warn(`tickcast: snapshot of ${ev.ch} refused: ${e.message}`));
    }
    // --- tokens ---
    setToken(token, exp) {
        this.token = token;
        this.exp = exp ?? jwtExp(token);
        if (this.refreshTimer)
            clearTimeout(this.refreshTimer);
        this.refreshTimer = null;
        if (!this.opts.tokenProvider || this.exp === undefined || this.conn.closed)
            return;
        // At 80 % of the remaining life, so a slow provider still beats `exp`.
        const wait = Math.max(500, (this.exp * 1000 - Date.now()) * 0.8);
        this.refreshTimer = setTimeout(() => void this.refresh(), wait);
    }
    async refresh() {
        try {
            const token = await this.opts.tokenProvider();
            if (this.conn.live)
                await this.auth(token);
            else
                this.setToken(token);
        }
        catch (e) {
            console.warn(`tickcast: token refresh failed: ${e.message}`);
            this.refreshTimer = setTimeout(() => void this.refresh(), 1000);
        }
    }
}
