// Per-channel `seq` tracking (docs/PROTOCOL.md, "Server -> client"): the last seq seen of every
// concrete channel, what a resume's `from` is made of.
/** Last `seq` seen per concrete channel ("ticks:AAPL" -> 1234). */
export class SeqTracker {
    last = new Map();
    /** Records an event's seq; returns how many events were skipped (0 when contiguous). */
    observe(ch, seq) {
        const prev = this.last.get(ch);
        this.last.set(ch, seq);
        return prev === undefined || seq <= prev ? 0 : seq - prev - 1;
    }
    /** Forgets every channel that `keep(ch)` rejects. */
    retain(keep) {
        for (const ch of this.last.keys())
            if (!keep(ch))
                this.last.delete(ch);
    }
    /** A `from` object for a subscribe: last seq of every known channel of `kind`. */
    fromFor(kind) {
        const from = {};
        for (const [ch, seq] of this.last) {
            if (ch.startsWith(kind + ":") && seq > 0)
                from[ch] = seq;
        }
        return from;
    }
    /** Like fromFor, for one concrete channel; undefined when nothing was seen yet. */
    fromOne(ch) {
        const seq = this.last.get(ch);
        return seq !== undefined && seq > 0 ? { [ch]: seq } : undefined;
    }
}
/** Splits "bars.1s:AAPL" into ["bars.1s", "AAPL"]. */
export function splitChannel(ch) {
    const i = ch.indexOf(":");
    return i < 0 ? [ch, ""] : [ch.slice(0, i), ch.slice(i + 1)];
}
/** Does a subscribed channel (`ticks:AAPL`, `ticks:*`, `portfolio`) cover a concrete one? */
export function covers(pattern, ch) {
    if (pattern === ch)
        return true;
    const [kind, sym] = splitChannel(pattern);
    return sym === "*" && ch.startsWith(kind + ":");
}
