// Typed events: the server's, and this client's own notices (snapshot, reset, gap).

import type { Level } from "./book.js";

/** An exact decimal as received: a string of its digits (`"0.3"`), never a rounded double. */
export type Decimal = string;

export interface TickEvent {
  type: "tick";
  ch: string;
  seq: number;
  ts: number;
  price: number;
  size: number;
  side: "buy" | "sell" | null;
  xts: number;
}

export interface BarEvent {
  type: "bar";
  ch: string;
  seq: number;
  ts: number;
  start: number;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number;
  trades: number;
  final: boolean;
}

export interface IndicatorsEvent {
  type: "indicators";
  ch: string;
  seq: number;
  ts: number;
  [name: string]: number | string | null;
}

export interface BookEvent {
  type: "book";
  ch: string;
  seq: number;
  ts: number;
  reset: boolean;
  bids: Level[];
  asks: Level[];
  checksum: number;
}

export interface Position {
  symbol: string;
  quantity: Decimal;
  avg_cost: Decimal;
  last_price: Decimal | null;
  market_value: Decimal | null;
  unrealized_pnl: Decimal | null;
  realized_pnl: Decimal;
}

export interface PortfolioEvent {
  type: "portfolio";
  ch: "portfolio";
  seq: number;
  ts: number;
  reason: "snapshot" | "trade" | "prices";
  positions: Position[];
  realized_pnl: Decimal;
  unrealized_pnl: Decimal | null;
  trades: number;
}

export type ServerEvent = TickEvent | BarEvent | IndicatorsEvent | BookEvent | PortfolioEvent;

/** The state a subscribe starts from: the channel's latest seq and its newest events. */
export interface SnapshotNotice {
  type: "snapshot";
  ch: string;
  seq: number;
  events: ServerEvent[];
}

/**
 * The server could not continue `ch` from where this client was (the server restarted: another
 * epoch; or the gap is no longer held), or a book's copy failed its checksum. `events` is the
 * fresh state: rebuild what was derived from earlier events, never merge.
 */
export interface ResetNotice {
  type: "reset";
  ch: string;
  seq: number;
  events: ServerEvent[];
  reason: string;
}

/** Seqs `first`..=`last` of `ch` will never arrive (expected only on throttled subscriptions). */
export interface GapNotice {
  type: "gap";
  ch: string;
  first: number;
  last: number;
  missed: number;
}

export type ClientEvent = ServerEvent | SnapshotNotice | ResetNotice | GapNotice;
