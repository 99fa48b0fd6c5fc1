// The symbol table: live price, change since the first price seen, a sparkline and ticks/s.
// Events only mark rows dirty; the DOM is touched at most once per animation frame.

const SPARK_POINTS = 60; // one sample a second: the last minute
const RATE_WINDOW = 5; // seconds of seq samples behind ticks/s
const SVG = "http://www.w3.org/2000/svg";

const fmtPrice = (p) => (p >= 1000 ? p.toFixed(1) : p >= 1 ? p.toFixed(2) : p.toPrecision(3));

export class SymbolTable {
  /** `onSelect(symbol)` runs when the user picks a row (Enter or click). */
  constructor(table, { onSelect }) {
    this.table = table;
    this.tbody = table.tBodies[0];
    this.onSelect = onSelect;
    this.rows = new Map(); // symbol -> row state
    this.order = []; // symbols in table order
    this.cursor = -1; // keyboard position
    this.selected = null;
    this.dirty = new Set();
    this.frameQueued = false;

    table.addEventListener("keydown", (e) => this.onKey(e));
    this.tbody.addEventListener("click", (e) => {
      const tr = e.target.closest("tr");
      if (tr) this.select(this.order.indexOf(tr.dataset.symbol));
    });
    // Sparklines and rates move once a second, whatever the tick rate.
    setInterval(() => this.sample(), 1000);
  }

  /** Adds rows for symbols not yet shown, keeping the server's order. */
  ensure(symbols) {
    for (const sym of symbols) if (!this.rows.has(sym)) this.addRow(sym);
  }

  addRow(sym) {
    const tr = document.createElement("tr");
    tr.dataset.symbol = sym;
    tr.id = `row-${sym}`;
    tr.setAttribute("aria-selected", "false");
    const cell = (cls) => {
      const td = tr.insertCell();
      td.className = cls;
      return td;
    };
    cell("sym").textContent = sym;
    const price = cell("num price");
    const change = cell("num change");
    const spark = document.createElementNS(SVG, "svg");
    spark.setAttribute("viewBox", `0 0 ${SPARK_POINTS - 1} 20`);
    spark.setAttribute("preserveAspectRatio", "none");
    spark.setAttribute("aria-hidden", "true");
    const line = document.createElementNS(SVG, "polyline");
    spark.append(line);
    cell("spark").append(spark);
    const rate = cell("num rate");
    this.tbody.append(tr);
    this.order.push(sym);
    this.rows.set(sym, {
      tr, price, change, line, rate,
      last: null, first: null, shown: null,
      seq: 0, seqSamples: [], points: [], sparkDirty: false,
    });
    if (this.cursor < 0) this.moveCursor(0);
  }

  /** A price for `sym` (from a live tick or a snapshot); `seq` feeds ticks/s. */
  tick(sym, price, seq) {
    let r = this.rows.get(sym);
    if (!r) {
      this.addRow(sym);
      r = this.rows.get(sym);
    }
    if (r.first === null) r.first = price;
    r.last = price;
    if (seq > r.seq) r.seq = seq;
    this.markDirty(sym);
  }

  /** Forgets a symbol's history (its channel was reset: the server restarted or lost the gap). */
  reset(sym) {
    const r = this.rows.get(sym);
    if (!r) return;
    r.first = r.last = null;
    r.seq = 0;
    r.seqSamples = [];
    r.points = [];
    delete r.rate.dataset.value;
    r.sparkDirty = true;
    this.markDirty(sym);
  }

  markDirty(sym) {
    this.dirty.add(sym);
    if (!this.frameQueued) {
      this.frameQueued = true;
      requestAnimationFrame(() => this.render());
    }
  }

  render() {
    this.frameQueued = false;
    for (const sym of this.dirty) {
      const r = this.rows.get(sym);
      if (r.last === null) {
        r.price.textContent = r.change.textContent = "";
      } else if (r.last !== r.shown) {
        r.price.textContent = fmtPrice(r.last);
        r.price.className = `num price ${r.shown === null || r.last === r.shown ? "" : r.last > r.shown ? "up" : "down"}`;
        const pct = ((r.last - r.first) / r.first) * 100;
        r.change.textContent = `${pct >= 0 ? "+" : ""}${pct.toFixed(2)}%`;
        r.change.className = `num change ${pct > 0 ? "up" : pct < 0 ? "down" : ""}`;
      }
      r.shown = r.last;
      if (r.sparkDirty) {
        r.sparkDirty = false;
        r.line.setAttribute("points", sparkPoints(r.points));
        r.line.setAttribute("class", r.points.at(-1) >= r.points[0] ? "up" : "down");
        r.rate.textContent = r.rate.dataset.value ?? "";
      }
    }
    this.dirty.clear();
  }

  /** Once a second: a sparkline point and a ticks/s figure per symbol. */
  sample() {
    const now = performance.now();
    for (const [sym, r] of this.rows) {
      if (r.last === null) continue;
      r.points.push(r.last);
      if (r.points.length > SPARK_POINTS) r.points.shift();
      // Rates come from seq, not from events received: a throttled connection skips events but
      // seq still counts every tick.
      r.seqSamples.push([now, r.seq]);
      if (r.seqSamples.length > RATE_WINDOW + 1) r.seqSamples.shift();
      const [t0, s0] = r.seqSamples[0];
      const dt = (now - t0) / 1000;
      r.rate.dataset.value = dt > 0.5 ? ((r.seq - s0) / dt).toFixed(1) : "";
      r.sparkDirty = true;
      this.markDirty(sym);
    }
  }

  // --- keyboard and selection ---

  onKey(e) {
    const moves = { ArrowDown: 1, j: 1, ArrowUp: -1, k: -1, PageDown: 10, PageUp: -10 };
    if (e.key in moves) {
      this.moveCursor(this.cursor + moves[e.key]);
    } else if (e.key === "Home") {
      this.moveCursor(0);
    } else if (e.key === "End") {
      this.moveCursor(this.order.length - 1);
    } else if (e.key === "Enter" || e.key === " ") {
      this.select(this.cursor);
    } else {
      return;
    }
    e.preventDefault();
  }

  moveCursor(i) {
    if (!this.order.length) return;
    i = Math.max(0, Math.min(this.order.length - 1, i));
    this.rows.get(this.order[this.cursor])?.tr.classList.remove("cursor");
    this.cursor = i;
    const tr = this.rows.get(this.order[i]).tr;
    tr.classList.add("cursor");
    this.table.setAttribute("aria-activedescendant", tr.id);
    tr.scrollIntoView({ block: "nearest" });
  }

  select(i) {
    if (i < 0 || i >= this.order.length) return;
    this.moveCursor(i);
    const sym = this.order[i];
    if (sym === this.selected) return;
    if (this.selected) this.rows.get(this.selected).tr.setAttribute("aria-selected", "false");
    this.selected = sym;
    this.rows.get(sym).tr.setAttribute("aria-selected", "true");
    this.onSelect(sym);
  }

  /** Rows that show a price (for the debug object and the browser test). */
  filled() {
    let n = 0;
    for (const r of this.rows.values()) if (r.shown !== null) n++;
    return n;
  }
}

/** SVG polyline points for prices scaled into the 20-unit-high viewBox. */
function sparkPoints(points) {
  if (points.length < 2) return "";
  const lo = Math.min(...points);
  const hi = Math.max(...points);
  const span = hi - lo || 1;
  const x0 = SPARK_POINTS - points.length;
  return points.map((p, i) => `${x0 + i},${(19 - ((p - lo) / span) * 18).toFixed(2)}`).join(" ");
}
