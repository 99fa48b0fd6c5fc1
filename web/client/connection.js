// One WebSocket to `/ws` that reconnects forever with jittered exponential backoff, and decodes
// every frame (JSON text, or MessagePack with `encoding=msgpack`) into messages. It knows nothing
// of subscriptions: its owner re-subscribes in onOpen (the dashboard, or Client).
import { decodeFrame } from "./frames.js";
/**
 * A WebSocket that reconnects forever with exponential backoff and jitter.
 * Callbacks: onOpen(), onEvent(event), onState({state, detail}).
 * States: "connecting", "live", "reconnecting", "closed".
 * `url` is a string or a function (called for every attempt: a token in the query may change).
 */
export class Connection {
    encoding;
    url;
    onOpen;
    onEvent;
    onState;
    onClose;
    beforeReconnect;
    exactDecimals;
    ws = null;
    attempt = 0; // attempts since the last connection that stayed up
    openedAt = 0;
    reconnects = 0; // successful opens after the first
    opened = 0;
    lastFrameAt = 0;
    nextId = 1;
    // Frames received by type, and those that failed to decode (and were dropped).
    frames = { text: 0, binary: 0, bad: 0 };
    // Closes by code ("4001": the token expired unrefreshed), for tests and the curious.
    closes = {};
    minDelay;
    maxDelay;
    silenceMs;
    closed = false;
    timer;
    retryTimer = null;
    Ws;
    constructor(url, opts = {}) {
        const encoding = opts.encoding ?? "json";
        if (encoding !== "json" && encoding !== "msgpack")
            throw new Error(`unknown encoding: ${encoding}`);
        this.encoding = encoding;
        this.url = url;
        this.onOpen = opts.onOpen ?? (() => { });
        this.onEvent = opts.onEvent ?? (() => { });
        this.onState = opts.onState ?? (() => { });
        this.onClose = opts.onClose ?? (() => { });
        this.beforeReconnect = opts.beforeReconnect;
        this.exactDecimals = opts.exactDecimals ?? false;
        this.minDelay = opts.minDelayMs ?? 250;
        this.maxDelay = opts.maxDelayMs ?? 5000;
        // The dashboard's default: the feed and the selected symbol's once-a-second indicators keep
        // a healthy socket busy.
        this.silenceMs = opts.silenceMs ?? 10000;
        const Ws = opts.WebSocket ?? globalThis.WebSocket;
        if (!Ws)
            throw new Error("no WebSocket: use Node >= 22 (or 20 with --experimental-websocket), or pass one");
        this.Ws = Ws;
        this.timer = setInterval(() => this.watchdog(), 1000);
    }
    /** The URL of the next attempt, with `encoding` set. */
    href() {
        const u = new URL(typeof this.url === "function" ? this.url() : this.url);
        if (this.encoding === "msgpack")
            u.searchParams.set("encoding", "msgpack");
        return u.href;
    }
    connect() {
        if (this.closed)
            return;
        this.onState({ state: this.opened ? "reconnecting" : "connecting", detail: "" });
        const ws = new this.Ws(this.href());
        // Binary frames as ArrayBuffers, decoded synchronously (the default Blob needs an async read,
        // which could reorder frames).
        ws.binaryType = "arraybuffer";
        this.ws = ws;
        ws.onopen = () => {
            if (this.opened++)
                this.reconnects++;
            this.openedAt = performance.now();
            this.lastFrameAt = performance.now();
            this.onState({ state: "live", detail: "" });
            this.onOpen();
        };
        ws.onmessage = (m) => {
            this.lastFrameAt = performance.now();
            // Decoded by the frame's own type, not by what we asked for: a server that predates
            // `encoding` ignores it and keeps sending JSON text, and the page still works.
            const text = typeof m.data === "string";
            this.frames[text ? "text" : "binary"]++;
            let events;
            try {
                events = decodeFrame(m.data, { exactDecimals: this.exactDecimals });
            }
            catch {
                this.frames.bad++;
                return; // dropped, as an unparsable JSON frame always was (counted for tests)
            }
            for (const ev of events)
                this.onEvent(ev);
        };
        // The browser fires "error" then "close"; all the handling is in close.
        ws.onerror = () => { };
        ws.onclose = (e) => {
            if (this.ws !== ws)
                return;
            this.ws = null;
            this.closes[e.code] = (this.closes[e.code] ?? 0) + 1;
            this.onClose(e.code);
            this.scheduleReconnect(e.code);
        };
    }
    /**
     * Drops the socket and opens a new one at once, without backoff: a fresh connection with
     * nothing of the old one's state (its authentication). onOpen runs again as after a reconnect.
     * While down, the reconnect already scheduled does the same.
     */
    reopen() {
        const ws = this.ws;
        if (!ws)
            return;
        this.ws = null;
        ws.close(1000, "reopen");
        this.connect();
    }
    /** Closes for good: no reconnect, no timers left. */
    close() {
        this.closed = true;
        clearInterval(this.timer);
        if (this.retryTimer)
            clearTimeout(this.retryTimer);
        const ws = this.ws;
        this.ws = null;
        if (ws)
            ws.close(1000, "client closed");
        this.onState({ state: "closed", detail: "" });
    }
    scheduleReconnect(code) {
        if (this.closed)
            return;
        // Backoff restarts only after a connection that stayed up: a server that accepts and then
        // drops us at once (overload, 1013) keeps getting the growing delay.
        if (this.openedAt && performance.now() - this.openedAt > 5000)
            this.attempt = 0;
        this.openedAt = 0;
        const base = Math.min(this.maxDelay, this.minDelay * 2 ** this.attempt);
        const delay = Math.round(base * (0.5 + Math.random() / 2));
        this.attempt++;
        const why = code === 1001
            ? "server going away"
            : code === 4000
                ? "silent socket"
                : code === 4001
                    ? "token expired"
                    : `closed (${code})`;
        this.onState({
            state: "reconnecting",
            detail: `${why}; retry ${this.attempt} in ${(delay / 1000).toFixed(1)} s`,
        });
        this.retryTimer = setTimeout(async () => {
            this.retryTimer = null;
            if (this.beforeReconnect) {
                try {
                    await this.beforeReconnect(code);
                }
                catch {
                    return this.scheduleReconnect(code);
                }
            }
            this.connect();
        }, delay);
    }
    watchdog() {
        const ws = this.ws;
        if (!this.silenceMs || !ws || ws.readyState !== 1 /* OPEN */)
            return;
        if (performance.now() - this.lastFrameAt > this.silenceMs) {
            // Detach first: a dead peer may never complete the close handshake.
            this.ws = null;
            ws.close(4000, "silent");
            this.scheduleReconnect(4000);
        }
    }
    /** Is a socket open now? */
    get live() {
        return this.ws !== null && this.ws.readyState === 1;
    }
    /** Sends an op with a fresh id; returns the id (or 0 when not connected). */
    send(op) {
        if (!this.ws || this.ws.readyState !== 1)
            return 0;
        const id = this.nextId++;
        this.ws.send(JSON.stringify({ ...op, id }));
        return id;
    }
}
