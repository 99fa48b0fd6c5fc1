// Order books as a subscriber holds them (docs/PROTOCOL.md, "Order books"): a reset replaces the
// copy, a delta sets levels (size 0 removes), the best `depth` levels per side are kept, and
// every event's CRC-32 checksum is verified against the copy.
/**
 * A number as the checksum (and the dashboard) writes it: JavaScript's shortest round-trip form,
 * in plain notation also where String() would use an exponent (1e-7, 1e21).
 */
export function plainNumber(n) {
    const s = String(n);
    const m = /^(-?)(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(s);
    if (!m)
        return s;
    const [, sign, int, frac = "", exp] = m;
    const digits = int + frac;
    const point = 1 + Number(exp); // digits before the decimal point
    if (point <= 0)
        return `${sign}0.${"0".repeat(-point)}${digits}`;
    if (point >= digits.length)
        return sign + digits + "0".repeat(point - digits.length);
    return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}
// --- CRC-32 and the book checksum ---
/** CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), as zlib's `crc32`: one entry a byte. */
const CRC_TABLE = (() => {
    const t = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
        let c = n;
        for (let k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
        t[n] = c >>> 0;
    }
    return t;
})();
const utf8 = new TextEncoder();
/** The CRC-32 of a string (its UTF-8 bytes) or of bytes, as an unsigned 32-bit number. */
export function crc32(data) {
    const bytes = typeof data === "string" ? utf8.encode(data) : data;
    let c = 0xffffffff;
    for (let i = 0; i < bytes.length; i++)
        c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
}
/** Levels per side the checksum covers. */
export const CHECKSUM_LEVELS = 10;
/**
 * The text the checksum is taken of: for i in 0..9 the i-th bid then the i-th ask, each one that
 * exists written `price:size`, joined by `:`; numbers as their shortest plain decimal.
 * `bids` and `asks` are `[price, size]` levels, best first.
 */
export function checksumText(bids, asks) {
    const parts = [];
    for (let i = 0; i < CHECKSUM_LEVELS; i++) {
        for (const level of [bids[i], asks[i]]) {
            if (level)
                parts.push(`${plainNumber(level[0])}:${plainNumber(level[1])}`);
        }
    }
    return parts.join(":");
}
/** The checksum a book event carries for a book whose sides are `bids` and `asks`. */
export function bookChecksum(bids, asks) {
    return crc32(checksumText(bids, asks));
}
/** Is `l` a `[price, size]` level of finite numbers? */
const isLevel = (l) => Array.isArray(l) && Number.isFinite(l[0]) && Number.isFinite(l[1]);
/**
 * One symbol's book as a subscriber holds it: `depth` levels per side.
 *
 * `apply(ev)` takes a `book` event and answers what became of it:
 * - `{ok: true}`: applied, and the copy's checksum is the event's;
 * - `{ok: false, reason}`: the copy can no longer be trusted (a checksum mismatch, a delta
 *   without a snapshot to apply it to, a seq that went backwards, or, when `contiguous`, a jump
 *   in seq): the caller gets a fresh snapshot (a `reset` event) and nothing else is applied
 *   until one comes.
 *
 * A seq jump is expected on a subscription with a narrower `depth` than the server's or a
 * `throttle_ms` (it gets net deltas, and events that do not touch its levels are not sent):
 * there the checksum is what tells a lost update. `contiguous` says every seq must follow the
 * last (a full-depth, unthrottled subscription, whose gaps the server turns into resets).
 */
export class ClientBook {
    depth;
    contiguous;
    bids = new Map(); // price -> size
    asks = new Map();
    seq = 0;
    synced = false; // holds a book a reset started (or the empty book of an empty snapshot)
    verified = 0; // events whose checksum matched the copy
    resyncs = 0; // fresh snapshots asked for (counted by whoever asks)
    sorted = null; // best first, until the next change
    constructor(depth, { contiguous = false } = {}) {
        this.depth = depth;
        this.contiguous = contiguous;
    }
    /** Forgets everything: the copy waits for a reset. */
    clear() {
        this.bids.clear();
        this.asks.clear();
        this.seq = 0;
        this.synced = false;
        this.sorted = null;
    }
    /** The empty book at `seq` (a snapshot with no data: the symbol has no book yet). */
    empty(seq) {
        this.clear();
        this.seq = seq;
        this.synced = true;
    }
    apply(ev) {
        const bids = Array.isArray(ev.bids) ? ev.bids : null;
        const asks = Array.isArray(ev.asks) ? ev.asks : null;
        if (!bids || !asks || !bids.every(isLevel) || !asks.every(isLevel) || !Number.isInteger(ev.seq)) {
            this.synced = false;
            return { ok: false, reason: "malformed event" };
        }
        if (ev.reset) {
            this.bids.clear();
            this.asks.clear();
        }
        else if (!this.synced) {
            return { ok: false, reason: "delta without a snapshot" };
        }
        else if (ev.seq <= this.seq) {
            this.synced = false;
            return { ok: false, reason: `seq went back from ${this.seq} to ${ev.seq}` };
        }
        else if (this.contiguous && ev.seq !== this.seq + 1) {
            this.synced = false;
            return { ok: false, reason: `seq gap: ${this.seq} to ${ev.seq}` };
        }
        for (const [price, size] of bids)
            setLevel(this.bids, price, size);
        for (const [price, size] of asks)
            setLevel(this.asks, price, size);
        this.sorted = null;
        this.trim();
        this.seq = ev.seq;
        this.synced = true;
        if (typeof ev.checksum === "number") {
            if (ev.checksum !== this.checksum()) {
                this.synced = false;
                return { ok: false, reason: `checksum mismatch at seq ${ev.seq}` };
            }
            this.verified++;
        }
        return { ok: true };
    }
    /** Keeps the `depth` best levels per side (a deeper one may come back into view later). */
    trim() {
        const { bids, asks } = this.levels();
        for (const [price] of bids.slice(this.depth))
            this.bids.delete(price);
        for (const [price] of asks.slice(this.depth))
            this.asks.delete(price);
        if (bids.length > this.depth || asks.length > this.depth)
            this.sorted = null;
    }
    /** Both sides as `[price, size]` arrays, best first (bids high to low, asks low to high). */
    levels() {
        if (!this.sorted) {
            this.sorted = {
                bids: [...this.bids].sort((a, b) => b[0] - a[0]),
                asks: [...this.asks].sort((a, b) => a[0] - b[0]),
            };
        }
        return this.sorted;
    }
    /** The best bid minus the best ask's price, or null while a side is empty. */
    spread() {
        const { bids, asks } = this.levels();
        return bids.length && asks.length ? asks[0][0] - bids[0][0] : null;
    }
    /** The checksum text of the copy (for tests: zlib's crc32 of it must be the checksum). */
    checksumText() {
        const { bids, asks } = this.levels();
        return checksumText(bids, asks);
    }
    checksum() {
        return crc32(this.checksumText());
    }
}
function setLevel(side, price, size) {
    if (size === 0)
        side.delete(price);
    else
        side.set(price, size);
}
