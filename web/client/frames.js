// Server frames to messages (docs/PROTOCOL.md, "Encodings"): a JSON text frame holds one object
// or an array of them; a MessagePack binary frame is always an array of messages, events
// positional and led by a kind code, everything else a map. Both come out in the JSON shape.
import { decode } from "./msgpack.js";
/** The kind codes that lead positional events. */
export const KIND_CODES = Object.freeze({ tick: 1, bar: 2, indicators: 3, portfolio: 4, book: 5 });
/**
 * Turns one message of a MessagePack frame into the object its JSON form parses to: a positional
 * event (`[1, ch, seq, ts, price, size, side, xts]`, `[5, ch, seq, ts, reset, bids, asks,
 * checksum]`, ...) into `{type: "tick", ch, ...}`, `{type: "book", ...}`, a map
 * (ack, error, pong, list, snapshot) into itself, with a snapshot's positional `data` converted
 * the same way. One difference is the contract's: a portfolio event's exact decimals are strings
 * of their digits (`"0.3"`) where JSON has numbers. Returns null for an event of a kind code this
 * client does not know (as a JSON event of an unknown `type` is ignored); throws on a
 * malformed message.
 */
export function fromMsgpack(msg) {
    if (Array.isArray(msg))
        return eventFromArray(msg);
    if (msg === null || typeof msg !== "object" || msg instanceof Uint8Array) {
        throw new Error(`msgpack message is neither an array nor a map: ${typeof msg}`);
    }
    const m = msg;
    if (m.type !== "snapshot" || !Array.isArray(m.data))
        return m;
    const data = [];
    for (const ev of m.data) {
        // Positional per the contract; a map is taken as already in JSON shape.
        const e = Array.isArray(ev) ? eventFromArray(ev) : ev;
        if (e !== null)
            data.push(e);
    }
    return { ...m, data };
}
// Fields after the kind code. Longer arrays are accepted (a later server may append fields);
// shorter ones are broken.
const TICK_LEN = 8;
const BAR_LEN = 12;
const INDICATORS_LEN = 5;
const PORTFOLIO_LEN = 5;
const BOOK_LEN = 8;
function eventFromArray(a) {
    const need = (n, type) => {
        if (a.length < n)
            throw new Error(`msgpack ${type} event has ${a.length} fields, expected ${n}`);
    };
    switch (a[0]) {
        case KIND_CODES.tick:
            need(TICK_LEN, "tick");
            return { type: "tick", ch: a[1], seq: a[2], ts: a[3], price: a[4], size: a[5], side: a[6], xts: a[7] };
        case KIND_CODES.bar:
            need(BAR_LEN, "bar");
            return {
                type: "bar",
                ch: a[1],
                seq: a[2],
                ts: a[3],
                start: a[4],
                open: a[5],
                high: a[6],
                low: a[7],
                close: a[8],
                volume: a[9],
                trades: a[10],
                final: a[11],
            };
        case KIND_CODES.indicators:
            need(INDICATORS_LEN, "indicators");
            return withMap("indicators", a);
        case KIND_CODES.portfolio:
            // `[4, "portfolio", seq, ts, {reason, positions, realized_pnl, unrealized_pnl, trades}]`;
            // its exact decimals stay the strings the server sent (MessagePack has no decimal type).
            need(PORTFOLIO_LEN, "portfolio");
            return withMap("portfolio", a);
        case KIND_CODES.book:
            // `[5, ch, seq, ts, reset, bids, asks, checksum]`, each side an array of `[price, size]`.
            need(BOOK_LEN, "book");
            if (!Array.isArray(a[5]) || !Array.isArray(a[6]))
                throw new Error("msgpack book event: a side is not an array");
            return { type: "book", ch: a[1], seq: a[2], ts: a[3], reset: a[4], bids: a[5], asks: a[6], checksum: a[7] };
        default:
            if (!Number.isInteger(a[0]))
                throw new Error("msgpack event does not start with an integer kind code");
            return null;
    }
}
/** `[code, ch, seq, ts, {name: value, ...}]` as `{type, ch, seq, ts, name: value, ...}`. */
function withMap(type, a) {
    const values = a[4];
    if (values === null || typeof values !== "object" || Array.isArray(values) || values instanceof Uint8Array) {
        throw new Error(`msgpack ${type} event: field 4 is not a map`);
    }
    // Spread (not Object.assign, which would run a "__proto__" key as the setter), in the JSON
    // field order; the fixed fields are set again so no key of the map can replace them.
    const ev = { type, ch: a[1], seq: a[2], ts: a[3], ...values };
    ev.type = type;
    ev.ch = a[1];
    ev.seq = a[2];
    ev.ts = a[3];
    return ev;
}
// The portfolio's exact fields (docs/PROTOCOL.md "Portfolio", and a trade's quantity and price).
const EXACT_FIELD = /"(quantity|price|avg_cost|last_price|market_value|unrealized_pnl|realized_pnl)":(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;
/**
 * JSON text with the portfolio's exact decimals kept as strings of their digits (as MessagePack
 * sends them): JSON.parse would round `0.1` + `0.2` sums and long digits to a double. Symbols,
 * the only other strings in such a body, cannot contain a quote, so no match is inside a string.
 */
export function parseExact(text) {
    return JSON.parse(text.replace(EXACT_FIELD, '"$1":"$2"'));
}
/**
 * The messages of one server frame, in JSON shape: a text frame is JSON (one object or an array
 * of them), a binary frame is a MessagePack array of messages. Throws on a malformed frame.
 */
export function decodeFrame(data, opts = {}) {
    if (typeof data === "string") {
        const exact = opts.exactDecimals && data.includes('"portfolio"');
        const parsed = exact ? parseExact(data) : JSON.parse(data);
        return Array.isArray(parsed) ? parsed : [parsed];
    }
    const msgs = decode(data);
    if (!Array.isArray(msgs))
        throw new Error("msgpack frame is not an array of messages");
    const out = [];
    for (const m of msgs) {
        const ev = fromMsgpack(m);
        if (ev !== null)
            out.push(ev);
    }
    return out;
}
