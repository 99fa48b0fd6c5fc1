// The REST API (`/api/v1`) over fetch: history as async iterators over every page, the book,
// indicators, predictions, the portfolio and trades with exact decimals (strings of their digits),
// problem+json answers as ProblemError.
import { ProblemError, TickcastError } from "./errors.js";
import { parseExact } from "./frames.js";
const timeParam = (t) => (t === undefined ? undefined : t instanceof Date ? t.toISOString() : String(t));
export class Rest {
    opts;
    baseUrl;
    constructor(baseUrl, opts = {}) {
        this.opts = opts;
        this.baseUrl = baseUrl.replace(/\/+$/, "");
    }
    /** One request; `exact` keeps the portfolio's decimals as strings. */
    async request(method, path, query = {}, body, headers = {}, exact = false) {
        const u = new URL(this.baseUrl + path);
        for (const [k, v] of Object.entries(query))
            if (v !== undefined && v !== null)
                u.searchParams.set(k, String(v));
        const h = { ...headers };
        if (this.opts.apiKey)
            h.authorization = `Bearer ${this.opts.apiKey}`;
        if (body !== undefined)
            h["content-type"] = "application/json";
        let res;
        try {
            res = await fetch(u, {
                method,
                headers: h,
                body: body === undefined ? undefined : JSON.stringify(body),
                signal: AbortSignal.timeout(this.opts.timeoutMs ?? 10000),
            });
        }
        catch (e) {
            throw new TickcastError(`${method} ${u.pathname}: ${e.message}`);
        }
        const text = await res.text();
        if (!res.ok) {
            let p = {};
            try {
                p = JSON.parse(text);
            }
            catch {
                p = { detail: text.slice(0, 200) };
            }
            throw new ProblemError(res.status, p.code ?? "http_error", p.title ?? res.statusText, p.detail ?? "", p);
        }
        return exact ? parseExact(text) : JSON.parse(text);
    }
    async symbols() {
        return (await this.request("GET", "/api/v1/symbols")).symbols;
    }
    /** Every stored tick of `symbol` in [from, to), oldest first, page after page. */
    async *ticks(symbol, o = {}) {
        let cursor;
        for (;;) {
            const page = await this.request("GET", `/api/v1/ticks/${encodeURIComponent(symbol)}`, {
                from: timeParam(o.from),
                to: timeParam(o.to),
                limit: o.pageSize,
                cursor,
            });
            yield* page.ticks;
            if (!page.next_cursor)
                return;
            cursor = page.next_cursor;
        }
    }
    /** Every bar of `symbol` at `interval` (1s, 1m, 5m, 1h, 1d) in [from, to), page after page. */
    async *bars(symbol, interval = "1m", o = {}) {
        let from = timeParam(o.from);
        for (;;) {
            const page = await this.request("GET", `/api/v1/bars/${encodeURIComponent(symbol)}`, {
                interval,
                from,
                to: timeParam(o.to),
                limit: o.pageSize,
            });
            yield* page.bars;
            if (page.next_from === null || page.next_from === undefined)
                return;
            from = String(page.next_from);
        }
    }
    book(symbol, depth) {
        return this.request("GET", `/api/v1/book/${encodeURIComponent(symbol)}`, { depth });
    }
    indicators(symbol) {
        return this.request("GET", `/api/v1/indicators/${encodeURIComponent(symbol)}`);
    }
    predictions(symbol, o = {}) {
        return this.request("GET", `/api/v1/predictions/${encodeURIComponent(symbol)}`, { horizon_s: o.horizonS, model: o.model });
    }
    /** The caller's positions and P&L (Bearer API key); exact fields are decimal strings. */
    portfolio() {
        return this.request("GET", "/api/v1/portfolio", {}, undefined, {}, true);
    }
    /** Records a fill; `quantity` and `price` travel as exact decimal strings. */
    recordTrade(t, idempotencyKey) {
        const body = { symbol: t.symbol, side: t.side, quantity: String(t.quantity), price: String(t.price) };
        if (t.time !== undefined)
            body.time = timeParam(t.time);
        const headers = idempotencyKey ? { "idempotency-key": idempotencyKey } : {};
        return this.request("POST", "/api/v1/portfolio/trades", {}, body, headers, true);
    }
    /** Exchanges the API key for a connection token: a ready `tokenProvider`. */
    async token() {
        return (await this.request("POST", "/api/v1/auth/token")).token;
    }
}
